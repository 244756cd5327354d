//! Tests of configuration parsing: defaults, validation messages, the database URL, masking.

use super::*;

fn config(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
    Config::from_map(
        &pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    )
}

#[test]
fn defaults_are_the_embedded_mode() {
    let c = config(&[]).unwrap();
    assert_eq!(c.env, Environment::Dev);
    assert_eq!(c.port, 3005);
    assert!(
        matches!(c.database, DatabaseConfig::Sqlite { ref path } if path.ends_with("tms.sqlite3"))
    );
    assert_eq!(
        c.event_sink,
        EventSink::Jsonl(PathBuf::from("./data/events.jsonl"))
    );
    assert!(c.jwt_secret.is_none());
    assert!(!c.lead_key_in_response);
    // The mail links open pages the service has: /verify and the home page.
    assert_eq!(c.app_validate_url, "http://localhost:3005/verify");
    assert_eq!(c.app_login_url, "http://localhost:3005/");
    let c = config(&[("PORT", "8080")]).unwrap();
    assert_eq!(c.app_login_url, "http://localhost:8080/");
    assert_eq!(c.idempotency_ttl, Duration::from_secs(24 * 3600));
    let c = config(&[("IDEMPOTENCY_TTL", "60000")]).unwrap();
    assert_eq!(c.idempotency_ttl, Duration::from_secs(60));
    assert!(
        c.masked_lines()
            .contains(&"IDEMPOTENCY_TTL=60000".to_string())
    );
}

#[test]
fn development_listens_on_loopback_unless_host_says_otherwise() {
    assert_eq!(config(&[]).unwrap().host, "127.0.0.1");
    for (var, dev) in [
        ("TMS_ENV", "dev"),
        ("APP_ENV", "development"),
        ("NODE_ENV", "local"),
    ] {
        assert_eq!(
            config(&[(var, dev)]).unwrap().host,
            "127.0.0.1",
            "{var}={dev}"
        );
    }
    assert_eq!(
        config(&[("HOST", "0.0.0.0")]).unwrap().host,
        "0.0.0.0",
        "HOST wins in development"
    );
    // Test and prod keep listening on every interface (containers, load balancers).
    assert_eq!(config(&[("TMS_ENV", "test")]).unwrap().host, "0.0.0.0");
    let prod = config(&[("NODE_ENV", "production"), ("JWT_SECRET", &"s".repeat(32))]).unwrap();
    assert_eq!(prod.host, "0.0.0.0");
    assert_eq!(
        config(&[
            ("TMS_ENV", "prod"),
            ("JWT_SECRET", &"s".repeat(32)),
            ("HOST", "10.1.2.3")
        ])
        .unwrap()
        .host,
        "10.1.2.3"
    );
}

#[test]
fn bad_values_name_the_variable() {
    for (var, value) in [
        ("PORT", "http"),
        ("PORT", "70000"),
        ("LOG_LEVEL", "loud"),
        ("TMS_ENV", "staging"),
        ("DATABASE_URL", "mysql://x"),
        ("DB_SCHEMA", "main; drop"),
        ("LEAD_KEY_IN_RESPONSE", "maybe"),
        ("EVENT_SINK", "kafka:x"),
        ("APP_VALIDATE_URL", "ftp://x"),
        ("LEAD_KEY_LENGTH", "4"),
        ("REDIS_URL", "http://x"),
        ("MAIL_TEMPLATE_DIR", "/nonexistent/tms-mail-templates"),
        ("REDIS_KEY_PREFIX", "tms prod:"),
        ("TRUSTED_PROXIES", "10.0.0.0/8,proxy.internal"),
        ("TRUSTED_PROXIES", "10.0.0.0/33"),
        ("KEYCLOAK_HOST", "sso.example.com"),
        ("IDEMPOTENCY_TTL", "0"),
        ("IDEMPOTENCY_TTL", "1d"),
    ] {
        let err = config(&[(var, value)])
            .err()
            .unwrap_or_else(|| panic!("{var}={value} accepted"));
        assert_eq!(err.var, var, "{value}");
        assert!(
            err.to_string()
                .starts_with(&format!("invalid configuration: {var}: "))
        );
    }
}

