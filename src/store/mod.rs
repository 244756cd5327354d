//! Database access: the pool for the database chosen at start-up, embedded migrations, and the
//! few primitives every table module uses (fetch rows as wire objects, execute, count). Statements
//! are built once with sea-query and rendered for the backend in use; no handler ever branches on
//! the database kind.

pub mod adopt;
pub mod audit;
pub mod crud;
pub mod filter;
pub mod idempotency;
pub mod invoices;
pub mod kv;
pub mod leads;
pub mod outbox;
pub mod provisioning;
pub mod raw;
pub mod stats;
pub mod values;

use std::future::Future;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use sea_query::{PostgresQueryBuilder, SelectStatement, SqliteQueryBuilder};
use sea_query_sqlx::SqlxBinder;
use secrecy::ExposeSecret;
use serde_json::{Map, Value};
use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool, PgPoolOptions};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{AssertSqlSafe, ConnectOptions, Connection, Executor};
use tracing::Instrument;

use crate::clock::Clock;
use crate::config::{Config, DatabaseConfig};
use crate::files;
use crate::model::Field;
pub use raw::{Param, RawRow};
pub use values::Backend;

static POSTGRES_MIGRATIONS: Migrator = sqlx::migrate!("./migrations/postgres");
static SQLITE_MIGRATIONS: Migrator = sqlx::migrate!("./migrations/sqlite");

/// The database in use: its pool, and on PostgreSQL what the pool has learnt about broken
/// connections (see [`Health`]).
#[derive(Clone, Debug)]
pub struct Db {
    pool: Pool,
    health: Arc<Health>,
    /// The time the audit columns are stamped with.
    clock: Clock,
    /// `SYSTEM_USER_ID`: who tms's own writes are by, needed to take over the original's schema.
    system_user_id: Arc<str>,
}

/// The connection pool of the database in use.
#[derive(Clone, Debug)]
pub enum Pool {
    Postgres(PgPool),
    Sqlite(SqlitePool),
}

/// The connections of the pool at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolStats {
    pub in_use: u32,
    pub idle: u32,
    pub max: u32,
}

/// A row read as its wire object (`{"id": …, "name": …}`).
pub type Object = Map<String, Value>;

/// How long after a broken PostgreSQL connection was seen the connections opened before it are
/// checked (one round trip each) when taken from the pool.
const SUSPECT_WINDOW: Duration = Duration::from_secs(60);

/// What the PostgreSQL pool learnt from failures. A server restart breaks every pooled
/// connection at once, but a connection's socket is only found dead when it is next used. So
/// the first statement that fails on a broken connection marks the moment, and for
/// [`SUSPECT_WINDOW`] after it every connection opened before that moment is pinged before it is
/// handed out (dead ones are closed and replaced); the statement itself is retried once when it
/// is a read (see [`Conn`]). Healthy pools pay nothing: no ping on every acquire.
#[derive(Debug)]
pub struct Health {
    origin: Instant,
    /// Milliseconds after `origin` at which a broken connection was last seen; 0 = never.
    broken_at_ms: AtomicU64,
}

impl Default for Health {
    fn default() -> Self {
        Self {
            origin: Instant::now(),
            broken_at_ms: AtomicU64::new(0),
        }
    }
}

