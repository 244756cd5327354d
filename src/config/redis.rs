//! Where the key-value store lives and how it is reached, with the original's names: `REDIS_URL`,
//! or `REDIS_HOST` with `REDIS_PORT`, `REDIS_DATABASE` and `REDIS_PASSWORD`; TLS with
//! `REDIS_TLS_ENABLED` and `REDIS_TLS_CERT` (a CA file); Sentinel with `REDIS_HAS_SENTINELS`,
//! `REDIS_SENTINELS` (JSON) or `REDIS_SENTINEL_HOST` / `REDIS_SENTINEL_PORT`,
//! `REDIS_SENTINEL_PASSWORD`, `REDIS_SENTINEL_ROLE` and the master group `REDIS_NAME`. tms's own:
//! `REDIS_KEY_PREFIX` and, for Sentinel, `REDIS_WAIT_REPLICAS` / `REDIS_WAIT_TIMEOUT`.

use std::path::PathBuf;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize as _;

use super::{ConfigError, Vars, problem};

/// How tms reaches Redis; `None` in [`super::Config::redis`] keeps the key-value entries in the
/// database.
#[derive(Clone)]
pub struct RedisConfig {
    pub target: RedisTarget,
    pub tls: RedisTls,
    /// How many replicas must hold a lead key or webhook secret before it is acknowledged.
    pub wait: ReplicaWait,
}

/// One server, or the primary the sentinels name.
#[derive(Clone)]
pub enum RedisTarget {
    /// `REDIS_URL`, or the one built from `REDIS_HOST`; `rediss://` when TLS is on.
    Direct(SecretString),
    Sentinel(SentinelConfig),
}

/// The sentinels to ask for the primary, and how to log in to the primary they name.
#[derive(Clone)]
pub struct SentinelConfig {
    pub nodes: Vec<SentinelNode>,
    /// The master group the sentinels monitor (`REDIS_NAME`, default `mymaster`).
    pub master_name: String,
    /// `REDIS_SENTINEL_PASSWORD`: the sentinels' own password.
    pub sentinel_password: Option<SecretString>,
    /// The data nodes' user and password (`REDIS_PASSWORD`, or those of `REDIS_URL`).
    pub username: Option<String>,
    pub password: Option<SecretString>,
    /// `REDIS_DATABASE` (or the path of `REDIS_URL`).
    pub database: i64,
}

/// One sentinel, as the original's `REDIS_SENTINELS` lists them.
#[derive(Clone, Debug, PartialEq, Eq, serde::Deserialize)]
pub struct SentinelNode {
    pub host: String,
    #[serde(deserialize_with = "port_number_or_string")]
    pub port: u16,
}

/// TLS towards the Redis data nodes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RedisTls {
    Off,
    /// `rediss://` without a CA file: the public (webpki) roots.
    PublicRoots,
    /// `REDIS_TLS_CERT`: only servers whose certificate chains to this CA are accepted.
    CaFile {
        path: PathBuf,
        pem: Vec<u8>,
    },
}

/// `WAIT <replicas> <timeout>` after every write of a lead key or webhook secret; fewer
/// acknowledging replicas fail the write (503). `replicas == 0`: no `WAIT`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReplicaWait {
    pub replicas: u32,
    pub timeout: Duration,
}

impl RedisConfig {
    /// `NAME=value` lines for the masked printout, passwords masked.
    pub(super) fn lines(config: Option<&RedisConfig>) -> Vec<(&'static str, String)> {
        let Some(config) = config else {
            return vec![("REDIS_URL", String::new())];
        };
        let mut lines = Vec::new();
        match &config.target {
            RedisTarget::Direct(url) => {
                lines.push(("REDIS_URL", super::mask_url_password(url.expose_secret())))
            }
            RedisTarget::Sentinel(s) => {
                let nodes: Vec<_> = s
                    .nodes
                    .iter()
                    .map(|n| serde_json::json!({"host": n.host, "port": n.port}))
                    .collect();
                lines.extend([
                    ("REDIS_HAS_SENTINELS", "true".to_string()),
                    (
                        "REDIS_SENTINELS",
                        serde_json::Value::from(nodes).to_string(),
                    ),
                    ("REDIS_NAME", s.master_name.clone()),
                    ("REDIS_SENTINEL_ROLE", "master".to_string()),
                    ("REDIS_SENTINEL_PASSWORD", mask(&s.sentinel_password)),
                    ("REDIS_PASSWORD", mask(&s.password)),
                    ("REDIS_DATABASE", s.database.to_string()),
                ]);
            }
        }
        let (enabled, cert) = match &config.tls {
            RedisTls::Off => (false, String::new()),
            RedisTls::PublicRoots => (true, String::new()),
            RedisTls::CaFile { path, .. } => (true, path.display().to_string()),
        };
        lines.extend([
            ("REDIS_TLS_ENABLED", enabled.to_string()),
            ("REDIS_TLS_CERT", cert),
            ("REDIS_WAIT_REPLICAS", config.wait.replicas.to_string()),
            (
                "REDIS_WAIT_TIMEOUT",
                config.wait.timeout.as_millis().to_string(),
            ),
        ]);
        lines
    }
}

