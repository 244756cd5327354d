//! The expiring key-value store and the rate limiter built on it. Every test body runs on each
//! backend: the database backend on SQLite and on PostgreSQL (with `TMS_TEST_DATABASE_URL`),
//! and Redis (`TMS_TEST_REDIS_URL`, default `redis://127.0.0.1:6379`). A backend that is not
//! available is skipped with a note, except under `CI=true`, where that fails the test.
//!
//! The database backend runs on a manual clock, so expiry is tested by moving the clock; Redis
//! keeps its own time, so those tests wait for short expiries (about a second).

mod common;

use std::collections::{BTreeSet, HashMap};
use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::middleware::from_fn_with_state;
use axum::routing::get;
use chrono::{DateTime, Utc};

use common::{Db, Storage, Value, db_available, json, needs, remove_redis_keys};
use tms::client_ip::TrustedProxies;
use tms::clock::Clock;
use tms::config::Config;
use tms::kv::Kv;

use tms::http::rate_limit::{self, RateLimit};

/// A short expiry that Redis is trusted to honour to the millisecond.
const SHORT: Duration = Duration::from_secs(1);
/// Margin added when waiting for `SHORT` to pass on Redis.
const MARGIN: Duration = Duration::from_millis(150);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Backend {
    Sqlite,
    Postgres,
    Redis,
}

/// One test's store: a fresh SQLite file, PostgreSQL schema or Redis key prefix, removed when
/// dropped.
struct Harness {
    backend: Backend,
    kv: Kv,
    /// The manual clock of the database backend (`None` on Redis, which keeps its own time).
    clock: Option<Clock>,
    db: Option<tms::store::Db>,
    prefix: String,
    redis_url: Option<String>,
    /// The data directory and PostgreSQL schema; last, so dropped after the pool.
    _storage: Storage,
}

fn start_instant() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2030-01-01T00:00:10Z")
        .unwrap()
        .with_timezone(&Utc)
}

impl Harness {
    async fn start(backend: Backend, test: &str) -> Option<Harness> {
        let db_kind = match backend {
            Backend::Postgres => Db::Postgres,
            Backend::Sqlite | Backend::Redis => Db::Sqlite,
        };
        if !db_available(db_kind, test) {
            return None;
        }
        let storage = Storage::new(db_kind);
        let prefix = format!("tms-test:{}:", uuid::Uuid::new_v4().simple());
        let redis_url = (backend == Backend::Redis).then(common::redis_url);
        let mut overrides = vec![("REDIS_KEY_PREFIX", prefix.as_str())];
        if let Some(url) = &redis_url {
            overrides.push(("REDIS_URL", url));
        }
        let config = storage.config(&overrides);
        let (kv, clock, db, redis_url) = if backend == Backend::Redis {
            // Kv::connect does not touch the database when Redis is configured.
            let unused = tms::store::Db::from_pool(tms::store::Pool::Sqlite(
                sqlx::SqlitePool::connect_lazy("sqlite::memory:").expect("a lazy pool"),
            ));
            match Kv::connect(&config, &unused, Clock::system()).await {
                Ok(kv) => {
                    needs(test, "redis", Ok(()));
                    (kv, None, None, redis_url)
                }
                Err(err) => {
                    needs(test, "redis", Err(format!("{err:#}")));
                    return None;
                }
            }
        } else {
            let db = tms::store::Db::connect(&config)
                .await
                .unwrap_or_else(|err| panic!("{test}: cannot open the database: {err:#}"));
            db.migrate().await.expect("migrations");
            assert_eq!(
                Kv::connect(&config, &db, Clock::system())
                    .await
                    .unwrap()
                    .backend_name(),
                "database"
            );
            let clock = Clock::manual(start_instant());
            let kv = Kv::database_with_clock(db.clone(), &prefix, clock.clone());
            (kv, Some(clock), Some(db), None)
        };
        assert_eq!(
            kv.backend_name(),
            if backend == Backend::Redis {
                "redis"
            } else {
                "database"
            }
        );
        Some(Harness {
            backend,
            kv,
            clock,
            db,
            prefix,
            redis_url,
            _storage: storage,
        })
    }

