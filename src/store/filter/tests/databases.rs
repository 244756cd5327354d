//! Random valid filters, and pinned cases checked against an oracle, run on SQLite (always) and
//! on PostgreSQL (when `TMS_TEST_DATABASE_URL` is set) over the same sample rows.

use rand::SeedableRng;
use sea_query::{Expr, PostgresQueryBuilder, Query as Q, SqliteQueryBuilder};
use sea_query_sqlx::SqlxBinder;
use serde_json::{Map, Value, json};
use sqlx::{AssertSqlSafe, Executor};

use super::{filter_of, select};
use crate::model::{ALL, CONTACTS, FieldType, INVOICES, LEADS, RESOURCES, Resource, TENANTS};
use crate::store::filter::generate::{
    SAMPLE_DOMAINS, SAMPLE_TEXTS, SAMPLE_TIMESTAMPS, SAMPLE_UUIDS, pick, random_filter,
    random_value,
};
use crate::store::filter::parse::normalise;
use crate::store::filter::{Filter, apply, parse_filter};
use crate::store::values::{self, Backend};

/// Deterministic rows for every table, in foreign-key order, drawn from the `SAMPLE_*` pools
/// so that random filters select something.
fn sample_rows() -> Vec<(&'static Resource, Vec<Map<String, Value>>)> {
    use rand::Rng;
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let mut ids: std::collections::HashMap<&str, Vec<String>> = Default::default();
    let mut used: std::collections::HashSet<(&str, String)> = Default::default();
    let mut all = Vec::new();
    for (resource, count) in [
        (&crate::model::ADDRESSES, 4),
        (&LEADS, 5),
        (&TENANTS, SAMPLE_TEXTS.len()),
        (&CONTACTS, 10),
        (&RESOURCES, 6),
        (&INVOICES, 10),
        (&crate::model::TENANT_CONFIGS, 4),
    ] {
        let mut rows = Vec::new();
        for i in 0..count {
            let mut row = Map::new();
            for f in resource.fields {
                let nullable = !f.required
                    && f.name != "id"
                    && f.name != "deleted"
                    && f.name != "createdOn"
                    && f.name != "modifiedOn";
                let v = if nullable && rng.random_bool(0.25) {
                    Value::Null
                } else {
                    match (f.name, f.ty) {
                        ("id", _) if resource.table == "tenants" && i < SAMPLE_UUIDS.len() => {
                            Value::from(SAMPLE_UUIDS[i])
                        }
                        ("id", _) => Value::from(
                            uuid::Uuid::from_u128(rng.random()).hyphenated().to_string(),
                        ),
                        ("key", _) => Value::from(format!("k{i}")),
                        // Every sample text once, for the pinned cases below.
                        ("name", _) if resource.table == "tenants" => Value::from(SAMPLE_TEXTS[i]),
                        ("currencyCode", _) => pick(&mut rng, &["USD", "EUR", "usd"]),
                        ("externalIdentifier", _) => Value::from(format!("ext{i}")),
                        ("invoiceNumber", _) => Value::from(format!("INV-{i:06}")),
                        (_, FieldType::Uuid) => {
                            let rel = resource
                                .relations
                                .iter()
                                .find(|r| r.local_column == f.column)
                                .unwrap();
                            let targets = &ids[(rel.target)().table];
                            let pick_one = targets[rng.random_range(0..targets.len())].clone();
                            if f.required {
                                Value::from(pick_one)
                            } else {
                                // An optional reference may be unique (one tenant per
                                // lead): each target is used once, then NULL.
                                let free: Vec<&String> = targets
                                    .iter()
                                    .filter(|t| !used.contains(&(f.column, (*t).clone())))
                                    .collect();
                                match free.first() {
                                    Some(t) => {
                                        used.insert((f.column, (*t).clone()));
                                        Value::from((*t).clone())
                                    }
                                    None => Value::Null,
                                }
                            }
                        }
                        (_, FieldType::TextArray) => Value::Array(
                            SAMPLE_DOMAINS
                                .iter()
                                .filter(|_| rng.random_bool(0.4))
                                .map(|d| Value::from(*d))
                                .collect(),
                        ),
                        (_, FieldType::Json) => json!({ "n": i }),
                        (_, FieldType::Timestamp) => {
                            normalise(f, &pick(&mut rng, SAMPLE_TIMESTAMPS)).unwrap()
                        }
                        (_, FieldType::Enum(names)) => {
                            Value::from(rng.random_range(0..names.len()))
                        }
                        _ => random_value(&mut rng, f),
                    }
                };
                row.insert(f.name.to_string(), v);
            }
            ids.entry(resource.table)
                .or_default()
                .push(row["id"].as_str().unwrap().to_string());
            rows.push(row);
        }
        all.push((resource, rows));
    }
    all
}

