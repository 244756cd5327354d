//! The filter dialect over HTTP (docs/filters.md), on SQLite and PostgreSQL: a table of cases
//! per operator and combination against seeded tenants, contacts, invoices, configs and leads,
//! each asserting exactly which rows come back — in JSON form, in bracket form whenever the
//! filter can be written that way, and through `count` with the same `where` — and a table of
//! filters that cannot be used, each a 400 that names the problem.

mod common;
mod rest_support;

use std::collections::HashMap;

use common::*;
use rest_support::*;

const CREATOR_A: &str = "creator-a";
const CREATOR_B: &str = "creator-b";
const EDITOR: &str = "editor-x";

/// What the seed created: ids by label (tenant key, contact email, invoice file, config key,
/// lead email) and the `createdOn` of every tenant.
struct Seed {
    ids: HashMap<String, String>,
    created: HashMap<String, String>,
}

impl Seed {
    fn id(&self, label: &str) -> String {
        self.ids
            .get(label)
            .unwrap_or_else(|| panic!("no row labelled {label}"))
            .clone()
    }
}

/// The label of a row of the collection at `path`.
fn label_field(path: &str) -> &'static str {
    match path {
        "/tenants" => "key",
        "/contacts" | "/leads" => "email",
        "/invoices" => "invoiceFile",
        "/tenant-configs" => "configKey",
        other => panic!("no label field for {other}"),
    }
}

fn labels(path: &str, rows: &Value) -> Vec<String> {
    let field = label_field(path);
    rows.as_array()
        .unwrap_or_else(|| panic!("GET {path}: not a list: {rows}"))
        .iter()
        .map(|r| r[field].as_str().unwrap_or("<none>").to_string())
        .collect()
}

/// key, name, status, domains, spocUserId, caller token, primary contact (local part of the
/// email, first name, last name, type).
type SeedTenant<'a> = (
    &'a str,
    &'a str,
    i64,
    &'a [&'a str],
    Option<&'a str>,
    &'a str,
    (&'a str, &'a str, &'a str, Option<&'a str>),
);

/// Tenants (key, name, status, domains, spocUserId, caller):
///
/// | key   | name        | status | domains                  | spocUserId | by |
/// |-------|-------------|--------|--------------------------|------------|----|
/// | alpha | Acme Corp   | 0      | acme.com, www.acme.com   | u-1        | A  |
/// | beta  | acme labs   | 1      | beta.io                  | —          | A  |
/// | gamma | Gamma 50%   | 2      | gamma.org                | u-2        | A  |
/// | delta | Ärger GmbH  | 3      | delta.de                 | —          | B  |
/// | eps   | under_score | 0      | eps.io                   | u-1        | B  |
/// | zeta  | Zeta        | 5      | zeta.com                 | —          | B  |
/// | omega | Omega       | 0      | omega.net (deleted)      | —          | A  |
///
/// alpha has an address; every change after onboarding is made by `editor-x` (beta has none).
/// Contacts: one primary per tenant (type admin, gus without type), plus bob (billing) and
/// cid (no type) on alpha, bill (billing) on beta, and gone@acme.com deleted. Invoices inv1..inv7
/// (inv6 deleted), configs keycloak (alpha) and auth0 (beta), leads lena, lars and lia.
async fn seed(app: &TestApp) -> Seed {
    let a = admin_as(app, CREATOR_A);
    let b = admin_as(app, CREATOR_B);
    let editor = admin_as(app, EDITOR);
    let mut ids = HashMap::new();
    let mut created = HashMap::new();
    let tenants: [SeedTenant; 7] = [
        (
            "alpha",
            "Acme Corp",
            0,
            &["acme.com", "www.acme.com"],
            Some("u-1"),
            &a,
            ("ada", "Ada", "Lovelace", Some("admin")),
        ),
        (
            "beta",
            "acme labs",
            1,
            &["beta.io"],
            None,
            &a,
            ("bea", "Bea", "Baker", Some("admin")),
        ),
        (
            "gamma",
            "Gamma 50%",
            2,
            &["gamma.org"],
            Some("u-2"),
            &a,
            ("gus", "Gus", "Grant", None),
        ),
        (
            "delta",
            "Ärger GmbH",
            3,
            &["delta.de"],
            None,
            &b,
            ("dora", "Dora", "Dürr", Some("admin")),
        ),
        (
            "eps",
            "under_score",
            0,
            &["eps.io"],
            Some("u-1"),
            &b,
            ("eve", "Eve", "Evans", Some("admin")),
        ),
        (
            "zeta",
            "Zeta",
            5,
            &["zeta.com"],
            None,
            &b,
            ("zed", "Zed", "Zeta", Some("admin")),
        ),
        (
            "omega",
            "Omega",
            0,
            &["omega.net"],
            None,
            &a,
            ("olga", "Olga", "Orlova", Some("admin")),
        ),
    ];
    for (key, name, status, domains, spoc, token, (local, first, last, kind)) in tenants {
        let email = format!("{local}@{}", domains[0]);
        let mut contact =
            json!({"firstName": first, "lastName": last, "email": email, "isPrimary": true});
        if let Some(kind) = kind {
            contact["type"] = json!(kind);
        }
        let mut body = json!({"name": name, "key": key, "domains": domains, "contact": contact});
        if key == "alpha" {
            body["city"] = json!("Springfield");
            body["country"] = json!("USA");
        }
        let tenant = onboard(app, token, body).await;
        let id = id_of(&tenant);
        ids.insert(email.clone(), id_of(&tenant["contacts"][0]));
        created.insert(
            key.to_string(),
            tenant["createdOn"].as_str().unwrap().to_string(),
        );
        patch_status_and_spoc(app, &editor, &id, status, spoc).await;
        ids.insert(key.to_string(), id);
        tick().await;
    }
    delete_ok(app, &a, &format!("/tenants/{}", ids["omega"])).await;

    let admin = app.admin_token();
    for (email, first, last, kind, tenant) in [
        ("bob@acme.com", "Bob", "Builder", Some("billing"), "alpha"),
        ("cid@www.acme.com", "Cid", "O'Brien", None, "alpha"),
        ("bill@beta.io", "Bill", "Board", Some("billing"), "beta"),
        ("gone@acme.com", "Gone", "Away", None, "alpha"),
    ] {
        let mut body = json!({"firstName": first, "lastName": last, "email": email,
                              "isPrimary": false, "tenantId": ids[tenant]});
        if let Some(kind) = kind {
            body["type"] = json!(kind);
        }
        let row = create(app, &admin, "/contacts", &body).await;
        ids.insert(email.to_string(), id_of(&row));
    }
    delete_ok(app, &admin, &format!("/contacts/{}", ids["gone@acme.com"])).await;

    for (file, tenant, amount, currency, start, end, due, status) in [
        (
            "inv1",
            "alpha",
            json!(100),
            "USD",
            "2026-01-01",
            "2026-01-31T23:59:59.999Z",
            "2026-02-15",
            json!(0),
        ),
        (
            "inv2",
            "alpha",
            // CLF has four minor units: the whole precision of stored money.
            json!(99.9999),
            "CLF",
            "2026-02-01",
            "2026-02-28",
            "2026-03-15",
            json!("PAID"),
        ),
        (
            "inv3",
            "beta",
            json!("1000000"),
            "EUR",
            "2026-01-01T01:00:00+01:00",
            "2026-01-31",
            "2026-01-15",
            json!("cancelled"),
        ),
        (
            "inv4",
            "beta",
            json!(0),
            "EUR",
            "2025-12-31T23:59:59.999Z",
            "2026-01-30",
            "2026-01-10",
            json!(1),
        ),
        (
            "inv5",
            "gamma",
            json!(0.5),
            "GBP",
            "2026-06-15T12:30:00.5Z",
            "2026-07-15",
            "2026-07-01",
            json!("pending"),
        ),
        (
            "inv6",
            "gamma",
            json!(1.5),
            "USD",
            "2026-03-01",
            "2026-03-31",
            "2026-04-15",
            json!(0),
        ),
        (
            "inv7",
            "delta",
            json!("12.3400"),
            "USD",
            "2026-04-01",
            "2026-04-30",
            "2026-05-15",
            json!(1),
        ),
    ] {
        let row = create(
            app,
            &admin,
            "/invoices",
            &json!({"invoiceFile": file, "tenantId": ids[tenant], "amount": amount,
                    "currencyCode": currency, "startDate": start, "endDate": end,
                    "dueDate": due, "status": status}),
        )
        .await;
        ids.insert(file.to_string(), id_of(&row));
    }
    delete_ok(app, &admin, &format!("/invoices/{}", ids["inv6"])).await;

    for (key, tenant) in [("keycloak", "alpha"), ("auth0", "beta")] {
        let row = create(
            app,
            &admin,
            "/tenant-configs",
            &json!({"configKey": key, "configValue": {"k": key}, "tenantId": ids[tenant]}),
        )
        .await;
        ids.insert(key.to_string(), id_of(&row));
    }

    for (email, first, last, company) in [
        ("lena@example.com", "Lena", "Lang", "Acme Ltd"),
        ("lars@example.org", "Lars", "Ärger", "beta co"),
        ("lia@Example.COM", "Lia", "Li", "Gamma"),
    ] {
        let id = create_lead(
            app,
            &json!({"firstName": first, "lastName": last, "email": email, "companyName": company}),
        )
        .await;
        ids.insert(email.to_string(), id);
    }
    Seed { ids, created }
}