impl Health {
    fn elapsed_ms(&self) -> u64 {
        u64::try_from(self.origin.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Records that a connection was found broken now.
    pub fn mark_broken(&self) {
        self.broken_at_ms
            .store(self.elapsed_ms().max(1), Ordering::SeqCst);
    }

    /// Whether a pooled connection of this `age` must be checked before use: it was opened
    /// before the last broken connection was seen, and that was recent.
    pub fn is_suspect(&self, age: Duration) -> bool {
        let broken_at = self.broken_at_ms.load(Ordering::SeqCst);
        if broken_at == 0 {
            return false;
        }
        let now = self.elapsed_ms();
        let since_broken = now.saturating_sub(broken_at);
        let age_ms = u64::try_from(age.as_millis()).unwrap_or(u64::MAX);
        since_broken < millis_u64(SUSPECT_WINDOW) && age_ms >= since_broken
    }
}

fn millis_u64(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl Db {
    /// Opens the pool (creating the SQLite file and its directory when missing). The PostgreSQL
    /// pool connects lazily: [`Db::migrate`] opens the first connection. Does not migrate.
    pub async fn connect(config: &Config) -> anyhow::Result<Self> {
        let health = Arc::new(Health::default());
        let pool = match &config.database {
            DatabaseConfig::Sqlite { path } => {
                if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                    files::create_dir(dir)
                        .with_context(|| format!("cannot create directory {}", dir.display()))?;
                }
                // Owner-only before SQLite opens it: SQLite would create it 0644 (less the
                // umask), and gives the `-wal` and `-shm` it creates the database's mode.
                if path.as_os_str() != ":memory:" {
                    files::create_file(path).with_context(|| {
                        format!("cannot create SQLite database {}", path.display())
                    })?;
                }
                let options = SqliteConnectOptions::new()
                    .filename(path)
                    .create_if_missing(true)
                    .journal_mode(SqliteJournalMode::Wal)
                    .synchronous(SqliteSynchronous::Normal)
                    .foreign_keys(true)
                    .busy_timeout(SQLITE_BUSY_TIMEOUT)
                    // LIKE is case-sensitive, as on PostgreSQL; ILIKE is lower() LIKE lower().
                    .pragma("case_sensitive_like", "ON")
                    .log_statements(tracing::log::LevelFilter::Trace);
                let pool = SqlitePoolOptions::new()
                    .max_connections(config.db_pool_size.min(8))
                    .test_before_acquire(false)
                    .acquire_timeout(config.db_acquire_timeout)
                    .connect_with(options)
                    .await
                    .with_context(|| format!("cannot open SQLite database {}", path.display()))?;
                for companion in files::sqlite_companions(path) {
                    files::tighten_or_warn(&companion);
                }
                Pool::Sqlite(pool)
            }
            DatabaseConfig::Postgres { url, schema } => {
                let base = PgConnectOptions::from_str(url.expose_secret())
                    .context("DATABASE_URL is not a valid PostgreSQL URL")?
                    .log_statements(tracing::log::LevelFilter::Trace);
                let options = base.options([("search_path", schema.as_str())]);
                let checker = health.clone();
                let pool = PgPoolOptions::new()
                    .max_connections(config.db_pool_size)
                    .acquire_timeout(config.db_acquire_timeout)
                    // No ping on every acquire (a round trip per request); connections that may
                    // have been broken by a server restart are pinged instead (see `Health`).
                    .test_before_acquire(false)
                    .before_acquire(move |conn, meta| {
                        let suspect = checker.is_suspect(meta.age);
                        Box::pin(async move {
                            if suspect {
                                conn.ping().await?;
                            }
                            Ok(true)
                        })
                    })
                    .connect_lazy_with(options);
                Pool::Postgres(pool)
            }
        };
        Ok(Self {
            pool,
            health,
            clock: Clock::system(),
            system_user_id: config.system_user_id.as_str().into(),
        })
    }

    /// A database over an existing pool.
    pub fn from_pool(pool: Pool) -> Self {
        Self {
            pool,
            health: Arc::default(),
            clock: Clock::system(),
            system_user_id: crate::config::DEFAULT_SYSTEM_USER_ID.into(),
        }
    }

    /// The same database, stamping rows with the time of `clock`.
    pub fn with_clock(self, clock: Clock) -> Self {
        Self { clock, ..self }
    }

    /// The clock the database stamps rows with.
    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    /// How many connections the pool holds now, how many of them are idle, and how many it may
    /// open at most.
    pub fn pool_stats(&self) -> PoolStats {
        let (size, idle, max) = match &self.pool {
            Pool::Postgres(pool) => (
                pool.size(),
                pool.num_idle(),
                pool.options().get_max_connections(),
            ),
            Pool::Sqlite(pool) => (
                pool.size(),
                pool.num_idle(),
                pool.options().get_max_connections(),
            ),
        };
        let idle = u32::try_from(idle).unwrap_or(u32::MAX).min(size);
        PoolStats {
            in_use: size - idle,
            idle,
            max,
        }
    }

    /// The pool, for code that needs the backend's own connection (tests, tools).
    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    /// Applies the embedded migrations (idempotent). On PostgreSQL it connects on its own,
    /// outside the pool, so that an unreachable server fails at once naming its address and the
    /// cause (the pool would retry a refused connection until its acquire timeout); on that
    /// connection it takes the schema's migration lock (a session advisory lock, so replicas
    /// started together, even on a fresh database, migrate one after the other and the later
    /// ones find the work done), creates the schema named on the search_path (`DB_SCHEMA`) and
    /// runs the migrations.
    pub async fn migrate(&self) -> anyhow::Result<()> {
        match &self.pool {
            Pool::Postgres(pool) => {
                let options = pool.connect_options();
                let target = format!("{}:{}", options.get_host(), options.get_port());
                let mut conn =
                    tokio::time::timeout(CONNECT_TIMEOUT, PgConnection::connect_with(&options))
                        .await
                        .map_err(|_| {
                            anyhow::anyhow!(
                                "cannot connect to PostgreSQL at {target}: no answer within {} s",
                                CONNECT_TIMEOUT.as_secs()
                            )
                        })?
                        .map_err(|err| connect_error(err, &target))?;
                let schema: String = sqlx::query_scalar("SELECT current_setting('search_path')")
                    .fetch_one(&mut conn)
                    .await?;
                let schema = schema.trim_matches('"').to_string();
                anyhow::ensure!(
                    crate::config::is_identifier(&schema),
                    "unexpected search_path {schema:?}"
                );
                // Replicas started together on a fresh database would race in
                // `CREATE SCHEMA IF NOT EXISTS` (PostgreSQL checks, then inserts): one at a time.
                sqlx::query("SELECT pg_advisory_lock($1, hashtext($2))")
                    .bind(MIGRATION_LOCK_CLASS)
                    .bind(&schema)
                    .execute(&mut conn)
                    .await
                    .with_context(|| format!("cannot lock schema {schema} for migration"))?;
                let migrated = self.migrate_locked(&mut conn, &schema).await;
                let _ = sqlx::query("SELECT pg_advisory_unlock($1, hashtext($2))")
                    .bind(MIGRATION_LOCK_CLASS)
                    .bind(&schema)
                    .execute(&mut conn)
                    .await;
                let _ = conn.close().await;
                migrated
            }
            Pool::Sqlite(pool) => SQLITE_MIGRATIONS
                .run(pool)
                .await
                .context("database migration failed"),
        }
    }

    /// Creates `schema` when missing, takes over the original's or checks tms's own, and runs
    /// the migrations, on `conn`, which holds the schema's migration lock.
    async fn migrate_locked(&self, conn: &mut PgConnection, schema: &str) -> anyhow::Result<()> {
        let created = conn
            .execute(AssertSqlSafe(format!(
                "CREATE SCHEMA IF NOT EXISTS \"{schema}\""
            )))
            .await;
        match created {
            Ok(_) => {}
            // Created meanwhile by a process that does not take the lock (an older version).
            Err(sqlx::Error::Database(err)) if err.is_unique_violation() => {}
            Err(err) => {
                return Err(err).with_context(|| format!("cannot create schema {schema}"));
            }
        }
        match adopt::inspect(conn).await? {
            adopt::Found::Empty => {}
            adopt::Found::Tms => adopt::check_system_user(conn, &self.system_user_id).await?,
            adopt::Found::Original => {
                adopt::adopt(conn, &POSTGRES_MIGRATIONS, &self.system_user_id).await?
            }
            adopt::Found::Unknown(tables) => anyhow::bail!(
                "schema {schema} is neither empty, nor tms's, nor the original's: it holds {} \
                 (DB_SCHEMA names the schema to use)",
                tables.join(", ")
            ),
        }
        POSTGRES_MIGRATIONS
            .run(conn)
            .await
            .context("database migration failed")
    }

    pub fn backend(&self) -> Backend {
        match self.pool {
            Pool::Postgres(_) => Backend::Postgres,
            Pool::Sqlite(_) => Backend::Sqlite,
        }
    }

    /// `postgres` or `sqlite`: which database runs, for logs and the readiness answer.
    pub fn backend_name(&self) -> &'static str {
        self.backend().name()
    }

    /// A trivial round trip, for readiness.
    pub async fn ping(&self) -> Result<(), sqlx::Error> {
        self.conn().round_trip().await
    }

    pub async fn close(&self) {
        match &self.pool {
            Pool::Postgres(pool) => pool.close().await,
            Pool::Sqlite(pool) => pool.close().await,
        }
    }

    /// Statements on the pool (each in its own implicit transaction).
    pub fn conn(&self) -> Conn<'_> {
        let target = match &self.pool {
            Pool::Postgres(pool) => Target::PgPool(pool, &self.health),
            Pool::Sqlite(pool) => Target::SqlitePool(pool),
        };
        Conn {
            target,
            clock: &self.clock,
        }
    }

