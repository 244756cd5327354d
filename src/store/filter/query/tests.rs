use sea_query::Value as SqlValue;
use serde_json::{Value, json};

use super::*;
use crate::model::{LEADS, TENANTS};
use crate::store::filter::tests::render;
use crate::store::filter::{Op, Where, parse_filter, parse_where};

fn qp(raw: &str, name: &str) -> Result<Option<Value>, String> {
    query_param(Some(raw), name).map_err(|e| e.0)
}

#[test]
fn query_param_reads_both_forms() {
    let cases: Vec<(&str, &str, Option<Value>)> = vec![
        ("", "filter", None),
        ("other=1", "filter", None),
        ("filter=", "filter", None),
        ("filterx[a]=1", "filter", None),
        (
            "filter=%7B%22where%22%3A%7B%22status%22%3A0%7D%7D",
            "filter",
            Some(json!({"where": {"status": 0}})),
        ),
        (
            r#"filter={"where":{"name":"a b"}}"#,
            "filter",
            Some(json!({"where": {"name": "a b"}})),
        ),
        (
            "filter[where][status]=0&filter[limit]=5",
            "filter",
            Some(json!({"where": {"status": "0"}, "limit": "5"})),
        ),
        (
            "filter[where][or][0][key]=a&filter[where][or][1][key]=b",
            "filter",
            Some(json!({"where": {"or": [{"key": "a"}, {"key": "b"}]}})),
        ),
        (
            "filter[where][status][inq][0]=0&filter[where][status][inq][1]=1",
            "filter",
            Some(json!({"where": {"status": {"inq": ["0", "1"]}}})),
        ),
        (
            "filter[where][status][inq]=0&filter[where][status][inq]=1&filter[where][status][inq]=2",
            "filter",
            Some(json!({"where": {"status": {"inq": ["0", "1", "2"]}}})),
        ),
        (
            "filter[order][]=name&filter[order][]=key%20DESC",
            "filter",
            Some(json!({"order": ["name", "key DESC"]})),
        ),
        (
            "filter[order][0]=name%20DESC&filter[fields][name]=true&filter[include][0][relation]=contacts",
            "filter",
            Some(json!({"order": ["name DESC"], "fields": {"name": "true"},
                        "include": [{"relation": "contacts"}]})),
        ),
        (
            "filter%5Bwhere%5D%5Bname%5D%5Blike%5D=Ac%25&filter[order]=name+ASC",
            "filter",
            Some(json!({"where": {"name": {"like": "Ac%"}}, "order": "name ASC"})),
        ),
        (
            "filter[where][or][10][key]=b&filter[where][or][2][key]=a",
            "filter",
            Some(json!({"where": {"or": [{"key": "a"}, {"key": "b"}]}})),
        ),
        (
            "where[status]=1&filter[limit]=2",
            "where",
            Some(json!({"status": "1"})),
        ),
        (
            "where=%7B%22key%22%3A%22a%22%7D",
            "where",
            Some(json!({"key": "a"})),
        ),
    ];
    for (raw, name, expected) in cases {
        assert_eq!(qp(raw, name), Ok(expected), "{raw}");
    }
    assert_eq!(query_param(None, "filter"), Ok(None));
}

