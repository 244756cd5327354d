//! Every setting of the service: names kept from the original, defaults for the embedded mode,
//! validation at start-up (one line naming the variable), and a masked printout for `tms config`.

use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};

pub use crate::client_ip::TrustedProxies;
pub use audit::AuditConfig;
pub use billing::BillingConfig;
pub use database::{DatabaseConfig, is_identifier, mask_url_password};
use database::{database_config, encode};
pub use identity::{ADMIN_REALM, AllowedHosts, Isolation, Tiers, realm_of_tier};
pub use jwks::JwksConfig;
pub use redis::{RedisConfig, RedisTarget, RedisTls, ReplicaWait, SentinelConfig, SentinelNode};
pub use telemetry::{OtlpProtocol, Root, Sampler, TracesConfig};

mod audit;
mod billing;
mod database;
mod identity;
mod jwks;
mod masked;
mod redis;
mod telemetry;

/// Where the service runs; decides which defaults are acceptable (dev generates a JWT secret, prod
/// refuses to start without one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Environment {
    Dev,
    Test,
    Prod,
}

impl Environment {
    fn parse(raw: &str) -> Option<Self> {
        match raw.to_ascii_lowercase().as_str() {
            "dev" | "development" | "local" => Some(Self::Dev),
            "test" => Some(Self::Test),
            "prod" | "production" => Some(Self::Prod),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Dev => "dev",
            Self::Test => "test",
            Self::Prod => "prod",
        }
    }
}

/// Where provisioning events go (`EVENT_SINK`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventSink {
    Jsonl(PathBuf),
    Http(String),
    Nats(String),
    Command,
}

