//! The tenant's first admin user, `POST /manage/users` (docs/identity.md), over real HTTP against
//! local stand-ins for Keycloak and Auth0 (`idp_mocks`) that check every request and answer as
//! the vendors do. A provisioning tenant's pipeline signs the call with the secret of its
//! `TENANT_PROVISIONING` event (no context); tms makes the realm and client or the organisation,
//! then the user from the tenant's primary contact, answers `{"authId"}` and keeps it as the
//! tenant's `spocUserId`. Silo tenants get a realm / organisation of their own, pooled ones share
//! the tier's; a retry finds what an earlier call made; settings come from the environment or a
//! tenant config; vendor refusals are 502, vendor outages and rate limits 503 with `Retry-After`;
//! bad signatures (401), bodies (400/422) and tenants not provisioning (409) reach no vendor and
//! write nothing.

mod common;
mod idp_mocks;
mod idp_support;
mod lifecycle_support;
mod rest_support;

use common::*;
use idp_mocks::*;
use idp_support::*;
use lifecycle_support::*;
use tms::domain::signature;

// ---------------------------------------------------------------------------------------------
// Keycloak
// ---------------------------------------------------------------------------------------------

both_dbs!(
    keycloak_silo_tenant_gets_its_realm_client_and_admin_user,
    |app| async move {
        let (kc, app) = with_keycloak(app).await;
        let (tenant, event) = provisioning(&app, "acme", "PREMIUM").await;
        assert_eq!(spoc_of(&app, &tenant).await, Value::Null);

        let id = auth_id(&call(&app, &event, &request_for(&tenant, "keycloak", "PREMIUM")).await);
        let seen = kc.seen();
        assert_eq!(
            trail(&seen),
            [
                format!("POST {KC_TOKEN} 200"),
                "GET /admin/realms/acme 404".into(),
                "POST /admin/realms 201".into(),
                "POST /admin/realms/acme/clients 201".into(),
                "POST /admin/realms/acme/users 201".into(),
                format!("PUT /admin/realms/acme/users/{id}/execute-actions-email 204"),
            ]
        );
        let form = seen[0].form();
        for (field, value) in [
            ("grant_type", "password"),
            ("client_id", "admin-cli"),
            ("username", KC_ADMIN),
            ("password", KC_PASSWORD),
        ] {
            assert_eq!(form.get(field).map(String::as_str), Some(value), "{form:?}");
        }
        assert_bearer(&seen, KC_TOKEN, &kc.state(|k| k.tokens.clone()));

        let realm = seen[2].json();
        assert_eq!(
            (&realm["realm"], &realm["enabled"]),
            (&json!("acme"), &json!(true))
        );
        assert!(
            realm["displayName"].as_str().is_some_and(|n| !n.is_empty()),
            "{realm}"
        );
        // The new realm sends its mail (the password link) through tms's own mail server.
        assert_eq!(
            realm["smtpServer"],
            json!({"host": "127.0.0.1", "port": "2525", "from": "no-reply@tms.localhost",
                   "fromDisplayName": "tms", "ssl": "false", "starttls": "false",
                   "auth": "true", "user": "mailer", "password": "mail-secret"})
        );

        let client = seen[3].json();
        assert_eq!(client["clientId"], "acme", "{client}");
        assert_eq!(client["enabled"], true);
        assert_eq!(client["protocol"], "openid-connect");
        assert_eq!(client["publicClient"], false);
        assert_eq!(client["standardFlowEnabled"], true);
        assert_eq!(client["redirectUris"], json!(["https://acme.io/*"]));
        assert_eq!(client["webOrigins"], json!(["+"]));
        assert!(
            client.get("secret").is_none(),
            "no clientSecret set: {client}"
        );

        let user = seen[4].json();
        assert_eq!(user["username"], "ada@acme.io", "{user}");
        assert_eq!(user["email"], "ada@acme.io");
        assert_eq!(user["firstName"], "ada first");
        assert_eq!(user["lastName"], "ada last");
        assert_eq!(user["enabled"], true);
        assert_eq!(user["emailVerified"], true);
        assert_eq!(user["requiredActions"], json!(["UPDATE_PASSWORD"]));
        assert_eq!(seen[5].json(), json!(["UPDATE_PASSWORD"]));

        // The id is the one Keycloak gave in the Location of the user it made.
        let made = kc.state(|k| k.realms["acme"].users[0]["id"].clone());
        assert_eq!(json!(id), made);
        assert_eq!(spoc_of(&app, &tenant).await, json!(id));
    }
);

