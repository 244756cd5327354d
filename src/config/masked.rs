//! The effective configuration as `NAME=value` lines for `tms config` and start-up logs,
//! every secret masked.

use secrecy::{ExposeSecret, SecretString};

use super::{
    Config, DatabaseConfig, EventSink, JwksConfig, RedisConfig, TracesConfig, mask_url_password,
};

impl Config {
    /// The effective configuration as `NAME=value` lines, secrets masked.
    pub fn masked_lines(&self) -> Vec<String> {
        fn opt(value: &Option<String>) -> String {
            value.clone().unwrap_or_default()
        }
        fn secret(value: &Option<SecretString>) -> String {
            match value {
                Some(_) => "***".into(),
                None => String::new(),
            }
        }
        let (db_kind, db_target, db_schema) = match &self.database {
            DatabaseConfig::Sqlite { path } => ("sqlite", path.display().to_string(), ""),
            DatabaseConfig::Postgres { url, schema } => (
                "postgres",
                mask_url_password(url.expose_secret()),
                schema.as_str(),
            ),
        };
        let sink = match &self.event_sink {
            EventSink::Jsonl(path) => format!("jsonl:{}", path.display()),
            EventSink::Http(url) => format!("http:{url}"),
            EventSink::Nats(url) => format!("nats:{url}"),
            EventSink::Command => "command".into(),
        };
        let url_of = |s: &Option<SecretString>| {
            s.as_ref()
                .map(|u| mask_url_password(u.expose_secret()))
                .unwrap_or_default()
        };
        [
            ("TMS_ENV", self.env.as_str().to_string()),
            ("LOG_LEVEL", self.log_level.clone()),
            ("HOST", self.host.clone()),
            ("PORT", self.port.to_string()),
            ("TMS_DATA_DIR", self.data_dir.display().to_string()),
            ("DATABASE", db_kind.to_string()),
            ("DATABASE_URL", db_target),
            ("DB_SCHEMA", db_schema.to_string()),
            ("DB_POOL_SIZE", self.db_pool_size.to_string()),
            (
                "DB_ACQUIRE_TIMEOUT",
                self.db_acquire_timeout.as_millis().to_string(),
            ),
        ]
        .into_iter()
        .chain(RedisConfig::lines(self.redis.as_ref()))
        .chain([
            ("REDIS_KEY_PREFIX", self.redis_key_prefix.clone()),
            (
                "REDIS_ENTRY_FORMAT",
                self.redis_entry_format.as_str().to_string(),
            ),
            ("JWT_SECRET", secret(&self.jwt_secret)),
            ("JWT_PREVIOUS_SECRET", secret(&self.jwt_previous_secret)),
            (
                "JWT_SECRET_ALLOW_SHORT",
                self.jwt_short_secret_allowed.to_string(),
            ),
            ("JWT_ISSUER", self.jwt_issuer.clone()),
        ])
        .chain(JwksConfig::lines(self.jwks.as_ref()))
        .chain([
            ("SYSTEM_USER_ID", self.system_user_id.clone()),
            ("FROM_EMAIL", self.from_email.clone()),
            ("APP_NAME", self.app_name.clone()),
            ("APP_VALIDATE_URL", self.app_validate_url.clone()),
            ("APP_LOGIN_URL", self.app_login_url.clone()),
            (
                "VALIDATION_TOKEN_EXPIRY",
                self.validation_token_expiry.as_millis().to_string(),
            ),
            (
                "LEAD_TOKEN_EXPIRY",
                self.lead_token_expiry.as_secs().to_string(),
            ),
            (
                "WEBHOOK_SECRET_EXPIRY",
                self.webhook_secret_expiry.as_millis().to_string(),
            ),
            (
                "PUBLIC_API_MAX_ATTEMPTS",
                self.public_api_max_attempts.to_string(),
            ),
            (
                "WEBHOOK_API_MAX_ATTEMPTS",
                self.webhook_api_max_attempts.to_string(),
            ),
            ("TRUSTED_PROXIES", self.trusted_proxies.to_string()),
            ("SILOED_PIPELINE", self.siloed_pipeline.clone()),
            ("POOLED_PIPELINE", self.pooled_pipeline.clone()),
            (
                "PROVISIONING_TIMEOUT",
                self.provisioning_timeout.as_millis().to_string(),
            ),
            ("PIPELINES_DIR", self.pipelines_dir.display().to_string()),
            (
                "PIPELINE_TIMEOUT",
                self.pipeline_timeout.as_millis().to_string(),
            ),
            ("EVENT_SINK_SECRET", secret(&self.event_sink_secret)),
            ("NATS_STREAM", self.nats_stream.clone()),
            ("NATS_SUBJECT_PREFIX", self.nats_subject_prefix.clone()),
            (
                "NATS_DUPLICATE_WINDOW",
                self.nats_duplicate_window.as_millis().to_string(),
            ),
            ("LEAD_KEY_LENGTH", self.lead_key_length.to_string()),
            (
                "LEAD_KEY_IN_RESPONSE",
                self.lead_key_in_response.to_string(),
            ),
            ("SMTP_URL", url_of(&self.smtp_url)),
            (
                "MAIL_TEMPLATE_DIR",
                self.mail_template_dir
                    .as_ref()
                    .map(|d| d.display().to_string())
                    .unwrap_or_default(),
            ),
            ("EVENT_SINK", sink),
            ("KEYCLOAK_HOST", opt(&self.keycloak_host)),
            (
                "KEYCLOAK_ADMIN_USERNAME",
                opt(&self.keycloak_admin_username),
            ),
            (
                "KEYCLOAK_ADMIN_PASSWORD",
                secret(&self.keycloak_admin_password),
            ),
            ("AUTH0_DOMAIN", opt(&self.auth0_domain)),
            ("AUTH0_CLIENT_ID", opt(&self.auth0_client_id)),
            ("AUTH0_CLIENT_SECRET", secret(&self.auth0_client_secret)),
            ("AUTH0_AUDIENCE", opt(&self.auth0_audience)),
            ("IDP_ALLOWED_HOSTS", self.idp_allowed_hosts.to_string()),
            ("AWS_REGION", opt(&self.aws_region)),
            ("REQUEST_BODY_LIMIT", self.request_body_limit.to_string()),
            (
                "REQUEST_TIMEOUT",
                self.request_timeout.as_millis().to_string(),
            ),
            (
                "IDEMPOTENCY_TTL",
                self.idempotency_ttl.as_millis().to_string(),
            ),
            ("MAX_LIST_LIMIT", self.max_list_limit.to_string()),
            (
                "HTTP_HEADER_TIMEOUT",
                self.http_header_timeout.as_millis().to_string(),
            ),
            (
                "HTTP_IDLE_TIMEOUT",
                self.http_idle_timeout.as_millis().to_string(),
            ),
            (
                "HTTP_WRITE_TIMEOUT",
                self.http_write_timeout.as_millis().to_string(),
            ),
            (
                "SHUTDOWN_TIMEOUT",
                self.shutdown_timeout.as_millis().to_string(),
            ),
            ("METRICS_TOKEN", secret(&self.metrics_token)),
            (
                "METRICS_ADDR",
                self.metrics_addr.map(|a| a.to_string()).unwrap_or_default(),
            ),
        ])
        .chain(self.tiers.lines())
        .chain(self.billing.lines())
        .chain(self.audit.lines())
        .chain(TracesConfig::lines(self.traces.as_ref()))
        .map(|(k, v)| format!("{k}={v}"))
        .collect()
    }
}
