//! Tokens of an identity provider (Keycloak, Auth0) against a running tms (docs/API.md, "Bearer
//! tokens"): a stand-in provider on 127.0.0.1:0 publishes a JSON Web Key Set with the RSA and EC
//! keys of `tests/jwks_keys/` and counts how often tms fetches it. tms runs on a manual clock, so
//! the tests move time past the refresh intervals instead of sleeping. Every scenario runs on
//! SQLite and on PostgreSQL.

mod common;
mod rest_support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::response::IntoResponse;
use common::*;
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use tms::auth::LEAD_PERMISSIONS;
use tms::clock::Clock;

const ISSUER: &str = "https://sso.tms.test/realms/acme";
const AUDIENCE: &str = "tms-api";
const CERTS: &str = "/realms/acme/protocol/openid-connect/certs";
/// The provider's id of the caller (`sub`).
const SUBJECT: &str = "f1c6a9e4-1b2c-4d5e-8f90-a1b2c3d4e5f6";
/// What `JWT_JWKS_MIN_REFRESH_INTERVAL` is left at: at most one fetch per this.
const MIN_REFRESH: Duration = Duration::from_secs(30);

/// Runs each scenario `fn name(db, test)` as `name::sqlite` and `name::postgres`.
macro_rules! on_both_dbs {
    ($($scenario:ident),* $(,)?) => {$(
        mod $scenario {
            #[tokio::test]
            async fn sqlite() {
                super::$scenario(
                    crate::common::Db::Sqlite,
                    concat!(module_path!(), "::sqlite"),
                )
                .await;
            }

            #[tokio::test]
            async fn postgres() {
                super::$scenario(
                    crate::common::Db::Postgres,
                    concat!(module_path!(), "::postgres"),
                )
                .await;
            }
        }
    )*};
}

on_both_dbs!(
    provider_tokens_open_what_their_permissions_allow,
    bad_provider_tokens_are_refused,
    a_lead_id_in_a_provider_token_makes_no_lead,
    rotated_keys_are_fetched_and_removed_keys_refused,
    random_kids_fetch_at_most_once_per_interval,
    without_the_keys_provider_tokens_answer_503,
);

// ---------------------------------------------------------------------------------------------
// The provider, its keys, and tms configured for it
// ---------------------------------------------------------------------------------------------

/// What the stand-in provider answers on its JWKS URL.
struct Published {
    keys: Vec<Value>,
    status: u16,
    cache_control: Option<String>,
}

