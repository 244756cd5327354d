//! The filter engine as a property: random valid filters give the same rows on SQLite and on
//! PostgreSQL, and no input at all to `filter`/`where` gives a 5xx or brings the server down.
//!
//! `random_filters_give_the_same_rows_on_both_databases` starts one server per database, seeds
//! both with the same data through the API and compares the answers of both to the filters of
//! `tms::store::filter::random_filter`/`random_where`. Without PostgreSQL it is skipped (and
//! fails under `CI=true`). The RNG seed is printed; `TMS_PARITY_SEED=<n>` replays a run and
//! `TMS_PARITY_CASES=<n>` changes the number of filters (300 by default).
//!
//! `no_filter_input_gives_a_server_error` sends arbitrary strings, arbitrary JSON and random
//! bracket-form query strings as `filter`/`where` to every collection (proptest, 250 cases;
//! `TMS_FUZZ_CASES=<n>` changes that) on SQLite and, when available, PostgreSQL.

mod common;
mod rest_support;

use std::collections::HashMap;
use std::time::{SystemTime, UNIX_EPOCH};

use common::*;
use proptest::prelude::*;
use proptest::test_runner::{Config as ProptestConfig, TestCaseError, TestRunner};
use rand::SeedableRng;
use rand::rngs::StdRng;
use rest_support::*;
use tms::model::{self, FieldType, Resource};
use tms::store::filter::{MAX_INCLUDE_DEPTH, SAMPLE_TEXTS, random_filter, random_where};

/// A collection under test: its path, its model and the field that identifies a row across
/// the two servers (ids differ between them; these business keys are unique in the seed).
struct Collection {
    path: &'static str,
    resource: &'static Resource,
}

const COLLECTIONS: [Collection; 5] = [
    Collection {
        path: "/tenants",
        resource: &model::TENANTS,
    },
    Collection {
        path: "/contacts",
        resource: &model::CONTACTS,
    },
    Collection {
        path: "/invoices",
        resource: &model::INVOICES,
    },
    Collection {
        path: "/tenant-configs",
        resource: &model::TENANT_CONFIGS,
    },
    Collection {
        path: "/leads",
        resource: &model::LEADS,
    },
];

/// The field whose value is unique among the seeded rows of `resource` (`None` for addresses,
/// which are only reached through to-one relations, where order does not matter).
fn business_key(resource: &Resource) -> Option<&'static str> {
    match resource.table {
        "tenants" => Some("key"),
        "contacts" | "leads" => Some("email"),
        "invoices" => Some("invoiceFile"),
        "tenant_mgmt_configs" => Some("configKey"),
        "resources" => Some("externalIdentifier"),
        _ => None,
    }
}

// ---------------------------------------------------------------------------------------------
// The seed: the same rows on both servers, written in the same order
// ---------------------------------------------------------------------------------------------

/// Non-empty sample texts (the generator's values, so that its filters match something).
fn names() -> Vec<&'static str> {
    SAMPLE_TEXTS
        .iter()
        .copied()
        .filter(|s| !s.is_empty())
        .collect()
}

const CALLERS: [&str; 4] = ["acme", "Acme", "zeta", "a"];
/// Domains from the generator's samples (valid hostnames only).
const DOMAINS: [&str; 3] = ["acme.com", "a.acme.com", "beta.io"];
const TIMESTAMPS: [&str; 13] = [
    "2025-12-31T23:59:59.999Z",
    "2026-01-01T00:00:00.000Z",
    "2026-01-01T00:00:00.001Z",
    "2026-01-01T01:00:00+01:00",
    "2026-06-15T12:30:00.5Z",
    "2026-06-15T12:30:00.499Z",
    "2026-06-15T12:30:00.501Z",
    "2025-12-31T23:59:59.998Z",
    "2026-01-02",
    "2027-03-01T00:00:00Z",
    "2020-01-01",
    "2026-06-15",
    "2026-01-01",
];
const AMOUNTS: [&str; 13] = [
    "0", "5", "1.5", "99.9999", "100", "1000000", "100.0001", "0.0001", "2.25", "99.9998", "1.5",
    "0", "50",
];

