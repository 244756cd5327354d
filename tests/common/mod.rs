//! The black-box test harness: a real `tms` server on port 0, on SQLite (a fresh data directory
//! per test) or PostgreSQL (a fresh schema per test, dropped afterwards), driven over HTTP with
//! `reqwest`.
//!
//! ```ignore
//! mod common;
//! use common::*;
//!
//! both_dbs!(count_starts_at_zero, |app| async move {
//!     let (status, body) = app.get("/tenants/count", Some(&app.admin_token())).await;
//!     assert_eq!(status, 200);
//!     assert_eq!(body, json!({"count": 0}));
//! });
//!
//! both_dbs!(tiny_bodies, [("REQUEST_BODY_LIMIT", "2048")], |app| async move { … });
//! ```
//!
//! PostgreSQL runs when `TMS_TEST_DATABASE_URL` is set (e.g.
//! `postgres://postgres@127.0.0.1:5432/test`); otherwise those variants are skipped with a note on
//! stderr, except under `CI=true`, where a missing URL fails the test.
//!
//! Also here for the suites with harnesses of their own: [`Storage`] (a data directory and
//! PostgreSQL schema without a server), the Redis URL and key clean-up, and [`SmtpSink`], a local
//! SMTP server for the mail tests.
#![allow(dead_code)]

pub mod proxy;

use std::collections::HashMap;
use std::future::Future;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub use reqwest::header::HeaderMap;
pub use reqwest::{Method, StatusCode};
use secrecy::SecretString;
#[allow(unused_imports, reason = "not every suite builds JSON by hand")]
pub use serde_json::{Value, json};
use sqlx::{AssertSqlSafe, Connection, Executor};
use tempfile::TempDir;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use tms::auth::{ALL_PERMISSIONS, JwtKeys};
use tms::clock::Clock;
use tms::config::Config;

/// The JWT secret every test server is configured with.
pub const JWT_SECRET: &str = "tms-test-secret-0123456789abcdef0123456789abcdef";
/// The JWT issuer every test server is configured with.
pub const JWT_ISSUER: &str = "tms-test";
/// The caller id of tokens minted by [`TestApp::token`] and [`TestApp::admin_token`].
pub const TEST_USER_ID: &str = "11111111-1111-4111-8111-111111111111";
/// Lifetime of minted test tokens, in seconds.
pub const TOKEN_TTL: u64 = 3600;

/// The database a test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Db {
    Sqlite,
    Postgres,
}

impl Db {
    /// The name `/health/ready` reports for this database.
    pub fn name(self) -> &'static str {
        match self {
            Self::Sqlite => "sqlite",
            Self::Postgres => "postgres",
        }
    }
}

/// Whether the tests run under `CI=true` (or `CI=1`), where every backend is required.
pub fn under_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v.eq_ignore_ascii_case("true") || v == "1")
}

/// Skips `test` with a note on stderr because of `why`; under CI, fails it instead.
#[track_caller]
fn skip(test: &str, why: &str) {
    assert!(!under_ci(), "{test}: {why} (required under CI=true)");
    eprintln!("skipping {test}: {why}");
}

/// Records that `test` needs `service` (`sqlite`, `postgres`, `redis`, `aiosmtpd`, `chromium`,
/// …) and whether it is there: `Ok` runs the test, `Err(why)` skips it with a note on stderr —
/// a failure under `CI=true`. Returns whether to run it. The last lines of `cargo test`
/// (`tests/zz_summary.rs`) count what ran and what was skipped, per service.
#[track_caller]
pub fn needs(test: &str, service: &str, available: Result<(), String>) -> bool {
    let (outcome, why) = match &available {
        Ok(()) => ("ran", ""),
        Err(why) => ("skipped", why.as_str()),
    };
    ledger::record(service, outcome, test, why);
    if let Err(why) = available {
        skip(test, &why);
        return false;
    }
    true
}

/// Whether `python3` can import `module`: `Err` says how to install it (for [`needs`]).
pub fn python_module(module: &str, package: &str) -> Result<(), String> {
    let installed = Command::new("python3")
        .args(["-c", &format!("import {module}")])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if installed {
        Ok(())
    } else {
        Err(format!(
            "{package} is not installed (python3 -m pip install {package})"
        ))
    }
}

