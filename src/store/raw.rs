//! Hand-written statements for both databases (the key-value store, the outbox, idempotency
//! keys): one SQL text with `$n` placeholders, typed parameters bound as each backend stores
//! them, and typed reads of the returned columns. The representation of each type per backend is
//! the one the migrations describe (instants as `timestamptz` / ISO 8601 text, UUIDs as `uuid` /
//! text, JSON as `jsonb` / text, bytes as `bytea` / `BLOB`), so no caller branches on the
//! database.

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use rust_decimal::prelude::ToPrimitive;
use sea_query::Value as SqlValue;
use sea_query_sqlx::SqlxValues;
use serde_json::Value;
use sqlx::Row;
use sqlx::postgres::PgRow;
use sqlx::sqlite::SqliteRow;
use uuid::Uuid;

use super::Backend;
use super::values::{MONEY_SCALE, format_timestamp, parse_timestamp};

/// A parameter of a hand-written statement.
#[derive(Debug, Clone, Copy)]
pub enum Param<'a> {
    Text(&'a str),
    OptText(Option<&'a str>),
    Int(i64),
    OptInt(Option<i64>),
    Instant(DateTime<Utc>),
    Uuid(Uuid),
    Json(&'a Value),
    OptJson(Option<&'a Value>),
    /// Money: `numeric(19,4)` / integer ten-thousandths.
    Money(Decimal),
    OptInstant(Option<DateTime<Utc>>),
    /// A flag: `boolean` / integer 0 or 1.
    Bool(bool),
    /// Bytes: `bytea` / `BLOB`.
    Bytes(&'a [u8]),
}

/// The parameters bound for `backend`.
pub fn arguments(backend: Backend, params: &[Param<'_>]) -> SqlxValues {
    let values = params
        .iter()
        .map(|p| match (*p, backend) {
            (Param::Text(s), _) => SqlValue::String(Some(s.to_string())),
            (Param::OptText(s), _) => SqlValue::String(s.map(str::to_string)),
            (Param::Int(n), _) => SqlValue::BigInt(Some(n)),
            (Param::OptInt(n), _) => SqlValue::BigInt(n),
            (Param::Instant(t), Backend::Postgres) => SqlValue::ChronoDateTimeUtc(Some(t)),
            (Param::Instant(t), Backend::Sqlite) => SqlValue::String(Some(format_timestamp(&t))),
            (Param::Uuid(id), Backend::Postgres) => SqlValue::Uuid(Some(id)),
            (Param::Uuid(id), Backend::Sqlite) => {
                SqlValue::String(Some(id.hyphenated().to_string()))
            }
            (Param::Json(v), Backend::Postgres) => SqlValue::Json(Some(Box::new(v.clone()))),
            (Param::Json(v), Backend::Sqlite) => SqlValue::String(Some(v.to_string())),
            (Param::OptJson(v), Backend::Postgres) => {
                SqlValue::Json(v.map(|v| Box::new(v.clone())))
            }
            (Param::OptJson(v), Backend::Sqlite) => SqlValue::String(v.map(Value::to_string)),
            (Param::Money(d), Backend::Postgres) => SqlValue::Decimal(Some(d)),
            (Param::Money(d), Backend::Sqlite) => {
                SqlValue::BigInt((d * Decimal::from(10_000)).trunc().to_i64())
            }
            (Param::OptInstant(t), Backend::Postgres) => SqlValue::ChronoDateTimeUtc(t),
            (Param::OptInstant(t), Backend::Sqlite) => {
                SqlValue::String(t.as_ref().map(format_timestamp))
            }
            (Param::Bool(b), Backend::Postgres) => SqlValue::Bool(Some(b)),
            (Param::Bool(b), Backend::Sqlite) => SqlValue::BigInt(Some(i64::from(b))),
            (Param::Bytes(b), _) => SqlValue::Bytes(Some(b.to_vec())),
        })
        .collect();
    SqlxValues(sea_query::Values(values))
}

/// A row returned by a hand-written statement.
pub enum RawRow {
    Postgres(PgRow),
    Sqlite(SqliteRow),
}

impl RawRow {
    pub fn text(&self, column: &str) -> Result<Option<String>, sqlx::Error> {
        match self {
            Self::Postgres(row) => row.try_get(column),
            Self::Sqlite(row) => row.try_get(column),
        }
    }

    /// An integer column (`integer` or `bigint`).
    pub fn int(&self, column: &str) -> Result<i64, sqlx::Error> {
        match self {
            Self::Postgres(row) => row
                .try_get::<i64, _>(column)
                .or_else(|_| row.try_get::<i32, _>(column).map(i64::from)),
            Self::Sqlite(row) => row.try_get(column),
        }
    }

    /// An integer column that may be NULL.
    pub fn opt_int(&self, column: &str) -> Result<Option<i64>, sqlx::Error> {
        match self {
            Self::Postgres(row) => row
                .try_get::<Option<i64>, _>(column)
                .or_else(|_| {
                    row.try_get::<Option<i32>, _>(column)
                        .map(|n| n.map(i64::from))
                })
                .or_else(|_| {
                    row.try_get::<Option<i16>, _>(column)
                        .map(|n| n.map(i64::from))
                }),
            Self::Sqlite(row) => row.try_get(column),
        }
    }

    /// A JSON column that may be NULL.
    pub fn opt_json(&self, column: &str) -> Result<Option<Value>, sqlx::Error> {
        match self {
            Self::Postgres(row) => row.try_get(column),
            Self::Sqlite(row) => row
                .try_get::<Option<String>, _>(column)?
                .map(|text| {
                    serde_json::from_str(&text).map_err(|e| decode_error(column, e.to_string()))
                })
                .transpose(),
        }
    }

    pub fn instant(&self, column: &str) -> Result<Option<DateTime<Utc>>, sqlx::Error> {
        match self {
            Self::Postgres(row) => row.try_get(column),
            Self::Sqlite(row) => row
                .try_get::<Option<String>, _>(column)?
                .map(|s| {
                    parse_timestamp(&s)
                        .ok_or_else(|| decode_error(column, format!("not an instant: {s:?}")))
                })
                .transpose(),
        }
    }

    /// An instant column that is never NULL.
    pub fn required_instant(&self, column: &str) -> Result<DateTime<Utc>, sqlx::Error> {
        self.instant(column)?
            .ok_or_else(|| decode_error(column, "unexpected NULL".into()))
    }

    pub fn uuid(&self, column: &str) -> Result<Uuid, sqlx::Error> {
        match self {
            Self::Postgres(row) => row.try_get(column),
            Self::Sqlite(row) => {
                let text: String = row.try_get(column)?;
                Uuid::parse_str(&text).map_err(|e| decode_error(column, e.to_string()))
            }
        }
    }

    /// A money column (never NULL).
    pub fn money(&self, column: &str) -> Result<Decimal, sqlx::Error> {
        match self {
            Self::Postgres(row) => row.try_get(column),
            Self::Sqlite(row) => Ok(Decimal::new(row.try_get(column)?, MONEY_SCALE)),
        }
    }

    /// A `bytea` / `BLOB` column that may be NULL.
    pub fn opt_bytes(&self, column: &str) -> Result<Option<Vec<u8>>, sqlx::Error> {
        match self {
            Self::Postgres(row) => row.try_get(column),
            Self::Sqlite(row) => row.try_get(column),
        }
    }

    pub fn json(&self, column: &str) -> Result<Value, sqlx::Error> {
        match self {
            Self::Postgres(row) => row.try_get(column),
            Self::Sqlite(row) => {
                let text: String = row.try_get(column)?;
                serde_json::from_str(&text).map_err(|e| decode_error(column, e.to_string()))
            }
        }
    }
}

fn decode_error(column: &str, message: String) -> sqlx::Error {
    sqlx::Error::ColumnDecode {
        index: column.to_string(),
        source: message.into(),
    }
}