fn insert_statement(
    resource: &'static Resource,
    row: &Map<String, Value>,
    backend: Backend,
) -> sea_query::InsertStatement {
    let values: Vec<Expr> = resource
        .fields
        .iter()
        .map(|f| Expr::val(values::to_db(backend, f, &row[f.name]).unwrap()))
        .collect();
    Q::insert()
        .into_table(resource.table)
        .columns(resource.fields.iter().map(|f| f.column))
        .values_panic(values)
        .to_owned()
}

async fn sqlite_pool() -> sqlx::SqlitePool {
    use std::str::FromStr;
    let options = sqlx::sqlite::SqliteConnectOptions::from_str("sqlite::memory:")
        .unwrap()
        .pragma("case_sensitive_like", "ON");
    let pool = sqlx::sqlite::SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(options)
        .await
        .unwrap();
    sqlx::migrate!("./migrations/sqlite")
        .run(&pool)
        .await
        .unwrap();
    for (resource, rows) in sample_rows() {
        for row in &rows {
            let (sql, args) =
                insert_statement(resource, row, Backend::Sqlite).build_sqlx(SqliteQueryBuilder);
            sqlx::query_with(AssertSqlSafe(sql), args)
                .execute(&pool)
                .await
                .unwrap();
        }
    }
    pool
}

/// A PostgreSQL pool on a fresh schema, when `TMS_TEST_DATABASE_URL` is set.
async fn postgres_pool() -> Option<(sqlx::PgPool, String)> {
    let url = std::env::var("TMS_TEST_DATABASE_URL")
        .ok()
        .filter(|u| !u.trim().is_empty())?;
    let schema = format!("t_{}", uuid::Uuid::new_v4().simple());
    let admin = sqlx::PgPool::connect(&url).await.unwrap();
    admin
        .execute(AssertSqlSafe(format!("CREATE SCHEMA \"{schema}\"")))
        .await
        .unwrap();
    admin.close().await;
    let options = std::str::FromStr::from_str(&url)
        .map(|o: sqlx::postgres::PgConnectOptions| o.options([("search_path", schema.as_str())]))
        .unwrap();
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(2)
        .connect_with(options)
        .await
        .unwrap();
    sqlx::migrate!("./migrations/postgres")
        .run(&pool)
        .await
        .unwrap();
    for (resource, rows) in sample_rows() {
        for row in &rows {
            let (sql, args) =
                insert_statement(resource, row, Backend::Postgres).build_sqlx(PostgresQueryBuilder);
            sqlx::query_with(AssertSqlSafe(sql), args)
                .execute(&pool)
                .await
                .unwrap();
        }
    }
    Some((pool, schema))
}

async fn rows_on(
    sqlite: &sqlx::SqlitePool,
    pg: Option<&sqlx::PgPool>,
    resource: &'static Resource,
    filter: &Filter,
) -> (Vec<Value>, Option<Vec<Value>>) {
    let mut stmt = select(resource);
    apply(filter, &mut stmt, Backend::Sqlite);
    let (sql, args) = stmt.build_sqlx(SqliteQueryBuilder);
    let lite = sqlx::query_with(AssertSqlSafe(sql.clone()), args)
        .fetch_all(sqlite)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    let lite = lite
        .iter()
        .map(|row| {
            Value::Object(
                resource
                    .fields
                    .iter()
                    .map(|f| (f.name.to_string(), values::sqlite_column(row, f).unwrap()))
                    .collect(),
            )
        })
        .collect();
    let Some(pg) = pg else {
        return (lite, None);
    };
    let mut stmt = select(resource);
    apply(filter, &mut stmt, Backend::Postgres);
    let (sql, args) = stmt.build_sqlx(PostgresQueryBuilder);
    let rows = sqlx::query_with(AssertSqlSafe(sql.clone()), args)
        .fetch_all(pg)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    let rows = rows
        .iter()
        .map(|row| {
            Value::Object(
                resource
                    .fields
                    .iter()
                    .map(|f| (f.name.to_string(), values::pg_column(row, f).unwrap()))
                    .collect(),
            )
        })
        .collect();
    (lite, Some(rows))
}

