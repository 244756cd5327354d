//! Bearer JWTs and the caller they name. tms's own tokens: HS256 pinned, issuer checked, `exp`
//! required, `exp`/`nbf`/`iat` checked against the application's clock. With `JWT_JWKS_URL`,
//! also an identity provider's tokens, verified with its published keys ([`jwks`]). And the
//! permission codes. Free of HTTP: the extractors that read a request's token (`Principal`,
//! `Require<ViewTenant>`) are in `http::auth`.

pub mod jwks;

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::clock::Clock;

use jsonwebtoken::{
    Algorithm, AlgorithmFamily, DecodingKey, EncodingKey, Header, Validation, errors::ErrorKind,
};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

/// Why a bearer token was refused (401); the message names the problem.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct AuthError(pub String);

impl AuthError {
    fn new(message: &str) -> Self {
        Self(message.to_string())
    }
}

/// Why a bearer token was not accepted: it does not verify (401), or the identity provider's
/// keys it needs are not available yet (503, the client may try again).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error(transparent)]
    Invalid(#[from] AuthError),
    #[error("The identity provider's signing keys are not available yet; try again later")]
    KeysUnavailable { retry_after_secs: u64 },
}

/// The claims tms reads from (and writes into) a bearer token.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Claims {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_tenant_id: Option<String>,
    #[serde(default)]
    pub permissions: Vec<String>,
    /// Set on tokens issued to a verified lead: they act only on that lead and its tenant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lead_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    pub iss: String,
    pub exp: u64,
    #[serde(default)]
    pub iat: u64,
    /// Not before (seconds since the epoch), when the issuer set one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<u64>,
}

/// How far in the future a token's `nbf` and `iat` may lie, for clocks that disagree a little.
pub const CLOCK_SKEW_SECS: u64 = 30;

/// The authenticated caller of a request.
#[derive(Debug, Clone)]
pub struct Principal {
    /// Who the caller acts as in `createdBy` and `modifiedBy`: the token's `userTenantId`, or
    /// its `id` when it has none — as the original stamps them.
    pub id: String,
    /// The token's `id`, or its `userTenantId` when it has none: what the original stamps in
    /// `deletedBy`.
    pub user_id: String,
    pub permissions: Vec<String>,
    /// `Some(lead)` for a lead token: every read and write is confined to that lead and the
    /// tenant onboarded from it, whatever the permission codes say.
    pub lead: Option<uuid::Uuid>,
}

impl Principal {
    pub fn has(&self, code: &str) -> bool {
        self.permissions.iter().any(|p| p == code)
    }

    /// Whether the caller holds any of `codes` (routes that either of two permissions opens).
    pub fn has_any(&self, codes: &[&str]) -> bool {
        codes.iter().any(|code| self.has(code))
    }
}

/// Signs and verifies HS256 tokens with `JWT_SECRET` and `JWT_ISSUER`; during a rotation, also
/// verifies tokens signed with `JWT_PREVIOUS_SECRET`. With an identity provider's key set
/// ([`JwtKeys::with_jwks`]), [`JwtKeys::authenticate`] also accepts the tokens it signs.
#[derive(Clone)]
pub struct JwtKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    previous: Option<DecodingKey>,
    validation: Validation,
    issuer: String,
    clock: Clock,
    jwks: Option<Arc<jwks::Jwks>>,
}

impl JwtKeys {
    pub fn new(secret: &SecretString, issuer: &str) -> Self {
        let bytes = secret.expose_secret().as_bytes();
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_issuer(&[issuer]);
        // `exp` must be there (the original accepted tokens without one; tms does not); the
        // times themselves are checked in `verify`, against the application's clock.
        validation.set_required_spec_claims(&["exp", "iss"]);
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.leeway = 0;
        Self {
            encoding: EncodingKey::from_secret(bytes),
            decoding: DecodingKey::from_secret(bytes),
            previous: None,
            validation,
            issuer: issuer.to_string(),
            clock: Clock::system(),
            jwks: None,
        }
    }

    /// The same keys, also accepting tokens signed with `previous` (a secret being rotated out);
    /// new tokens are signed with the current one only.
    pub fn with_previous(self, previous: Option<&SecretString>) -> Self {
        Self {
            previous: previous.map(|p| DecodingKey::from_secret(p.expose_secret().as_bytes())),
            ..self
        }
    }