/// A JWKS endpoint as Keycloak serves one, counting its fetches.
struct Provider {
    url: String,
    published: Arc<Mutex<Published>>,
    fetches: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Provider {
    async fn start(keys: Vec<Value>) -> Provider {
        let published = Arc::new(Mutex::new(Published {
            keys,
            status: 200,
            cache_control: None,
        }));
        let fetches = Arc::new(AtomicUsize::new(0));
        let (answer, count) = (Arc::clone(&published), Arc::clone(&fetches));
        let router = axum::Router::new().route(
            CERTS,
            axum::routing::get(move || {
                count.fetch_add(1, Ordering::SeqCst);
                let published = answer.lock().unwrap();
                let status = axum::http::StatusCode::from_u16(published.status).unwrap();
                let mut response =
                    (status, axum::Json(json!({ "keys": published.keys }))).into_response();
                if let Some(value) = &published.cache_control {
                    response
                        .headers_mut()
                        .insert("cache-control", value.parse().unwrap());
                }
                std::future::ready(response)
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}{CERTS}", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            axum::serve(listener, router).await.unwrap();
        });
        Provider {
            url,
            published,
            fetches,
            task,
        }
    }

    fn publish(&self, keys: Vec<Value>) {
        self.published.lock().unwrap().keys = keys;
    }

    fn answer_with(&self, status: u16) {
        self.published.lock().unwrap().status = status;
    }

    fn cache_control(&self, value: &str) {
        self.published.lock().unwrap().cache_control = Some(value.to_string());
    }

    fn fetches(&self) -> usize {
        self.fetches.load(Ordering::SeqCst)
    }
}

impl Drop for Provider {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A signing key of the provider.
struct Signer {
    kid: &'static str,
    alg: Algorithm,
    key: EncodingKey,
}

fn key_file(name: &str) -> Vec<u8> {
    let path = format!("{}/tests/jwks_keys/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|err| panic!("{path}: {err}"))
}

impl Signer {
    fn rsa(file: &str, kid: &'static str) -> Signer {
        Signer {
            kid,
            alg: Algorithm::RS256,
            key: EncodingKey::from_rsa_pem(&key_file(file)).unwrap(),
        }
    }

    fn ec(file: &str, kid: &'static str) -> Signer {
        Signer {
            kid,
            alg: Algorithm::ES256,
            key: EncodingKey::from_ec_pem(&key_file(file)).unwrap(),
        }
    }

    /// The public key as the provider publishes it.
    fn jwk(&self) -> Value {
        let mut jwk =
            serde_json::to_value(Jwk::from_encoding_key(&self.key, self.alg).unwrap()).unwrap();
        jwk["kid"] = json!(self.kid);
        jwk["use"] = json!("sig");
        jwk
    }

    fn sign(&self, claims: &Value) -> String {
        self.sign_as(self.alg, Some(self.kid), claims)
    }

    /// A token with the header's `alg` and `kid` chosen by the caller.
    fn sign_as(&self, alg: Algorithm, kid: Option<&str>, claims: &Value) -> String {
        let mut header = Header::new(alg);
        header.kid = kid.map(str::to_string);
        jsonwebtoken::encode(&header, claims, &self.key).unwrap()
    }
}

/// A scenario: tms on a manual clock, configured for the provider, which publishes `rsa` and
/// `ec`; `rotated` is a key it publishes later.
struct World {
    app: TestApp,
    idp: Provider,
    rsa: Signer,
    ec: Signer,
    rotated: Signer,
}

impl World {
    /// `None` when `db` is not available (the variant is skipped and recorded as such).
    async fn start(db: Db, test: &str, overrides: &[(&str, &str)]) -> Option<World> {
        Self::start_with(db, test, overrides, |_| {}).await
    }

    /// [`World::start`], with the provider prepared by `before` before tms starts.
    async fn start_with(
        db: Db,
        test: &str,
        overrides: &[(&str, &str)],
        before: impl FnOnce(&Provider),
    ) -> Option<World> {
        if !db_available(db, test) {
            return None;
        }
        let (rsa, ec) = (
            Signer::rsa("rsa-a.pem", "rsa-a"),
            Signer::ec("ec-a.pem", "ec-a"),
        );
        let idp = Provider::start(vec![rsa.jwk(), ec.jwk()]).await;
        before(&idp);
        let mut settings = vec![
            ("JWT_JWKS_URL", idp.url.as_str()),
            ("JWT_JWKS_ISSUER", ISSUER),
            ("JWT_AUDIENCE", AUDIENCE),
        ];
        settings.extend_from_slice(overrides);
        let clock = Clock::manual(chrono::Utc::now());
        let app = TestApp::spawn_on_clock(Storage::new(db), &settings, clock).await;
        Some(World {
            app,
            idp,
            rsa,
            ec,
            rotated: Signer::rsa("rsa-b.pem", "rsa-b"),
        })
    }

    /// The claims of a good token at the server's time, with `extra` on top (`null` removes).
    fn claims(&self, permissions: &[&str], extra: Value) -> Value {
        let now = self.app.clock.unix_seconds();
        let mut claims = json!({"sub": SUBJECT, "iss": ISSUER, "aud": [AUDIENCE, "account"],
            "exp": now + 300, "iat": now, "azp": "tms-ui", "permissions": permissions});
        for (name, value) in extra.as_object().unwrap() {
            if value.is_null() {
                claims.as_object_mut().unwrap().remove(name);
            } else {
                claims[name] = value.clone();
            }
        }
        claims
    }

    /// `GET /tenants/count` (ViewTenant 10207) with `token`.
    async fn count(&self, token: &str) -> (StatusCode, Value) {
        self.app.get("/tenants/count", Some(token)).await
    }

    /// Asserts that `token` is refused with 401 and the LoopBack body; returns the message.
    async fn refused(&self, token: &str, what: &str) -> String {
        let (status, body) = self.count(token).await;
        assert_eq!(status, 401, "{what}: {body}");
        assert_loopback_error(&body, 401, "UnauthorizedError");
        body["error"]["message"].as_str().unwrap().to_string()
    }

    fn advance(&self, by: Duration) {
        self.app.clock.advance(by);
    }
}

// ---------------------------------------------------------------------------------------------
// Scenarios
// ---------------------------------------------------------------------------------------------

async fn provider_tokens_open_what_their_permissions_allow(db: Db, test: &str) {
    let Some(w) = World::start(db, test, &[]).await else {
        return;
    };
    assert_eq!(w.idp.fetches(), 1, "the keys are fetched at start-up");
    for signer in [&w.rsa, &w.ec] {
        let token = signer.sign(&w.claims(&["10207"], json!({})));
        let (status, body) = w.count(&token).await;
        assert_eq!(
            (status.as_u16(), body),
            (200, json!({"count": 0})),
            "{}",
            signer.kid
        );
        let without = signer.sign(&w.claims(&["10203"], json!({})));
        let (status, body) = w.count(&without).await;
        assert_eq!(status, 403, "{}: {body}", signer.kid);
        assert_loopback_error(&body, 403, "ForbiddenError");
    }
    // The caller is the token's sub: it stamps what the token creates.
    let creator = w.rsa.sign(&w.claims(&["10204", "10207"], json!({})));
    let (status, tenant) = w
        .app
        .post(
            "/tenants",
            Some(&creator),
            &json!({"name": "Globex", "key": "globex", "domains": ["globex.com"],
                "contact": {"firstName": "Hank", "lastName": "Scorpio",
                    "email": "hank@globex.com", "isPrimary": true}}),
        )
        .await;
    assert_eq!(status, 200, "{tenant}");
    assert_eq!(tenant["createdBy"], SUBJECT, "{tenant}");
    // An audience among several accepted, given as a string.
    let single = w.ec.sign(&w.claims(&["10207"], json!({"aud": AUDIENCE})));
    assert_eq!(w.count(&single).await.0, 200);

    // tms's own HS256 tokens work exactly as before, beside them.
    assert_eq!(w.count(&w.app.admin_token()).await.0, 200);
    assert_eq!(w.count(&w.app.token(&["10203"])).await.0, 403);
    assert_eq!(w.count(&arc_token("user", "user-tenant")).await.0, 200);
    assert_eq!(w.idp.fetches(), 1, "known keys are not fetched again");
}

async fn bad_provider_tokens_are_refused(db: Db, test: &str) {
    let Some(w) = World::start(db, test, &[]).await else {
        return;
    };
    let now = w.app.clock.unix_seconds();
    let good = |extra: Value| w.rsa.sign(&w.claims(&["10207"], extra));
    for (extra, message) in [
        (
            json!({"iss": "https://sso.tms.test/realms/other"}),
            "TokenInvalid: wrong issuer",
        ),
        // tms's own issuer is not the provider's.
        (json!({"iss": JWT_ISSUER}), "TokenInvalid: wrong issuer"),
        (json!({"aud": "account"}), "TokenInvalid: wrong audience"),
        (json!({"aud": null}), "TokenInvalid: no aud"),
        (json!({"exp": null}), "TokenInvalid: no exp"),
        (json!({"exp": now - 1}), "TokenExpired"),
        (
            json!({"nbf": now + 3600}),
            "TokenInvalid: not valid yet (nbf)",
        ),
        (
            json!({"iat": now + 3600}),
            "TokenInvalid: issued in the future (iat)",
        ),
        (json!({"sub": null}), "TokenInvalid: no caller id"),
    ] {
        assert_eq!(
            w.refused(&good(extra.clone()), &extra.to_string()).await,
            message
        );
    }
    let claims = w.claims(&["10207"], json!({}));
    // Algorithm confusion: HS256 signed with the provider's RSA public key as the secret, with
    // the key's kid; the EC key's kid on an RS256 token; an RSA key used with PS256.
    let public_pem = EncodingKey::from_secret(&key_file("rsa-a.pub.pem"));
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some("rsa-a".into());
    let forged = jsonwebtoken::encode(&header, &claims, &public_pem).unwrap();
    assert_eq!(
        w.refused(&forged, "HS256 with the public key").await,
        "TokenInvalid: bad signature"
    );
    for (token, what) in [
        (
            w.rsa.sign_as(Algorithm::RS256, Some("ec-a"), &claims),
            "EC kid, RS256",
        ),
        (
            w.ec.sign_as(Algorithm::ES256, Some("rsa-a"), &claims),
            "RSA kid, ES256",
        ),
        (
            w.rsa.sign_as(Algorithm::PS256, Some("rsa-a"), &claims),
            "RS256 key, PS256",
        ),
    ] {
        assert_eq!(
            w.refused(&token, what).await,
            "TokenInvalid: algorithm not allowed"
        );
    }
    // alg none, a token without kid, a key the provider does not have.
    let unsigned = format!(
        "{}.{}.",
        b64(&json!({"alg": "none", "typ": "JWT", "kid": "rsa-a"})),
        b64(&claims)
    );
    assert!(
        w.refused(&unsigned, "alg none")
            .await
            .starts_with("TokenInvalid")
    );
    let no_kid = w.rsa.sign_as(Algorithm::RS256, None, &claims);
    assert_eq!(
        w.refused(&no_kid, "no kid").await,
        "TokenInvalid: no key id (kid)"
    );
    let stranger = w.rotated.sign(&claims);
    assert_eq!(
        w.refused(&stranger, "unknown kid").await,
        "TokenInvalid: unknown key (kid)"
    );
    // A signature that does not match the key of its kid.
    let impostor = w.rotated.sign_as(Algorithm::RS256, Some("rsa-a"), &claims);
    assert_eq!(
        w.refused(&impostor, "wrong key").await,
        "TokenInvalid: bad signature"
    );
    assert_eq!(
        w.idp.fetches(),
        1,
        "nothing above was worth a fetch within the interval"
    );

    // Expiry follows tms's clock.
    let token = good(json!({}));
    assert_eq!(w.count(&token).await.0, 200);
    w.advance(Duration::from_secs(300));
    assert_eq!(
        w.refused(&token, "expired on the clock").await,
        "TokenExpired"
    );
}

fn b64(value: &Value) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(value.to_string())
}

async fn a_lead_id_in_a_provider_token_makes_no_lead(db: Db, test: &str) {
    let Some(w) = World::start(db, test, &[("LEAD_KEY_IN_RESPONSE", "true")]).await else {
        return;
    };
    let sign_up = |name: &'static str| {
        json!({"firstName": name, "lastName": "L", "email": format!("{name}@{name}.com"),
            "companyName": name})
    };
    let (status, lead) = w.app.post("/leads", None, &sign_up("ada")).await;
    assert_eq!(status, 200, "{lead}");
    let lead_id = lead["id"].as_str().unwrap().to_string();
    let verified = w
        .app
        .raw(
            Method::POST,
            &format!("/leads/{lead_id}/verify"),
            lead["key"].as_str(),
            "",
            None,
        )
        .await;
    assert_eq!(verified.status, 200, "{}", verified.text);
    let lead_token = verified.json()["token"].as_str().unwrap().to_string();
    rest_support::create_lead(&w.app, &sign_up("bob")).await;

