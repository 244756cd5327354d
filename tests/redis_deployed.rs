//! Redis as the original deploys it: over TLS with the operator's CA (`REDIS_TLS_ENABLED`,
//! `REDIS_TLS_CERT`), and behind Sentinel (`REDIS_HAS_SENTINELS`, `REDIS_SENTINELS`), with the
//! primary killed in the middle of the funnel under load. The Redis servers and the sentinel
//! are processes of the test, on free ports in a temporary directory, killed when it ends.

mod common;
mod redis_support;

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::*;
use redis_support::*;
use reqwest::Method;
use serde_json::{Value, json};
use tokio::sync::Mutex;
use uuid::Uuid;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_with_the_operators_ca() {
    let name = "tls_with_the_operators_ca";
    if !tools_available(name, true) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let ca = make_ca(dir.path(), "operator");
    let other_ca = make_ca(dir.path(), "other");
    let (cert, key) = make_server_cert(dir.path(), "operator");
    let port = free_port();
    let args = tls_node_args(port, &cert, &key, &ca);
    let _redis = Server::start("tls", port, dir.path(), &args);

    // The original's names: REDIS_HOST / REDIS_PORT, REDIS_TLS_ENABLED=1, REDIS_TLS_CERT.
    let prefix = format!("t{}:", Uuid::new_v4().simple());
    let port_text = port.to_string();
    let tls_vars = |ca: &Path| -> Vec<(String, String)> {
        [
            ("REDIS_HOST", "127.0.0.1"),
            ("REDIS_PORT", port_text.as_str()),
            ("REDIS_TLS_ENABLED", "1"),
            ("REDIS_TLS_CERT", ca.to_str().unwrap()),
            ("REDIS_KEY_PREFIX", prefix.as_str()),
            ("LEAD_KEY_IN_RESPONSE", "true"),
        ]
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .to_vec()
    };
    let vars = tls_vars(&ca);
    let overrides: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let app = TestApp::spawn_with(Db::Sqlite, &overrides).await;
    let lead = sign_up(&app, "tls@example.com").await;
    let token = verify(&app, &lead).await;
    assert!(!token.is_empty());

    // The key went over TLS to this server: it is there (and gone once used).
    let client = redis::Client::build_with_tls(
        format!("rediss://127.0.0.1:{port}"),
        redis::TlsCertificates {
            client_tls: None,
            root_cert: Some(std::fs::read(&ca).unwrap()),
        },
    )
    .unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let second = sign_up(&app, "tls2@example.com").await;
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}*"))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(
        keys.iter().any(|k| k.contains(&second.key)),
        "the second lead's key is on the TLS server: {keys:?}"
    );
    assert!(
        !keys.iter().any(|k| k.contains(&lead.key)),
        "the used key is gone: {keys:?}"
    );
    drop(app);

    // A server whose certificate does not chain to REDIS_TLS_CERT: tms refuses to start.
    let data = tempfile::tempdir().unwrap();
    let mut env: Vec<(String, String)> = tls_vars(&other_ca);
    env.extend(
        [
            ("TMS_ENV", "test"),
            ("JWT_SECRET", JWT_SECRET),
            ("PORT", "0"),
            ("HOST", "127.0.0.1"),
            ("TMS_DATA_DIR", data.path().to_str().unwrap()),
            ("PATH", &std::env::var("PATH").unwrap_or_default()),
        ]
        .map(|(k, v)| (k.to_string(), v.to_string())),
    );
    let mut child = Command::new(env!("CARGO_BIN_EXE_tms"))
        .arg("serve")
        .env_clear()
        .envs(env)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cannot run tms");
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("tms kept running with a Redis certificate from another CA");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(!status.success(), "{stderr}");
    assert!(
        stderr.contains("cannot connect to Redis") && stderr.contains("REDIS_TLS_CERT"),
        "the error names Redis and the CA setting: {stderr}"
    );
    assert!(
        stderr.to_lowercase().contains("certificate") || stderr.contains("UnknownIssuer"),
        "the error says the certificate is not trusted: {stderr}"
    );
}