both_dbs!(
    keycloak_pooled_tenants_share_the_tier_realm,
    |app| async move {
        let (kc, app) = with_keycloak(app).await;
        let (globex, first_event) = provisioning(&app, "globex", "STANDARD").await;
        let first = call(
            &app,
            &first_event,
            &request_for(&globex, "keycloak", "STANDARD"),
        )
        .await;
        let first = auth_id(&first);

        // The second pipeline sends its event's tenant and plan as they are, adding the provider.
        let (initech, event) = provisioning(&app, "initech", "standard").await;
        let mut tenant = event["tenant"].clone();
        tenant["identityProvider"] = json!("keycloak");
        let body = json!({"tenant": tenant, "plan": event["subscription"]["plan"]});
        let second = auth_id(&call(&app, &event, &body).await);
        assert_ne!(first, second);

        let seen = kc.seen();
        let admin: Vec<Seen> = seen
            .iter()
            .filter(|s| s.path != KC_TOKEN)
            .cloned()
            .collect();
        assert_eq!(
            trail(&admin),
            [
                "GET /admin/realms/standard 404".to_string(),
                "POST /admin/realms 201".into(),
                "POST /admin/realms/standard/clients 201".into(),
                "POST /admin/realms/standard/users 201".into(),
                format!("PUT /admin/realms/standard/users/{first}/execute-actions-email 204"),
                "GET /admin/realms/standard 200".into(),
                "POST /admin/realms/standard/clients 201".into(),
                "POST /admin/realms/standard/users 201".into(),
                format!("PUT /admin/realms/standard/users/{second}/execute-actions-email 204"),
            ]
        );
        assert_eq!(admin[1].json()["realm"], "standard");
        let (realms, clients, users) = kc.state(|k| {
            let realm = &k.realms["standard"];
            (
                k.realms.keys().cloned().collect::<Vec<_>>(),
                realm
                    .clients
                    .iter()
                    .map(|c| (c["clientId"].clone(), c["redirectUris"].clone()))
                    .collect::<Vec<_>>(),
                realm
                    .users
                    .iter()
                    .map(|u| u["email"].clone())
                    .collect::<Vec<_>>(),
            )
        });
        assert_eq!(realms, ["master", "standard"], "one realm for the tier");
        assert_eq!(
            clients,
            [
                (json!("globex"), json!(["https://globex.io/*"])),
                (json!("initech"), json!(["https://initech.io/*"])),
            ]
        );
        assert_eq!(users, [json!("ada@globex.io"), json!("ada@initech.io")]);
        assert_eq!(spoc_of(&app, &globex).await, json!(first));
        assert_eq!(spoc_of(&app, &initech).await, json!(second));
    }
);

both_dbs!(
    keycloak_retry_finds_what_the_first_call_made,
    |app| async move {
        let (kc, app) = with_keycloak(app).await;
        let (tenant, event) = provisioning(&app, "acme", "PREMIUM").await;
        let body = request_for(&tenant, "keycloak", "PREMIUM").to_string();
        let stamp = now_ms();
        let first = auth_id(&call_at(&app, secret_of(&event), &body, stamp).await);
        let before = kc.seen().len();

        // Signed again, with a fresh timestamp: the same user.
        let second = auth_id(&call_at(&app, secret_of(&event), &body, stamp + 5).await);
        assert_eq!(first, second);
        let retry: Vec<Seen> = kc.seen()[before..].to_vec();
        let lines = trail(&retry);
        assert!(
            !lines.iter().any(|l| l.starts_with("POST /admin/realms ")),
            "{lines:?}"
        );
        assert!(
            lines.contains(&"GET /admin/realms/acme 200".to_string()),
            "{lines:?}"
        );
        let refused = lines
            .iter()
            .position(|l| l == "POST /admin/realms/acme/users 409")
            .unwrap_or_else(|| panic!("the user create was not refused: {lines:?}"));
        let lookup = lines
            .iter()
            .position(|l| l == "GET /admin/realms/acme/users 200")
            .unwrap_or_else(|| panic!("no look-up of the user: {lines:?}"));
        assert!(refused < lookup, "{lines:?}");
        let query = retry[lookup].query_params();
        assert_eq!(
            query.get("username").map(String::as_str),
            Some("ada@acme.io")
        );
        assert_eq!(query.get("exact").map(String::as_str), Some("true"));
        assert!(
            !lines.iter().any(|l| l.contains("execute-actions-email")),
            "the password e-mail went with the first call only: {lines:?}"
        );

        // A replay of the very same signed request, within its 20 s, does no harm either.
        assert_eq!(
            auth_id(&call_at(&app, secret_of(&event), &body, stamp + 5).await),
            first
        );
        let made = kc.state(|k| {
            let realm = &k.realms["acme"];
            (k.realms.len(), realm.clients.len(), realm.users.len())
        });
        assert_eq!(made, (2, 1, 1), "master and acme; one client; one user");
        assert_eq!(spoc_of(&app, &tenant).await, json!(first));
    }
);

