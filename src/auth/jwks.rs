//! Tokens of an identity provider (Keycloak, Auth0, …), verified with the public keys its JWKS
//! URL publishes (`JWT_JWKS_URL`). Each key is pinned to the one asymmetric algorithm it was
//! published for; `iss` and `aud` must be the configured ones; `exp` is required and the times
//! are checked on the application's clock, as for tms's own tokens. The caller is the token's
//! `userTenantId`, `id` or `sub`; its permission codes come from `JWT_PERMISSIONS_CLAIM`. Such a
//! token is never a lead token: only tms mints those.
//!
//! The keys are fetched at start-up and kept. They are fetched again in the background once
//! stale (after `JWT_JWKS_REFRESH_INTERVAL`, sooner when the provider's `Cache-Control: max-age`
//! says so), and at once when a token names a key the set does not have (the provider rotated
//! its keys) — but never more than once per `JWT_JWKS_MIN_REFRESH_INTERVAL`, one fetch at a
//! time, whatever the tokens say. Until a first fetch succeeds the provider's tokens answer 503.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Duration;

use jsonwebtoken::jwk::{
    AlgorithmParameters, EllipticCurve, Jwk, KeyAlgorithm, KeyOperations, PublicKeyUse,
};
use jsonwebtoken::{Algorithm, DecodingKey, Header, Validation, errors::ErrorKind};
use serde_json::{Map, Value};

use super::{AuthError, Principal, TokenError, check_times, refusal};
use crate::clock::Clock;
use crate::config::JwksConfig;

/// How long connecting to the provider may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// How long a whole fetch of the key set may take.
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
/// The largest key set read (Keycloak's and Auth0's are a few KiB).
const MAX_KEY_SET_BYTES: usize = 256 * 1024;
/// RSA keys shorter than this are not trusted.
const MIN_RSA_BYTES: usize = 2048 / 8;

/// An identity provider's key set and how its tokens are checked; shared by every request.
pub struct Jwks {
    config: JwksConfig,
    client: reqwest::Client,
    clock: Clock,
    cache: RwLock<Cache>,
    /// Held while fetching, so that concurrent requests wait for one fetch instead of each
    /// starting their own.
    fetching: tokio::sync::Mutex<()>,
}

/// The keys in force and when they were fetched (milliseconds on the application's clock).
#[derive(Default)]
struct Cache {
    keys: HashMap<String, Arc<PinnedKey>>,
    /// When the keys were last fetched successfully; `None` before the first success.
    fetched_at: Option<i64>,
    /// From when the keys are fetched again in the background.
    stale_at: i64,
    /// When a fetch last started, successful or not: the next waits the minimum interval.
    attempted_at: Option<i64>,
}

/// A verification key with the one algorithm it verifies.
struct PinnedKey {
    algorithm: Algorithm,
    key: DecodingKey,
}

/// A key set as fetched: its usable keys and how long the provider says to keep them.
struct Fetched {
    keys: HashMap<String, Arc<PinnedKey>>,
    max_age: Option<Duration>,
}

impl Jwks {
    /// The verifier of `config`'s provider, on `clock`; no key is fetched yet ([`Jwks::load`]).
    pub fn new(config: JwksConfig, clock: Clock) -> anyhow::Result<Arc<Self>> {
        let client = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(FETCH_TIMEOUT)
            // The configured URL is the key set; a redirect could lead anywhere (and to http).
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        Ok(Arc::new(Self {
            config,
            client,
            clock,
            cache: RwLock::new(Cache::default()),
            fetching: tokio::sync::Mutex::new(()),
        }))
    }

    /// Fetches the keys at start-up and says in the log how it went. The service starts
    /// either way: without keys, the provider's tokens answer 503 until a later fetch (when
    /// one of them comes, at most once per minimum interval) brings them.
    pub async fn load(&self) {
        if let Some(Err(err)) = self.refresh().await {
            tracing::error!(
                url = %self.config.url,
                "JWT_JWKS_URL: cannot load the identity provider's keys: {err}; its tokens \
                 answer 503 until the keys arrive (fetched again when such a token comes, at \
                 most every {} s)",
                self.config.min_refresh_interval.as_secs()
            );
        }
    }

