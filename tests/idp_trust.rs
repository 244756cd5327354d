//! Who may steer `POST /manage/users` (docs/identity.md, "Who sets what"), tried as an attacker
//! would: a lead — anyone who signs up — posts identity-provider settings for its own tenant to
//! send the deployment's credentials to its server, or to put its client and user into another
//! realm; a tier of its choosing names the `master` realm. Each is refused with a clear 4xx, and
//! a recording server standing in for the attacker's receives nothing. An administrator's
//! tenant of its own provider still works, with its own credentials only, on an allowed host.
//! On SQLite and PostgreSQL.

mod common;
mod idp_mocks;
mod idp_support;
mod lifecycle_support;
mod rest_support;

use common::*;
use idp_mocks::*;
use idp_support::*;
use lifecycle_support::*;
use rest_support::{a_tenant, create, expect_error};

/// A verified lead with its tenant `key` (domain `<key>.io`) onboarded: (tenant id, lead token).
async fn lead_with_tenant(app: &TestApp, key: &str) -> (String, String) {
    let (_, tenant, token) = rest_support::lead_with_tenant(app, key, &format!("{key}.io")).await;
    (tenant["id"].as_str().unwrap().to_string(), token)
}

/// `POST /tenant-configs` of `key` for `tenant` with `token`.
async fn post_config(
    app: &TestApp,
    token: &str,
    tenant: &str,
    key: &str,
    value: Value,
) -> (StatusCode, Value) {
    let body = json!({"configKey": key, "configValue": value, "tenantId": tenant});
    app.post("/tenant-configs", Some(token), &body).await
}

async fn configs_of(app: &TestApp, tenant: &str) -> i64 {
    let path = format!("/tenant-configs/count?where[tenantId]={tenant}");
    let (status, body) = app.get(&path, Some(&app.admin_token())).await;
    assert_eq!(status, 200, "{body}");
    body["count"].as_i64().unwrap()
}

/// The lead's own provisioning of its tenant on `tier`, as the facade does it.
async fn lead_provisions(
    app: &TestApp,
    token: &str,
    tenant: &str,
    tier: &str,
) -> (StatusCode, Value) {
    app.post(
        &format!("/tenants/{tenant}/provision"),
        Some(token),
        &subscription(tier),
    )
    .await
}

/// The attacker's server: a stand-in that records every request it gets.
async fn attacker() -> Mock<Keycloak> {
    Mock::start(Keycloak::new("anyone", "anything")).await
}

both_dbs!(
    a_lead_cannot_steer_the_identity_provider,
    [("LEAD_KEY_IN_RESPONSE", "true")],
    |app| async move {
        let evil = attacker().await;
        let keycloak = Mock::start(Keycloak::new(KC_ADMIN, KC_PASSWORD)).await;
        let auth0 = Mock::start(Auth0::new(A0_CLIENT_ID, A0_CLIENT_SECRET, A0_AUDIENCE)).await;
        let mut env = keycloak_env(&keycloak, KC_PASSWORD);
        env.extend(auth0_env_at(&auth0.base));
        // Even a host the operator allows is not the lead's to choose.
        env.push(allowing(&[&evil.base]));
        env.push(("LEAD_KEY_IN_RESPONSE".into(), "true".into()));
        let app = app.restart_with(&refs(&env)).await;
        let (tenant, token) = lead_with_tenant(&app, "mallory").await;

        let attacks = [
            ("keycloak", json!({"host": format!("{}/x?y=", evil.base)})),
            (
                "keycloak",
                json!({"host": evil.base, "adminUsername": "a", "adminPassword": "b"}),
            ),
            (
                "keycloak",
                json!({"host": "http://169.254.169.254/latest/meta-data/"}),
            ),
            (
                "keycloak",
                json!({"realm": "victimrealm", "redirectUris": ["https://evil.test/*"]}),
            ),
            (
                "keycloak",
                json!({"clientId": "victim", "actionsEmail": false}),
            ),
            ("Keycloak", json!({"host": evil.base})),
            ("auth0", json!({"domain": evil.base})),
            (
                "auth0",
                json!({"organization": "victim", "connection": "evil"}),
            ),
        ];
        for (key, value) in attacks {
            let (status, body) = post_config(&app, &token, &tenant, key, value.clone()).await;
            expect_error(
                status,
                &body,
                403,
                "ForbiddenError",
                "a lead token cannot set",
            );
            let said = body["error"]["message"].as_str().unwrap();
            assert!(
                said.contains("operator or an administrator"),
                "{value}: {said}"
            );
        }
        assert_eq!(configs_of(&app, &tenant).await, 0, "nothing written");

        // What tms does not read is the lead's to write, as the facade does.
        let branding = json!({"logo_url": "https://mallory.io/logo.png"});
        let (status, body) = post_config(&app, &token, &tenant, "auth0", branding).await;
        assert_eq!(status, 200, "{body}");

        // The pipeline's calls make the user on the deployment's providers, in the tenant's own
        // realm and organisation; the attacker's server hears nothing.
        let (status, body) = lead_provisions(&app, &token, &tenant, "PREMIUM").await;
        assert_eq!(status, 204, "{body}");
        let event = wait_for_event_of(&app, &tenant, "TENANT_PROVISIONING").await;
        for provider in ["keycloak", "auth0"] {
            auth_id(&call(&app, &event, &request_for(&tenant, provider, "PREMIUM")).await);
        }
        let realms = keycloak.state(|k| k.realms.keys().cloned().collect::<Vec<_>>());
        assert_eq!(realms, ["mallory", "master"]);
        assert_eq!(keycloak.state(|k| k.realms["master"].users.len()), 0);
        let organisations = auth0.state(|a| a.organizations.clone());
        assert_eq!(organisations.len(), 1);
        assert_eq!(organisations[0]["name"], "mallory");
        assert!(evil.seen().is_empty(), "{:?}", trail(&evil.seen()));
    }
);