/// The effective configuration.
#[derive(Clone)]
pub struct Config {
    pub env: Environment,
    pub log_level: String,
    pub host: String,
    pub port: u16,
    pub data_dir: PathBuf,
    pub database: DatabaseConfig,
    pub db_pool_size: u32,
    /// How long a request waits for a database connection before it answers 503
    /// (`DB_ACQUIRE_TIMEOUT`, ms).
    pub db_acquire_timeout: Duration,
    /// Redis (`REDIS_URL`, `REDIS_HOST`, or Sentinel, with TLS); `None`: the key-value entries
    /// stay in the database.
    pub redis: Option<RedisConfig>,
    /// Prepended to every key of the key-value store (Redis or database): `REDIS_KEY_PREFIX`.
    pub redis_key_prefix: String,
    /// How lead keys and webhook secrets are written (`REDIS_ENTRY_FORMAT`: `tms` or the
    /// original's `original`, which needs Redis).
    pub redis_entry_format: crate::kv::original::EntryFormat,
    /// `None` means "not configured": in dev/test one is generated (and kept in the data dir).
    pub jwt_secret: Option<SecretString>,
    /// A secret being rotated out (`JWT_PREVIOUS_SECRET`): tokens signed with it are still
    /// accepted, none is signed with it.
    pub jwt_previous_secret: Option<SecretString>,
    /// A `JWT_SECRET` under 32 characters is accepted in production (`JWT_SECRET_ALLOW_SHORT`),
    /// with a warning at every start: one shared with the original's other services.
    pub jwt_short_secret_allowed: bool,
    pub jwt_issuer: String,
    /// Tokens of an identity provider, verified with the keys of its JWKS URL (`JWT_JWKS_*`,
    /// `JWT_AUDIENCE`, `JWT_PERMISSIONS_CLAIM`); `None`: only tms's own HS256 tokens.
    pub jwks: Option<JwksConfig>,
    pub system_user_id: String,
    pub from_email: String,
    pub app_name: String,
    pub app_validate_url: String,
    pub app_login_url: String,
    pub validation_token_expiry: Duration,
    pub lead_token_expiry: Duration,
    pub webhook_secret_expiry: Duration,
    pub public_api_max_attempts: u32,
    pub webhook_api_max_attempts: u32,
    /// Proxies whose `X-Forwarded-For` names the client (`TRUSTED_PROXIES`).
    pub trusted_proxies: TrustedProxies,
    pub siloed_pipeline: String,
    pub pooled_pipeline: String,
    /// The plan tiers a tenant may be provisioned on: silo (`SILO_TIERS`) or pooled
    /// (`POOLED_TIERS`).
    pub tiers: Tiers,
    /// How long a provisioning or offboarding may run before it counts as failed
    /// (`PROVISIONING_TIMEOUT`, ms).
    pub provisioning_timeout: Duration,
    /// The command sink's pipelines: `PIPELINE_COMMAND_<NAME>` commands by pipeline name
    /// (upper-cased, `-` as `_`), else executables in `PIPELINES_DIR`.
    pub pipeline_commands: std::collections::BTreeMap<String, String>,
    pub pipelines_dir: PathBuf,
    /// How long the command sink lets a pipeline run (`PIPELINE_TIMEOUT`, ms).
    pub pipeline_timeout: Duration,
    /// The key the HTTP event sink signs its requests with (`EVENT_SINK_SECRET`).
    pub event_sink_secret: Option<SecretString>,
    /// The JetStream stream of the NATS sink (`NATS_STREAM`) and the prefix of its subjects
    /// (`NATS_SUBJECT_PREFIX`: events go to `<prefix>.<type>`).
    pub nats_stream: String,
    pub nats_subject_prefix: String,
    /// How long JetStream remembers an event's id to drop a second publication of it
    /// (`NATS_DUPLICATE_WINDOW`, ms): longer than the relay's lease, after which an event whose
    /// relay died before marking it delivered is published again.
    pub nats_duplicate_window: Duration,
    pub lead_key_length: usize,
    pub lead_key_in_response: bool,
    pub smtp_url: Option<SecretString>,
    /// `MAIL_TEMPLATE_DIR`: files here override the built-in mail templates part by part.
    pub mail_template_dir: Option<PathBuf>,
    pub event_sink: EventSink,
    pub keycloak_host: Option<String>,
    pub keycloak_admin_username: Option<String>,
    pub keycloak_admin_password: Option<SecretString>,
    pub auth0_domain: Option<String>,
    pub auth0_client_id: Option<String>,
    pub auth0_client_secret: Option<SecretString>,
    pub auth0_audience: Option<String>,
    /// Where a tenant's own identity provider may be (`IDP_ALLOWED_HOSTS`); empty: nowhere.
    pub idp_allowed_hosts: AllowedHosts,
    pub aws_region: Option<String>,
    /// Invoices and billing runs (`BILLING_*`).
    pub billing: BillingConfig,
    /// The audit trail's retention (`AUDIT_RETENTION_DAYS`).
    pub audit: AuditConfig,
    pub request_body_limit: usize,
    pub request_timeout: Duration,
    /// How long the first answer to a POST with an `Idempotency-Key` is replayed
    /// (`IDEMPOTENCY_TTL`, ms).
    pub idempotency_ttl: Duration,
    /// The most rows a list answers, and related rows per row of an include
    /// (`MAX_LIST_LIMIT`).
    pub max_list_limit: u64,
    /// From the first byte of a request to the end of its head (`HTTP_HEADER_TIMEOUT`, ms).
    pub http_header_timeout: Duration,
    /// How long a connection may wait for its next request (`HTTP_IDLE_TIMEOUT`, ms).
    pub http_idle_timeout: Duration,
    /// How long writing a response may make no progress (`HTTP_WRITE_TIMEOUT`, ms).
    pub http_write_timeout: Duration,
    /// How long a shutdown waits for requests in flight (`SHUTDOWN_TIMEOUT`, ms).
    pub shutdown_timeout: Duration,
    /// The bearer token `GET /metrics` asks for on the service's port (`METRICS_TOKEN`).
    pub metrics_token: Option<SecretString>,
    /// An address serving `GET /metrics` alone, without a token (`METRICS_ADDR`).
    pub metrics_addr: Option<std::net::SocketAddr>,
    /// OpenTelemetry traces over OTLP (`OTEL_*`); `None` when off.
    pub traces: Option<TracesConfig>,
}

/// A configuration problem: which variable, and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid configuration: {var}: {problem}")]
pub struct ConfigError {
    pub var: String,
    pub problem: String,
}

fn problem(var: &str, problem: impl Into<String>) -> ConfigError {
    ConfigError {
        var: var.to_string(),
        problem: problem.into(),
    }
}

/// Reads variables from a map (the process environment in production, a literal map in tests).
struct Vars<'a>(&'a HashMap<String, String>);