    /// The same keys, minting and checking times on `clock`.
    pub fn with_clock(self, clock: Clock) -> Self {
        Self { clock, ..self }
    }

    /// The same keys, also accepting the tokens an identity provider signs with the keys of
    /// `jwks` (which checks their times on its own clock).
    pub fn with_jwks(self, jwks: Option<Arc<jwks::Jwks>>) -> Self {
        Self { jwks, ..self }
    }

    /// The identity provider's key set, when one is configured.
    pub fn jwks(&self) -> Option<&Arc<jwks::Jwks>> {
        self.jwks.as_ref()
    }

    /// Verifies the bearer token of a request. An HMAC token (or one whose header does not
    /// parse) is tms's own and goes to [`JwtKeys::verify`], exactly as without an identity
    /// provider; any other algorithm is the identity provider's, when one is configured — so
    /// an HS256 token signed with one of its public keys meets `JWT_SECRET`, and fails.
    pub async fn authenticate(&self, token: &str) -> Result<Principal, TokenError> {
        if let Some(jwks) = &self.jwks
            && let Ok(header) = jsonwebtoken::decode_header(token)
            && header.alg.family() != AlgorithmFamily::Hmac
        {
            return jwks.verify(token, &header).await;
        }
        Ok(self.verify(token)?)
    }

    /// Mints a token for `id` with `permissions`, valid for `ttl_secs`.
    pub fn mint(
        &self,
        id: &str,
        permissions: Vec<String>,
        ttl_secs: u64,
    ) -> anyhow::Result<String> {
        let now = self.clock.unix_seconds();
        self.sign(&Claims {
            id: Some(id.to_string()),
            user_tenant_id: Some(id.to_string()),
            permissions,
            lead_id: None,
            email: None,
            iss: self.issuer.clone(),
            exp: now + ttl_secs,
            iat: now,
            nbf: None,
        })
    }

    /// Mints the token of a verified lead: the original's permission codes (so the other
    /// control-plane services accept it) and the `leadId` claim that confines it here.
    pub fn mint_lead(
        &self,
        lead: uuid::Uuid,
        email: &str,
        ttl_secs: u64,
    ) -> anyhow::Result<String> {
        let now = self.clock.unix_seconds();
        self.sign(&Claims {
            id: Some(lead.to_string()),
            user_tenant_id: Some(lead.to_string()),
            permissions: LEAD_PERMISSIONS.iter().map(|p| p.to_string()).collect(),
            lead_id: Some(lead.to_string()),
            email: Some(email.to_string()),
            iss: self.issuer.clone(),
            exp: now + ttl_secs,
            iat: now,
            nbf: None,
        })
    }

    fn sign(&self, claims: &Claims) -> anyhow::Result<String> {
        Ok(jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            claims,
            &self.encoding,
        )?)
    }

    /// Verifies one of tms's own tokens (HS256, the only kind that can be a lead token):
    /// signature, algorithm, issuer; expired (`exp` not after now), not valid yet (`nbf`) or
    /// issued in the future (`iat`), beyond [`CLOCK_SKEW_SECS`], is refused. Requests go through
    /// [`JwtKeys::authenticate`], which also knows the identity provider's tokens.
    pub fn verify(&self, token: &str) -> Result<Principal, AuthError> {
        let decoded = jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation);
        let decoded = match (&decoded, &self.previous) {
            (Err(err), Some(previous)) if *err.kind() == ErrorKind::InvalidSignature => {
                jsonwebtoken::decode::<Claims>(token, previous, &self.validation)
            }
            _ => decoded,
        };
        let claims = decoded.map_err(|err| refusal(&err))?.claims;
        check_times(
            self.clock.unix_seconds(),
            claims.exp,
            claims.nbf,
            Some(claims.iat),
        )?;
        let lead = match claims.lead_id.as_deref() {
            None => None,
            Some(raw) => Some(
                uuid::Uuid::parse_str(raw)
                    .map_err(|_| AuthError::new("TokenInvalid: malformed leadId"))?,
            ),
        };
        let (Some(id), Some(user_id)) = (
            claims.user_tenant_id.clone().or(claims.id.clone()),
            claims.id.or(claims.user_tenant_id),
        ) else {
            return Err(AuthError::new("TokenInvalid: no caller id"));
        };
        Ok(Principal {
            id,
            user_id,
            permissions: claims.permissions,
            lead,
        })
    }
}

