//! Generic persistence for every resource described in `model`: create, find with a LoopBack
//! filter (including relations), count, update, replace, bulk update and soft delete. Soft-deleted
//! rows are invisible to all of it. Values arrive as validated wire objects.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use std::future::Future;
use std::pin::Pin;

use sea_query::{
    Alias, Condition, Expr, ExprTrait, LockType, Order, Query, SelectStatement, UpdateStatement,
    WindowStatement,
};
use serde_json::{Map, Value};
use uuid::Uuid;

use super::audit as store_audit;
use super::filter::{self, Filter, Where};
use super::values::{self, Backend};
use super::{Conn, Object};
use crate::audit::{self, Who};
use crate::model::{self, Cardinality, Field, Relation, Resource};

/// What can go wrong when writing, beyond a plain database error.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// A unique index refused the row; the text names the index (PostgreSQL) or the columns
    /// (SQLite), e.g. `tenants_key_unique` / `tenants.key`.
    #[error("unique constraint violated: {0}")]
    Conflict(String),
    /// A value the database column cannot take: longer than a `varchar(n)` of the original's
    /// schema, or not a UUID for a `uuid` column there (22001, 22P02, 42804).
    #[error("{0}")]
    Unfit(String),
    /// A referenced row (`tenantId`, `leadId`, `addressId`) does not exist.
    #[error("{field} {id} does not exist")]
    MissingReference { field: &'static str, id: String },
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}

/// Whose rows a caller may see and change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// An administrator: every live row.
    All,
    /// A lead token: the lead itself, the tenant onboarded from it, and that tenant's rows.
    Lead(Uuid),
}

/// The restriction `scope` puts on `resource`, if any.
fn scope_condition(resource: &Resource, scope: Scope, backend: Backend) -> Option<Expr> {
    let Scope::Lead(lead) = scope else {
        return None;
    };
    let lead = uuid_value(backend, lead);
    if std::ptr::eq(resource, &model::LEADS) {
        return Some(Expr::col(col("id")).eq(lead));
    }
    if std::ptr::eq(resource, &model::TENANTS) {
        return Some(Expr::col(col("lead_id")).eq(lead));
    }
    if resource.fields.iter().any(|f| f.column == "tenant_id") {
        let mut tenants = Query::select();
        tenants
            .column(col("id"))
            .from(table(&model::TENANTS))
            .and_where(live())
            .and_where(Expr::col(col("lead_id")).eq(lead));
        return Some(Expr::col(col("tenant_id")).in_subquery(tenants));
    }
    // Anything else (addresses) is reachable only through relations of scoped rows.
    Some(Expr::cust("1 = 0"))
}

/// Parents per relation query of an `include`.
const INCLUDE_BATCH: usize = 500;

fn table(resource: &Resource) -> Alias {
    Alias::new(resource.table)
}

fn col(name: &str) -> Alias {
    Alias::new(name)
}

/// Live rows: `NOT "deleted"`, written as a literal condition (never `deleted = $n`) so that
/// both databases match it against the partial indexes `… WHERE NOT deleted`, in generic
/// PostgreSQL plans too.
pub fn live() -> Expr {
    Expr::col(col("deleted")).not()
}

/// A SELECT of every field of `resource`, live rows only.
fn select_all(resource: &Resource) -> SelectStatement {
    let mut stmt = Query::select();
    stmt.columns(resource.fields.iter().map(|f| col(f.column)))
        .from(table(resource))
        .and_where(live());
    stmt
}