/// Seeds `app`. Every write is a separate request a few milliseconds after the previous one, so
/// that `createdOn`/`modifiedOn` follow the same order on both servers without ties.
async fn seed(app: &TestApp) {
    let names = names();
    let n = names.len();
    let admin = app.admin_token();
    let mut tenants = Vec::new();
    for i in 0..12 {
        let key = match i {
            0 => "a".to_string(),
            1 => "acme".to_string(),
            2 => "zeta".to_string(),
            _ => format!("t{i:02}"),
        };
        let mut domains = vec![DOMAINS[i % 3].to_string()];
        if i % 2 == 0 {
            domains.push(format!("t{i}.example"));
        }
        let mut contact = json!({
            "firstName": names[(i + 3) % n], "lastName": names[(i + 7) % n],
            "email": format!("c{i}@{}", domains[0]), "isPrimary": true,
        });
        if let Some(kind) = [Some("admin"), None, Some("ärger")][i % 3] {
            contact["type"] = json!(kind);
        }
        let mut body =
            json!({"name": names[i % n], "key": key, "domains": domains, "contact": contact});
        if i % 3 == 0 {
            body["address"] = json!(names[(i + 1) % n]);
            body["city"] = json!(names[(i + 2) % n]);
            body["country"] = json!(names[(i + 3) % n]);
        }
        let tenant = onboard(app, &admin_as(app, CALLERS[i % 4]), body).await;
        let id = id_of(&tenant);
        tick().await;
        let spoc = (i % 4 != 3).then(|| SAMPLE_TEXTS[(i * 5) % SAMPLE_TEXTS.len()]);
        let editor = admin_as(app, CALLERS[(i + 1) % 4]);
        if patch_status_and_spoc(app, &editor, &id, (i % 6) as i64, spoc).await {
            tick().await;
        }
        tenants.push((id, domains[0].clone()));
    }
    for (i, (tenant, domain)) in tenants.iter().enumerate().filter(|(i, _)| i % 2 == 0) {
        for j in 0..2 {
            let mut body = json!({
                "firstName": names[(i + j) % n], "lastName": names[(i * 3 + j) % n],
                "email": format!("x{i}{j}@{domain}"), "isPrimary": j == 1, "tenantId": tenant,
            });
            if let Some(kind) = [None, Some(""), Some("acme"), Some("Acme"), Some("_")][(i + j) % 5]
            {
                body["type"] = json!(kind);
            }
            create(
                app,
                &admin_as(app, CALLERS[(i + j) % 4]),
                "/contacts",
                &body,
            )
            .await;
            tick().await;
        }
    }
    let gone = create(
        app,
        &admin,
        "/contacts",
        &json!({"firstName": "acme", "lastName": "a", "email": "gone@acme.com",
                "isPrimary": false, "tenantId": tenants[0].0}),
    )
    .await;
    tick().await;
    delete_ok(app, &admin, &format!("/contacts/{}", id_of(&gone))).await;
    tick().await;

    let statuses = [
        json!(0),
        json!(1),
        json!(2),
        json!("PAID"),
        json!("pending"),
        json!("cancelled"),
    ];
    for (k, file) in SAMPLE_TEXTS.iter().enumerate() {
        // CLF keeps all four decimal places; USD and JPY round (money is never negative).
        let currency = ["USD", "CLF", "JPY"][k % 3];
        let body = json!({
            "invoiceFile": file, "tenantId": tenants[k % 11].0, "amount": AMOUNTS[k],
            "currencyCode": currency,
            "startDate": TIMESTAMPS[k], "endDate": TIMESTAMPS[(k + 3) % 13],
            "dueDate": TIMESTAMPS[(k + 6) % 13],
            "status": statuses[k % 6],
        });
        let row = create(app, &admin_as(app, CALLERS[k % 4]), "/invoices", &body).await;
        tick().await;
        if k == 12 {
            delete_ok(app, &admin, &format!("/invoices/{}", id_of(&row))).await;
            tick().await;
        }
    }
    for (i, key) in ["a", "acme", "Acme", "ACME", "_", "50%", "zeta", "keycloak"]
        .iter()
        .enumerate()
    {
        let body = json!({"configKey": key, "configValue": {"n": i, "s": names[i]}, "tenantId": tenants[i % 11].0});
        create(
            app,
            &admin_as(app, CALLERS[i % 4]),
            "/tenant-configs",
            &body,
        )
        .await;
        tick().await;
    }
    for i in 0..6 {
        let mut body = json!({
            "firstName": names[i], "lastName": names[(i + 4) % n], "companyName": names[(i + 8) % n],
            "email": format!("lead{i}@{}", DOMAINS[i % 3]),
        });
        if i % 2 == 0 {
            body["address"] = json!({"city": names[i], "country": names[(i + 1) % n]});
        }
        create_lead(app, &body).await;
        tick().await;
    }
    // A deleted tenant whose contacts, invoices and configs stay.
    delete_ok(app, &admin, &format!("/tenants/{}", tenants[11].0)).await;
}