    fn is_redis(&self) -> bool {
        self.backend == Backend::Redis
    }

    /// Lets `d` pass: moves the manual clock, or waits on Redis.
    async fn pass(&self, d: Duration) {
        match &self.clock {
            Some(clock) => clock.advance(d),
            None => tokio::time::sleep(d + MARGIN).await,
        }
    }

    /// The clock to count rate-limit windows on: the database backend's manual clock, or on
    /// Redis a manual clock of its own (windows are counted by the application).
    fn window_clock(&self) -> Clock {
        self.clock
            .clone()
            .unwrap_or_else(|| Clock::manual(start_instant()))
    }

    /// Another store on the same database or Redis, with its own key prefix.
    async fn kv_with_prefix(&self, prefix: &str) -> Kv {
        let full = format!("{}{prefix}", self.prefix);
        match (&self.db, &self.redis_url) {
            (Some(db), _) => {
                Kv::database_with_clock(db.clone(), &full, self.clock.clone().unwrap())
            }
            (None, Some(url)) => Kv::redis(url, &full).await.expect("redis"),
            (None, None) => unreachable!(),
        }
    }

    /// Waits (bounded) until `key` reads as absent; fails when it never does.
    async fn assert_becomes_absent(&self, kv: &Kv, key: &str) {
        for _ in 0..20 {
            if kv.get(key).await.unwrap().is_none() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("{key} did not expire");
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        if let Some(url) = &self.redis_url {
            remove_redis_keys(url, &self.prefix);
        }
    }
}

async fn run<F, Fut>(backend: Backend, test: &str, body: F)
where
    F: FnOnce(Harness) -> Fut,
    Fut: Future<Output = ()>,
{
    if let Some(harness) = Harness::start(backend, test).await {
        body(harness).await;
    }
}

/// `backends!(name)` runs `async fn name(t: Harness)` as `name::sqlite`, `name::postgres` and
/// `name::redis`.
macro_rules! backends {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            use super::*;

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn sqlite() {
                run(Backend::Sqlite, concat!(module_path!(), "::sqlite"), super::$name).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn postgres() {
                run(Backend::Postgres, concat!(module_path!(), "::postgres"), super::$name).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn redis() {
                run(Backend::Redis, concat!(module_path!(), "::redis"), super::$name).await;
            }
        }
    )*};
}

backends!(
    put_get_and_overwrite,
    values_expire,
    take_is_single_use,
    concurrent_takes_yield_one_value,
    delete_removes_a_key,
    hit_counts_within_a_window_and_resets_after_it,
    concurrent_hits_are_each_counted_once,
    purge_expired_removes_only_expired_entries,
    prefixes_isolate_stores,
    rate_limit_answers_429_beyond_the_limit,
    rate_limit_ignores_forwarded_for_from_an_untrusted_peer,
    rate_limit_counts_forwarded_clients_separately_behind_a_trusted_proxy,
    rate_limit_starts_again_in_the_next_window,
);

const MINUTE: Duration = Duration::from_secs(60);

async fn put_get_and_overwrite(t: Harness) {
    let kv = &t.kv;
    assert_eq!(kv.get("lead-key:a").await.unwrap(), None);
    kv.put("lead-key:a", "first", MINUTE).await.unwrap();
    assert_eq!(
        kv.get("lead-key:a").await.unwrap().as_deref(),
        Some("first")
    );
    // Reading does not consume.
    assert_eq!(
        kv.get("lead-key:a").await.unwrap().as_deref(),
        Some("first")
    );
    kv.put("lead-key:a", "second", MINUTE).await.unwrap();
    assert_eq!(
        kv.get("lead-key:a").await.unwrap().as_deref(),
        Some("second")
    );
    // Values are opaque text: JSON, unicode, empty.
    let json = r#"{"secret":"s3cr3t","context":"ctx ✓"}"#;
    kv.put("webhook:t1", json, MINUTE).await.unwrap();
    assert_eq!(kv.get("webhook:t1").await.unwrap().as_deref(), Some(json));
    kv.put("empty", "", MINUTE).await.unwrap();
    assert_eq!(kv.get("empty").await.unwrap().as_deref(), Some(""));
    assert_eq!(kv.get("lead-key:b").await.unwrap(), None);
}

