//! The LoopBack filter dialect (`?filter=` and `?where=`): parsing from the query string (JSON or
//! bracket form), resolution of every name against the resource model into a typed AST, and
//! translation into a parameterised sea-query condition and ordering that give the same rows on
//! SQLite and PostgreSQL. The dialect is described for clients in `docs/filters.md`.

mod ast;
mod generate;
mod parse;
mod query;
mod sql;

pub use ast::{Filter, FilterError, Include, Op, Operand, Order, Where};
pub use generate::{
    SAMPLE_DOMAINS, SAMPLE_MONEY, SAMPLE_PATTERNS, SAMPLE_TEXTS, SAMPLE_TIMESTAMPS, SAMPLE_UUIDS,
    random_filter, random_where,
};
pub use parse::{parse_filter, parse_where};
pub use query::query_param;
pub use sql::{apply, condition, order_window};

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

#[cfg(test)]
mod tests {
    use super::generate::{pick, random_value};
    use super::parse::normalise;
    use super::*;
    use crate::model::{ALL, CONTACTS, FieldType, INVOICES, LEADS, RESOURCES, Resource, TENANTS};
    use crate::store::values::{self, Backend};
    use proptest::prelude::*;
    use rand::SeedableRng;
    use sea_query::{
        Expr, PostgresQueryBuilder, Query, SelectStatement, SqliteQueryBuilder, Value as SqlValue,
    };
    use serde_json::{Map, Value, json};

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
