//! The one place where wire values meet database values, per backend: what a JSON value of a
//! field binds as, and how a stored column reads back as JSON. Representation on SQLite is
//! described in `migrations/sqlite/0001_domain.sql`.

use chrono::{DateTime, NaiveDate, SecondsFormat, Utc};
use rust_decimal::Decimal;
use sea_query::Value as SqlValue;
use serde_json::Value;
use sqlx::Row;
use sqlx::postgres::PgRow;
use sqlx::sqlite::SqliteRow;
use uuid::Uuid;

use crate::model::{Field, FieldType};

/// The database kind, chosen once at start-up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Postgres,
    Sqlite,
}

impl Backend {
    pub fn name(self) -> &'static str {
        match self {
            Self::Postgres => "postgres",
            Self::Sqlite => "sqlite",
        }
    }
}

/// Money is stored with four decimal places; this is the scale on SQLite's integer column.
pub const MONEY_SCALE: u32 = 4;
/// Largest absolute amount accepted, in ten-thousandths (99 999 999 999.9999: 15 significant
/// digits, exact in `numeric(19,4)`, an `i64` and the JSON number on the wire).
pub const MONEY_MAX: i64 = 999_999_999_999_999;

/// The wire form of an instant: ISO 8601, milliseconds, `Z`.
pub fn format_timestamp(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// Parses an instant: RFC 3339 (any offset, normalised to UTC) or a plain `YYYY-MM-DD` date
/// (midnight UTC). Sub-millisecond digits are dropped.
pub fn parse_timestamp(s: &str) -> Option<DateTime<Utc>> {
    check_timestamp(s).ok()
}

/// Like [`parse_timestamp`], saying what is wrong: not ISO 8601, or outside the years 0000–9999
/// in UTC (whose ISO text would neither sort nor read back).
pub fn check_timestamp(s: &str) -> Result<DateTime<Utc>, &'static str> {
    use chrono::Datelike;
    let t = DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .ok()
        .or_else(|| {
            NaiveDate::parse_from_str(s, "%Y-%m-%d")
                .ok()
                .and_then(|d| d.and_hms_opt(0, 0, 0))
                .map(|d| d.and_utc())
        })
        .ok_or("is not an ISO 8601 date-time")?;
    if !(0..=9999).contains(&t.year()) {
        return Err("is outside the years 0000 to 9999");
    }
    DateTime::from_timestamp_millis(t.timestamp_millis()).ok_or("is not an ISO 8601 date-time")
}

/// Parses money from a JSON number or string, by [`parse_money_text`]. A JSON number is read
/// from the value it holds: a request body gives money its text as written
/// (`http::money_text`).
pub fn parse_money(v: &Value) -> Result<Decimal, String> {
    match v {
        Value::Number(n) => parse_money_text(&n.to_string()),
        Value::String(s) => parse_money_text(s.trim()),
        _ => Err("must be a decimal number".into()),
    }
}

/// Exponents beyond this are all the same to money: far too small or far too large.
const EXPONENT_CAP: i64 = 1_000_000_000_000_000;

