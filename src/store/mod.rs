//! Database access: the pool for the database chosen at start-up, embedded migrations, and the
//! few primitives every table module uses (fetch rows as wire objects, execute, count). Statements
//! are built once with sea-query and rendered for the backend in use; no handler ever branches on
//! the database kind.

pub mod crud;
pub mod filter;
pub mod leads;
pub mod values;

use std::str::FromStr;
use std::time::Duration;

use anyhow::Context;
use sea_query::{PostgresQueryBuilder, SelectStatement, SqliteQueryBuilder};
use sea_query_sqlx::SqlxBinder;
use secrecy::ExposeSecret;
use serde_json::{Map, Value};
use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{AssertSqlSafe, ConnectOptions, Executor};

use crate::config::{Config, DatabaseConfig};
use crate::model::Field;
pub use values::Backend;

static POSTGRES_MIGRATIONS: Migrator = sqlx::migrate!("./migrations/postgres");
static SQLITE_MIGRATIONS: Migrator = sqlx::migrate!("./migrations/sqlite");

/// The connection pool of the database in use.
#[derive(Clone, Debug)]
pub enum Db {
    Postgres(PgPool),
    Sqlite(SqlitePool),
}

/// A row read as its wire object (`{"id": …, "name": …}`).
pub type Object = Map<String, Value>;

impl Db {
    /// Opens the pool (creating the SQLite file and its directory, or the PostgreSQL schema,
    /// when missing). Does not migrate.
    pub async fn connect(config: &Config) -> anyhow::Result<Self> {
        match &config.database {
            DatabaseConfig::Sqlite { path } => {
                if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                    std::fs::create_dir_all(dir)
                        .with_context(|| format!("cannot create directory {}", dir.display()))?;
                }
                let options = SqliteConnectOptions::new()
                    .filename(path)
                    .create_if_missing(true)
                    .journal_mode(SqliteJournalMode::Wal)
                    .synchronous(SqliteSynchronous::Normal)
                    .foreign_keys(true)
                    .busy_timeout(Duration::from_secs(5))
                    // LIKE is case-sensitive, as on PostgreSQL; ILIKE is lower() LIKE lower().
                    .pragma("case_sensitive_like", "ON")
                    .log_statements(tracing::log::LevelFilter::Trace);
                let pool = SqlitePoolOptions::new()
                    .max_connections(config.db_pool_size.min(8))
                    .test_before_acquire(false)
                    .acquire_timeout(Duration::from_secs(10))
                    .connect_with(options)
                    .await
                    .with_context(|| format!("cannot open SQLite database {}", path.display()))?;
                Ok(Self::Sqlite(pool))
            }
            DatabaseConfig::Postgres { url, schema } => {
                let base = PgConnectOptions::from_str(url.expose_secret())
                    .context("DATABASE_URL is not a valid PostgreSQL URL")?
                    .log_statements(tracing::log::LevelFilter::Trace);
                let options = base.options([("search_path", schema.as_str())]);
                let pool = PgPoolOptions::new()
                    .max_connections(config.db_pool_size)
                    .acquire_timeout(Duration::from_secs(10))
                    // sqlx already pings every connection when it returns to the pool; a second
                    // ping on acquire would add a round trip to every request.
                    .test_before_acquire(false)
                    .connect_with(options)
                    .await
                    .context("cannot connect to PostgreSQL")?;
                Ok(Self::Postgres(pool))
            }
        }
    }

    /// Applies the embedded migrations (idempotent; safe with many replicas on PostgreSQL,
    /// which takes an advisory lock). On PostgreSQL it first creates the schema named on the
    /// connections' search_path (`DB_SCHEMA`), on the same connection as the migrations, so a
    /// start-up opens one connection, not two.
    pub async fn migrate(&self) -> anyhow::Result<()> {
        match self {
            Self::Postgres(pool) => {
                let mut conn = pool
                    .acquire()
                    .await
                    .context("cannot connect to PostgreSQL")?;
                let schema: String = sqlx::query_scalar("SELECT current_setting('search_path')")
                    .fetch_one(&mut *conn)
                    .await?;
                let schema = schema.trim_matches('"');
                anyhow::ensure!(
                    crate::config::is_identifier(schema),
                    "unexpected search_path {schema:?}"
                );
                conn.execute(AssertSqlSafe(format!(
                    "CREATE SCHEMA IF NOT EXISTS \"{schema}\""
                )))
                .await
                .with_context(|| format!("cannot create schema {schema}"))?;
                POSTGRES_MIGRATIONS.run(&mut *conn).await
            }
            Self::Sqlite(pool) => SQLITE_MIGRATIONS.run(pool).await,
        }
        .context("database migration failed")
    }

    pub fn backend(&self) -> Backend {
        match self {
            Self::Postgres(_) => Backend::Postgres,
            Self::Sqlite(_) => Backend::Sqlite,
        }
    }

    /// A trivial round trip, for readiness.
    pub async fn ping(&self) -> Result<(), sqlx::Error> {
        match self {
            Self::Postgres(pool) => pool.execute("SELECT 1").await.map(drop),
            Self::Sqlite(pool) => pool.execute("SELECT 1").await.map(drop),
        }
    }

    pub async fn close(&self) {
        match self {
            Self::Postgres(pool) => pool.close().await,
            Self::Sqlite(pool) => pool.close().await,
        }
    }

    /// Statements on the pool (each in its own implicit transaction).
    pub fn conn(&self) -> Conn<'_> {
        match self {
            Self::Postgres(pool) => Conn::PgPool(pool),
            Self::Sqlite(pool) => Conn::SqlitePool(pool),
        }
    }

    /// Opens a write transaction. On SQLite it starts with `BEGIN IMMEDIATE`, so that two writers
    /// queue on the lock (within `busy_timeout`) instead of failing when one upgrades.
    pub async fn begin(&self) -> Result<Tx, sqlx::Error> {
        Ok(match self {
            Self::Postgres(pool) => Tx::Postgres(pool.begin().await?),
            Self::Sqlite(pool) => Tx::Sqlite(pool.begin_with("BEGIN IMMEDIATE").await?),
        })
    }
}

