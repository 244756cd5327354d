use sea_query::{SqliteQueryBuilder, Value as SqlValue};
use serde_json::{Value, json};

use super::*;
use crate::model::{INVOICES, Resource, TENANTS};
use crate::store::filter::tests::{filter_of, render, select, where_of};
use crate::store::filter::{MAX_DEPTH, parse_where};

fn where_sql(resource: &'static Resource, w: Value) -> [(String, Vec<SqlValue>); 2] {
    let filter = filter_of(resource, json!({ "where": w })).unwrap();
    render(resource, &filter)
}

#[test]
fn every_operator_compiles_to_bound_sql() {
    let s = |v: &str| SqlValue::String(Some(v.to_string()));
    // (where, PostgreSQL SQL, SQLite SQL, PostgreSQL values, SQLite values)
    type Case = (
        Value,
        &'static str,
        &'static str,
        Vec<SqlValue>,
        Vec<SqlValue>,
    );
    let cases: Vec<Case> = vec![
        (
            json!({"name": "x"}),
            r#"WHERE "name" = $1 ORDER BY "id" ASC"#,
            r#"WHERE "name" = ? ORDER BY "id" ASC"#,
            vec![s("x")],
            vec![s("x")],
        ),
        (
            json!({"name": {"eq": "x"}}),
            r#"WHERE "name" = $1 ORDER BY "id" ASC"#,
            r#"WHERE "name" = ? ORDER BY "id" ASC"#,
            vec![s("x")],
            vec![s("x")],
        ),
        (
            json!({"name": {"neq": "x"}}),
            r#"WHERE "name" <> $1 ORDER BY "id" ASC"#,
            r#"WHERE "name" <> ? ORDER BY "id" ASC"#,
            vec![s("x")],
            vec![s("x")],
        ),
        (
            json!({"status": {"gt": 1}}),
            r#"WHERE "status" > $1 ORDER BY "id" ASC"#,
            r#"WHERE "status" > ? ORDER BY "id" ASC"#,
            vec![SqlValue::Int(Some(1))],
            vec![SqlValue::Int(Some(1))],
        ),
        (
            json!({"status": {"gte": "PROVISIONING"}}),
            r#"WHERE "status" >= $1 ORDER BY "id" ASC"#,
            r#"WHERE "status" >= ? ORDER BY "id" ASC"#,
            vec![SqlValue::Int(Some(2))],
            vec![SqlValue::Int(Some(2))],
        ),
        (
            json!({"status": {"lt": "3"}}),
            r#"WHERE "status" < $1 ORDER BY "id" ASC"#,
            r#"WHERE "status" < ? ORDER BY "id" ASC"#,
            vec![SqlValue::Int(Some(3))],
            vec![SqlValue::Int(Some(3))],
        ),
        (
            json!({"createdOn": {"lte": "2026-01-01T01:00:00+01:00"}}),
            r#"WHERE "created_on" <= $1 ORDER BY "id" ASC"#,
            r#"WHERE "created_on" <= ? ORDER BY "id" ASC"#,
            vec![SqlValue::ChronoDateTimeUtc(Some(
                values::parse_timestamp("2026-01-01T00:00:00Z").unwrap(),
            ))],
            vec![s("2026-01-01T00:00:00.000Z")],
        ),
        (
            json!({"status": {"inq": [0, "1"]}}),
            r#"WHERE "status" IN ($1, $2) ORDER BY "id" ASC"#,
            r#"WHERE "status" IN (?, ?) ORDER BY "id" ASC"#,
            vec![SqlValue::Int(Some(0)), SqlValue::Int(Some(1))],
            vec![SqlValue::Int(Some(0)), SqlValue::Int(Some(1))],
        ),
        (
            json!({"key": {"nin": ["a", "b"]}}),
            r#"WHERE "key" NOT IN ($1, $2) ORDER BY "id" ASC"#,
            r#"WHERE "key" NOT IN (?, ?) ORDER BY "id" ASC"#,
            vec![s("a"), s("b")],
            vec![s("a"), s("b")],
        ),
        (
            json!({"key": {"inq": []}}),
            r#"WHERE 1 = 0 ORDER BY "id" ASC"#,
            r#"WHERE 1 = 0 ORDER BY "id" ASC"#,
            vec![],
            vec![],
        ),
        (
            json!({"key": {"nin": []}}),
            r#"WHERE 1 = 1 ORDER BY "id" ASC"#,
            r#"WHERE 1 = 1 ORDER BY "id" ASC"#,
            vec![],
            vec![],
        ),
        (
            json!({"status": {"between": [1, "DEPROVISIONING"]}}),
            r#"WHERE "status" BETWEEN $1 AND $2 ORDER BY "id" ASC"#,
            r#"WHERE "status" BETWEEN ? AND ? ORDER BY "id" ASC"#,
            vec![SqlValue::Int(Some(1)), SqlValue::Int(Some(4))],
            vec![SqlValue::Int(Some(1)), SqlValue::Int(Some(4))],
        ),
        (
            json!({"name": {"like": "Ac%"}}),
            r#"WHERE "name" LIKE $1 ESCAPE E'\\' ORDER BY "id" ASC"#,
            r#"WHERE "name" LIKE ? ESCAPE '\' ORDER BY "id" ASC"#,
            vec![s("Ac%")],
            vec![s("Ac%")],
        ),
        (
            json!({"name": {"nlike": "Ac%"}}),
            r#"WHERE "name" NOT LIKE $1 ESCAPE E'\\' ORDER BY "id" ASC"#,
            r#"WHERE "name" NOT LIKE ? ESCAPE '\' ORDER BY "id" ASC"#,
            vec![s("Ac%")],
            vec![s("Ac%")],
        ),
        (
            json!({"name": {"ilike": "AC%É"}}),
            r#"WHERE LOWER("name") LIKE $1 ESCAPE E'\\' ORDER BY "id" ASC"#,
            r#"WHERE LOWER("name") LIKE ? ESCAPE '\' ORDER BY "id" ASC"#,
            vec![s("ac%É")],
            vec![s("ac%É")],
        ),
        (
            json!({"name": {"nilike": "AC%"}}),
            r#"WHERE LOWER("name") NOT LIKE $1 ESCAPE E'\\' ORDER BY "id" ASC"#,
            r#"WHERE LOWER("name") NOT LIKE ? ESCAPE '\' ORDER BY "id" ASC"#,
            vec![s("ac%")],
            vec![s("ac%")],
        ),
        (
            json!({"leadId": null}),
            r#"WHERE "lead_id" IS NULL ORDER BY "id" ASC"#,
            r#"WHERE "lead_id" IS NULL ORDER BY "id" ASC"#,
            vec![],
            vec![],
        ),
        (
            json!({"leadId": {"neq": null}}),
            r#"WHERE "lead_id" IS NOT NULL ORDER BY "id" ASC"#,
            r#"WHERE "lead_id" IS NOT NULL ORDER BY "id" ASC"#,
            vec![],
            vec![],
        ),
        (
            json!({"id": "7F3C2A9E-1B4D-4C8E-9A6F-2D5E8B1C0F37"}),
            r#"WHERE "id" = $1 ORDER BY "id" ASC"#,
            r#"WHERE "id" = ? ORDER BY "id" ASC"#,
            vec![SqlValue::Uuid(Some(
                uuid::Uuid::parse_str("7f3c2a9e-1b4d-4c8e-9a6f-2d5e8b1c0f37").unwrap(),
            ))],
            vec![s("7f3c2a9e-1b4d-4c8e-9a6f-2d5e8b1c0f37")],
        ),
        (
            json!({"deleted": "false"}),
            r#"WHERE "deleted" = $1 ORDER BY "id" ASC"#,
            r#"WHERE "deleted" = ? ORDER BY "id" ASC"#,
            vec![SqlValue::Bool(Some(false))],
            vec![SqlValue::Bool(Some(false))],
        ),
        (
            json!({"domains": "acme.com"}),
            r#"WHERE CAST("domains" AS text[]) @> $1 ORDER BY "id" ASC"#,
            r#"WHERE "id" IN (SELECT "tenant_id" FROM "tenant_domains" WHERE "domain" = ?) ORDER BY "id" ASC"#,
            vec![one_item_array("acme.com")],
            vec![s("acme.com")],
        ),
        (
            json!({"domains": {"eq": "acme.com"}}),
            r#"WHERE CAST("domains" AS text[]) @> $1 ORDER BY "id" ASC"#,
            r#"WHERE "id" IN (SELECT "tenant_id" FROM "tenant_domains" WHERE "domain" = ?) ORDER BY "id" ASC"#,
            vec![one_item_array("acme.com")],
            vec![s("acme.com")],
        ),
    ];
    for (w, pg_sql, lite_sql, pg_values, lite_values) in cases {
        let [(pg, pv), (lite, lv)] = where_sql(&TENANTS, w.clone());
        assert_eq!(pg, pg_sql, "{w}");
        assert_eq!(lite, lite_sql, "{w}");
        assert_eq!(pv, pg_values, "{w}");
        assert_eq!(lv, lite_values, "{w}");
    }
}