/// The bracket form of a filter or where (`prefix[a][b]=v&…`), or `None` when it cannot be
/// written that way (null, empty arrays and objects).
fn brackets(prefix: &str, v: &Value) -> Option<Vec<String>> {
    match v {
        Value::Null => None,
        Value::Bool(b) => Some(vec![format!("{prefix}={b}")]),
        Value::Number(n) => Some(vec![format!("{prefix}={}", enc(&n.to_string()))]),
        Value::String(s) => Some(vec![format!("{prefix}={}", enc(s))]),
        Value::Array(items) if items.is_empty() => None,
        Value::Array(items) => {
            let mut out = Vec::new();
            for (i, item) in items.iter().enumerate() {
                out.extend(brackets(&format!("{prefix}[{i}]"), item)?);
            }
            Some(out)
        }
        Value::Object(map) if map.is_empty() => None,
        Value::Object(map) => {
            let mut out = Vec::new();
            for (k, item) in map {
                out.extend(brackets(&format!("{prefix}[{}]", enc(k)), item)?);
            }
            Some(out)
        }
    }
}

/// Rows of `path` for `filter` match `expected` (in this order when `ordered`, else as a set),
/// in JSON form, in bracket form when it exists, and through `count` when there is no paging.
async fn check(app: &TestApp, path: &str, filter: &Value, expected: &[&str], ordered: bool) {
    let admin = app.admin_token();
    let norm = |mut v: Vec<String>| {
        if !ordered {
            v.sort();
        }
        v
    };
    let want = norm(expected.iter().map(|s| s.to_string()).collect());
    let rows = get_ok(app, &admin, &with_filter(path, filter)).await;
    assert_eq!(
        norm(labels(path, &rows)),
        want,
        "GET {path} filter {filter}"
    );
    if filter.as_object().is_some_and(|f| !f.is_empty())
        && let Some(parts) = brackets("filter", filter)
    {
        let query = parts.join("&");
        let from_brackets = get_ok(app, &admin, &format!("{path}?{query}")).await;
        assert_eq!(
            norm(labels(path, &from_brackets)),
            want,
            "GET {path}?{query} (bracket form of {filter})"
        );
    }
    let paged = ["limit", "skip", "offset"]
        .iter()
        .any(|k| filter.get(*k).is_some());
    if !paged {
        let where_ = filter.get("where").cloned().unwrap_or(json!({}));
        let counted = get_ok(app, &admin, &count_path(path, &where_)).await;
        assert_eq!(
            counted,
            json!({"count": expected.len()}),
            "GET {path}/count where {where_}"
        );
        if let Some(parts) = brackets("where", &where_) {
            let query = parts.join("&");
            let counted = get_ok(app, &admin, &format!("{path}/count?{query}")).await;
            assert_eq!(
                counted,
                json!({"count": expected.len()}),
                "GET {path}/count?{query}"
            );
        }
    }
}

/// `{"where": w}`.
fn w(where_: Value) -> Value {
    json!({ "where": where_ })
}

/// The same instant as `iso`, written with a +02:00 offset.
fn at_plus_two(iso: &str) -> String {
    let t = chrono::DateTime::parse_from_rfc3339(iso).unwrap();
    let offset = chrono::FixedOffset::east_opt(2 * 3600).unwrap();
    t.with_timezone(&offset)
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, false)
}

const ALL_TENANTS: [&str; 6] = ["alpha", "beta", "gamma", "delta", "eps", "zeta"];