impl Vars<'_> {
    /// The value of `name`, with empty strings treated as unset.
    fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(|v| v.trim()).filter(|v| !v.is_empty())
    }

    fn string(&self, name: &str, default: &str) -> String {
        self.get(name).unwrap_or(default).to_string()
    }

    fn secret(&self, name: &str) -> Option<SecretString> {
        self.get(name).map(|v| SecretString::from(v.to_string()))
    }

    fn number<T: std::str::FromStr + PartialOrd + fmt::Display + Copy>(
        &self,
        name: &str,
        default: T,
        min: T,
        max: T,
    ) -> Result<T, ConfigError> {
        let Some(raw) = self.get(name) else {
            return Ok(default);
        };
        let value: T = raw.parse().map_err(|_| {
            // A whole number that does not fit the type is out of range, not malformed.
            if raw.parse::<i128>().is_ok() {
                problem(name, format!("must be between {min} and {max}, got {raw}"))
            } else {
                problem(name, format!("expected a whole number, got {raw:?}"))
            }
        })?;
        if value < min || value > max {
            return Err(problem(
                name,
                format!("must be between {min} and {max}, got {value}"),
            ));
        }
        Ok(value)
    }

    fn boolean(&self, name: &str, default: bool) -> Result<bool, ConfigError> {
        match self.get(name).map(str::to_ascii_lowercase).as_deref() {
            None => Ok(default),
            Some("true" | "1" | "yes" | "on") => Ok(true),
            Some("false" | "0" | "no" | "off") => Ok(false),
            Some(other) => Err(problem(
                name,
                format!("expected true or false, got {other:?}"),
            )),
        }
    }

    fn url(&self, name: &str, default: &str) -> Result<String, ConfigError> {
        let value = self.string(name, default);
        if !(value.starts_with("http://") || value.starts_with("https://")) {
            return Err(problem(
                name,
                format!("expected an http:// or https:// URL, got {value:?}"),
            ));
        }
        Ok(value)
    }
}

/// The listen address when `HOST` is not set: loopback in development, so a developer's
/// `cargo run` (and its generated secret) is not reachable from the network; every interface
/// in test and prod, where the service runs in a container or behind a load balancer.
fn default_host(env: Environment) -> &'static str {
    match env {
        Environment::Dev => "127.0.0.1",
        Environment::Test | Environment::Prod => "0.0.0.0",
    }
}

/// Who tms's own writes are by, unless `SYSTEM_USER_ID` says otherwise (the original's value).
pub const DEFAULT_SYSTEM_USER_ID: &str = "00000000-0000-0000-0000-000000000001";

const LOG_LEVELS: [&str; 5] = ["error", "warn", "info", "debug", "trace"];
const MAX_MS: u64 = 365 * 24 * 3600 * 1000;

/// The shortest `NATS_DUPLICATE_WINDOW` (ms): twice the outbox relay's lease
/// (`events::RELAY_LEASE`, 30 s), the longest a redelivery after a relay died can come after the
/// first publication, with room to spare.
pub const MIN_NATS_DUPLICATE_WINDOW_MS: u64 = 60_000;