/// The 401 message for a token `jsonwebtoken` refused.
fn refusal(err: &jsonwebtoken::errors::Error) -> AuthError {
    AuthError::new(match err.kind() {
        ErrorKind::InvalidIssuer => "TokenInvalid: wrong issuer",
        ErrorKind::InvalidAlgorithm => "TokenInvalid: algorithm not allowed",
        ErrorKind::InvalidSignature => "TokenInvalid: bad signature",
        _ => "TokenInvalid",
    })
}

/// A token's times at `now` (seconds): expired when `exp` is not after now; refused when `nbf`
/// (not before) or `iat` (issued at) lie more than [`CLOCK_SKEW_SECS`] in the future.
fn check_times(now: u64, exp: u64, nbf: Option<u64>, iat: Option<u64>) -> Result<(), AuthError> {
    if exp <= now {
        return Err(AuthError::new("TokenExpired"));
    }
    if nbf.is_some_and(|nbf| nbf > now + CLOCK_SKEW_SECS) {
        return Err(AuthError::new("TokenInvalid: not valid yet (nbf)"));
    }
    if iat.is_some_and(|iat| iat > now + CLOCK_SKEW_SECS) {
        return Err(AuthError::new("TokenInvalid: issued in the future (iat)"));
    }
    Ok(())
}

pub fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// A permission code a route can require.
pub trait Permission: Send + Sync + 'static {
    const CODE: &'static str;
}

macro_rules! permissions {
    ($($name:ident = $code:literal),* $(,)?) => {
        $(
            #[doc = concat!("Permission code ", $code, ".")]
            pub struct $name;
            impl Permission for $name {
                const CODE: &'static str = $code;
            }
        )*
        /// Every permission code of the service, for admin tokens.
        pub const ALL_PERMISSIONS: &[&str] = &[$($code),*];
    };
}

permissions! {
    CreateLead = "10200",
    UpdateLead = "10201",
    DeleteLead = "10202",
    ViewLead = "10203",
    CreateTenant = "10204",
    UpdateTenant = "10205",
    DeleteTenant = "10206",
    ViewTenant = "10207",
    CreateContact = "10208",
    UpdateContact = "10209",
    DeleteContact = "10210",
    ViewContact = "10211",
    CreateInvoice = "10212",
    UpdateInvoice = "10213",
    DeleteInvoice = "10214",
    ViewInvoice = "10215",
    ProvisionTenant = "10216",
    CreateTenantConfig = "10220",
    ViewTenantConfig = "10221",
    UpdateTenantConfig = "10222",
    DeleteTenantConfig = "10223",
    ViewAuditLog = "10224",
}