/// Money written as text — a JSON number's spelling, or a decimal string:
/// `[+-]digits[.digits][(e|E)[+-]digits]` — read exactly, never through a float: the value
/// written decides, whatever its spelling. It has at most four decimal places once its trailing
/// zeros are gone (`12.3400`, `1.5e2` = 150 and `1e-4` are fine; `1.23456`,
/// `12.3450000000000000000000001` and `1e-400` are not) and an absolute value of at most
/// 99 999 999 999.9999 (`MONEY_MAX` ten-thousandths; `1e400` is too large). Negative zero is zero.
pub fn parse_money_text(text: &str) -> Result<Decimal, String> {
    let malformed = || format!("{text:?} is not a decimal number");
    let (negative, unsigned) = match text.as_bytes().first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    let (mantissa, exponent) = match unsigned.split_once(['e', 'E']) {
        Some((mantissa, exponent)) => (mantissa, Some(exponent)),
        None => (unsigned, None),
    };
    let (whole, fraction) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let digits_only = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if whole.len() + fraction.len() == 0 || !digits_only(whole) || !digits_only(fraction) {
        return Err(malformed());
    }
    let exponent = match exponent {
        None => 0,
        Some(e) => {
            let (sign, digits) = match e.as_bytes().first() {
                Some(b'-') => (-1, &e[1..]),
                Some(b'+') => (1, &e[1..]),
                _ => (1, e),
            };
            if digits.is_empty() || !digits_only(digits) {
                return Err(malformed());
            }
            sign * digits.bytes().fold(0i64, |n, b| {
                (n * 10 + i64::from(b - b'0')).min(EXPONENT_CAP)
            })
        }
    };
    // The value is `significant × 10^power`, `significant` without leading or trailing zeros.
    let digits = [whole, fraction].concat();
    let leading_trimmed = digits.trim_start_matches('0');
    let significant = leading_trimmed.trim_end_matches('0');
    if significant.is_empty() {
        return Ok(Decimal::ZERO);
    }
    let count = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
    let power = exponent - count(fraction.len()) + count(leading_trimmed.len() - significant.len());
    let scale = i64::from(MONEY_SCALE);
    if power < -scale {
        return Err(format!("must have at most {MONEY_SCALE} decimal places"));
    }
    // In ten-thousandths: `significant × 10^(power + 4)`, at most `MONEY_MAX`.
    let shift = power + scale;
    let too_large = || "is too large".to_string();
    if count(significant.len()) + shift > 18 {
        return Err(too_large());
    }
    let units = significant
        .parse::<i64>()
        .ok()
        .zip(u32::try_from(shift).ok())
        .and_then(|(n, shift)| n.checked_mul(10i64.checked_pow(shift)?))
        .filter(|units| *units <= MONEY_MAX)
        .ok_or_else(too_large)?;
    Ok(Decimal::new(if negative { -units } else { units }, MONEY_SCALE).normalize())
}

/// Money on the wire: a JSON number (exact for every amount `parse_money` accepts).
pub fn money_to_json(d: Decimal) -> Value {
    let d = d.normalize();
    if d.scale() == 0
        && let Ok(i) = i64::try_from(d)
    {
        return Value::from(i);
    }
    d.to_string()
        .parse::<f64>()
        .ok()
        .and_then(serde_json::Number::from_f64)
        .map(Value::Number)
        .unwrap_or(Value::Null)
}

/// A wire value of a field read as the field's type, before it takes either database's form.
enum Typed<'a> {
    Uuid(Uuid),
    Text(&'a str),
    Bool(bool),
    Enum(i32),
    Timestamp(DateTime<Utc>),
    Money(Decimal),
    Json(&'a Value),
    TextArray(Vec<String>),
}

/// `v` read as a value of `field`'s type (`None` for null), or a message (without the field
/// name) saying why it is not one. The rule is the same for both databases.
fn typed<'a>(field: &Field, v: &'a Value) -> Result<Option<Typed<'a>>, String> {
    if v.is_null() {
        return Ok(None);
    }
    Ok(Some(match field.ty {
        FieldType::Uuid => {
            let s = v.as_str().ok_or("must be a UUID string")?;
            Typed::Uuid(Uuid::parse_str(s).map_err(|_| format!("{s:?} is not a UUID"))?)
        }
        FieldType::Text => Typed::Text(v.as_str().ok_or("must be a string")?),
        FieldType::Bool => Typed::Bool(v.as_bool().ok_or("must be a boolean")?),
        FieldType::Enum(names) => Typed::Enum(enum_value(names, v)?),
        FieldType::Timestamp => {
            let s = v.as_str().ok_or("must be an ISO 8601 date-time string")?;
            Typed::Timestamp(check_timestamp(s).map_err(|problem| format!("{s:?} {problem}"))?)
        }
        FieldType::Money => Typed::Money(parse_money(v)?),
        FieldType::Json => Typed::Json(v),
        FieldType::TextArray => Typed::TextArray(
            v.as_array()
                .ok_or("must be an array of strings")?
                .iter()
                .map(|i| {
                    i.as_str()
                        .map(str::to_string)
                        .ok_or("must be an array of strings")
                })
                .collect::<Result<Vec<_>, _>>()?,
        ),
    }))
}

/// Whether the wire value `v` fits the type of `field` — the rule [`to_db`] applies before it
/// picks a database's form, and the same on both databases: a value that fits binds on either.
/// Null fits (whether a field may be null is not a matter of its type). `Err` says why the
/// value does not fit, without the field name.
pub fn fits(field: &Field, v: &Value) -> Result<(), String> {
    typed(field, v).map(drop)
}