#[test]
fn money_binds_exactly_per_backend() {
    let [(pg, pv), (lite, lv)] = where_sql(&INVOICES, json!({"amount": {"gt": "99.5"}}));
    assert_eq!(pg, r#"WHERE "amount" > $1 ORDER BY "id" ASC"#);
    assert_eq!(lite, r#"WHERE "amount" > ? ORDER BY "id" ASC"#);
    assert_eq!(
        pv,
        vec![SqlValue::Decimal(Some(rust_decimal::Decimal::new(995, 1)))]
    );
    assert_eq!(lv, vec![SqlValue::BigInt(Some(995_000))]);
    let [_, (_, lv)] = where_sql(&INVOICES, json!({"amount": 0.1}));
    assert_eq!(lv, vec![SqlValue::BigInt(Some(1_000))]);
}

#[test]
fn and_or_nest() {
    let [(pg, pv), (lite, lv)] = where_sql(
        &TENANTS,
        json!({
            "or": [
                {"key": "a"},
                {"and": [{"status": 0}, {"name": {"like": "b%"}}]},
            ],
            "leadId": null,
        }),
    );
    assert_eq!(
        pg,
        r#"WHERE ("key" = $1 OR ("status" = $2 AND "name" LIKE $3 ESCAPE E'\\')) AND "lead_id" IS NULL ORDER BY "id" ASC"#
    );
    assert_eq!(
        lite,
        r#"WHERE ("key" = ? OR ("status" = ? AND "name" LIKE ? ESCAPE '\')) AND "lead_id" IS NULL ORDER BY "id" ASC"#
    );
    assert_eq!(pv.len(), 3);
    assert_eq!(lv.len(), 3);

    let w = where_of(&TENANTS, json!({"name": {"gt": "a", "lt": "m"}})).unwrap();
    let Where::And(items) = &w else {
        panic!("{w:?}")
    };
    assert_eq!(items.len(), 2);

    // Depth: MAX_DEPTH levels are fine, one more is not.
    let mut deep = json!({"key": "a"});
    for _ in 0..MAX_DEPTH {
        deep = json!({ "and": [deep] });
    }
    assert!(where_of(&TENANTS, deep.clone()).is_ok());
    let deeper = json!({ "or": [deep] });
    assert_eq!(
        where_of(&TENANTS, deeper).unwrap_err(),
        "where is nested deeper than 8 levels of and/or"
    );
}

#[test]
fn apply_ands_with_existing_conditions() {
    let filter = filter_of(
        &TENANTS,
        json!({"where": {"or": [{"key": "a"}, {"key": "b"}]}}),
    )
    .unwrap();
    let mut stmt = select(&TENANTS);
    stmt.and_where(Expr::col("deleted").eq(false));
    apply(&filter, &mut stmt, Backend::Sqlite);
    let (sql, values) = stmt.build(SqliteQueryBuilder);
    assert!(
        sql.ends_with(r#"WHERE "deleted" = ? AND ("key" = ? OR "key" = ?) ORDER BY "id" ASC"#),
        "{sql}"
    );
    assert_eq!(values.0.len(), 3);

    // An empty where adds nothing.
    let empty = filter_of(&TENANTS, json!({"where": {}})).unwrap();
    assert!(empty.where_.is_none());
    let [(pg, _), _] = render(&TENANTS, &empty);
    assert_eq!(pg, r#"ORDER BY "id" ASC"#);
    assert!(parse_where(&TENANTS, &Value::Null).unwrap().is_empty());
    let w = parse_where(&TENANTS, &json!({})).unwrap();
    assert!(w.is_empty());
    assert!(condition(&w, Backend::Postgres).is_empty());
}

#[test]
fn hostile_values_are_bound_never_inlined() {
    let hostile = "x' OR 1=1 --";
    let filter = filter_of(
        &TENANTS,
        json!({"where": {"or": [
            {"name": hostile},
            {"key": {"inq": [hostile]}},
            {"spocUserId": {"like": hostile}},
            {"name": {"ilike": hostile}},
            {"domains": hostile},
        ]}}),
    )
    .unwrap();
    for (sql, values) in render(&TENANTS, &filter) {
        assert!(!sql.contains("1=1"), "{sql}");
        assert!(!sql.contains("x'"), "{sql}");
        let hostile = |v: &SqlValue| matches!(v, SqlValue::String(Some(s)) if s.contains("1=1"));
        let bound = values
            .iter()
            .filter(|v| match v {
                SqlValue::Array(_, Some(items)) => items.iter().any(hostile),
                v => hostile(v),
            })
            .count();
        assert_eq!(bound, 5, "{values:?}");
    }
    // A hostile field or relation name is an error, never SQL.
    assert_eq!(
        where_of(&TENANTS, json!({"name\" OR 1=1 --": 1})).unwrap_err(),
        r#"unknown field "name\" OR 1=1 --" in where"#
    );
    assert!(filter_of(&TENANTS, json!({"order": "name; DROP TABLE tenants"})).is_err());
}

#[test]
fn order_limit_skip_render() {
    let filter = filter_of(
        &TENANTS,
        json!({"order": ["status DESC", "name"], "limit": 5, "skip": 10}),
    )
    .unwrap();
    let [(pg, pv), (lite, lv)] = render(&TENANTS, &filter);
    assert_eq!(
        pg,
        r#"ORDER BY "status" DESC NULLS FIRST, "name" ASC NULLS LAST, "id" ASC LIMIT $1 OFFSET $2"#
    );
    assert_eq!(
        lite,
        r#"ORDER BY "status" DESC NULLS FIRST, "name" ASC NULLS LAST, "id" ASC LIMIT ? OFFSET ?"#
    );
    assert_eq!(
        pv,
        vec![
            SqlValue::BigUnsigned(Some(5)),
            SqlValue::BigUnsigned(Some(10))
        ]
    );
    assert_eq!(pv, lv);

    // The tie-breaker follows the last key's direction (one index serves both ways).
    let filter = filter_of(&TENANTS, json!({"order": ["name", "createdOn DESC"]})).unwrap();
    let [(pg, _), (lite, _)] = render(&TENANTS, &filter);
    let expected = r#"ORDER BY "name" ASC NULLS LAST, "created_on" DESC NULLS FIRST, "id" DESC"#;
    assert_eq!(pg, expected);
    assert_eq!(lite, expected);

    // Ordering by id already: no second tie-breaker.
    let filter = filter_of(&TENANTS, json!({"order": "id DESC"})).unwrap();
    let [(pg, _), _] = render(&TENANTS, &filter);
    assert_eq!(pg, r#"ORDER BY "id" DESC NULLS FIRST"#);

    // Skip without limit: SQLite needs a LIMIT before OFFSET.
    let filter = filter_of(&TENANTS, json!({"offset": 3})).unwrap();
    let [(pg, pv), (lite, _)] = render(&TENANTS, &filter);
    assert_eq!(pg, r#"ORDER BY "id" ASC LIMIT $1 OFFSET $2"#);
    assert_eq!(lite, r#"ORDER BY "id" ASC LIMIT ? OFFSET ?"#);
    assert_eq!(
        pv,
        vec![
            SqlValue::BigUnsigned(Some(i64::MAX as u64)),
            SqlValue::BigUnsigned(Some(3))
        ]
    );
}

/// A one-item text array, as `domains @> …` binds the item on PostgreSQL.
fn one_item_array(item: &str) -> SqlValue {
    SqlValue::Array(
        sea_query::ArrayType::String,
        Some(Box::new(vec![SqlValue::String(Some(item.to_string()))])),
    )
}