fn all_fields(resource: &'static Resource) -> Vec<&'static Field> {
    resource.fields.iter().collect()
}

fn bind(backend: Backend, field: &Field, value: &Value) -> Expr {
    // Values were validated against the field type before they reach the store.
    let bound = Expr::val(
        values::to_db(backend, field, value).unwrap_or_else(|problem| {
            unreachable!("unvalidated value for {}: {problem}", field.name)
        }),
    );
    // A UUID for a text field that the original's schema keeps as `uuid`: cast, so that a `uuid`
    // column takes it and a `text` one converts it back (an assignment cast). The parameter
    // stays text: a prepared statement keeps one type per parameter.
    // A null one is written as an untyped NULL, which either column takes.
    let uuid_column_safe = field.uuid_text && backend == Backend::Postgres;
    if uuid_column_safe && value.is_null() {
        Expr::cust("NULL")
    } else if uuid_column_safe && value.as_str().is_some_and(|s| Uuid::parse_str(s).is_ok()) {
        bound.cast_as("UUID")
    } else {
        bound
    }
}

fn uuid_value(backend: Backend, id: Uuid) -> Expr {
    Expr::val(values::uuid_value(backend, id))
}

/// Inserts a row from `values` (validated, client-settable fields only) with a new id and
/// audit columns for `actor`, with its audit record, and returns the stored row.
pub async fn create(
    conn: &mut Conn<'_>,
    resource: &'static Resource,
    values: &Object,
    actor: &Actor,
) -> Result<Object, WriteError> {
    create_with_id(conn, resource, Uuid::new_v4(), values, actor).await
}

/// Like `create`, with an id chosen by the caller (when something outside the database must
/// refer to the row before it commits).
pub async fn create_with_id(
    conn: &mut Conn<'_>,
    resource: &'static Resource,
    id: Uuid,
    values: &Object,
    actor: &Actor,
) -> Result<Object, WriteError> {
    check_references(conn, resource, values).await?;
    let backend = conn.backend();
    let now = Value::from(values::format_timestamp(&conn.now()));
    let mut row: Object = Map::new();
    for field in resource.fields {
        let value = match field.name {
            "id" => Value::from(id.to_string()),
            "deleted" => Value::Bool(false),
            "createdOn" | "modifiedOn" => now.clone(),
            "createdBy" | "modifiedBy" => Value::from(actor.id.as_str()),
            _ => values.get(field.name).cloned().unwrap_or(Value::Null),
        };
        row.insert(field.name.to_string(), value);
    }
    let mut stmt = Query::insert();
    stmt.into_table(table(resource))
        .columns(resource.fields.iter().map(|f| col(f.column)))
        .values_panic(
            resource
                .fields
                .iter()
                .map(|f| bind(backend, f, &row[f.name])),
        );
    let entries: Vec<_> = audit::entry(resource, &actor.who, audit::CREATE, None, Some(&row))
        .into_iter()
        .collect();
    conn.atomically(async |conn| {
        conn.execute(&stmt).await.map_err(classify)?;
        store_audit::record(conn, &entries).await?;
        Ok::<_, WriteError>(())
    })
    .await?;
    Ok(row)
}

/// Rows matching `filter`, with its relations included and its `fields` projection applied.
pub async fn find(
    conn: &mut Conn<'_>,
    resource: &'static Resource,
    filter: &Filter,
    scope: Scope,
) -> Result<Vec<Object>, sqlx::Error> {
    let stmt = find_statement(resource, filter, scope, conn.backend());
    find_rows(conn, resource, filter, stmt).await
}

/// The live row with `id`, if any, shaped by `filter` (its `fields` and `include`).
pub async fn find_by_id(
    conn: &mut Conn<'_>,
    resource: &'static Resource,
    id: Uuid,
    filter: &Filter,
    scope: Scope,
) -> Result<Option<Object>, sqlx::Error> {
    let stmt = find_by_id_statement(resource, id, filter, scope, conn.backend());
    let mut rows = find_rows(conn, resource, filter, stmt).await?;
    Ok(rows.pop())
}

/// The SELECT behind [`find`]: every field of the live rows of `resource` that `scope` allows
/// and `filter` matches, in the filter's order and page.
pub fn find_statement(
    resource: &'static Resource,
    filter: &Filter,
    scope: Scope,
    backend: Backend,
) -> SelectStatement {
    select_where(
        resource,
        filter,
        scope_condition(resource, scope, backend),
        backend,
    )
}

/// The SELECT behind [`find_by_id`].
pub fn find_by_id_statement(
    resource: &'static Resource,
    id: Uuid,
    filter: &Filter,
    scope: Scope,
    backend: Backend,
) -> SelectStatement {
    let mut by_id = Expr::col(col("id")).eq(uuid_value(backend, id));
    if let Some(restrict) = scope_condition(resource, scope, backend) {
        by_id = by_id.and(restrict);
    }
    select_where(resource, filter, Some(by_id), backend)
}

fn select_where(
    resource: &'static Resource,
    filter: &Filter,
    extra: Option<Expr>,
    backend: Backend,
) -> SelectStatement {
    let mut stmt = select_all(resource);
    if let Some(extra) = extra {
        stmt.and_where(extra);
    }
    filter::apply(filter, &mut stmt, backend);
    stmt
}

async fn find_rows(
    conn: &mut Conn<'_>,
    resource: &'static Resource,
    filter: &Filter,
    stmt: SelectStatement,
) -> Result<Vec<Object>, sqlx::Error> {
    let mut rows = conn.fetch_objects(&stmt, &all_fields(resource)).await?;
    for include in &filter.include {
        include_relation(conn, resource, include.relation, &include.scope, &mut rows).await?;
    }
    if let Some(fields) = &filter.fields {
        for row in &mut rows {
            project(row, fields, &filter.include);
        }
    }
    Ok(rows)
}

/// Keeps only the requested fields (and included relations) of a row.
fn project(row: &mut Object, fields: &[&'static Field], includes: &[filter::Include]) {
    row.retain(|name, _| {
        fields.iter().any(|f| f.name == name) || includes.iter().any(|i| i.relation.name == name)
    });
}

/// Loads `relation` for every row of `rows` in one query and attaches it under the relation's
/// name: an object (omitted when absent) for a to-one relation, an array for a to-many one.
/// The scope's order applies within each parent; its skip/limit too.
fn include_relation<'a>(
    conn: &'a mut Conn<'_>,
    resource: &'static Resource,
    relation: &'static Relation,
    scope: &'a Filter,
    rows: &'a mut [Object],
) -> Pin<Box<dyn Future<Output = Result<(), sqlx::Error>> + Send + 'a>> {
    Box::pin(async move {
        let target = (relation.target)();
        let local = field_by_column(resource, relation.local_column);
        let remote = field_by_column(target, relation.target_column);
        let keys: Vec<&Value> = {
            let mut keys: Vec<&Value> = rows
                .iter()
                .filter_map(|r| r.get(local.name))
                .filter(|v| !v.is_null())
                .collect();
            keys.sort_by_key(|v| v.to_string());
            keys.dedup();
            keys
        };
        if keys.is_empty() {
            attach(rows, relation, local, remote, Vec::new(), scope);
            return Ok(());
        }
        let backend = conn.backend();
        // One query per batch of parents keeps the bound values far below the databases'
        // parameter limits; each parent's children all come from the batch holding its key.
        let mut children = Vec::new();
        for batch in keys.chunks(INCLUDE_BATCH) {
            let stmt = include_statement(relation, batch, scope, backend);
            children.extend(conn.fetch_objects(&stmt, &all_fields(target)).await?);
        }
        for nested in &scope.include {
            include_relation(conn, target, nested.relation, &nested.scope, &mut children).await?;
        }
        attach(rows, relation, local, remote, children, scope);
        Ok(())
    })
}