/// A wire value of `field`, already validated for its type, as the value to bind for `backend`.
/// Returns a message (without the field name) when the value does not fit the type ([`fits`]).
pub fn to_db(backend: Backend, field: &Field, v: &Value) -> Result<SqlValue, String> {
    use Backend::*;
    let Some(typed) = typed(field, v)? else {
        return Ok(null_of(backend, field.ty));
    };
    Ok(match (typed, backend) {
        (Typed::Uuid(id), Postgres) => SqlValue::Uuid(Some(id)),
        (Typed::Uuid(id), Sqlite) => SqlValue::String(Some(id.hyphenated().to_string())),
        (Typed::Text(s), _) => SqlValue::String(Some(s.to_string())),
        (Typed::Bool(b), _) => SqlValue::Bool(Some(b)),
        (Typed::Enum(i), _) => SqlValue::Int(Some(i)),
        (Typed::Timestamp(t), Postgres) => SqlValue::ChronoDateTimeUtc(Some(t)),
        (Typed::Timestamp(t), Sqlite) => SqlValue::String(Some(format_timestamp(&t))),
        (Typed::Money(d), Postgres) => SqlValue::Decimal(Some(d)),
        // `parse_money` keeps amounts within `MONEY_MAX` ten-thousandths, well inside an i64.
        (Typed::Money(d), Sqlite) => SqlValue::BigInt(Some(
            i64::try_from(d * Decimal::from(10_000)).map_err(|_| "is too large")?,
        )),
        (Typed::Json(v), Postgres) => SqlValue::Json(Some(Box::new(v.clone()))),
        (Typed::Json(v), Sqlite) => SqlValue::String(Some(v.to_string())),
        (Typed::TextArray(items), Postgres) => SqlValue::Array(
            sea_query::ArrayType::String,
            Some(Box::new(
                items
                    .into_iter()
                    .map(|s| SqlValue::String(Some(s)))
                    .collect(),
            )),
        ),
        (Typed::TextArray(items), Sqlite) => SqlValue::String(Some(Value::from(items).to_string())),
    })
}

/// A UUID as bound for `backend` (native on PostgreSQL, canonical text on SQLite).
pub fn uuid_value(backend: Backend, id: Uuid) -> SqlValue {
    match backend {
        Backend::Postgres => SqlValue::Uuid(Some(id)),
        Backend::Sqlite => SqlValue::String(Some(id.hyphenated().to_string())),
    }
}

/// Accepts an enum by number (`1`, `"1"`) or by name (`"PAID"`), case-insensitively.
pub fn enum_value(names: &[&str], v: &Value) -> Result<i32, String> {
    let allowed = || {
        format!(
            "must be one of {}",
            names
                .iter()
                .enumerate()
                .map(|(i, n)| format!("{i} ({n})"))
                .collect::<Vec<_>>()
                .join(", ")
        )
    };
    let index = match v {
        Value::Number(n) => n.as_u64().map(|i| i as usize),
        Value::String(s) => s
            .parse::<usize>()
            .ok()
            .or_else(|| names.iter().position(|n| n.eq_ignore_ascii_case(s))),
        _ => None,
    };
    match index {
        Some(i) if i < names.len() => Ok(i as i32),
        _ => Err(allowed()),
    }
}

fn null_of(backend: Backend, ty: FieldType) -> SqlValue {
    match (backend, ty) {
        (Backend::Postgres, FieldType::Uuid) => SqlValue::Uuid(None),
        (Backend::Postgres, FieldType::Timestamp) => SqlValue::ChronoDateTimeUtc(None),
        (Backend::Postgres, FieldType::Money) => SqlValue::Decimal(None),
        (Backend::Postgres, FieldType::Json) => SqlValue::Json(None),
        (Backend::Postgres, FieldType::TextArray) => {
            SqlValue::Array(sea_query::ArrayType::String, None)
        }
        (_, FieldType::Bool) => SqlValue::Bool(None),
        (_, FieldType::Enum(_)) => SqlValue::Int(None),
        (Backend::Sqlite, FieldType::Money) => SqlValue::BigInt(None),
        _ => SqlValue::String(None),
    }
}

