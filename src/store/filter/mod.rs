//! The LoopBack filter dialect (`?filter=` and `?where=`): parsing from the query string (JSON or
//! bracket form), resolution of every name against the resource model into a typed AST, and
//! translation into a parameterised sea-query condition and ordering that give the same rows on
//! SQLite and PostgreSQL. The dialect is described for clients in `docs/filters.md`.

mod ast;
mod parse;
mod query;
mod sql;

pub use ast::{Filter, FilterError, Include, Op, Operand, Order, Where};
pub use parse::{parse_filter, parse_where};
pub use query::query_param;
pub use sql::{apply, condition, order_window};

use serde_json::{Map, Value};

use crate::model::{Field, FieldType, Resource};

/// The default cap on the rows of a list and on the related rows per row of an include
/// (`MAX_LIST_LIMIT`).
pub const MAX_LIMIT: u64 = 1000;
/// Deepest nesting of `and`/`or` accepted in one `where`.
pub const MAX_DEPTH: usize = 8;
/// Deepest nesting of `include` (an include inside an include scope is depth 2).
pub const MAX_INCLUDE_DEPTH: usize = 2;
/// Most comparisons accepted in one `where`.
pub const MAX_CONDITIONS: usize = 100;
/// Most values accepted in one `inq`/`nin` list.
pub const MAX_LIST_LEN: usize = 1000;
/// Most values bound by one `where` (well below the parameter limits of both databases).
pub const MAX_VALUES: usize = 2000;
/// Most entries in `order`.
pub const MAX_ORDER: usize = 32;
/// Largest `skip`/`offset` accepted (what a signed 64-bit parameter holds).
pub const MAX_SKIP: u64 = i64::MAX as u64;

/// LIKE patterns use this escape character on both databases (PostgreSQL's default).
const LIKE_ESCAPE: char = '\\';

// ---------------------------------------------------------------------------------------------
// Generators of valid filters, for property tests and cross-database comparisons.

/// Text samples: mixed case, non-ASCII, quotes, LIKE metacharacters and an injection attempt.
pub const SAMPLE_TEXTS: &[&str] = &[
    "",
    "a",
    "acme",
    "Acme",
    "ACME",
    "acme corp",
    "Ärger",
    "ärger",
    "_",
    "50%",
    "x' OR 1=1 --",
    "back\\slash",
    "zeta",
];
/// LIKE patterns over [`SAMPLE_TEXTS`].
pub const SAMPLE_PATTERNS: &[&str] = &[
    "%", "a%", "A%", "%c%", "ACM_", "%me", "_", "%\\%", "\\_", "%r%", "Ä%", "ä%", "%'%", "%\\\\%",
];
/// UUID samples.
pub const SAMPLE_UUIDS: &[&str] = &[
    "00000000-0000-4000-8000-000000000001",
    "00000000-0000-4000-8000-000000000002",
    "7f3c2a9e-1b4d-4c8e-9a6f-2d5e8b1c0f37",
    "ffffffff-ffff-4fff-bfff-ffffffffffff",
];
/// Instant samples (normalised on parsing).
pub const SAMPLE_TIMESTAMPS: &[&str] = &[
    "2025-12-31T23:59:59.999Z",
    "2026-01-01T00:00:00.000Z",
    "2026-01-01",
    "2026-01-01T01:00:00+01:00",
    "2026-06-15T12:30:00.5Z",
];
/// Money samples.
pub const SAMPLE_MONEY: &[&str] = &["0", "-5", "1.5", "99.9999", "100", "1000000"];
/// Domain samples (for the `domains` list).
pub const SAMPLE_DOMAINS: &[&str] = &["acme.com", "a.acme.com", "beta.io", "ACME.com"];

fn pick<R: rand::Rng + ?Sized>(rng: &mut R, items: &[&str]) -> Value {
    Value::from(items[rng.random_range(0..items.len())])
}