/// The SELECT that loads `relation` for a batch of parent keys (the values of the relation's
/// local column on the parents), filtered by `scope`'s where, in its order. A `limit` or `skip`
/// of the scope applies to each parent's rows, in the database: the rows are numbered per parent
/// (`ROW_NUMBER() OVER (PARTITION BY …)`) and only each parent's page is returned, so a parent
/// with very many related rows costs no more than its page.
pub fn include_statement(
    relation: &'static Relation,
    keys: &[&Value],
    scope: &Filter,
    backend: Backend,
) -> SelectStatement {
    let target = (relation.target)();
    let remote = field_by_column(target, relation.target_column);
    let mut stmt = select_all(target);
    stmt.and_where(
        Expr::col(col(remote.column)).is_in(keys.iter().map(|k| bind(backend, remote, k))),
    );
    let unpaged = Filter {
        limit: None,
        skip: None,
        include: Vec::new(),
        fields: None,
        where_: scope.where_.clone(),
        order: scope.order.clone(),
    };
    if scope.limit.is_none() && scope.skip.is_none() {
        filter::apply(&unpaged, &mut stmt, backend);
        return stmt;
    }
    if let Some(w) = &unpaged.where_ {
        stmt.cond_where(filter::condition(w, backend));
    }
    let mut window = WindowStatement::partition_by(col(remote.column));
    filter::order_window(&scope.order, &mut window);
    stmt.expr_window_as(Expr::cust("ROW_NUMBER()"), window, col(ROW_NUMBER));
    let skip = scope.skip.unwrap_or(0);
    let mut page = Query::select();
    page.columns(target.fields.iter().map(|f| col(f.column)))
        .from_subquery(stmt, col("included"))
        .and_where(Expr::col(col(ROW_NUMBER)).gt(clamp_i64(skip)));
    if let Some(limit) = scope.limit {
        page.and_where(Expr::col(col(ROW_NUMBER)).lte(clamp_i64(skip.saturating_add(limit))));
    }
    page.order_by(col(remote.column), Order::Asc)
        .order_by(col(ROW_NUMBER), Order::Asc);
    page
}

