//! Helpers of the tests of `POST /manage/users` (`manage_users.rs`, `idp_trust.rs`): the
//! environment of the Keycloak and Auth0 stand-ins, tenants being provisioned, and calls signed
//! as a pipeline signs them.
//!
//! Used next to the harness: `mod common; mod idp_mocks; mod lifecycle_support; mod
//! rest_support; mod idp_support; use idp_support::*;`.
#![allow(dead_code)]

use crate::common::*;
use crate::idp_mocks::*;
use crate::lifecycle_support::*;
use crate::rest_support::{a_tenant, create, keys_of};
use tms::domain::signature;

pub const KC_ADMIN: &str = "tms-admin";
pub const KC_PASSWORD: &str = "Kc-admin-password-0123";
pub const A0_CLIENT_ID: &str = "tms-m2m-client-0123";
pub const A0_CLIENT_SECRET: &str = "A0-client-secret-0123456789abcdef";
pub const A0_AUDIENCE: &str = "https://tms-test.eu.auth0.com/api/v2/";
pub const KC_TOKEN: &str = "/realms/master/protocol/openid-connect/token";
pub const A0_TOKEN: &str = "/oauth/token";

/// tms's own mail server, which realms tms creates are given for their mail (nothing listens
/// there: the tests only look at what Keycloak is told).
pub const SMTP_URL: &str = "smtp://mailer:mail-secret@127.0.0.1:2525?tls=none";

pub fn keycloak_env(kc: &Mock<Keycloak>, password: &str) -> Vec<(String, String)> {
    [
        ("KEYCLOAK_HOST", kc.base.as_str()),
        ("KEYCLOAK_ADMIN_USERNAME", KC_ADMIN),
        ("KEYCLOAK_ADMIN_PASSWORD", password),
        ("SMTP_URL", SMTP_URL),
    ]
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .to_vec()
}

pub fn auth0_env(a0: &Mock<Auth0>) -> Vec<(String, String)> {
    [
        ("AUTH0_DOMAIN", a0.base.as_str()),
        ("AUTH0_CLIENT_ID", A0_CLIENT_ID),
        ("AUTH0_CLIENT_SECRET", A0_CLIENT_SECRET),
        ("AUTH0_AUDIENCE", A0_AUDIENCE),
    ]
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .to_vec()
}

/// `IDP_ALLOWED_HOSTS` allowing the hosts and ports of `bases` (`http://127.0.0.1:<port>`).
pub fn allowing(bases: &[&str]) -> (String, String) {
    let hosts: Vec<&str> = bases
        .iter()
        .map(|b| b.trim_start_matches("http://").trim_end_matches('/'))
        .collect();
    ("IDP_ALLOWED_HOSTS".to_string(), hosts.join(","))
}

pub fn refs(settings: &[(String, String)]) -> Vec<(&str, &str)> {
    settings
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect()
}

/// A Keycloak mock with the test admin, and the app of `both_dbs!` restarted to use it.
pub async fn with_keycloak(app: TestApp) -> (Mock<Keycloak>, TestApp) {
    let kc = Mock::start(Keycloak::new(KC_ADMIN, KC_PASSWORD)).await;
    let app = app
        .restart_with(&refs(&keycloak_env(&kc, KC_PASSWORD)))
        .await;
    (kc, app)
}

/// A fresh Auth0 mock and the app of `both_dbs!` restarted to use it.
pub async fn with_auth0(app: TestApp) -> (Mock<Auth0>, TestApp) {
    let a0 = Mock::start(Auth0::new(A0_CLIENT_ID, A0_CLIENT_SECRET, A0_AUDIENCE)).await;
    let app = app.restart_with(&refs(&auth0_env(&a0))).await;
    (a0, app)
}

/// A server on SQLite with `settings`.
pub async fn sqlite_app(settings: &[(String, String)]) -> TestApp {
    TestApp::spawn_with(Db::Sqlite, &refs(settings)).await
}