#[test]
fn query_param_errors() {
    let cases = [
        (
            "filter={bad",
            "\"filter\" is not valid JSON: key must be a string at line 1 column 2",
        ),
        (
            "where=nope",
            "\"where\" is not valid JSON: expected ident at line 1 column 2",
        ),
        ("filter={}&filter={}", "\"filter\" is given more than once"),
        (
            "filter={}&filter[limit]=1",
            "\"filter\" is given both as JSON and in bracket form",
        ),
        ("filter[where", "malformed parameter name \"filter[where\""),
        (
            "filter[where]x=1",
            "malformed parameter name \"filter[where]x\"",
        ),
        (
            "filter[wh[ere]=1",
            "malformed parameter name \"filter[wh[ere]\"",
        ),
        (
            "filter[where]=1&filter[where][name]=a",
            "conflicting values for filter[where]",
        ),
        (
            "filter[where][name]=a&filter[where]=1",
            "conflicting values for filter[where]",
        ),
    ];
    for (raw, expected) in cases {
        let name = if raw.starts_with("where") {
            "where"
        } else {
            "filter"
        };
        assert_eq!(qp(raw, name), Err(expected.to_string()), "{raw}");
    }
    assert_eq!(
        qp(
            "filter[order][18446744073709551615]=a&filter[order][]=b",
            "filter"
        ),
        Err("conflicting values for filter[order]".to_string())
    );
    assert_eq!(
        qp(
            "filter[order][18446744073709551615]=a&filter[order]=b",
            "filter"
        ),
        Err("conflicting values for filter[order]".to_string())
    );
    let deep = format!("filter{}=1", "[a]".repeat(MAX_BRACKET_SEGMENTS + 1));
    assert!(qp(&deep, "filter").is_err());
    let many: Vec<String> = (0..=MAX_BRACKET_ENTRIES)
        .map(|i| format!("filter[where][key][inq][{i}]=a"))
        .collect();
    assert!(qp(&many.join("&"), "filter").is_err());
}

#[test]
fn bracket_form_end_to_end() {
    let raw = "filter[where][status]=0&filter[where][isValidated]=true&filter[limit]=5\
               &filter[skip]=10&filter[order][0]=companyName%20DESC&filter[fields][email]=true\
               &filter[where][or][0][email][like]=%25%40acme.com&filter[where][or][1][firstName]=O%27Brien";
    let v = query_param(Some(raw), "filter").unwrap().unwrap();
    // LEADS has no status: the error names it.
    assert_eq!(
        parse_filter(&LEADS, &v).unwrap_err().0,
        "unknown field \"status\" in where"
    );
    let raw = raw.replace("filter[where][status]=0&", "");
    let v = query_param(Some(&raw), "filter").unwrap().unwrap();
    let f = parse_filter(&LEADS, &v).unwrap();
    assert_eq!((f.limit, f.skip), (Some(5), Some(10)));
    assert_eq!(f.fields.unwrap()[0].name, "email");
    let [(pg, pv), (_, lv)] = render(&LEADS, &parse_filter(&LEADS, &v).unwrap());
    assert_eq!(
        pg,
        r#"WHERE "is_validated" = $1 AND ("email" LIKE $2 ESCAPE E'\\' OR "first_name" = $3) ORDER BY "company_name" DESC NULLS FIRST, "id" DESC LIMIT $4 OFFSET $5"#
    );
    assert_eq!(pv[0], SqlValue::Bool(Some(true)));
    assert_eq!(pv[1], SqlValue::String(Some("%@acme.com".into())));
    assert_eq!(pv[2], SqlValue::String(Some("O'Brien".into())));
    assert_eq!(pv.len(), lv.len());

    // Enum and inq from strings.
    let raw = "filter[where][status][inq][0]=0&filter[where][status][inq][1]=ACTIVE&filter[where][status][inq][2]=5";
    let v = query_param(Some(raw), "filter").unwrap().unwrap();
    let f = parse_filter(&TENANTS, &v).unwrap();
    let [(_, pv), _] = render(&TENANTS, &f);
    assert_eq!(
        pv,
        vec![
            SqlValue::Int(Some(0)),
            SqlValue::Int(Some(0)),
            SqlValue::Int(Some(5))
        ]
    );
    // A lone inq value is a one-element list.
    let v = query_param(Some("where[status][inq]=1"), "where")
        .unwrap()
        .unwrap();
    let w = parse_where(&TENANTS, &v).unwrap();
    assert!(matches!(&w, Where::Cmp { op: Op::Inq, value, .. } if value.values().len() == 1));
    // The include scope in bracket form.
    let raw = "filter[include][0][relation]=contacts&filter[include][0][scope][where][isPrimary]=1\
               &filter[include][0][scope][limit]=3";
    let v = query_param(Some(raw), "filter").unwrap().unwrap();
    let f = parse_filter(&TENANTS, &v).unwrap();
    assert_eq!(f.include[0].scope.limit, Some(3));
    assert!(f.include[0].scope.where_.is_some());
}