fn random_value<R: rand::Rng + ?Sized>(rng: &mut R, field: &Field) -> Value {
    match field.ty {
        FieldType::Uuid => pick(rng, SAMPLE_UUIDS),
        FieldType::Text | FieldType::Json => pick(rng, SAMPLE_TEXTS),
        FieldType::Bool => Value::Bool(rng.random_bool(0.5)),
        FieldType::Enum(names) => {
            let i = rng.random_range(0..names.len());
            match rng.random_range(0..3) {
                0 => Value::from(names[i]),
                1 => Value::from(i.to_string()),
                _ => Value::from(i),
            }
        }
        FieldType::Timestamp => pick(rng, SAMPLE_TIMESTAMPS),
        FieldType::Money => {
            let v = pick(rng, SAMPLE_MONEY);
            if rng.random_bool(0.5) {
                v
            } else {
                v.as_str()
                    .and_then(|s| s.parse::<f64>().ok())
                    .map_or(v.clone(), Value::from)
            }
        }
        FieldType::TextArray => pick(rng, SAMPLE_DOMAINS),
    }
}

fn random_comparison<R: rand::Rng + ?Sized>(rng: &mut R, field: &Field) -> Value {
    if field.ty == FieldType::TextArray {
        return if rng.random_bool(0.5) {
            random_value(rng, field)
        } else {
            serde_json::json!({ "eq": random_value(rng, field) })
        };
    }
    let ops: &[Op] = if field.ty == FieldType::Text {
        &Op::ALL
    } else {
        &Op::ALL[..9]
    };
    let op = ops[rng.random_range(0..ops.len())];
    let arg = match op {
        Op::Eq | Op::Neq if rng.random_bool(0.15) => Value::Null,
        Op::Inq | Op::Nin => Value::Array(
            (0..rng.random_range(0..4))
                .map(|_| random_value(rng, field))
                .collect(),
        ),
        Op::Between => Value::Array(vec![random_value(rng, field), random_value(rng, field)]),
        op if op.is_pattern() => pick(rng, SAMPLE_PATTERNS),
        _ => random_value(rng, field),
    };
    if op == Op::Eq && rng.random_bool(0.5) {
        return arg; // the implicit form
    }
    let mut obj = Map::new();
    obj.insert(op.name().into(), arg);
    Value::Object(obj)
}

/// A random valid `where` for `resource`, with values from the `SAMPLE_*` pools and `and`/`or`
/// nesting up to `max_depth` levels.
pub fn random_where<R: rand::Rng + ?Sized>(
    resource: &'static Resource,
    rng: &mut R,
    max_depth: usize,
) -> Value {
    let mut obj = Map::new();
    if max_depth > 0 && rng.random_bool(0.35) {
        let key = if rng.random_bool(0.5) { "and" } else { "or" };
        let items = (0..rng.random_range(1..=3))
            .map(|_| random_where(resource, rng, max_depth - 1))
            .collect();
        obj.insert(key.into(), Value::Array(items));
    }
    let filterable: Vec<&Field> = resource
        .fields
        .iter()
        .filter(|f| f.ty != FieldType::Json)
        .collect();
    for _ in 0..rng.random_range(0..=2) {
        let field = filterable[rng.random_range(0..filterable.len())];
        obj.insert(field.name.into(), random_comparison(rng, field));
    }
    Value::Object(obj)
}

/// A random valid `filter` for `resource` (where, fields, order, limit, skip and includes up to
/// `include_depth` levels).
pub fn random_filter<R: rand::Rng + ?Sized>(
    resource: &'static Resource,
    rng: &mut R,
    include_depth: usize,
) -> Value {
    let mut obj = Map::new();
    if rng.random_bool(0.8) {
        obj.insert("where".into(), random_where(resource, rng, 3));
    }
    if rng.random_bool(0.3) {
        let names: Vec<Value> = resource
            .fields
            .iter()
            .filter(|_| rng.random_bool(0.4))
            .map(|f| Value::from(f.name))
            .collect();
        if !names.is_empty() {
            obj.insert("fields".into(), Value::Array(names));
        }
    }
    if rng.random_bool(0.6) {
        let orderable: Vec<&Field> = resource
            .fields
            .iter()
            .filter(|f| !matches!(f.ty, FieldType::Json | FieldType::TextArray))
            .collect();
        let order: Vec<Value> = (0..rng.random_range(1..=3))
            .map(|_| {
                let f = orderable[rng.random_range(0..orderable.len())];
                let dir = ["", " ASC", " DESC", " desc"][rng.random_range(0..4)];
                Value::from(format!("{}{dir}", f.name))
            })
            .collect();
        obj.insert("order".into(), Value::Array(order));
    }
    if rng.random_bool(0.5) {
        obj.insert("limit".into(), Value::from(rng.random_range(1..=MAX_LIMIT)));
    }
    if rng.random_bool(0.3) {
        let key = if rng.random_bool(0.5) {
            "skip"
        } else {
            "offset"
        };
        obj.insert(key.into(), Value::from(rng.random_range(0..50u64)));
    }
    if include_depth > 0 && !resource.relations.is_empty() && rng.random_bool(0.3) {
        let rel = &resource.relations[rng.random_range(0..resource.relations.len())];
        let scope = random_filter((rel.target)(), rng, include_depth - 1);
        obj.insert(
            "include".into(),
            serde_json::json!([{ "relation": rel.name, "scope": scope }]),
        );
    }
    Value::Object(obj)
}