fn mask(secret: &Option<SecretString>) -> String {
    secret
        .as_ref()
        .map(|_| "***".to_string())
        .unwrap_or_default()
}

fn port_number_or_string<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u16, D::Error> {
    #[derive(serde::Deserialize)]
    #[serde(untagged)]
    enum Port {
        Number(u16),
        Text(String),
    }
    match Port::deserialize(d)? {
        Port::Number(port) => Ok(port),
        Port::Text(text) => text
            .trim()
            .parse()
            .map_err(|_| serde::de::Error::custom(format!("invalid port {text:?}"))),
    }
}

/// The Redis settings; `None` when neither `REDIS_URL`, `REDIS_HOST` nor Sentinel is set.
pub(super) fn redis_config(v: &Vars) -> Result<Option<RedisConfig>, ConfigError> {
    let tls_enabled = v.boolean("REDIS_TLS_ENABLED", false)?;
    let sentinel = if v.boolean("REDIS_HAS_SENTINELS", false)? {
        Some(sentinel_config(v)?)
    } else {
        None
    };
    let url = redis_url(v)?;
    let target = match (sentinel, url) {
        (Some(sentinel), _) => RedisTarget::Sentinel(sentinel),
        (None, Some(url)) => RedisTarget::Direct(url),
        (None, None) => {
            if tls_enabled {
                return Err(problem(
                    "REDIS_TLS_ENABLED",
                    "needs REDIS_URL, REDIS_HOST or REDIS_HAS_SENTINELS=1 (there is no Redis to \
                     talk TLS to)",
                ));
            }
            return Ok(None);
        }
    };
    let rediss_url = v
        .get("REDIS_URL")
        .is_some_and(|url| url.starts_with("rediss://"));
    let tls = match (tls_enabled, v.get("REDIS_TLS_CERT")) {
        // As in the original, the CA file counts only with REDIS_TLS_ENABLED.
        (true, Some(path)) => {
            let path = PathBuf::from(path);
            RedisTls::CaFile {
                pem: read_ca(&path)?,
                path,
            }
        }
        (true, None) => RedisTls::PublicRoots,
        (false, _) if rediss_url => RedisTls::PublicRoots,
        (false, _) => RedisTls::Off,
    };
    // TLS switched on for a redis:// address: the same server, over TLS.
    let target = match target {
        RedisTarget::Direct(url) if tls != RedisTls::Off && !rediss_url => {
            let raw = url.expose_secret();
            RedisTarget::Direct(SecretString::from(format!(
                "rediss://{}",
                raw.strip_prefix("redis://").unwrap_or(raw)
            )))
        }
        other => other,
    };
    let default_replicas = u32::from(matches!(target, RedisTarget::Sentinel(_)));
    let wait = ReplicaWait {
        replicas: v.number("REDIS_WAIT_REPLICAS", default_replicas, 0, 16)?,
        timeout: Duration::from_millis(v.number("REDIS_WAIT_TIMEOUT", 500u64, 10, 10_000)?),
    };
    Ok(Some(RedisConfig { target, tls, wait }))
}

/// `REDIS_TLS_CERT`: a readable PEM file with at least one certificate.
fn read_ca(path: &std::path::Path) -> Result<Vec<u8>, ConfigError> {
    let pem = std::fs::read(path).map_err(|err| {
        problem(
            "REDIS_TLS_CERT",
            format!("cannot read the CA file {}: {err}", path.display()),
        )
    })?;
    if !String::from_utf8_lossy(&pem).contains("-----BEGIN CERTIFICATE-----") {
        return Err(problem(
            "REDIS_TLS_CERT",
            format!("{} holds no PEM certificate", path.display()),
        ));
    }
    Ok(pem)
}

