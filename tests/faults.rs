//! Faults of the services tms stands on, as a client sees them: a PostgreSQL restart costs no
//! request; an unreachable PostgreSQL or Redis answers 503 with `Retry-After` and the LoopBack
//! body (never 500), and requests succeed again once it is back; a busy SQLite database answers
//! 503; a Redis that keeps nothing on disk is reported at start-up.
//!
//! Outages are made with a TCP proxy between the server and the service (`common::proxy`), so
//! each test breaks only its own connections.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::proxy::FaultProxy;
use common::*;
use sqlx::Connection;

/// How long a request waits for a database connection in these tests (`DB_ACQUIRE_TIMEOUT`).
const ACQUIRE_TIMEOUT: (&str, &str) = ("DB_ACQUIRE_TIMEOUT", "1000");

fn tenant_body(key: &str) -> Value {
    json!({
        "name": format!("Tenant {key}"),
        "key": key,
        "domains": [format!("{key}.example.com")],
        "contact": {
            "firstName": "Grace",
            "lastName": "Hopper",
            "email": format!("grace@{key}.example.com"),
            "isPrimary": true,
        },
    })
}

/// A 503 with `Retry-After` and the LoopBack body.
#[track_caller]
fn assert_unavailable(response: &TestResponse) {
    response.assert_error(503, "ServiceUnavailableError");
    let retry_after: u64 = response
        .header("retry-after")
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("503 without a numeric Retry-After: {response:?}"));
    assert!((1..=60).contains(&retry_after), "{response:?}");
}

/// `count` requests of every kind (reads, creates, updates) in waves of four at once; returns
/// the statuses that were not 2xx, with what was asked.
async fn mixed_requests(app: &TestApp, count: usize, tag: &str) -> Vec<String> {
    let token = app.admin_token();
    let mut failures = Vec::new();
    for wave in 0..count.div_ceil(4) {
        let requests = (0..4).map(|i| {
            let token = token.clone();
            let n = wave * 4 + i;
            async move {
                let key = format!("{tag}{n}");
                match n % 3 {
                    0 => (
                        format!("GET /tenants/count #{n}"),
                        app.get_raw("/tenants/count", Some(&token)).await,
                    ),
                    1 => (
                        format!("POST /tenants #{n}"),
                        app.raw(
                            Method::POST,
                            "/tenants",
                            Some(&token),
                            &tenant_body(&key).to_string(),
                            Some("application/json"),
                        )
                        .await,
                    ),
                    _ => (
                        format!("GET /tenants #{n}"),
                        app.get_raw("/tenants?filter[include][0]=contacts", Some(&token))
                            .await,
                    ),
                }
            }
        });
        for (what, response) in futures_util::future::join_all(requests).await {
            if !response.status.is_success() {
                failures.push(format!("{what}: {} {}", response.status, response.text));
            }
        }
    }
    failures
}

// ---------------------------------------------------------------------------------------------
// PostgreSQL
// ---------------------------------------------------------------------------------------------