#[cfg(test)]
mod tests {
    use super::parse::normalise;
    use super::*;
    use crate::model::{ALL, CONTACTS, INVOICES, LEADS, RESOURCES, TENANTS};
    use crate::store::values::{self, Backend};
    use proptest::prelude::*;
    use rand::SeedableRng;
    use sea_query::{
        Expr, PostgresQueryBuilder, Query, SelectStatement, SqliteQueryBuilder, Value as SqlValue,
    };
    use serde_json::json;

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
    pub(super) fn render(
        resource: &'static Resource,
        filter: &Filter,
    ) -> [(String, Vec<SqlValue>); 2] {
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

    #[test]
    fn capping_bounds_the_list_and_every_include() {
        let f = filter_of(
            &TENANTS,
            json!({"limit": 5000, "include": [{"relation": "contacts",
                "scope": {"include": ["tenant"]}}, {"relation": "lead", "scope": {"limit": 3}}]}),
        )
        .unwrap()
        .capped(100);
        assert_eq!(f.limit, Some(100));
        assert_eq!(f.include[0].scope.limit, Some(100));
        assert_eq!(f.include[0].scope.include[0].scope.limit, Some(100));
        assert_eq!(f.include[1].scope.limit, Some(3));
        assert_eq!(Filter::default().capped(7).limit, Some(7));
    }

    #[test]
    fn where_cmp_checks_like_the_parser() {
        let tenant_id = CONTACTS.field("tenantId").unwrap();
        let w = Where::cmp(tenant_id, Op::Inq, &json!([SAMPLE_UUIDS[0]])).unwrap();
        let [(pg, _), (lite, _)] = render(
            &CONTACTS,
            &Filter {
                where_: Some(w),
                ..Filter::default()
            },
        );
        assert_eq!(pg, r#"WHERE "tenant_id" IN ($1) ORDER BY "id" ASC"#);
        assert_eq!(lite, r#"WHERE "tenant_id" IN (?) ORDER BY "id" ASC"#);
        assert!(Where::cmp(tenant_id, Op::Eq, &json!("x")).is_err());
        assert!(Where::cmp(tenant_id, Op::Like, &json!("x")).is_err());
    }

    // --- real databases -------------------------------------------------------------------

    use sea_query::Query as Q;
    use sea_query_sqlx::SqlxBinder;
    use sqlx::{AssertSqlSafe, Executor};

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
                            ("name", _) if resource.table == "tenants" => {
                                Value::from(SAMPLE_TEXTS[i])
                            }
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
            .map(|o: sqlx::postgres::PgConnectOptions| {
                o.options([("search_path", schema.as_str())])
            })
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
                let (sql, args) = insert_statement(resource, row, Backend::Postgres)
                    .build_sqlx(PostgresQueryBuilder);
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

    // --- properties ---------------------------------------------------------------------------

    /// Renders on both backends and checks that the two bind the same number of values.
    fn render_all(resource: &'static Resource, filter: &Filter) {
        let [(_, pv), (_, lv)] = render(resource, filter);
        assert_eq!(pv.len(), lv.len());
        for include in &filter.include {
            render_all((include.relation.target)(), &include.scope);
        }
    }

    fn json_leaf() -> impl Strategy<Value = Value> {
        let words: Vec<&'static str> = ALL
            .iter()
            .flat_map(|r| r.fields.iter().map(|f| f.name))
            .chain(Op::ALL.iter().map(|o| o.name()))
            .chain(SAMPLE_TEXTS.iter().copied())
            .chain(SAMPLE_UUIDS.iter().copied())
            .chain(SAMPLE_TIMESTAMPS.iter().copied())
            .chain([
                "ACTIVE",
                "PAID",
                "true",
                "false",
                "name DESC",
                "contacts",
                "tenant",
            ])
            .collect();
        prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<f64>().prop_map(Value::from),
            (0u64..3000).prop_map(Value::from),
            proptest::sample::select(words).prop_map(Value::from),
            ".{0,12}".prop_map(Value::from),
        ]
    }

    fn json_key() -> impl Strategy<Value = String> {
        let keys: Vec<&'static str> = ALL
            .iter()
            .flat_map(|r| r.fields.iter().map(|f| f.name))
            .chain(Op::ALL.iter().map(|o| o.name()))
            .chain([
                "where", "fields", "order", "limit", "skip", "offset", "include", "relation",
                "scope", "and", "or", "0", "1",
            ])
            .chain(
                ALL.iter()
                    .flat_map(|r| r.relations.iter().map(|rel| rel.name)),
            )
            .collect();
        prop_oneof![
            9 => proptest::sample::select(keys).prop_map(str::to_string),
            1 => "[a-z]{0,6}",
        ]
    }

    fn json_value() -> impl Strategy<Value = Value> {
        json_leaf().prop_recursive(6, 64, 6, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                proptest::collection::vec((json_key(), inner), 0..6)
                    .prop_map(|kv| Value::Object(kv.into_iter().collect())),
            ]
        })
    }