// ---------------------------------------------------------------------------------------------
// Making a random filter comparable across two servers
// ---------------------------------------------------------------------------------------------

/// Whether the rows `where_` selects depend on the generated ids: an ordering comparison
/// (`gt`… `between`) on a UUID field selects a different subset of the random ids of each server.
/// Equality, `inq`/`nin` and null tests on ids select the same rows on both (the sample UUIDs
/// never equal a generated one).
fn where_uses_id_order(resource: &Resource, where_: &Value) -> bool {
    let Some(obj) = where_.as_object() else {
        return false;
    };
    obj.iter().any(|(key, value)| match key.as_str() {
        "and" | "or" => value
            .as_array()
            .is_some_and(|items| items.iter().any(|i| where_uses_id_order(resource, i))),
        name => {
            resource
                .field(name)
                .is_some_and(|f| f.ty == FieldType::Uuid)
                && value.as_object().is_some_and(|ops| {
                    ops.keys()
                        .any(|op| ["gt", "gte", "lt", "lte", "between"].contains(&op.as_str()))
                })
        }
    })
}

fn filter_uses_id_order(resource: &Resource, filter: &Value) -> bool {
    filter
        .get("where")
        .is_some_and(|w| where_uses_id_order(resource, w))
        || includes(resource, filter)
            .into_iter()
            .any(|(target, scope)| scope.is_some_and(|s| filter_uses_id_order(target, s)))
}

/// The included relations of a filter with their target model and scope.
fn includes<'a>(
    resource: &Resource,
    filter: &'a Value,
) -> Vec<(&'static Resource, Option<&'a Value>)> {
    let items: Vec<&Value> = match filter.get("include") {
        Some(Value::Array(items)) => items.iter().collect(),
        Some(single) => vec![single],
        None => vec![],
    };
    items
        .into_iter()
        .filter_map(|item| {
            let (name, scope) = match item {
                Value::String(name) => (name.as_str(), None),
                other => (other.get("relation")?.as_str()?, other.get("scope")),
            };
            let relation = resource.relation(name)?;
            Some(((relation.target)(), scope))
        })
        .collect()
}

fn is_paged(filter: &Value) -> bool {
    ["limit", "skip", "offset"].iter().any(|k| {
        filter
            .get(*k)
            .is_some_and(|v| !v.is_null() && *v != json!(0))
    })
}