#[test]
fn node_env_is_accepted_and_prod_needs_a_strong_secret() {
    let err = config(&[("NODE_ENV", "production")]).err().unwrap();
    assert_eq!(err.var, "JWT_SECRET");
    let err = config(&[("TMS_ENV", "prod"), ("JWT_SECRET", "short")])
        .err()
        .unwrap();
    assert_eq!(err.var, "JWT_SECRET");
    let c = config(&[("TMS_ENV", "prod"), ("JWT_SECRET", &"x".repeat(32))]).unwrap();
    assert_eq!(c.env, Environment::Prod);
    // The original's .env: NODE_ENV=production and a short secret the other services share,
    // kept on purpose during a switch-over.
    let c = config(&[
        ("NODE_ENV", "production"),
        ("JWT_SECRET", "short"),
        ("JWT_SECRET_ALLOW_SHORT", "true"),
        ("JWT_PREVIOUS_SECRET", "older"),
    ])
    .unwrap();
    assert!(c.jwt_short_secret_allowed);
    let printed = c.masked_lines().join("\n");
    assert!(printed.contains("JWT_PREVIOUS_SECRET=***"), "{printed}");
    assert!(!printed.contains("older"));
}

#[test]
fn db_variables_build_a_postgres_url_and_mask_it() {
    let c = config(&[
        ("DB_HOST", "db"),
        ("DB_USER", "tms"),
        ("DB_PASSWORD", "p@ss"),
        ("DB_DATABASE", "control"),
        ("DB_SCHEMA", "tenancy"),
    ])
    .unwrap();
    let DatabaseConfig::Postgres { url, schema } = &c.database else {
        panic!("expected postgres")
    };
    assert_eq!(url.expose_secret(), "postgres://tms:p%40ss@db:5432/control");
    assert_eq!(schema, "tenancy");
    let printed = c.masked_lines().join("\n");
    assert!(printed.contains("DATABASE_URL=postgres://tms:***@db:5432/control"));
    assert!(!printed.contains("p%40ss"));
}

#[test]
fn secrets_are_masked_in_the_printout() {
    let c = config(&[
        ("JWT_SECRET", "topsecretvalue"),
        ("SMTP_URL", "smtp://me:hunter2@mail:587"),
        ("AUTH0_CLIENT_SECRET", "a0secret"),
    ])
    .unwrap();
    let printed = format!("{:?}", c);
    assert!(printed.contains("JWT_SECRET=***"));
    assert!(printed.contains("SMTP_URL=smtp://me:***@mail:587"));
    for secret in ["topsecretvalue", "hunter2", "a0secret"] {
        assert!(!printed.contains(secret), "{secret} leaked");
    }
}

#[test]
fn database_url_wins_over_db_variables() {
    let c = config(&[("DATABASE_URL", "sqlite://x.db"), ("DB_HOST", "db")]).unwrap();
    assert!(matches!(c.database, DatabaseConfig::Sqlite { .. }));
}

#[test]
fn key_prefix_and_trusted_proxies() {
    let c = config(&[]).unwrap();
    assert_eq!(c.redis_key_prefix, "tms:");
    assert!(c.trusted_proxies.is_empty());
    let c = config(&[
        ("REDIS_KEY_PREFIX", "tms-eu:"),
        ("TRUSTED_PROXIES", "10.0.0.0/8, 127.0.0.1"),
    ])
    .unwrap();
    assert_eq!(c.redis_key_prefix, "tms-eu:");
    assert!(c.trusted_proxies.contains("10.1.2.3".parse().unwrap()));
    let printed = c.masked_lines().join("\n");
    assert!(printed.contains("REDIS_KEY_PREFIX=tms-eu:"));
    assert!(printed.contains("TRUSTED_PROXIES=10.0.0.0/8,127.0.0.1"));
}