#[tokio::test]
async fn keycloak_refusing_the_admin_credentials_is_a_bad_gateway() {
    let kc = Mock::start(Keycloak::new(KC_ADMIN, KC_PASSWORD)).await;
    let wrong = "not-the-password";
    let app = sqlite_app(&keycloak_env(&kc, wrong)).await;
    let (tenant, event) = provisioning(&app, "acme", "PREMIUM").await;

    let response = call(&app, &event, &request_for(&tenant, "keycloak", "PREMIUM")).await;
    response.assert_error(502, "BadGatewayError");
    let message = response.json()["error"]["message"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        ["401", "invalid_grant", "Invalid user credentials"]
            .iter()
            .any(|said| message.contains(said)),
        "the vendor's answer is named: {message}"
    );
    assert!(!response.text.contains(wrong), "{}", response.text);
    assert_eq!(trail(&kc.seen()), [format!("POST {KC_TOKEN} 401")]);
    assert_eq!(spoc_of(&app, &tenant).await, Value::Null);
}

#[tokio::test]
async fn an_unreachable_keycloak_is_unavailable_with_retry_after() {
    let host = format!("http://127.0.0.1:{}", closed_port());
    let settings = [
        ("KEYCLOAK_HOST", host.as_str()),
        ("KEYCLOAK_ADMIN_USERNAME", KC_ADMIN),
        ("KEYCLOAK_ADMIN_PASSWORD", KC_PASSWORD),
    ];
    let app = TestApp::spawn_with(Db::Sqlite, &settings).await;
    let (tenant, event) = provisioning(&app, "acme", "PREMIUM").await;

    let response = call(&app, &event, &request_for(&tenant, "keycloak", "PREMIUM")).await;
    response.assert_error(503, "ServiceUnavailableError");
    let retry_after = response.header("retry-after");
    assert!(
        retry_after.is_some_and(|v| v.parse::<u64>().is_ok()),
        "Retry-After: {retry_after:?}"
    );
    assert_eq!(spoc_of(&app, &tenant).await, Value::Null);
}

// ---------------------------------------------------------------------------------------------
// Settings from a tenant config
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn keycloak_settings_can_come_from_the_tenant_config_alone() {
    let kc = Mock::start(Keycloak::new("cfg-admin", "Cfg-password-0123")).await;
    let app = sqlite_app(&[allowing(&[&kc.base])]).await;
    let (tenant, event) = provisioning(&app, "acme", "PREMIUM").await;

    // Nothing in the environment, no tenant config: the provider is not configured.
    for provider in ["keycloak", "auth0"] {
        let response = call(&app, &event, &request_for(&tenant, provider, "PREMIUM")).await;
        response.assert_error(422, "UnprocessableEntityError");
        assert!(
            response.text.to_lowercase().contains(provider),
            "names what is missing: {}",
            response.text
        );
    }
    assert!(kc.seen().is_empty());

    let settings = json!({"host": kc.base, "adminUsername": "cfg-admin",
                          "adminPassword": "Cfg-password-0123", "realm": "custom-realm"});
    configure(&app, &tenant, "keycloak", settings).await;
    let id = auth_id(&call(&app, &event, &request_for(&tenant, "keycloak", "PREMIUM")).await);
    let seen = kc.seen();
    assert_eq!(
        trail(&seen),
        [
            format!("POST {KC_TOKEN} 200"),
            "GET /admin/realms/custom-realm 404".into(),
            "POST /admin/realms 201".into(),
            "POST /admin/realms/custom-realm/clients 201".into(),
            "POST /admin/realms/custom-realm/users 201".into(),
            format!("PUT /admin/realms/custom-realm/users/{id}/execute-actions-email 500"),
        ]
    );
    // tms has no mail server here, so the new realm has none and Keycloak cannot send the
    // password link: the user exists, so the call succeeds (the log tells the operator).
    assert!(seen[2].json().get("smtpServer").is_none());
    assert_eq!(seen[0].form()["username"], "cfg-admin");
    assert_eq!(seen[2].json()["realm"], "custom-realm");
    assert_eq!(
        seen[3].json()["clientId"],
        "acme",
        "clientId: the tenant's key"
    );
    assert_eq!(spoc_of(&app, &tenant).await, json!(id));
}