both_dbs!(
    tenant_filters,
    [("PUBLIC_API_MAX_ATTEMPTS", "1000000")],
    |app| async move {
        let s = seed(&app).await;
        let t = |k: &str| s.created[k].clone();
        let mut nested = json!({"key": "alpha"});
        for _ in 0..8 {
            nested = json!({ "and": [nested] });
        }
        let cases: Vec<(Value, Vec<&str>)> = vec![
            (json!({}), ALL_TENANTS.to_vec()),
            (w(json!({})), ALL_TENANTS.to_vec()),
            // eq / neq, implicit and explicit
            (w(json!({"key": "alpha"})), vec!["alpha"]),
            (w(json!({"key": {"eq": "alpha"}})), vec!["alpha"]),
            (w(json!({"name": "acme labs"})), vec!["beta"]),
            (w(json!({"name": "Acme labs"})), vec![]),
            (
                w(json!({"key": {"neq": "alpha"}})),
                vec!["beta", "gamma", "delta", "eps", "zeta"],
            ),
            (w(json!({"key": "omega"})), vec![]),
            // ordering comparisons on text (byte order), enums (numbers or names)
            (
                w(json!({"key": {"gt": "delta"}})),
                vec!["eps", "gamma", "zeta"],
            ),
            (
                w(json!({"key": {"gte": "eps"}})),
                vec!["eps", "gamma", "zeta"],
            ),
            (w(json!({"key": {"lt": "beta"}})), vec!["alpha"]),
            (w(json!({"key": {"lte": "beta"}})), vec!["alpha", "beta"]),
            (
                w(json!({"name": {"gt": "Z"}})),
                vec!["beta", "delta", "eps", "zeta"],
            ),
            (
                w(json!({"status": {"gt": 1}})),
                vec!["gamma", "delta", "zeta"],
            ),
            (
                w(json!({"status": {"gte": "PROVISIONING"}})),
                vec!["gamma", "delta", "zeta"],
            ),
            (w(json!({"status": {"lt": 1}})), vec!["alpha", "eps"]),
            (
                w(json!({"status": {"lte": "1"}})),
                vec!["alpha", "beta", "eps"],
            ),
            (w(json!({"status": "PendingProvision"})), vec!["beta"]),
            (
                w(json!({"status": {"neq": 0}})),
                vec!["beta", "gamma", "delta", "zeta"],
            ),
            (
                w(json!({"status": {"gt": 0, "lt": 3}})),
                vec!["beta", "gamma"],
            ),
            // inq / nin / between
            (
                w(json!({"status": {"inq": [0, 5]}})),
                vec!["alpha", "eps", "zeta"],
            ),
            (
                w(json!({"status": {"inq": ["active", "INACTIVE"]}})),
                vec!["alpha", "eps", "zeta"],
            ),
            (
                w(json!({"status": {"nin": [0, 1]}})),
                vec!["gamma", "delta", "zeta"],
            ),
            (w(json!({"status": {"inq": []}})), vec![]),
            (w(json!({"status": {"nin": []}})), ALL_TENANTS.to_vec()),
            (
                w(json!({"key": {"inq": ["alpha", "zeta", "omega"]}})),
                vec!["alpha", "zeta"],
            ),
            (
                w(json!({"key": {"nin": ["alpha", "zeta"]}})),
                vec!["beta", "gamma", "delta", "eps"],
            ),
            (
                w(json!({"status": {"between": [1, 3]}})),
                vec!["beta", "gamma", "delta"],
            ),
            (w(json!({"status": {"between": [3, 1]}})), vec![]),
            (
                w(json!({"key": {"between": ["b", "e"]}})),
                vec!["beta", "delta"],
            ),
            // like / nlike / ilike / nilike
            (w(json!({"name": {"like": "Acme%"}})), vec!["alpha"]),
            (
                w(json!({"name": {"like": "%a%"}})),
                vec!["beta", "gamma", "zeta"],
            ),
            (w(json!({"name": {"like": "%"}})), ALL_TENANTS.to_vec()),
            (w(json!({"name": {"like": "acme"}})), vec![]),
            (
                w(json!({"name": {"nlike": "Acme%"}})),
                vec!["beta", "gamma", "delta", "eps", "zeta"],
            ),
            (
                w(json!({"name": {"ilike": "acme%"}})),
                vec!["alpha", "beta"],
            ),
            (
                w(json!({"name": {"nilike": "ACME%"}})),
                vec!["gamma", "delta", "eps", "zeta"],
            ),
            (w(json!({"name": {"like": "Ärger%"}})), vec!["delta"]),
            (w(json!({"name": {"ilike": "ärger%"}})), vec![]),
            (w(json!({"name": {"ilike": "%GMBH"}})), vec!["delta"]),
            (w(json!({"name": {"like": "%50\\%"}})), vec!["gamma"]),
            (w(json!({"name": {"like": "%5\\%"}})), vec![]),
            (w(json!({"name": {"like": "under\\_score"}})), vec!["eps"]),
            (w(json!({"name": {"like": "under_score"}})), vec!["eps"]),
            (w(json!({"name": {"like": "_eta"}})), vec!["zeta"]),
            (w(json!({"name": {"like": "%' OR '1'='1"}})), vec![]),
            // null
            (
                w(json!({"spocUserId": null})),
                vec!["beta", "delta", "zeta"],
            ),
            (
                w(json!({"spocUserId": {"eq": null}})),
                vec!["beta", "delta", "zeta"],
            ),
            (
                w(json!({"spocUserId": {"neq": null}})),
                vec!["alpha", "gamma", "eps"],
            ),
            (w(json!({"spocUserId": {"neq": "u-1"}})), vec!["gamma"]),
            (
                w(json!({"spocUserId": {"nin": ["u-2"]}})),
                vec!["alpha", "eps"],
            ),
            (w(json!({"spocUserId": {"nlike": "u-1"}})), vec!["gamma"]),
            (
                w(json!({"or": [{"spocUserId": null}, {"spocUserId": {"neq": "u-1"}}]})),
                vec!["beta", "gamma", "delta", "zeta"],
            ),
            (w(json!({"leadId": null})), ALL_TENANTS.to_vec()),
            (w(json!({"addressId": {"neq": null}})), vec!["alpha"]),
            (
                w(json!({"deletedOn": null, "deletedBy": null})),
                ALL_TENANTS.to_vec(),
            ),
            // and / or
            (
                w(
                    json!({"or": [{"key": "alpha"}, {"and": [{"status": 1}, {"name": {"ilike": "ACME%"}}]}]}),
                ),
                vec!["alpha", "beta"],
            ),
            (
                w(
                    json!({"and": [{"status": 0}, {"or": [{"spocUserId": "u-1"}, {"key": "zeta"}]}]}),
                ),
                vec!["alpha", "eps"],
            ),
            (
                w(json!({"status": 0, "spocUserId": "u-1", "key": {"neq": "alpha"}})),
                vec!["eps"],
            ),
            (
                w(json!({"or": [{}, {"key": "alpha"}]})),
                ALL_TENANTS.to_vec(),
            ),
            (w(json!({"and": [{}]})), ALL_TENANTS.to_vec()),
            (
                w(json!({"or": [{"key": "nope"}, {"key": "alpha"}]})),
                vec!["alpha"],
            ),
            (
                w(json!({"and": [{"key": {"gte": "b"}}, {"key": {"lt": "e"}}],
                     "or": [{"status": 1}, {"status": 3}]})),
                vec!["beta", "delta"],
            ),
            (w(nested), vec!["alpha"]),
            // domains: "contains"
            (w(json!({"domains": "www.acme.com"})), vec!["alpha"]),
            (w(json!({"domains": {"eq": "beta.io"}})), vec!["beta"]),
            (w(json!({"domains": "acme"})), vec![]),
            (
                w(json!({"or": [{"domains": "acme.com"}, {"domains": "zeta.com"}]})),
                vec!["alpha", "zeta"],
            ),
            // dates
            (
                w(json!({"createdOn": {"gt": t("gamma")}})),
                vec!["delta", "eps", "zeta"],
            ),
            (
                w(json!({"createdOn": {"gte": t("gamma")}})),
                vec!["gamma", "delta", "eps", "zeta"],
            ),
            (
                w(json!({"createdOn": {"between": [t("beta"), t("delta")]}})),
                vec!["beta", "gamma", "delta"],
            ),
            (w(json!({"createdOn": at_plus_two(&t("eps"))})), vec!["eps"]),
            (w(json!({"createdOn": {"lt": "2000-01-01"}})), vec![]),
            (
                w(json!({"createdOn": {"gte": "2000-01-01T00:00:00+05:30"}})),
                ALL_TENANTS.to_vec(),
            ),
            // ids, audit fields
            (w(json!({"id": s.id("alpha")})), vec!["alpha"]),
            (
                w(json!({"id": s.id("alpha").to_uppercase()})),
                vec!["alpha"],
            ),
            (
                w(json!({"id": s.id("alpha").replace('-', "")})),
                vec!["alpha"],
            ),
            (
                w(json!({"id": format!("{{{}}}", s.id("alpha"))})),
                vec!["alpha"],
            ),
            (
                w(json!({"id": format!("urn:uuid:{}", s.id("alpha"))})),
                vec!["alpha"],
            ),
            (
                w(json!({"id": {"inq": [s.id("alpha"), s.id("beta"), s.id("omega")]}})),
                vec!["alpha", "beta"],
            ),
            (
                w(json!({"id": {"neq": s.id("alpha")}})),
                vec!["beta", "gamma", "delta", "eps", "zeta"],
            ),
            (
                w(json!({"createdBy": CREATOR_B})),
                vec!["delta", "eps", "zeta"],
            ),
            (w(json!({"modifiedBy": CREATOR_A})), vec!["beta"]),
            (w(json!({"deleted": true})), vec![]),
            (w(json!({"deleted": false})), ALL_TENANTS.to_vec()),
            (w(json!({"deleted": "0"})), ALL_TENANTS.to_vec()),
        ];
        for (filter, expected) in cases {
            check(&app, "/tenants", &filter, &expected, false).await;
        }

        let ordered: Vec<(Value, Vec<&str>)> = vec![
            (
                json!({"order": "key"}),
                vec!["alpha", "beta", "delta", "eps", "gamma", "zeta"],
            ),
            (
                json!({"order": "key DESC"}),
                vec!["zeta", "gamma", "eps", "delta", "beta", "alpha"],
            ),
            (
                json!({"order": "key desc"}),
                vec!["zeta", "gamma", "eps", "delta", "beta", "alpha"],
            ),
            (
                json!({"order": "status DESC, key"}),
                vec!["zeta", "delta", "gamma", "beta", "alpha", "eps"],
            ),
            (
                json!({"order": ["status ASC", "key DESC"]}),
                vec!["eps", "alpha", "beta", "gamma", "delta", "zeta"],
            ),
            (
                json!({"order": "spocUserId, key"}),
                vec!["alpha", "eps", "gamma", "beta", "delta", "zeta"],
            ),
            (
                json!({"order": ["spocUserId DESC", "key"]}),
                vec!["beta", "delta", "zeta", "gamma", "alpha", "eps"],
            ),
            (
                json!({"order": "name"}),
                vec!["alpha", "gamma", "zeta", "beta", "eps", "delta"],
            ),
            (
                json!({"order": "createdOn DESC"}),
                vec!["zeta", "eps", "delta", "gamma", "beta", "alpha"],
            ),
            (
                json!({"where": {"status": {"lt": 3}}, "order": "name DESC"}),
                vec!["eps", "beta", "gamma", "alpha"],
            ),
            // limit / skip / offset
            (json!({"order": "key", "limit": 2}), vec!["alpha", "beta"]),
            (
                json!({"order": "key", "limit": 2, "skip": 2}),
                vec!["delta", "eps"],
            ),
            (json!({"order": "key", "offset": 4}), vec!["gamma", "zeta"]),
            (
                json!({"order": "key", "skip": 4, "limit": 10}),
                vec!["gamma", "zeta"],
            ),
            (json!({"order": "key", "skip": 10}), vec![]),
            (
                json!({"order": "key", "skip": 0}),
                vec!["alpha", "beta", "delta", "eps", "gamma", "zeta"],
            ),
            (
                json!({"order": "key", "skip": 2, "offset": 2, "limit": 1}),
                vec!["delta"],
            ),
            (
                json!({"order": "key", "limit": 1000}),
                vec!["alpha", "beta", "delta", "eps", "gamma", "zeta"],
            ),
            (
                json!({"where": {"status": 0}, "order": "key DESC", "limit": 1}),
                vec!["eps"],
            ),
        ];
        for (filter, expected) in ordered {
            check(&app, "/tenants", &filter, &expected, true).await;
        }

        // Ties are broken by id.
        let admin = app.admin_token();
        let rows = get_ok(
            &app,
            &admin,
            &with_filter("/tenants", &json!({"order": "status"})),
        )
        .await;
        let mut zero = [s.id("alpha"), s.id("eps")];
        zero.sort();
        let ids: Vec<String> = rows.as_array().unwrap().iter().map(id_of).collect();
        assert_eq!(
            ids,
            [
                zero[0].clone(),
                zero[1].clone(),
                s.id("beta"),
                s.id("gamma"),
                s.id("delta"),
                s.id("zeta")
            ],
            "status ties broken by id"
        );
        let rows = get_ok(&app, &admin, "/tenants").await;
        let ids: Vec<String> = rows.as_array().unwrap().iter().map(id_of).collect();
        let mut sorted = ids.clone();
        sorted.sort();
        assert_eq!(ids, sorted, "without an order, rows come by id");

        // fields
        let rows = get_ok(
            &app,
            &admin,
            &with_filter(
                "/tenants",
                &json!({"fields": {"key": true}, "order": "key", "limit": 2}),
            ),
        )
        .await;
        assert_eq!(rows, json!([{"key": "alpha"}, {"key": "beta"}]));
        let rows = get_ok(
            &app,
            &admin,
            &with_filter(
                "/tenants",
                &json!({"fields": ["status", "key"], "where": {"key": "zeta"}}),
            ),
        )
        .await;
        assert_eq!(rows, json!([{"status": 5, "key": "zeta"}]));
        let rows = get_ok(
            &app,
            &admin,
            &with_filter(
                "/tenants",
                &json!({"fields": {"domains": false}, "where": {"key": "zeta"}}),
            ),
        )
        .await;
        let mut want = row_keys(&TENANT_FIELDS);
        want.retain(|k| k != "domains");
        assert_eq!(keys_of(&rows[0]), want);
    }
);