    // A provider's token shaped like the lead's own: its ids, its leadId and its codes.
    let forged = w.rsa.sign(&w.claims(
        LEAD_PERMISSIONS,
        json!({"sub": lead_id, "id": lead_id, "userTenantId": lead_id, "leadId": lead_id}),
    ));
    // Not scoped as a lead: it reads what its codes allow, every lead (the lead's own token
    // reads its lead only).
    let (status, leads) = w.app.get("/leads", Some(&forged)).await;
    assert_eq!(status, 200, "{leads}");
    assert_eq!(leads.as_array().unwrap().len(), 2, "{leads}");
    let (status, own) = w.app.get("/leads", Some(&lead_token)).await;
    assert_eq!(
        (status.as_u16(), own.as_array().unwrap().len()),
        (200, 1),
        "{own}"
    );
    // And without the lead's powers: it cannot onboard the lead's tenant.
    let onboarding = json!({"key": "ada", "domains": ["ada.com"]});
    let path = format!("/leads/{lead_id}/tenants");
    let (status, body) = w.app.post(&path, Some(&forged), &onboarding).await;
    assert_eq!(status, 401, "{body}");
    assert_loopback_error(&body, 401, "UnauthorizedError");
    // A malformed leadId is not read either (tms's own tokens would be refused for it).
    let odd = w
        .rsa
        .sign(&w.claims(&["10207"], json!({"leadId": "not-a-lead"})));
    assert_eq!(w.count(&odd).await.0, 200);
    // The lead's own token still onboards it.
    let (status, tenant) = w.app.post(&path, Some(&lead_token), &onboarding).await;
    assert_eq!(status, 200, "{tenant}");
}

async fn rotated_keys_are_fetched_and_removed_keys_refused(db: Db, test: &str) {
    // Keycloak's way: the realm's roles as the permission codes; a short max-age.
    let Some(w) = World::start_with(
        db,
        test,
        &[("JWT_PERMISSIONS_CLAIM", "realm_access.roles")],
        |idp| idp.cache_control("public, max-age=60"),
    )
    .await
    else {
        return;
    };
    let token = |signer: &Signer| {
        signer.sign(&w.claims(
            &[],
            json!({"permissions": null, "realm_access": {"roles": ["10207", "offline_access"]}}),
        ))
    };
    assert_eq!(w.count(&token(&w.rsa)).await.0, 200);
    assert_eq!(w.idp.fetches(), 1);

    // The provider adds a key. Right after a fetch its tokens wait for the next one.
    w.idp
        .publish(vec![w.rsa.jwk(), w.ec.jwk(), w.rotated.jwk()]);
    w.refused(&token(&w.rotated), "within the interval").await;
    assert_eq!(w.idp.fetches(), 1);
    w.advance(MIN_REFRESH);
    assert_eq!(
        w.count(&token(&w.rotated)).await.0,
        200,
        "fetched for its kid"
    );
    assert_eq!(w.idp.fetches(), 2);
    assert_eq!(
        w.count(&token(&w.rsa)).await.0,
        200,
        "the old key still counts"
    );

    // The provider drops the old key: refused once tms has fetched again, which it does once
    // the keys are older than the provider's max-age (60 s, shorter than the 300 s default).
    w.idp.publish(vec![w.rotated.jwk(), w.ec.jwk()]);
    w.advance(Duration::from_secs(59));
    assert_eq!(w.count(&token(&w.rsa)).await.0, 200);
    assert_eq!(w.idp.fetches(), 2, "still fresh");
    w.advance(Duration::from_secs(2));
    // Stale: this request is answered with the keys in force, the set is renewed beside it.
    assert_eq!(w.count(&token(&w.rsa)).await.0, 200);
    for _ in 0..200 {
        if w.idp.fetches() == 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(w.idp.fetches(), 3, "stale keys are fetched again");
    assert_eq!(
        w.refused(&token(&w.rsa), "removed").await,
        "TokenInvalid: unknown key (kid)"
    );
    assert_eq!(w.count(&token(&w.rotated)).await.0, 200);
    assert_eq!(w.count(&token(&w.ec)).await.0, 200);
    assert_eq!(w.idp.fetches(), 3);
}

async fn random_kids_fetch_at_most_once_per_interval(db: Db, test: &str) {
    let Some(w) = World::start(db, test, &[]).await else {
        return;
    };
    let claims = w.claims(&["10207"], json!({}));
    let flood = || async {
        let tokens: Vec<String> = (0..60)
            .map(|_| {
                let kid = uuid::Uuid::new_v4().to_string();
                w.rsa.sign_as(Algorithm::RS256, Some(&kid), &claims)
            })
            .collect();
        let answers =
            futures_util::future::join_all(tokens.iter().map(|token| w.count(token))).await;
        for (status, body) in answers {
            assert_eq!(status, 401, "{body}");
        }
    };
    flood().await;
    assert_eq!(
        w.idp.fetches(),
        1,
        "no fetch within the interval after start-up"
    );
    w.advance(MIN_REFRESH);
    flood().await;
    assert_eq!(w.idp.fetches(), 2, "one fetch for the whole flood");
    w.advance(MIN_REFRESH / 2);
    flood().await;
    assert_eq!(w.idp.fetches(), 2);
    assert_eq!(w.count(&w.rsa.sign(&claims)).await.0, 200);
    assert_eq!(w.idp.fetches(), 2);
}

async fn without_the_keys_provider_tokens_answer_503(db: Db, test: &str) {
    let (logs, _guard) = capture_logs();
    let Some(w) = World::start_with(db, test, &[], |idp| idp.answer_with(500)).await else {
        return;
    };
    assert_eq!(w.idp.fetches(), 1);
    let text = logs.text();
    assert!(
        text.contains("JWT_JWKS_URL: cannot load the identity provider's keys: it answered 500"),
        "{text}"
    );
    let token = w.rsa.sign(&w.claims(&["10207"], json!({})));
    let answer = w.app.get_raw("/tenants/count", Some(&token)).await;
    answer.assert_error(503, "ServiceUnavailableError");
    let retry: u64 = answer.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=MIN_REFRESH.as_secs()).contains(&retry), "{retry}");
    // tms's own tokens do not need the provider.
    assert_eq!(w.count(&w.app.admin_token()).await.0, 200);

    // Tried again once the interval has passed, when such a token comes.
    w.advance(MIN_REFRESH);
    assert_eq!(
        w.app.get_raw("/tenants/count", Some(&token)).await.status,
        503
    );
    assert_eq!(w.idp.fetches(), 2);
    assert!(
        logs.text()
            .contains("still no keys from the identity provider")
    );

    // The provider is back: its tokens pass once the next fetch may go.
    w.idp.answer_with(200);
    assert_eq!(
        w.app.get_raw("/tenants/count", Some(&token)).await.status,
        503
    );
    assert_eq!(w.idp.fetches(), 2);
    w.advance(MIN_REFRESH);
    assert_eq!(w.count(&token).await.0, 200);
    assert_eq!(w.idp.fetches(), 3);
    assert!(logs.text().contains("identity provider keys loaded"));
}