/// The tenant's own Keycloak, served under `/auth` as before Keycloak 17.
#[tokio::test]
async fn a_tenant_config_overrides_the_environment() {
    let global = Mock::start(Keycloak::new(KC_ADMIN, KC_PASSWORD)).await;
    let own = Mock::start(Keycloak::new("own-admin", "Own-password-0123").under("/auth")).await;
    let mut env = keycloak_env(&global, KC_PASSWORD);
    env.push(allowing(&[&own.base]));
    let app = sqlite_app(&env).await;
    let (tenant, event) = provisioning(&app, "acme", "PREMIUM").await;
    let settings = json!({"host": format!("{}/auth", own.base), "adminUsername": "own-admin",
                          "adminPassword": "Own-password-0123"});
    configure(&app, &tenant, "keycloak", settings).await;

    let id = auth_id(&call(&app, &event, &request_for(&tenant, "keycloak", "PREMIUM")).await);
    assert!(global.seen().is_empty(), "{:?}", trail(&global.seen()));
    let seen = own.seen();
    assert_eq!(seen[0].line(), format!("POST /auth{KC_TOKEN} 200"));
    assert_eq!(
        seen[1].line(),
        "GET /auth/admin/realms/acme 404",
        "default realm"
    );
    let made = own.state(|k| k.realms["acme"].users[0]["id"].clone());
    assert_eq!(json!(id), made);
}

/// Another call made the realm or organisation between tms's look-up and its create: the 409
/// is taken as "it exists" and the one made is used.
#[tokio::test]
async fn a_realm_or_organisation_made_meanwhile_is_used() {
    let kc = Mock::start(Keycloak::new(KC_ADMIN, KC_PASSWORD)).await;
    let a0 = Mock::start(Auth0::new(A0_CLIENT_ID, A0_CLIENT_SECRET, A0_AUDIENCE)).await;
    let mut settings = keycloak_env(&kc, KC_PASSWORD);
    settings.extend(auth0_env(&a0));
    let app = sqlite_app(&settings).await;

    kc.state(|k| k.add_realm("acme"));
    let not_found = Reply::json(404, json!({"error": "Realm not found."}));
    kc.fail_times("GET", "/admin/realms/acme", 1, not_found);
    let (acme, event) = provisioning(&app, "acme", "PREMIUM").await;
    let id = auth_id(&call(&app, &event, &request_for(&acme, "keycloak", "PREMIUM")).await);
    let lines = trail(&kc.seen());
    assert!(
        lines.contains(&"POST /admin/realms 409".to_string()),
        "{lines:?}"
    );
    assert_eq!(
        kc.state(|k| k.realms["acme"].users[0]["id"].clone()),
        json!(id)
    );

    let org = a0.state(|a| a.add_organization("standard"));
    let path = "/api/v2/organizations/name/standard";
    let none = Reply::json(
        404,
        json!({"statusCode": 404, "error": "Not Found", "errorCode": "inexistent_organization",
               "message": "No organization found by that name or ID."}),
    );
    a0.fail_times("GET", path, 1, none);
    let (globex, event) = provisioning(&app, "globex", "STANDARD").await;
    let id = auth_id(&call(&app, &event, &request_for(&globex, "auth0", "STANDARD")).await);
    let lines = trail(&a0.seen());
    assert_eq!(
        lines[1..4],
        [
            format!("GET {path} 404"),
            "POST /api/v2/organizations 409".into(),
            format!("GET {path} 200"),
        ]
    );
    assert_eq!(a0.state(|a| a.members[&org].clone()), vec![id]);
}