    /// Opens a write transaction. On SQLite it starts with `BEGIN IMMEDIATE`, so that two writers
    /// queue on the lock (within the busy timeout) instead of failing when one upgrades. On
    /// PostgreSQL a `BEGIN` that fails on a broken connection is retried once on another: nothing
    /// has happened yet.
    pub async fn begin(&self) -> Result<Tx, sqlx::Error> {
        let open = match &self.pool {
            Pool::Postgres(pool) => {
                OpenTx::Postgres(with_retry(&self.health, Retry::Always, || pool.begin()).await?)
            }
            Pool::Sqlite(pool) => OpenTx::Sqlite(pool.begin_with("BEGIN IMMEDIATE").await?),
        };
        Ok(Tx {
            open,
            clock: self.clock.clone(),
        })
    }
}

/// The first key of the session advisory lock that serialises the migrations of one schema (the
/// second is the schema's name, hashed), so replicas started together on a fresh database
/// migrate one after the other. Advisory locks with two keys never meet those with one (sqlx's
/// own migration lock, the take-over's).
const MIGRATION_LOCK_CLASS: i32 = 0x746d_736d; // "tmsm"

/// How long start-up waits for PostgreSQL to accept a connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How long an SQLite statement waits for the write lock before it fails as busy (503).
pub const SQLITE_BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// A start-up connection failure, naming the server and the cause.
fn connect_error(err: sqlx::Error, target: &str) -> anyhow::Error {
    let cause = match &err {
        sqlx::Error::Io(io) => io.to_string(),
        other => other.to_string(),
    };
    anyhow::anyhow!("cannot connect to PostgreSQL at {target}: {cause}")
}