/// Makes the order of `filter` (and of its include scopes) total on values that are the same on
/// both servers:
///
/// - order entries on UUID fields are dropped: ids are generated independently by each server,
///   so ordering by them would order the rows differently;
/// - the business key (unique in the seed) is appended, so that ties in the requested order are
///   broken the same way on both servers. The servers themselves break ties by `id`, which
///   differs between them; with the key appended that tie-breaker is never reached.
///
/// A top-level filter without order and without paging is left unordered and its rows are then
/// compared as a multiset (returns `false`); otherwise rows are compared in order (`true`).
/// Timestamps (`createdOn`, `modifiedOn`) may stay in the order: the seed writes every row in
/// the same sequence on both servers with distinct milliseconds, so they order the same.
fn make_order_total(resource: &'static Resource, filter: &mut Value, top: bool) -> bool {
    let Some(obj) = filter.as_object_mut() else {
        return false;
    };
    let mut order: Vec<String> = match obj.get("order") {
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(|i| i.as_str().map(str::to_string))
            .collect(),
        Some(Value::String(s)) => s.split(',').map(|e| e.trim().to_string()).collect(),
        _ => vec![],
    };
    order.retain(|entry| {
        let name = entry.split_whitespace().next().unwrap_or_default();
        resource.field(name).is_none_or(|f| f.ty != FieldType::Uuid)
    });
    let ordered = !top || !order.is_empty() || is_paged(&Value::Object(obj.clone()));
    if ordered && let Some(key) = business_key(resource) {
        let has_key = order
            .iter()
            .any(|e| e.split_whitespace().next() == Some(key));
        if !has_key {
            order.push(key.to_string());
        }
    }
    if order.is_empty() {
        obj.remove("order");
    } else {
        obj.insert("order".into(), json!(order));
    }
    if let Some(include) = obj.get_mut("include") {
        let items: Vec<&mut Value> = match include {
            Value::Array(items) => items.iter_mut().collect(),
            single => vec![single],
        };
        for item in items {
            let Some(name) = item
                .get("relation")
                .and_then(Value::as_str)
                .map(str::to_string)
            else {
                continue;
            };
            let Some(relation) = resource.relation(&name) else {
                continue;
            };
            let target = (relation.target)();
            let scope = item
                .as_object_mut()
                .expect("an include with a relation is an object")
                .entry("scope")
                .or_insert_with(|| json!({}));
            make_order_total(target, scope, false);
        }
    }
    ordered
}

/// A row without what legitimately differs between the two servers: ids (and references to
/// them) and the instants of writes. Included relations are normalised recursively.
fn normalise(resource: &'static Resource, row: &Value) -> Value {
    let Some(obj) = row.as_object() else {
        return row.clone();
    };
    let mut out = serde_json::Map::new();
    for (key, value) in obj {
        if let Some(relation) = resource.relation(key) {
            let target = (relation.target)();
            let value = match value {
                Value::Array(items) => {
                    Value::Array(items.iter().map(|i| normalise(target, i)).collect())
                }
                other => normalise(target, other),
            };
            out.insert(key.clone(), value);
            continue;
        }
        let differs = resource.field(key).is_some_and(|f| f.ty == FieldType::Uuid)
            || ["createdOn", "modifiedOn", "deletedOn"].contains(&key.as_str());
        if !differs {
            out.insert(key.clone(), value.clone());
        }
    }
    Value::Object(out)
}

fn normalise_rows(resource: &'static Resource, rows: &Value, ordered: bool) -> Vec<Value> {
    let mut rows: Vec<Value> = rows
        .as_array()
        .unwrap_or_else(|| panic!("not a list: {rows}"))
        .iter()
        .map(|r| normalise(resource, r))
        .collect();
    if !ordered {
        rows.sort_by_key(|r| r.to_string());
    }
    rows
}

fn parity_seed() -> u64 {
    std::env::var("TMS_PARITY_SEED")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or_else(|| {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(42)
        })
}

fn parity_cases() -> usize {
    std::env::var("TMS_PARITY_CASES")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(300)
}

/// Cut for failure messages.
fn cut(v: &impl std::fmt::Display) -> String {
    let s = v.to_string();
    if s.len() > 3000 {
        format!(
            "{}…",
            &s[..s.char_indices().nth(3000).map_or(s.len(), |(i, _)| i)]
        )
    } else {
        s
    }
}