// ---------------------------------------------------------------------------------------------
// The funnel, as the load sends it
// ---------------------------------------------------------------------------------------------

struct Lead {
    id: String,
    key: String,
}

async fn sign_up(app: &TestApp, email: &str) -> Lead {
    let (status, body) = app.post("/leads", None, &sign_up_body(email)).await;
    assert_eq!(status, 200, "sign-up {email}: {body}");
    lead_of(&body)
}

/// A sign-up sent again after a 503 (nothing written: the key store answered that no replica
/// confirmed its key yet) until it is acknowledged, as a client would; any other answer fails.
async fn sign_up_patiently(app: &TestApp, email: &str, patience: Duration) -> Lead {
    let deadline = Instant::now() + patience;
    loop {
        let (status, body) = app.post("/leads", None, &sign_up_body(email)).await;
        if status == 503 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(250)).await;
            continue;
        }
        assert_eq!(status, 200, "sign-up {email}: {body}");
        return lead_of(&body);
    }
}

fn lead_of(body: &Value) -> Lead {
    Lead {
        id: body["id"].as_str().unwrap().to_string(),
        key: body["key"]
            .as_str()
            .expect("LEAD_KEY_IN_RESPONSE")
            .to_string(),
    }
}

async fn verify(app: &TestApp, lead: &Lead) -> String {
    let (status, body) = app
        .request(
            Method::POST,
            &format!("/leads/{}/verify", lead.id),
            Some(&lead.key),
            None,
        )
        .await;
    assert_eq!(status, 200, "verify: {body}");
    body["token"].as_str().unwrap().to_string()
}

fn sign_up_body(email: &str) -> Value {
    json!({
        "firstName": "Ada",
        "lastName": "Lovelace",
        "email": email,
        "companyName": "Analytical Engines",
        "address": {"address": "12 Loom Street", "city": "Pune", "state": "MH",
                    "zip": "411001", "country": "India"},
    })
}

/// What the load saw.
#[derive(Default)]
struct Tally {
    /// Every answer that was neither 200 nor a 503 with `Retry-After`: (what, status, body).
    wrong: Vec<(String, u16, String)>,
    /// 503 answers (each with `Retry-After`), retried, by request.
    unavailable: std::collections::BTreeMap<String, u64>,
    /// The longest a request took (the ones in flight at the kill wait for the promotion).
    slowest: Duration,
    /// The bodies of those 503 answers (for the report).
    unavailable_bodies: std::collections::BTreeSet<String>,
    /// Sign-ups left unverified until the end, to be verified after the failover.
    deferred: Vec<(String, String)>,
    /// Sign-ups answered 200, with the instant of the answer.
    acknowledged: Vec<(Instant, String)>,
    /// Leads whose key was used (verify 200) and whose tenant was created (onboard 200).
    onboarded: u64,
}

/// One request of the funnel, resent after a 503 (which must carry `Retry-After`) for up to
/// 30 s; the final status and body. Everything else is recorded in `tally` when not 200.
async fn call(
    app: &TestApp,
    tally: &Mutex<Tally>,
    what: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&Value>,
) -> (u16, Value) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let mut request = app.client.post(app.url(path));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        let sent = Instant::now();
        let response = request.send().await;
        {
            let mut tally = tally.lock().await;
            tally.slowest = tally.slowest.max(sent.elapsed());
        }
        let response = match response {
            Ok(response) => response,
            Err(err) => {
                tally
                    .lock()
                    .await
                    .wrong
                    .push((what.into(), 0, err.to_string()));
                return (0, Value::Null);
            }
        };
        let status = response.status().as_u16();
        let retry_after = response.headers().contains_key("retry-after");
        let text = response.text().await.unwrap_or_default();
        if status == 503 && retry_after && Instant::now() < deadline {
            let mut tally = tally.lock().await;
            *tally.unavailable.entry(what.into()).or_default() += 1;
            tally.unavailable_bodies.insert(text.clone());
            drop(tally);
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        }
        if status != 200 {
            tally
                .lock()
                .await
                .wrong
                .push((what.into(), status, text.clone()));
        }
        return (status, serde_json::from_str(&text).unwrap_or(Value::Null));
    }
}

