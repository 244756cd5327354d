//! Helpers shared by the tests of the REST surface (`collections.rs`, `filters.rs`,
//! `filter_parity.rs`, `lead_scope.rs`, `funnel.rs`): URL encoding, seeding through the API,
//! snapshots of everything the API can show (to prove that a rejected request wrote nothing) and
//! checks of the wire format.
//!
//! Used next to the harness: `mod common; mod rest_support; use common::*; use rest_support::*;`.
#![allow(dead_code)]

use std::time::Duration;

use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};

use crate::common::*;

/// Permission codes of one collection: view, create, update, delete.
#[derive(Debug, Clone, Copy)]
pub struct Codes {
    pub view: &'static str,
    pub create: &'static str,
    pub update: &'static str,
    pub delete: &'static str,
}

pub const TENANT_CODES: Codes = Codes {
    view: "10207",
    create: "10204",
    update: "10205",
    delete: "10206",
};
pub const LEAD_CODES: Codes = Codes {
    view: "10203",
    create: "10200",
    update: "10201",
    delete: "10202",
};
pub const CONTACT_CODES: Codes = Codes {
    view: "10211",
    create: "10208",
    update: "10209",
    delete: "10210",
};
pub const INVOICE_CODES: Codes = Codes {
    view: "10215",
    create: "10212",
    update: "10213",
    delete: "10214",
};
pub const CONFIG_CODES: Codes = Codes {
    view: "10221",
    create: "10220",
    update: "10222",
    delete: "10223",
};

/// The audit fields and `id`, first in every row, in this order.
pub const AUDIT_FIELDS: [&str; 8] = [
    "deleted",
    "deletedOn",
    "deletedBy",
    "createdOn",
    "modifiedOn",
    "createdBy",
    "modifiedBy",
    "id",
];

/// The wire fields of each collection after the audit fields, in the reference schema's order.
pub const TENANT_FIELDS: [&str; 7] = [
    "name",
    "status",
    "key",
    "spocUserId",
    "domains",
    "leadId",
    "addressId",
];
pub const LEAD_FIELDS: [&str; 6] = [
    "firstName",
    "lastName",
    "companyName",
    "email",
    "isValidated",
    "addressId",
];
pub const CONTACT_FIELDS: [&str; 6] = [
    "firstName",
    "lastName",
    "email",
    "isPrimary",
    "type",
    "tenantId",
];
pub const INVOICE_FIELDS: [&str; 8] = [
    "startDate",
    "endDate",
    "amount",
    "currencyCode",
    "invoiceFile",
    "dueDate",
    "status",
    "tenantId",
];
pub const CONFIG_FIELDS: [&str; 3] = ["configKey", "configValue", "tenantId"];

/// Every key of a row of a collection with `fields`, in wire order.
pub fn row_keys(fields: &[&str]) -> Vec<String> {
    AUDIT_FIELDS
        .iter()
        .chain(fields)
        .map(|s| s.to_string())
        .collect()
}

/// The keys of a JSON object, in order.
pub fn keys_of(v: &Value) -> Vec<String> {
    v.as_object()
        .unwrap_or_else(|| panic!("not an object: {v}"))
        .keys()
        .cloned()
        .collect()
}

/// Percent-encodes every byte but ASCII letters and digits.
pub fn enc(s: &str) -> String {
    utf8_percent_encode(s, NON_ALPHANUMERIC).to_string()
}

/// A JSON value as a URL-encoded query value.
pub fn q(v: &Value) -> String {
    enc(&v.to_string())
}

/// `path?filter=<json>`.
pub fn with_filter(path: &str, filter: &Value) -> String {
    format!("{path}?filter={}", q(filter))
}

/// `path?where=<json>`.
pub fn with_where(path: &str, where_: &Value) -> String {
    format!("{path}?where={}", q(where_))
}

/// `path/count?where=<json>`.
pub fn count_path(path: &str, where_: &Value) -> String {
    format!("{path}/count?where={}", q(where_))
}

/// A token of caller `id` with every permission but `code`.
pub fn token_without(app: &TestApp, id: &str, code: &str) -> String {
    let codes: Vec<&str> = tms::auth::ALL_PERMISSIONS
        .iter()
        .copied()
        .filter(|c| *c != code)
        .collect();
    app.token_for(id, &codes)
}

/// An admin token of caller `id`.
pub fn admin_as(app: &TestApp, id: &str) -> String {
    app.token_for(id, tms::auth::ALL_PERMISSIONS)
}

/// The body of an administrator's onboarding (`POST /tenants`), contact email on the first
/// domain.
pub fn onboarding(key: &str, name: &str, domains: &[&str], contact_local: &str) -> Value {
    json!({
        "name": name,
        "key": key,
        "domains": domains,
        "contact": {
            "firstName": format!("{contact_local} first"),
            "lastName": format!("{contact_local} last"),
            "email": format!("{contact_local}@{}", domains[0]),
            "isPrimary": true,
            "type": "admin",
        },
    })
}