/// Reads column `field` of a PostgreSQL row as its wire value.
pub fn pg_column(row: &PgRow, field: &Field) -> Result<Value, sqlx::Error> {
    let c = field.column;
    Ok(match field.ty {
        FieldType::Uuid => opt(row.try_get::<Option<Uuid>, _>(c)?, |u| u.to_string().into()),
        // A `uuid` column in the original's schema.
        FieldType::Text if field.uuid_text => match row.try_get::<Option<String>, _>(c) {
            Ok(text) => opt(text, Value::from),
            Err(_) => opt(row.try_get::<Option<Uuid>, _>(c)?, |u| u.to_string().into()),
        },
        FieldType::Text => opt(row.try_get::<Option<String>, _>(c)?, Value::from),
        FieldType::Bool => opt(row.try_get::<Option<bool>, _>(c)?, Value::from),
        FieldType::Enum(_) => opt(row.try_get::<Option<i16>, _>(c)?, Value::from),
        FieldType::Timestamp => opt(row.try_get::<Option<DateTime<Utc>>, _>(c)?, |t| {
            format_timestamp(&t).into()
        }),
        FieldType::Money => opt(row.try_get::<Option<Decimal>, _>(c)?, money_to_json),
        FieldType::Json => row.try_get::<Option<Value>, _>(c)?.unwrap_or(Value::Null),
        FieldType::TextArray => opt(row.try_get::<Option<Vec<String>>, _>(c)?, Value::from),
    })
}

/// Reads column `field` of an SQLite row as its wire value.
pub fn sqlite_column(row: &SqliteRow, field: &Field) -> Result<Value, sqlx::Error> {
    let c = field.column;
    let json_text = |s: String| {
        serde_json::from_str(&s).map_err(|e| sqlx::Error::ColumnDecode {
            index: c.to_string(),
            source: Box::new(e),
        })
    };
    Ok(match field.ty {
        FieldType::Uuid | FieldType::Text | FieldType::Timestamp => {
            opt(row.try_get::<Option<String>, _>(c)?, Value::from)
        }
        FieldType::Bool => opt(row.try_get::<Option<bool>, _>(c)?, Value::from),
        FieldType::Enum(_) => opt(row.try_get::<Option<i64>, _>(c)?, Value::from),
        FieldType::Money => opt(row.try_get::<Option<i64>, _>(c)?, |i| {
            money_to_json(Decimal::new(i, MONEY_SCALE))
        }),
        FieldType::Json | FieldType::TextArray => match row.try_get::<Option<String>, _>(c)? {
            Some(s) => json_text(s)?,
            None => Value::Null,
        },
    })
}