/// The codes a lead token carries: the original's set (tenant onboarding and provisioning, reading
/// its lead, creating its invoice and IdP config, and the subscription, billing and notification
/// codes of the other control-plane services).
pub const LEAD_PERMISSIONS: &[&str] = &[
    "10203", "10204", "10212", "10216", "10220", "7001", "7002", "7004", "7008", "5321", "5322",
    "5323", "5324", "5325", "5326", "5327", "5328", "5329", "5330", "5331", "5332", "5333", "2",
    "8000",
];

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;

    fn keys() -> JwtKeys {
        JwtKeys::new(&SecretString::from("unit-test-secret".to_string()), "tms")
    }

    #[test]
    fn minted_tokens_verify() {
        let token = keys().mint("u1", vec!["10207".into()], 60).unwrap();
        let principal = keys().verify(&token).unwrap();
        assert_eq!(principal.id, "u1");
        assert!(principal.has("10207"));
        assert!(!principal.has("10204"));
    }

    #[test]
    fn wrong_issuer_secret_and_algorithm_are_refused() {
        let other_issuer = JwtKeys::new(&SecretString::from("unit-test-secret".to_string()), "x");
        let token = other_issuer.mint("u1", vec![], 60).unwrap();
        assert!(matches!(keys().verify(&token), Err(AuthError(m)) if m.contains("issuer")));

        let other_secret = JwtKeys::new(&SecretString::from("another".to_string()), "tms");
        let token = other_secret.mint("u1", vec![], 60).unwrap();
        assert!(matches!(keys().verify(&token), Err(AuthError(_))));

        // alg "none" with the same claims.
        let claims = r#"{"id":"u1","permissions":[],"iss":"tms","exp":99999999999}"#;
        let unsigned = format!(
            "{}.{}.",
            URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT"}"#),
            URL_SAFE_NO_PAD.encode(claims)
        );
        assert!(matches!(keys().verify(&unsigned), Err(AuthError(_))));
    }

    #[test]
    fn a_previous_secret_verifies_during_a_rotation_and_signs_nothing() {
        let old = SecretString::from("short-original".to_string());
        let new = SecretString::from("n".repeat(32));
        let before = JwtKeys::new(&old, "tms").mint("u1", vec![], 60).unwrap();
        let rotating = JwtKeys::new(&new, "tms").with_previous(Some(&old));
        assert_eq!(rotating.verify(&before).unwrap().id, "u1");
        let after = rotating.mint("u2", vec![], 60).unwrap();
        assert!(
            JwtKeys::new(&old, "tms").verify(&after).is_err(),
            "signed with the new"
        );
        assert!(JwtKeys::new(&new, "tms").verify(&after).is_ok());
        assert!(
            JwtKeys::new(&new, "tms").verify(&before).is_err(),
            "once it is dropped"
        );
        // The previous secret does not widen anything else: another issuer is still refused.
        let other = JwtKeys::new(&old, "x").mint("u1", vec![], 60).unwrap();
        assert!(rotating.verify(&other).is_err());
    }

    #[test]
    fn expired_tokens_are_refused() {
        let k = keys();
        let claims = Claims {
            id: Some("u1".into()),
            user_tenant_id: None,
            permissions: vec![],
            lead_id: None,
            email: None,
            iss: "tms".into(),
            exp: now_secs() - 5,
            iat: now_secs() - 100,
            nbf: None,
        };
        let token =
            jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &k.encoding).unwrap();
        assert!(matches!(k.verify(&token), Err(AuthError(m)) if m == "TokenExpired"));
    }

    #[test]
    fn times_are_checked_on_the_clock_with_a_small_skew() {
        let start = chrono::DateTime::from_timestamp(2_000_000_000, 0).unwrap();
        let clock = Clock::manual(start);
        let k = keys().with_clock(clock.clone());
        let now = 2_000_000_000u64;
        let token = |extra: serde_json::Value| {
            let mut claims = serde_json::json!({"id": "u1", "permissions": [], "iss": "tms",
                "exp": now + 600});
            claims
                .as_object_mut()
                .unwrap()
                .extend(extra.as_object().unwrap().clone());
            jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &k.encoding).unwrap()
        };
        let refused = |t: &str| matches!(k.verify(t), Err(AuthError(_)));
        assert!(!refused(&token(
            serde_json::json!({"iat": now, "nbf": now})
        )));
        // Within the skew: accepted.
        assert!(!refused(&token(
            serde_json::json!({"nbf": now + CLOCK_SKEW_SECS})
        )));
        assert!(!refused(&token(
            serde_json::json!({"iat": now + CLOCK_SKEW_SECS})
        )));
        // Beyond it: refused.
        assert!(refused(&token(
            serde_json::json!({"nbf": now + CLOCK_SKEW_SECS + 1})
        )));
        assert!(refused(&token(serde_json::json!({"iat": now + 3600}))));
        // Expiry follows the clock, not the machine's time.
        let minted = k.mint("u1", vec![], 60).unwrap();
        assert!(!refused(&minted));
        clock.advance(std::time::Duration::from_secs(60));
        assert!(refused(&minted));
    }

    #[test]
    fn user_tenant_id_is_the_caller_when_id_is_absent() {
        let k = keys();
        let claims = serde_json::json!({"userTenantId":"ut","permissions":["1"],"iss":"tms","exp":now_secs()+60});
        let token =
            jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &k.encoding).unwrap();
        assert_eq!(k.verify(&token).unwrap().id, "ut");
    }

    #[test]
    fn user_tenant_id_stamps_writes_and_id_stamps_deletes() {
        let k = keys();
        let claims = serde_json::json!({"id": "user", "userTenantId": "ut", "permissions": [],
            "iss": "tms", "exp": now_secs() + 60});
        let token =
            jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &k.encoding).unwrap();
        let principal = k.verify(&token).unwrap();
        assert_eq!(
            (principal.id.as_str(), principal.user_id.as_str()),
            ("ut", "user")
        );
    }
}