/// The per-parent row number of [`include_statement`].
const ROW_NUMBER: &str = "_row";

fn clamp_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn attach(
    rows: &mut [Object],
    relation: &Relation,
    local: &Field,
    remote: &Field,
    children: Vec<Object>,
    scope: &Filter,
) {
    let mut by_key: HashMap<String, Vec<Object>> = HashMap::new();
    for mut child in children {
        let key = child
            .get(remote.name)
            .map(Value::to_string)
            .unwrap_or_default();
        if let Some(fields) = &scope.fields {
            project(&mut child, fields, &scope.include);
        }
        by_key.entry(key).or_default().push(child);
    }
    for row in rows {
        let key = row
            .get(local.name)
            .map(Value::to_string)
            .unwrap_or_default();
        // A parent's own id is its alone: its children move; several parents can share any other
        // key (a to-one relation), so each gets a copy.
        let matched: Vec<Object> = if relation.local_column == "id" {
            by_key.remove(&key)
        } else {
            by_key.get(&key).cloned()
        }
        .unwrap_or_default();
        match relation.cardinality {
            Cardinality::Many => {
                row.insert(
                    relation.name.to_string(),
                    Value::Array(matched.into_iter().map(Value::Object).collect()),
                );
            }
            Cardinality::One => {
                if let Some(first) = matched.into_iter().next() {
                    row.insert(relation.name.to_string(), Value::Object(first));
                }
            }
        }
    }
}

