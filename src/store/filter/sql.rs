//! The typed filter to SQL: a sea-query condition with every value bound as a parameter, the
//! order with its `id` tie-breaker, limit and offset, for either database, rendered so that both
//! select the same rows in the same order.

use sea_query::{
    Condition, Expr, ExprTrait, Func, LikeExpr, NullOrdering, Order as SqlOrder, SelectStatement,
    Value as SqlValue, WindowStatement,
};
use serde_json::Value;

use super::ast::{Filter, Op, Operand, Order, Repr, Where};
use super::{LIKE_ESCAPE, MAX_SKIP};
use crate::model::{Field, FieldType};
use crate::store::values::{self, Backend};

#[cfg(test)]
mod tests;

/// The condition for a parsed `where`, for one backend; every value is bound as a parameter.
/// An empty `where` gives an empty condition (sea-query renders it as `TRUE`).
pub fn condition(w: &Where, backend: Backend) -> Condition {
    match w {
        // An empty `{}` inside `and` is true, the identity of AND: it is left out. The whole
        // condition may end up empty, which sea-query renders as no WHERE at all.
        Where::And(items) => items
            .iter()
            .filter(|i| !i.is_empty())
            .fold(Condition::all(), |c, i| c.add(condition(i, backend))),
        Where::Or(items) if items.is_empty() => Condition::all().add(Expr::cust("1 = 0")),
        // An empty `{}` inside `or` makes the whole `or` true.
        Where::Or(items) if items.iter().any(Where::is_empty) => {
            Condition::all().add(Expr::cust("1 = 1"))
        }
        Where::Or(items) => items
            .iter()
            .fold(Condition::any(), |c, i| c.add(condition(i, backend))),
        Where::Cmp { field, op, value } => {
            let expr = comparison(field, *op, value, backend).unwrap_or_else(|| {
                // Unreachable for operands built by the parser; a hand-made mismatch matches
                // nothing rather than failing.
                debug_assert!(false, "operand does not fit {}", field.name);
                Expr::cust("1 = 0")
            });
            Condition::all().add(expr)
        }
    }
}

fn comparison(field: &'static Field, op: Op, operand: &Operand, backend: Backend) -> Option<Expr> {
    // A text field the original's schema keeps as `uuid` is compared as text on both schemas.
    let col = || match backend {
        Backend::Postgres if field.uuid_text => Expr::col(field.column).cast_as("TEXT"),
        _ => Expr::col(field.column),
    };
    let bind = |v: &Value| values::to_db(backend, field, v).ok();
    let binds = |vs: &[Value]| vs.iter().map(bind).collect::<Option<Vec<SqlValue>>>();
    Some(match (field.ty, op, &operand.0) {
        (FieldType::Json, ..) => return None,
        (_, Op::Eq, Repr::Null) => col().is_null(),
        (_, Op::Neq, Repr::Null) => col().is_not_null(),
        (FieldType::TextArray, Op::Eq, Repr::One(Value::String(item))) => {
            let item = SqlValue::String(Some(item.clone()));
            let column = field.column;
            match backend {
                // Containment, which the GIN index on the array serves. The cast is none on
                // tms's `text[]` and makes the `varchar[]` of a schema taken over from the
                // original comparable (its index is on the same cast).
                Backend::Postgres => Expr::col(column).cast_as("text[]").binary(
                    sea_query::extension::postgres::PgBinOper::Contains,
                    Expr::val(SqlValue::Array(
                        sea_query::ArrayType::String,
                        Some(Box::new(vec![item])),
                    )),
                ),
                // A tenant's domains are also rows of `tenant_domains` (kept by triggers,
                // migrations/sqlite/0015_flat_reads.sql), indexed by domain.
                Backend::Sqlite if std::ptr::eq(field, crate::model::fields::tenant_domains()) => {
                    Expr::cust_with_values(
                        "\"id\" IN (SELECT \"tenant_id\" FROM \"tenant_domains\" WHERE \"domain\" = ?)",
                        [item],
                    )
                }
                Backend::Sqlite => Expr::cust_with_values(
                    format!("EXISTS (SELECT 1 FROM json_each(\"{column}\") WHERE \"value\" = ?)"),
                    [item],
                ),
            }
        }
        (FieldType::TextArray, ..) => return None,
        (_, Op::Eq, Repr::One(v)) => col().eq(bind(v)?),
        (_, Op::Neq, Repr::One(v)) => col().ne(bind(v)?),
        (_, Op::Gt, Repr::One(v)) => col().gt(bind(v)?),
        (_, Op::Gte, Repr::One(v)) => col().gte(bind(v)?),
        (_, Op::Lt, Repr::One(v)) => col().lt(bind(v)?),
        (_, Op::Lte, Repr::One(v)) => col().lte(bind(v)?),
        (_, Op::Inq, Repr::List(vs)) if vs.is_empty() => Expr::cust("1 = 0"),
        (_, Op::Nin, Repr::List(vs)) if vs.is_empty() => Expr::cust("1 = 1"),
        (_, Op::Inq, Repr::List(vs)) => col().is_in(binds(vs)?),
        (_, Op::Nin, Repr::List(vs)) => col().is_not_in(binds(vs)?),
        (_, Op::Between, Repr::Range(a, b)) => col().between(bind(a)?, bind(b)?),
        (FieldType::Text, Op::Like, Repr::One(Value::String(p))) => {
            col().like(LikeExpr::new(p.clone()).escape(LIKE_ESCAPE))
        }
        (FieldType::Text, Op::Nlike, Repr::One(Value::String(p))) => {
            col().not_like(LikeExpr::new(p.clone()).escape(LIKE_ESCAPE))
        }
        // ASCII case folding on both sides: SQLite's lower() and PostgreSQL's lower() under the
        // "C" collation of every text column fold A-Z only, so the pattern is folded the same
        // way here rather than by the database's default collation.
        (FieldType::Text, Op::Ilike, Repr::One(Value::String(p))) => Expr::from(Func::lower(col()))
            .like(LikeExpr::new(p.to_ascii_lowercase()).escape(LIKE_ESCAPE)),
        (FieldType::Text, Op::Nilike, Repr::One(Value::String(p))) => {
            Expr::from(Func::lower(col()))
                .not_like(LikeExpr::new(p.to_ascii_lowercase()).escape(LIKE_ESCAPE))
        }
        _ => return None,
    })
}