async fn values_expire(t: Harness) {
    let kv = &t.kv;
    kv.put("short", "v", SHORT).await.unwrap();
    kv.put("long", "v", MINUTE).await.unwrap();
    assert_eq!(kv.get("short").await.unwrap().as_deref(), Some("v"));
    t.pass(SHORT).await;
    t.assert_becomes_absent(kv, "short").await;
    assert_eq!(kv.take("short").await.unwrap(), None);
    assert_eq!(kv.get("long").await.unwrap().as_deref(), Some("v"));
    // Overwriting renews the expiry.
    kv.put("renewed", "1", SHORT).await.unwrap();
    kv.put("renewed", "2", MINUTE).await.unwrap();
    t.pass(SHORT).await;
    assert_eq!(kv.get("renewed").await.unwrap().as_deref(), Some("2"));
    // An expired key can be written again.
    kv.put("short", "again", MINUTE).await.unwrap();
    assert_eq!(kv.get("short").await.unwrap().as_deref(), Some("again"));
}

async fn take_is_single_use(t: Harness) {
    let kv = &t.kv;
    kv.put("lead-key:k", "lead-jwt", MINUTE).await.unwrap();
    assert_eq!(
        kv.take("lead-key:k").await.unwrap().as_deref(),
        Some("lead-jwt")
    );
    assert_eq!(kv.take("lead-key:k").await.unwrap(), None);
    assert_eq!(kv.get("lead-key:k").await.unwrap(), None);
    assert_eq!(kv.take("never-written").await.unwrap(), None);
}

async fn concurrent_takes_yield_one_value(t: Harness) {
    for round in 0..3 {
        let key = format!("single-use:{round}");
        t.kv.put(&key, "the value", MINUTE).await.unwrap();
        let tasks: Vec<_> = (0..20)
            .map(|_| {
                let kv = t.kv.clone();
                let key = key.clone();
                tokio::spawn(async move { kv.take(&key).await.unwrap() })
            })
            .collect();
        let mut taken = Vec::new();
        for task in tasks {
            taken.extend(task.await.unwrap());
        }
        assert_eq!(taken, vec!["the value".to_string()], "round {round}");
    }
}

async fn delete_removes_a_key(t: Harness) {
    let kv = &t.kv;
    kv.put("k", "v", MINUTE).await.unwrap();
    kv.put("other", "v", MINUTE).await.unwrap();
    kv.delete("k").await.unwrap();
    assert_eq!(kv.get("k").await.unwrap(), None);
    assert_eq!(kv.take("k").await.unwrap(), None);
    assert_eq!(kv.get("other").await.unwrap().as_deref(), Some("v"));
    // Deleting what is not there is fine.
    kv.delete("k").await.unwrap();
    kv.delete("never-written").await.unwrap();
}

async fn hit_counts_within_a_window_and_resets_after_it(t: Harness) {
    let kv = &t.kv;
    for expected in 1..=5 {
        let hit = kv.hit("rl:test:1.2.3.4", MINUTE).await.unwrap();
        assert_eq!(hit.count, expected);
        assert!(hit.reset_in <= MINUTE, "{hit:?}");
        assert!(hit.reset_in > MINUTE - Duration::from_secs(10), "{hit:?}");
    }
    // Counters are separate per key, and their count reads as a value.
    assert_eq!(kv.hit("rl:test:5.6.7.8", MINUTE).await.unwrap().count, 1);
    assert_eq!(
        kv.get("rl:test:1.2.3.4").await.unwrap().as_deref(),
        Some("5")
    );

    if t.clock.is_some() {
        // The window does not move with later hits.
        t.pass(Duration::from_secs(10)).await;
        let hit = kv.hit("rl:test:1.2.3.4", MINUTE).await.unwrap();
        assert_eq!(hit.count, 6);
        assert_eq!(hit.reset_in, Duration::from_secs(50));
    }

    assert_eq!(kv.hit("rl:short", SHORT).await.unwrap().count, 1);
    assert_eq!(kv.hit("rl:short", SHORT).await.unwrap().count, 2);
    t.pass(SHORT).await;
    let hit = kv.hit("rl:short", SHORT).await.unwrap();
    assert_eq!(hit.count, 1, "a new window starts after the old one");
    assert!(hit.reset_in <= SHORT && hit.reset_in > SHORT / 2, "{hit:?}");
    assert_eq!(kv.hit("rl:short", SHORT).await.unwrap().count, 2);
}

