//! The audit trail's table (`audit_logs`, `docs/audit.md`): records written in the caller's
//! transaction, read with a LoopBack filter, and pruned by age. What a record holds is decided
//! by `audit`.

use std::sync::atomic::{AtomicU64, Ordering};

use chrono::{DateTime, Utc};
use sea_query::{Alias, Expr, ExprTrait, Order, Query};
use serde_json::Value;
use uuid::Uuid;

use super::filter::{self, Filter, Where};
use super::values::{self, Backend};
use super::{Conn, Object};
use crate::audit::Entry;
use crate::model::AUDIT_LOGS;

/// Records per INSERT statement: 11 values each, far below both databases' parameter limits.
const BATCH: usize = 200;

/// Records written since the process started (the transactions that wrote them may have rolled
/// back since): `tms_audit_records_written_total` in `GET /metrics`.
static WRITTEN: AtomicU64 = AtomicU64::new(0);

/// How many records this process has written.
pub fn written() -> u64 {
    WRITTEN.load(Ordering::Relaxed)
}

fn col(name: &str) -> Alias {
    Alias::new(name)
}

fn text(s: Option<&str>) -> Expr {
    Expr::val(sea_query::Value::String(s.map(str::to_string)))
}

fn json(backend: Backend, v: Option<&Value>) -> Expr {
    let value = match (backend, v) {
        (Backend::Postgres, v) => sea_query::Value::Json(v.cloned().map(Box::new)),
        (Backend::Sqlite, v) => sea_query::Value::String(v.map(Value::to_string)),
    };
    Expr::val(value)
}

fn timestamp(backend: Backend, t: DateTime<Utc>) -> Expr {
    Expr::val(match backend {
        Backend::Postgres => sea_query::Value::ChronoDateTimeUtc(Some(t)),
        Backend::Sqlite => sea_query::Value::String(Some(values::format_timestamp(&t))),
    })
}

fn uuid(backend: Backend, id: Option<Uuid>) -> Expr {
    match id {
        Some(id) => Expr::val(values::uuid_value(backend, id)),
        None => Expr::cust("NULL"),
    }
}

/// Writes `entries` in the transaction `conn` is in, stamped with the database's clock.
pub async fn record(conn: &mut Conn<'_>, entries: &[Entry]) -> Result<(), sqlx::Error> {
    if entries.is_empty() {
        return Ok(());
    }
    let backend = conn.backend();
    let now = conn.now();
    for batch in entries.chunks(BATCH) {
        let mut stmt = Query::insert();
        stmt.into_table(col(AUDIT_LOGS.table))
            .columns(AUDIT_LOGS.fields.iter().map(|f| col(f.column)));
        for e in batch {
            stmt.values_panic([
                uuid(backend, Some(Uuid::new_v4())),
                timestamp(backend, now),
                text(Some(e.who.kind.name())),
                text(Some(&e.who.id)),
                text(e.who.tenant.as_deref()),
                text(Some(e.entity)),
                text(Some(&e.entity_id)),
                text(Some(e.action)),
                uuid(backend, e.tenant_id),
                json(backend, e.before.as_ref()),
                json(backend, e.after.as_ref()),
            ]);
        }
        conn.execute(&stmt).await?;
    }
    WRITTEN.fetch_add(entries.len() as u64, Ordering::Relaxed);
    Ok(())
}

/// Records matching `filter`, newest first unless it orders them.
pub async fn find(conn: &mut Conn<'_>, filter: &Filter) -> Result<Vec<Object>, sqlx::Error> {
    let stmt = find_statement(filter, conn.backend());
    let fields: Vec<_> = AUDIT_LOGS.fields.iter().collect();
    let mut rows = conn.fetch_objects(&stmt, &fields).await?;
    if let Some(wanted) = &filter.fields {
        for row in &mut rows {
            row.retain(|name, _| wanted.iter().any(|f| f.name == name));
        }
    }
    Ok(rows)
}

/// The SELECT behind [`find`].
pub fn find_statement(filter: &Filter, backend: Backend) -> sea_query::SelectStatement {
    let mut stmt = Query::select();
    stmt.columns(AUDIT_LOGS.fields.iter().map(|f| col(f.column)))
        .from(col(AUDIT_LOGS.table));
    filter::apply(filter, &mut stmt, backend);
    if filter.order.is_empty() {
        stmt.order_by(col("occurred_on"), Order::Desc)
            .order_by(col("id"), Order::Desc);
    }
    stmt
}

/// How many records match `where_`.
pub async fn count(conn: &mut Conn<'_>, where_: Option<&Where>) -> Result<i64, sqlx::Error> {
    let mut stmt = Query::select();
    stmt.expr(Expr::cust("COUNT(*)"))
        .from(col(AUDIT_LOGS.table));
    if let Some(w) = where_ {
        stmt.cond_where(filter::condition(w, conn.backend()));
    }
    conn.fetch_count(&stmt).await
}

/// Deletes the records that occurred before `cutoff`; returns how many.
pub async fn prune(conn: &mut Conn<'_>, cutoff: DateTime<Utc>) -> Result<u64, sqlx::Error> {
    let backend = conn.backend();
    let mut stmt = Query::delete();
    stmt.from_table(col(AUDIT_LOGS.table))
        .and_where(Expr::col(col("occurred_on")).lt(timestamp(backend, cutoff)));
    conn.execute(&stmt).await
}