/// The record of which services the test variants of this `cargo test` run needed: one file per
/// test process in a directory named after the process that started them (cargo), read by
/// `tests/zz_summary.rs`.
pub mod ledger {
    use std::io::Write;
    use std::path::PathBuf;

    /// Where the test processes started by process `parent` write their records.
    pub fn dir(parent: u32) -> PathBuf {
        PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
            .join("test-variants")
            .join(parent.to_string())
    }

    pub(super) fn record(service: &str, outcome: &str, test: &str, why: &str) {
        static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
        let _guard = LOCK.lock();
        let dir = dir(std::os::unix::process::parent_id());
        let line = format!(
            "{service}\t{outcome}\t{test}\t{}\n",
            why.replace(['\t', '\n'], " ")
        );
        let written = std::fs::create_dir_all(&dir).and_then(|()| {
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(dir.join(std::process::id().to_string()))?
                .write_all(line.as_bytes())
        });
        if let Err(err) = written {
            eprintln!("cannot record the test variant in {}: {err}", dir.display());
        }
    }
}

/// The Redis the tests use: `TMS_TEST_REDIS_URL`, default `redis://127.0.0.1:6379`.
pub fn redis_url() -> String {
    std::env::var("TMS_TEST_REDIS_URL")
        .ok()
        .filter(|u| !u.trim().is_empty())
        .unwrap_or_else(|| "redis://127.0.0.1:6379".into())
}

/// Deletes every key under `prefix` in the Redis at `url`, on a thread of its own (callable from
/// a `Drop` inside the test runtime). Best effort: every key the tests write expires anyway.
pub fn remove_redis_keys(url: &str, prefix: &str) {
    let (url, pattern) = (url.to_string(), format!("{prefix}*"));
    let _ = std::thread::spawn(move || -> redis::RedisResult<()> {
        let client = redis::Client::open(url.as_str())?;
        let mut conn = client.get_connection_with_timeout(Duration::from_secs(2))?;
        let keys: Vec<String> = redis::cmd("KEYS").arg(&pattern).query(&mut conn)?;
        if !keys.is_empty() {
            redis::cmd("DEL").arg(keys).query::<()>(&mut conn)?;
        }
        Ok(())
    })
    .join();
}

/// The PostgreSQL URL tests run against: `TMS_TEST_DATABASE_URL`, or `None` when unset.
/// Panics when unset under `CI=true`.
pub fn postgres_url() -> Option<String> {
    let url = std::env::var("TMS_TEST_DATABASE_URL")
        .ok()
        .filter(|u| !u.trim().is_empty());
    if url.is_none() && under_ci() {
        panic!("TMS_TEST_DATABASE_URL must be set under CI");
    }
    url
}

/// Whether `test` can run on `db`; prints why not when it cannot (PostgreSQL without a URL).
pub fn db_available(db: Db, test: &str) -> bool {
    let available = match db {
        Db::Sqlite => Ok(()),
        Db::Postgres => postgres_url().map(drop).ok_or_else(|| {
            "TMS_TEST_DATABASE_URL is not set (e.g. postgres://postgres@127.0.0.1:5432/test)"
                .to_string()
        }),
    };
    needs(test, db.name(), available)
}

/// Runs `test` on a fresh server on `db` (configured with the harness defaults plus `overrides`),
/// or skips it when `db` is not available. What the `both_dbs!` macro expands to.
pub async fn run_on<F, Fut>(db: Db, name: &str, overrides: &[(&str, &str)], test: F)
where
    F: FnOnce(TestApp) -> Fut,
    Fut: Future<Output = ()>,
{
    if !db_available(db, name) {
        return;
    }
    let app = TestApp::spawn_with(db, overrides).await;
    test(app).await;
}