async fn concurrent_hits_are_each_counted_once(t: Harness) {
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let kv = t.kv.clone();
            tokio::spawn(async move { kv.hit("rl:burst", MINUTE).await.unwrap().count })
        })
        .collect();
    let mut counts = BTreeSet::new();
    for task in tasks {
        assert!(
            counts.insert(task.await.unwrap()),
            "a count was given twice"
        );
    }
    assert_eq!(counts, (1..=20).collect::<BTreeSet<u64>>());
}

async fn purge_expired_removes_only_expired_entries(t: Harness) {
    let kv = &t.kv;
    kv.put("expiring", "v", SHORT).await.unwrap();
    kv.hit("expiring-counter", SHORT).await.unwrap();
    kv.put("lasting", "v", MINUTE).await.unwrap();
    kv.hit("lasting-counter", MINUTE).await.unwrap();
    assert_eq!(kv.purge_expired().await.unwrap(), 0);
    t.pass(SHORT).await;
    let purged = kv.purge_expired().await.unwrap();
    // Redis expires keys by itself.
    assert_eq!(purged, if t.is_redis() { 0 } else { 2 });
    assert_eq!(kv.purge_expired().await.unwrap(), 0);
    assert_eq!(kv.get("expiring").await.unwrap(), None);
    assert_eq!(kv.get("lasting").await.unwrap().as_deref(), Some("v"));
    assert_eq!(kv.hit("lasting-counter", MINUTE).await.unwrap().count, 2);
    assert_eq!(kv.hit("expiring-counter", MINUTE).await.unwrap().count, 1);
    if let Some(db) = &t.db {
        assert_eq!(
            rows(db).await,
            3,
            "the expired rows are gone, the others stay"
        );
    }
}

async fn rows(db: &tms::store::Db) -> i64 {
    let sql = "SELECT count(*) FROM kv_entries";
    match db.pool() {
        tms::store::Pool::Postgres(pool) => sqlx::query_scalar(sql).fetch_one(pool).await.unwrap(),
        tms::store::Pool::Sqlite(pool) => sqlx::query_scalar(sql).fetch_one(pool).await.unwrap(),
    }
}

async fn prefixes_isolate_stores(t: Harness) {
    let eu = t.kv_with_prefix("eu:").await;
    let us = t.kv_with_prefix("us:").await;
    eu.put("k", "eu", MINUTE).await.unwrap();
    us.put("k", "us", MINUTE).await.unwrap();
    assert_eq!(eu.get("k").await.unwrap().as_deref(), Some("eu"));
    assert_eq!(us.take("k").await.unwrap().as_deref(), Some("us"));
    assert_eq!(eu.get("k").await.unwrap().as_deref(), Some("eu"));
    assert_eq!(t.kv.get("k").await.unwrap(), None);
    assert_eq!(eu.hit("c", MINUTE).await.unwrap().count, 1);
    assert_eq!(us.hit("c", MINUTE).await.unwrap().count, 1);
}

// ---- rate limiting over HTTP ----

/// Serves `/public` and `/webhook`, each behind its own limit, with connect info as the app does.
async fn serve(public: RateLimit, webhook: RateLimit) -> String {
    let app = Router::new()
        .route(
            "/public",
            get(|| async { "ok" }).layer(from_fn_with_state(public, rate_limit::enforce)),
        )
        .route(
            "/webhook",
            get(|| async { "ok" }).layer(from_fn_with_state(webhook, rate_limit::enforce)),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
        .unwrap();
    });
    format!("http://{addr}")
}