/// A restart of PostgreSQL ends every server session: the backends are terminated as a
/// shutdown does (each sends "terminating connection due to administrator command" and closes).
/// Every pooled connection is then broken; none of the requests that follow may fail.
#[tokio::test]
async fn a_postgres_restart_costs_no_request() {
    let test = "a_postgres_restart_costs_no_request";
    if !db_available(Db::Postgres, test) {
        return;
    }
    let app = TestApp::spawn(Db::Postgres).await;
    // Several requests at once, so that the pool holds several connections.
    let failures = mixed_requests(&app, 12, "a").await;
    assert!(failures.is_empty(), "before the restart: {failures:#?}");

    let schema = app.schema.clone().expect("a PostgreSQL test has a schema");
    let admin_url = postgres_url().expect("TMS_TEST_DATABASE_URL");
    let mut admin = sqlx::PgConnection::connect(&admin_url).await.unwrap();
    let terminated: Vec<bool> = sqlx::query_scalar(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1",
    )
    .bind(&schema)
    .fetch_all(&mut admin)
    .await
    .unwrap();
    assert!(
        terminated.len() >= 2,
        "the pool held {} connections",
        terminated.len()
    );
    for _ in 0..100 {
        let left: i64 =
            sqlx::query_scalar("SELECT count(*) FROM pg_stat_activity WHERE application_name = $1")
                .bind(&schema)
                .fetch_one(&mut admin)
                .await
                .unwrap();
        if left == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let failures = mixed_requests(&app, 15, "b").await;
    assert!(failures.is_empty(), "after the restart: {failures:#?}");
    let (status, body) = app.get("/tenants/count", Some(&app.admin_token())).await;
    assert_eq!(status, 200);
    assert_eq!(
        body["count"],
        4 + 5,
        "every create of both rounds was stored once"
    );
    admin.close().await.unwrap();
}

/// While PostgreSQL is unreachable every request that needs it answers 503 with `Retry-After`
/// (reads, writes, readiness); once it is back, requests succeed again on new connections.
#[tokio::test]
async fn an_unreachable_postgres_answers_503_then_recovers() {
    let test = "an_unreachable_postgres_answers_503_then_recovers";
    if !db_available(Db::Postgres, test) {
        return;
    }
    let storage = Storage::new(Db::Postgres);
    let direct = url::Url::parse(storage.postgres_app_url().unwrap()).unwrap();
    let target: SocketAddr = format!(
        "{}:{}",
        direct.host_str().unwrap_or("127.0.0.1"),
        direct.port().unwrap_or(5432)
    )
    .parse()
    .expect("TMS_TEST_DATABASE_URL names an IP address");
    let proxy = FaultProxy::start(target).await;
    let mut proxied = direct.clone();
    proxied.set_port(Some(proxy.port())).unwrap();
    let app = TestApp::spawn_on(
        storage,
        &[("DATABASE_URL", proxied.as_str()), ACQUIRE_TIMEOUT],
    )
    .await;
    let token = app.admin_token();
    let failures = mixed_requests(&app, 8, "c").await;
    assert!(failures.is_empty(), "before the outage: {failures:#?}");

    proxy.cut();
    assert_unavailable(&app.get_raw("/tenants/count", Some(&token)).await);
    assert_unavailable(&app.get_raw("/tenants?filter[limit]=5", Some(&token)).await);
    assert_unavailable(
        &app.raw(
            Method::POST,
            "/tenants",
            Some(&token),
            &tenant_body("down").to_string(),
            Some("application/json"),
        )
        .await,
    );
    assert_unavailable(&app.get_raw("/health/ready", None).await);
    // The process itself still answers.
    assert_eq!(app.get_raw("/ping", None).await.status, 200);

    proxy.restore().await;
    let failures = mixed_requests(&app, 15, "d").await;
    assert!(failures.is_empty(), "after the outage: {failures:#?}");
    let (status, body) = app.get("/tenants/count", Some(&token)).await;
    assert_eq!(status, 200);
    assert_eq!(
        body["count"],
        3 + 5,
        "nothing was written during the outage"
    );
    drop(app);
    drop(proxy);
}

// ---------------------------------------------------------------------------------------------
// SQLite
// ---------------------------------------------------------------------------------------------

/// A connection of another process's kind holding the write lock of `app`'s SQLite database
/// (`BEGIN IMMEDIATE`) until it rolls back.
async fn hold_sqlite_write_lock(app: &TestApp) -> sqlx::SqliteConnection {
    let file = app.data_dir.join("tms.sqlite3");
    let mut holder = sqlx::SqliteConnection::connect(&format!("sqlite://{}", file.display()))
        .await
        .unwrap();
    sqlx::query("BEGIN IMMEDIATE")
        .execute(&mut holder)
        .await
        .unwrap();
    holder
}

/// A write that cannot get SQLite's write lock within the busy timeout answers 503 with
/// `Retry-After`; reads go on meanwhile (WAL), and writes work again once the lock is free.
#[tokio::test]
async fn a_busy_sqlite_database_answers_503() {
    let app = TestApp::spawn(Db::Sqlite).await;
    let token = app.admin_token();
    let mut holder = hold_sqlite_write_lock(&app).await;

    let response = app
        .raw(
            Method::POST,
            "/tenants",
            Some(&token),
            &tenant_body("busy").to_string(),
            Some("application/json"),
        )
        .await;
    assert_unavailable(&response);
    assert_eq!(
        app.get_raw("/tenants/count", Some(&token)).await.status,
        200
    );

    sqlx::query("ROLLBACK").execute(&mut holder).await.unwrap();
    holder.close().await.unwrap();
    let (status, body) = app
        .post("/tenants", Some(&token), &tenant_body("free"))
        .await;
    assert_eq!(status, 200, "{body}");
    let (_, body) = app.get("/tenants/count", Some(&token)).await;
    assert_eq!(body["count"], 1, "the refused write left nothing");
}

/// SQLite has one writer: tms queues its writers in the process, so writers waiting for the lock
/// hold no connection and reads go on beside them. With the lock held by another process, twelve
/// onboardings at once (more than the pool's eight connections) wait; a read still answers at
/// once; when the lock is freed every onboarding goes through, in turn.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn waiting_sqlite_writers_leave_connections_to_reads() {
    let app = TestApp::spawn(Db::Sqlite).await;
    let token = app.admin_token();
    let mut holder = hold_sqlite_write_lock(&app).await;

    let writers: Vec<_> = (0..12)
        .map(|i| {
            let (url, client, token) = (app.url("/tenants"), app.client.clone(), token.clone());
            tokio::spawn(async move {
                client
                    .post(url)
                    .bearer_auth(token)
                    .json(&tenant_body(&format!("queued{i}")))
                    .send()
                    .await
                    .map(|r| r.status().as_u16())
            })
        })
        .collect();
    // The writers are waiting (for the lock, or for their turn) before the read is sent.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let read = tokio::time::timeout(
        Duration::from_secs(3),
        app.get_raw("/tenants/count", Some(&token)),
    )
    .await
    .expect("a read waited for the writers' connections");
    assert_eq!(read.status, 200);

    sqlx::query("ROLLBACK").execute(&mut holder).await.unwrap();
    holder.close().await.unwrap();
    for writer in writers {
        assert_eq!(writer.await.unwrap().unwrap(), 200);
    }
    let (_, body) = app.get("/tenants/count", Some(&token)).await;
    assert_eq!(body["count"], 12);
}