/// Sign-up → verify with the key → onboard, in a loop until `stop`; with `defer`, sign-ups
/// only, their keys kept for after the failover.
async fn funnel_worker(
    app: Arc<TestApp>,
    tally: Arc<Mutex<Tally>>,
    stop: Arc<AtomicBool>,
    counter: Arc<AtomicU64>,
    defer: bool,
) {
    while !stop.load(Ordering::Relaxed) {
        let n = counter.fetch_add(1, Ordering::Relaxed);
        // The contact's address is on the tenant's domain, as onboarding requires.
        let domain = format!(
            "ld{n}-{}.example",
            &Uuid::new_v4().simple().to_string()[..8]
        );
        let email = format!("ada@{domain}");
        let (status, lead) = call(
            &app,
            &tally,
            "sign-up",
            "/leads",
            None,
            Some(&sign_up_body(&email)),
        )
        .await;
        if status != 200 {
            continue;
        }
        let id = lead["id"].as_str().unwrap_or_default().to_string();
        tally
            .lock()
            .await
            .acknowledged
            .push((Instant::now(), id.clone()));
        let key = lead["key"].as_str().unwrap_or_default().to_string();
        if defer {
            tally.lock().await.deferred.push((id, key));
            continue;
        }
        let (status, verified) = call(
            &app,
            &tally,
            "verify",
            &format!("/leads/{id}/verify"),
            Some(&key),
            None,
        )
        .await;
        if status != 200 {
            continue;
        }
        let token = verified["token"].as_str().unwrap_or_default().to_string();
        let tenant = json!({"key": format!("ld{n}"), "domains": [domain],
                            "city": "Pune", "country": "India"});
        let (status, _) = call(
            &app,
            &tally,
            "onboard",
            &format!("/leads/{id}/tenants"),
            Some(&token),
            Some(&tenant),
        )
        .await;
        if status == 200 {
            tally.lock().await.onboarded += 1;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Sentinel failover
// ---------------------------------------------------------------------------------------------

const MASTER: &str = "tmsfailover";

/// The primary's port as the sentinel names it.
async fn primary_port(sentinel: &mut redis::aio::MultiplexedConnection) -> Option<u16> {
    let addr: Option<(String, String)> = redis::cmd("SENTINEL")
        .arg("get-master-addr-by-name")
        .arg(MASTER)
        .query_async(sentinel)
        .await
        .ok()?;
    addr.and_then(|(_, port)| port.parse().ok())
}

/// Waits until the sentinel sees both replicas up and in sync with the primary.
async fn replicas_in_sync(sentinel: &mut redis::aio::MultiplexedConnection) {
    eventually(
        Duration::from_secs(30),
        "the sentinel to see both replicas in sync",
        async || {
            let replicas: Vec<std::collections::HashMap<String, String>> = redis::cmd("SENTINEL")
                .arg("replicas")
                .arg(MASTER)
                .query_async(&mut *sentinel)
                .await
                .unwrap_or_default();
            replicas.len() == 2
                && replicas.iter().all(|r| {
                    r.get("flags").is_some_and(|f| f == "slave")
                        && r.get("master-link-status").is_some_and(|s| s == "ok")
                })
        },
    )
    .await;
}

/// Waits until `check` holds, polling; panics with `what` after `limit`.
async fn eventually<F: AsyncFnMut() -> bool>(limit: Duration, what: &str, mut check: F) {
    let deadline = Instant::now() + limit;
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sentinel_failover_under_load() {
    let name = "sentinel_failover_under_load";
    if !tools_available(name, false) || !db_available(Db::Postgres, name) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // A primary and two replicas: after the failover the promoted replica still has one to
    // confirm each key (REDIS_WAIT_REPLICAS=1, the default under Sentinel).
    let ports = [free_port(), free_port(), free_port()];
    let mut primary = Server::start("primary", ports[0], dir.path(), &data_node_args(ports[0]));
    let replicas: Vec<Server> = ports[1..]
        .iter()
        .enumerate()
        .map(|(i, &port)| {
            let mut args = data_node_args(port);
            args.extend([
                "--replicaof".into(),
                "127.0.0.1".into(),
                ports[0].to_string(),
            ]);
            Server::start(&format!("replica{i}"), port, dir.path(), &args)
        })
        .collect();
    let sentinel_port = free_port();
    let conf = dir.path().join("sentinel.conf");
    std::fs::write(
        &conf,
        format!(
            "port {sentinel_port}\nbind 127.0.0.1\n\
             sentinel monitor {MASTER} 127.0.0.1 {} 1\n\
             sentinel down-after-milliseconds {MASTER} 500\n\
             sentinel failover-timeout {MASTER} 4000\n\
             sentinel parallel-syncs {MASTER} 2\n",
            ports[0]
        ),
    )
    .unwrap();
    let sentinel = Server::start(
        "sentinel",
        sentinel_port,
        dir.path(),
        &[conf.to_str().unwrap().to_string(), "--sentinel".into()],
    );
    let mut sentinel_conn = connection(&sentinel.url()).await;
    replicas_in_sync(&mut sentinel_conn).await;

    let prefix = format!("t{}:", Uuid::new_v4().simple());
    let sentinels = format!(r#"[{{"host":"127.0.0.1","port":{sentinel_port}}}]"#);
    let app = Arc::new(
        TestApp::spawn_with(
            Db::Postgres,
            &[
                ("REDIS_HAS_SENTINELS", "1"),
                ("REDIS_SENTINELS", &sentinels),
                ("REDIS_NAME", MASTER),
                ("REDIS_SENTINEL_ROLE", "master"),
                ("REDIS_KEY_PREFIX", &prefix),
                ("LEAD_KEY_IN_RESPONSE", "true"),
                ("PUBLIC_API_MAX_ATTEMPTS", "1000000"),
                ("REDIS_WAIT_TIMEOUT", "1000"),
            ],
        )
        .await,
    );

    // REDIS_WAIT_REPLICAS (1 under Sentinel): with both replicas frozen no replica confirms
    // the lead's key, so the sign-up is not acknowledged — 503 with Retry-After, no lead kept.
    let admin = app.admin_token();
    let leads = async || app.get("/leads/count", Some(&admin)).await.1["count"].as_i64();
    let before = leads().await;
    for replica in &replicas {
        replica.signal("STOP");
    }
    let frozen = app
        .client
        .post(app.url("/leads"))
        .json(&sign_up_body("frozen@frozen.example"))
        .send()
        .await
        .expect("the sign-up is answered");
    let (status, retry_after) = (
        frozen.status(),
        frozen.headers().contains_key("retry-after"),
    );
    for replica in &replicas {
        replica.signal("CONT");
    }
    assert_eq!(status, 503, "{}", frozen.text().await.unwrap_or_default());
    assert!(retry_after, "a 503 says when to retry");
    assert_eq!(
        leads().await,
        before,
        "the unconfirmed sign-up left no lead"
    );
    replicas_in_sync(&mut sentinel_conn).await;

    let tally = Arc::new(Mutex::new(Tally::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let counter = Arc::new(AtomicU64::new(0));
    let workers: Vec<_> = (0..6)
        .map(|i| {
            tokio::spawn(funnel_worker(
                app.clone(),
                tally.clone(),
                stop.clone(),
                counter.clone(),
                i % 3 == 0,
            ))
        })
        .collect();

    // Load on the first primary, then kill -9 it in the middle.
    eventually(
        Duration::from_secs(60),
        "30 sign-ups before the kill",
        async || tally.lock().await.acknowledged.len() >= 30,
    )
    .await;
    primary.kill();
    let killed = Instant::now();
    let before_kill = tally.lock().await.acknowledged.len();

    // The sentinel promotes a replica; the load goes on and must reach it.
    let mut promoted = 0;
    eventually(
        Duration::from_secs(30),
        "the sentinel to promote a replica",
        async || {
            promoted = primary_port(&mut sentinel_conn).await.unwrap_or(0);
            promoted != 0 && promoted != ports[0]
        },
    )
    .await;
    let switched = killed.elapsed();
    eventually(
        Duration::from_secs(60),
        "30 sign-ups after the failover",
        async || {
            tally
                .lock()
                .await
                .acknowledged
                .iter()
                .filter(|(at, _)| at.duration_since(killed) > switched)
                .count()
                >= 30
        },
    )
    .await;
    stop.store(true, Ordering::Relaxed);
    for worker in workers {
        worker.await.expect("a load worker panicked");
    }

    // Every sign-up acknowledged before or after the kill and not verified yet: its key is
    // on the promoted primary (none was lost with the killed one).
    let deferred = std::mem::take(&mut tally.lock().await.deferred);
    for (id, key) in &deferred {
        let (status, _) = call(
            &app,
            &tally,
            "late verify",
            &format!("/leads/{id}/verify"),
            Some(key),
            None,
        )
        .await;
        assert_eq!(status, 200, "the key of lead {id}, acknowledged, is lost");
    }

    let tally = tally.lock().await;
    println!(
        "sign-ups: {} acknowledged ({before_kill} before the kill), {} onboarded, {} verified \
         after the failover; 503 answers (retried): {:?}; the sentinel named the new primary \
         {switched:?} after the kill",
        tally.acknowledged.len(),
        tally.onboarded,
        deferred.len(),
        tally.unavailable
    );
    println!(
        "503 bodies: {:?}; the slowest request took {:?}",
        tally.unavailable_bodies, tally.slowest
    );
    assert!(
        tally.wrong.is_empty(),
        "{} answers other than 200 or 503 with Retry-After, the first: {:?}",
        tally.wrong.len(),
        &tally.wrong[..tally.wrong.len().min(5)]
    );
    // Requests met the dead primary and waited for the promoted one rather than failing.
    assert!(
        tally.slowest >= Duration::from_secs(1),
        "no request waited through the failover: {:?}",
        tally.slowest
    );
    // Every acknowledged sign-up went through verification (and onboarding, unless deferred):
    // no key was lost.
    assert_eq!(
        tally.onboarded as usize + deferred.len(),
        tally.acknowledged.len()
    );
    assert!(
        deferred.len() >= 10,
        "too few deferred sign-ups: {}",
        deferred.len()
    );

    // The keys written after the failover are on the promoted replica, and a fresh sign-up's
    // key is readable there now. (The replica left may still be syncing from the promoted
    // primary: until it confirms, a sign-up answers 503, as the load saw.)
    let mut promoted_conn = connection(&format!("redis://127.0.0.1:{promoted}")).await;
    // On a loaded machine the replica left may take longer than any client's patience to be
    // pointed at the promoted primary and synchronised: wait for that first.
    eventually(
        Duration::from_secs(60),
        "the replica left to synchronise with the promoted primary",
        async || {
            let info: String = redis::cmd("INFO")
                .arg("replication")
                .query_async(&mut promoted_conn)
                .await
                .unwrap_or_default();
            info.lines()
                .any(|l| l.starts_with("slave0:") && l.contains("state=online"))
        },
    )
    .await;
    let lead = sign_up_patiently(&app, "after-failover@example.com", Duration::from_secs(15)).await;
    let stored: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}*"))
        .query_async(&mut promoted_conn)
        .await
        .unwrap();
    assert!(
        stored.iter().any(|k| k.contains(&lead.key)),
        "the new lead's key is on the promoted primary: {stored:?}"
    );
    verify(&app, &lead).await;
    drop(replicas);
    drop(sentinel);
}

/// TLS and Sentinel together, as the original configures them: the sentinel answers in plain
/// TCP and names a primary that speaks TLS only, whose certificate must chain to
/// `REDIS_TLS_CERT`. A master group the sentinel does not monitor stops the start-up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sentinel_with_a_tls_primary() {
    let name = "sentinel_with_a_tls_primary";
    if !tools_available(name, true) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let ca = make_ca(dir.path(), "operator");
    let other_ca = make_ca(dir.path(), "other");
    let (cert, key) = make_server_cert(dir.path(), "operator");
    let port = free_port();
    let args = tls_node_args(port, &cert, &key, &ca);
    let _primary = Server::start("tls-primary", port, dir.path(), &args);
    // The sentinel reaches the primary over TLS (tls-replication) and answers clients in plain.
    let sentinel_port = free_port();
    let conf = dir.path().join("sentinel.conf");
    std::fs::write(
        &conf,
        format!(
            "port {sentinel_port}\nbind 127.0.0.1\ntls-replication yes\n{}\n\
             sentinel monitor {MASTER} 127.0.0.1 {port} 1\n",
            tls_settings(&cert, &key, &ca)
                .iter()
                .map(|(name, value)| format!("{name} {value}"))
                .collect::<Vec<_>>()
                .join("\n")
        ),
    )
    .unwrap();
    let sentinel = Server::start(
        "sentinel",
        sentinel_port,
        dir.path(),
        &[conf.to_str().unwrap().to_string(), "--sentinel".into()],
    );
    let mut sentinel_conn = connection(&sentinel.url()).await;
    eventually(
        Duration::from_secs(20),
        "the sentinel to reach the primary",
        async || primary_port(&mut sentinel_conn).await == Some(port),
    )
    .await;

    let prefix = format!("t{}:", Uuid::new_v4().simple());
    let sentinels = format!(r#"[{{"host":"127.0.0.1","port":{sentinel_port}}}]"#);
    let vars = |ca: &Path, master: &str| -> Vec<(String, String)> {
        [
            ("REDIS_HAS_SENTINELS", "1"),
            ("REDIS_SENTINELS", sentinels.as_str()),
            ("REDIS_NAME", master),
            ("REDIS_TLS_ENABLED", "1"),
            ("REDIS_TLS_CERT", ca.to_str().unwrap()),
            // No replica here to confirm keys.
            ("REDIS_WAIT_REPLICAS", "0"),
            ("REDIS_KEY_PREFIX", prefix.as_str()),
            ("LEAD_KEY_IN_RESPONSE", "true"),
        ]
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .to_vec()
    };
    let good = vars(&ca, MASTER);
    let overrides: Vec<(&str, &str)> = good.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let app = TestApp::spawn_with(Db::Sqlite, &overrides).await;
    let lead = sign_up(&app, "sentinel-tls@example.com").await;
    verify(&app, &lead).await;

    // Refused at start-up: a certificate from another CA, and a master group nobody monitors.
    for (vars, expected) in [
        (vars(&other_ca, MASTER), "invalid peer certificate"),
        (vars(&ca, "nobody-monitors-this"), "not found in sentinel"),
    ] {
        let overrides: Vec<(&str, &str)> =
            vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let config = app.config_with(&overrides);
        let db = tms::store::Db::connect(&config).await.unwrap();
        let err = tms::kv::Kv::connect(&config, &db, tms::clock::Clock::system())
            .await
            .err()
            .expect("refused");
        let text = format!("{err:#}");
        assert!(
            text.contains("cannot connect to Redis") && text.contains(expected),
            "{expected}: {text}"
        );
    }
}
