//! The original's Redis settings: TLS with a CA file, Sentinel, and tms's replica `WAIT`.

use super::super::{Config, ConfigError};
use super::*;

fn config(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
    Config::from_map(
        &pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    )
}

fn redis(pairs: &[(&str, &str)]) -> RedisConfig {
    config(pairs)
        .unwrap_or_else(|err| panic!("{pairs:?}: {err}"))
        .redis
        .expect("Redis configured")
}

fn rejected(pairs: &[(&str, &str)]) -> ConfigError {
    config(pairs)
        .err()
        .unwrap_or_else(|| panic!("{pairs:?} accepted"))
}

const CA: &str = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";

fn ca_file(name: &str, text: &str) -> std::path::PathBuf {
    let path = std::env::temp_dir().join(format!("tms-redis-ca-{}-{name}.pem", std::process::id()));
    std::fs::write(&path, text).unwrap();
    path
}

fn sentinel(config: &RedisConfig) -> &SentinelConfig {
    match &config.target {
        RedisTarget::Sentinel(s) => s,
        RedisTarget::Direct(_) => panic!("expected Sentinel"),
    }
}

fn url(config: &RedisConfig) -> String {
    match &config.target {
        RedisTarget::Direct(url) => url.expose_secret().to_string(),
        RedisTarget::Sentinel(_) => panic!("expected one server"),
    }
}

#[test]
fn without_redis_settings_there_is_no_redis() {
    assert!(config(&[]).unwrap().redis.is_none());
    // TLS alone names no server.
    assert_eq!(
        rejected(&[("REDIS_TLS_ENABLED", "1")]).var,
        "REDIS_TLS_ENABLED"
    );
}

#[test]
fn tls_uses_the_ca_file_and_switches_the_url_to_rediss() {
    let ca = ca_file("ok", CA);
    let c = redis(&[
        ("REDIS_HOST", "cache.internal"),
        ("REDIS_PASSWORD", "pw"),
        ("REDIS_TLS_ENABLED", "1"),
        ("REDIS_TLS_CERT", ca.to_str().unwrap()),
    ]);
    assert_eq!(url(&c), "rediss://:pw@cache.internal:6379/0");
    // A password is its own field in the original: any character works.
    let odd = redis(&[
        ("REDIS_HOST", "cache.internal"),
        ("REDIS_PASSWORD", "p@ss:w/rd"),
    ]);
    assert_eq!(url(&odd), "redis://:p%40ss%3Aw%2Frd@cache.internal:6379/0");
    assert_eq!(
        c.tls,
        RedisTls::CaFile {
            path: ca.clone(),
            pem: CA.as_bytes().to_vec()
        }
    );
    // true is accepted as well as the original's 1.
    let c = redis(&[
        ("REDIS_URL", "redis://cache.internal:6380/2"),
        ("REDIS_TLS_ENABLED", "true"),
    ]);
    assert_eq!(url(&c), "rediss://cache.internal:6380/2");
    assert_eq!(c.tls, RedisTls::PublicRoots);
    // A rediss:// URL is TLS without REDIS_TLS_ENABLED; the CA file counts only with it, as in
    // the original.
    let c = redis(&[
        ("REDIS_URL", "rediss://cache.internal"),
        ("REDIS_TLS_CERT", ca.to_str().unwrap()),
    ]);
    assert_eq!(c.tls, RedisTls::PublicRoots);
    let c = redis(&[
        ("REDIS_URL", "redis://cache.internal"),
        ("REDIS_TLS_ENABLED", "0"),
        ("REDIS_TLS_CERT", ca.to_str().unwrap()),
    ]);
    assert_eq!(c.tls, RedisTls::Off);
    assert_eq!(url(&c), "redis://cache.internal");

    let lines = config(&[
        ("REDIS_URL", "redis://:hunter2@cache.internal"),
        ("REDIS_TLS_ENABLED", "1"),
        ("REDIS_TLS_CERT", ca.to_str().unwrap()),
    ])
    .unwrap()
    .masked_lines();
    assert!(
        lines.contains(&"REDIS_TLS_ENABLED=true".to_string()),
        "{lines:?}"
    );
    assert!(lines.contains(&format!("REDIS_TLS_CERT={}", ca.display())));
    assert!(!lines.iter().any(|l| l.contains("hunter2")), "{lines:?}");
    std::fs::remove_file(ca).unwrap();
}