    /// Verifies a token whose `header` names an asymmetric algorithm (see
    /// [`super::JwtKeys::authenticate`]).
    pub(super) async fn verify(
        self: &Arc<Self>,
        token: &str,
        header: &Header,
    ) -> Result<Principal, TokenError> {
        let kid = header
            .kid
            .as_deref()
            .filter(|kid| !kid.is_empty())
            .ok_or_else(|| AuthError::new("TokenInvalid: no key id (kid)"))?;
        let pinned = self.key(kid).await?;
        // The key's algorithm, not the token's choice: an RS256 key verifies RS256 only.
        if header.alg != pinned.algorithm {
            return Err(AuthError::new("TokenInvalid: algorithm not allowed").into());
        }
        let mut validation = Validation::new(pinned.algorithm);
        validation.set_issuer(&[&self.config.issuer]);
        validation.set_audience(&self.config.audiences);
        validation.set_required_spec_claims(&["exp", "iss", "aud"]);
        // The times are checked below, on the application's clock, as for tms's own tokens.
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.leeway = 0;
        let claims = jsonwebtoken::decode::<Map<String, Value>>(token, &pinned.key, &validation)
            .map_err(|err| match err.kind() {
                ErrorKind::InvalidAudience => AuthError::new("TokenInvalid: wrong audience"),
                ErrorKind::MissingRequiredClaim(claim) => {
                    AuthError(format!("TokenInvalid: no {claim}"))
                }
                _ => refusal(&err),
            })?
            .claims;
        check_times(
            self.clock.unix_seconds(),
            seconds(&claims, "exp")?.unwrap_or(0),
            seconds(&claims, "nbf")?,
            seconds(&claims, "iat")?,
        )?;
        Ok(principal_of(&claims, &self.config.permissions_claim)?)
    }

    /// The key `kid` names: from the set in force, else from a fresh fetch when one may go.
    async fn key(self: &Arc<Self>, kid: &str) -> Result<Arc<PinnedKey>, TokenError> {
        let now = self.now_ms();
        let (known, stale) = {
            let cache = self.read();
            (cache.keys.get(kid).cloned(), now >= cache.stale_at)
        };
        if let Some(key) = known {
            if stale && self.may_fetch(now) {
                // The request goes on with the key it has; the set is renewed beside it.
                let jwks = Arc::clone(self);
                tokio::spawn(async move { jwks.refresh_logged().await });
            }
            return Ok(key);
        }
        // Not in the set: perhaps the provider has rotated its keys.
        self.refresh_logged().await;
        let cache = self.read();
        if let Some(key) = cache.keys.get(kid) {
            return Ok(Arc::clone(key));
        }
        if cache.fetched_at.is_none() {
            let next = cache
                .attempted_at
                .map_or(0, |at| at + self.min_refresh_ms() - now);
            return Err(TokenError::KeysUnavailable {
                retry_after_secs: u64::try_from(next).unwrap_or(0).div_ceil(1000).max(1),
            });
        }
        Err(AuthError::new("TokenInvalid: unknown key (kid)").into())
    }

    /// Fetches the key set, unless a fetch started less than the minimum interval ago (also
    /// one that another request started while this one waited). `None` when none went;
    /// otherwise how many keys are in force, or why the fetch failed (the keys in force stay).
    async fn refresh(&self) -> Option<Result<usize, String>> {
        let _one_at_a_time = self.fetching.lock().await;
        let now = self.now_ms();
        if !self.may_fetch(now) {
            return None;
        }
        self.write().attempted_at = Some(now);
        Some(self.fetch().await.map(|fetched| self.install(fetched, now)))
    }