/// Auth0 of the deployment at `base` (a stand-in).
fn auth0_env_at(base: &str) -> Vec<(String, String)> {
    [
        ("AUTH0_DOMAIN", base),
        ("AUTH0_CLIENT_ID", A0_CLIENT_ID),
        ("AUTH0_CLIENT_SECRET", A0_CLIENT_SECRET),
        ("AUTH0_AUDIENCE", A0_AUDIENCE),
    ]
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .to_vec()
}

both_dbs!(
    tiers_outside_the_plans_and_reserved_keys_are_refused_at_provision,
    [("LEAD_KEY_IN_RESPONSE", "true")],
    |app| async move {
        let (tenant, token) = lead_with_tenant(&app, "mallory").await;
        for tier in ["master", "MASTER", "gold", "victimrealm"] {
            let (status, body) = lead_provisions(&app, &token, &tenant, tier).await;
            expect_error(status, &body, 422, "UnprocessableEntityError", "");
            assert_eq!(body["error"]["details"][0]["path"], "/plan/tier", "{body}");
            let said = body["error"]["details"][0]["message"].as_str().unwrap();
            assert!(said.contains("PREMIUM, STANDARD, BASIC"), "{said}");
        }
        assert_eq!(status_of(&app, &tenant).await, 1, "still PENDINGPROVISION");

        // A silo tenant's realm is its key: a key naming a pooled tier's realm (or master)
        // cannot be a silo tenant's; pooled, it is fine.
        for key in ["standard", "master"] {
            let (tenant, token) = lead_with_tenant(&app, key).await;
            let (status, body) = lead_provisions(&app, &token, &tenant, "PREMIUM").await;
            expect_error(status, &body, 422, "UnprocessableEntityError", "");
            let said = body["error"]["details"][0]["message"].as_str().unwrap();
            assert!(said.contains("silo tenant's realm"), "{said}");
            assert_eq!(status_of(&app, &tenant).await, 1);
            let (status, body) = lead_provisions(&app, &token, &tenant, "BASIC").await;
            assert_eq!(status, 204, "{body}");
        }
        let kinds: Vec<Value> = wait_for_events(&app, 2)
            .await
            .iter()
            .map(|e| e["tier"].clone())
            .collect();
        assert_eq!(
            kinds,
            [json!("BASIC"), json!("BASIC")],
            "only the pooled ones"
        );
    }
);

both_dbs!(
    the_tier_of_the_call_is_the_one_provisioned,
    |app| async move {
        let (kc, app) = with_keycloak(app).await;
        let (tenant, event) = provisioning(&app, "acme", "STANDARD").await;
        for tier in ["master", "PREMIUM", "gold"] {
            let response = call(&app, &event, &request_for(&tenant, "keycloak", tier)).await;
            response.assert_error(422, "UnprocessableEntityError");
            assert!(response.text.contains("/plan/tier"), "{}", response.text);
        }
        assert!(kc.seen().is_empty(), "{:?}", trail(&kc.seen()));
        let id = auth_id(&call(&app, &event, &request_for(&tenant, "keycloak", "standard")).await);
        assert_eq!(
            kc.state(|k| k.realms["standard"].users[0]["id"].clone()),
            json!(id)
        );
    }
);