#[test]
fn an_unreadable_or_empty_ca_file_is_refused_at_start_up() {
    let not_pem = ca_file("bad", "not a certificate");
    for path in ["/nonexistent/ca.pem", not_pem.to_str().unwrap()] {
        let err = rejected(&[
            ("REDIS_HOST", "cache.internal"),
            ("REDIS_TLS_ENABLED", "1"),
            ("REDIS_TLS_CERT", path),
        ]);
        assert_eq!(err.var, "REDIS_TLS_CERT", "{err}");
        assert!(err.problem.contains(path), "{err}");
    }
    let err = rejected(&[
        ("REDIS_HOST", "cache.internal"),
        ("REDIS_TLS_ENABLED", "maybe"),
    ]);
    assert_eq!(err.var, "REDIS_TLS_ENABLED");
    std::fs::remove_file(not_pem).unwrap();
}

#[test]
fn sentinels_come_from_the_json_list_or_host_and_port() {
    let c = redis(&[
        ("REDIS_HAS_SENTINELS", "1"),
        (
            "REDIS_SENTINELS",
            r#"[{"host":"s1.internal","port":26379},{"host":"s2.internal","port":"26380"}]"#,
        ),
        ("REDIS_NAME", "tms-cache"),
        ("REDIS_SENTINEL_PASSWORD", "sentinel-pw"),
        ("REDIS_PASSWORD", "data-pw"),
        ("REDIS_DATABASE", "3"),
        ("REDIS_SENTINEL_ROLE", "master"),
    ]);
    let s = sentinel(&c);
    assert_eq!(
        s.nodes,
        vec![
            SentinelNode {
                host: "s1.internal".into(),
                port: 26379
            },
            SentinelNode {
                host: "s2.internal".into(),
                port: 26380
            },
        ]
    );
    assert_eq!(s.master_name, "tms-cache");
    assert_eq!(s.database, 3);
    assert_eq!(s.password.as_ref().unwrap().expose_secret(), "data-pw");
    assert_eq!(
        s.sentinel_password.as_ref().unwrap().expose_secret(),
        "sentinel-pw"
    );
    // Under Sentinel one replica must confirm each key by default.
    assert_eq!(
        c.wait,
        ReplicaWait {
            replicas: 1,
            timeout: Duration::from_millis(500)
        }
    );

    // As in the original, REDIS_SENTINEL_HOST and _PORT replace the list; the master group
    // defaults to mymaster; REDIS_URL's credentials and database apply, not its host.
    let c = redis(&[
        ("REDIS_HAS_SENTINELS", "true"),
        ("REDIS_SENTINELS", r#"[{"host":"ignored","port":1}]"#),
        ("REDIS_SENTINEL_HOST", "sentinel.internal"),
        ("REDIS_SENTINEL_PORT", "26379"),
        ("REDIS_URL", "redis://app:p%40ss@ignored.internal:6379/5"),
        ("REDIS_WAIT_REPLICAS", "2"),
        ("REDIS_WAIT_TIMEOUT", "250"),
    ]);
    let s = sentinel(&c);
    assert_eq!(s.nodes.len(), 1);
    assert_eq!(s.nodes[0].host, "sentinel.internal");
    assert_eq!(s.master_name, "mymaster");
    assert_eq!(s.username.as_deref(), Some("app"));
    assert_eq!(s.password.as_ref().unwrap().expose_secret(), "p@ss");
    assert_eq!(s.database, 5);
    assert_eq!(c.wait.replicas, 2);
    assert_eq!(c.wait.timeout, Duration::from_millis(250));

    let lines = config(&[
        ("REDIS_HAS_SENTINELS", "1"),
        ("REDIS_SENTINELS", r#"[{"host":"s1","port":26379}]"#),
        ("REDIS_SENTINEL_PASSWORD", "sentinel-pw"),
        ("REDIS_PASSWORD", "data-pw"),
    ])
    .unwrap()
    .masked_lines();
    assert!(
        lines.contains(&r#"REDIS_SENTINELS=[{"host":"s1","port":26379}]"#.to_string()),
        "{lines:?}"
    );
    assert!(
        lines.contains(&"REDIS_SENTINEL_PASSWORD=***".to_string()),
        "{lines:?}"
    );
    assert!(
        lines.contains(&"REDIS_WAIT_REPLICAS=1".to_string()),
        "{lines:?}"
    );
    assert!(!lines.iter().any(|l| l.contains("-pw")), "{lines:?}");
}

#[test]
fn sentinel_settings_count_only_with_redis_has_sentinels() {
    let c = redis(&[
        ("REDIS_HOST", "cache.internal"),
        ("REDIS_HAS_SENTINELS", "0"),
        ("REDIS_SENTINELS", "not json"),
    ]);
    assert_eq!(url(&c), "redis://cache.internal:6379/0");
    // Without Sentinel nothing is waited for unless asked.
    assert_eq!(c.wait.replicas, 0);
}

#[test]
fn invalid_sentinel_settings_are_refused_with_the_variable_named() {
    let on = ("REDIS_HAS_SENTINELS", "1");
    for (pairs, var) in [
        (vec![on], "REDIS_SENTINELS"),
        (vec![on, ("REDIS_SENTINELS", "[]")], "REDIS_SENTINELS"),
        (vec![on, ("REDIS_SENTINELS", "s1:26379")], "REDIS_SENTINELS"),
        (
            vec![on, ("REDIS_SENTINELS", r#"[{"host":"s1","port":"x"}]"#)],
            "REDIS_SENTINELS",
        ),
        (
            vec![on, ("REDIS_SENTINELS", r#"[{"host":"s1","port":0}]"#)],
            "REDIS_SENTINELS",
        ),
        (
            vec![on, ("REDIS_SENTINEL_HOST", "s1")],
            "REDIS_SENTINEL_PORT",
        ),
        (
            vec![on, ("REDIS_SENTINEL_PORT", "26379")],
            "REDIS_SENTINEL_HOST",
        ),
        (
            vec![
                on,
                ("REDIS_SENTINEL_HOST", "s1"),
                ("REDIS_SENTINEL_PORT", "sentinel"),
            ],
            "REDIS_SENTINEL_PORT",
        ),
        (
            vec![
                on,
                ("REDIS_SENTINEL_HOST", "s1"),
                ("REDIS_SENTINEL_PORT", "1"),
                ("REDIS_SENTINEL_ROLE", "slave"),
            ],
            "REDIS_SENTINEL_ROLE",
        ),
        (
            vec![
                on,
                ("REDIS_SENTINEL_HOST", "s1"),
                ("REDIS_SENTINEL_PORT", "1"),
                ("REDIS_SENTINEL_ROLE", "primary"),
            ],
            "REDIS_SENTINEL_ROLE",
        ),
        (
            vec![
                on,
                ("REDIS_SENTINEL_HOST", "s1"),
                ("REDIS_SENTINEL_PORT", "1"),
                ("REDIS_NAME", "my master"),
            ],
            "REDIS_NAME",
        ),
        (
            vec![
                on,
                ("REDIS_SENTINEL_HOST", "s1"),
                ("REDIS_SENTINEL_PORT", "1"),
                ("REDIS_DATABASE", "16"),
            ],
            "REDIS_DATABASE",
        ),
        (
            vec![("REDIS_HAS_SENTINELS", "yes please")],
            "REDIS_HAS_SENTINELS",
        ),
        (
            vec![("REDIS_HOST", "c"), ("REDIS_WAIT_REPLICAS", "17")],
            "REDIS_WAIT_REPLICAS",
        ),
        (
            vec![("REDIS_HOST", "c"), ("REDIS_WAIT_TIMEOUT", "0")],
            "REDIS_WAIT_TIMEOUT",
        ),
    ] {
        let err = rejected(&pairs);
        assert_eq!(err.var, var, "{pairs:?}: {err}");
        assert!(
            err.to_string()
                .starts_with(&format!("invalid configuration: {var}: "))
        );
    }
    let err = rejected(&[
        on,
        ("REDIS_SENTINEL_HOST", "s1"),
        ("REDIS_SENTINEL_PORT", "1"),
        ("REDIS_SENTINEL_ROLE", "slave"),
    ]);
    assert!(err.problem.contains("read-only"), "{err}");
}