/// Whether `err` says the connection it ran on is broken (closed by the server, reset, a server
/// shutting down): the statement may be retried on another connection if it cannot have run.
pub fn is_connection_error(err: &sqlx::Error) -> bool {
    match err {
        sqlx::Error::Io(_) | sqlx::Error::Tls(_) | sqlx::Error::Protocol(_) => true,
        sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => db.code().is_some_and(|code| {
            // 57P01-57P03: admin shutdown, crash shutdown, cannot connect now; 08: connection
            // exception.
            code.starts_with("57P") || code.starts_with("08")
        }),
        _ => false,
    }
}

/// Whether `err` is the database being unavailable or overloaded rather than a fault of the
/// request or of tms: unreachable, restarting, out of connections, busy (SQLite's lock),
/// a serialization failure or deadlock, a statement cancelled by a timeout. Clients get 503
/// with `Retry-After` for these.
pub fn is_transient(err: &sqlx::Error) -> bool {
    if is_connection_error(err) {
        return true;
    }
    match err {
        sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed => true,
        sqlx::Error::Database(db) => db.code().is_some_and(|code| match db
            .try_downcast_ref::<sqlx::sqlite::SqliteError>()
        {
            // SQLITE_BUSY (5) and SQLITE_LOCKED (6), with their extended codes.
            Some(_) => code.parse::<i64>().is_ok_and(|c| matches!(c & 0xff, 5 | 6)),
            // 53: insufficient resources; 40001/40P01: serialization failure, deadlock;
            // 55P03: lock not available; 57014: statement cancelled (timeout).
            None => {
                code.starts_with("53")
                    || matches!(code.as_ref(), "40001" | "40P01" | "55P03" | "57014")
            }
        }),
        _ => false,
    }
}

/// Whether a statement on the PostgreSQL pool is retried once on another connection when its
/// connection turns out to be broken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Retry {
    /// A read, or a `BEGIN`: repeating it changes nothing.
    Always,
    /// A write: it may have committed before its connection broke (even a "terminating
    /// connection" error can arrive after the commit of an implicit transaction), so it is not
    /// repeated; the caller answers 503 and the client decides.
    Never,
}