impl Config {
    /// The configuration from the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_map(&std::env::vars().collect())
    }

    /// The configuration from a map of variables; every value is validated.
    pub fn from_map(map: &HashMap<String, String>) -> Result<Self, ConfigError> {
        let v = Vars(map);

        let env = match ["TMS_ENV", "APP_ENV", "NODE_ENV"]
            .iter()
            .find_map(|name| v.get(name).map(|raw| (*name, raw)))
        {
            None => Environment::Dev,
            Some((name, raw)) => Environment::parse(raw)
                .ok_or_else(|| problem(name, format!("expected dev, test or prod, got {raw:?}")))?,
        };

        let log_level = v.string("LOG_LEVEL", "info").to_ascii_lowercase();
        if !LOG_LEVELS.contains(&log_level.as_str()) {
            return Err(problem(
                "LOG_LEVEL",
                format!(
                    "expected one of {}, got {log_level:?}",
                    LOG_LEVELS.join(", ")
                ),
            ));
        }

        let data_dir = PathBuf::from(v.string("TMS_DATA_DIR", "./data"));
        let database = database_config(&v, &data_dir)?;

        let redis = redis::redis_config(&v)?;

        let jwt_secret = v.secret("JWT_SECRET");
        let jwt_short_secret_allowed = v.boolean("JWT_SECRET_ALLOW_SHORT", false)?;
        match (&jwt_secret, env) {
            (None, Environment::Prod) => {
                return Err(problem("JWT_SECRET", "must be set when TMS_ENV=prod"));
            }
            (Some(secret), Environment::Prod)
                if secret.expose_secret().len() < 32 && !jwt_short_secret_allowed =>
            {
                return Err(problem(
                    "JWT_SECRET",
                    "must be at least 32 characters when TMS_ENV=prod (to keep a shorter one \
                     shared with other services for now, set JWT_SECRET_ALLOW_SHORT=true and \
                     rotate it: docs/switch-over.md)",
                ));
            }
            _ => {}
        }

        let smtp_url = v.secret("SMTP_URL").or_else(|| {
            v.get("SMTP_HOST").map(|host| {
                let auth = match (v.get("SMTP_USER"), v.get("SMTP_PASSWORD")) {
                    (Some(user), Some(pass)) => format!("{}:{}@", encode(user), encode(pass)),
                    (Some(user), None) => format!("{}@", encode(user)),
                    _ => String::new(),
                };
                let port = v
                    .get("SMTP_PORT")
                    .map(|p| format!(":{p}"))
                    .unwrap_or_default();
                SecretString::from(format!("smtp://{auth}{host}{port}"))
            })
        });
        if let Some(url) = &smtp_url {
            let raw = url.expose_secret();
            if !(raw.starts_with("smtp://") || raw.starts_with("smtps://")) {
                return Err(problem("SMTP_URL", "expected an smtp:// or smtps:// URL"));
            }
        }

        let mail_template_dir = v.get("MAIL_TEMPLATE_DIR").map(PathBuf::from);
        if let Some(dir) = &mail_template_dir
            && !dir.is_dir()
        {
            return Err(problem(
                "MAIL_TEMPLATE_DIR",
                format!("{} is not an existing directory", dir.display()),
            ));
        }

        let event_sink = match v.get("EVENT_SINK") {
            None => EventSink::Jsonl(data_dir.join("events.jsonl")),
            Some(raw) => parse_event_sink(raw)?,
        };

        let event_sink_secret = v.secret("EVENT_SINK_SECRET");
        if matches!(event_sink, EventSink::Http(_)) && event_sink_secret.is_none() {
            return Err(problem(
                "EVENT_SINK_SECRET",
                "must be set when EVENT_SINK is an http: URL (its requests are signed with it)",
            ));
        }

        let lead_key_length = v.number("LEAD_KEY_LENGTH", 36usize, 16, 128)?;
        let port = v.number("PORT", 3005u16, 0, u16::MAX)?;
        let billing = BillingConfig::from_vars(&v, &v.string("APP_NAME", "tms"))?;
        let redis_entry_format = match v.get("REDIS_ENTRY_FORMAT") {
            None => crate::kv::original::EntryFormat::default(),
            Some(raw) => crate::kv::original::EntryFormat::parse(raw).ok_or_else(|| {
                problem(
                    "REDIS_ENTRY_FORMAT",
                    format!("expected tms or original, got {raw:?}"),
                )
            })?,
        };
        if redis_entry_format == crate::kv::original::EntryFormat::Original && redis.is_none() {
            return Err(problem(
                "REDIS_ENTRY_FORMAT",
                "original needs Redis (REDIS_URL or REDIS_HOST): the original keeps its entries there",
            ));
        }

        Ok(Self {
            env,
            log_level,
            host: v.string("HOST", default_host(env)),
            port,
            data_dir,
            database,
            db_pool_size: v.number("DB_POOL_SIZE", 10u32, 1, 1000)?,
            db_acquire_timeout: Duration::from_millis(v.number(
                "DB_ACQUIRE_TIMEOUT",
                5_000u64,
                100,
                600_000,
            )?),
            redis,
            redis_key_prefix: redis::redis_key_prefix(&v)?,
            redis_entry_format,
            jwt_secret,
            jwt_previous_secret: v.secret("JWT_PREVIOUS_SECRET"),
            jwt_short_secret_allowed,
            jwt_issuer: v.string("JWT_ISSUER", "tms"),
            jwks: JwksConfig::from_vars(&v, env)?,
            traces: TracesConfig::from_vars(&v)?,
            system_user_id: v.string("SYSTEM_USER_ID", DEFAULT_SYSTEM_USER_ID),
            from_email: v.string("FROM_EMAIL", "no-reply@tms.localhost"),
            app_name: v.string("APP_NAME", "tms"),
            // By default the link opens tms's own verification page.
            app_validate_url: v.url(
                "APP_VALIDATE_URL",
                &format!("http://localhost:{port}/verify"),
            )?,
            // The welcome mail's link when the pipeline names no app plane: tms's own home
            // page, which exists, until the operator names the application's sign-in page.
            app_login_url: v.url("APP_LOGIN_URL", &format!("http://localhost:{port}/"))?,
            validation_token_expiry: Duration::from_millis(v.number(
                "VALIDATION_TOKEN_EXPIRY",
                3_600_000u64,
                1_000,
                MAX_MS,
            )?),
            lead_token_expiry: Duration::from_secs(v.number(
                "LEAD_TOKEN_EXPIRY",
                86_400u64,
                1,
                MAX_MS / 1000,
            )?),
            webhook_secret_expiry: Duration::from_millis(v.number(
                "WEBHOOK_SECRET_EXPIRY",
                86_400_000u64,
                1_000,
                MAX_MS,
            )?),
            public_api_max_attempts: v.number("PUBLIC_API_MAX_ATTEMPTS", 10u32, 1, 1_000_000)?,
            webhook_api_max_attempts: v.number("WEBHOOK_API_MAX_ATTEMPTS", 10u32, 1, 1_000_000)?,
            trusted_proxies: TrustedProxies::parse(v.get("TRUSTED_PROXIES").unwrap_or(""))
                .map_err(|err| problem("TRUSTED_PROXIES", err))?,
            siloed_pipeline: v.string("SILOED_PIPELINE", "siloed"),
            pooled_pipeline: v.string("POOLED_PIPELINE", "pooled"),
            tiers: Tiers::from_vars(&v)?,
            provisioning_timeout: Duration::from_millis(v.number(
                "PROVISIONING_TIMEOUT",
                3_600_000u64,
                1_000,
                MAX_MS,
            )?),
            pipeline_commands: map
                .iter()
                .filter_map(|(name, command)| {
                    let pipeline = name.strip_prefix("PIPELINE_COMMAND_")?;
                    let command = command.trim();
                    (!pipeline.is_empty() && !command.is_empty())
                        .then(|| (pipeline.to_string(), command.to_string()))
                })
                .collect(),
            pipelines_dir: PathBuf::from(v.string("PIPELINES_DIR", "./pipelines")),
            pipeline_timeout: Duration::from_millis(v.number(
                "PIPELINE_TIMEOUT",
                600_000u64,
                100,
                MAX_MS,
            )?),
            event_sink_secret,
            nats_stream: nats_name(&v, "NATS_STREAM", "TMS_EVENTS", false)?,
            nats_subject_prefix: nats_name(&v, "NATS_SUBJECT_PREFIX", "tms.events", true)?,
            nats_duplicate_window: Duration::from_millis(v.number(
                "NATS_DUPLICATE_WINDOW",
                600_000u64,
                MIN_NATS_DUPLICATE_WINDOW_MS,
                7 * 24 * 3600 * 1000,
            )?),
            lead_key_length,
            lead_key_in_response: v.boolean("LEAD_KEY_IN_RESPONSE", false)?,
            smtp_url,
            mail_template_dir,
            event_sink,
            keycloak_host: match v.get("KEYCLOAK_HOST") {
                Some(_) => Some(secure_url(&v, env, "KEYCLOAK_HOST")?),
                None => None,
            },
            keycloak_admin_username: v.get("KEYCLOAK_ADMIN_USERNAME").map(str::to_string),
            keycloak_admin_password: v.secret("KEYCLOAK_ADMIN_PASSWORD"),
            auth0_domain: match v.get("AUTH0_DOMAIN") {
                Some(domain) if domain.contains("://") => {
                    Some(secure_url(&v, env, "AUTH0_DOMAIN")?)
                }
                other => other.map(str::to_string),
            },
            auth0_client_id: v.get("AUTH0_CLIENT_ID").map(str::to_string),
            auth0_client_secret: v.secret("AUTH0_CLIENT_SECRET"),
            auth0_audience: v.get("AUTH0_AUDIENCE").map(str::to_string),
            idp_allowed_hosts: AllowedHosts::parse(v.get("IDP_ALLOWED_HOSTS").unwrap_or(""))
                .map_err(|err| problem("IDP_ALLOWED_HOSTS", err))?,
            aws_region: v.get("AWS_REGION").map(str::to_string),
            billing,
            audit: AuditConfig::from_vars(&v)?,
            request_body_limit: v.number("REQUEST_BODY_LIMIT", 1_048_576usize, 1_024, 1 << 30)?,
            request_timeout: Duration::from_millis(v.number(
                "REQUEST_TIMEOUT",
                30_000u64,
                100,
                600_000,
            )?),
            idempotency_ttl: Duration::from_millis(v.number(
                "IDEMPOTENCY_TTL",
                86_400_000u64,
                1_000,
                MAX_MS,
            )?),
            max_list_limit: v.number(
                "MAX_LIST_LIMIT",
                crate::store::filter::MAX_LIMIT,
                1,
                100_000,
            )?,
            http_header_timeout: Duration::from_millis(v.number(
                "HTTP_HEADER_TIMEOUT",
                10_000u64,
                100,
                600_000,
            )?),
            http_idle_timeout: Duration::from_millis(v.number(
                "HTTP_IDLE_TIMEOUT",
                75_000u64,
                100,
                3_600_000,
            )?),
            http_write_timeout: Duration::from_millis(v.number(
                "HTTP_WRITE_TIMEOUT",
                30_000u64,
                100,
                600_000,
            )?),
            shutdown_timeout: Duration::from_millis(v.number(
                "SHUTDOWN_TIMEOUT",
                20_000u64,
                0,
                600_000,
            )?),
            metrics_token: match v.secret("METRICS_TOKEN") {
                Some(token) if token.expose_secret().len() < 16 => {
                    return Err(problem("METRICS_TOKEN", "must be at least 16 characters"));
                }
                token => token,
            },
            metrics_addr: v
                .get("METRICS_ADDR")
                .map(|raw| {
                    raw.parse().map_err(|_| {
                        problem(
                            "METRICS_ADDR",
                            format!("expected an address and port (127.0.0.1:9100), got {raw:?}"),
                        )
                    })
                })
                .transpose()?,
        })
    }
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.masked_lines()).finish()
    }
}