fn field_by_column(resource: &'static Resource, column: &str) -> &'static Field {
    resource
        .fields
        .iter()
        .find(|f| f.column == column)
        .expect("relation columns are checked by model tests")
}

/// Number of live rows matching `where_`.
pub async fn count(
    conn: &mut Conn<'_>,
    resource: &'static Resource,
    where_: Option<&Where>,
    scope: Scope,
) -> Result<i64, sqlx::Error> {
    let stmt = count_statement(resource, where_, scope, conn.backend());
    conn.fetch_count(&stmt).await
}

/// The SELECT behind [`count`]. All live tenants, or those of one status, are counted from
/// `tenant_status_counts` (kept by triggers, migrations/*/0016_tenant_counts.sql): the cost of
/// the console's tabs does not grow with the tenants.
pub fn count_statement(
    resource: &'static Resource,
    where_: Option<&Where>,
    scope: Scope,
    backend: Backend,
) -> SelectStatement {
    if std::ptr::eq(resource, &model::TENANTS)
        && matches!(scope, Scope::All)
        && let Some(status) = counted_status(where_, backend)
    {
        let mut stmt = Query::select();
        stmt.expr(Expr::cust("CAST(COALESCE(SUM(\"n\"), 0) AS BIGINT)"))
            .from(Alias::new("tenant_status_counts"));
        if let Some(status) = status {
            stmt.and_where(Expr::col(col("status")).eq(status));
        }
        return stmt;
    }
    let mut stmt = Query::select();
    stmt.expr(Expr::cust("COUNT(*)"))
        .from(table(resource))
        .and_where(live());
    if let Some(restrict) = scope_condition(resource, scope, backend) {
        stmt.and_where(restrict);
    }
    if let Some(w) = where_ {
        stmt.cond_where(filter::condition(w, backend));
    }
    stmt
}

/// What a count of live tenants restricted to `where_` needs from the counters: `Some(None)`
/// for every status (no `where`), `Some(Some(status))` for one; `None` when the `where` says
/// anything else (counted from the table).
fn counted_status(where_: Option<&Where>, backend: Backend) -> Option<Option<sea_query::Value>> {
    let Some(w) = where_.filter(|w| !w.is_empty()) else {
        return Some(None);
    };
    let field = model::fields::tenant_status();
    let status = w.only_equality_on(field)?;
    values::to_db(backend, field, status).ok().map(Some)
}

/// Who writes: the id stamped into the audit columns, the scope the write is confined to, and
/// who its audit records name.
#[derive(Debug, Clone)]
pub struct Actor {
    pub id: String,
    pub scope: Scope,
    pub who: Who,
}

/// Which rows an update touches.
pub enum Target<'a> {
    Id(Uuid),
    Matching(Option<&'a Where>),
}

/// Sets `values` (validated; keys are wire names) on the live rows of `target`, stamping
/// `modifiedOn`/`modifiedBy`, with an `update` audit record per row. Returns the number of rows
/// changed.
pub async fn update(
    conn: &mut Conn<'_>,
    resource: &'static Resource,
    target: Target<'_>,
    values: &Object,
    actor: &Actor,
) -> Result<u64, WriteError> {
    update_as(conn, resource, target, values, actor, audit::UPDATE).await
}

/// [`update`], recorded as `action` (a move of the domain: `suspend`, `pay`, …). The rows are
/// read (locked) before and returned by the UPDATE after, in one transaction with their records.
pub async fn update_as(
    conn: &mut Conn<'_>,
    resource: &'static Resource,
    target: Target<'_>,
    values: &Object,
    actor: &Actor,
    action: audit::Action,
) -> Result<u64, WriteError> {
    check_references(conn, resource, values).await?;
    let backend = conn.backend();
    let mut stmt = Query::update();
    stmt.table(table(resource));
    for (name, value) in values {
        let field = resource
            .field(name)
            .unwrap_or_else(|| unreachable!("unvalidated field {name}"));
        stmt.value(col(field.column), bind(backend, field, value));
    }
    stamp(
        &mut stmt,
        resource,
        (backend, conn.now()),
        &[("modifiedOn", "modifiedBy")],
        &actor.id,
    );
    let condition = target_condition(resource, target, actor.scope, backend);
    stmt.cond_where(condition.clone())
        .returning(Query::returning().columns(resource.fields.iter().map(|f| col(f.column))));
    conn.atomically(async |conn| {
        let before = locked(conn, resource, condition).await?;
        if before.is_empty() {
            return Ok(0);
        }
        let after = conn
            .fetch_written(&stmt, &all_fields(resource))
            .await
            .map_err(classify)?;
        let before: HashMap<&Value, &Object> = before
            .iter()
            .filter_map(|r| Some((r.get("id")?, r)))
            .collect();
        let entries: Vec<_> = after
            .iter()
            .filter_map(|row| {
                let was = row.get("id").and_then(|id| before.get(id)).copied();
                audit::entry(resource, &actor.who, action, was, Some(row))
            })
            .collect();
        store_audit::record(conn, &entries).await?;
        Ok(after.len() as u64)
    })
    .await
}

/// Replaces every client-settable field of the row `id` (absent optional fields become null).
pub async fn replace(
    conn: &mut Conn<'_>,
    resource: &'static Resource,
    id: Uuid,
    values: &Object,
    actor: &Actor,
) -> Result<u64, WriteError> {
    let full = replacement(resource, values);
    update(conn, resource, Target::Id(id), &full, actor).await
}

/// What a replace with `values` writes: every client-settable field, absent ones as null.
pub fn replacement(resource: &'static Resource, values: &Object) -> Object {
    resource
        .fields
        .iter()
        .filter(|f| !f.server_only)
        .map(|f| {
            (
                f.name.to_string(),
                values.get(f.name).cloned().unwrap_or(Value::Null),
            )
        })
        .collect()
}

/// Marks the live rows of `target` deleted, stamping `deletedBy` with `deleted_by` and
/// `modifiedBy` with the actor (the original takes them from different claims of the token),
/// with a `delete` audit record per row holding the row as it was. Returns how many there were.
pub async fn soft_delete(
    conn: &mut Conn<'_>,
    resource: &'static Resource,
    target: Target<'_>,
    actor: &Actor,
    deleted_by: &str,
) -> Result<u64, WriteError> {
    let backend = conn.backend();
    let now = (backend, conn.now());
    let mut stmt = Query::update();
    stmt.table(table(resource)).value(col("deleted"), true);
    stamp(
        &mut stmt,
        resource,
        now,
        &[("deletedOn", "deletedBy")],
        deleted_by,
    );
    stamp(
        &mut stmt,
        resource,
        now,
        &[("modifiedOn", "modifiedBy")],
        &actor.id,
    );
    let condition = target_condition(resource, target, actor.scope, backend);
    stmt.cond_where(condition.clone());
    conn.atomically(async |conn| {
        let before = locked(conn, resource, condition).await?;
        if before.is_empty() {
            return Ok(0);
        }
        let deleted = conn.execute(&stmt).await.map_err(classify)?;
        let entries: Vec<_> = before
            .iter()
            .filter_map(|row| audit::entry(resource, &actor.who, audit::DELETE, Some(row), None))
            .collect();
        store_audit::record(conn, &entries).await?;
        Ok(deleted)
    })
    .await
}

/// Sets each `(when, who)` pair of audit columns to `now` and `actor`.
fn stamp(
    stmt: &mut UpdateStatement,
    resource: &'static Resource,
    (backend, now): (Backend, DateTime<Utc>),
    pairs: &[(&str, &str)],
    actor: &str,
) {
    let now = Value::from(values::format_timestamp(&now));
    for (on, by) in pairs {
        for (name, value) in [(*on, &now), (*by, &Value::from(actor))] {
            if let Some(field) = resource.field(name) {
                stmt.value(col(field.column), bind(backend, field, value));
            }
        }
    }
}

/// The live rows of `target` that `scope` reaches.
fn target_condition(
    resource: &Resource,
    target: Target<'_>,
    scope: Scope,
    backend: Backend,
) -> Condition {
    let mut all = Condition::all().add(live());
    if let Some(condition) = scope_condition(resource, scope, backend) {
        all = all.add(condition);
    }
    match target {
        Target::Id(id) => all.add(Expr::col(col("id")).eq(uuid_value(backend, id))),
        Target::Matching(Some(w)) => all.add(filter::condition(w, backend)),
        Target::Matching(None) => all,
    }
}

/// Every field of the live rows of `target` that `scope` reaches, locked until the transaction
/// `conn` is in ends, so that what is decided from them still holds when it is written
/// (`FOR UPDATE` on PostgreSQL; an SQLite write transaction holds the database already).
pub async fn find_for_update(
    conn: &mut Conn<'_>,
    resource: &'static Resource,
    target: Target<'_>,
    scope: Scope,
) -> Result<Vec<Object>, sqlx::Error> {
    let condition = target_condition(resource, target, scope, conn.backend());
    locked(conn, resource, condition).await
}

/// Every field of the rows matching `condition`, locked (see [`find_for_update`]).
async fn locked(
    conn: &mut Conn<'_>,
    resource: &'static Resource,
    condition: Condition,
) -> Result<Vec<Object>, sqlx::Error> {
    let mut stmt = Query::select();
    stmt.columns(resource.fields.iter().map(|f| col(f.column)))
        .from(table(resource))
        .cond_where(condition)
        .order_by(col("id"), Order::Asc)
        .lock(LockType::Update);
    conn.fetch_objects(&stmt, &all_fields(resource)).await
}

/// Checks that every to-one reference set in `values` points at a live row.
async fn check_references(
    conn: &mut Conn<'_>,
    resource: &'static Resource,
    values: &Object,
) -> Result<(), WriteError> {
    for relation in resource.relations {
        if relation.cardinality != Cardinality::One || relation.local_column == "id" {
            continue;
        }
        let field = field_by_column(resource, relation.local_column);
        let Some(value) = values.get(field.name).filter(|v| !v.is_null()) else {
            continue;
        };
        let target = (relation.target)();
        let mut stmt = Query::select();
        stmt.expr(Expr::cust("COUNT(*)"))
            .from(table(target))
            .and_where(live())
            .and_where(Expr::col(col(relation.target_column)).eq(bind(
                conn.backend(),
                field,
                value,
            )));
        if conn.fetch_count(&stmt).await? == 0 {
            return Err(WriteError::MissingReference {
                field: field.name,
                id: value.as_str().unwrap_or_default().to_string(),
            });
        }
    }
    Ok(())
}

fn classify(err: sqlx::Error) -> WriteError {
    match &err {
        sqlx::Error::Database(db_err) if db_err.is_unique_violation() => WriteError::Conflict(
            db_err
                .constraint()
                .map(str::to_string)
                .unwrap_or_else(|| db_err.message().to_string()),
        ),
        sqlx::Error::Database(db_err)
            if matches!(db_err.code().as_deref(), Some("22001" | "22P02" | "42804")) =>
        {
            WriteError::Unfit(format!(
                "a value does not fit its database column: {}",
                db_err.message()
            ))
        }
        _ => WriteError::Db(err),
    }
}