/// Writes a test once and runs it on both databases:
///
/// `both_dbs!(name, |app| async move { … });` or, with configuration overrides,
/// `both_dbs!(name, [("VAR", "value"), …], |app| async move { … });`
///
/// expands to a module `name` with the tests `name::sqlite` and `name::postgres`
/// (`cargo test name` runs both, `cargo test postgres` every PostgreSQL variant).
#[macro_export]
macro_rules! both_dbs {
    ($name:ident, [$(($var:expr, $value:expr)),* $(,)?], $test:expr $(,)?) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            #[tokio::test]
            async fn sqlite() {
                $crate::common::run_on(
                    $crate::common::Db::Sqlite,
                    concat!(module_path!(), "::sqlite"),
                    &[$(($var, $value)),*],
                    $test,
                )
                .await;
            }

            #[tokio::test]
            async fn postgres() {
                $crate::common::run_on(
                    $crate::common::Db::Postgres,
                    concat!(module_path!(), "::postgres"),
                    &[$(($var, $value)),*],
                    $test,
                )
                .await;
            }
        }
    };
    ($name:ident, $test:expr $(,)?) => {
        $crate::both_dbs!($name, [], $test);
    };
}

/// Runs `body` on a fresh, migrated database of `kind` (skipped, with a note, when it is not
/// available), closing it afterwards. What the `both_stores!` macro expands to.
pub async fn run_on_db<F, Fut>(kind: Db, name: &str, body: F)
where
    F: FnOnce(TestDb) -> Fut,
    Fut: Future<Output = TestDb>,
{
    let Some(test_db) = TestDb::connect(kind, name).await else {
        return;
    };
    test_db.db.migrate().await.expect("migrations");
    body(test_db).await.close().await;
}

/// `both_stores!(name, body_fn)`: the tests `name::sqlite` and `name::postgres`, each running
/// `body_fn(TestDb) -> TestDb` on a fresh migrated database without a server.
#[macro_export]
macro_rules! both_stores {
    ($name:ident, $body:ident) => {
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn sqlite() {
                $crate::common::run_on_db(
                    $crate::common::Db::Sqlite,
                    concat!(module_path!(), "::sqlite"),
                    super::$body,
                )
                .await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn postgres() {
                $crate::common::run_on_db(
                    $crate::common::Db::Postgres,
                    concat!(module_path!(), "::postgres"),
                    super::$body,
                )
                .await;
            }
        }
    };
}

/// The keys of the harness's `JWT_SECRET` and `JWT_ISSUER`, which every server a test starts
/// (in process or as a `tms` child) trusts.
pub fn harness_jwt_keys() -> JwtKeys {
    JwtKeys::new(&SecretString::from(JWT_SECRET.to_string()), JWT_ISSUER)
}

/// A token for [`TEST_USER_ID`] with every permission, for a server on the harness's secret.
pub fn harness_admin_token() -> String {
    harness_jwt_keys()
        .mint(
            TEST_USER_ID,
            ALL_PERMISSIONS.iter().map(|p| p.to_string()).collect(),
            TOKEN_TTL,
        )
        .expect("cannot mint a test token")
}

/// What a test owns outside the server: its data directory and, on PostgreSQL, its schema.
/// Dropping it removes both (the schema with `DROP SCHEMA … CASCADE`, best effort).
///
/// [`TestApp`] and [`TestDb`] hold one; a suite with a harness of its own makes one with
/// [`Storage::new`] (after [`db_available`]) and builds its configuration with
/// [`Storage::config`].
pub struct Storage {
    data_dir: TempDir,
    postgres: Option<PgSchema>,
}

struct PgSchema {
    /// The URL without the per-test `application_name`.
    admin_url: String,
    /// The URL the server uses: tagged with `application_name` so teardown can end its sessions.
    app_url: String,
    schema: String,
}