/// The URL of an identity provider the operator configured: https, or http in development.
fn secure_url(v: &Vars, env: Environment, name: &str) -> Result<String, ConfigError> {
    let value = v.url(name, "")?;
    if env == Environment::Prod && !value.starts_with("https://") {
        return Err(problem(
            name,
            "must be an https:// URL in production (admin credentials go there)",
        ));
    }
    Ok(value)
}

/// A JetStream stream name (letters, digits, `-`, `_`) or subject prefix (also `.`-separated
/// tokens), at most 64 characters.
fn nats_name(v: &Vars, name: &str, default: &str, dots: bool) -> Result<String, ConfigError> {
    let value = v.string(name, default);
    let ok = !value.is_empty()
        && value.len() <= 64
        && value.split('.').all(|token| {
            !token.is_empty()
                && token
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
        && (dots || !value.contains('.'));
    if !ok {
        return Err(problem(
            name,
            format!(
                "expected letters, digits, '-' and '_'{} (max 64), got {value:?}",
                if dots { " in '.'-separated tokens" } else { "" }
            ),
        ));
    }
    Ok(value)
}

fn parse_event_sink(raw: &str) -> Result<EventSink, ConfigError> {
    let bad = |what: &str| problem("EVENT_SINK", what.to_string());
    if raw == "command" {
        return Ok(EventSink::Command);
    }
    let (kind, target) = raw
        .split_once(':')
        .ok_or_else(|| bad("expected jsonl:<path>, http:<url>, nats:<url> or command"))?;
    match kind {
        "jsonl" if !target.is_empty() => Ok(EventSink::Jsonl(PathBuf::from(target))),
        "http" | "https" if target.starts_with("//") => Ok(EventSink::Http(raw.to_string())),
        "http" if target.starts_with("http://") || target.starts_with("https://") => {
            Ok(EventSink::Http(target.to_string()))
        }
        "nats" if !target.is_empty() => Ok(EventSink::Nats(
            if target.starts_with("nats://") || target.starts_with("//") {
                target.trim_start_matches("//").to_string()
            } else {
                target.to_string()
            },
        )),
        _ => Err(bad(
            "expected jsonl:<path>, http:<url>, nats:<url> or command",
        )),
    }
}

#[cfg(test)]
mod tests;