async fn get_both(
    apps: [&TestApp; 2],
    tokens: &[String; 2],
    path: &str,
) -> [(StatusCode, Value); 2] {
    let (a, b) = tokio::join!(
        apps[0].get(path, Some(&tokens[0])),
        apps[1].get(path, Some(&tokens[1]))
    );
    [a, b]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_filters_give_the_same_rows_on_both_databases() {
    let test = "random_filters_give_the_same_rows_on_both_databases";
    if !db_available(Db::Postgres, test) {
        return;
    }
    let overrides = [("PUBLIC_API_MAX_ATTEMPTS", "1000000")];
    let lite = TestApp::spawn_with(Db::Sqlite, &overrides).await;
    let pg = TestApp::spawn_with(Db::Postgres, &overrides).await;
    seed(&lite).await;
    seed(&pg).await;
    let apps = [&lite, &pg];
    let tokens = [lite.admin_token(), pg.admin_token()];

    // The seed is the same on both: every collection, in full, compares equal.
    for c in &COLLECTIONS {
        let [(s1, a), (s2, b)] = get_both(apps, &tokens, c.path).await;
        assert_eq!((s1.as_u16(), s2.as_u16()), (200, 200), "{}", c.path);
        assert_eq!(
            normalise_rows(c.resource, &a, false),
            normalise_rows(c.resource, &b, false),
            "the seeds differ on {}",
            c.path
        );
        assert!(
            a.as_array().is_some_and(|r| r.len() >= 6),
            "{}: {a}",
            c.path
        );
    }

    let seed = parity_seed();
    let cases = parity_cases();
    eprintln!("filter parity: seed {seed} (rerun with TMS_PARITY_SEED={seed}), {cases} filters");
    let mut rng = StdRng::seed_from_u64(seed);
    let (mut non_empty, mut redrawn, mut compared_in_order) = (0, 0, 0);
    for case in 0..cases {
        let c = &COLLECTIONS[case % COLLECTIONS.len()];
        let generated = loop {
            let f = random_filter(c.resource, &mut rng, MAX_INCLUDE_DEPTH);
            if !filter_uses_id_order(c.resource, &f) {
                break f;
            }
            redrawn += 1;
        };
        let mut filter = generated.clone();
        let ordered = make_order_total(c.resource, &mut filter, true);
        compared_in_order += usize::from(ordered);
        let what = format!(
            "seed {seed}, case {case}: GET {}?filter={filter} (generated {generated})",
            c.path
        );
        let [(s1, a), (s2, b)] = get_both(apps, &tokens, &with_filter(c.path, &filter)).await;
        assert_eq!(s1, 200, "SQLite: {what}: {}", cut(&a));
        assert_eq!(s2, 200, "PostgreSQL: {what}: {}", cut(&b));
        let (rows_a, rows_b) = (
            normalise_rows(c.resource, &a, ordered),
            normalise_rows(c.resource, &b, ordered),
        );
        assert_eq!(
            rows_a.len(),
            rows_b.len(),
            "{what}: {} rows on SQLite, {} on PostgreSQL\nSQLite: {}\nPostgreSQL: {}",
            rows_a.len(),
            rows_b.len(),
            cut(&a),
            cut(&b)
        );
        for (i, (x, y)) in rows_a.iter().zip(&rows_b).enumerate() {
            assert_eq!(
                x, y,
                "{what}: row {i} differs (SQLite left, PostgreSQL right)"
            );
        }
        non_empty += usize::from(!rows_a.is_empty());

        // count with the filter's where agrees on both, and with the list when it is unpaged.
        let where_ = filter.get("where").cloned().unwrap_or(json!({}));
        let [(s1, ca), (s2, cb)] = get_both(apps, &tokens, &count_path(c.path, &where_)).await;
        assert_eq!(
            (s1.as_u16(), s2.as_u16()),
            (200, 200),
            "{what}: count {ca} / {cb}"
        );
        assert_eq!(ca, cb, "{what}: count differs");
        if !is_paged(&filter) {
            assert_eq!(
                ca["count"],
                json!(rows_a.len()),
                "{what}: count and list disagree"
            );
        }

        // And a deeper random where through count alone.
        let where_ = loop {
            let w = random_where(c.resource, &mut rng, 4);
            if !where_uses_id_order(c.resource, &w) {
                break w;
            }
            redrawn += 1;
        };
        let path = count_path(c.path, &where_);
        let [(s1, ca), (s2, cb)] = get_both(apps, &tokens, &path).await;
        let what = format!(
            "seed {seed}, case {case}: GET {}/count?where={where_}",
            c.path
        );
        assert_eq!(s1, 200, "SQLite: {what}: {ca}");
        assert_eq!(s2, 200, "PostgreSQL: {what}: {cb}");
        assert_eq!(
            ca, cb,
            "{what}: count differs (SQLite left, PostgreSQL right)"
        );
    }
    eprintln!(
        "filter parity: {cases} filters, {non_empty} with rows, {compared_in_order} compared in \
         order, {redrawn} redrawn for ordering comparisons on ids"
    );
    assert!(
        non_empty * 4 >= cases,
        "too few filters selected anything: {non_empty} of {cases}"
    );
}

// ---------------------------------------------------------------------------------------------
// Fuzzing filter and where: never a 5xx
// ---------------------------------------------------------------------------------------------

/// Words the filter parser knows, so that random inputs get past the first checks.
const VOCABULARY: &[&str] = &[
    "where",
    "fields",
    "order",
    "limit",
    "skip",
    "offset",
    "include",
    "relation",
    "scope",
    "and",
    "or",
    "eq",
    "neq",
    "gt",
    "gte",
    "lt",
    "lte",
    "inq",
    "nin",
    "between",
    "like",
    "nlike",
    "ilike",
    "nilike",
    "regexp",
    "exists",
    "id",
    "name",
    "key",
    "status",
    "domains",
    "leadId",
    "addressId",
    "spocUserId",
    "createdOn",
    "modifiedOn",
    "deleted",
    "createdBy",
    "email",
    "firstName",
    "isPrimary",
    "type",
    "tenantId",
    "amount",
    "currencyCode",
    "startDate",
    "dueDate",
    "configKey",
    "configValue",
    "isValidated",
    "contacts",
    "resources",
    "lead",
    "address",
    "tenant",
    "metadata",
    "ASC",
    "DESC",
    "name DESC",
    "status ASC, key",
    "0",
    "1",
    "-1",
    "1e400",
    "null",
    "true",
    "%",
    "_",
    "\\",
    "ACTIVE",
    "PAID",
    "2026-01-01",
    "2026-13-45T99:99:99Z",
    "00000000-0000-4000-8000-000000000001",
    "acme.com",
    "",
];

fn word() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => prop::sample::select(VOCABULARY).prop_map(str::to_string),
        1 => "\\PC{0,8}",
        1 => any::<String>(),
    ]
}