/// Keycloak refuses a user whose email another user of the realm has under another username:
/// that user is the tenant's admin.
#[tokio::test]
async fn keycloak_user_with_the_email_under_another_username_is_found() {
    let kc = Mock::start(Keycloak::new(KC_ADMIN, KC_PASSWORD)).await;
    let app = sqlite_app(&keycloak_env(&kc, KC_PASSWORD)).await;
    let existing = kc.state(|k| {
        k.add_realm("acme");
        let realm = k.realms.get_mut("acme").unwrap();
        realm
            .users
            .push(json!({"id": "kc-user-ada", "username": "ada",
            "email": "ada@acme.io", "enabled": true}));
        "kc-user-ada".to_string()
    });
    let (tenant, event) = provisioning(&app, "acme", "PREMIUM").await;
    let id = auth_id(&call(&app, &event, &request_for(&tenant, "keycloak", "PREMIUM")).await);
    assert_eq!(id, existing);
    let seen = kc.seen();
    let lines = trail(&seen);
    assert_eq!(
        lines[lines.len() - 3..],
        [
            "POST /admin/realms/acme/users 409",
            "GET /admin/realms/acme/users 200",
            "GET /admin/realms/acme/users 200",
        ]
    );
    let by_email = seen[seen.len() - 1].query_params();
    assert_eq!(
        by_email.get("email").map(String::as_str),
        Some("ada@acme.io")
    );
    assert_eq!(by_email.get("exact").map(String::as_str), Some("true"));
    assert_eq!(spoc_of(&app, &tenant).await, json!(existing));
}

// ---------------------------------------------------------------------------------------------
// Auth0
// ---------------------------------------------------------------------------------------------

both_dbs!(
    auth0_tenants_get_organisation_user_and_membership_with_one_token,
    |app| async move {
        let (a0, app) = with_auth0(app).await;
        let (acme, event) = provisioning(&app, "acme", "PREMIUM").await;
        // An edited copy of the tenant in the body changes nothing: the admin comes from the
        // database.
        let body = json!({"tenant": {"id": acme, "identityProvider": "auth0", "key": "evil",
                                     "domains": ["evil.io"],
                                     "contacts": [{"email": "mallory@evil.io", "isPrimary": true,
                                                   "firstName": "mallory", "lastName": "evil"}]},
                          "plan": {"tier": "PREMIUM"}});
        let user_id = auth_id(&call(&app, &event, &body).await);
        let seen = a0.seen();
        let org = a0.state(|a| a.organizations[0]["id"].as_str().unwrap().to_string());
        assert_eq!(
            trail(&seen),
            [
                format!("POST {A0_TOKEN} 200"),
                "GET /api/v2/organizations/name/acme 404".into(),
                "POST /api/v2/organizations 201".into(),
                "POST /api/v2/users 201".into(),
                format!("POST /api/v2/organizations/{org}/members 204"),
            ]
        );
        let token = seen[0].params();
        for (field, value) in [
            ("grant_type", "client_credentials"),
            ("client_id", A0_CLIENT_ID),
            ("client_secret", A0_CLIENT_SECRET),
            ("audience", A0_AUDIENCE),
        ] {
            assert_eq!(token.get(field).map(String::as_str), Some(value), "{field}");
        }
        assert_bearer(&seen, A0_TOKEN, &a0.state(|a| a.tokens.clone()));

        let organization = seen[2].json();
        assert_eq!(organization["name"], "acme", "{organization}");
        assert!(
            organization["display_name"]
                .as_str()
                .is_some_and(|n| !n.is_empty())
        );
        assert!(
            organization.get("enabled_connections").is_none(),
            "none by default"
        );

        let user = seen[3].json();
        assert_eq!(user["email"], "ada@acme.io", "{user}");
        assert_eq!(user["connection"], AUTH0_CONNECTION);
        assert_eq!(user["given_name"], "ada first");
        assert_eq!(user["family_name"], "ada last");
        assert!(
            user["name"].as_str().is_some_and(|n| !n.is_empty()),
            "{user}"
        );
        assert_eq!(user["email_verified"], false);
        assert_eq!(user["verify_email"], true);
        let password = user["password"].as_str().unwrap().to_string();
        assert!(
            password.chars().count() >= 32,
            "a random password of 32 characters"
        );

        assert!(user_id.starts_with("auth0|"), "{user_id}");
        assert_eq!(seen[4].json(), json!({"members": [user_id]}));
        assert_eq!(a0.state(|a| a.members[&org].clone()), vec![user_id.clone()]);
        assert_eq!(spoc_of(&app, &acme).await, json!(user_id));

        // A pooled tenant whose pipeline leaves the plan out: the tier it is provisioned with
        // names the organisation, and the cached token is used.
        let (globex, event) = provisioning(&app, "globex", "STANDARD").await;
        let body = json!({"tenant": {"id": globex, "identityProvider": "auth0"}});
        let second = auth_id(&call(&app, &event, &body).await);
        let seen = a0.seen();
        let org = a0.state(|a| a.organizations[1]["id"].as_str().unwrap().to_string());
        assert_eq!(
            trail(&seen[5..]),
            [
                "GET /api/v2/organizations/name/standard 404".to_string(),
                "POST /api/v2/organizations 201".into(),
                "POST /api/v2/users 201".into(),
                format!("POST /api/v2/organizations/{org}/members 204"),
            ]
        );
        assert_eq!(a0.count("POST", A0_TOKEN), 1, "one token for both calls");
        assert_bearer(&seen, A0_TOKEN, &a0.state(|a| a.tokens.clone()));
        assert_eq!(seen[6].json()["name"], "standard");
        assert_eq!(seen[7].json()["email"], "ada@globex.io");
        assert_ne!(
            seen[7].json()["password"],
            json!(password),
            "a password of its own"
        );
        assert_eq!(seen[8].json(), json!({"members": [second]}));
        assert_eq!(spoc_of(&app, &globex).await, json!(second));
    }
);