    /// [`Jwks::refresh`] after start-up, with a failed fetch in the log.
    async fn refresh_logged(&self) {
        if let Some(Err(err)) = self.refresh().await {
            if self.read().fetched_at.is_some() {
                tracing::warn!(
                    url = %self.config.url,
                    "cannot refresh the identity provider's keys: {err}; the keys in force stay"
                );
            } else {
                tracing::warn!(
                    url = %self.config.url,
                    "still no keys from the identity provider (JWT_JWKS_URL): {err}; its \
                     tokens answer 503"
                );
            }
        }
    }

    /// Puts `fetched` in force at `now`; returns how many keys it has.
    fn install(&self, fetched: Fetched, now: i64) -> usize {
        let keep_for = fetched
            .max_age
            .unwrap_or(self.config.refresh_interval)
            .min(self.config.refresh_interval)
            .max(self.config.min_refresh_interval);
        let mut cache = self.write();
        let before: BTreeSet<&String> = cache.keys.keys().collect();
        let after: BTreeSet<&String> = fetched.keys.keys().collect();
        if cache.fetched_at.is_none() {
            tracing::info!(
                url = %self.config.url,
                kids = ?after,
                "identity provider keys loaded (JWT_JWKS_URL)"
            );
        } else if before != after {
            tracing::info!(
                added = ?after.difference(&before).collect::<Vec<_>>(),
                removed = ?before.difference(&after).collect::<Vec<_>>(),
                "the identity provider's keys changed"
            );
        }
        let count = fetched.keys.len();
        cache.keys = fetched.keys;
        cache.fetched_at = Some(now);
        cache.stale_at = now + i64::try_from(keep_for.as_millis()).unwrap_or(i64::MAX / 2);
        count
    }

    /// One GET of the key set: 200, at most [`MAX_KEY_SET_BYTES`], at least one usable key.
    async fn fetch(&self) -> Result<Fetched, String> {
        let request = self
            .client
            .get(&self.config.url)
            .header(reqwest::header::ACCEPT, "application/json");
        let mut response = crate::telemetry::client_send(request)
            .await
            .map_err(|err| format!("cannot reach it ({err})"))?;
        let status = response.status();
        if status.is_redirection() {
            return Err(format!(
                "it answered {status} (redirects are not followed: set JWT_JWKS_URL to where it \
                 points)"
            ));
        }
        if !status.is_success() {
            return Err(format!("it answered {status}"));
        }
        let max_age = max_age(response.headers());
        let too_large = || format!("its answer is larger than {MAX_KEY_SET_BYTES} bytes");
        if response
            .content_length()
            .is_some_and(|length| length > MAX_KEY_SET_BYTES as u64)
        {
            return Err(too_large());
        }
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|err| format!("cannot read its answer ({err})"))?
        {
            if body.len() + chunk.len() > MAX_KEY_SET_BYTES {
                return Err(too_large());
            }
            body.extend_from_slice(&chunk);
        }
        Ok(Fetched {
            keys: key_set(&body)?,
            max_age,
        })
    }

    fn may_fetch(&self, now: i64) -> bool {
        // A clock that went back counts as time enough: a fetch must not wait for it.
        self.read()
            .attempted_at
            .is_none_or(|at| now < at || now - at >= self.min_refresh_ms())
    }

    fn min_refresh_ms(&self) -> i64 {
        i64::try_from(self.config.min_refresh_interval.as_millis()).unwrap_or(i64::MAX / 2)
    }

    fn now_ms(&self) -> i64 {
        self.clock.now().timestamp_millis()
    }

    // The lock guards plain data that every writer leaves whole: a panic elsewhere while it was
    // held does not make it wrong.
    fn read(&self) -> RwLockReadGuard<'_, Cache> {
        self.cache.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> RwLockWriteGuard<'_, Cache> {
        self.cache.write().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The usable keys of a JSON Web Key Set, by `kid`; an error when there is none.