fn json_leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        (-1000i64..1000).prop_map(Value::from),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        Just(json!(1e300)),
        Just(json!(-0.0)),
        Just(json!(0.00001)),
        word().prop_map(Value::from),
    ]
}

fn json_value() -> impl Strategy<Value = Value> {
    json_leaf().prop_recursive(5, 64, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((word(), inner), 0..6)
                .prop_map(|entries| Value::Object(entries.into_iter().collect())),
        ]
    })
}

/// How a filter input is written into the query string.
#[derive(Debug, Clone)]
enum Input {
    /// Any text, URL-encoded, as `filter=`/`where=`.
    Text(String),
    /// A JSON value, serialised and URL-encoded.
    Json(Value),
    /// A JSON value cut short (malformed JSON).
    Truncated(Value, prop::sample::Index),
    /// Bracket form: `param[seg][seg]…=value` entries; brackets sent raw or percent-encoded.
    Brackets(Vec<(Vec<String>, String)>, bool),
    /// A whole query string of printable characters, sent almost as is.
    Raw(String),
}

impl Input {
    /// The query string for parameter `param` (`filter` or `where`).
    fn query(&self, param: &str) -> String {
        match self {
            Input::Text(s) => format!("{param}={}", enc(s)),
            Input::Json(v) => format!("{param}={}", q(v)),
            Input::Truncated(v, at) => {
                let text = v.to_string();
                let cut: String = text
                    .chars()
                    .take(at.index(text.chars().count() + 1))
                    .collect();
                format!("{param}={}", enc(&cut))
            }
            Input::Brackets(entries, raw) => entries
                .iter()
                .map(|(segments, value)| {
                    let (open, close) = if *raw { ("[", "]") } else { ("%5B", "%5D") };
                    let key: String = segments
                        .iter()
                        .map(|s| format!("{open}{}{close}", enc(s)))
                        .collect();
                    format!("{param}{key}={}", enc(value))
                })
                .collect::<Vec<_>>()
                .join("&"),
            Input::Raw(s) => s.replace('%', "%25").replace('#', "%23").replace(' ', "+"),
        }
    }
}