both_dbs!(
    an_administrator_gives_a_tenant_its_own_provider,
    |app| async move {
        let deployment = Mock::start(Keycloak::new(KC_ADMIN, KC_PASSWORD)).await;
        let own = Mock::start(Keycloak::new("own-admin", "Own-password-0123")).await;
        let elsewhere = attacker().await;
        let mut env = keycloak_env(&deployment, KC_PASSWORD);
        env.push(allowing(&[&own.base]));
        let app = app.restart_with(&refs(&env)).await;
        let (tenant, event) = provisioning(&app, "acme", "STANDARD").await;
        let admin = app.admin_token();

        // Refused at the write, with what is wrong: a host off the allow-list, the cloud's
        // metadata address, a host without its credentials, credentials without their host,
        // the master realm, names on the deployment's provider.
        let refusals = [
            (
                json!({"host": elsewhere.base, "adminUsername": "a", "adminPassword": "b"}),
                "is not on IDP_ALLOWED_HOSTS",
            ),
            (
                json!({"host": "http://169.254.169.254", "adminUsername": "a",
                       "adminPassword": "b"}),
                "169.254.169.254:80 is not on IDP_ALLOWED_HOSTS",
            ),
            (json!({"host": own.base}), "come together"),
            (
                json!({"adminUsername": KC_ADMIN, "adminPassword": "guess"}),
                "come together",
            ),
            (
                json!({"host": own.base, "adminUsername": "own-admin",
                       "adminPassword": "Own-password-0123", "realm": "master"}),
                "realm must be a name other than master",
            ),
            (json!({"realm": "victimrealm"}), "of the tenant's own"),
            (
                json!({"host": format!("{}/x?y=", own.base), "adminUsername": "a",
                       "adminPassword": "b"}),
                "without credentials, query or fragment",
            ),
        ];
        for (value, message) in refusals {
            let (status, body) =
                post_config(&app, &admin, &tenant, "keycloak", value.clone()).await;
            expect_error(status, &body, 422, "UnprocessableEntityError", "");
            let said = body["error"]["message"].as_str().unwrap();
            assert!(said.contains(message), "{value}: {said}");
        }
        assert_eq!(configs_of(&app, &tenant).await, 0, "nothing written");

        // The tenant's own Keycloak, on an allowed host, with its own credentials.
        let settings = json!({"host": own.base, "adminUsername": "own-admin",
                              "adminPassword": "Own-password-0123", "realm": "acme-own",
                              "redirectUris": ["http://app.acme.io/*"]});
        let config = create(
            &app,
            &admin,
            "/tenant-configs",
            &json!({"configKey": "keycloak", "configValue": settings, "tenantId": tenant}),
        )
        .await;
        // A change keeps the rules too: the host moved off the allow-list is refused.
        let path = format!("/tenant-configs/{}", config["id"].as_str().unwrap());
        let (status, body) = app
            .patch(
                &path,
                Some(&admin),
                &json!({"configValue": {"host": elsewhere.base, "adminUsername": "a",
                                        "adminPassword": "b"}}),
            )
            .await;
        expect_error(
            status,
            &body,
            422,
            "UnprocessableEntityError",
            "IDP_ALLOWED_HOSTS",
        );

        let id = auth_id(&call(&app, &event, &request_for(&tenant, "keycloak", "STANDARD")).await);
        assert!(
            deployment.seen().is_empty(),
            "{:?}",
            trail(&deployment.seen())
        );
        assert!(
            elsewhere.seen().is_empty(),
            "{:?}",
            trail(&elsewhere.seen())
        );
        let seen = own.seen();
        assert_eq!(seen[0].form()["username"], "own-admin");
        assert_eq!(seen[0].form()["password"], "Own-password-0123");
        let realm = seen
            .iter()
            .find(|s| s.method == "POST" && s.path == "/admin/realms")
            .expect("the realm was made")
            .json();
        assert_eq!(realm["realm"], "acme-own");
        assert!(
            realm.get("smtpServer").is_none(),
            "the deployment's mail server and its password stay home: {realm}"
        );
        for s in &seen {
            let text = String::from_utf8_lossy(&s.body);
            for secret in [KC_PASSWORD, "mail-secret"] {
                assert!(!text.contains(secret), "{}: {text}", s.line());
            }
        }
        assert_eq!(
            own.state(|k| k.realms["acme-own"].users[0]["id"].clone()),
            json!(id)
        );
    }
);