/// Applies a filter to a single-table select: its `where` (AND-ed with whatever the statement
/// already has), its order (ASC with NULLS LAST, DESC with NULLS FIRST, on both databases), then
/// `id` as the final tie-breaker so that paging is stable — in the direction of the last order,
/// so that one index on `(column, id)` serves the order both ways —, its limit and its skip.
/// A skip without a limit renders `LIMIT 9223372036854775807`, since SQLite needs a LIMIT
/// before an OFFSET. `fields` and `include` are left to the caller.
pub fn apply(filter: &Filter, stmt: &mut SelectStatement, backend: Backend) {
    if let Some(w) = &filter.where_
        && !w.is_empty()
    {
        stmt.cond_where(condition(w, backend));
    }
    for o in &filter.order {
        let (order, nulls) = direction(o);
        stmt.order_by_with_nulls(o.field.column, order, nulls);
    }
    if let Some(order) = tie_break(&filter.order) {
        stmt.order_by("id", order);
    }
    match (filter.limit, filter.skip) {
        (Some(limit), skip) => {
            stmt.limit(limit);
            if let Some(skip) = skip {
                stmt.offset(skip);
            }
        }
        (None, Some(skip)) => {
            stmt.limit(MAX_SKIP);
            stmt.offset(skip);
        }
        (None, None) => {}
    }
}

/// The order of [`apply`] (the filter's, then its `id` tie-breaker) for a window's `ORDER BY`.
pub fn order_window(order: &[Order], window: &mut WindowStatement) {
    for o in order {
        let (direction, nulls) = direction(o);
        window.order_by_with_nulls(o.field.column, direction, nulls);
    }
    if let Some(direction) = tie_break(order) {
        window.order_by("id", direction);
    }
}

/// ASC with NULLS LAST, DESC with NULLS FIRST.
fn direction(o: &Order) -> (SqlOrder, NullOrdering) {
    if o.descending {
        (SqlOrder::Desc, NullOrdering::First)
    } else {
        (SqlOrder::Asc, NullOrdering::Last)
    }
}

/// The direction of the `id` that ends an order: none when the order has `id` already, else
/// the direction of its last key (ascending without an order).
fn tie_break(order: &[Order]) -> Option<SqlOrder> {
    if order.iter().any(|o| o.field.column == "id") {
        return None;
    }
    Some(match order.last() {
        Some(last) if last.descending => SqlOrder::Desc,
        _ => SqlOrder::Asc,
    })
}