fn input() -> impl Strategy<Value = Input> {
    let segment = prop_oneof![
        4 => prop::sample::select(VOCABULARY).prop_map(str::to_string),
        2 => (0usize..4).prop_map(|i| i.to_string()),
        1 => Just(String::new()),
        1 => "\\PC{0,6}",
    ];
    let entry = (prop::collection::vec(segment, 0..6), word());
    prop_oneof![
        2 => any::<String>().prop_map(Input::Text),
        2 => "[\\[\\]{}\":,a-zA-Z0-9 %_.\\\\-]{0,80}".prop_map(Input::Text),
        4 => json_value().prop_map(Input::Json),
        2 => (json_value(), any::<prop::sample::Index>()).prop_map(|(v, i)| Input::Truncated(v, i)),
        4 => (prop::collection::vec(entry, 1..8), any::<bool>()).prop_map(|(e, raw)| Input::Brackets(e, raw)),
        1 => "[ -~]{0,60}".prop_map(Input::Raw),
    ]
}

/// Which row a read by id asks for.
#[derive(Debug, Clone)]
enum Target {
    Existing,
    Other(String),
}

fn target() -> impl Strategy<Value = Target> {
    prop_oneof![
        3 => Just(Target::Existing),
        1 => "\\PC{1,40}".prop_map(Target::Other),
    ]
}

/// A 4xx is the LoopBack error body for that status.
fn check_answer(status: StatusCode, body: &Value, what: &str) -> Result<(), TestCaseError> {
    prop_assert!(!status.is_server_error(), "{what}: {status} {body}");
    if status.is_client_error() {
        let error = &body["error"];
        prop_assert!(
            body.as_object().is_some_and(|o| o.len() == 1) && error.is_object(),
            "{what}: not a LoopBack error body: {body}"
        );
        prop_assert_eq!(
            &error["statusCode"],
            &json!(status.as_u16()),
            "{}: {}",
            what,
            body
        );
        prop_assert!(
            error["name"].is_string() && error["message"].is_string(),
            "{what}: {body}"
        );
        for key in error.as_object().into_iter().flat_map(|o| o.keys()) {
            prop_assert!(
                ["statusCode", "name", "message", "code", "details"].contains(&key.as_str()),
                "{what}: unexpected {key:?} in {body}"
            );
        }
    } else {
        prop_assert!(status.is_success(), "{what}: {status} {body}");
    }
    Ok(())
}

struct Fuzzed {
    app: TestApp,
    token: String,
    /// An existing id per collection path.
    ids: HashMap<&'static str, String>,
}