// A config written before these rules held (straight into the table, as the original or an
// older tms could have left it) is checked again when used: the deployment's credentials
// never go to its host.
both_dbs!(
    a_stored_config_that_breaks_the_rules_is_refused_when_used,
    |app| async move {
        let deployment = Mock::start(Keycloak::new(KC_ADMIN, KC_PASSWORD)).await;
        let evil = attacker().await;
        let app = app
            .restart_with(&refs(&keycloak_env(&deployment, KC_PASSWORD)))
            .await;
        let (tenant, event) = provisioning(&app, "acme", "PREMIUM").await;
        let store = Sweeper::at(&app, &[], 0).await;
        for (i, value) in [
            json!({"host": format!("{}/x?y=", evil.base)}),
            json!({"host": evil.base, "adminUsername": "a", "adminPassword": "b"}),
            json!({"realm": "master"}),
        ]
        .into_iter()
        .enumerate()
        {
            let row: tms::store::Object = serde_json::from_value(
                json!({"configKey": "keycloak", "configValue": value, "tenantId": tenant}),
            )
            .unwrap();
            tms::store::crud::create(
                &mut store.db.conn(),
                &tms::model::TENANT_CONFIGS,
                &row,
                &tms::store::crud::Actor {
                    id: "before-the-rules".into(),
                    scope: tms::store::crud::Scope::All,
                    who: tms::audit::Who::system("before-the-rules"),
                },
            )
            .await
            .unwrap();
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            let response = call(&app, &event, &request_for(&tenant, "keycloak", "PREMIUM")).await;
            response.assert_error(422, "UnprocessableEntityError");
            assert!(evil.seen().is_empty(), "{i}: {:?}", trail(&evil.seen()));
            assert!(
                deployment.seen().is_empty(),
                "{i}: {:?}",
                trail(&deployment.seen())
            );
        }
        store.close().await;
    }
);

// An Auth0 of the tenant's own gets its own client credentials, never the deployment's.
both_dbs!(
    a_tenants_own_auth0_gets_its_own_credentials_only,
    |app| async move {
        let deployment = Mock::start(Auth0::new(A0_CLIENT_ID, A0_CLIENT_SECRET, A0_AUDIENCE)).await;
        let own_audience = "https://own.example/api/v2/";
        let own = Mock::start(Auth0::new("own-client", "own-secret", own_audience)).await;
        let mut env = auth0_env_at(&deployment.base);
        env.push(allowing(&[&own.base]));
        let app = app.restart_with(&refs(&env)).await;
        let tenant = a_tenant(&app, "acme").await;
        let admin = app.admin_token();
        let (status, body) = post_config(
            &app,
            &admin,
            &tenant,
            "auth0",
            json!({"domain": own.base, "clientId": "own-client"}),
        )
        .await;
        expect_error(
            status,
            &body,
            422,
            "UnprocessableEntityError",
            "come together",
        );
        create(
            &app,
            &admin,
            "/tenant-configs",
            &json!({"configKey": "auth0", "tenantId": tenant, "configValue":
                {"domain": own.base, "clientId": "own-client", "clientSecret": "own-secret",
                 "audience": own_audience, "organization": "acme-org"}}),
        )
        .await;
        let (status, body) = provision(&app, &tenant, &subscription("PREMIUM")).await;
        assert_eq!(status, 204, "{body}");
        let event = wait_for_event_of(&app, &tenant, "TENANT_PROVISIONING").await;
        auth_id(&call(&app, &event, &request_for(&tenant, "auth0", "PREMIUM")).await);
        assert!(
            deployment.seen().is_empty(),
            "{:?}",
            trail(&deployment.seen())
        );
        let seen = own.seen();
        let form = seen[0].form();
        assert_eq!(
            (form["client_id"].as_str(), form["client_secret"].as_str()),
            ("own-client", "own-secret")
        );
        assert!(
            seen.iter()
                .all(|s| !String::from_utf8_lossy(&s.body).contains(A0_CLIENT_SECRET))
        );
        assert_eq!(
            own.state(|a| a.organizations[0]["name"].clone()),
            "acme-org"
        );
    }
);