both_dbs!(
    contact_invoice_config_and_lead_filters,
    [("PUBLIC_API_MAX_ATTEMPTS", "1000000")],
    |app| async move {
        let s = seed(&app).await;
        let contacts: Vec<(Value, Vec<&str>)> = vec![
            (
                json!({}),
                vec![
                    "ada@acme.com",
                    "bea@beta.io",
                    "gus@gamma.org",
                    "dora@delta.de",
                    "eve@eps.io",
                    "zed@zeta.com",
                    "olga@omega.net",
                    "bob@acme.com",
                    "cid@www.acme.com",
                    "bill@beta.io",
                ],
            ),
            (
                w(json!({"isPrimary": false})),
                vec!["bob@acme.com", "cid@www.acme.com", "bill@beta.io"],
            ),
            (
                w(json!({"isPrimary": "false"})),
                vec!["bob@acme.com", "cid@www.acme.com", "bill@beta.io"],
            ),
            (
                w(json!({"isPrimary": {"neq": true}})),
                vec!["bob@acme.com", "cid@www.acme.com", "bill@beta.io"],
            ),
            (
                w(json!({"isPrimary": true, "tenantId": s.id("alpha")})),
                vec!["ada@acme.com"],
            ),
            (
                w(json!({"type": null})),
                vec!["gus@gamma.org", "cid@www.acme.com"],
            ),
            (
                w(json!({"type": {"neq": "admin"}})),
                vec!["bob@acme.com", "bill@beta.io"],
            ),
            (
                w(json!({"type": {"inq": ["billing"]}})),
                vec!["bob@acme.com", "bill@beta.io"],
            ),
            (
                w(json!({"email": {"ilike": "%@ACME.COM"}})),
                vec!["ada@acme.com", "bob@acme.com"],
            ),
            (
                w(json!({"email": {"like": "%.io"}})),
                vec!["bea@beta.io", "eve@eps.io", "bill@beta.io"],
            ),
            (
                w(json!({"email": {"nlike": "%.%.%"}})),
                vec![
                    "ada@acme.com",
                    "bea@beta.io",
                    "gus@gamma.org",
                    "dora@delta.de",
                    "eve@eps.io",
                    "zed@zeta.com",
                    "olga@omega.net",
                    "bob@acme.com",
                    "bill@beta.io",
                ],
            ),
            (
                w(json!({"tenantId": s.id("alpha")})),
                vec!["ada@acme.com", "bob@acme.com", "cid@www.acme.com"],
            ),
            (
                w(json!({"tenantId": {"inq": [s.id("beta"), s.id("omega")]}})),
                vec!["bea@beta.io", "bill@beta.io", "olga@omega.net"],
            ),
            (
                w(json!({"lastName": {"like": "%'%"}})),
                vec!["cid@www.acme.com"],
            ),
            (w(json!({"lastName": "x' OR 1=1 --"})), vec![]),
            (
                w(json!({"lastName": {"ilike": "dürr"}})),
                vec!["dora@delta.de"],
            ),
            (
                w(json!({"firstName": {"between": ["B", "Cz"]}})),
                vec![
                    "bea@beta.io",
                    "bob@acme.com",
                    "cid@www.acme.com",
                    "bill@beta.io",
                ],
            ),
        ];
        for (filter, expected) in contacts {
            check(&app, "/contacts", &filter, &expected, false).await;
        }
        check(
            &app,
            "/contacts",
            &json!({"order": "email"}),
            &[
                "ada@acme.com",
                "bea@beta.io",
                "bill@beta.io",
                "bob@acme.com",
                "cid@www.acme.com",
                "dora@delta.de",
                "eve@eps.io",
                "gus@gamma.org",
                "olga@omega.net",
                "zed@zeta.com",
            ],
            true,
        )
        .await;
        check(
            &app,
            "/contacts",
            &json!({"where": {"tenantId": s.id("alpha")}, "order": ["type DESC", "email DESC"]}),
            &["cid@www.acme.com", "bob@acme.com", "ada@acme.com"],
            true,
        )
        .await;

        let invoices: Vec<(Value, Vec<&str>)> = vec![
            (
                json!({}),
                vec!["inv1", "inv2", "inv3", "inv4", "inv5", "inv7"],
            ),
            (w(json!({"amount": {"gt": 99.9999}})), vec!["inv1", "inv3"]),
            (
                w(json!({"amount": {"gt": 99.9998}})),
                vec!["inv1", "inv2", "inv3"],
            ),
            (
                w(json!({"amount": {"gte": "99.9999"}})),
                vec!["inv1", "inv2", "inv3"],
            ),
            (w(json!({"amount": {"lt": 0.75}})), vec!["inv4", "inv5"]),
            (w(json!({"amount": 100})), vec!["inv1"]),
            (w(json!({"amount": "100.0000"})), vec!["inv1"]),
            (w(json!({"amount": 100.0})), vec!["inv1"]),
            (w(json!({"amount": "12.34"})), vec!["inv7"]),
            (
                w(json!({"amount": {"between": [0, 100]}})),
                vec!["inv1", "inv2", "inv4", "inv5", "inv7"],
            ),
            (
                w(json!({"amount": {"inq": [0, 0.5, "12.34"]}})),
                vec!["inv4", "inv5", "inv7"],
            ),
            (
                w(json!({"amount": {"neq": 0}})),
                vec!["inv1", "inv2", "inv3", "inv5", "inv7"],
            ),
            (
                w(json!({"amount": {"lte": "1e6"}})),
                vec!["inv1", "inv2", "inv3", "inv4", "inv5", "inv7"],
            ),
            (w(json!({"status": "PAID"})), vec!["inv2", "inv4", "inv7"]),
            (
                w(json!({"status": {"inq": ["pending", "CANCELLED"]}})),
                vec!["inv1", "inv3", "inv5"],
            ),
            (
                w(json!({"status": {"neq": "paid"}})),
                vec!["inv1", "inv3", "inv5"],
            ),
            (
                w(json!({"status": {"gte": "1"}})),
                vec!["inv2", "inv3", "inv4", "inv7"],
            ),
            (w(json!({"startDate": "2026-01-01"})), vec!["inv1", "inv3"]),
            (
                w(json!({"startDate": {"lt": "2026-01-01T00:00:00Z"}})),
                vec!["inv4"],
            ),
            (
                w(json!({"startDate": {"gte": "2026-01-01T00:00:00.000+00:00"}})),
                vec!["inv1", "inv2", "inv3", "inv5", "inv7"],
            ),
            (
                w(json!({"startDate": {"gt": "2026-06-15T12:30:00.499Z"}})),
                vec!["inv5"],
            ),
            (
                w(json!({"startDate": {"gt": "2026-06-15T12:30:00.500Z"}})),
                vec![],
            ),
            (
                w(json!({"startDate": {"gte": "2026-06-15T14:30:00.5+02:00"}})),
                vec!["inv5"],
            ),
            (
                w(json!({"startDate": {"gte": "2026-06-15T12:30:00.5009Z"}})),
                vec!["inv5"],
            ),
            (
                w(json!({"dueDate": {"between": ["2026-01-10", "2026-02-15"]}})),
                vec!["inv1", "inv3", "inv4"],
            ),
            (
                w(json!({"endDate": {"lte": "2026-01-31T23:59:59.998Z"}})),
                vec!["inv3", "inv4"],
            ),
            (
                w(json!({"endDate": {"lte": "2026-01-31T23:59:59.999Z"}})),
                vec!["inv1", "inv3", "inv4"],
            ),
            (w(json!({"currencyCode": "EUR"})), vec!["inv3", "inv4"]),
            (
                w(json!({"currencyCode": "USD", "amount": {"lt": 100}})),
                vec!["inv7"],
            ),
            (w(json!({"tenantId": s.id("alpha")})), vec!["inv1", "inv2"]),
            (w(json!({"tenantId": s.id("gamma")})), vec!["inv5"]),
            (
                w(json!({"invoiceFile": {"like": "inv_"}})),
                vec!["inv1", "inv2", "inv3", "inv4", "inv5", "inv7"],
            ),
        ];
        for (filter, expected) in invoices {
            check(&app, "/invoices", &filter, &expected, false).await;
        }
        for (filter, expected) in [
            (
                json!({"order": "amount DESC"}),
                vec!["inv3", "inv1", "inv2", "inv7", "inv5", "inv4"],
            ),
            (
                json!({"order": "amount"}),
                vec!["inv4", "inv5", "inv7", "inv2", "inv1", "inv3"],
            ),
            (
                json!({"order": "startDate, invoiceFile"}),
                vec!["inv4", "inv1", "inv3", "inv2", "inv7", "inv5"],
            ),
            (
                json!({"order": "startDate, invoiceFile DESC"}),
                vec!["inv4", "inv3", "inv1", "inv2", "inv7", "inv5"],
            ),
            (
                json!({"order": "status DESC, amount"}),
                vec!["inv3", "inv4", "inv7", "inv2", "inv5", "inv1"],
            ),
            (
                json!({"order": "dueDate DESC", "limit": 2, "skip": 1}),
                vec!["inv7", "inv2"],
            ),
        ] {
            check(&app, "/invoices", &filter, &expected, true).await;
        }

        for (filter, expected) in [
            (json!({}), vec!["keycloak", "auth0"]),
            (w(json!({"configKey": "keycloak"})), vec!["keycloak"]),
            (
                w(json!({"configKey": {"inq": ["auth0", "nope"]}})),
                vec!["auth0"],
            ),
            (w(json!({"tenantId": s.id("alpha")})), vec!["keycloak"]),
            (w(json!({"configKey": {"ilike": "%0"}})), vec!["auth0"]),
        ] {
            check(&app, "/tenant-configs", &filter, &expected, false).await;
        }

        for (filter, expected) in [
            (
                json!({}),
                vec!["lena@example.com", "lars@example.org", "lia@Example.COM"],
            ),
            (
                w(json!({"email": {"ilike": "%@EXAMPLE.COM"}})),
                vec!["lena@example.com", "lia@Example.COM"],
            ),
            (
                w(json!({"email": {"like": "%@example.com"}})),
                vec!["lena@example.com"],
            ),
            (
                w(json!({"isValidated": false})),
                vec!["lena@example.com", "lars@example.org", "lia@Example.COM"],
            ),
            (w(json!({"isValidated": true})), vec![]),
            (
                w(json!({"companyName": {"like": "%co"}})),
                vec!["lars@example.org"],
            ),
            (
                w(json!({"lastName": {"like": "Ä%"}})),
                vec!["lars@example.org"],
            ),
            (
                w(json!({"addressId": null})),
                vec!["lena@example.com", "lars@example.org", "lia@Example.COM"],
            ),
        ] {
            check(&app, "/leads", &filter, &expected, false).await;
        }
        check(
            &app,
            "/leads",
            &json!({"order": "firstName DESC"}),
            &["lia@Example.COM", "lena@example.com", "lars@example.org"],
            true,
        )
        .await;
    }
);