#[tokio::test]
async fn auth0_existing_user_is_found_by_email_and_made_a_member() {
    let a0 = Mock::start(Auth0::new(A0_CLIENT_ID, A0_CLIENT_SECRET, A0_AUDIENCE)).await;
    let (org, social, existing) = a0.state(|a| {
        (
            a.add_organization("acme"),
            a.add_user("ada@acme.io", "google-oauth2", "google-oauth2"),
            a.add_user("ada@acme.io", AUTH0_CONNECTION, "auth0"),
        )
    });
    let app = sqlite_app(&auth0_env(&a0)).await;
    let (tenant, event) = provisioning(&app, "acme", "PREMIUM").await;

    let id = auth_id(&call(&app, &event, &request_for(&tenant, "auth0", "PREMIUM")).await);
    assert_eq!(id, existing, "the user on the connection, not {social}");
    let seen = a0.seen();
    assert_eq!(
        trail(&seen),
        [
            format!("POST {A0_TOKEN} 200"),
            "GET /api/v2/organizations/name/acme 200".into(),
            "POST /api/v2/users 409".into(),
            "GET /api/v2/users-by-email 200".into(),
            format!("POST /api/v2/organizations/{org}/members 204"),
        ]
    );
    assert_eq!(seen[3].query_params()["email"], "ada@acme.io");
    assert_eq!(seen[4].json(), json!({"members": [existing]}));
    assert_eq!(a0.state(|a| (a.organizations.len(), a.users.len())), (1, 2));
    assert_eq!(spoc_of(&app, &tenant).await, json!(existing));
}

