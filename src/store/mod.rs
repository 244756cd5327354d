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

mod conn;

use std::future::Future;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use secrecy::ExposeSecret;
use serde_json::{Map, Value};
use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool, PgPoolOptions};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{AssertSqlSafe, ConnectOptions, Connection, Executor};

use crate::clock::Clock;
use crate::config::{Config, DatabaseConfig};
use crate::files;
pub use conn::{Conn, Tx};
use conn::{OpenTx, Target};
pub use raw::{Param, RawRow};
pub use values::Backend;

static POSTGRES_MIGRATIONS: Migrator = sqlx::migrate!("./migrations/postgres");
static SQLITE_MIGRATIONS: Migrator = sqlx::migrate!("./migrations/sqlite");

/// The database in use: its pool, and on PostgreSQL what the pool has learnt about broken
/// connections (see [`Health`]); on SQLite, the queue of its one writer ([`WriteQueue`]).
#[derive(Clone, Debug)]
pub struct Db {
    pool: Pool,
    health: Arc<Health>,
    writer: WriteQueue,
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
            writer: WriteQueue::default(),
            clock: Clock::system(),
            system_user_id: config.system_user_id.as_str().into(),
        })
    }

    /// A database over an existing pool.
    pub fn from_pool(pool: Pool) -> Self {
        Self {
            pool,
            health: Arc::default(),
            writer: WriteQueue::default(),
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
            Pool::Sqlite(pool) => Target::SqlitePool(pool, &self.writer),
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
        let (open, turn) = match &self.pool {
            Pool::Postgres(pool) => (
                OpenTx::Postgres(with_retry(&self.health, Retry::Always, || pool.begin()).await?),
                None,
            ),
            Pool::Sqlite(pool) => {
                let turn = self.writer.turn().await?;
                (
                    OpenTx::Sqlite(pool.begin_with("BEGIN IMMEDIATE").await?),
                    Some(turn),
                )
            }
        };
        Ok(Tx {
            open,
            clock: self.clock.clone(),
            _turn: turn,
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

/// SQLite's one writer, queued in the process: a write transaction waits for its turn here,
/// before it takes a connection, and keeps it until it ends. Writers then start in the order
/// they came, each as soon as the one before commits, instead of polling SQLite's lock with the
/// busy handler's growing sleeps (up to 100 ms each), which made the tail of the writes'
/// latency hundreds of milliseconds at 8 concurrent writers (docs/PERFORMANCE.md, "Embedded
/// mode"), and left waiting writers holding the pool's connections. A write outside a
/// transaction (a statement on the pool that is never retried) queues too; another process
/// writing the file, or a rollback still under way, meets SQLite's lock with the busy timeout.
#[derive(Debug, Default, Clone)]
pub(crate) struct WriteQueue(Arc<tokio::sync::Mutex<()>>);

/// A writer's turn: the next waits until it is dropped.
pub(crate) type Turn = tokio::sync::OwnedMutexGuard<()>;

impl WriteQueue {
    /// Waits for the turn, as long as SQLite's busy timeout; after it, the pool's time-out error
    /// (503, as a busy database).
    pub(crate) async fn turn(&self) -> Result<Turn, sqlx::Error> {
        tokio::time::timeout(SQLITE_BUSY_TIMEOUT, self.0.clone().lock_owned())
            .await
            .map_err(|_| sqlx::Error::PoolTimedOut)
    }
}

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