both_dbs!(
    include_with_scope,
    [("PUBLIC_API_MAX_ATTEMPTS", "1000000")],
    |app| async move {
        let s = seed(&app).await;
        let admin = app.admin_token();
        let get = |filter: Value, path: &'static str| {
            let app = &app;
            let admin = admin.clone();
            async move { get_ok(app, &admin, &with_filter(path, &filter)).await }
        };

        let rows = get(
            json!({"order": "key", "fields": ["key"], "include": [{"relation": "contacts",
        "scope": {"where": {"isPrimary": false}, "order": "email", "fields": ["email"]}}]}),
            "/tenants",
        )
        .await;
        assert_eq!(
            rows,
            json!([
                {"key": "alpha", "contacts": [{"email": "bob@acme.com"}, {"email": "cid@www.acme.com"}]},
                {"key": "beta", "contacts": [{"email": "bill@beta.io"}]},
                {"key": "delta", "contacts": []}, {"key": "eps", "contacts": []},
                {"key": "gamma", "contacts": []}, {"key": "zeta", "contacts": []},
            ])
        );
        let rows = get(
            json!({"where": {"key": {"inq": ["alpha", "beta"]}}, "order": "key", "fields": ["key"],
        "include": [{"relation": "contacts", "scope": {"where": {"email": {"like": "%.com"}},
            "fields": {"email": true}, "order": "email DESC", "limit": 1}}]}),
            "/tenants",
        )
        .await;
        assert_eq!(
            rows,
            json!([{"key": "alpha", "contacts": [{"email": "cid@www.acme.com"}]}, {"key": "beta", "contacts": []}])
        );

        // to-one relations: absent when the parent is deleted or filtered out by the scope.
        let rows = get(json!({"where": {"email": {"inq": ["ada@acme.com", "olga@omega.net"]}}, "order": "email",
        "fields": ["email"], "include": [{"relation": "tenant", "scope": {"fields": ["key", "status"]}}]}), "/contacts").await;
        assert_eq!(
            rows[0],
            json!({"email": "ada@acme.com", "tenant": {"status": 0, "key": "alpha"}})
        );
        assert_eq!(rows[1]["email"], "olga@omega.net");
        assert!(rows[1].get("tenant").is_none_or(Value::is_null), "{rows}");
        let rows = get(
            json!({"order": "invoiceFile", "fields": ["invoiceFile"],
        "include": [{"relation": "tenant", "scope": {"where": {"status": 0}, "fields": ["key"]}}]}),
            "/invoices",
        )
        .await;
        let shown: Vec<(String, Value)> = rows
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                (
                    r["invoiceFile"].as_str().unwrap().to_string(),
                    r.get("tenant").cloned().unwrap_or(Value::Null),
                )
            })
            .collect();
        assert_eq!(
            shown,
            vec![
                ("inv1".into(), json!({"key": "alpha"})),
                ("inv2".into(), json!({"key": "alpha"})),
                ("inv3".into(), Value::Null),
                ("inv4".into(), Value::Null),
                ("inv5".into(), Value::Null),
                ("inv7".into(), Value::Null),
            ]
        );

        // An include inside an include's scope; several relations at once.
        let rows = get(
            json!({"where": {"key": "alpha"}, "fields": ["key"], "include": [
        {"relation": "contacts", "scope": {"order": "email", "fields": ["email"],
            "include": [{"relation": "tenant", "scope": {"fields": ["key"]}}]}},
        {"relation": "address", "scope": {"fields": ["city", "country"]}},
        "resources", "lead"]}),
            "/tenants",
        )
        .await;
        assert_eq!(rows.as_array().map(Vec::len), Some(1), "{rows}");
        let alpha = &rows[0];
        assert_eq!(
            alpha["address"],
            json!({"city": "Springfield", "country": "USA"})
        );
        assert_eq!(alpha["resources"], json!([]));
        assert!(alpha.get("lead").is_none_or(Value::is_null), "{alpha}");
        assert_eq!(
            alpha["contacts"],
            json!([{"email": "ada@acme.com", "tenant": {"key": "alpha"}},
               {"email": "bob@acme.com", "tenant": {"key": "alpha"}},
               {"email": "cid@www.acme.com", "tenant": {"key": "alpha"}}])
        );
        // The same through the bracket form and through a read by id.
        let bracket = "filter[where][key]=alpha&filter[fields][0]=key\
        &filter[include][0][relation]=contacts&filter[include][0][scope][order]=email\
        &filter[include][0][scope][fields][0]=email&filter[include][0][scope][include][0][relation]=tenant\
        &filter[include][0][scope][include][0][scope][fields][0]=key\
        &filter[include][1][relation]=address&filter[include][1][scope][fields][0]=city\
        &filter[include][1][scope][fields][1]=country&filter[include][2]=resources&filter[include][3]=lead";
        assert_eq!(
            get_ok(&app, &admin, &format!("/tenants?{bracket}")).await,
            rows
        );
        let by_id = get(json!({"fields": ["key"], "include": [{"relation": "address", "scope": {"fields": ["city", "country"]}}]}), "/tenants").await;
        let alpha_by_id = by_id
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["key"] == "alpha")
            .unwrap()
            .clone();
        let item = get_ok(
        &app,
        &admin,
        &with_filter(&format!("/tenants/{}", s.id("alpha")), &json!({"fields": ["key"], "include": [{"relation": "address", "scope": {"fields": ["city", "country"]}}]})),
    )
    .await;
        assert_eq!(item, alpha_by_id);
    }
);

