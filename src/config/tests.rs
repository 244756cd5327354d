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

#[test]
fn identity_provider_tokens_need_url_issuer_and_audience() {
    let kc = "https://sso.example.com/realms/acme";
    let url = "https://sso.example.com/realms/acme/protocol/openid-connect/certs";
    let c = config(&[]).unwrap();
    assert_eq!(c.jwks, None, "off by default");
    let printed = c.masked_lines().join("\n");
    assert!(printed.contains("\nJWT_JWKS_URL=\n"), "{printed}");
    assert!(printed.contains("\nJWT_AUDIENCE=\n"), "{printed}");

    let c = config(&[
        ("JWT_JWKS_URL", url),
        ("JWT_JWKS_ISSUER", kc),
        ("JWT_AUDIENCE", " tms , tms-api "),
        ("JWT_PERMISSIONS_CLAIM", "realm_access.roles"),
    ])
    .unwrap();
    let jwks = c.jwks.clone().unwrap();
    assert_eq!(jwks.url, url);
    assert_eq!(jwks.issuer, kc);
    assert_eq!(jwks.audiences, ["tms", "tms-api"]);
    assert_eq!(jwks.permissions_claim, "realm_access.roles");
    assert_eq!(jwks.refresh_interval, Duration::from_secs(300));
    assert_eq!(jwks.min_refresh_interval, Duration::from_secs(30));
    assert_eq!(c.jwt_issuer, "tms", "HS256 tokens keep their own issuer");
    let printed = c.masked_lines().join("\n");
    for line in [
        format!("JWT_JWKS_URL={url}"),
        format!("JWT_JWKS_ISSUER={kc}"),
        "JWT_AUDIENCE=tms,tms-api".to_string(),
        "JWT_PERMISSIONS_CLAIM=realm_access.roles".to_string(),
        "JWT_JWKS_REFRESH_INTERVAL=300".to_string(),
        "JWT_JWKS_MIN_REFRESH_INTERVAL=30".to_string(),
    ] {
        assert!(printed.contains(&line), "{line} in {printed}");
    }
    // An Auth0 namespaced claim is a name with dots in it: accepted as it is.
    let auth0 = config(&[
        (
            "JWT_JWKS_URL",
            "https://acme.eu.auth0.com/.well-known/jwks.json",
        ),
        ("JWT_JWKS_ISSUER", "https://acme.eu.auth0.com/"),
        ("JWT_AUDIENCE", "https://tms.acme.com"),
        ("JWT_PERMISSIONS_CLAIM", "https://acme.com/permissions"),
    ])
    .unwrap();
    assert_eq!(
        auth0.jwks.unwrap().permissions_claim,
        "https://acme.com/permissions"
    );
}

#[test]
fn identity_provider_settings_are_refused_with_the_variable_named() {
    let url = "https://sso.example.com/certs";
    let with = |extra: &[(&'static str, &'static str)]| {
        let mut pairs = vec![
            ("JWT_JWKS_URL", url),
            ("JWT_JWKS_ISSUER", "https://sso.example.com"),
            ("JWT_AUDIENCE", "tms"),
        ];
        for (name, value) in extra {
            pairs.retain(|(n, _)| n != name);
            pairs.push((name, value));
        }
        config(&pairs).err().map(|err| (err.var, err.problem))
    };
    assert_eq!(with(&[]), None);
    for (var, value, why) in [
        ("JWT_JWKS_ISSUER", "", "must be set"),
        ("JWT_AUDIENCE", " , ", "must be set"),
        ("JWT_JWKS_URL", "sso.example.com/certs", "not a URL"),
        ("JWT_JWKS_URL", "ftp://sso.example.com/certs", "https"),
        (
            "JWT_JWKS_URL",
            "https://me:pw@sso.example.com/certs",
            "credentials",
        ),
        (
            "JWT_PERMISSIONS_CLAIM",
            "realm_access..roles",
            "dotted path",
        ),
        ("JWT_PERMISSIONS_CLAIM", "realm roles", "dotted path"),
        ("JWT_JWKS_REFRESH_INTERVAL", "0", "between"),
        ("JWT_JWKS_MIN_REFRESH_INTERVAL", "soon", "whole number"),
    ] {
        let (named, problem) = with(&[(var, value)]).unwrap_or_else(|| panic!("{var}={value}"));
        assert_eq!(named, var, "{value}");
        assert!(problem.contains(why), "{var}={value}: {problem}");
    }
    let (named, problem) = with(&[
        ("JWT_JWKS_REFRESH_INTERVAL", "60"),
        ("JWT_JWKS_MIN_REFRESH_INTERVAL", "120"),
    ])
    .unwrap();
    assert_eq!(named, "JWT_JWKS_MIN_REFRESH_INTERVAL", "{problem}");

    // Plain http only in dev and test: the keys decide who may call tms.
    let http = [
        ("JWT_JWKS_URL", "http://sso.internal/certs"),
        ("JWT_JWKS_ISSUER", "http://sso.internal"),
        ("JWT_AUDIENCE", "tms"),
    ];
    assert!(config(&http).is_ok());
    assert!(config(&[&http[..], &[("TMS_ENV", "test")]].concat()).is_ok());
    let prod = [("TMS_ENV", "prod"), ("JWT_SECRET", &"s".repeat(32) as &str)];
    let err = config(&[&http[..], &prod[..]].concat()).err().unwrap();
    assert_eq!(err.var, "JWT_JWKS_URL");
    assert!(err.problem.contains("https"), "{}", err.problem);

    // A setting of the provider's tokens without the provider would protect nothing.
    for var in [
        "JWT_JWKS_ISSUER",
        "JWT_AUDIENCE",
        "JWT_PERMISSIONS_CLAIM",
        "JWT_JWKS_REFRESH_INTERVAL",
        "JWT_JWKS_MIN_REFRESH_INTERVAL",
    ] {
        let err = config(&[(var, "60")])
            .err()
            .unwrap_or_else(|| panic!("{var}"));
        assert_eq!(err.var, var);
        assert!(err.problem.contains("JWT_JWKS_URL"), "{}", err.problem);
    }
}