fn opt<T>(v: Option<T>, f: impl FnOnce(T) -> Value) -> Value {
    v.map(f).unwrap_or(Value::Null)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn timestamps_normalise_to_utc_milliseconds() {
        let t = parse_timestamp("2026-01-02T03:04:05.678912+02:00").unwrap();
        assert_eq!(format_timestamp(&t), "2026-01-02T01:04:05.678Z");
        let d = parse_timestamp("2026-01-02").unwrap();
        assert_eq!(format_timestamp(&d), "2026-01-02T00:00:00.000Z");
        assert!(parse_timestamp("yesterday").is_none());
        assert!(parse_timestamp("2026-13-01").is_none());
        assert!(parse_timestamp("9999-12-31T23:30:00-01:00").is_none());
        assert!(parse_timestamp("0000-01-01T00:30:00+01:00").is_none());
        assert!(parse_timestamp("9999-12-31T23:59:59.999Z").is_some());
    }

    #[test]
    fn money_is_decided_on_the_value_written_whatever_its_spelling() {
        let places = "must have at most 4 decimal places";
        let large = "is too large";
        for (text, expected) in [
            ("0", Ok("0")),
            ("-0", Ok("0")),
            ("-0.0", Ok("0")),
            ("-0e-400", Ok("0")),
            ("0e999999999999999999999999", Ok("0")),
            ("0.000000000000000000000000000000000", Ok("0")),
            ("12.34", Ok("12.34")),
            ("12.3400", Ok("12.34")),
            ("12.340000000000000000000000000000000", Ok("12.34")),
            ("0.00010", Ok("0.0001")),
            ("0.0001", Ok("0.0001")),
            ("1e-4", Ok("0.0001")),
            ("1E-4", Ok("0.0001")),
            ("1.5e2", Ok("150")),
            ("1.5E+2", Ok("150")),
            ("1E2", Ok("100")),
            ("1e0", Ok("1")),
            ("123456e-4", Ok("12.3456")),
            ("0.000012345e5", Ok("1.2345")),
            ("00099.5", Ok("99.5")),
            ("+7", Ok("7")),
            ("7.", Ok("7")),
            (".5", Ok("0.5")),
            ("-12.5", Ok("-12.5")),
            ("99999999999.9999", Ok("99999999999.9999")),
            ("-99999999999.9999", Ok("-99999999999.9999")),
            ("999999999999999e-4", Ok("99999999999.9999")),
            ("9999999999999990000000e-11", Ok("99999999999.9999")),
            ("1.23456", Err(places)),
            ("0.00001", Err(places)),
            ("1e-5", Err(places)),
            ("12.3450000000000000000000001", Err(places)),
            ("0.1000000000000000000000000000001", Err(places)),
            ("1e-400", Err(places)),
            ("-1e-400", Err(places)),
            ("1e-999999999999999999999999", Err(places)),
            ("100000000000", Err(large)),
            ("99999999999.99991", Err(places)),
            ("100000000000.0000", Err(large)),
            ("1e11", Err(large)),
            ("1e20", Err(large)),
            ("1e400", Err(large)),
            ("-1e400", Err(large)),
            ("1e999999999999999999999999", Err(large)),
            ("123456789012345678901234567890", Err(large)),
        ] {
            let parsed = parse_money_text(text).map(|d| d.to_string());
            assert_eq!(
                parsed,
                expected.map(str::to_string).map_err(str::to_string),
                "{text}"
            );
            let as_string = parse_money(&Value::String(text.to_string())).map(|d| d.to_string());
            assert_eq!(as_string, parsed, "{text} as a JSON string");
        }
        for malformed in [
            "", "-", "+", ".", "-.", "e5", "1e", "1e+", "1.2.3", "--1", "+-1", "1 000", "1_000",
            "0x10", "Infinity", "NaN", "1e2.5", "١٢", "1,5",
        ] {
            assert_eq!(
                parse_money_text(malformed),
                Err(format!("{malformed:?} is not a decimal number")),
                "{malformed}"
            );
        }
    }

    #[test]
    fn money_is_exact_and_bounded() {
        assert_eq!(parse_money(&json!(99.5)).unwrap().to_string(), "99.5");
        assert_eq!(parse_money(&json!("0.1")).unwrap().to_string(), "0.1");
        assert!(parse_money(&json!(1.23456)).is_err());
        assert!(parse_money(&json!("1e20")).is_err());
        assert!(parse_money(&json!(true)).is_err());
        assert_eq!(money_to_json(Decimal::new(995_000, 4)), json!(99.5));
        assert_eq!(money_to_json(Decimal::new(1_000_000, 4)), json!(100));
    }

    #[test]
    fn a_value_fits_on_both_databases_or_on_neither() {
        let samples = [
            json!(null),
            json!(true),
            json!(0),
            json!(1),
            json!(-1),
            json!(2.5),
            json!(1.23456),
            json!("1"),
            json!("paid"),
            json!("text"),
            json!(""),
            json!("3ef767d9-850c-5871-9a3b-cac38e100243"),
            json!("2026-01-02T03:04:05Z"),
            json!("2026-01-02"),
            json!("10000-01-01T00:00:00Z"),
            json!("99999999999.9999"),
            json!("1e20"),
            json!(["a.com", "b.com"]),
            json!(["a.com", 1]),
            json!([]),
            json!({"a": 1}),
        ];
        for resource in crate::model::ALL {
            for field in resource.fields {
                for v in &samples {
                    let rule = fits(field, v);
                    for backend in [Backend::Postgres, Backend::Sqlite] {
                        assert_eq!(
                            to_db(backend, field, v).map(drop),
                            rule,
                            "{}.{} = {v} on {}",
                            resource.path,
                            field.name,
                            backend.name()
                        );
                    }
                }
            }
        }
        let amount = crate::model::INVOICES.field("amount").unwrap();
        assert_eq!(fits(amount, &json!("12.50")), Ok(()));
        assert_eq!(fits(amount, &json!("1e20")), Err("is too large".into()));
    }

    #[test]
    fn enums_accept_numbers_and_names() {
        let names = crate::model::INVOICE_STATUS;
        assert_eq!(enum_value(names, &json!(1)), Ok(1));
        assert_eq!(enum_value(names, &json!("paid")), Ok(1));
        assert_eq!(enum_value(names, &json!("2")), Ok(2));
        assert!(enum_value(names, &json!(3)).is_err());
        assert!(enum_value(names, &json!(-1)).is_err());
        assert!(enum_value(names, &json!("OPEN")).is_err());
    }
}