/// A filter of `n` comparisons ORed together.
fn many_conditions(n: usize) -> Value {
    w(json!({"or": (0..n).map(|i| json!({"key": format!("k{i}")})).collect::<Vec<_>>()}))
}

both_dbs!(
    unusable_filters_are_400_naming_the_problem,
    [("PUBLIC_API_MAX_ATTEMPTS", "1000000")],
    |app| async move {
        seed(&app).await;
        let admin = app.admin_token();
        let before = snapshot(&app).await;
        let mut too_deep = json!({"key": "alpha"});
        for _ in 0..9 {
            too_deep = json!({ "or": [too_deep] });
        }
        let all_false: serde_json::Map<String, Value> = row_keys(&TENANT_FIELDS)
            .into_iter()
            .map(|k| (k, json!(false)))
            .collect();
        let deep_include = json!({"include": [{"relation": "contacts", "scope": {"include": [{"relation": "tenant",
        "scope": {"include": ["contacts"]}}]}}]});
        let f = |v: Value| format!("filter={}", q(&v));
        let wq = |v: Value| format!("where={}", q(&v));
        // (path, query, parameter, what the message must mention)
        let cases: Vec<(&str, String, &str, &str)> = vec![
            (
                "/tenants",
                f(w(json!({"nope": 1}))),
                "filter",
                "unknown field \"nope\" in where",
            ),
            (
                "/tenants",
                f(w(json!({"address.city": "x"}))),
                "filter",
                "unknown field \"address.city\"",
            ),
            (
                "/tenants",
                f(w(json!({"key": {"regexp": "^a"}}))),
                "filter",
                "unknown operator \"regexp\"",
            ),
            (
                "/tenants",
                f(w(json!({"key": {}}))),
                "filter",
                "no operator given",
            ),
            ("/tenants", f(w(too_deep)), "filter", "nested deeper than 8"),
            (
                "/tenants",
                f(json!({"limit": 0})),
                "filter",
                "limit must be a positive integer",
            ),
            (
                "/tenants",
                f(json!({"limit": -1})),
                "filter",
                "limit must be a non-negative integer",
            ),
            (
                "/tenants",
                f(json!({"limit": 1.5})),
                "filter",
                "limit must be a non-negative integer",
            ),
            (
                "/tenants",
                f(json!({"limit": "ten"})),
                "filter",
                "limit must be a non-negative integer",
            ),
            (
                "/tenants",
                f(json!({"skip": "99999999999999999999"})),
                "filter",
                "skip",
            ),
            (
                "/tenants",
                f(json!({"skip": 1, "offset": 2})),
                "filter",
                "skip and offset",
            ),
            (
                "/tenants",
                "filter=%7Bbad".into(),
                "filter",
                "\"filter\" is not valid JSON",
            ),
            (
                "/tenants",
                "filter=%5B1%5D".into(),
                "filter",
                "filter must be a JSON object",
            ),
            (
                "/tenants",
                f(json!({"where": 5})),
                "filter",
                "where must be an object",
            ),
            (
                "/tenants",
                f(json!({"wher": {}})),
                "filter",
                "unknown filter key \"wher\"",
            ),
            (
                "/tenant-configs",
                f(w(json!({"configValue": "x"}))),
                "filter",
                "\"configValue\" cannot be used in where",
            ),
            (
                "/tenant-configs",
                f(json!({"order": "configValue"})),
                "filter",
                "\"configValue\" cannot be used in order",
            ),
            (
                "/tenants",
                f(json!({"order": "domains"})),
                "filter",
                "\"domains\" cannot be used in order",
            ),
            (
                "/tenants",
                f(json!({"order": "nope"})),
                "filter",
                "unknown field \"nope\" in order",
            ),
            (
                "/tenants",
                f(json!({"order": "key UP"})),
                "filter",
                "invalid order direction",
            ),
            (
                "/tenants",
                f(json!({"order": (0..33).map(|_| "key").collect::<Vec<_>>()})),
                "filter",
                "more than 32",
            ),
            (
                "/tenants",
                f(json!({"fields": ["nope"]})),
                "filter",
                "unknown field \"nope\" in fields",
            ),
            (
                "/tenants",
                f(json!({"fields": Value::Object(all_false)})),
                "filter",
                "fields excludes every field",
            ),
            (
                "/tenants",
                f(json!({"include": ["nope"]})),
                "filter",
                "unknown relation \"nope\"",
            ),
            (
                "/tenants",
                f(json!({"include": ["contacts", "contacts"]})),
                "filter",
                "included twice",
            ),
            (
                "/tenants",
                f(json!({"include": [{"relation": "contacts", "foo": 1}]})),
                "filter",
                "unknown include key \"foo\"",
            ),
            (
                "/tenants",
                f(deep_include),
                "filter",
                "include is nested deeper than 2",
            ),
            (
                "/tenants",
                f(json!({"include": [{"relation": "contacts", "scope": {"where": {"nope": 1}}}]})),
                "filter",
                "in the scope of include \"contacts\"",
            ),
            (
                "/tenants",
                f(w(json!({"status": {"between": [1, 2, 3]}}))),
                "filter",
                "exactly two",
            ),
            (
                "/tenants",
                f(w(json!({"status": {"between": [1, null]}}))),
                "filter",
                "exactly two",
            ),
            (
                "/tenants",
                f(w(json!({"status": {"like": "1%"}}))),
                "filter",
                "can only be used on text fields",
            ),
            (
                "/tenants",
                f(w(json!({"key": {"gt": null}}))),
                "filter",
                "cannot take null",
            ),
            (
                "/tenants",
                f(w(json!({"key": {"inq": ["a", null]}}))),
                "filter",
                "cannot take null in its list",
            ),
            (
                "/tenants",
                f(w(json!({"key": {"inq": {"a": 1}}}))),
                "filter",
                "takes an array",
            ),
            (
                "/tenants",
                f(w(
                    json!({"key": {"inq": (0..1001).map(|i| i.to_string()).collect::<Vec<_>>()}}),
                )),
                "filter",
                "at most 1000 values",
            ),
            (
                "/tenants",
                f(many_conditions(101)),
                "filter",
                "more than 100 conditions",
            ),
            (
                "/tenants",
                f(w(json!({"id": "not-a-uuid"}))),
                "filter",
                "is not a UUID",
            ),
            (
                "/tenants",
                f(w(json!({"createdOn": "yesterday"}))),
                "filter",
                "invalid value for \"createdOn\": \"yesterday\" is not an ISO 8601 date-time",
            ),
            (
                "/tenants",
                f(w(json!({"createdOn": {"gt": "10000-01-01T00:00:00Z"}}))),
                "filter",
                "createdOn",
            ),
            (
                "/tenants",
                f(w(json!({"status": 9}))),
                "filter",
                "must be one of",
            ),
            (
                "/tenants",
                f(w(json!({"key": 5}))),
                "filter",
                "invalid value for \"key\"",
            ),
            (
                "/tenants",
                f(w(json!({"domains": {"gt": "a.com"}}))),
                "filter",
                "only equality",
            ),
            (
                "/tenants",
                f(w(json!({"domains": ["a.com"]}))),
                "filter",
                "domains",
            ),
            (
                "/tenants",
                f(w(json!({"name": {"like": "abc\\"}}))),
                "filter",
                "unescaped backslash",
            ),
            (
                "/tenants",
                f(w(json!({"name": "a\u{0}b"}))),
                "filter",
                "NUL",
            ),
            (
                "/tenants",
                f(w(json!({"and": []}))),
                "filter",
                "non-empty array",
            ),
            (
                "/tenants",
                f(w(json!({"or": {"key": "a"}}))),
                "filter",
                "non-empty array",
            ),
            (
                "/contacts",
                f(w(json!({"isPrimary": "maybe"}))),
                "filter",
                "must be a boolean",
            ),
            (
                "/invoices",
                f(w(json!({"amount": 1.23456}))),
                "filter",
                "at most 4 decimal places",
            ),
            (
                "/invoices",
                f(w(json!({"amount": "1e16"}))),
                "filter",
                "amount",
            ),
            (
                "/invoices",
                f(w(json!({"status": "PAYED"}))),
                "filter",
                "must be one of",
            ),
            (
                "/leads",
                f(w(json!({"isValidated": "yes"}))),
                "filter",
                "must be a boolean",
            ),
            (
                "/tenants",
                format!("{}&{}", f(json!({})), f(json!({}))),
                "filter",
                "more than once",
            ),
            (
                "/tenants",
                format!("{}&filter[limit]=5", f(json!({}))),
                "filter",
                "both as JSON and in bracket form",
            ),
            (
                "/tenants",
                "filter[where=1".into(),
                "filter",
                "malformed parameter name",
            ),
            (
                "/tenants",
                "filter[where]x=1".into(),
                "filter",
                "malformed parameter name",
            ),
            (
                "/tenants",
                "filter[where]=1&filter[where][name]=a".into(),
                "filter",
                "conflicting values",
            ),
            (
                "/tenants",
                "filter[limit]=abc".into(),
                "filter",
                "limit must be a non-negative integer",
            ),
            (
                "/tenants",
                "filter[where][nope]=1".into(),
                "filter",
                "unknown field \"nope\"",
            ),
            (
                "/tenants",
                "filter[where][status]=ACTIVATED".into(),
                "filter",
                "must be one of",
            ),
            (
                "/tenants/count",
                wq(json!({"nope": 1})),
                "where",
                "unknown field \"nope\" in where",
            ),
            (
                "/tenants/count",
                "where=%7Bbad".into(),
                "where",
                "\"where\" is not valid JSON",
            ),
            (
                "/tenants/count",
                "where[key][foo]=1".into(),
                "where",
                "unknown operator \"foo\"",
            ),
            (
                "/contacts/count",
                wq(json!({"email": {"like": "\\"}})),
                "where",
                "unescaped backslash",
            ),
            (
                "/invoices/count",
                wq(json!({"dueDate": {"between": ["2026-01-01", "soon"]}})),
                "where",
                "dueDate",
            ),
            (
                "/tenant-configs/count",
                wq(json!({"configValue": null})),
                "where",
                "cannot be used in where",
            ),
            (
                "/leads/count",
                wq(json!({"or": []})),
                "where",
                "non-empty array",
            ),
        ];
        for (path, query, param, fragment) in cases {
            let url = format!("{path}?{query}");
            let (status, body) = app.get(&url, Some(&admin)).await;
            expect_bad_param(status, &body, param, fragment, &format!("GET {url}"));
        }
        // Reads by id refuse a where; bulk updates refuse a bad where and write nothing.
        let item = format!("/tenants/{}", random_uuid());
        let (status, body) = app
            .get(
                &with_filter(&item, &w(json!({"key": "alpha"}))),
                Some(&admin),
            )
            .await;
        expect_bad_param(status, &body, "filter", "where", "where in a read by id");
        for (path, query, fragment) in [
            ("/tenants", wq(json!({"nope": 1})), "unknown field"),
            (
                "/contacts",
                wq(json!({"email": {"regexp": "x"}})),
                "unknown operator",
            ),
            ("/invoices", "where[amount][gt]=abc".to_string(), "amount"),
            ("/tenant-configs", "where=%7B".to_string(), "not valid JSON"),
        ] {
            let url = format!("{path}?{query}");
            let (status, body) = app.patch(&url, Some(&admin), &json!({})).await;
            expect_bad_param(status, &body, "where", fragment, &format!("PATCH {url}"));
        }
        assert_unchanged(&before, &snapshot(&app).await, "unusable filters");
    }
);

