//! Tests of the identity provider's keys and claims without a network: which published keys
//! are trusted and for which algorithm, the caller and permissions a token names, the cache
//! lifetime the provider asks for.

use super::*;
use crate::auth::{CLOCK_SKEW_SECS, JwtKeys, LEAD_PERMISSIONS};
use jsonwebtoken::EncodingKey;
use secrecy::SecretString;
use serde_json::json;

const ISSUER: &str = "https://sso.example.com/realms/acme";
const AUDIENCE: &str = "tms";
const NOW: i64 = 2_000_000_000;

fn pem(name: &str) -> Vec<u8> {
    let path = format!("{}/tests/jwks_keys/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|err| panic!("{path}: {err}"))
}

fn rsa(name: &str) -> EncodingKey {
    EncodingKey::from_rsa_pem(&pem(name)).unwrap()
}

fn ec() -> EncodingKey {
    EncodingKey::from_ec_pem(&pem("ec-a.pem")).unwrap()
}

/// The public JWK of `key` as a provider publishes it, with `kid` and `fields` on top
/// (`"alg": null` removes the algorithm).
fn jwk(key: &EncodingKey, alg: Algorithm, kid: &str, fields: Value) -> Value {
    let mut jwk = serde_json::to_value(Jwk::from_encoding_key(key, alg).unwrap()).unwrap();
    let object = jwk.as_object_mut().unwrap();
    object.insert("kid".into(), json!(kid));
    object.insert("use".into(), json!("sig"));
    for (name, value) in fields.as_object().unwrap() {
        if value.is_null() {
            object.remove(name);
        } else {
            object.insert(name.clone(), value.clone());
        }
    }
    jwk
}

fn settings() -> JwksConfig {
    JwksConfig {
        // Nothing listens there: these tests never fetch.
        url: "http://127.0.0.1:9/certs".into(),
        issuer: ISSUER.into(),
        audiences: vec![AUDIENCE.into(), "other-api".into()],
        permissions_claim: "permissions".into(),
        refresh_interval: Duration::from_secs(300),
        min_refresh_interval: Duration::from_secs(30),
    }
}

/// A provider whose keys `keys` were fetched just now, on a manual clock at [`NOW`].
fn provider(keys: &[Value]) -> (Arc<Jwks>, Clock) {
    let clock = Clock::manual(chrono::DateTime::from_timestamp(NOW, 0).unwrap());
    let jwks = Jwks::new(settings(), clock.clone()).unwrap();
    let body = serde_json::to_vec(&json!({ "keys": keys })).unwrap();
    let now = jwks.now_ms();
    jwks.install(
        Fetched {
            keys: key_set(&body).unwrap(),
            max_age: None,
        },
        now,
    );
    jwks.write().attempted_at = Some(now);
    (jwks, clock)
}

fn claims(extra: Value) -> Value {
    let now = NOW as u64;
    let mut claims = json!({"sub": "user-1", "iss": ISSUER, "aud": AUDIENCE,
        "exp": now + 600, "iat": now, "permissions": ["10207"]});
    for (name, value) in extra.as_object().unwrap() {
        if value.is_null() {
            claims.as_object_mut().unwrap().remove(name);
        } else {
            claims[name] = value.clone();
        }
    }
    claims
}

fn sign(alg: Algorithm, kid: Option<&str>, key: &EncodingKey, claims: &Value) -> String {
    let mut header = Header::new(alg);
    header.kid = kid.map(str::to_string);
    jsonwebtoken::encode(&header, claims, key).unwrap()
}

fn keys_with(jwks: &Arc<Jwks>) -> JwtKeys {
    JwtKeys::new(&SecretString::from("s".repeat(32)), "tms").with_jwks(Some(Arc::clone(jwks)))
}

async fn refused(jwks: &Arc<Jwks>, token: &str) -> String {
    match keys_with(jwks).authenticate(token).await {
        Err(TokenError::Invalid(AuthError(message))) => message,
        other => panic!("expected a 401, got {other:?}"),
    }
}

fn pinned(raw: &Value) -> Result<Algorithm, String> {
    pin(raw).map(|(_, key)| key.algorithm)
}

#[test]
fn published_keys_are_pinned_to_the_one_algorithm_they_fit() {
    let (rsa_a, ec) = (rsa("rsa-a.pem"), ec());
    let rsa_key = |fields: Value| jwk(&rsa_a, Algorithm::RS256, "r", fields);
    let ec_key = |fields: Value| jwk(&ec, Algorithm::ES256, "e", fields);
    assert_eq!(pinned(&rsa_key(json!({}))), Ok(Algorithm::RS256));
    assert_eq!(pinned(&rsa_key(json!({"alg": null}))), Ok(Algorithm::RS256));
    assert_eq!(
        pinned(&rsa_key(json!({"alg": "PS256"}))),
        Ok(Algorithm::PS256)
    );
    assert_eq!(pinned(&ec_key(json!({}))), Ok(Algorithm::ES256));
    assert_eq!(pinned(&ec_key(json!({"alg": null}))), Ok(Algorithm::ES256));
    assert_eq!(
        pinned(&rsa_key(json!({"key_ops": ["verify"], "use": null}))),
        Ok(Algorithm::RS256)
    );
    let ed25519 = json!({"kty": "OKP", "crv": "Ed25519", "kid": "d",
        "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"});
    assert_eq!(pinned(&ed25519), Ok(Algorithm::EdDSA));

    for (key, why) in [
        (ec_key(json!({"alg": "RS256"})), "does not fit"),
        (ec_key(json!({"alg": "ES384"})), "does not fit"),
        (ec_key(json!({"crv": "P-384"})), "does not fit"),
        (
            ec_key(json!({"crv": "P-521", "alg": null})),
            "not supported",
        ),
        (rsa_key(json!({"alg": "ES256"})), "does not fit"),
        (rsa_key(json!({"alg": "HS256"})), "does not fit"),
        // Keycloak publishes its encryption key beside the signing keys.
        (
            rsa_key(json!({"alg": "RSA-OAEP", "use": "enc"})),
            "not a signature key",
        ),
        (rsa_key(json!({"alg": "RSA-OAEP"})), "does not fit"),
        (
            rsa_key(json!({"key_ops": ["sign"]})),
            "not a verification key",
        ),
        (rsa_key(json!({"kid": null})), "no kid"),
        (rsa_key(json!({"kid": ""})), "no kid"),
        (
            jwk(&rsa("rsa-small.pem"), Algorithm::RS256, "s", json!({})),
            "shorter than 2048 bits",
        ),
        // A shared secret in a public document: whoever reads it could sign.
        (
            json!({"kty": "oct", "kid": "h", "alg": "HS256", "k": "c2VjcmV0"}),
            "symmetric",
        ),
        (json!({"kty": "RSA", "kid": "x"}), "not a key"),
        (json!("RSA"), "not a key"),
    ] {
        let err = pinned(&key)
            .err()
            .unwrap_or_else(|| panic!("{key} trusted"));
        assert!(err.contains(why), "{key}: {err}");
    }
}

#[test]
fn a_key_set_keeps_its_usable_keys_and_names_what_it_skipped() {
    let (rsa_a, rsa_b) = (rsa("rsa-a.pem"), rsa("rsa-b.pem"));
    let set = json!({"keys": [
        jwk(&rsa_a, Algorithm::RS256, "a", json!({})),
        jwk(&ec(), Algorithm::ES256, "e", json!({})),
        jwk(&rsa_b, Algorithm::RS256, "enc", json!({"use": "enc", "alg": "RSA-OAEP"})),
        {"kty": "oct", "kid": "h", "k": "c2VjcmV0"},
        // The first of two keys with one kid stays; a token cannot pick the second.
        jwk(&rsa_b, Algorithm::RS256, "a", json!({})),
    ]});
    let keys = key_set(&serde_json::to_vec(&set).unwrap()).unwrap();
    let mut kids: Vec<&str> = keys.keys().map(String::as_str).collect();
    kids.sort_unstable();
    assert_eq!(kids, ["a", "e"]);

    let err = key_set(br#"{"keys": []}"#).err().unwrap();
    assert!(err.contains("it is empty"), "{err}");
    let only_bad = json!({"keys": [{"kty": "oct", "kid": "h", "k": "c2VjcmV0"}]});
    let err = key_set(&serde_json::to_vec(&only_bad).unwrap())
        .err()
        .unwrap();
    assert!(err.contains("h: a symmetric key"), "{err}");
    // The discovery document instead of its jwks_uri.
    let err = key_set(br#"{"issuer": "x", "jwks_uri": "https://x/certs"}"#)
        .err()
        .unwrap();
    assert!(err.contains("discovery document"), "{err}");
    assert!(key_set(b"<html>").is_err());
}

#[tokio::test]
async fn rs256_and_es256_tokens_name_their_caller() {
    let (rsa_a, ec) = (rsa("rsa-a.pem"), ec());
    let (jwks, _) = provider(&[
        jwk(&rsa_a, Algorithm::RS256, "a", json!({})),
        jwk(&ec, Algorithm::ES256, "e", json!({})),
    ]);
    let keys = keys_with(&jwks);
    let token = sign(Algorithm::RS256, Some("a"), &rsa_a, &claims(json!({})));
    let principal = keys.authenticate(&token).await.unwrap();
    assert_eq!(
        (principal.id.as_str(), principal.user_id.as_str()),
        ("user-1", "user-1")
    );
    assert_eq!(principal.permissions, ["10207"]);
    assert_eq!(principal.lead, None);
    let token = sign(
        Algorithm::ES256,
        Some("e"),
        &ec,
        &claims(json!({"aud": ["x", "other-api"]})),
    );
    assert_eq!(keys.authenticate(&token).await.unwrap().id, "user-1");
    // tms's own tokens are verified as before, beside them.
    let own = keys.mint("u1", vec!["10204".into()], 60).unwrap();
    assert_eq!(keys.authenticate(&own).await.unwrap().id, "u1");
}

#[tokio::test]
async fn algorithm_confusion_is_refused() {
    let (rsa_a, ec) = (rsa("rsa-a.pem"), ec());
    let (jwks, _) = provider(&[
        jwk(&rsa_a, Algorithm::RS256, "a", json!({})),
        jwk(&ec, Algorithm::ES256, "e", json!({})),
    ]);
    let claims = claims(json!({}));
    // HS256 with the RSA public key (as PEM, or as the key set's modulus) as the HMAC secret.
    for secret in [
        pem("rsa-a.pub.pem"),
        jwk(&rsa_a, Algorithm::RS256, "a", json!({}))["n"]
            .as_str()
            .unwrap()
            .as_bytes()
            .to_vec(),
    ] {
        let forged = sign(
            Algorithm::HS256,
            Some("a"),
            &EncodingKey::from_secret(&secret),
            &claims,
        );
        assert_eq!(refused(&jwks, &forged).await, "TokenInvalid: bad signature");
    }
    // The RSA key's kid with another RSA algorithm than the one it is pinned to.
    let other = sign(Algorithm::PS256, Some("a"), &rsa_a, &claims);
    assert_eq!(
        refused(&jwks, &other).await,
        "TokenInvalid: algorithm not allowed"
    );
    // The EC key's kid on an RS256 token, and the RSA key's kid on an ES256 token.
    let token = sign(Algorithm::RS256, Some("e"), &rsa_a, &claims);
    assert_eq!(
        refused(&jwks, &token).await,
        "TokenInvalid: algorithm not allowed"
    );
    let token = sign(Algorithm::ES256, Some("a"), &ec, &claims);
    assert_eq!(
        refused(&jwks, &token).await,
        "TokenInvalid: algorithm not allowed"
    );
    // alg none, with and without a kid.
    for header in [
        json!({"alg": "none", "typ": "JWT", "kid": "a"}),
        json!({"alg": "none"}),
    ] {
        let unsigned = format!("{}.{}.", b64(&header), b64(&claims),);
        assert!(refused(&jwks, &unsigned).await.starts_with("TokenInvalid"));
    }
    // A key carried in the token itself is not looked at: only the set's keys count.
    let mut header = Header::new(Algorithm::ES256);
    header.kid = Some("attacker".into());
    header.jwk =
        Some(serde_json::from_value(jwk(&ec, Algorithm::ES256, "attacker", json!({}))).unwrap());
    let token = jsonwebtoken::encode(&header, &claims, &ec).unwrap();
    assert_eq!(
        refused(&jwks, &token).await,
        "TokenInvalid: unknown key (kid)"
    );
    let token = sign(Algorithm::RS256, None, &rsa_a, &claims);
    assert_eq!(
        refused(&jwks, &token).await,
        "TokenInvalid: no key id (kid)"
    );
}

fn b64(value: &Value) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(value.to_string())
}

#[tokio::test]
async fn issuer_audience_and_times_are_checked_on_the_clock() {
    let rsa_a = rsa("rsa-a.pem");
    let (jwks, clock) = provider(&[jwk(&rsa_a, Algorithm::RS256, "a", json!({}))]);
    let now = NOW as u64;
    let token = |extra: Value| sign(Algorithm::RS256, Some("a"), &rsa_a, &claims(extra));
    for (extra, message) in [
        (
            json!({"iss": "https://sso.example.com/realms/other"}),
            "TokenInvalid: wrong issuer",
        ),
        (json!({"iss": null}), "TokenInvalid: no iss"),
        (json!({"aud": "account"}), "TokenInvalid: wrong audience"),
        (
            json!({"aud": ["account", "broker"]}),
            "TokenInvalid: wrong audience",
        ),
        (json!({"aud": null}), "TokenInvalid: no aud"),
        (json!({"exp": null}), "TokenInvalid: no exp"),
        (json!({"exp": "tomorrow"}), "TokenInvalid: no exp"),
        (json!({"exp": now}), "TokenExpired"),
        (
            json!({"nbf": now + CLOCK_SKEW_SECS + 1}),
            "TokenInvalid: not valid yet (nbf)",
        ),
        (
            json!({"iat": now + 3600}),
            "TokenInvalid: issued in the future (iat)",
        ),
        (json!({"nbf": "soon"}), "TokenInvalid: malformed nbf"),
    ] {
        assert_eq!(
            refused(&jwks, &token(extra.clone())).await,
            message,
            "{extra}"
        );
    }
    let keys = keys_with(&jwks);
    for extra in [
        json!({"nbf": now + CLOCK_SKEW_SECS, "iat": now + CLOCK_SKEW_SECS}),
        json!({"iat": null}),
        json!({"exp": (now + 60) as f64 + 0.5}),
    ] {
        assert!(
            keys.authenticate(&token(extra.clone())).await.is_ok(),
            "{extra}"
        );
    }
    // Expiry follows the application's clock, not the machine's.
    let short = token(json!({"exp": now + 60}));
    assert!(keys.authenticate(&short).await.is_ok());
    clock.advance(Duration::from_secs(60));
    assert_eq!(refused(&jwks, &short).await, "TokenExpired");
}

#[test]
fn the_caller_is_user_tenant_id_id_or_sub_and_never_a_lead() {
    let principal = |claims: Value| principal_of(claims.as_object().unwrap(), "permissions");
    let p = principal(json!({"sub": "kc-user"})).unwrap();
    assert_eq!((p.id.as_str(), p.user_id.as_str()), ("kc-user", "kc-user"));
    assert!(p.permissions.is_empty());
    let p = principal(json!({"sub": "s", "id": "user", "userTenantId": "ut"})).unwrap();
    assert_eq!((p.id.as_str(), p.user_id.as_str()), ("ut", "user"));
    let p = principal(json!({"sub": "s", "id": "user"})).unwrap();
    assert_eq!((p.id.as_str(), p.user_id.as_str()), ("user", "user"));
    let p = principal(json!({"sub": "s", "userTenantId": "ut"})).unwrap();
    assert_eq!((p.id.as_str(), p.user_id.as_str()), ("ut", "ut"));
    // A lead's id and codes in a provider's token make nobody a lead.
    let lead = uuid::Uuid::new_v4().to_string();
    let p = principal(json!({"sub": lead, "id": lead, "leadId": lead,
        "permissions": LEAD_PERMISSIONS}))
    .unwrap();
    assert_eq!(p.lead, None);
    assert_eq!(p.id, lead);
    // No caller, or one that is not a string: 401.
    assert!(principal(json!({"sub": ""})).is_err());
    assert!(principal(json!({})).is_err());
    assert_eq!(
        principal(json!({"sub": 42})).err(),
        Some(AuthError("TokenInvalid: malformed sub".into()))
    );
    assert!(principal(json!({"sub": "s", "id": {"a": 1}})).is_err());
}

#[test]
fn permissions_come_from_a_claim_name_or_a_dotted_path() {
    let claims = json!({
        "permissions": ["10207", 10204, "10212"],
        "realm_access": {"roles": ["10203", "offline_access"]},
        "resource_access": {"tms": {"roles": ["10215"]}},
        "https://acme.com/permissions": ["10216"],
        "scope": "openid 10221  10220",
        "flag": true,
    });
    let claims = claims.as_object().unwrap();
    for (claim, expected) in [
        ("permissions", vec!["10207", "10212"]),
        ("realm_access.roles", vec!["10203", "offline_access"]),
        ("resource_access.tms.roles", vec!["10215"]),
        ("https://acme.com/permissions", vec!["10216"]),
        ("scope", vec!["openid", "10221", "10220"]),
        ("flag", vec![]),
        ("realm_access", vec![]),
        ("realm_access.roles.0", vec![]),
        ("missing.roles", vec![]),
    ] {
        assert_eq!(permissions_of(claims, claim), expected, "{claim}");
    }
}

#[test]
fn the_provider_says_how_long_its_keys_keep() {
    let headers = |values: &[&str]| {
        let mut map = reqwest::header::HeaderMap::new();
        for value in values {
            map.append(reqwest::header::CACHE_CONTROL, value.parse().unwrap());
        }
        map
    };
    assert_eq!(max_age(&headers(&[])), None);
    assert_eq!(
        max_age(&headers(&["public, max-age=15, stale-while-revalidate=15"])),
        Some(Duration::from_secs(15))
    );
    assert_eq!(
        max_age(&headers(&["public", "Max-Age=\"600\""])),
        Some(Duration::from_secs(600))
    );
    assert_eq!(max_age(&headers(&["no-cache"])), Some(Duration::ZERO));
    assert_eq!(
        max_age(&headers(&["max-age=60, no-store"])),
        Some(Duration::ZERO)
    );
    assert_eq!(max_age(&headers(&["max-age=soon"])), None);
}