/// Onboards `key` and starts its provisioning on `tier`: its id and `TENANT_PROVISIONING` event.
pub async fn provisioning(app: &TestApp, key: &str, tier: &str) -> (String, Value) {
    let tenant = a_tenant(app, key).await;
    let (status, body) = provision(app, &tenant, &subscription(tier)).await;
    assert_eq!(status, 204, "{body}");
    let event = wait_for_event_of(app, &tenant, "TENANT_PROVISIONING").await;
    (tenant, event)
}

/// A tenant provisioned on PREMIUM and made ACTIVE by its pipeline's signed result (its secret
/// is then deleted): its id and its provisioning event.
pub async fn active_tenant(app: &TestApp, key: &str) -> (String, Value) {
    let (tenant, event) = provisioning(app, key, "PREMIUM").await;
    let response = send(app, &report(&event, json!({"status": 1}))).await;
    assert_eq!(response.status, 204, "{}", response.text);
    assert_eq!(status_of(app, &tenant).await, 0, "ACTIVE");
    (tenant, event)
}

pub fn request_for(tenant: &str, provider: &str, tier: &str) -> Value {
    json!({"tenant": {"id": tenant, "identityProvider": provider}, "plan": {"tier": tier}})
}

pub fn secret_of(event: &Value) -> &str {
    event["secret"].as_str().expect("the event has a secret")
}

/// `POST /manage/users` with `body` as it is and the signature headers given.
pub async fn post_manage(
    app: &TestApp,
    body: &str,
    signature: Option<&str>,
    timestamp: Option<&str>,
) -> TestResponse {
    post_signed(app, "/manage/users", body, signature, timestamp).await
}

/// `body` signed with `secret` as a pipeline signs it, timestamped `at_ms`, and sent.
pub async fn call_at(app: &TestApp, secret: &str, body: &str, at_ms: i64) -> TestResponse {
    let timestamp = at_ms.to_string();
    let signature = signature::sign(secret.as_bytes(), &[body.as_bytes(), timestamp.as_bytes()]);
    post_manage(app, body, Some(&signature), Some(&timestamp)).await
}

/// `body` signed now with the secret of `event`, and sent.
pub async fn call(app: &TestApp, event: &Value, body: &Value) -> TestResponse {
    call_at(app, secret_of(event), &body.to_string(), now_ms()).await
}

/// The `authId` of a 200 `{"authId": …}`.
#[track_caller]
pub fn auth_id(response: &TestResponse) -> String {
    assert_eq!(response.status, 200, "{}", response.text);
    let body = response.json();
    assert_eq!(keys_of(&body), ["authId"], "{body}");
    body["authId"]
        .as_str()
        .filter(|id| !id.is_empty())
        .unwrap_or_else(|| panic!("no authId: {body}"))
        .to_string()
}

pub async fn spoc_of(app: &TestApp, tenant: &str) -> Value {
    let (status, body) = app
        .get(&format!("/tenants/{tenant}"), Some(&app.admin_token()))
        .await;
    assert_eq!(status, 200, "{body}");
    body["spocUserId"].clone()
}

/// Every request but the token requests carried `Bearer <token>`, the one token issued.
#[track_caller]
pub fn assert_bearer(seen: &[Seen], token_path: &str, tokens: &[String]) {
    assert_eq!(tokens.len(), 1, "one token issued: {tokens:?}");
    for s in seen.iter().filter(|s| s.path != token_path) {
        assert_eq!(s.bearer(), Some(tokens[0].as_str()), "{}", s.line());
    }
}

/// A port on 127.0.0.1 nothing listens on.
pub fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// `POST /tenant-configs` of `key` for `tenant`.
pub async fn configure(app: &TestApp, tenant: &str, key: &str, value: Value) {
    let body = json!({"configKey": key, "configValue": value, "tenantId": tenant});
    create(app, &app.admin_token(), "/tenant-configs", &body).await;
}