/// Runs `attempt`; on a broken connection records it in `health` (so the pool checks the other
/// connections that may be broken too) and, as `retry` allows, runs it once more.
async fn with_retry<T, F, Fut>(health: &Health, retry: Retry, attempt: F) -> Result<T, sqlx::Error>
where
    F: Fn() -> Fut,
    Fut: Future<Output = Result<T, sqlx::Error>>,
{
    match attempt().await {
        Err(err) if is_connection_error(&err) => {
            health.mark_broken();
            if retry == Retry::Always {
                tracing::warn!(error = %err, "database connection broken; retrying on another");
                attempt().await
            } else {
                Err(err)
            }
        }
        other => other,
    }
}

/// An open transaction; dropped without `commit` it rolls back.
pub struct Tx {
    open: OpenTx,
    clock: Clock,
}

enum OpenTx {
    Postgres(sqlx::Transaction<'static, sqlx::Postgres>),
    Sqlite(sqlx::Transaction<'static, sqlx::Sqlite>),
}

impl Tx {
    pub fn conn(&mut self) -> Conn<'_> {
        let target = match &mut self.open {
            OpenTx::Postgres(tx) => Target::PgTx(tx),
            OpenTx::Sqlite(tx) => Target::SqliteTx(tx),
        };
        Conn {
            target,
            clock: &self.clock,
        }
    }

    /// Commits — inside a request holding an `Idempotency-Key` claim, marking it committed in
    /// this same transaction first ([`idempotency::mark_running_claim`]).
    pub async fn commit(mut self) -> Result<(), sqlx::Error> {
        idempotency::mark_running_claim(&mut self.conn()).await?;
        match self.open {
            OpenTx::Postgres(tx) => tx.commit().await,
            OpenTx::Sqlite(tx) => tx.commit().await,
        }
    }
}

/// Where statements run: the pool or an open transaction. Every table module takes one, so the
/// same function serves a single statement and a multi-statement transaction.
///
/// On the PostgreSQL pool a read that fails on a broken connection is retried once on another
/// connection (see [`Health`]); a write is not (it may have committed). Inside a transaction
/// nothing is retried: the transaction is lost with its connection and the caller answers 503.
pub struct Conn<'c> {
    target: Target<'c>,
    clock: &'c Clock,
}