impl Storage {
    /// A fresh data directory and, on PostgreSQL, a fresh schema name (created by the first
    /// migration). Panics on PostgreSQL without `TMS_TEST_DATABASE_URL`.
    pub fn new(db: Db) -> Self {
        let data_dir = tempfile::Builder::new()
            .prefix("tms-test-")
            .tempdir()
            .expect("cannot create a temporary data directory");
        let postgres = match db {
            Db::Sqlite => None,
            Db::Postgres => {
                let admin_url = postgres_url().expect(
                    "TMS_TEST_DATABASE_URL must be set to run a test on PostgreSQL \
                     (check db_available first)",
                );
                let schema = format!("t_{}", uuid::Uuid::new_v4().simple());
                let separator = if admin_url.contains('?') { '&' } else { '?' };
                let app_url = format!("{admin_url}{separator}application_name={schema}");
                Some(PgSchema {
                    admin_url,
                    app_url,
                    schema,
                })
            }
        };
        Self { data_dir, postgres }
    }

    /// On PostgreSQL: the URL the server connects with (tagged with the schema as its
    /// `application_name`, so that the test can find and end the server's sessions).
    pub fn postgres_app_url(&self) -> Option<&str> {
        self.postgres.as_ref().map(|pg| pg.app_url.as_str())
    }

    /// On PostgreSQL: the schema of this storage (`t_<uuid>`), also the server's
    /// `application_name`.
    pub fn postgres_schema(&self) -> Option<&str> {
        self.postgres.as_ref().map(|pg| pg.schema.as_str())
    }

    pub fn db(&self) -> Db {
        if self.postgres.is_some() {
            Db::Postgres
        } else {
            Db::Sqlite
        }
    }

    /// The harness variables for this storage, then `overrides` (an empty value unsets): the
    /// environment of a `tms` process on it.
    pub fn variables(&self, overrides: &[(&str, &str)]) -> HashMap<String, String> {
        let mut vars: HashMap<String, String> = [
            ("TMS_ENV", "test"),
            ("HOST", "127.0.0.1"),
            ("PORT", "0"),
            ("JWT_SECRET", JWT_SECRET),
            ("JWT_ISSUER", JWT_ISSUER),
            // Billing runs only where a test runs it (tests/billing.rs), on its own clock.
            ("BILLING_INTERVAL", "0"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        vars.insert(
            "TMS_DATA_DIR".into(),
            self.data_dir.path().display().to_string(),
        );
        if let Some(pg) = &self.postgres {
            vars.insert("DATABASE_URL".into(), pg.app_url.clone());
            vars.insert("DB_SCHEMA".into(), pg.schema.clone());
        }
        for (name, value) in overrides {
            vars.insert(name.to_string(), value.to_string());
        }
        vars
    }

    /// The harness configuration of this storage with `overrides` (an empty value unsets).
    pub fn config(&self, overrides: &[(&str, &str)]) -> Config {
        Config::from_map(&self.variables(overrides))
            .unwrap_or_else(|err| panic!("test configuration refused: {err}"))
    }
}

impl Drop for Storage {
    fn drop(&mut self) {
        if let Some(pg) = self.postgres.take() {
            drop_schema(pg);
        }
    }
}

/// Ends the server's sessions and drops the schema, on a thread of its own (a `Drop` cannot
/// await, and the test runtime may be a single thread busy running this very `Drop`).
fn drop_schema(pg: PgSchema) {
    let schema = pg.schema.clone();
    let outcome = std::thread::spawn(move || -> anyhow::Result<()> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let teardown = async {
            let mut conn = sqlx::PgConnection::connect(&pg.admin_url).await?;
            sqlx::query(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                 WHERE application_name = $1 AND pid <> pg_backend_pid()",
            )
            .bind(&pg.schema)
            .execute(&mut conn)
            .await?;
            conn.execute("SET lock_timeout = '10s'").await?;
            conn.execute(AssertSqlSafe(format!(
                "DROP SCHEMA IF EXISTS \"{}\" CASCADE",
                pg.schema
            )))
            .await?;
            conn.close().await?;
            Ok::<_, anyhow::Error>(())
        };
        runtime.block_on(async { tokio::time::timeout(Duration::from_secs(30), teardown).await })?
    })
    .join();
    let problem = match outcome {
        Ok(Ok(())) => return,
        Ok(Err(err)) => format!("{err:#}"),
        Err(_) => "teardown panicked".to_string(),
    };
    // Fail a passing test rather than leave schemas behind; never panic while unwinding.
    if std::thread::panicking() {
        eprintln!("could not drop test schema {schema}: {problem}");
    } else {
        panic!("could not drop test schema {schema}: {problem}");
    }
}

/// The running server: its shutdown trigger and task.
struct Server {
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<anyhow::Result<()>>>,
}

impl Server {
    async fn start(config: Config, clock: Clock) -> (Self, SocketAddr) {
        let app = tms::App::build_with_clock(config, clock)
            .await
            .unwrap_or_else(|err| panic!("the app did not start: {err:#}"));
        let addr = app.local_addr();
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(app.run_until_stopped(async move {
            let _ = rx.await;
        }));
        (
            Self {
                shutdown: Some(tx),
                task: Some(task),
            },
            addr,
        )
    }