fn key_set(body: &[u8]) -> Result<HashMap<String, Arc<PinnedKey>>, String> {
    #[derive(serde::Deserialize)]
    struct KeySet {
        keys: Vec<Value>,
    }
    let set: KeySet = serde_json::from_slice(body).map_err(|_| {
        "its answer is not a JSON Web Key Set (a \"keys\" array); JWT_JWKS_URL must be the \
         jwks_uri of the provider, not its discovery document"
            .to_string()
    })?;
    let mut keys = HashMap::new();
    let mut skipped = Vec::new();
    for raw in &set.keys {
        let kid = raw.get("kid").and_then(Value::as_str).unwrap_or("?");
        match pin(raw) {
            Ok((kid, key)) if !keys.contains_key(&kid) => {
                keys.insert(kid, Arc::new(key));
            }
            Ok(_) => skipped.push(format!("{kid}: a second key with this kid")),
            Err(why) => skipped.push(format!("{kid}: {why}")),
        }
    }
    if !skipped.is_empty() {
        tracing::debug!(skipped = ?skipped, "keys of the identity provider not used");
    }
    if keys.is_empty() {
        return Err(format!(
            "no usable signing key in the set ({})",
            if skipped.is_empty() {
                "it is empty".to_string()
            } else {
                skipped.join("; ")
            }
        ));
    }
    Ok(keys)
}

/// A published key pinned to its algorithm, or why it is not used: only signature keys with
/// a `kid`, of an asymmetric kind whose declared `alg` (if any) fits it. A symmetric (`oct`) key
/// is never taken from a key set: anyone can read it.
fn pin(raw: &Value) -> Result<(String, PinnedKey), String> {
    let jwk: Jwk = serde_json::from_value(raw.clone())
        .map_err(|_| "not a key of a kind tms reads".to_string())?;
    let common = &jwk.common;
    let kid = common
        .key_id
        .clone()
        .filter(|kid| !kid.is_empty())
        .ok_or("no kid")?;
    if common
        .public_key_use
        .as_ref()
        .is_some_and(|usage| *usage != PublicKeyUse::Signature)
    {
        return Err("not a signature key (use)".into());
    }
    if common
        .key_operations
        .as_ref()
        .is_some_and(|ops| !ops.contains(&KeyOperations::Verify))
    {
        return Err("not a verification key (key_ops)".into());
    }
    let declared = common.key_algorithm;
    let declared_name = declared.map_or_else(|| "(none)".to_string(), |alg| alg.to_string());
    let mismatch = || format!("alg {declared_name} does not fit the key");
    let algorithm = match &jwk.algorithm {
        AlgorithmParameters::RSA(rsa) => {
            // Unpadded base64url: 4 characters per 3 bytes (n has no leading zero bytes).
            if rsa.n.trim_end_matches('=').len() * 3 / 4 < MIN_RSA_BYTES {
                return Err("an RSA key shorter than 2048 bits".into());
            }
            match declared {
                None | Some(KeyAlgorithm::RS256) => Algorithm::RS256,
                Some(KeyAlgorithm::RS384) => Algorithm::RS384,
                Some(KeyAlgorithm::RS512) => Algorithm::RS512,
                Some(KeyAlgorithm::PS256) => Algorithm::PS256,
                Some(KeyAlgorithm::PS384) => Algorithm::PS384,
                Some(KeyAlgorithm::PS512) => Algorithm::PS512,
                Some(_) => return Err(mismatch()),
            }
        }
        AlgorithmParameters::EllipticCurve(ec) => match (&ec.curve, declared) {
            (EllipticCurve::P256, None | Some(KeyAlgorithm::ES256)) => Algorithm::ES256,
            (EllipticCurve::P384, None | Some(KeyAlgorithm::ES384)) => Algorithm::ES384,
            (EllipticCurve::P256 | EllipticCurve::P384, _) => return Err(mismatch()),
            (curve, _) => return Err(format!("the curve {curve:?} is not supported")),
        },
        AlgorithmParameters::OctetKeyPair(okp) => match (&okp.curve, declared) {
            (EllipticCurve::Ed25519, None | Some(KeyAlgorithm::EdDSA)) => Algorithm::EdDSA,
            _ => return Err(mismatch()),
        },
        AlgorithmParameters::OctetKey(_) => {
            return Err("a symmetric key, never trusted from a public key set".into());
        }
    };
    let key = DecodingKey::from_jwk(&jwk).map_err(|err| format!("unreadable ({err})"))?;
    Ok((kid, PinnedKey { algorithm, key }))
}