/// `POST /tenants` (onboarding) that must succeed; returns the tenant with its relations.
pub async fn onboard(app: &TestApp, token: &str, body: Value) -> Value {
    let (status, tenant) = app.post("/tenants", Some(token), &body).await;
    assert_eq!(status, 200, "onboarding {body}: {tenant}");
    tenant
}

/// Onboards the tenant `key` ("Tenant <key>", domain `<key>.io`, primary contact `ada@<key>.io`)
/// as an administrator; returns its id.
pub async fn a_tenant(app: &TestApp, key: &str) -> String {
    let domain = format!("{key}.io");
    let body = onboarding(key, &format!("Tenant {key}"), &[&domain], "ada");
    let tenant = onboard(app, &app.admin_token(), body).await;
    tenant["id"].as_str().unwrap().to_string()
}

/// `POST path` that must answer 200; returns the created row.
pub async fn create(app: &TestApp, token: &str, path: &str, body: &Value) -> Value {
    let (status, row) = app.post(path, Some(token), body).await;
    assert_eq!(status, 200, "POST {path} {body}: {row}");
    row
}

/// `PATCH path` that must answer 204.
pub async fn patch_ok(app: &TestApp, token: &str, path: &str, body: &Value) {
    let (status, answer) = app.patch(path, Some(token), body).await;
    assert_eq!(status, 204, "PATCH {path} {body}: {answer}");
}

/// `PATCH /tenants/{id}` setting `status` (unless it is 1, the status of a new tenant) and
/// `spocUserId` (when given), which must answer 204; whether there was anything to set.
pub async fn patch_status_and_spoc(
    app: &TestApp,
    token: &str,
    id: &str,
    status: i64,
    spoc: Option<&str>,
) -> bool {
    let mut change = serde_json::Map::new();
    if status != 1 {
        change.insert("status".into(), json!(status));
    }
    if let Some(spoc) = spoc {
        change.insert("spocUserId".into(), json!(spoc));
    }
    if change.is_empty() {
        return false;
    }
    patch_ok(
        app,
        token,
        &format!("/tenants/{id}"),
        &Value::Object(change),
    )
    .await;
    true
}

/// `DELETE path` that must answer 204.
pub async fn delete_ok(app: &TestApp, token: &str, path: &str) {
    let (status, answer) = app.delete(path, Some(token)).await;
    assert_eq!(status, 204, "DELETE {path}: {answer}");
}

/// `GET path` that must answer 200.
pub async fn get_ok(app: &TestApp, token: &str, path: &str) -> Value {
    let (status, body) = app.get(path, Some(token)).await;
    assert_eq!(status, 200, "GET {path}: {body}");
    body
}

/// The string id of a row.
pub fn id_of(row: &Value) -> String {
    row["id"]
        .as_str()
        .unwrap_or_else(|| panic!("row without id: {row}"))
        .to_string()
}

/// `POST /leads` (public) that must succeed; returns the lead id.
pub async fn create_lead(app: &TestApp, body: &Value) -> String {
    let (status, answer) = app.post("/leads", None, body).await;
    assert_eq!(status, 200, "POST /leads {body}: {answer}");
    answer["id"]
        .as_str()
        .unwrap_or_else(|| panic!("lead answer without id: {answer}"))
        .to_string()
}

/// A lead of `domain` that signs up (the app answers its key: `LEAD_KEY_IN_RESPONSE=true`),
/// verifies and onboards its tenant `key` with its lead token: (lead id, tenant, lead token).
pub async fn lead_with_tenant(app: &TestApp, key: &str, domain: &str) -> (String, Value, String) {
    let (status, lead) = app
        .post(
            "/leads",
            None,
            &json!({"firstName": "Ada", "lastName": "L", "email": format!("ada@{domain}"),
                    "companyName": format!("Company {key}")}),
        )
        .await;
    assert_eq!(status, 200, "{lead}");
    let lead_id = id_of(&lead);
    let verify = app
        .raw(
            Method::POST,
            &format!("/leads/{lead_id}/verify"),
            lead["key"].as_str(),
            "",
            None,
        )
        .await;
    assert_eq!(verify.status, 200, "{}", verify.text);
    let token = verify.json()["token"].as_str().unwrap().to_string();
    let (status, tenant) = app
        .post(
            &format!("/leads/{lead_id}/tenants"),
            Some(&token),
            &json!({"key": key, "domains": [domain]}),
        )
        .await;
    assert_eq!(status, 200, "{tenant}");
    (lead_id, tenant, token)
}