// ---------------------------------------------------------------------------------------------
// Redis
// ---------------------------------------------------------------------------------------------

/// With Redis as the key store, an unreachable Redis makes sign-up and verification answer 503
/// (the rate limit lets requests through rather than failing them); they work again once it is
/// back.
#[tokio::test]
async fn an_unreachable_redis_answers_503_then_recovers() {
    let test = "an_unreachable_redis_answers_503_then_recovers";
    let url = url::Url::parse(&redis_url()).unwrap();
    let target: SocketAddr = format!(
        "{}:{}",
        url.host_str().unwrap_or("127.0.0.1"),
        url.port().unwrap_or(6379)
    )
    .parse()
    .expect("TMS_TEST_REDIS_URL names an IP address");
    let reachable = tokio::net::TcpStream::connect(target).await.is_ok();
    let available = if reachable {
        Ok(())
    } else {
        Err(format!("Redis is not reachable at {target}"))
    };
    if !needs(test, "redis", available) {
        return;
    }
    let proxy = FaultProxy::start(target).await;
    let prefix = format!("tms-test:{}:", uuid::Uuid::new_v4().simple());
    let proxied = format!("redis://127.0.0.1:{}", proxy.port());
    let app = TestApp::spawn_with(
        Db::Sqlite,
        &[
            ("REDIS_URL", &proxied),
            ("REDIS_KEY_PREFIX", &prefix),
            ("LEAD_KEY_IN_RESPONSE", "true"),
        ],
    )
    .await;
    let sign_up = |email: &str| json!({"firstName": "Ada", "lastName": "Lovelace", "email": email, "companyName": "AE"});
    let (status, lead) = app.post("/leads", None, &sign_up("ada@ae.test")).await;
    assert_eq!(status, 200, "{lead}");

    proxy.cut();
    let response = app
        .raw(
            Method::POST,
            "/leads",
            None,
            &sign_up("bob@ae.test").to_string(),
            Some("application/json"),
        )
        .await;
    assert_unavailable(&response);
    let verify = format!("/leads/{}/verify", lead["id"].as_str().unwrap());
    let response = app
        .raw(
            Method::POST,
            &verify,
            Some(lead["key"].as_str().unwrap()),
            "",
            None,
        )
        .await;
    assert_unavailable(&response);

    proxy.restore().await;
    let (status, body) = app
        .request(
            Method::POST,
            &verify,
            Some(lead["key"].as_str().unwrap()),
            None,
        )
        .await;
    assert_eq!(status, 200, "the key survived the outage: {body}");
    let (status, body) = app.post("/leads", None, &sign_up("bob@ae.test")).await;
    assert_eq!(status, 200, "{body}");
    remove_redis_keys(&redis_url(), &prefix);
}

/// The Redis of the test machine keeps nothing on disk (as CI starts it); tms says at start-up
/// that outstanding keys would not survive its restart.
#[tokio::test]
async fn a_redis_without_persistence_is_reported_at_start_up() {
    let test = "a_redis_without_persistence_is_reported_at_start_up";
    let url = redis_url();
    let client = redis::Client::open(url.as_str()).unwrap();
    let connected = client.get_multiplexed_async_connection().await;
    let available = match &connected {
        Ok(_) => Ok(()),
        Err(_) => Err(format!("Redis is not reachable at {url}")),
    };
    let (true, Ok(mut conn)) = (needs(test, "redis", available), connected) else {
        return;
    };
    let settings: Vec<String> = redis::cmd("CONFIG")
        .arg("GET")
        .arg("appendonly")
        .query_async(&mut conn)
        .await
        .unwrap();
    let save: Vec<String> = redis::cmd("CONFIG")
        .arg("GET")
        .arg("save")
        .query_async(&mut conn)
        .await
        .unwrap();
    let persistent = settings.get(1).is_some_and(|v| v == "yes")
        || save.get(1).is_some_and(|v| !v.trim().is_empty());

    let (logs, guard) = capture_logs();
    let prefix = format!("tms-test:{}:", uuid::Uuid::new_v4().simple());
    let app = TestApp::spawn_with(
        Db::Sqlite,
        &[("REDIS_URL", &url), ("REDIS_KEY_PREFIX", &prefix)],
    )
    .await;
    drop(guard);
    let logged = logs.text();
    let warned = logged
        .lines()
        .any(|l| l.contains(" WARN ") && l.contains("Redis keeps nothing on disk"));
    assert_eq!(
        warned, !persistent,
        "persistent: {persistent}; start-up log:\n{logged}"
    );
    drop(app);
}