#[tokio::test]
async fn auth0_rate_limits_and_errors_are_unavailable_and_a_retry_then_succeeds() {
    let a0 = Mock::start(Auth0::new(A0_CLIENT_ID, A0_CLIENT_SECRET, A0_AUDIENCE)).await;
    let app = sqlite_app(&auth0_env(&a0)).await;
    let (tenant, event) = provisioning(&app, "acme", "PREMIUM").await;
    let body = request_for(&tenant, "auth0", "PREMIUM");

    a0.fail("POST", "/api/v2/users", Auth0::too_many_requests("7"));
    let response = call(&app, &event, &body).await;
    response.assert_error(503, "ServiceUnavailableError");
    assert_eq!(
        response.header("retry-after"),
        Some("7"),
        "the vendor's Retry-After"
    );
    assert_eq!(a0.count("POST", "/api/v2/users"), 1, "the 429 was answered");

    a0.heal();
    a0.fail(
        "GET",
        "/api/v2/organizations/name/acme",
        Auth0::internal_error(),
    );
    let response = call(&app, &event, &body).await;
    response.assert_error(503, "ServiceUnavailableError");
    let retry_after = response.header("retry-after");
    assert!(
        retry_after.is_some_and(|v| v.parse::<u64>().is_ok()),
        "{retry_after:?}"
    );
    assert_eq!(spoc_of(&app, &tenant).await, Value::Null);

    a0.heal();
    let id = auth_id(&call(&app, &event, &body).await);
    let made = a0.state(|a| (a.organizations.len(), a.users.len()));
    assert_eq!(
        made,
        (1, 1),
        "the organisation of the first attempt is used"
    );
    assert_eq!(a0.count("POST", "/api/v2/organizations"), 1);
    assert_eq!(spoc_of(&app, &tenant).await, json!(id));
}

// ---------------------------------------------------------------------------------------------
// Refusals: nothing reaches a provider, nothing is written
// ---------------------------------------------------------------------------------------------

/// Both providers mocked and configured, the webhook's rate limit out of the way.
async fn refusal_setup() -> (Mock<Keycloak>, Mock<Auth0>, TestApp) {
    let kc = Mock::start(Keycloak::new(KC_ADMIN, KC_PASSWORD)).await;
    let a0 = Mock::start(Auth0::new(A0_CLIENT_ID, A0_CLIENT_SECRET, A0_AUDIENCE)).await;
    let mut settings = keycloak_env(&kc, KC_PASSWORD);
    settings.extend(auth0_env(&a0));
    settings.push(("WEBHOOK_API_MAX_ATTEMPTS".into(), "1000".into()));
    let app = sqlite_app(&settings).await;
    (kc, a0, app)
}

#[track_caller]
fn assert_untouched(kc: &Mock<Keycloak>, a0: &Mock<Auth0>) {
    assert!(kc.seen().is_empty(), "{:?}", trail(&kc.seen()));
    assert!(a0.seen().is_empty(), "{:?}", trail(&a0.seen()));
}

#[tokio::test]
async fn bad_signatures_are_unauthorized_and_reach_no_provider() {
    let (kc, a0, app) = refusal_setup().await;
    let (tenant, event) = provisioning(&app, "acme", "PREMIUM").await;
    let (active, active_event) = active_tenant(&app, "globex").await;
    let secret = secret_of(&event);
    let body = request_for(&tenant, "keycloak", "PREMIUM").to_string();
    let now = now_ms();
    let stamp = now.to_string();
    let good = signature::sign(secret.as_bytes(), &[body.as_bytes(), stamp.as_bytes()]);
    let sign = |key: &str, parts: &[&[u8]]| signature::sign(key.as_bytes(), parts);
    let with_context = sign(
        secret,
        &[
            body.as_bytes(),
            event["context"].as_str().unwrap().as_bytes(),
            stamp.as_bytes(),
        ],
    );
    let other_secret = sign(
        "0123456789abcdef0123456789abcdef",
        &[body.as_bytes(), stamp.as_bytes()],
    );
    let unknown = request_for(&uuid::Uuid::new_v4().to_string(), "keycloak", "PREMIUM").to_string();
    let no_id = json!({"tenant": {"identityProvider": "keycloak"}, "plan": {"tier": "PREMIUM"}})
        .to_string();

    let cases = [
        (
            "no x-signature",
            post_manage(&app, &body, None, Some(&stamp)).await,
        ),
        (
            "no x-timestamp",
            post_manage(&app, &body, Some(&good), None).await,
        ),
        (
            "another secret",
            post_manage(&app, &body, Some(&other_secret), Some(&stamp)).await,
        ),
        (
            "63 hex characters",
            post_manage(&app, &body, Some(&good[..63]), Some(&stamp)).await,
        ),
        (
            "not hex",
            post_manage(&app, &body, Some(&"zz".repeat(32)), Some(&stamp)).await,
        ),
        (
            "webhook style, with the context",
            post_manage(&app, &body, Some(&with_context), Some(&stamp)).await,
        ),
        (
            "timestamp not a number",
            call_at_text(&app, secret, &body, "yesterday").await,
        ),
        (
            "timestamp 60 s old",
            call_at(&app, secret, &body, now - 60_000).await,
        ),
        (
            "timestamp 60 s ahead",
            call_at(&app, secret, &body, now + 60_000).await,
        ),
        ("unknown tenant", call_at(&app, secret, &unknown, now).await),
        ("no tenant.id", call_at(&app, secret, &no_id, now).await),
        (
            "ACTIVE tenant, its result taken",
            call(
                &app,
                &active_event,
                &request_for(&active, "keycloak", "PREMIUM"),
            )
            .await,
        ),
    ];
    for (what, response) in &cases {
        assert_eq!(response.status, 401, "{what}: {}", response.text);
        response.assert_error(401, "UnauthorizedError");
    }
    assert_untouched(&kc, &a0);
    assert_eq!(spoc_of(&app, &tenant).await, Value::Null);
    assert_eq!(spoc_of(&app, &active).await, Value::Null);

    // The control: the same request, rightly signed, goes through.
    auth_id(&post_manage(&app, &body, Some(&good), Some(&stamp)).await);
    assert!(!kc.seen().is_empty());
}