enum Target<'c> {
    PgPool(&'c PgPool, &'c Health),
    SqlitePool(&'c SqlitePool),
    PgTx(&'c mut sqlx::PgConnection),
    SqliteTx(&'c mut sqlx::SqliteConnection),
}

/// Evaluates `$run` (an expression using the executor `$ex` and the SQL/arguments it builds for
/// `$backend`) on the executor of `$conn`; on the PostgreSQL pool under the `$retry` policy.
macro_rules! on_conn {
    ($conn:expr, $retry:expr, |$ex:ident, $backend:ident| pg: $pg:expr, sqlite: $lite:expr) => {
        match &mut $conn.target {
            Target::PgPool(pool, health) => {
                let $backend = Backend::Postgres;
                with_retry(health, $retry, || {
                    let $ex = &**pool;
                    $pg
                })
                .await
            }
            Target::PgTx(conn) => {
                let $backend = Backend::Postgres;
                let $ex = &mut **conn;
                $pg.await
            }
            Target::SqlitePool(pool) => {
                let $backend = Backend::Sqlite;
                let $ex = &**pool;
                $lite.await
            }
            Target::SqliteTx(conn) => {
                let $backend = Backend::Sqlite;
                let $ex = &mut **conn;
                $lite.await
            }
        }
    };
}

/// Reads the rows of `rows` one at a time into wire objects, so the driver's rows are never all
/// held at once beside their decoded copies.
async fn decode<'e, R: 'e>(
    rows: impl futures_util::Stream<Item = Result<R, sqlx::Error>> + 'e,
    fields: &[&'static Field],
    column: fn(&R, &Field) -> Result<Value, sqlx::Error>,
) -> Result<Vec<Object>, sqlx::Error> {
    use futures_util::TryStreamExt;
    rows.map_ok(|row| {
        let mut object = Object::with_capacity(fields.len());
        for f in fields {
            object.insert(f.name.to_string(), column(&row, f)?);
        }
        Ok(object)
    })
    .and_then(std::future::ready)
    .try_collect()
    .await
}

fn build<S: SqlxBinder>(stmt: &S, backend: Backend) -> (String, sea_query_sqlx::SqlxValues) {
    match backend {
        Backend::Postgres => stmt.build_sqlx(PostgresQueryBuilder),
        Backend::Sqlite => stmt.build_sqlx(SqliteQueryBuilder),
    }
}

impl Conn<'_> {
    /// The span of a statement (`docs/operations.md`, "Traces"): its kind and table, from the
    /// text `sql` renders only when traces are on; never its bound values.
    fn span(&self, sql: impl FnOnce(Backend) -> String) -> tracing::Span {
        if !crate::telemetry::enabled() {
            return tracing::Span::none();
        }
        let backend = self.backend();
        let system = match backend {
            Backend::Postgres => "postgresql",
            Backend::Sqlite => "sqlite",
        };
        crate::telemetry::sql_span(system, &sql(backend))
    }

    pub fn backend(&self) -> Backend {
        match self.target {
            Target::PgPool(..) | Target::PgTx(_) => Backend::Postgres,
            Target::SqlitePool(_) | Target::SqliteTx(_) => Backend::Sqlite,
        }
    }

    /// Now, on the database's clock, to the millisecond.
    pub fn now(&self) -> chrono::DateTime<chrono::Utc> {
        self.clock.now()
    }

    /// Runs `work` in one transaction: the one this connection is in, or, on the pool, a new
    /// one (`BEGIN IMMEDIATE` on SQLite), committed when `work` succeeds and rolled back when it
    /// fails.
    pub(crate) async fn atomically<T, E: From<sqlx::Error>>(
        &mut self,
        work: impl AsyncFnOnce(&mut Conn<'_>) -> Result<T, E>,
    ) -> Result<T, E> {
        let clock = self.clock;
        match &mut self.target {
            Target::PgPool(pool, health) => {
                let mut tx = with_retry(health, Retry::Always, || pool.begin()).await?;
                let mut conn = Conn {
                    target: Target::PgTx(&mut tx),
                    clock,
                };
                let done = work(&mut conn).await?;
                idempotency::mark_running_claim(&mut conn).await?;
                tx.commit().await?;
                Ok(done)
            }
            Target::SqlitePool(pool) => {
                let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
                let mut conn = Conn {
                    target: Target::SqliteTx(&mut tx),
                    clock,
                };
                let done = work(&mut conn).await?;
                idempotency::mark_running_claim(&mut conn).await?;
                tx.commit().await?;
                Ok(done)
            }
            Target::PgTx(conn) => {
                work(&mut Conn {
                    target: Target::PgTx(conn),
                    clock,
                })
                .await
            }
            Target::SqliteTx(conn) => {
                work(&mut Conn {
                    target: Target::SqliteTx(conn),
                    clock,
                })
                .await
            }
        }
    }

    /// Runs a SELECT whose result columns are `fields` (in that order) and returns each row as
    /// its wire object.
    pub async fn fetch_objects(
        &mut self,
        stmt: &SelectStatement,
        fields: &[&'static Field],
    ) -> Result<Vec<Object>, sqlx::Error> {
        let span = self.span(|backend| build(stmt, backend).0);
        async {
            on_conn!(self, Retry::Always, |ex, backend|
                pg: async move {
                    let (sql, args) = build(stmt, backend);
                    decode(sqlx::query_with(AssertSqlSafe(sql), args).fetch(ex), fields, values::pg_column).await
                },
                sqlite: async move {
                    let (sql, args) = build(stmt, backend);
                    decode(sqlx::query_with(AssertSqlSafe(sql), args).fetch(ex), fields, values::sqlite_column).await
                }
            )
        }
        .instrument(span)
        .await
    }

    /// Runs an INSERT, UPDATE or DELETE with `RETURNING` the columns of `fields` (in that
    /// order) and returns each row it wrote as its wire object. Never retried.
    pub async fn fetch_written<S: SqlxBinder>(
        &mut self,
        stmt: &S,
        fields: &[&'static Field],
    ) -> Result<Vec<Object>, sqlx::Error> {
        let span = self.span(|backend| build(stmt, backend).0);
        async {
            on_conn!(self, Retry::Never, |ex, backend|
                pg: async move {
                    let (sql, args) = build(stmt, backend);
                    decode(sqlx::query_with(AssertSqlSafe(sql), args).fetch(ex), fields, values::pg_column).await
                },
                sqlite: async move {
                    let (sql, args) = build(stmt, backend);
                    decode(sqlx::query_with(AssertSqlSafe(sql), args).fetch(ex), fields, values::sqlite_column).await
                }
            )
        }
        .instrument(span)
        .await
    }

    /// Runs a SELECT of one integer (a count).
    pub async fn fetch_count(&mut self, stmt: &SelectStatement) -> Result<i64, sqlx::Error> {
        let span = self.span(|backend| build(stmt, backend).0);
        async {
            on_conn!(self, Retry::Always, |ex, backend|
                pg: async move {
                    let (sql, args) = build(stmt, backend);
                    sqlx::query_scalar_with(AssertSqlSafe(sql), args).fetch_one(ex).await
                },
                sqlite: async move {
                    let (sql, args) = build(stmt, backend);
                    sqlx::query_scalar_with(AssertSqlSafe(sql), args).fetch_one(ex).await
                }
            )
        }
        .instrument(span)
        .await
    }

    /// `SELECT 1`.
    async fn round_trip(&mut self) -> Result<(), sqlx::Error> {
        on_conn!(self, Retry::Always, |ex, _backend|
            pg: async move { ex.execute("SELECT 1").await.map(drop) },
            sqlite: async move { ex.execute("SELECT 1").await.map(drop) }
        )
    }

    /// Runs an INSERT, UPDATE or DELETE and returns the number of rows it changed.
    pub async fn execute<S: SqlxBinder>(&mut self, stmt: &S) -> Result<u64, sqlx::Error> {
        let span = self.span(|backend| build(stmt, backend).0);
        async {
            on_conn!(self, Retry::Never, |ex, backend|
                pg: async move {
                    let (sql, args) = build(stmt, backend);
                    Ok(sqlx::query_with(AssertSqlSafe(sql), args).execute(ex).await?.rows_affected())
                },
                sqlite: async move {
                    let (sql, args) = build(stmt, backend);
                    Ok(sqlx::query_with(AssertSqlSafe(sql), args).execute(ex).await?.rows_affected())
                }
            )
        }
        .instrument(span)
        .await
    }

    /// Runs a hand-written statement (`$1`, `$2`, … placeholders, which SQLite accepts too) and
    /// returns the number of rows it changed.
    pub async fn raw_execute(
        &mut self,
        sql: &'static str,
        params: &[Param<'_>],
    ) -> Result<u64, sqlx::Error> {
        let span = self.span(|_| sql.to_string());
        async {
            on_conn!(self, Retry::Never, |ex, backend|
                pg: async move {
                    Ok(sqlx::query_with(sql, raw::arguments(backend, params)).execute(ex).await?.rows_affected())
                },
                sqlite: async move {
                    Ok(sqlx::query_with(sql, raw::arguments(backend, params)).execute(ex).await?.rows_affected())
                }
            )
        }
        .instrument(span)
        .await
    }

    /// Runs a hand-written statement that returns rows: a SELECT, or, when `writes` is true, a
    /// write with `RETURNING` (not retried on a broken connection).
    pub async fn raw_fetch(
        &mut self,
        sql: &'static str,
        params: &[Param<'_>],
        writes: bool,
    ) -> Result<Vec<RawRow>, sqlx::Error> {
        let retry = if writes { Retry::Never } else { Retry::Always };
        let span = self.span(|_| sql.to_string());
        async {
            on_conn!(self, retry, |ex, backend|
                pg: async move {
                    let rows = sqlx::query_with(sql, raw::arguments(backend, params)).fetch_all(ex).await?;
                    Ok(rows.into_iter().map(RawRow::Postgres).collect())
                },
                sqlite: async move {
                    let rows = sqlx::query_with(sql, raw::arguments(backend, params)).fetch_all(ex).await?;
                    Ok(rows.into_iter().map(RawRow::Sqlite).collect())
                }
            )
        }
        .instrument(span)
        .await
    }

    /// [`Conn::raw_fetch`] for at most one row.
    pub async fn raw_fetch_optional(
        &mut self,
        sql: &'static str,
        params: &[Param<'_>],
        writes: bool,
    ) -> Result<Option<RawRow>, sqlx::Error> {
        Ok(self
            .raw_fetch(sql, params, writes)
            .await?
            .into_iter()
            .next())
    }
}
