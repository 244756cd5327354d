//! What the tests of the filter modules share (`ast/tests.rs`, `parse/tests.rs`, `query/tests.rs`
//! and `sql/tests.rs` use these helpers), and the tests of the dialect as a whole: properties
//! over arbitrary input (`tests/properties.rs`) and random filters that select the same rows on
//! SQLite and PostgreSQL (`tests/databases.rs`).

mod databases;
mod properties;

use sea_query::{
    PostgresQueryBuilder, Query, SelectStatement, SqliteQueryBuilder, Value as SqlValue,
};
use serde_json::Value;

use super::{Filter, Where, apply, parse_filter, parse_where};
use crate::model::Resource;
use crate::store::values::Backend;

pub(super) fn where_of(resource: &'static Resource, v: Value) -> Result<Where, String> {
    parse_where(resource, &v).map_err(|e| e.0)
}

pub(super) fn filter_of(resource: &'static Resource, v: Value) -> Result<Filter, String> {
    parse_filter(resource, &v).map_err(|e| e.0)
}

pub(super) fn select(resource: &'static Resource) -> SelectStatement {
    Query::select()
        .columns(resource.fields.iter().map(|f| f.column))
        .from(resource.table)
        .to_owned()
}

/// The SQL after `FROM "table"` and the bound values, for both backends.
pub(super) fn render(resource: &'static Resource, filter: &Filter) -> [(String, Vec<SqlValue>); 2] {
    [Backend::Postgres, Backend::Sqlite].map(|backend| {
        let mut stmt = select(resource);
        apply(filter, &mut stmt, backend);
        let (sql, values) = match backend {
            Backend::Postgres => stmt.build(PostgresQueryBuilder),
            Backend::Sqlite => stmt.build(SqliteQueryBuilder),
        };
        let from = format!("FROM \"{}\"", resource.table);
        let tail = sql
            .split_once(&from)
            .map_or(sql.clone(), |(_, t)| t.trim().to_string());
        (tail, values.0)
    })
}