    fn query_string() -> impl Strategy<Value = String> {
        let segment = prop_oneof![
            json_key(),
            Just(String::new()),
            "[0-9]{1,2}",
            Just("%5B".to_string()),
            Just("]".to_string()),
        ];
        let key = (
            prop_oneof![Just("filter"), Just("where"), Just("filte")],
            proptest::collection::vec(segment, 0..6),
        )
            .prop_map(|(name, segs)| {
                let brackets: String = segs.iter().map(|s| format!("[{s}]")).collect();
                format!("{name}{brackets}")
            });
        let value = prop_oneof![
            json_leaf().prop_map(|v| match v {
                Value::String(s) => s,
                other => other.to_string(),
            }),
            json_value().prop_map(|v| v.to_string()),
            "[%+&=a-z0-9{}\\[\\]\":,]{0,16}",
        ];
        proptest::collection::vec((key, value), 0..8).prop_map(|pairs| {
            pairs
                .into_iter()
                .map(|(k, v)| {
                    let v: String = form_urlencoded::byte_serialize(v.as_bytes()).collect();
                    format!("{k}={v}")
                })
                .collect::<Vec<_>>()
                .join("&")
        })
    }

    fn parse_everything(v: &Value) {
        for resource in ALL {
            if let Ok(filter) = parse_filter(resource, v) {
                render_all(resource, &filter);
            }
            if let Ok(w) = parse_where(resource, v) {
                let filter = Filter {
                    where_: Some(w),
                    ..Filter::default()
                };
                render_all(resource, &filter);
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn arbitrary_query_strings_never_panic(raw in query_string(), noise in ".{0,40}") {
            for q in [raw.as_str(), noise.as_str()] {
                for name in ["filter", "where"] {
                    if let Ok(Some(v)) = query_param(Some(q), name) {
                        parse_everything(&v);
                    }
                }
            }
        }

        #[test]
        fn arbitrary_json_never_panics(v in json_value()) {
            parse_everything(&v);
            parse_everything(&json!({ "where": v.clone() }));
            parse_everything(&json!({ "include": [{"relation": "tenant", "scope": v}] }));
        }

        #[test]
        fn random_valid_filters_parse_and_render_alike(seed in any::<u64>()) {
            let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
            for resource in ALL {
                let v = random_filter(resource, &mut rng, MAX_INCLUDE_DEPTH);
                let filter = parse_filter(resource, &v)
                    .unwrap_or_else(|e| panic!("{v} for {}: {e}", resource.table));
                render_all(resource, &filter);
                let w = random_where(resource, &mut rng, MAX_DEPTH);
                let parsed = parse_where(resource, &w);
                // Large random trees may hit the condition cap; anything else is a bug.
                if let Err(e) = &parsed {
                    prop_assert!(e.0.contains("more than"), "{w}: {e}");
                }
            }
        }
    }
}
