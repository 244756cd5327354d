//! Bearer tokens of an identity provider (Keycloak, Auth0, …): where its public keys are
//! (`JWT_JWKS_URL`), the issuer and audience its tokens must name (`JWT_JWKS_ISSUER`,
//! `JWT_AUDIENCE`), the claim that lists a caller's permission codes (`JWT_PERMISSIONS_CLAIM`)
//! and how often the keys are fetched again. All unset: only tms's own HS256 tokens are accepted.

use std::time::Duration;

use super::{ConfigError, Environment, Vars, problem};

/// The settings that only mean something with `JWT_JWKS_URL`.
const JWKS_ONLY: [&str; 5] = [
    "JWT_JWKS_ISSUER",
    "JWT_AUDIENCE",
    "JWT_PERMISSIONS_CLAIM",
    "JWT_JWKS_REFRESH_INTERVAL",
    "JWT_JWKS_MIN_REFRESH_INTERVAL",
];

/// How tokens signed by the identity provider are verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwksConfig {
    /// The provider's JSON Web Key Set (`JWT_JWKS_URL`): https, or http in dev and test.
    pub url: String,
    /// The `iss` its tokens carry (`JWT_JWKS_ISSUER`), compared exactly.
    pub issuer: String,
    /// The `aud` values of which a token must name one (`JWT_AUDIENCE`, comma-separated).
    pub audiences: Vec<String>,
    /// The claim listing the caller's permission codes (`JWT_PERMISSIONS_CLAIM`, default
    /// `permissions`): a top-level name, else a dotted path such as `realm_access.roles`.
    pub permissions_claim: String,
    /// The longest the keys are used without asking again (`JWT_JWKS_REFRESH_INTERVAL`, s);
    /// shorter when the provider's `Cache-Control: max-age` says so.
    pub refresh_interval: Duration,
    /// At most one fetch per this long, whatever the tokens say (`JWT_JWKS_MIN_REFRESH_INTERVAL`,
    /// s): a flood of tokens naming unknown keys cannot make tms hammer the provider.
    pub min_refresh_interval: Duration,
}

impl JwksConfig {
    /// The settings, `None` without `JWT_JWKS_URL` (then none of the others may be set: each
    /// applies only to the provider's tokens, and a lone one would look like it protects more).
    pub(super) fn from_vars(v: &Vars<'_>, env: Environment) -> Result<Option<Self>, ConfigError> {
        let Some(raw_url) = v.get("JWT_JWKS_URL") else {
            if let Some(name) = JWKS_ONLY.iter().find(|name| v.get(name).is_some()) {
                return Err(problem(
                    name,
                    "is set but JWT_JWKS_URL is not (it applies only to tokens verified with the \
                     identity provider's keys)",
                ));
            }
            return Ok(None);
        };
        let url = jwks_url(raw_url, env)?;
        let issuer = v
            .get("JWT_JWKS_ISSUER")
            .ok_or_else(|| {
                problem(
                    "JWT_JWKS_ISSUER",
                    "must be set with JWT_JWKS_URL: the iss of the identity provider's tokens \
                     (Keycloak: https://<host>/realms/<realm>, Auth0: https://<domain>/)",
                )
            })?
            .to_string();
        let audiences: Vec<String> = v
            .get("JWT_AUDIENCE")
            .unwrap_or_default()
            .split(',')
            .map(str::trim)
            .filter(|a| !a.is_empty())
            .map(str::to_string)
            .collect();
        if audiences.is_empty() {
            return Err(problem(
                "JWT_AUDIENCE",
                "must be set with JWT_JWKS_URL: the aud the identity provider puts in tokens for \
                 tms (comma-separated when several are accepted)",
            ));
        }
        let permissions_claim = v.string("JWT_PERMISSIONS_CLAIM", "permissions");
        if permissions_claim.chars().any(char::is_whitespace)
            || permissions_claim.split('.').any(str::is_empty)
        {
            return Err(problem(
                "JWT_PERMISSIONS_CLAIM",
                format!(
                    "expected a claim name or a dotted path such as realm_access.roles, got \
                     {permissions_claim:?}"
                ),
            ));
        }
        let refresh = v.number("JWT_JWKS_REFRESH_INTERVAL", 300u64, 1, 86_400)?;
        let min_refresh = v.number("JWT_JWKS_MIN_REFRESH_INTERVAL", 30u64, 1, 3_600)?;
        if min_refresh > refresh {
            return Err(problem(
                "JWT_JWKS_MIN_REFRESH_INTERVAL",
                format!(
                    "must not exceed JWT_JWKS_REFRESH_INTERVAL ({refresh} s), got {min_refresh}"
                ),
            ));
        }
        Ok(Some(Self {
            url,
            issuer,
            audiences,
            permissions_claim,
            refresh_interval: Duration::from_secs(refresh),
            min_refresh_interval: Duration::from_secs(min_refresh),
        }))
    }

    /// The settings as `tms config` prints them (empty values when the provider is off).
    pub(super) fn lines(jwks: Option<&Self>) -> Vec<(&'static str, String)> {
        let values: [String; 6] = match jwks {
            None => Default::default(),
            Some(c) => [
                c.url.clone(),
                c.issuer.clone(),
                c.audiences.join(","),
                c.permissions_claim.clone(),
                c.refresh_interval.as_secs().to_string(),
                c.min_refresh_interval.as_secs().to_string(),
            ],
        };
        ["JWT_JWKS_URL"]
            .into_iter()
            .chain(JWKS_ONLY)
            .zip(values)
            .collect()
    }
}

/// `JWT_JWKS_URL`: an absolute URL without credentials (a key set is public), https outside
/// dev and test — the keys decide who may call tms, so they must not be open to tampering on
/// the way.
fn jwks_url(raw: &str, env: Environment) -> Result<String, ConfigError> {
    let bad = |what: String| problem("JWT_JWKS_URL", what);
    let url = url::Url::parse(raw).map_err(|err| bad(format!("not a URL ({err}): {raw:?}")))?;
    match url.scheme() {
        "https" => {}
        "http" if env != Environment::Prod => {}
        "http" => {
            return Err(bad(
                "must be an https:// URL in production (the keys decide who may call tms)".into(),
            ));
        }
        other => return Err(bad(format!("expected an https:// URL, got {other}:"))),
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(bad(format!("has no host: {raw:?}")));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(bad(
            "must not carry credentials (a key set is public)".into()
        ));
    }
    Ok(raw.to_string())
}
