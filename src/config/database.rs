//! Where the records live: `DATABASE_URL`, or the original's `DB_*` settings, or the embedded
//! SQLite file; and the helpers that keep a database URL's password out of sight.

use std::path::PathBuf;

use secrecy::SecretString;

use super::{ConfigError, Vars, problem};

/// The database the service stores its records in, chosen once at start-up.
#[derive(Clone)]
pub enum DatabaseConfig {
    /// An SQLite file (created and migrated on start).
    Sqlite { path: PathBuf },
    /// A PostgreSQL server; tables live in `schema`.
    Postgres { url: SecretString, schema: String },
}

impl DatabaseConfig {
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Sqlite { .. } => "sqlite",
            Self::Postgres { .. } => "postgres",
        }
    }
}

pub(super) fn database_config(
    v: &Vars,
    data_dir: &std::path::Path,
) -> Result<DatabaseConfig, ConfigError> {
    let schema = v.string("DB_SCHEMA", "main");
    if !is_identifier(&schema) {
        return Err(problem(
            "DB_SCHEMA",
            format!("expected letters, digits and underscores (max 63), got {schema:?}"),
        ));
    }
    if let Some(url) = v.get("DATABASE_URL") {
        if let Some(path) = url
            .strip_prefix("sqlite://")
            .or_else(|| url.strip_prefix("sqlite:"))
        {
            if path.is_empty() {
                return Err(problem("DATABASE_URL", "sqlite URL names no file"));
            }
            return Ok(DatabaseConfig::Sqlite {
                path: PathBuf::from(path),
            });
        }
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            return Ok(DatabaseConfig::Postgres {
                url: SecretString::from(url.to_string()),
                schema,
            });
        }
        return Err(problem(
            "DATABASE_URL",
            "expected a postgres://, postgresql:// or sqlite:// URL",
        ));
    }
    if let Some(host) = v.get("DB_HOST") {
        let port: u16 = v.number("DB_PORT", 5432, 1, u16::MAX)?;
        let user = v.string("DB_USER", "postgres");
        let database = v.string("DB_DATABASE", "postgres");
        let auth = match v.get("DB_PASSWORD") {
            Some(password) => format!("{}:{}@", encode(&user), encode(password)),
            None => format!("{}@", encode(&user)),
        };
        return Ok(DatabaseConfig::Postgres {
            url: SecretString::from(format!(
                "postgres://{auth}{host}:{port}/{}",
                encode(&database)
            )),
            schema,
        });
    }
    Ok(DatabaseConfig::Sqlite {
        path: data_dir.join("tms.sqlite3"),
    })
}

/// Whether `s` is a plain SQL identifier (used for the PostgreSQL schema name, which cannot be a
/// bound parameter).
pub fn is_identifier(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !s.starts_with(|c: char| c.is_ascii_digit())
}

/// Percent-encodes the characters that would break a URL's user-info or path.
pub(super) fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `scheme://user:secret@host/...` → `scheme://user:***@host/...`.
pub fn mask_url_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split(':').next().unwrap_or("");
            let masked = if userinfo.contains(':') {
                format!("{user}:***")
            } else {
                user.to_string()
            };
            format!("{scheme}://{masked}@{host}{path}")
        }
        None => url.to_string(),
    }
}
