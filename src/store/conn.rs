//! Transactions and connections: [`Tx`] (committing marks a request's `Idempotency-Key`) and
//! [`Conn`], where every statement runs — on the pool or in a transaction, both databases, each
//! statement in its own span.

use sea_query::{PostgresQueryBuilder, SelectStatement, SqliteQueryBuilder};
use sea_query_sqlx::SqlxBinder;
use serde_json::Value;
use sqlx::postgres::PgPool;
use sqlx::sqlite::SqlitePool;
use sqlx::{AssertSqlSafe, Executor};
use tracing::Instrument;

use super::values::{self, Backend};
use super::{Health, Object, Param, RawRow, Retry, Turn, WriteQueue, idempotency, raw, with_retry};
use crate::clock::Clock;
use crate::model::Field;

/// An open transaction; dropped without `commit` it rolls back.
pub struct Tx {
    pub(super) open: OpenTx,
    pub(super) clock: Clock,
    /// On SQLite, this writer's turn ([`WriteQueue`]), given up when the transaction ends.
    pub(super) _turn: Option<Turn>,
}

pub(super) enum OpenTx {
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
    pub(super) target: Target<'c>,
    pub(super) clock: &'c Clock,
}

pub(super) enum Target<'c> {
    PgPool(&'c PgPool, &'c Health),
    SqlitePool(&'c SqlitePool, &'c WriteQueue),
    PgTx(&'c mut sqlx::PgConnection),
    SqliteTx(&'c mut sqlx::SqliteConnection),
}

/// Evaluates `$run` (an expression using the executor `$ex` and the SQL/arguments it builds for
/// `$backend`) on the executor of `$conn`; on the PostgreSQL pool under the `$retry` policy.
macro_rules! on_conn {
    // The same, in the span of the statement `$sql` makes (a closure of the backend).
    (traced $sql:expr, $conn:expr, $retry:expr, |$ex:ident, $backend:ident| pg: $pg:expr, sqlite: $lite:expr) => {{
        let span = $conn.span($sql);
        async { on_conn!($conn, $retry, |$ex, $backend| pg: $pg, sqlite: $lite) }
            .instrument(span)
            .await
    }};
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
            Target::SqlitePool(pool, writer) => {
                let $backend = Backend::Sqlite;
                // A write outside a transaction (never retried) waits for the writer's turn too.
                let _turn = match $retry {
                    Retry::Never => Some(writer.turn().await?),
                    Retry::Always => None,
                };
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
            Target::SqlitePool(..) | Target::SqliteTx(_) => Backend::Sqlite,
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
            Target::SqlitePool(pool, writer) => {
                let _turn = writer.turn().await?;
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
        self.fetch_decoded(stmt, fields, Retry::Always).await
    }

    /// Runs an INSERT, UPDATE or DELETE with `RETURNING` the columns of `fields` (in that
    /// order) and returns each row it wrote as its wire object. Never retried.
    pub async fn fetch_written<S: SqlxBinder>(
        &mut self,
        stmt: &S,
        fields: &[&'static Field],
    ) -> Result<Vec<Object>, sqlx::Error> {
        self.fetch_decoded(stmt, fields, Retry::Never).await
    }

    /// Runs `stmt`, whose result columns are `fields`, under `retry`; its rows as wire objects.
    async fn fetch_decoded<S: SqlxBinder>(
        &mut self,
        stmt: &S,
        fields: &[&'static Field],
        retry: Retry,
    ) -> Result<Vec<Object>, sqlx::Error> {
        on_conn!(traced |backend| build(stmt, backend).0, self, retry, |ex, backend|
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

    /// Runs a SELECT of one integer (a count).
    pub async fn fetch_count(&mut self, stmt: &SelectStatement) -> Result<i64, sqlx::Error> {
        on_conn!(traced |backend| build(stmt, backend).0, self, Retry::Always, |ex, backend|
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

    /// `SELECT 1`.
    pub(super) async fn round_trip(&mut self) -> Result<(), sqlx::Error> {
        on_conn!(self, Retry::Always, |ex, _backend|
            pg: async move { ex.execute("SELECT 1").await.map(drop) },
            sqlite: async move { ex.execute("SELECT 1").await.map(drop) }
        )
    }

    /// Runs an INSERT, UPDATE or DELETE and returns the number of rows it changed.
    pub async fn execute<S: SqlxBinder>(&mut self, stmt: &S) -> Result<u64, sqlx::Error> {
        on_conn!(traced |backend| build(stmt, backend).0, self, Retry::Never, |ex, backend|
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

    /// Runs a hand-written statement (`$1`, `$2`, … placeholders, which SQLite accepts too) and
    /// returns the number of rows it changed.
    pub async fn raw_execute(
        &mut self,
        sql: &'static str,
        params: &[Param<'_>],
    ) -> Result<u64, sqlx::Error> {
        on_conn!(traced |_| sql.to_string(), self, Retry::Never, |ex, backend|
            pg: async move {
                Ok(sqlx::query_with(sql, raw::arguments(backend, params)).execute(ex).await?.rows_affected())
            },
            sqlite: async move {
                Ok(sqlx::query_with(sql, raw::arguments(backend, params)).execute(ex).await?.rows_affected())
            }
        )
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
        on_conn!(traced |_| sql.to_string(), self, retry, |ex, backend|
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