/// `body` signed with `secret` over a `timestamp` given as text, and sent.
async fn call_at_text(app: &TestApp, secret: &str, body: &str, timestamp: &str) -> TestResponse {
    let signature = signature::sign(secret.as_bytes(), &[body.as_bytes(), timestamp.as_bytes()]);
    post_manage(app, body, Some(&signature), Some(timestamp)).await
}

#[tokio::test]
async fn bad_bodies_and_tenants_not_provisioning_are_refused_and_reach_no_provider() {
    let (kc, a0, app) = refusal_setup().await;
    let (tenant, event) = provisioning(&app, "acme", "PREMIUM").await;
    let secret = secret_of(&event);

    call_at(&app, secret, "{\"tenant\": {\"id\": ", now_ms())
        .await
        .assert_error(400, "SyntaxError");

    let plan = json!({"tier": "PREMIUM"});
    for (what, body, named) in [
        (
            "cognito",
            json!({"tenant": {"id": tenant, "identityProvider": "cognito"}, "plan": plan}),
            "identityProvider",
        ),
        (
            "no identityProvider",
            json!({"tenant": {"id": tenant}, "plan": plan}),
            "identityProvider",
        ),
        (
            "an extra property",
            json!({"tenant": {"id": tenant, "identityProvider": "keycloak"}, "plan": plan,
                   "subscription": {"plan": plan}}),
            "subscription",
        ),
    ] {
        let response = call(&app, &event, &body).await;
        assert_eq!(response.status, 422, "{what}: {}", response.text);
        response.assert_error(422, "UnprocessableEntityError");
        let details = &response.json()["error"]["details"];
        assert!(
            details.as_array().is_some_and(|d| !d.is_empty()),
            "{what}: {}",
            response.text
        );
        assert!(details.to_string().contains(named), "{what}: {details}");
    }
    assert_eq!(spoc_of(&app, &tenant).await, Value::Null);

    // A tenant being offboarded has a secret, of its TENANT_DEPROVISIONING event: 409.
    let (leaving, _) = active_tenant(&app, "globex").await;
    let (status, body) = app
        .post(
            &format!("/tenants/{leaving}/deprovision"),
            Some(&app.admin_token()),
            &json!({}),
        )
        .await;
    assert_eq!(status, 204, "{body}");
    let offboarding = wait_for_event_of(&app, &leaving, "TENANT_DEPROVISIONING").await;
    call(
        &app,
        &offboarding,
        &request_for(&leaving, "keycloak", "PREMIUM"),
    )
    .await
    .assert_error(409, "ConflictError");
    assert_eq!(spoc_of(&app, &leaving).await, Value::Null);
    assert_untouched(&kc, &a0);
}

#[tokio::test]
async fn the_call_is_rate_limited_with_the_webhook() {
    let app = TestApp::spawn_with(Db::Sqlite, &[("WEBHOOK_API_MAX_ATTEMPTS", "2")]).await;
    for _ in 0..2 {
        post_manage(&app, "{}", None, None)
            .await
            .assert_error(401, "UnauthorizedError");
    }
    let limited = post_manage(&app, "{}", None, None).await;
    limited.assert_error(429, "TooManyRequestsError");
    assert!(limited.header("retry-after").is_some(), "{limited:?}");
}