async fn fuzz_app(db: Db) -> Fuzzed {
    let app = TestApp::spawn_with(db, &[("PUBLIC_API_MAX_ATTEMPTS", "1000000")]).await;
    let admin = app.admin_token();
    let tenant = onboard(
        &app,
        &admin,
        onboarding("acme", "Acme", &["acme.com", "b.io"], "ada"),
    )
    .await;
    let t = id_of(&tenant);
    let mut ids = HashMap::new();
    ids.insert("/tenants", t.clone());
    ids.insert("/contacts", id_of(&tenant["contacts"][0]));
    let invoice = create(
        &app,
        &admin,
        "/invoices",
        &json!({"startDate": "2026-01-01", "endDate": "2026-01-31", "amount": "10.5",
                "currencyCode": "USD", "dueDate": "2026-02-15", "status": 0, "tenantId": t}),
    )
    .await;
    ids.insert("/invoices", id_of(&invoice));
    let config = create(
        &app,
        &admin,
        "/tenant-configs",
        &json!({"configKey": "keycloak", "configValue": {"a": 1}, "tenantId": t}),
    )
    .await;
    ids.insert("/tenant-configs", id_of(&config));
    let lead = create_lead(
        &app,
        &json!({"firstName": "Lea", "lastName": "L", "email": "lea@acme.com", "companyName": "Acme"}),
    )
    .await;
    ids.insert("/leads", lead);
    Fuzzed {
        app,
        token: admin,
        ids,
    }
}

/// Sends `input` as `filter`/`where` to every read of collection `c` (and its bulk update).
async fn probe(
    f: &Fuzzed,
    c: &Collection,
    input: &Input,
    target: &Target,
) -> Result<(), TestCaseError> {
    let db = f.app.db.name();
    let id = match target {
        Target::Existing => f.ids[c.path].clone(),
        Target::Other(s) => enc(s),
    };
    let filter = input.query("filter");
    let where_ = input.query("where");
    let requests = [
        (Method::GET, format!("{}?{filter}", c.path)),
        (Method::GET, format!("{}/count?{where_}", c.path)),
        (Method::GET, format!("{}/{id}?{filter}", c.path)),
        (Method::PATCH, format!("{}?{where_}", c.path)),
    ];
    for (method, path) in requests {
        let body = (method == Method::PATCH).then(|| json!({}));
        let what = format!("{db}: {method} {path}");
        let (status, answer) = f
            .app
            .request(method.clone(), &path, Some(&f.token), body.as_ref())
            .await;
        check_answer(status, &answer, &what)?;
        if status.is_success() {
            let shape_ok = match (method.as_str(), path.contains("/count?")) {
                ("PATCH", _) | (_, true) => answer.get("count").is_some_and(Value::is_u64),
                _ if path.starts_with(&format!("{}?", c.path)) => answer.is_array(),
                _ => answer.is_object(),
            };
            prop_assert!(shape_ok, "{what}: unexpected answer {answer}");
        }
    }
    Ok(())
}

#[test]
fn no_filter_input_gives_a_server_error() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    let mut apps = vec![runtime.block_on(fuzz_app(Db::Sqlite))];
    if db_available(Db::Postgres, "no_filter_input_gives_a_server_error") {
        apps.push(runtime.block_on(fuzz_app(Db::Postgres)));
    }
    let cases = std::env::var("TMS_FUZZ_CASES")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(250);
    let mut runner = TestRunner::new(ProptestConfig {
        cases,
        failure_persistence: None,
        max_shrink_iters: 500,
        ..ProptestConfig::default()
    });
    let strategy = (input(), 0..COLLECTIONS.len(), target());
    let outcome = runner.run(&strategy, |(input, c, target)| {
        runtime.block_on(async {
            for f in &apps {
                probe(f, &COLLECTIONS[c], &input, &target).await?;
            }
            Ok::<(), TestCaseError>(())
        })
    });
    // The servers are still up and answering.
    for f in &apps {
        let (status, _) = runtime.block_on(f.app.get("/tenants/count", Some(&f.token)));
        assert_eq!(status, 200, "{} after fuzzing", f.app.db.name());
    }
    drop(apps);
    if let Err(failure) = outcome {
        panic!("{failure}");
    }
}