/// Random valid filters run on SQLite (always) and PostgreSQL (when `TMS_TEST_DATABASE_URL`
/// is set) and select the same rows in the same order on both.
#[tokio::test]
async fn random_filters_select_the_same_rows_on_both_databases() {
    let sqlite = sqlite_pool().await;
    let pg = postgres_pool().await;
    if pg.is_none() {
        eprintln!("TMS_TEST_DATABASE_URL is not set: checking SQLite only");
    }
    let mut rng = rand::rngs::StdRng::seed_from_u64(42);
    let mut non_empty = 0;
    let mut runs = 0;
    for _ in 0..60 {
        for resource in ALL {
            let v = random_filter(resource, &mut rng, 0);
            let filter = parse_filter(resource, &v).unwrap();
            let (lite, postgres) =
                rows_on(&sqlite, pg.as_ref().map(|(p, _)| p), resource, &filter).await;
            if let Some(postgres) = postgres {
                assert_eq!(lite, postgres, "{} {v}", resource.table);
            }
            runs += 1;
            non_empty += usize::from(!lite.is_empty());
        }
    }
    // Pinned cases, checked against an oracle over the sample rows: case-sensitive LIKE,
    // ASCII-only ILIKE, escapes, `_`, byte order, NULL and domains.
    let tenants = sample_rows()
        .into_iter()
        .find(|(r, _)| r.table == "tenants")
        .unwrap()
        .1;
    type Row = Map<String, Value>;
    let name = |r: &Row| r["name"].as_str().unwrap().to_string();
    type Oracle = Box<dyn Fn(&Row) -> bool>;
    let fixed: Vec<(Value, Oracle)> = vec![
        (
            json!({"name": {"like": "a%"}}),
            Box::new(move |r| name(r).starts_with('a')),
        ),
        (
            json!({"name": {"ilike": "ACME%"}}),
            Box::new(move |r| name(r).to_ascii_lowercase().starts_with("acme")),
        ),
        (
            json!({"name": {"nilike": "ärger"}}),
            Box::new(move |r| !name(r).eq_ignore_ascii_case("ärger")),
        ),
        (
            json!({"name": {"like": "50\\%"}}),
            Box::new(move |r| name(r) == "50%"),
        ),
        (
            json!({"name": {"like": "\\_"}}),
            Box::new(move |r| name(r) == "_"),
        ),
        (
            json!({"name": {"like": "_"}}),
            Box::new(move |r| name(r).chars().count() == 1),
        ),
        (
            json!({"name": {"like": "%\\\\%"}}),
            Box::new(move |r| name(r).contains('\\')),
        ),
        (
            json!({"name": {"gt": "Z"}}),
            Box::new(move |r| name(r).as_str() > "Z"),
        ),
        (
            json!({"name": {"nin": ["a", "zeta"]}}),
            Box::new(move |r| !["a", "zeta"].contains(&name(r).as_str())),
        ),
        (
            json!({"spocUserId": null}),
            Box::new(|r: &Row| Value::is_null(&r["spocUserId"])),
        ),
        (
            json!({"spocUserId": {"neq": "a"}}),
            Box::new(|r| r["spocUserId"].as_str().is_some_and(|s| s != "a")),
        ),
        (
            json!({"domains": "acme.com"}),
            Box::new(|r| {
                r["domains"]
                    .as_array()
                    .unwrap()
                    .contains(&json!("acme.com"))
            }),
        ),
    ];
    for (w, oracle) in fixed {
        let filter = filter_of(&TENANTS, json!({ "where": w })).unwrap();
        let (lite, postgres) =
            rows_on(&sqlite, pg.as_ref().map(|(p, _)| p), &TENANTS, &filter).await;
        let expected: Vec<&Value> = {
            let mut rows: Vec<&Row> = tenants.iter().filter(|r| oracle(r)).collect();
            rows.sort_by_key(|r| r["id"].as_str().unwrap().to_string());
            rows.into_iter().map(|r| &r["id"]).collect()
        };
        let got: Vec<&Value> = lite.iter().map(|r| &r["id"]).collect();
        assert_eq!(got, expected, "{w}");
        assert!(!expected.is_empty(), "{w} selects nothing from the samples");
        if let Some(postgres) = postgres {
            assert_eq!(lite, postgres, "{w}");
        }
    }
    assert!(
        non_empty * 3 > runs,
        "{non_empty} of {runs} filters selected rows"
    );
    if let Some((pool, schema)) = pg {
        pool.execute(AssertSqlSafe(format!("DROP SCHEMA \"{schema}\" CASCADE")))
            .await
            .unwrap();
        pool.close().await;
    }
}