fn limits(t: &Harness, max: u32, proxies: &str) -> (RateLimit, RateLimit) {
    let proxies = TrustedProxies::parse(proxies).unwrap();
    let clock = t.window_clock();
    (
        RateLimit::new(t.kv.clone(), max, "public", proxies.clone()).with_clock(clock.clone()),
        RateLimit::new(t.kv.clone(), max, "webhook", proxies).with_clock(clock),
    )
}

struct Answer {
    status: u16,
    retry_after: Option<String>,
    remaining: Option<String>,
    body: Value,
}

async fn call(base: &str, path: &str, forwarded_for: Option<&str>) -> Answer {
    let client = reqwest::Client::new();
    let mut request = client.get(format!("{base}{path}"));
    if let Some(xff) = forwarded_for {
        request = request.header("x-forwarded-for", xff);
    }
    let response = request.send().await.expect("request failed");
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_string())
    };
    let retry_after = header("retry-after");
    let remaining = header("x-ratelimit-remaining");
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    Answer {
        status,
        retry_after,
        remaining,
        body,
    }
}

fn assert_too_many(answer: &Answer) {
    assert_eq!(answer.status, 429, "{:?}", answer.body);
    assert_eq!(
        answer.body,
        json!({"error": {
            "statusCode": 429,
            "name": "TooManyRequestsError",
            "message": "Too many requests, please try again later.",
        }})
    );
    let retry_after: u64 = answer
        .retry_after
        .as_deref()
        .expect("Retry-After")
        .parse()
        .unwrap();
    // The manual window clock stands 10 s into its minute.
    assert!(
        (45..=50).contains(&retry_after),
        "Retry-After {retry_after}"
    );
}

async fn rate_limit_answers_429_beyond_the_limit(t: Harness) {
    let (public, webhook) = limits(&t, 3, "");
    let base = serve(public, webhook).await;
    for remaining in ["2", "1", "0"] {
        let answer = call(&base, "/public", None).await;
        assert_eq!(answer.status, 200);
        assert_eq!(answer.body, json!("ok"));
        assert_eq!(answer.retry_after, None);
        assert_eq!(answer.remaining.as_deref(), Some(remaining));
    }
    let answer = call(&base, "/public", None).await;
    assert_too_many(&answer);
    assert_eq!(answer.remaining.as_deref(), Some("0"));
    assert_too_many(&call(&base, "/public", None).await);
    // Another scope is counted on its own.
    assert_eq!(call(&base, "/webhook", None).await.status, 200);
}

async fn rate_limit_ignores_forwarded_for_from_an_untrusted_peer(t: Harness) {
    // The only trusted proxy is elsewhere: the test client (127.0.0.1) is not one.
    let (public, webhook) = limits(&t, 2, "10.0.0.0/8");
    let base = serve(public, webhook).await;
    assert_eq!(
        call(&base, "/public", Some("203.0.113.1")).await.status,
        200
    );
    assert_eq!(
        call(&base, "/public", Some("203.0.113.2")).await.status,
        200
    );
    assert_too_many(&call(&base, "/public", Some("203.0.113.3")).await);
    assert_too_many(&call(&base, "/public", None).await);
}

async fn rate_limit_counts_forwarded_clients_separately_behind_a_trusted_proxy(t: Harness) {
    let (public, webhook) = limits(&t, 2, "10.0.0.0/8,127.0.0.1");
    let base = serve(public, webhook).await;
    let first = Some("203.0.113.7");
    assert_eq!(call(&base, "/public", first).await.status, 200);
    assert_eq!(call(&base, "/public", first).await.status, 200);
    assert_too_many(&call(&base, "/public", first).await);
    // Another client behind the same proxy has its own count.
    let second = Some("203.0.113.8");
    assert_eq!(call(&base, "/public", second).await.status, 200);
    // Trusted hops on the right are skipped; an entry the client wrote on the left is not
    // believed.
    assert_eq!(
        call(&base, "/public", Some("203.0.113.8, 10.0.0.9"))
            .await
            .status,
        200
    );
    assert_too_many(&call(&base, "/public", Some("198.51.100.1, 203.0.113.8")).await);
    // Without the header, the proxy itself is the client.
    assert_eq!(call(&base, "/public", None).await.status, 200);
}