/// Everything the API shows, read with an admin token: every collection in full, tenants with
/// every relation (so addresses and resources are covered) and leads with their address.
pub async fn snapshot(app: &TestApp) -> Value {
    let token = app.admin_token();
    let tenants = json!({"include": ["contacts", "resources", "lead", "address"]});
    let leads = json!({"include": ["address", "tenant"]});
    let mut all = serde_json::Map::new();
    for (name, path) in [
        ("tenants", with_filter("/tenants", &tenants)),
        ("leads", with_filter("/leads", &leads)),
        ("contacts", "/contacts".to_string()),
        ("invoices", "/invoices".to_string()),
        ("configs", "/tenant-configs".to_string()),
    ] {
        let (status, body) = app.get(&path, Some(&token)).await;
        assert_eq!(status, 200, "snapshot GET {path}: {body}");
        all.insert(name.into(), body);
    }
    Value::Object(all)
}

/// Fails when `after` differs from `before`, naming what changed.
#[track_caller]
pub fn assert_unchanged(before: &Value, after: &Value, what: &str) {
    if before != after {
        for key in ["tenants", "leads", "contacts", "invoices", "configs"] {
            assert_eq!(
                before[key], after[key],
                "{what} changed the {key} visible through the API"
            );
        }
        assert_eq!(before, after, "{what} changed data");
    }
}

/// The response is a LoopBack error of `status`/`name`.
#[track_caller]
pub fn expect_error(status: StatusCode, body: &Value, want: u16, name: &str, what: &str) {
    assert_eq!(status.as_u16(), want, "{what}: {body}");
    assert_loopback_error(body, want, name);
}

/// The response is a 400 for query parameter `param` whose message contains `fragment`.
#[track_caller]
pub fn expect_bad_param(status: StatusCode, body: &Value, param: &str, fragment: &str, what: &str) {
    assert_eq!(status, 400, "{what}: {body}");
    assert_loopback_error(body, 400, "BadRequestError");
    assert_eq!(
        body["error"]["code"], "INVALID_PARAMETER_VALUE",
        "{what}: {body}"
    );
    let message = body["error"]["message"].as_str().unwrap_or_default();
    let prefix = format!("Invalid value for parameter \"{param}\"");
    assert!(
        message.starts_with(&prefix),
        "{what}: {message:?} does not start with {prefix:?}"
    );
    assert!(
        message.contains(fragment),
        "{what}: {message:?} does not mention {fragment:?}"
    );
}

/// The `(path, code)` pairs of a 422 answer, sorted.
#[track_caller]
pub fn validation_pairs(status: StatusCode, body: &Value, what: &str) -> Vec<(String, String)> {
    assert_eq!(status, 422, "{what}: {body}");
    assert_loopback_error(body, 422, "UnprocessableEntityError");
    assert_eq!(body["error"]["code"], "VALIDATION_FAILED", "{what}: {body}");
    let details = body["error"]["details"]
        .as_array()
        .unwrap_or_else(|| panic!("{what}: 422 without details: {body}"));
    assert!(!details.is_empty(), "{what}: empty details: {body}");
    let mut pairs: Vec<(String, String)> = details
        .iter()
        .map(|d| {
            for key in ["path", "code", "message"] {
                assert!(d[key].is_string(), "{what}: detail without {key}: {d}");
            }
            (
                d["path"].as_str().unwrap_or_default().to_string(),
                d["code"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    pairs.sort();
    pairs
}

/// `(path, code)` pairs written briefly, sorted.
pub fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = list
        .iter()
        .map(|(p, c)| (p.to_string(), c.to_string()))
        .collect();
    out.sort();
    out
}

/// `2026-11-27T22:52:25.556Z`: ISO 8601, UTC, milliseconds.
pub fn is_iso_ms(v: &Value) -> bool {
    let Some(s) = v.as_str() else {
        return false;
    };
    let b = s.as_bytes();
    b.len() == 24
        && b.iter().enumerate().all(|(i, c)| match i {
            4 | 7 => *c == b'-',
            10 => *c == b'T',
            13 | 16 => *c == b':',
            19 => *c == b'.',
            23 => *c == b'Z',
            _ => c.is_ascii_digit(),
        })
        && chrono::DateTime::parse_from_rfc3339(s).is_ok()
}

/// A lowercase hyphenated UUID.
pub fn is_uuid(v: &Value) -> bool {
    v.as_str()
        .is_some_and(|s| uuid::Uuid::parse_str(s).is_ok_and(|u| u.hyphenated().to_string() == s))
}

/// Sleeps long enough for the next write to get a later millisecond timestamp.
pub async fn tick() {
    tokio::time::sleep(Duration::from_millis(3)).await;
}

/// A fresh random UUID, as text.
pub fn random_uuid() -> String {
    uuid::Uuid::new_v4().to_string()
}