    fn signal(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }

    async fn wait(&mut self) -> anyhow::Result<()> {
        match self.task.take() {
            Some(task) => task.await.map_err(anyhow::Error::new)?,
            None => Ok(()),
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.signal();
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// A running test server and an HTTP client for it.
pub struct TestApp {
    /// `http://127.0.0.1:<port>`.
    pub base_url: String,
    pub addr: SocketAddr,
    pub client: reqwest::Client,
    /// The configuration the server was built with.
    pub config: Config,
    /// The server's data directory (a fresh temporary directory, removed after the test).
    pub data_dir: PathBuf,
    pub db: Db,
    /// The PostgreSQL schema of this test (`t_<uuid>`), `None` on SQLite.
    pub schema: Option<String>,
    /// The server's clock: the system's, or the manual one of [`TestApp::spawn_on_clock`].
    pub clock: Clock,
    server: Server,
    // Last: dropped after the server has been told to stop.
    storage: Storage,
}

impl TestApp {
    /// A server on `db` with the harness defaults.
    pub async fn spawn(db: Db) -> TestApp {
        Self::spawn_with(db, &[]).await
    }

    /// A server on `db` with the harness defaults plus `overrides` (an empty value unsets a
    /// variable). Panics when the configuration is refused or the app does not start.
    pub async fn spawn_with(db: Db, overrides: &[(&str, &str)]) -> TestApp {
        let storage = Storage::new(db);
        let config = storage.config(overrides);
        Self::start(config, storage, Clock::system()).await
    }

    /// A server on `storage` (see [`Storage::new`]) with the harness defaults plus `overrides`.
    pub async fn spawn_on(storage: Storage, overrides: &[(&str, &str)]) -> TestApp {
        let config = storage.config(overrides);
        Self::start(config, storage, Clock::system()).await
    }

    /// [`TestApp::spawn_on`] with the server on `clock` (a manual one: the test moves time).
    pub async fn spawn_on_clock(
        storage: Storage,
        overrides: &[(&str, &str)],
        clock: Clock,
    ) -> TestApp {
        let config = storage.config(overrides);
        Self::start(config, storage, clock).await
    }

    async fn start(config: Config, storage: Storage, clock: Clock) -> TestApp {
        let (server, addr) = Server::start(config.clone(), clock.clone()).await;
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(30))
            .build()
            .expect("cannot build the HTTP client");
        TestApp {
            base_url: format!("http://{addr}"),
            addr,
            client,
            config,
            data_dir: storage.data_dir.path().to_path_buf(),
            db: storage.db(),
            schema: storage.postgres.as_ref().map(|pg| pg.schema.clone()),
            clock,
            server,
            storage,
        }
    }

    /// The environment of this test's storage with `overrides`, for running the `tms` binary
    /// on the same data directory / schema.
    pub fn variables(&self, overrides: &[(&str, &str)]) -> HashMap<String, String> {
        self.storage.variables(overrides)
    }

    /// The harness configuration of this test's storage with other `overrides` (for building a
    /// second app or a bare `tms::store::Db` on the same data directory / schema).
    pub fn config_with(&self, overrides: &[(&str, &str)]) -> Config {
        self.storage.config(overrides)
    }

    /// Fires the shutdown signal without waiting (the server finishes in-flight requests).
    pub fn signal_shutdown(&mut self) {
        self.server.signal();
    }

    /// Whether `run_until_stopped` has returned.
    pub fn server_finished(&self) -> bool {
        self.server.task.as_ref().is_none_or(|t| t.is_finished())
    }

    /// Waits for `run_until_stopped` to return and gives its result.
    pub async fn wait_stopped(&mut self) -> anyhow::Result<()> {
        self.server.wait().await
    }

    /// Stops the server gracefully and returns what `run_until_stopped` returned; then removes
    /// the data directory and the schema.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        self.server.signal();
        self.server.wait().await
    }

    /// Stops the server gracefully, then starts a new one on the same data directory and schema
    /// (a restart on an existing database). The new server listens on a new port.
    pub async fn restart(self) -> TestApp {
        self.restart_with(&[]).await
    }

    /// [`TestApp::restart`] with configuration overrides.
    pub async fn restart_with(self, overrides: &[(&str, &str)]) -> TestApp {
        let TestApp {
            mut server,
            storage,
            clock,
            ..
        } = self;
        server.signal();
        server
            .wait()
            .await
            .unwrap_or_else(|err| panic!("the server did not stop cleanly: {err:#}"));
        drop(server);
        let config = storage.config(overrides);
        Self::start(config, storage, clock).await
    }

    /// The absolute URL of `path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base_url, path)
    }