/// An open transaction; dropped without `commit` it rolls back.
pub enum Tx {
    Postgres(sqlx::Transaction<'static, sqlx::Postgres>),
    Sqlite(sqlx::Transaction<'static, sqlx::Sqlite>),
}

impl Tx {
    pub fn conn(&mut self) -> Conn<'_> {
        match self {
            Self::Postgres(tx) => Conn::PgTx(tx),
            Self::Sqlite(tx) => Conn::SqliteTx(tx),
        }
    }

    pub async fn commit(self) -> Result<(), sqlx::Error> {
        match self {
            Self::Postgres(tx) => tx.commit().await,
            Self::Sqlite(tx) => tx.commit().await,
        }
    }
}

/// Where statements run: the pool or an open transaction. Every table module takes one, so the
/// same function serves a single statement and a multi-statement transaction.
pub enum Conn<'c> {
    PgPool(&'c PgPool),
    SqlitePool(&'c SqlitePool),
    PgTx(&'c mut sqlx::PgConnection),
    SqliteTx(&'c mut sqlx::SqliteConnection),
}

/// Renders `$stmt` for the backend of `$conn` and evaluates the backend's body with the SQL text,
/// the bound arguments and the executor in scope.
macro_rules! on_conn {
    ($conn:expr, $stmt:expr, |$sql:ident, $args:ident, $ex:ident| pg: $pg:expr, sqlite: $lite:expr) => {
        match $conn {
            Conn::PgPool(pool) => {
                let ($sql, $args) = $stmt.build_sqlx(PostgresQueryBuilder);
                let $ex = &**pool;
                $pg
            }
            Conn::PgTx(conn) => {
                let ($sql, $args) = $stmt.build_sqlx(PostgresQueryBuilder);
                let $ex = &mut **conn;
                $pg
            }
            Conn::SqlitePool(pool) => {
                let ($sql, $args) = $stmt.build_sqlx(SqliteQueryBuilder);
                let $ex = &**pool;
                $lite
            }
            Conn::SqliteTx(conn) => {
                let ($sql, $args) = $stmt.build_sqlx(SqliteQueryBuilder);
                let $ex = &mut **conn;
                $lite
            }
        }
    };
}

fn decode<R>(
    rows: &[R],
    fields: &[&'static Field],
    column: fn(&R, &Field) -> Result<Value, sqlx::Error>,
) -> Result<Vec<Object>, sqlx::Error> {
    rows.iter()
        .map(|row| {
            fields
                .iter()
                .map(|f| Ok((f.name.to_string(), column(row, f)?)))
                .collect()
        })
        .collect()
}

impl Conn<'_> {
    pub fn backend(&self) -> Backend {
        match self {
            Self::PgPool(_) | Self::PgTx(_) => Backend::Postgres,
            Self::SqlitePool(_) | Self::SqliteTx(_) => Backend::Sqlite,
        }
    }

    /// Runs a SELECT whose result columns are `fields` (in that order) and returns each row as
    /// its wire object.
    pub async fn fetch_objects(
        &mut self,
        stmt: &SelectStatement,
        fields: &[&'static Field],
    ) -> Result<Vec<Object>, sqlx::Error> {
        on_conn!(self, stmt, |sql, args, ex|
            pg: decode(
                &sqlx::query_with(AssertSqlSafe(sql), args).fetch_all(ex).await?,
                fields,
                values::pg_column,
            ),
            sqlite: decode(
                &sqlx::query_with(AssertSqlSafe(sql), args).fetch_all(ex).await?,
                fields,
                values::sqlite_column,
            )
        )
    }

    /// Runs a SELECT of one integer (a count).
    pub async fn fetch_count(&mut self, stmt: &SelectStatement) -> Result<i64, sqlx::Error> {
        on_conn!(self, stmt, |sql, args, ex|
            pg: sqlx::query_scalar_with(AssertSqlSafe(sql), args).fetch_one(ex).await,
            sqlite: sqlx::query_scalar_with(AssertSqlSafe(sql), args).fetch_one(ex).await
        )
    }

    /// Runs an INSERT, UPDATE or DELETE and returns the number of rows it changed.
    pub async fn execute<S: SqlxBinder>(&mut self, stmt: &S) -> Result<u64, sqlx::Error> {
        on_conn!(self, stmt, |sql, args, ex|
            pg: Ok(sqlx::query_with(AssertSqlSafe(sql), args).execute(ex).await?.rows_affected()),
            sqlite: Ok(sqlx::query_with(AssertSqlSafe(sql), args).execute(ex).await?.rows_affected())
        )
    }
}
