//! The trust rules of tenants' identity-provider settings, setting by setting.

use super::*;

fn config(env: &str, allowed: &str) -> Config {
    let vars = [
        ("TMS_ENV", env),
        ("JWT_SECRET", "x".repeat(32).as_str()),
        ("IDP_ALLOWED_HOSTS", allowed),
        ("KEYCLOAK_HOST", "https://sso.deployment.example"),
        ("KEYCLOAK_ADMIN_USERNAME", "ops"),
        ("KEYCLOAK_ADMIN_PASSWORD", "ops-password"),
        (
            "SMTP_URL",
            "smtp://mailer:mail-secret@mail.deployment.example:587",
        ),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    Config::from_map(&vars).unwrap()
}

fn facts(key: &str, tier: &str, isolation: Isolation) -> TenantFacts {
    TenantFacts {
        key: key.into(),
        name: "Acme".into(),
        domains: vec!["acme.io".into()],
        isolation,
        tier: tier.into(),
    }
}

fn own_keycloak(host: &str) -> Value {
    json!({"host": host, "adminUsername": "own", "adminPassword": "own-password"})
}

#[test]
fn a_lead_sets_nothing_tms_reads() {
    let c = config("test", "sso.tenant.example");
    for (provider, name) in KEYCLOAK
        .iter()
        .map(|(n, _)| (ProviderKind::Keycloak, *n))
        .chain(AUTH0.iter().map(|(n, _)| (ProviderKind::Auth0, *n)))
    {
        let value = json!({ name: "x" });
        let err = check(&c, provider, &value, Author::Lead).unwrap_err();
        assert!(
            matches!(&err, SettingsError::NotForLeads { names, .. } if names == &[name]),
            "{name}: {err:?}"
        );
    }
    // What tms does not read (branding for other services, say) is the lead's to write.
    let branding = json!({"logo_url": "https://acme.io/logo.png", "primary_color": "#fff"});
    for provider in [ProviderKind::Keycloak, ProviderKind::Auth0] {
        assert!(check(&c, provider, &branding, Author::Lead).is_ok());
        assert!(check(&c, provider, &Value::Null, Author::Lead).is_ok());
    }
    let err = check(
        &c,
        ProviderKind::Keycloak,
        &json!({"host": "http://evil.test/x?y=", "realm": "victimrealm",
                "redirectUris": ["https://evil.test/*"]}),
        Author::Lead,
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "a lead token cannot set Keycloak host, realm, redirectUris: where tms connects, with \
         which credentials and under which names come from the operator or an administrator"
    );
}

#[test]
fn a_host_comes_with_its_own_credentials() {
    let c = config("test", "sso.tenant.example");
    for value in [
        json!({"host": "https://sso.tenant.example"}),
        json!({"host": "https://sso.tenant.example", "adminUsername": "own"}),
        json!({"adminUsername": "own", "adminPassword": "p"}),
        json!({"adminPassword": "p"}),
    ] {
        let err = check(&c, ProviderKind::Keycloak, &value, Author::Admin).unwrap_err();
        assert!(err.to_string().contains("come together"), "{value}: {err}");
    }
    for value in [
        json!({"domain": "tenant.eu.auth0.com"}),
        json!({"domain": "tenant.eu.auth0.com", "clientSecret": "s"}),
        json!({"clientId": "c", "clientSecret": "s"}),
    ] {
        let err = check(&c, ProviderKind::Auth0, &value, Author::Admin).unwrap_err();
        assert!(err.to_string().contains("come together"), "{value}: {err}");
    }
    let own = check(
        &c,
        ProviderKind::Keycloak,
        &own_keycloak("https://sso.tenant.example/auth"),
        Author::Admin,
    )
    .unwrap();
    let settings = own
        .keycloak(&c, &facts("acme", "PREMIUM", Isolation::Silo))
        .unwrap();
    assert_eq!(settings.host, "https://sso.tenant.example/auth");
    assert_eq!(settings.admin_username, "own");
    assert_eq!(settings.admin_password.expose_secret(), "own-password");
    assert_eq!(
        settings.smtp_server, None,
        "the deployment's mail server stays home"
    );
    assert_eq!(settings.realm, "acme");
}

#[test]
fn a_tenants_own_host_must_be_allowed_and_https_in_production() {
    let test = config("test", "sso.tenant.example, 127.0.0.1:8080");
    let prod = config("prod", "sso.tenant.example, 127.0.0.1:8080");
    for (c, host, allowed) in [
        (&test, "https://sso.tenant.example", true),
        (&test, "http://sso.tenant.example", true),
        (&test, "http://127.0.0.1:8080/auth", true),
        (&prod, "https://sso.tenant.example", true),
        (&prod, "http://sso.tenant.example", false),
        (&prod, "http://127.0.0.1:8080", false),
        (&test, "http://evil.test/x?y=", false),
        (&test, "https://sso.tenant.example/x?y=", false),
        (&test, "https://sso.tenant.example/#x", false),
        (&test, "https://user:pw@sso.tenant.example", false),
        (&test, "http://169.254.169.254/latest", false),
        (&test, "http://127.0.0.1:8081", false),
        (&test, "https://sso.tenant.example.evil.test", false),
        (&test, "ftp://sso.tenant.example", false),
        (&test, "sso.tenant.example", false),
    ] {
        let got = check(
            c,
            ProviderKind::Keycloak,
            &own_keycloak(host),
            Author::Admin,
        );
        assert_eq!(got.is_ok(), allowed, "{host} in {:?}: {got:?}", c.env);
    }
    // Auth0's domain may be a bare name: it is https.
    let auth0 = json!({"domain": "sso.tenant.example", "clientId": "c", "clientSecret": "s"});
    assert!(check(&prod, ProviderKind::Auth0, &auth0, Author::Admin).is_ok());
    let err = check(
        &config("test", ""),
        ProviderKind::Keycloak,
        &own_keycloak("https://sso.tenant.example"),
        Author::Admin,
    )
    .unwrap_err();
    assert!(err.to_string().contains("IDP_ALLOWED_HOSTS"), "{err}");
}

#[test]
fn names_are_chosen_only_on_a_tenants_own_provider_and_never_master() {
    let c = config("test", "sso.tenant.example");
    for value in [
        json!({"realm": "victimrealm"}),
        json!({"clientId": "other"}),
        json!({"smtpServer": {"host": "x"}}),
    ] {
        let err = check(&c, ProviderKind::Keycloak, &value, Author::Admin).unwrap_err();
        assert!(err.to_string().contains("own"), "{value}: {err}");
    }
    for value in [json!({"organization": "other"}), json!({"audience": "x"})] {
        let err = check(&c, ProviderKind::Auth0, &value, Author::Admin).unwrap_err();
        assert!(err.to_string().contains("own"), "{value}: {err}");
    }
    let mut own = own_keycloak("https://sso.tenant.example");
    own["realm"] = json!("Master");
    assert!(check(&c, ProviderKind::Keycloak, &own, Author::Admin).is_err());
    own["realm"] = json!("custom");
    let settings = check(&c, ProviderKind::Keycloak, &own, Author::Admin)
        .unwrap()
        .keycloak(&c, &facts("acme", "PREMIUM", Isolation::Silo))
        .unwrap();
    assert_eq!(settings.realm, "custom");
    // Client settings are an administrator's to give, on any provider.
    let client = json!({"redirectUris": ["https://app.acme.io/*"], "actionsEmail": false,
                        "clientSecret": "s3cret"});
    let settings = check(&c, ProviderKind::Keycloak, &client, Author::Admin)
        .unwrap()
        .keycloak(&c, &facts("acme", "PREMIUM", Isolation::Silo))
        .unwrap();
    assert_eq!(settings.redirect_uris, ["https://app.acme.io/*"]);
    assert!(!settings.actions_email);
    assert_eq!(settings.host, "https://sso.deployment.example");
    for uris in [
        json!(["javascript:alert(1)"]),
        json!(["/relative"]),
        json!("x"),
    ] {
        let value = json!({ "redirectUris": uris });
        assert!(check(&c, ProviderKind::Keycloak, &value, Author::Admin).is_err());
    }
}

#[test]
fn the_deployments_realms_are_named_after_the_key_or_the_tier() {
    let c = config("test", "");
    let none = TenantSettings::default();
    let silo = none
        .keycloak(&c, &facts("acme", "PREMIUM", Isolation::Silo))
        .unwrap();
    assert_eq!(
        (silo.realm.as_str(), silo.client_id.as_str()),
        ("acme", "acme")
    );
    assert!(
        silo.smtp_server.is_some(),
        "tms's mail server for its own realms"
    );
    let pooled = none
        .keycloak(&c, &facts("acme", "STANDARD", Isolation::Pooled))
        .unwrap();
    assert_eq!(pooled.realm, "standard");
    for key in ["master", "standard", "basic"] {
        let err = none
            .keycloak(&c, &facts(key, "PREMIUM", Isolation::Silo))
            .unwrap_err();
        assert!(
            err.to_string().contains("silo tenant's realm"),
            "{key}: {err}"
        );
    }
    let err = none
        .keycloak(&c, &facts("acme", "GOLD", Isolation::Pooled))
        .unwrap_err();
    assert!(err.to_string().contains("configured"), "{err}");
}