    /// The server's signing keys (secret and issuer of the harness).
    pub fn jwt_keys(&self) -> JwtKeys {
        harness_jwt_keys()
    }

    /// A valid token for [`TEST_USER_ID`] with `permissions`.
    pub fn token(&self, permissions: &[&str]) -> String {
        self.token_for(TEST_USER_ID, permissions)
    }

    /// A valid token for caller `id` with `permissions`.
    pub fn token_for(&self, id: &str, permissions: &[&str]) -> String {
        self.jwt_keys()
            .mint(
                id,
                permissions.iter().map(|p| p.to_string()).collect(),
                TOKEN_TTL,
            )
            .expect("cannot mint a test token")
    }

    /// A valid token with every permission of the service.
    pub fn admin_token(&self) -> String {
        self.token(ALL_PERMISSIONS)
    }

    /// Sends a request with an optional JSON body; returns the status and the body as JSON
    /// (`Value::Null` when empty, a `Value::String` when it is not JSON).
    pub async fn request(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> (StatusCode, Value) {
        let mut request = self.client.request(method, self.url(path));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = TestResponse::read(request.send().await.expect("request failed")).await;
        (response.status, response.json())
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> (StatusCode, Value) {
        self.request(Method::GET, path, token, None).await
    }

    pub async fn post(&self, path: &str, token: Option<&str>, body: &Value) -> (StatusCode, Value) {
        self.request(Method::POST, path, token, Some(body)).await
    }

    pub async fn put(&self, path: &str, token: Option<&str>, body: &Value) -> (StatusCode, Value) {
        self.request(Method::PUT, path, token, Some(body)).await
    }

    pub async fn patch(
        &self,
        path: &str,
        token: Option<&str>,
        body: &Value,
    ) -> (StatusCode, Value) {
        self.request(Method::PATCH, path, token, Some(body)).await
    }

    pub async fn delete(&self, path: &str, token: Option<&str>) -> (StatusCode, Value) {
        self.request(Method::DELETE, path, token, None).await
    }

    /// Sends `body` verbatim with `content_type` (no Content-Type header when `None`); for
    /// malformed input. The whole response, headers included.
    pub async fn raw(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: &str,
        content_type: Option<&str>,
    ) -> TestResponse {
        let mut request = self
            .client
            .request(method, self.url(path))
            .body(body.to_string());
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(content_type) = content_type {
            request = request.header(reqwest::header::CONTENT_TYPE, content_type);
        }
        TestResponse::read(request.send().await.expect("request failed")).await
    }

    /// `GET path`, the whole response, headers included.
    pub async fn get_raw(&self, path: &str, token: Option<&str>) -> TestResponse {
        let mut request = self.client.get(self.url(path));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        TestResponse::read(request.send().await.expect("request failed")).await
    }
}

/// A whole response: status, headers and body text.
#[derive(Debug)]
pub struct TestResponse {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub text: String,
}

impl TestResponse {
    pub async fn read(response: reqwest::Response) -> Self {
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response
            .bytes()
            .await
            .expect("cannot read the response body");
        Self {
            status,
            headers,
            text: String::from_utf8_lossy(&bytes).into_owned(),
        }
    }

    /// The body as JSON: `Value::Null` when empty, a `Value::String` when it is not JSON.
    pub fn json(&self) -> Value {
        if self.text.trim().is_empty() {
            return Value::Null;
        }
        serde_json::from_str(&self.text).unwrap_or_else(|_| Value::String(self.text.clone()))
    }

    /// A header's value as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The response is the LoopBack error `status`/`name` and carries an `x-request-id`.
    #[track_caller]
    pub fn assert_error(&self, status: u16, name: &str) {
        assert_eq!(
            self.status.as_u16(),
            status,
            "unexpected status; body: {}",
            self.text
        );
        assert!(
            self.header("x-request-id").is_some_and(|v| !v.is_empty()),
            "error response without x-request-id: {self:?}"
        );
        assert!(
            self.header("content-type")
                .is_some_and(|v| v.starts_with("application/json")),
            "error response is not JSON: {self:?}"
        );
        assert_loopback_error(&self.json(), status, name);
    }
}

/// `body` is `{"error":{"statusCode":status,"name":name,"message":"…"}}` (plus, optionally,
/// `code` and `details`, and nothing else).
#[track_caller]
pub fn assert_loopback_error(body: &Value, status: u16, name: &str) {
    let Some(root) = body.as_object() else {
        panic!("error body is not a JSON object: {body}");
    };
    assert_eq!(
        root.keys().collect::<Vec<_>>(),
        ["error"],
        "error body: {body}"
    );
    let error = &body["error"];
    assert_eq!(error["statusCode"], status, "error body: {body}");
    assert_eq!(error["name"], name, "error body: {body}");
    assert!(
        error["message"].is_string(),
        "error body without a message: {body}"
    );
    for key in error.as_object().expect("error is an object").keys() {
        assert!(
            ["statusCode", "name", "message", "code", "details"].contains(&key.as_str()),
            "unexpected property {key:?} in error body: {body}"
        );
    }
}

/// What the log subscriber of [`capture_logs`] wrote, as text.
#[derive(Clone, Default)]
pub struct LogBuffer(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl LogBuffer {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

impl std::io::Write for LogBuffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Captures the log lines (INFO and above, plain text) written on this thread while the guard
/// lives: in a `#[tokio::test]` (one thread) that is everything the server logs.
pub fn capture_logs() -> (LogBuffer, tracing::subscriber::DefaultGuard) {
    let logs = LogBuffer::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_ansi(false)
        .with_max_level(tracing::Level::INFO)
        .with_writer(move || writer.clone())
        .finish();
    (logs, tracing::subscriber::set_default(subscriber))
}

/// A bare migrated-or-not database (no server) on its own data directory or schema, for store
/// level tests. Dropping it removes the data directory and the schema.
pub struct TestDb {
    pub db: tms::store::Db,
    pub config: Config,
    pub kind: Db,
    pub schema: Option<String>,
    pub data_dir: PathBuf,
    // Last: dropped after the pool.
    storage: Storage,
}

impl TestDb {
    /// Connects (without migrating) to a fresh database of `kind`; `None` (with a note) when
    /// `kind` is not available.
    pub async fn connect(kind: Db, test: &str) -> Option<TestDb> {
        if !db_available(kind, test) {
            return None;
        }
        let storage = Storage::new(kind);
        let config = storage.config(&[]);
        let db = tms::store::Db::connect(&config)
            .await
            .unwrap_or_else(|err| panic!("cannot connect to the test database: {err:#}"));
        Some(TestDb {
            db,
            kind,
            schema: storage.postgres.as_ref().map(|pg| pg.schema.clone()),
            data_dir: storage.data_dir.path().to_path_buf(),
            config,
            storage,
        })
    }

    /// Another pool on the same database / schema.
    pub async fn reconnect(&self) -> tms::store::Db {
        tms::store::Db::connect(&self.config)
            .await
            .unwrap_or_else(|err| panic!("cannot reconnect to the test database: {err:#}"))
    }

    /// Closes the pool, then removes the data directory and the schema.
    pub async fn close(self) {
        self.db.close().await;
    }
}

/// A local SMTP server for the mail tests: `python3 -m aiosmtpd` storing every message it
/// receives in a Maildir. Killed when dropped.
pub struct SmtpSink {
    child: Child,
    port: u16,
    maildir: PathBuf,
    /// The temporary directory holding the Maildir, when the sink made its own.
    _dir: Option<TempDir>,
}

impl SmtpSink {
    /// How long [`SmtpSink::start_at`] waits for the server to accept connections.
    const STARTUP: Duration = Duration::from_secs(20);

    /// Whether aiosmtpd can be run; when it cannot, `test` is skipped with a note (see [`skip`]).
    pub fn available(test: &str) -> bool {
        let ok = Command::new("python3")
            .args(["-c", "import aiosmtpd"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        needs(
            test,
            "aiosmtpd",
            if ok {
                Ok(())
            } else {
                Err("aiosmtpd is not installed (python3 -m pip install aiosmtpd)".into())
            },
        )
    }

    /// A port on 127.0.0.1 that nothing listens on (at the time of asking).
    pub fn free_port() -> u16 {
        TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("cannot find a free port")
            .port()
    }

    /// A server on a free port with a Maildir of its own (removed when the sink is dropped).
    pub async fn start() -> SmtpSink {
        let dir = tempfile::tempdir().expect("cannot create a temporary Maildir directory");
        let mut sink = Self::start_at(Self::free_port(), &dir.path().join("maildir")).await;
        sink._dir = Some(dir);
        sink
    }

    /// A server on `port` writing into `maildir`, once it accepts connections. A server started
    /// again on the same port and Maildir takes over where a stopped one left off.
    pub async fn start_at(port: u16, maildir: &Path) -> SmtpSink {
        let child = Command::new("python3")
            .args(["-m", "aiosmtpd", "-n", "-l"])
            .arg(format!("127.0.0.1:{port}"))
            .args(["-c", "aiosmtpd.handlers.Mailbox"])
            .arg(maildir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("cannot start aiosmtpd");
        let sink = SmtpSink {
            child,
            port,
            maildir: maildir.to_path_buf(),
            _dir: None,
        };
        let deadline = Instant::now() + Self::STARTUP;
        while tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            assert!(
                Instant::now() < deadline,
                "aiosmtpd did not start on port {port}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        sink
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `SMTP_URL` for this server: `smtp://127.0.0.1:<port>?tls=none`.
    pub fn url(&self) -> String {
        format!("smtp://127.0.0.1:{}?tls=none", self.port)
    }

    /// The directory delivered messages land in (the Maildir's `new`).
    pub fn inbox(&self) -> PathBuf {
        self.maildir.join("new")
    }

    /// The messages received so far, in no particular order.
    pub fn messages(&self) -> Vec<Vec<u8>> {
        let Ok(entries) = std::fs::read_dir(self.inbox()) else {
            return Vec::new();
        };
        entries
            .map(|e| std::fs::read(e.expect("a Maildir entry").path()).expect("a readable message"))
            .collect()
    }

    /// Stops the server now (as dropping it does).
    pub fn stop(self) {
        drop(self);
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A token of the ARC SaaS kind, with every permission: `id` the user and `userTenantId` their
/// membership of a tenant, which differ (tms's own tokens carry one id in both).
pub fn arc_token(id: &str, user_tenant_id: &str) -> String {
    let claims = json!({"id": id, "userTenantId": user_tenant_id,
        "permissions": tms::auth::ALL_PERMISSIONS, "iss": JWT_ISSUER,
        "exp": tms::auth::now_secs() + 600});
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(JWT_SECRET.as_bytes()),
    )
    .expect("cannot sign a test token")
}
