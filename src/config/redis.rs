//! Where the key-value store lives: `REDIS_URL`, or `REDIS_HOST` with `REDIS_PORT`,
//! `REDIS_DATABASE` and `REDIS_PASSWORD` as the original names them, and `REDIS_KEY_PREFIX`.

use secrecy::{ExposeSecret, SecretString};

use super::{ConfigError, Vars, problem};

/// `REDIS_URL` (redis:// or rediss://) or one built from the original's `REDIS_HOST` family;
/// `None` keeps the key-value entries in the database.
pub(super) fn redis_url(v: &Vars) -> Result<Option<SecretString>, ConfigError> {
    let url = match (v.secret("REDIS_URL"), v.get("REDIS_HOST")) {
        (Some(url), _) => {
            let raw = url.expose_secret();
            if !(raw.starts_with("redis://") || raw.starts_with("rediss://")) {
                return Err(problem("REDIS_URL", "expected a redis:// or rediss:// URL"));
            }
            Some(url)
        }
        (None, Some(host)) => {
            let port: u16 = v.number("REDIS_PORT", 6379, 1, u16::MAX)?;
            let database: u32 = v.number("REDIS_DATABASE", 0, 0, 15)?;
            let auth = v
                .get("REDIS_PASSWORD")
                .map(|p| format!(":{p}@"))
                .unwrap_or_default();
            Some(SecretString::from(format!(
                "redis://{auth}{host}:{port}/{database}"
            )))
        }
        (None, None) => None,
    };
    Ok(url)
}

/// `REDIS_KEY_PREFIX` (default `tms:`): printable, no spaces, at most 64 characters.
pub(super) fn redis_key_prefix(v: &Vars) -> Result<String, ConfigError> {
    let prefix = v.string("REDIS_KEY_PREFIX", "tms:");
    if prefix.len() > 64 || prefix.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(problem(
            "REDIS_KEY_PREFIX",
            "expected at most 64 characters without spaces",
        ));
    }
    Ok(prefix)
}