/// The Sentinel settings, read when `REDIS_HAS_SENTINELS` is on. As in the original,
/// `REDIS_SENTINEL_HOST` with `REDIS_SENTINEL_PORT` replaces the list of `REDIS_SENTINELS`.
fn sentinel_config(v: &Vars) -> Result<SentinelConfig, ConfigError> {
    let nodes = match (v.get("REDIS_SENTINEL_HOST"), v.get("REDIS_SENTINEL_PORT")) {
        (Some(host), Some(_)) => vec![SentinelNode {
            host: host.to_string(),
            port: v.number("REDIS_SENTINEL_PORT", 26379u16, 1, u16::MAX)?,
        }],
        (Some(_), None) => {
            return Err(problem(
                "REDIS_SENTINEL_PORT",
                "must be set with REDIS_SENTINEL_HOST",
            ));
        }
        (None, Some(_)) => {
            return Err(problem(
                "REDIS_SENTINEL_HOST",
                "must be set with REDIS_SENTINEL_PORT",
            ));
        }
        (None, None) => match v.get("REDIS_SENTINELS") {
            Some(raw) => parse_sentinels(raw)?,
            None => {
                return Err(problem(
                    "REDIS_SENTINELS",
                    "REDIS_HAS_SENTINELS is on: list the sentinels as JSON \
                     ([{\"host\":\"…\",\"port\":26379}]) or set REDIS_SENTINEL_HOST and \
                     REDIS_SENTINEL_PORT",
                ));
            }
        },
    };
    match v
        .get("REDIS_SENTINEL_ROLE")
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        None | Some("master") => {}
        Some("slave") => {
            return Err(problem(
                "REDIS_SENTINEL_ROLE",
                "slave connects to a read-only replica, but tms writes its keys (lead keys, \
                 webhook secrets, rate-limit counters): use master or leave it unset",
            ));
        }
        Some(other) => {
            return Err(problem(
                "REDIS_SENTINEL_ROLE",
                format!("expected master, got {other:?}"),
            ));
        }
    }
    let master_name = v.string("REDIS_NAME", "mymaster");
    if master_name
        .chars()
        .any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(problem(
            "REDIS_NAME",
            "expected a Sentinel master group name without spaces",
        ));
    }
    // The data nodes' credentials and database: from REDIS_URL when it is given (its host is
    // the sentinels' to say), else REDIS_PASSWORD and REDIS_DATABASE.
    let (username, password, database) = match v.get("REDIS_URL") {
        Some(raw) => {
            let url = url::Url::parse(raw)
                .map_err(|err| problem("REDIS_URL", format!("not a valid URL: {err}")))?;
            let decode = |s: &str| {
                percent_encoding::percent_decode_str(s)
                    .decode_utf8_lossy()
                    .into_owned()
            };
            let database = match url.path().trim_start_matches('/') {
                "" => 0,
                db => db
                    .parse::<i64>()
                    .ok()
                    .filter(|db| (0..=15).contains(db))
                    .ok_or_else(|| {
                        problem("REDIS_URL", "the path must be a database number (0-15)")
                    })?,
            };
            (
                Some(decode(url.username())).filter(|u| !u.is_empty()),
                url.password().map(|p| SecretString::from(decode(p))),
                database,
            )
        }
        None => (
            None,
            v.secret("REDIS_PASSWORD"),
            v.number("REDIS_DATABASE", 0i64, 0, 15)?,
        ),
    };
    Ok(SentinelConfig {
        nodes,
        master_name,
        sentinel_password: v.secret("REDIS_SENTINEL_PASSWORD"),
        username,
        password,
        database,
    })
}

/// `REDIS_SENTINELS`: a non-empty JSON array of `{"host": "…", "port": 26379}`.
fn parse_sentinels(raw: &str) -> Result<Vec<SentinelNode>, ConfigError> {
    let nodes: Vec<SentinelNode> = serde_json::from_str(raw).map_err(|err| {
        problem(
            "REDIS_SENTINELS",
            format!("expected a JSON array of {{\"host\":\"…\",\"port\":26379}}: {err}"),
        )
    })?;
    if nodes.is_empty() {
        return Err(problem("REDIS_SENTINELS", "lists no sentinel"));
    }
    if let Some(node) = nodes
        .iter()
        .find(|n| n.host.trim().is_empty() || n.port == 0)
    {
        return Err(problem(
            "REDIS_SENTINELS",
            format!("invalid sentinel {:?}:{}", node.host, node.port),
        ));
    }
    Ok(nodes)
}

/// `REDIS_URL` (redis:// or rediss://) or one built from the original's `REDIS_HOST` family.
fn redis_url(v: &Vars) -> Result<Option<SecretString>, ConfigError> {
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
                .map(|p| format!(":{}@", super::encode(p)))
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

#[cfg(test)]
mod tests;