/// How long the provider says to keep its answer: `max-age`, or none for `no-cache` and
/// `no-store`; `None` when it does not say.
fn max_age(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let mut max_age = None;
    for value in headers.get_all(reqwest::header::CACHE_CONTROL) {
        for directive in value.to_str().unwrap_or_default().split(',') {
            let (name, argument) = match directive.split_once('=') {
                Some((name, argument)) => (name.trim(), argument.trim().trim_matches('"')),
                None => (directive.trim(), ""),
            };
            if name.eq_ignore_ascii_case("no-cache") || name.eq_ignore_ascii_case("no-store") {
                return Some(Duration::ZERO);
            }
            if name.eq_ignore_ascii_case("max-age")
                && let Ok(seconds) = argument.parse::<u64>()
            {
                max_age = Some(Duration::from_secs(seconds));
            }
        }
    }
    max_age
}

/// A time claim in whole seconds: `None` when absent, 401 when it is not a number.
fn seconds(claims: &Map<String, Value>, name: &str) -> Result<Option<u64>, AuthError> {
    match claims.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(number)) => number
            .as_u64()
            .or_else(|| {
                // Whole seconds of a fractional time (some issuers write them).
                number
                    .as_f64()
                    .filter(|f| f.is_finite() && *f >= 0.0)
                    .map(|f| f as u64)
            })
            .map(Some)
            .ok_or_else(|| AuthError(format!("TokenInvalid: malformed {name}"))),
        Some(_) => Err(AuthError(format!("TokenInvalid: malformed {name}"))),
    }
}

/// The caller a provider's token names. As for tms's own tokens, `userTenantId` (else `id`)
/// stamps writes and `id` (else `userTenantId`) stamps deletes; a token with neither — the
/// usual case — is the caller of its `sub`. Its permission codes are the strings of
/// `permissions_claim`. Its `leadId`, if any, is not read: lead tokens are minted by tms
/// only, and a claim the provider lets users shape must not confine or empower anybody.
fn principal_of(
    claims: &Map<String, Value>,
    permissions_claim: &str,
) -> Result<Principal, AuthError> {
    let text = |name: &str| match claims.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(AuthError(format!("TokenInvalid: malformed {name}"))),
    };
    let (sub, id, user_tenant_id) = (text("sub")?, text("id")?, text("userTenantId")?);
    let (Some(caller), Some(user_id)) = (
        user_tenant_id.clone().or(id.clone()).or(sub.clone()),
        id.or(user_tenant_id).or(sub),
    ) else {
        return Err(AuthError::new("TokenInvalid: no caller id"));
    };
    Ok(Principal {
        id: caller,
        user_id,
        permissions: permissions_of(claims, permissions_claim),
        lead: None,
    })
}

/// The permission codes in `claim`: a top-level claim of that name (Auth0's namespaced claims
/// have dots in their names), else the value at that dotted path (`realm_access.roles`). An
/// array gives its strings, a string its space-separated words (as `scope`); anything else,
/// or nothing there, gives none.
fn permissions_of(claims: &Map<String, Value>, claim: &str) -> Vec<String> {
    let found = claims.get(claim).or_else(|| {
        let mut path = claim.split('.');
        let first = claims.get(path.next()?)?;
        path.try_fold(first, |value, step| value.get(step))
    });
    match found {
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_string)
            .collect(),
        Some(Value::String(words)) => words.split_whitespace().map(str::to_string).collect(),
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests;