both_dbs!(
    money_comparisons_take_the_documented_range,
    |app| async move {
        // docs/filters.md: money in a filter is "a number or a decimal string, at most 4 decimal
        // places, at most 99 999 999 999.9999 in absolute value" (the storable range).
        let admin = app.admin_token();
        let t = onboard(
            &app,
            &admin,
            onboarding("acme", "Acme", &["acme.com"], "ada"),
        )
        .await;
        create(
        &app,
        &admin,
        "/invoices",
        &json!({"startDate": "2026-01-01", "endDate": "2026-01-31", "amount": "99999999999.9999",
                "currencyCode": "CLF", "dueDate": "2026-02-15", "status": 0, "tenantId": id_of(&t)}),
    )
    .await;
        for (where_, n) in [
            (json!({"amount": {"lt": "99999999999.9999"}}), 0),
            (json!({"amount": {"lte": "99999999999.9999"}}), 1),
            (json!({"amount": {"gt": "-99999999999.9999"}}), 1),
            (
                json!({"amount": {"between": ["-99999999999.9999", "99999999999.9999"]}}),
                1,
            ),
            (json!({"amount": {"gte": "99999999999.9999"}}), 1),
            (json!({"amount": "99999999999.9999"}), 1),
        ] {
            let (status, body) = app
                .get(&count_path("/invoices", &where_), Some(&admin))
                .await;
            assert_eq!(status, 200, "where {where_}: {body}");
            assert_eq!(body, json!({"count": n}), "where {where_}");
        }
        let (status, body) = app
            .get(
                &count_path("/invoices", &json!({"amount": {"lt": "100000000000"}})),
                Some(&admin),
            )
            .await;
        expect_bad_param(status, &body, "where", "amount", "money of 10^11");
    }
);

both_dbs!(
    lists_answer_at_most_max_list_limit_rows,
    [("MAX_LIST_LIMIT", "2")],
    |app| async move {
        seed(&app).await;
        let admin = app.admin_token();
        let keys = |rows: &Value| labels("/tenants", rows);
        // No limit, a larger limit, a skip without limit: at most two rows, clamped not refused.
        for (filter, want) in [
            (json!({"order": "key"}), vec!["alpha", "beta"]),
            (json!({"order": "key", "limit": 50}), vec!["alpha", "beta"]),
            (json!({"order": "key", "skip": 2}), vec!["delta", "eps"]),
            (json!({"order": "key", "limit": 1}), vec!["alpha"]),
        ] {
            let rows = get_ok(&app, &admin, &with_filter("/tenants", &filter)).await;
            assert_eq!(keys(&rows), want, "filter {filter}");
        }
        // Counts are not capped.
        let counted = get_ok(&app, &admin, "/tenants/count").await;
        assert_eq!(counted, json!({"count": 6}));

        // Included rows are capped per parent, and a scope's own paging applies per parent.
        let contacts_of_alpha = |scope: Value| json!({"where": {"key": "alpha"}, "include": [{"relation": "contacts", "scope": scope}]});
        for (scope, want) in [
            (
                json!({"order": "email"}),
                vec!["ada@acme.com", "bob@acme.com"],
            ),
            (
                json!({"order": "email", "skip": 1}),
                vec!["bob@acme.com", "cid@www.acme.com"],
            ),
            (
                json!({"order": "email DESC", "limit": 1}),
                vec!["cid@www.acme.com"],
            ),
            (json!({"order": "email", "skip": 5}), vec![]),
        ] {
            let filter = contacts_of_alpha(scope.clone());
            let rows = get_ok(&app, &admin, &with_filter("/tenants", &filter)).await;
            let emails: Vec<&str> = rows[0]["contacts"]
                .as_array()
                .unwrap_or_else(|| panic!("contacts included: {rows}"))
                .iter()
                .map(|c| c["email"].as_str().unwrap())
                .collect();
            assert_eq!(emails, want, "scope {scope}");
        }
        // Per parent: every tenant of the page gets its own page of contacts.
        let filter = json!({"order": "key", "include": [{"relation": "contacts",
            "scope": {"order": "email", "limit": 1}}]});
        let rows = get_ok(&app, &admin, &with_filter("/tenants", &filter)).await;
        let firsts: Vec<&str> = rows
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["contacts"][0]["email"].as_str().unwrap())
            .collect();
        assert_eq!(firsts, ["ada@acme.com", "bea@beta.io"]);
    }
);