async fn rate_limit_starts_again_in_the_next_window(t: Harness) {
    let clock = t.window_clock();
    let proxies = TrustedProxies::none();
    let public =
        RateLimit::new(t.kv.clone(), 1, "public", proxies.clone()).with_clock(clock.clone());
    let webhook = RateLimit::new(t.kv.clone(), 1, "webhook", proxies).with_clock(clock.clone());
    let base = serve(public, webhook).await;
    assert_eq!(call(&base, "/public", None).await.status, 200);
    assert_too_many(&call(&base, "/public", None).await);
    clock.advance(MINUTE);
    assert_eq!(call(&base, "/public", None).await.status, 200);
    assert_eq!(call(&base, "/public", None).await.status, 429);
}

/// A store that fails lets requests through.
#[tokio::test]
async fn rate_limit_fails_open_when_the_store_fails() {
    let t = Harness::start(
        Backend::Sqlite,
        "rate_limit_fails_open_when_the_store_fails",
    )
    .await
    .unwrap();
    let (public, webhook) = limits(&t, 1, "");
    let base = serve(public, webhook).await;
    assert_eq!(call(&base, "/public", None).await.status, 200);
    assert_too_many(&call(&base, "/public", None).await);
    t.db.as_ref().unwrap().close().await;
    for _ in 0..3 {
        let answer = call(&base, "/public", None).await;
        assert_eq!(answer.status, 200);
        assert_eq!(answer.remaining, None);
    }
}

/// Start-up fails with a clear error when the configured Redis cannot be reached.
#[tokio::test]
async fn unreachable_redis_fails_start_up() {
    let dir = tempfile::tempdir().unwrap();
    let config = Config::from_map(&HashMap::from([
        ("TMS_DATA_DIR".to_string(), dir.path().display().to_string()),
        // Nothing listens on port 1.
        (
            "REDIS_URL".to_string(),
            "redis://:pw@127.0.0.1:1/0".to_string(),
        ),
    ]))
    .unwrap();
    let db = tms::store::Db::connect(&config).await.unwrap();
    let err = Kv::connect(&config, &db, Clock::system())
        .await
        .err()
        .expect("an error");
    let message = format!("{err:#}");
    assert!(
        message.starts_with("cannot connect to Redis at redis://:***@127.0.0.1:1/0 (REDIS_URL)"),
        "{message}"
    );
    assert!(!message.contains(":pw@"));
    db.close().await;
}

/// The janitor purges on its schedule and stops when cancelled.
#[tokio::test]
async fn janitor_purges_until_cancelled() {
    let t = Harness::start(Backend::Sqlite, "janitor_purges_until_cancelled")
        .await
        .unwrap();
    t.kv.put("gone", "v", SHORT).await.unwrap();
    t.kv.put("kept", "v", MINUTE).await.unwrap();
    t.pass(SHORT).await;
    let shutdown = tokio_util::sync::CancellationToken::new();
    let janitor =
        t.kv.spawn_janitor(Duration::from_millis(20), shutdown.clone());
    let db = t.db.as_ref().unwrap();
    for _ in 0..100 {
        if rows(db).await == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(rows(db).await, 1);
    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(5), janitor)
        .await
        .expect("the janitor stops when cancelled")
        .unwrap();
}

/// A `rediss://` URL goes through TLS (rustls): a server that does not speak TLS is an error,
/// never a panic.
#[tokio::test]
async fn rediss_urls_use_tls() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            use tokio::io::AsyncWriteExt;
            let _ = socket.write_all(b"-ERR not TLS\r\n").await;
        }
    });
    let err = Kv::redis(&format!("rediss://127.0.0.1:{port}"), "tms:")
        .await
        .err()
        .expect("no TLS server, no store");
    // The TLS handshake itself failed (the server answered in plain text).
    assert!(format!("{err:#}").contains("corrupt message"), "{err:#}");
}