// A tenant is found by each of its domains as they change: PATCH, PUT and a bulk PATCH replace
// them, a deleted tenant is found by none (on SQLite through the `tenant_domains` rows its
// triggers keep, on PostgreSQL through the GIN index).
both_dbs!(
    a_tenant_is_found_by_its_domains_as_they_change,
    |app| async move {
        let admin = app.admin_token();
        let by_domain = |domain: &str| {
            with_filter(
                "/tenants",
                &json!({"where": {"domains": domain}, "fields": {"key": true}, "order": "key"}),
            )
        };
        let keys_of = |rows: Value| -> Vec<String> {
            rows.as_array()
                .unwrap()
                .iter()
                .map(|r| r["key"].as_str().unwrap().to_string())
                .collect()
        };
        let tenant = onboard(
            &app,
            &admin,
            onboarding("acme", "Acme", &["a.io", "b.io"], "ada"),
        )
        .await;
        let id = id_of(&tenant);
        onboard(&app, &admin, onboarding("beta", "Beta", &["b.io"], "bea")).await;
        for (domain, want) in [("a.io", vec!["acme"]), ("b.io", vec!["acme", "beta"])] {
            let rows = get_ok(&app, &admin, &by_domain(domain)).await;
            assert_eq!(keys_of(rows), want, "{domain}");
        }

        patch_ok(
            &app,
            &admin,
            &format!("/tenants/{id}"),
            &json!({"domains": ["b.io", "c.io"]}),
        )
        .await;
        for (domain, want) in [
            ("a.io", vec![]),
            ("b.io", vec!["acme", "beta"]),
            ("c.io", vec!["acme"]),
        ] {
            let rows = get_ok(&app, &admin, &by_domain(domain)).await;
            assert_eq!(keys_of(rows), want, "{domain} after PATCH");
        }
        let counted = get_ok(
            &app,
            &admin,
            &count_path("/tenants", &json!({"domains": "b.io"})),
        )
        .await;
        assert_eq!(counted, json!({"count": 2}));

        let (status, body) = app
            .put(
                &format!("/tenants/{id}"),
                Some(&admin),
                &json!({"name": "Acme", "key": "acme", "status": 1, "domains": ["d.io"]}),
            )
            .await;
        assert_eq!(status, 204, "{body}");
        let (status, body) = app
            .patch(
                &with_where("/tenants", &json!({"key": "beta"})),
                Some(&admin),
                &json!({"domains": ["d.io", "e.io"]}),
            )
            .await;
        assert_eq!(status, 200, "{body}");
        for (domain, want) in [
            ("b.io", vec![]),
            ("c.io", vec![]),
            ("d.io", vec!["acme", "beta"]),
            ("e.io", vec!["beta"]),
        ] {
            let rows = get_ok(&app, &admin, &by_domain(domain)).await;
            assert_eq!(keys_of(rows), want, "{domain} after PUT and bulk PATCH");
        }

        delete_ok(&app, &admin, &format!("/tenants/{id}")).await;
        let rows = get_ok(&app, &admin, &by_domain("d.io")).await;
        assert_eq!(keys_of(rows), ["beta"], "a deleted tenant is found by none");
    }
);

/// `GET /tenants/count` of all tenants and of each status (counted from `tenant_status_counts`)
/// against the same count taken from the table (a `where` the counters cannot answer) and the
/// rows listed.
async fn assert_counts_match(app: &TestApp, admin: &str, when: &str) {
    let count = |w: Value| async move {
        let body = get_ok(app, admin, &count_path("/tenants", &w)).await;
        body["count"].as_i64().unwrap()
    };
    let listed = |w: Value| async move {
        let filter = json!({"where": w, "fields": {"id": true}});
        let rows = get_ok(app, admin, &with_filter("/tenants", &filter)).await;
        rows.as_array().unwrap().len() as i64
    };
    let everything = {
        let body = get_ok(app, admin, "/tenants/count").await;
        body["count"].as_i64().unwrap()
    };
    assert_eq!(everything, listed(json!({})).await, "all tenants {when}");
    for status in 0..7 {
        let counted = count(json!({"status": status})).await;
        let from_table = count(json!({"status": status, "key": {"neq": "-"}})).await;
        assert_eq!(counted, from_table, "status {status} {when}");
        assert_eq!(
            counted,
            listed(json!({"status": status})).await,
            "status {status} {when}"
        );
    }
}

// Counts by status follow every write: onboarding, PATCH, PUT, a bulk PATCH, a lifecycle move,
// a delete — and many onboardings and moves at once.
both_dbs!(counts_by_status_follow_every_write, |app| async move {
    let admin = app.admin_token();
    let mut ids = Vec::new();
    for n in 0..6 {
        ids.push(a_tenant(&app, &format!("t{n}")).await);
    }
    assert_counts_match(&app, &admin, "after onboarding").await;
    let named = get_ok(
        &app,
        &admin,
        &count_path("/tenants", &json!({"status": "PENDINGPROVISION"})),
    )
    .await;
    assert_eq!(named, json!({"count": 6}), "a status by name");

    patch_ok(
        &app,
        &admin,
        &format!("/tenants/{}", ids[0]),
        &json!({"status": 0}),
    )
    .await;
    let (status, body) = app
        .put(
            &format!("/tenants/{}", ids[1]),
            Some(&admin),
            &json!({"name": "Tenant 1", "key": "t1", "status": 3, "domains": ["t1.io"]}),
        )
        .await;
    assert_eq!(status, 204, "{body}");
    let (status, body) = app
        .patch(
            &with_where("/tenants", &json!({"key": {"inq": ["t2", "t3"]}})),
            Some(&admin),
            &json!({"status": 6}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = app
        .post(
            &format!("/tenants/{}/provision", ids[4]),
            Some(&admin),
            &json!({"id": "sub-1", "subscriberId": "t4", "planId": "plan-gold", "status": 1,
                "startDate": "2026-12-01", "endDate": "2027-12-01",
                "plan": {"tier": "premium", "name": "Gold"}}),
        )
        .await;
    assert_eq!(status, 204, "{body}");
    delete_ok(&app, &admin, &format!("/tenants/{}", ids[5])).await;
    assert_counts_match(
        &app,
        &admin,
        "after PATCH, PUT, bulk PATCH, provision, delete",
    )
    .await;
    let counted = get_ok(&app, &admin, "/tenants/count").await;
    assert_eq!(counted, json!({"count": 5}), "the deleted tenant is gone");

    // Many at once: onboardings and status moves racing.
    let paths: Vec<String> = ids[..2].iter().map(|id| format!("/tenants/{id}")).collect();
    let statuses: Vec<Value> = (0..10).map(|i| json!({"status": i % 7})).collect();
    let moves = paths
        .iter()
        .cycle()
        .zip(&statuses)
        .map(|(path, status)| patch_ok(&app, &admin, path, status));
    let keys: Vec<String> = (100..130).map(|n| format!("t{n}")).collect();
    let onboardings = keys.iter().map(|key| a_tenant(&app, key));
    tokio::join!(
        futures_util::future::join_all(moves),
        futures_util::future::join_all(onboardings)
    );
    assert_counts_match(&app, &admin, "after racing writes").await;
});
