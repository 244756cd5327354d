//! The generic REST surface (docs/API.md) over real HTTP, on SQLite and PostgreSQL:
//! every collection's create/list/count/get/patch/put/delete/bulk patch with the shapes of its
//! answers; authentication and permissions on every route; unknown, malformed and deleted ids;
//! validation (422 with `details`), malformed JSON (400), conflicts (409) and missing references
//! (404) — each refused request checked to have written nothing; `filter` shaping (fields,
//! order, limit, skip, include) in JSON and bracket form; soft-deleted rows hidden everywhere;
//! values no database can store alike (NUL characters, instants outside the years 0000-9999)
//! refused with 422; concurrent onboardings with one key.

mod common;
mod rest_support;

use common::*;
use rest_support::*;

const CREATOR: &str = "aaaaaaaa-0000-4000-8000-000000000001";
const EDITOR: &str = "aaaaaaaa-0000-4000-8000-000000000002";
const DELETER: &str = "aaaaaaaa-0000-4000-8000-000000000003";

/// The audit fields of a freshly created row of caller `caller`.
#[track_caller]
fn check_created(row: &Value, caller: &str, what: &str) {
    assert_eq!(row["deleted"], false, "{what}: {row}");
    assert_eq!(row["deletedOn"], Value::Null, "{what}: {row}");
    assert_eq!(row["deletedBy"], Value::Null, "{what}: {row}");
    assert_eq!(row["createdBy"], caller, "{what}: {row}");
    assert_eq!(row["modifiedBy"], caller, "{what}: {row}");
    assert!(
        is_iso_ms(&row["createdOn"]),
        "{what}: createdOn {}",
        row["createdOn"]
    );
    assert!(
        is_iso_ms(&row["modifiedOn"]),
        "{what}: modifiedOn {}",
        row["modifiedOn"]
    );
    assert_eq!(row["createdOn"], row["modifiedOn"], "{what}: {row}");
    assert!(is_uuid(&row["id"]), "{what}: id {}", row["id"]);
}

/// Every property of `expected` has that value in `row`.
#[track_caller]
fn check_fields(row: &Value, expected: &Value, what: &str) {
    for (k, v) in expected.as_object().expect("expected fields are an object") {
        assert_eq!(&row[k], v, "{what}: field {k} of {row}");
    }
}

/// `(status, body)` of a request with an optional body.
async fn send(
    app: &TestApp,
    method: Method,
    path: &str,
    token: Option<&str>,
    body: Option<&Value>,
) -> (StatusCode, Value) {
    app.request(method, path, token, body).await
}

/// A bulk `PATCH path` with `body` as `token`, which must answer 200 with `{"count": n}`.
async fn bulk_patch(app: &TestApp, token: &str, path: &str, body: &Value, n: i64) {
    let (status, answer) = app.patch(path, Some(token), body).await;
    assert_eq!(
        (status.as_u16(), answer),
        (200, json!({"count": n})),
        "bulk PATCH {path} {body}"
    );
}

async fn count(app: &TestApp, path: &str) -> i64 {
    let body = get_ok(app, &app.admin_token(), &format!("{path}/count")).await;
    assert_eq!(keys_of(&body), ["count"], "{body}");
    body["count"].as_i64().expect("count is a number")
}

// ---------------------------------------------------------------------------------------------
// Tenants: onboarding, update, replace, delete, conflicts
// ---------------------------------------------------------------------------------------------

both_dbs!(
    tenant_onboarding_returns_the_tenant_with_its_relations,
    |app| async move {
        let token = admin_as(&app, CREATOR);
        let body = json!({
            "name": "Acme Corp",
            "key": "acme",
            "domains": ["Acme.com", "www.acme.com"],
            "contact": {"firstName": "Ada", "lastName": "Lovelace", "email": "ada@acme.com",
                        "isPrimary": true, "type": "admin"},
            "address": "1 Main St", "city": "Springfield", "state": "IL", "zip": "62701",
            "country": "USA",
        });
        let tenant = onboard(&app, &token, body).await;
        let keys = keys_of(&tenant);
        let model = row_keys(&TENANT_FIELDS);
        assert_eq!(keys[..model.len()], model[..], "tenant keys: {keys:?}");
        // No lead: `lead` is left out (or null).
        assert!(tenant.get("lead").is_none_or(Value::is_null), "{tenant}");
        let relations: Vec<&str> = keys[model.len()..]
            .iter()
            .map(String::as_str)
            .filter(|k| *k != "lead")
            .collect();
        assert_eq!(relations, ["contacts", "resources", "address"], "{tenant}");
        check_created(&tenant, CREATOR, "onboarded tenant");
        check_fields(
            &tenant,
            &json!({"name": "Acme Corp", "key": "acme", "status": 1, "spocUserId": null,
                "domains": ["acme.com", "www.acme.com"], "leadId": null, "resources": []}),
            "onboarded tenant",
        );
        let tenant_id = id_of(&tenant);

        let contacts = tenant["contacts"].as_array().expect("contacts is an array");
        assert_eq!(contacts.len(), 1, "{tenant}");
        let contact = &contacts[0];
        assert_eq!(keys_of(contact), row_keys(&CONTACT_FIELDS), "{contact}");
        check_created(contact, CREATOR, "onboarded contact");
        check_fields(
            contact,
            &json!({"firstName": "Ada", "lastName": "Lovelace", "email": "ada@acme.com",
                "isPrimary": true, "type": "admin", "tenantId": tenant_id}),
            "onboarded contact",
        );

        let address = &tenant["address"];
        check_fields(
            address,
            &json!({"address": "1 Main St", "city": "Springfield", "state": "IL", "zip": "62701",
                "country": "USA"}),
            "onboarded address",
        );
        assert_eq!(address["id"], tenant["addressId"], "{tenant}");

        // The plain row reads back without relations, in the model's order.
        let admin = app.admin_token();
        let read = get_ok(&app, &admin, &format!("/tenants/{tenant_id}")).await;
        assert_eq!(keys_of(&read), model, "{read}");
        for key in &model {
            assert_eq!(read[key], tenant[key], "GET /tenants/{{id}} field {key}");
        }
        let listed = get_ok(&app, &admin, "/tenants").await;
        assert_eq!(listed, json!([read]));
        assert_eq!(count(&app, "/tenants").await, 1);
        assert_eq!(count(&app, "/contacts").await, 1);
        let read_contact = get_ok(&app, &admin, &format!("/contacts/{}", id_of(contact))).await;
        assert_eq!(&read_contact, contact);
    }
);

both_dbs!(tenant_update_replace_and_delete, |app| async move {
    let creator = admin_as(&app, CREATOR);
    let editor = admin_as(&app, EDITOR);
    let deleter = admin_as(&app, DELETER);
    let admin = app.admin_token();
    let mut body = onboarding("alpha", "Alpha", &["alpha.com"], "ada");
    body["country"] = json!("India");
    let alpha = onboard(&app, &creator, body).await;
    let beta = onboard(
        &app,
        &creator,
        onboarding("beta", "Beta", &["beta.io"], "bea"),
    )
    .await;
    let id = id_of(&alpha);
    let item = format!("/tenants/{id}");
    let plain = get_ok(&app, &admin, &item).await;
    assert!(is_uuid(&plain["addressId"]), "{plain}");
    tick().await;

    // PATCH: the given fields change, the rest stays; the editor is recorded.
    let (status, answer) = app
        .patch(
            &item,
            Some(&editor),
            &json!({"status": 0, "spocUserId": "user-7"}),
        )
        .await;
    assert_eq!(status, 204, "{answer}");
    assert_eq!(answer, Value::Null, "204 has no body");
    let patched = get_ok(&app, &admin, &item).await;
    for key in row_keys(&TENANT_FIELDS) {
        match key.as_str() {
            "status" => assert_eq!(patched[&key], 0),
            "spocUserId" => assert_eq!(patched[&key], "user-7"),
            "modifiedBy" => assert_eq!(patched[&key], EDITOR),
            "modifiedOn" => {
                assert!(is_iso_ms(&patched[&key]));
                assert!(
                    patched[&key].as_str() > plain[&key].as_str(),
                    "modifiedOn moves forward: {} → {}",
                    plain[&key],
                    patched[&key]
                );
            }
            _ => assert_eq!(patched[&key], plain[&key], "PATCH changed {key}"),
        }
    }
    // Enum names are accepted on input and stored as numbers.
    patch_ok(&app, &editor, &item, &json!({"status": "inactive"})).await;
    assert_eq!(get_ok(&app, &admin, &item).await["status"], 5);
    // Limits count characters: exactly 100 (multi-byte) characters are accepted.
    patch_ok(&app, &editor, &item, &json!({"name": "é".repeat(100)})).await;
    assert_eq!(get_ok(&app, &admin, &item).await["name"], "é".repeat(100));

    // PUT replaces every writable field; absent optional ones become null.
    let (status, answer) = app
        .put(
            &item,
            Some(&editor),
            &json!({"name": "Alpha Two", "status": 2, "key": "alpha2", "domains": ["Alpha2.com"]}),
        )
        .await;
    assert_eq!(status, 204, "{answer}");
    let replaced = get_ok(&app, &admin, &item).await;
    check_fields(
        &replaced,
        &json!({"name": "Alpha Two", "status": 2, "key": "alpha2", "domains": ["alpha2.com"],
                "spocUserId": null, "leadId": null, "addressId": null,
                "createdBy": CREATOR, "modifiedBy": EDITOR,
                "createdOn": plain["createdOn"], "id": id}),
        "replaced tenant",
    );

    // Bulk PATCH answers the number of rows changed.
    let bulk = with_where("/tenants", &json!({"key": "alpha2"}));
    bulk_patch(&app, &editor, &bulk, &json!({"name": "Bulk"}), 1).await;
    assert_eq!(get_ok(&app, &admin, &item).await["name"], "Bulk");
    bulk_patch(&app, &editor, "/tenants", &json!({"spocUserId": "all"}), 2).await;

    // DELETE is soft: the row disappears from every read.
    let (status, answer) = app.delete(&item, Some(&deleter)).await;
    assert_eq!(status, 204, "{answer}");
    let (status, body) = app.get(&item, Some(&admin)).await;
    expect_error(status, &body, 404, "NotFoundError", "GET deleted tenant");
    assert_eq!(body["error"]["message"], "EntityNotFound");
    let listed = get_ok(&app, &admin, "/tenants").await;
    assert_eq!(listed.as_array().map(Vec::len), Some(1), "{listed}");
    assert_eq!(listed[0]["id"], beta["id"]);
    assert_eq!(count(&app, "/tenants").await, 1);
    let counted = get_ok(&app, &admin, &count_path("/tenants", &json!({"id": id}))).await;
    assert_eq!(counted, json!({"count": 0}));
    for (method, body) in [
        (Method::PATCH, Some(json!({"name": "x"}))),
        (
            Method::PUT,
            Some(json!({"name": "x", "status": 0, "key": "x", "domains": []})),
        ),
        (Method::DELETE, None),
    ] {
        let (status, answer) = send(&app, method.clone(), &item, Some(&admin), body.as_ref()).await;
        expect_error(
            status,
            &answer,
            404,
            "NotFoundError",
            &format!("{method} deleted tenant"),
        );
    }
    // Bulk PATCH skips deleted rows.
    bulk_patch(&app, &editor, "/tenants", &json!({"spocUserId": "x"}), 1).await;
    bulk_patch(&app, &editor, &bulk, &json!({"name": "again"}), 0).await;
});

both_dbs!(
    tenant_keys_are_unique_among_live_tenants,
    |app| async move {
        let admin = app.admin_token();
        let acme = onboard(
            &app,
            &admin,
            onboarding("acme", "Acme", &["acme.com"], "ada"),
        )
        .await;
        let beta = onboard(
            &app,
            &admin,
            onboarding("beta", "Beta", &["beta.io"], "bea"),
        )
        .await;
        let before = snapshot(&app).await;

        let (status, body) = app
            .post(
                "/tenants",
                Some(&admin),
                &onboarding("acme", "Other", &["other.com"], "o"),
            )
            .await;
        expect_error(
            status,
            &body,
            409,
            "ConflictError",
            "second tenant with key acme",
        );
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap_or_default()
                .contains("acme"),
            "the 409 names the key: {body}"
        );
        assert_unchanged(
            &before,
            &snapshot(&app).await,
            "POST /tenants with a taken key",
        );

        let beta_item = format!("/tenants/{}", id_of(&beta));
        let bulk = with_where("/tenants", &json!({"key": "beta"}));
        for (method, path, body, what) in [
            (
                Method::PATCH,
                beta_item.as_str(),
                json!({"key": "acme"}),
                "PATCH key to a taken one",
            ),
            (
                Method::PUT,
                &beta_item,
                json!({"name": "Beta", "status": 1, "key": "acme", "domains": ["beta.io"]}),
                "PUT key to a taken one",
            ),
            (
                Method::PATCH,
                &bulk,
                json!({"key": "acme"}),
                "bulk PATCH key to a taken one",
            ),
            (
                Method::PATCH,
                "/tenants",
                json!({"key": "same"}),
                "bulk PATCH of two rows to one key",
            ),
        ] {
            let (status, answer) = app.request(method, path, Some(&admin), Some(&body)).await;
            expect_error(status, &answer, 409, "ConflictError", what);
        }
        assert_unchanged(&before, &snapshot(&app).await, "updates to a taken key");

        // A soft-deleted tenant's key can be used again.
        delete_ok(&app, &admin, &format!("/tenants/{}", id_of(&acme))).await;
        let again = onboard(
            &app,
            &admin,
            onboarding("acme", "Acme again", &["acme.com"], "ada"),
        )
        .await;
        assert_ne!(again["id"], acme["id"]);
        let listed = get_ok(
            &app,
            &admin,
            &with_filter("/tenants", &json!({"where": {"key": "acme"}})),
        )
        .await;
        assert_eq!(listed.as_array().map(Vec::len), Some(1), "{listed}");
        assert_eq!(listed[0]["name"], "Acme again");
    }
);

both_dbs!(
    onboarding_bodies_are_validated_and_write_nothing,
    |app| async move {
        let admin = app.admin_token();
        onboard(
            &app,
            &admin,
            onboarding("acme", "Acme", &["acme.com"], "ada"),
        )
        .await;
        let before = snapshot(&app).await;
        let good = || onboarding("fresh", "Fresh", &["fresh.com"], "fay");
        let with = |path: &[&str], value: Value| {
            let mut body = good();
            let mut node = &mut body;
            for p in &path[..path.len() - 1] {
                node = &mut node[*p];
            }
            node[path[path.len() - 1]] = value;
            body
        };
        let without = |path: &[&str]| {
            let mut body = good();
            let mut node = &mut body;
            for p in &path[..path.len() - 1] {
                node = &mut node[*p];
            }
            node.as_object_mut().unwrap().remove(path[path.len() - 1]);
            body
        };
        let long = "x".repeat(101);
        let cases: Vec<(Value, Vec<(&str, &str)>)> = vec![
            (json!({}), vec![("", "required"); 4]),
            (without(&["contact"]), vec![("", "required")]),
            (without(&["name"]), vec![("", "required")]),
            (without(&["key"]), vec![("", "required")]),
            (without(&["domains"]), vec![("", "required")]),
            (
                with(&["contact"], json!("ada@fresh.com")),
                vec![("/contact", "type")],
            ),
            (
                with(&["contact"], json!({})),
                vec![("/contact", "required"); 4],
            ),
            (
                without(&["contact", "lastName"]),
                vec![("/contact", "required")],
            ),
            (
                with(&["contact", "email"], json!("nope")),
                vec![("/contact/email", "format")],
            ),
            (
                with(&["contact", "isPrimary"], json!("yes")),
                vec![("/contact/isPrimary", "type")],
            ),
            (
                with(&["contact", "firstName"], json!(long)),
                vec![("/contact/firstName", "maxLength")],
            ),
            (
                with(&["contact", "tenantId"], json!(random_uuid())),
                vec![("/contact", "additionalProperties")],
            ),
            (
                with(&["contact", "id"], json!(random_uuid())),
                vec![("/contact/id", "readOnly")],
            ),
            (with(&["key"], json!("Fresh")), vec![("/key", "pattern")]),
            (with(&["key"], json!("fr-esh")), vec![("/key", "pattern")]),
            (
                with(&["key"], json!("abcdefghijk")),
                vec![("/key", "maxLength")],
            ),
            (with(&["key"], json!("")), vec![("/key", "minLength")]),
            (with(&["key"], json!(7)), vec![("/key", "type")]),
            (with(&["name"], json!(long)), vec![("/name", "maxLength")]),
            (with(&["name"], json!(42)), vec![("/name", "type")]),
            (with(&["name"], json!(null)), vec![("/name", "type")]),
            (with(&["name"], json!("  ")), vec![("/name", "minLength")]),
            (
                with(&["domains"], json!("fresh.com")),
                vec![("/domains", "type")],
            ),
            (
                with(&["domains"], json!(["fresh.com", "FRESH.com"])),
                vec![("/domains", "uniqueItems")],
            ),
            (
                with(&["domains"], json!(["fresh.com", "bad domain"])),
                vec![("/domains/1", "format")],
            ),
            (
                with(&["domains"], json!(["-fresh.com"])),
                vec![("/domains/0", "format")],
            ),
            (
                with(&["domains"], json!(["fresh.com", 5])),
                vec![("/domains", "type")],
            ),
            (
                with(&["status"], json!(0)),
                vec![("", "additionalProperties")],
            ),
            (
                with(&["nope"], json!(1)),
                vec![("", "additionalProperties")],
            ),
            (
                with(&["id"], json!(random_uuid())),
                vec![("/id", "readOnly")],
            ),
            (
                with(&["createdBy"], json!("me")),
                vec![("/createdBy", "readOnly")],
            ),
            (with(&["city"], json!("Pune")), vec![("", "required")]),
            (
                with(&["country"], json!("")),
                vec![("/country", "minLength")],
            ),
            (
                with(&["zip"], json!("1".repeat(21))),
                vec![("/zip", "maxLength")],
            ),
            (
                with(&["key"], json!("BAD")).tap(|b| b["contact"]["email"] = json!("x")),
                vec![("/key", "pattern"), ("/contact/email", "format")],
            ),
            (json!([]), vec![("", "type")]),
            (json!("tenant"), vec![("", "type")]),
            (json!(null), vec![("", "type")]),
        ];
        for (body, expected) in cases {
            let (status, answer) = app.post("/tenants", Some(&admin), &body).await;
            let what = format!("POST /tenants {body}");
            assert_eq!(
                validation_pairs(status, &answer, &what),
                pairs(&expected),
                "{what}: {answer}"
            );
            assert_unchanged(&before, &snapshot(&app).await, &what);
        }
        // A missing property is named in `info`.
        let (status, answer) = app
            .post("/tenants", Some(&admin), &without(&["contact"]))
            .await;
        assert_eq!(status, 422);
        assert_eq!(
            answer["error"]["details"][0]["info"]["missingProperty"], "contact",
            "{answer}"
        );

        // The contact's email domain must be one of the tenant's domains.
        let body = with(&["contact", "email"], json!("fay@elsewhere.com"));
        let (status, answer) = app.post("/tenants", Some(&admin), &body).await;
        expect_error(
            status,
            &answer,
            400,
            "BadRequestError",
            "contact domain not in domains",
        );
        assert_eq!(
            answer["error"]["message"],
            "Contact email domain does not match tenant domains"
        );
        assert_unchanged(&before, &snapshot(&app).await, "contact domain mismatch");
    }
);

trait Tap: Sized {
    fn tap(self, f: impl FnOnce(&mut Self)) -> Self;
}

impl Tap for Value {
    fn tap(mut self, f: impl FnOnce(&mut Self)) -> Self {
        f(&mut self);
        self
    }
}

// ---------------------------------------------------------------------------------------------
// Contacts, invoices, tenant configs: the whole life of a row
// ---------------------------------------------------------------------------------------------

struct Cycle {
    path: &'static str,
    fields: &'static [&'static str],
    /// Fields only the service sets, after `fields` (`invoiceNumber`, `overdueAt`).
    managed: &'static [&'static str],
    first: Value,
    expect_first: Value,
    second: Value,
    patch: Value,
    expect_patched: Value,
    put: Value,
    expect_put: Value,
    bulk: Value,
    expect_bulk: Value,
}

async fn crud_cycle(app: &TestApp, c: Cycle) {
    let path = c.path;
    let creator = admin_as(app, CREATOR);
    let editor = admin_as(app, EDITOR);
    let deleter = admin_as(app, DELETER);
    let admin = app.admin_token();
    let base = count(app, path).await;

    let first = create(app, &creator, path, &c.first).await;
    let mut keys = row_keys(c.fields);
    keys.extend(c.managed.iter().map(|k| k.to_string()));
    assert_eq!(keys_of(&first), keys, "{path}: keys of the created row");
    check_created(&first, CREATOR, path);
    check_fields(&first, &c.expect_first, path);
    tick().await;
    let second = create(app, &creator, path, &c.second).await;
    let (id1, id2) = (id_of(&first), id_of(&second));
    let item1 = format!("{path}/{id1}");
    let item2 = format!("{path}/{id2}");

    // Reads give back what create answered.
    assert_eq!(get_ok(app, &admin, &item1).await, first, "GET {item1}");
    let listed = get_ok(app, &admin, path).await;
    let listed = listed.as_array().expect("a list");
    assert_eq!(listed.len() as i64, base + 2, "{path}: {listed:?}");
    assert!(
        listed.contains(&first) && listed.contains(&second),
        "{path}: {listed:?}"
    );
    assert_eq!(count(app, path).await, base + 2);
    for (where_, n) in [
        (json!({"id": id1}), 1),
        (json!({"id": {"inq": [id1, id2]}}), 2),
    ] {
        let counted = get_ok(app, &admin, &count_path(path, &where_)).await;
        assert_eq!(counted, json!({"count": n}), "{path} count {where_}");
    }

    // PATCH changes only what it names and records the editor.
    tick().await;
    let (status, answer) = app.patch(&item1, Some(&editor), &c.patch).await;
    assert_eq!(status, 204, "PATCH {item1}: {answer}");
    assert_eq!(answer, Value::Null);
    let patched = get_ok(app, &admin, &item1).await;
    check_fields(&patched, &c.expect_patched, &format!("PATCH {path}"));
    for key in keys {
        if c.patch.get(&key).is_none() && key != "modifiedOn" && key != "modifiedBy" {
            assert_eq!(patched[&key], first[&key], "PATCH {path} changed {key}");
        }
    }
    assert_eq!(patched["modifiedBy"], EDITOR);
    assert!(is_iso_ms(&patched["modifiedOn"]));
    assert!(patched["modifiedOn"].as_str() > first["modifiedOn"].as_str());
    assert_eq!(
        get_ok(app, &admin, &item2).await,
        second,
        "PATCH touched another row"
    );

    // PUT replaces: fields it does not give become null.
    let (status, answer) = app.put(&item1, Some(&editor), &c.put).await;
    assert_eq!(status, 204, "PUT {item1}: {answer}");
    let replaced = get_ok(app, &admin, &item1).await;
    for field in c.fields {
        let want = c.expect_put.get(*field).cloned().unwrap_or(Value::Null);
        assert_eq!(replaced[*field], want, "PUT {path}: {field} of {replaced}");
    }
    check_fields(
        &replaced,
        &json!({"createdBy": CREATOR, "createdOn": first["createdOn"], "modifiedBy": EDITOR,
                "id": id1, "deleted": false}),
        &format!("PUT {path}"),
    );

    // Bulk PATCH with a where, then without one.
    let bulk = with_where(path, &json!({"id": id2}));
    bulk_patch(app, &editor, &bulk, &c.bulk, 1).await;
    let bulked = get_ok(app, &admin, &item2).await;
    check_fields(&bulked, &c.expect_bulk, &format!("bulk PATCH {path}"));
    assert_eq!(bulked["modifiedBy"], EDITOR);
    let none = with_where(path, &json!({"id": random_uuid()}));
    bulk_patch(app, &editor, &none, &c.bulk, 0).await;

    // DELETE is soft and final.
    let (status, answer) = app.delete(&item1, Some(&deleter)).await;
    assert_eq!(status, 204, "DELETE {item1}: {answer}");
    assert_eq!(answer, Value::Null);
    let (status, body) = app.get(&item1, Some(&admin)).await;
    expect_error(
        status,
        &body,
        404,
        "NotFoundError",
        &format!("GET deleted {path}"),
    );
    assert_eq!(body["error"]["message"], "EntityNotFound");
    let listed = get_ok(app, &admin, path).await;
    assert!(
        listed
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["id"] != id1.as_str()),
        "{path}: a deleted row is listed"
    );
    assert_eq!(count(app, path).await, base + 1);
    let counted = get_ok(app, &admin, &count_path(path, &json!({"id": id1}))).await;
    assert_eq!(counted, json!({"count": 0}));
    let found = get_ok(
        app,
        &admin,
        &with_filter(path, &json!({"where": {"id": id1}})),
    )
    .await;
    assert_eq!(found, json!([]));
    for (method, body) in [
        (Method::PATCH, Some(&c.patch)),
        (Method::PUT, Some(&c.put)),
        (Method::DELETE, None),
    ] {
        let (status, answer) = send(app, method.clone(), &item1, Some(&admin), body).await;
        expect_error(
            status,
            &answer,
            404,
            "NotFoundError",
            &format!("{method} deleted {path}"),
        );
    }
    // A bulk PATCH does not reach the deleted row, and counts live rows only.
    let by_id = with_where(path, &json!({"id": id1}));
    bulk_patch(app, &editor, &by_id, &c.bulk, 0).await;
    bulk_patch(app, &editor, path, &c.bulk, base + 1).await;
}

/// One tenant (with its onboarding contact) to hang rows on; returns its id.
async fn a_tenant(app: &TestApp, key: &str, domain: &str) -> String {
    let tenant = onboard(
        app,
        &app.admin_token(),
        onboarding(key, key, &[domain], "ada"),
    )
    .await;
    id_of(&tenant)
}

/// A config `key` with an empty value for `tenant`, created by an administrator.
async fn a_config(app: &TestApp, key: &str, tenant: &str) -> Value {
    let body = json!({"configKey": key, "configValue": {}, "tenantId": tenant});
    create(app, &app.admin_token(), "/tenant-configs", &body).await
}

both_dbs!(contacts_create_read_update_delete, |app| async move {
    let t = a_tenant(&app, "acme", "acme.com").await;
    let first = json!({"firstName": "Grace", "lastName": "Hopper", "email": "grace@acme.com",
                       "isPrimary": false, "type": "billing", "tenantId": t});
    crud_cycle(
        &app,
        Cycle {
            path: "/contacts",
            fields: &CONTACT_FIELDS,
            managed: &[],
            expect_first: first.clone(),
            first,
            second: json!({"firstName": "Alan", "lastName": "Turing", "email": "alan@acme.com",
                           "isPrimary": false, "tenantId": t}),
            patch: json!({"firstName": "Grace B.", "isPrimary": true}),
            expect_patched: json!({"firstName": "Grace B.", "isPrimary": true, "type": "billing"}),
            put: json!({"firstName": "G", "lastName": "H", "email": "g@acme.com",
                        "isPrimary": false, "tenantId": t}),
            expect_put: json!({"firstName": "G", "lastName": "H", "email": "g@acme.com",
                               "isPrimary": false, "tenantId": t}),
            bulk: json!({"type": "tech"}),
            expect_bulk: json!({"type": "tech", "firstName": "Alan"}),
        },
    )
    .await;
});

both_dbs!(invoices_create_read_update_delete, |app| async move {
    let t = a_tenant(&app, "acme", "acme.com").await;
    crud_cycle(
        &app,
        Cycle {
            path: "/invoices",
            fields: &INVOICE_FIELDS,
            managed: &["seller", "invoiceNumber", "overdueAt"],
            first: json!({"startDate": "2026-01-01", "endDate": "2026-01-31T23:59:59+01:00",
                          "amount": "99.50", "currencyCode": "USD", "invoiceFile": "inv-1.pdf",
                          "dueDate": "2026-02-15T00:00:00Z", "status": "pending", "tenantId": t}),
            expect_first: json!({"startDate": "2026-01-01T00:00:00.000Z",
                                 "endDate": "2026-01-31T22:59:59.000Z", "amount": 99.5,
                                 "currencyCode": "USD", "invoiceFile": "inv-1.pdf",
                                 "dueDate": "2026-02-15T00:00:00.000Z", "status": 0,
                                 "tenantId": t, "seller": "tms", "invoiceNumber": "INV-000001",
                                 "overdueAt": null}),
            second: json!({"startDate": "2026-02-01T00:00:00.000Z",
                           "endDate": "2026-02-28T00:00:00.000Z", "amount": 10,
                           "currencyCode": "EUR", "dueDate": "2026-03-15", "status": 0,
                           "tenantId": t}),
            // Rounded to cents; the invoice stays PENDING, so the PUT below may change it.
            patch: json!({"amount": 1234567.8951, "status": "PENDING",
                          "dueDate": "2026-03-01T10:00:00.123456Z"}),
            expect_patched: json!({"amount": 1234567.9, "status": 0,
                                   "dueDate": "2026-03-01T10:00:00.123Z",
                                   "invoiceFile": "inv-1.pdf", "currencyCode": "USD"}),
            put: json!({"startDate": "2026-03-01", "endDate": "2026-03-31", "amount": 0,
                        "currencyCode": "GBP", "dueDate": "2026-04-15", "status": 0,
                        "tenantId": t}),
            expect_put: json!({"startDate": "2026-03-01T00:00:00.000Z",
                               "endDate": "2026-03-31T00:00:00.000Z", "amount": 0,
                               "currencyCode": "GBP", "dueDate": "2026-04-15T00:00:00.000Z",
                               "status": 0, "tenantId": t}),
            // Repeating it on the PAID invoice changes nothing, so it is accepted.
            bulk: json!({"status": "Paid", "amount": "12.345"}),
            expect_bulk: json!({"status": 1, "amount": 12.35, "currencyCode": "EUR",
                                "invoiceNumber": "INV-000002"}),
        },
    )
    .await;
    // Money is a JSON number on every read.
    let admin = app.admin_token();
    for row in get_ok(&app, &admin, "/invoices").await.as_array().unwrap() {
        assert!(row["amount"].is_number(), "{row}");
        assert!(row["status"].is_u64(), "{row}");
        for date in ["startDate", "endDate", "dueDate"] {
            assert!(is_iso_ms(&row[date]), "{date} of {row}");
        }
    }
});

both_dbs!(tenant_configs_create_read_update_delete, |app| async move {
    let t = a_tenant(&app, "acme", "acme.com").await;
    // Values tms does not read itself (branding kept for other services), in the configs of
    // its providers' keys: any JSON is kept as it is.
    let value = json!({"logo_url": "https://acme.com/logo.png",
                       "nested": {"list": [1, 2.5, "x", null, true]}});
    crud_cycle(
        &app,
        Cycle {
            path: "/tenant-configs",
            fields: &CONFIG_FIELDS,
            managed: &[],
            first: json!({"configKey": "keycloak", "configValue": value, "tenantId": t}),
            expect_first: json!({"configKey": "keycloak", "configValue": value, "tenantId": t}),
            second: json!({"configKey": "auth0", "configValue": {"connection": "acme-db"},
                           "tenantId": t}),
            patch: json!({"configValue": {"primary_color": "#fff"}}),
            expect_patched: json!({"configValue": {"primary_color": "#fff"}, "configKey": "keycloak"}),
            put: json!({"configKey": "k2", "configValue": {}, "tenantId": t}),
            expect_put: json!({"configKey": "k2", "configValue": {}, "tenantId": t}),
            bulk: json!({"configKey": "renamed"}),
            expect_bulk: json!({"configKey": "renamed", "configValue": {"connection": "acme-db"}}),
        },
    )
    .await;
});

both_dbs!(the_tenant_of_a_config, |app| async move {
    let admin = app.admin_token();
    let t = a_tenant(&app, "acme", "acme.com").await;
    let other = a_tenant(&app, "beta", "beta.io").await;
    let config = a_config(&app, "keycloak", &t).await;
    a_config(&app, "keycloak", &other).await;
    let path = format!("/tenant-configs/{}/tenant", id_of(&config));
    let tenant = get_ok(&app, &admin, &path).await;
    assert_eq!(tenant, get_ok(&app, &admin, &format!("/tenants/{t}")).await);
    let (status, body) = app.get(&path, Some(&app.token(&["10207"]))).await;
    expect_error(
        status,
        &body,
        403,
        "ForbiddenError",
        "tenant of config without 10221",
    );
    let (status, body) = app.get(&path, Some(&app.token(&["10221"]))).await;
    assert_eq!(status, 200, "{body}");

    // The tenant gone: 404, though the config itself is still there.
    delete_ok(&app, &admin, &format!("/tenants/{t}")).await;
    let (status, body) = app.get(&path, Some(&admin)).await;
    expect_error(
        status,
        &body,
        404,
        "NotFoundError",
        "tenant of config, tenant deleted",
    );
    get_ok(&app, &admin, &format!("/tenant-configs/{}", id_of(&config))).await;
    // The config gone: 404.
    let t2 = a_tenant(&app, "gamma", "gamma.org").await;
    let config2 = a_config(&app, "auth0", &t2).await;
    delete_ok(
        &app,
        &admin,
        &format!("/tenant-configs/{}", id_of(&config2)),
    )
    .await;
    let (status, body) = app
        .get(
            &format!("/tenant-configs/{}/tenant", id_of(&config2)),
            Some(&admin),
        )
        .await;
    expect_error(
        status,
        &body,
        404,
        "NotFoundError",
        "tenant of a deleted config",
    );
});

// ---------------------------------------------------------------------------------------------
// Leads: readable here, changed only through the funnel
// ---------------------------------------------------------------------------------------------

both_dbs!(
    leads_are_read_only,
    [("PUBLIC_API_MAX_ATTEMPTS", "1000000")],
    |app| async move {
        let admin = app.admin_token();
        let first = create_lead(
            &app,
            &json!({"firstName": "Lea", "lastName": "Lead", "email": "lea@acme.com",
                "companyName": "Acme"}),
        )
        .await;
        let second = create_lead(
            &app,
            &json!({"firstName": "Max", "lastName": "Muster", "email": "max@beta.io",
                "companyName": "Beta", "address": {"city": "Pune", "country": "India"}}),
        )
        .await;
        let row = get_ok(&app, &admin, &format!("/leads/{first}")).await;
        assert_eq!(keys_of(&row), row_keys(&LEAD_FIELDS), "{row}");
        check_created(&row, row["createdBy"].as_str().unwrap_or("?"), "lead");
        check_fields(
            &row,
            &json!({"id": first, "firstName": "Lea", "lastName": "Lead", "email": "lea@acme.com",
                "companyName": "Acme", "isValidated": false, "addressId": null}),
            "lead",
        );
        let with_address = get_ok(
            &app,
            &admin,
            &with_filter(
                &format!("/leads/{second}"),
                &json!({"include": ["address"]}),
            ),
        )
        .await;
        assert!(is_uuid(&with_address["addressId"]), "{with_address}");
        check_fields(
            &with_address["address"],
            &json!({"city": "Pune", "country": "India", "id": with_address["addressId"]}),
            "lead address",
        );
        let listed = get_ok(&app, &admin, "/leads").await;
        assert_eq!(listed.as_array().map(Vec::len), Some(2), "{listed}");
        assert_eq!(count(&app, "/leads").await, 2);
        let counted = get_ok(
            &app,
            &admin,
            &count_path("/leads", &json!({"email": "max@beta.io"})),
        )
        .await;
        assert_eq!(counted, json!({"count": 1}));

        let before = snapshot(&app).await;
        let item = format!("/leads/{first}");
        // (method, path, body, the permission such a write needs)
        for (method, path, body, code) in [
            (
                Method::PUT,
                item.as_str(),
                Some(json!({"firstName": "X", "lastName": "Y",
            "email": "x@y.com", "companyName": "Z", "isValidated": true})),
                "10201",
            ),
            (
                Method::PATCH,
                item.as_str(),
                Some(json!({"isValidated": true})),
                "10201",
            ),
            (Method::DELETE, item.as_str(), None, "10202"),
            (
                Method::PATCH,
                "/leads",
                Some(json!({"isValidated": true})),
                "10201",
            ),
        ] {
            let what = format!("{method} {path}");
            // The credentials come first: 401 without a token, 403 without the permission.
            let (status, answer) = send(&app, method.clone(), path, None, body.as_ref()).await;
            expect_error(status, &answer, 401, "UnauthorizedError", &what);
            let lacking = token_without(&app, TEST_USER_ID, code);
            let (status, answer) =
                send(&app, method.clone(), path, Some(&lacking), body.as_ref()).await;
            expect_error(status, &answer, 403, "ForbiddenError", &what);
            let (status, answer) =
                send(&app, method.clone(), path, Some(&admin), body.as_ref()).await;
            expect_error(status, &answer, 405, "MethodNotAllowedError", &what);
        }
        assert_unchanged(&before, &snapshot(&app).await, "lead writes");

        // The funnel's create checks its body too.
        let long = "x".repeat(101);
        let cases: Vec<(Value, Vec<(&str, &str)>)> = vec![
            (
                json!({"firstName": "A", "lastName": "B", "companyName": "C"}),
                vec![("", "required")],
            ),
            (
                json!({"firstName": "A", "lastName": "B", "companyName": "C", "email": "nope"}),
                vec![("/email", "format")],
            ),
            (
                json!({"firstName": long, "lastName": "B", "companyName": "C", "email": "a@b.co"}),
                vec![("/firstName", "maxLength")],
            ),
            (
                json!({"firstName": "A", "lastName": "B", "companyName": 5, "email": "a@b.co"}),
                vec![("/companyName", "type")],
            ),
            (
                json!({"firstName": "A", "lastName": "B", "companyName": "C", "email": "a@b.co",
                   "isValidated": true}),
                vec![("", "additionalProperties")],
            ),
            (
                json!({"firstName": "A", "lastName": "B", "companyName": "C", "email": "a@b.co",
                   "address": {"city": "Pune"}}),
                vec![("/address", "required")],
            ),
        ];
        for (body, expected) in cases {
            let (status, answer) = app.post("/leads", None, &body).await;
            let what = format!("POST /leads {body}");
            assert_eq!(
                validation_pairs(status, &answer, &what),
                pairs(&expected),
                "{what}"
            );
        }
        assert_unchanged(&before, &snapshot(&app).await, "refused lead bodies");
    }
);

// ---------------------------------------------------------------------------------------------
// Authentication and permissions on every route
// ---------------------------------------------------------------------------------------------

/// One row of each collection: (tenant, contact, invoice, config).
async fn one_of_each(app: &TestApp) -> (String, String, String, String) {
    let admin = app.admin_token();
    let t = a_tenant(app, "acme", "acme.com").await;
    let contact = create(app, &admin, "/contacts", &contact_body(&t, "bob@acme.com")).await;
    let invoice = create(app, &admin, "/invoices", &invoice_body(&t)).await;
    let config = create(app, &admin, "/tenant-configs", &config_body(&t)).await;
    (t, id_of(&contact), id_of(&invoice), id_of(&config))
}

fn contact_body(tenant: &str, email: &str) -> Value {
    json!({"firstName": "Bob", "lastName": "B", "email": email, "isPrimary": false,
           "tenantId": tenant})
}

fn invoice_body(tenant: &str) -> Value {
    json!({"startDate": "2026-01-01", "endDate": "2026-01-31", "amount": 10,
           "currencyCode": "USD", "dueDate": "2026-02-15", "status": 0, "tenantId": tenant})
}

fn config_body(tenant: &str) -> Value {
    json!({"configKey": "keycloak", "configValue": {"logo_url": "r"}, "tenantId": tenant})
}

fn tenant_put_body(key: &str) -> Value {
    json!({"name": "Put", "status": 0, "key": key, "domains": ["put.com"]})
}

/// Every route of the admin surface: (method, path, permission, a valid body).
fn routes(
    t: &str,
    contact: &str,
    invoice: &str,
    config: &str,
    lead: &str,
) -> Vec<(Method, String, &'static str, Option<Value>)> {
    let g = Method::GET;
    let mut routes = vec![
        (
            Method::POST,
            "/tenants".to_string(),
            "10204",
            Some(onboarding("newkey", "New", &["new.com"], "n")),
        ),
        (g.clone(), "/tenants".into(), "10207", None),
        (g.clone(), "/tenants/count".into(), "10207", None),
        (g.clone(), format!("/tenants/{t}"), "10207", None),
        (
            Method::PATCH,
            format!("/tenants/{t}"),
            "10205",
            Some(json!({"name": "changed"})),
        ),
        (
            Method::PUT,
            format!("/tenants/{t}"),
            "10205",
            Some(tenant_put_body("put")),
        ),
        (Method::DELETE, format!("/tenants/{t}"), "10206", None),
        (
            Method::PATCH,
            "/tenants".into(),
            "10205",
            Some(json!({"name": "changed"})),
        ),
        (g.clone(), "/leads".into(), "10203", None),
        (g.clone(), "/leads/count".into(), "10203", None),
        (g.clone(), format!("/leads/{lead}"), "10203", None),
        (
            g.clone(),
            format!("/tenant-configs/{config}/tenant"),
            "10221",
            None,
        ),
    ];
    for (path, id, codes, body, patch) in [
        (
            "/contacts",
            contact,
            CONTACT_CODES,
            contact_body(t, "new@acme.com"),
            json!({"type": "x"}),
        ),
        (
            "/invoices",
            invoice,
            INVOICE_CODES,
            invoice_body(t),
            json!({"status": 2}),
        ),
        (
            "/tenant-configs",
            config,
            CONFIG_CODES,
            config_body(t),
            json!({"configKey": "x"}),
        ),
    ] {
        routes.extend([
            (
                Method::POST,
                path.to_string(),
                codes.create,
                Some(body.clone()),
            ),
            (g.clone(), path.to_string(), codes.view, None),
            (g.clone(), format!("{path}/count"), codes.view, None),
            (g.clone(), format!("{path}/{id}"), codes.view, None),
            (
                Method::PATCH,
                format!("{path}/{id}"),
                codes.update,
                Some(patch.clone()),
            ),
            (
                Method::PUT,
                format!("{path}/{id}"),
                codes.update,
                Some(body.clone()),
            ),
            (Method::DELETE, format!("{path}/{id}"), codes.delete, None),
            (Method::PATCH, path.to_string(), codes.update, Some(patch)),
        ]);
    }
    routes
}

both_dbs!(
    every_route_needs_a_token_and_its_permission,
    |app| async move {
        let (t, contact, invoice, config) = one_of_each(&app).await;
        let lead = random_uuid();
        let before = snapshot(&app).await;
        for (method, path, code, body) in routes(&t, &contact, &invoice, &config, &lead) {
            let what = format!("{method} {path}");
            let (status, answer) = send(&app, method.clone(), &path, None, body.as_ref()).await;
            expect_error(
                status,
                &answer,
                401,
                "UnauthorizedError",
                &format!("{what} without a token"),
            );
            let (status, answer) = send(
                &app,
                method.clone(),
                &path,
                Some("not-a-jwt"),
                body.as_ref(),
            )
            .await;
            expect_error(
                status,
                &answer,
                401,
                "UnauthorizedError",
                &format!("{what} with a bad token"),
            );
            let lacking = token_without(&app, CREATOR, code);
            let (status, answer) =
                send(&app, method.clone(), &path, Some(&lacking), body.as_ref()).await;
            expect_error(
                status,
                &answer,
                403,
                "ForbiddenError",
                &format!("{what} without {code}"),
            );
            assert_eq!(answer["error"]["message"], "NotAllowedAccess");
            let none = app.token(&[]);
            let (status, answer) =
                send(&app, method.clone(), &path, Some(&none), body.as_ref()).await;
            expect_error(
                status,
                &answer,
                403,
                "ForbiddenError",
                &format!("{what} with no permission"),
            );
            if body.is_some() {
                // Authentication and the permission come before the body is read.
                let raw = app
                    .raw(
                        method.clone(),
                        &path,
                        None,
                        "{bad",
                        Some("application/json"),
                    )
                    .await;
                raw.assert_error(401, "UnauthorizedError");
                let raw = app
                    .raw(
                        method.clone(),
                        &path,
                        Some(&lacking),
                        "{bad",
                        Some("application/json"),
                    )
                    .await;
                raw.assert_error(403, "ForbiddenError");
            }
        }
        assert_unchanged(&before, &snapshot(&app).await, "refused requests");

        // The permission alone is enough (each write aimed so that it changes nothing).
        let unknown = random_uuid();
        for (method, path, code, body) in routes(&t, &contact, &invoice, &config, &unknown) {
            let only = app.token(&[code]);
            let what = format!("{method} {path} with only {code}");
            let is_item = path.matches('/').count() == 2 && !path.ends_with("/count");
            let (path, body, want) = match method.as_str() {
                "GET" if path.starts_with("/leads/") && is_item => (path, None, 404),
                "GET" => (path, None, 200),
                "POST" => (path, Some(json!({})), 422),
                "PATCH" if !is_item => (with_where(&path, &json!({"id": unknown})), body, 200),
                _ => {
                    let base = path
                        .rsplit_once('/')
                        .map(|(b, _)| b.to_string())
                        .unwrap_or_default();
                    (format!("{base}/{unknown}"), body, 404)
                }
            };
            let (status, answer) =
                send(&app, method.clone(), &path, Some(&only), body.as_ref()).await;
            assert_eq!(status.as_u16(), want, "{what}: {answer}");
        }
        assert_unchanged(
            &before,
            &snapshot(&app).await,
            "requests that match nothing",
        );
    }
);

// ---------------------------------------------------------------------------------------------
// Ids that name nothing
// ---------------------------------------------------------------------------------------------

both_dbs!(
    unknown_malformed_and_deleted_ids_are_404,
    |app| async move {
        let admin = app.admin_token();
        let (t, contact, invoice, config) = one_of_each(&app).await;
        let gone_tenant = a_tenant(&app, "gone", "gone.com").await;
        let gone_contact = id_of(
            &create(
                &app,
                &admin,
                "/contacts",
                &contact_body(&t, "gone@acme.com"),
            )
            .await,
        );
        let gone_invoice = id_of(&create(&app, &admin, "/invoices", &invoice_body(&t)).await);
        let gone_config = id_of(&create(&app, &admin, "/tenant-configs", &config_body(&t)).await);
        for (path, id) in [
            ("/tenants", &gone_tenant),
            ("/contacts", &gone_contact),
            ("/invoices", &gone_invoice),
            ("/tenant-configs", &gone_config),
        ] {
            delete_ok(&app, &admin, &format!("{path}/{id}")).await;
        }
        let before = snapshot(&app).await;
        let malformed = [
            "not-a-uuid",
            "123",
            "00000000-0000-0000-0000-00000000000g",
            "%20",
            "acme%27%20OR%201%3D1",
            "00000000000000000000000000000000000000000000",
        ];
        let collections: [(&str, &String, Value, Value); 4] = [
            (
                "/tenants",
                &gone_tenant,
                json!({"name": "x"}),
                tenant_put_body("x"),
            ),
            (
                "/contacts",
                &gone_contact,
                json!({"type": "x"}),
                contact_body(&t, "x@acme.com"),
            ),
            (
                "/invoices",
                &gone_invoice,
                json!({"status": 1}),
                invoice_body(&t),
            ),
            (
                "/tenant-configs",
                &gone_config,
                json!({"configKey": "x"}),
                config_body(&t),
            ),
        ];
        for (path, deleted, patch, put) in &collections {
            let mut ids: Vec<String> = malformed.iter().map(|s| s.to_string()).collect();
            ids.push(random_uuid());
            ids.push((*deleted).clone());
            for id in ids {
                let item = format!("{path}/{id}");
                for (method, body) in [
                    (Method::GET, None),
                    (Method::PATCH, Some(patch)),
                    (Method::PUT, Some(put)),
                    (Method::DELETE, None),
                ] {
                    let (status, answer) =
                        send(&app, method.clone(), &item, Some(&admin), body).await;
                    let what = format!("{method} {item}");
                    expect_error(status, &answer, 404, "NotFoundError", &what);
                    assert_eq!(answer["error"]["message"], "EntityNotFound", "{what}");
                }
            }
        }
        let mut ids: Vec<String> = malformed.iter().map(|s| s.to_string()).collect();
        ids.push(random_uuid());
        ids.push(gone_config.clone());
        for id in ids {
            for path in [
                format!("/tenant-configs/{id}/tenant"),
                format!("/leads/{id}"),
            ] {
                let (status, answer) = app.get(&path, Some(&admin)).await;
                expect_error(
                    status,
                    &answer,
                    404,
                    "NotFoundError",
                    &format!("GET {path}"),
                );
            }
        }
        assert_unchanged(&before, &snapshot(&app).await, "requests for unknown ids");
        // The live rows are still found.
        for path in [
            format!("/tenants/{t}"),
            format!("/contacts/{contact}"),
            format!("/invoices/{invoice}"),
            format!("/tenant-configs/{config}"),
        ] {
            get_ok(&app, &admin, &path).await;
        }
    }
);

both_dbs!(references_to_missing_rows_are_404, |app| async move {
    let admin = app.admin_token();
    let (t, contact, invoice, config) = one_of_each(&app).await;
    let gone = a_tenant(&app, "gone", "gone.com").await;
    delete_ok(&app, &admin, &format!("/tenants/{gone}")).await;
    let before = snapshot(&app).await;
    for missing in [random_uuid(), gone.clone()] {
        let cases = [
            (
                Method::POST,
                "/contacts".to_string(),
                contact_body(&missing, "x@acme.com"),
            ),
            (Method::POST, "/invoices".into(), invoice_body(&missing)),
            (
                Method::POST,
                "/tenant-configs".into(),
                config_body(&missing),
            ),
            (
                Method::PATCH,
                format!("/contacts/{contact}"),
                json!({"tenantId": missing}),
            ),
            (
                Method::PUT,
                format!("/invoices/{invoice}"),
                invoice_body(&missing),
            ),
            (
                Method::PATCH,
                format!("/tenant-configs/{config}"),
                json!({"tenantId": missing}),
            ),
            (
                Method::PATCH,
                "/contacts".into(),
                json!({"tenantId": missing}),
            ),
            (
                Method::PATCH,
                format!("/tenants/{t}"),
                json!({"leadId": missing}),
            ),
            (
                Method::PATCH,
                format!("/tenants/{t}"),
                json!({"addressId": missing}),
            ),
        ];
        for (method, path, body) in cases {
            let what = format!("{method} {path} {body}");
            let (status, answer) = send(&app, method, &path, Some(&admin), Some(&body)).await;
            expect_error(status, &answer, 404, "NotFoundError", &what);
            let message = answer["error"]["message"].as_str().unwrap_or_default();
            assert!(
                message.starts_with("Related entity not found"),
                "{what}: {message}"
            );
            assert_unchanged(&before, &snapshot(&app).await, &what);
        }
    }
});

// ---------------------------------------------------------------------------------------------
// Bad bodies
// ---------------------------------------------------------------------------------------------

both_dbs!(bad_bodies_are_422_and_write_nothing, |app| async move {
    let admin = app.admin_token();
    let (t, contact, invoice, config) = one_of_each(&app).await;
    let before = snapshot(&app).await;
    let long = "x".repeat(101);
    let tenant_item = format!("/tenants/{t}");
    let contact_item = format!("/contacts/{contact}");
    let invoice_item = format!("/invoices/{invoice}");
    let config_item = format!("/tenant-configs/{config}");
    let all = format!("?where={}", q(&json!({})));
    let cases: Vec<BodyCase> = [
        // Contacts
        body_cases(
            Method::POST,
            "/contacts",
            vec![(json!({}), vec![("", "required"); 5])],
        ),
        changed_body_cases(
            Method::POST,
            "/contacts",
            contact_body(&t, "new@acme.com"),
            vec![
                (json!({"isPrimary": "yes"}), vec![("/isPrimary", "type")]),
                (json!({"email": "nope"}), vec![("/email", "format")]),
                (
                    json!({"email": format!("{}@acme.com", "a".repeat(92))}),
                    vec![("/email", "maxLength")],
                ),
                (json!({"tenantId": "x"}), vec![("/tenantId", "type")]),
                (json!({"tenantId": 5}), vec![("/tenantId", "type")]),
                (json!({"type": long}), vec![("/type", "maxLength")]),
                (
                    json!({"firstName": long}),
                    vec![("/firstName", "maxLength")],
                ),
                (json!({"firstName": 42}), vec![("/firstName", "type")]),
                (json!({"firstName": ["a"]}), vec![("/firstName", "type")]),
                (json!({"firstName": ""}), vec![("/firstName", "minLength")]),
                (json!({"firstName": null}), vec![("/firstName", "type")]),
                (json!({"id": random_uuid()}), vec![("/id", "readOnly")]),
                (json!({"createdBy": "me"}), vec![("/createdBy", "readOnly")]),
                (json!({"deleted": true}), vec![("/deleted", "readOnly")]),
                (
                    json!({"modifiedOn": "2026-01-01"}),
                    vec![("/modifiedOn", "readOnly")],
                ),
                (json!({"nope": 1}), vec![("", "additionalProperties")]),
                (
                    json!({"email": 5, "isPrimary": "x"}),
                    vec![("/email", "type"), ("/isPrimary", "type")],
                ),
            ],
        ),
        body_cases(
            Method::PATCH,
            &contact_item,
            vec![
                (json!({"email": "nope"}), vec![("/email", "format")]),
                (json!({"isPrimary": null}), vec![("/isPrimary", "type")]),
                (
                    json!({"tenantId": "not-a-uuid"}),
                    vec![("/tenantId", "type")],
                ),
                (json!({"id": random_uuid()}), vec![("/id", "const")]),
                (json!({"id": 5, "modifiedBy": "x"}), vec![("/id", "const")]),
            ],
        ),
        body_cases(
            Method::PUT,
            &contact_item,
            vec![(json!({"firstName": "a"}), vec![("", "required"); 4])],
        ),
        body_cases(
            Method::PATCH,
            &format!("/contacts{all}"),
            vec![(json!({"isPrimary": "no"}), vec![("/isPrimary", "type")])],
        ),
        body_cases(
            Method::PATCH,
            "/contacts",
            vec![(json!({"lastName": long}), vec![("/lastName", "maxLength")])],
        ),
        // Invoices
        body_cases(
            Method::POST,
            "/invoices",
            vec![(json!({}), vec![("", "required"); 7])],
        ),
        changed_body_cases(
            Method::POST,
            "/invoices",
            invoice_body(&t),
            vec![
                (json!({"amount": 1.23456}), vec![("/amount", "type")]),
                (json!({"amount": "1.00001"}), vec![("/amount", "type")]),
                (json!({"amount": "abc"}), vec![("/amount", "type")]),
                (json!({"amount": true}), vec![("/amount", "type")]),
                (
                    json!({"amount": 100000000000u64}),
                    vec![("/amount", "type")],
                ),
                (json!({"amount": null}), vec![("/amount", "type")]),
                (
                    json!({"currencyCode": "usd"}),
                    vec![("/currencyCode", "pattern")],
                ),
                (
                    json!({"currencyCode": "US"}),
                    vec![("/currencyCode", "pattern")],
                ),
                (
                    json!({"currencyCode": "USDX"}),
                    vec![("/currencyCode", "maxLength")],
                ),
                (json!({"dueDate": "soon"}), vec![("/dueDate", "type")]),
                (
                    json!({"startDate": "2026-13-01"}),
                    vec![("/startDate", "type")],
                ),
                (
                    json!({"startDate": "2026-02-30"}),
                    vec![("/startDate", "type")],
                ),
                (json!({"endDate": 20260101}), vec![("/endDate", "type")]),
                (json!({"status": 3}), vec![("/status", "type")]),
                (json!({"status": -1}), vec![("/status", "type")]),
                (json!({"status": 1.5}), vec![("/status", "type")]),
                (json!({"status": "unknown"}), vec![("/status", "type")]),
                (
                    json!({"invoiceFile": "x".repeat(501)}),
                    vec![("/invoiceFile", "maxLength")],
                ),
            ],
        ),
        body_cases(
            Method::PATCH,
            &invoice_item,
            vec![
                (json!({"amount": "1,5"}), vec![("/amount", "type")]),
                (json!({"status": null}), vec![("/status", "type")]),
            ],
        ),
        body_cases(
            Method::PUT,
            &invoice_item,
            vec![(json!({"amount": 1}), vec![("", "required"); 6])],
        ),
        body_cases(
            Method::PATCH,
            "/invoices",
            vec![(
                json!({"currencyCode": "eur"}),
                vec![("/currencyCode", "pattern")],
            )],
        ),
        // Tenant configs
        changed_body_cases(
            Method::POST,
            "/tenant-configs",
            config_body(&t),
            vec![
                (
                    json!({"configValue": "string"}),
                    vec![("/configValue", "type")],
                ),
                (json!({"configValue": [1]}), vec![("/configValue", "type")]),
                (json!({"configValue": null}), vec![("/configValue", "type")]),
                (
                    json!({"configKey": long}),
                    vec![("/configKey", "maxLength")],
                ),
                (json!({"configKey": ""}), vec![("/configKey", "minLength")]),
            ],
        ),
        body_cases(
            Method::POST,
            "/tenant-configs",
            vec![(
                json!({"configKey": "k", "configValue": {}}),
                vec![("", "required")],
            )],
        ),
        body_cases(
            Method::PATCH,
            &config_item,
            vec![(json!({"configValue": 1}), vec![("/configValue", "type")])],
        ),
        body_cases(
            Method::PUT,
            &config_item,
            vec![(json!({"configKey": "k"}), vec![("", "required"); 2])],
        ),
        body_cases(
            Method::PATCH,
            "/tenant-configs",
            vec![(json!({"deletedBy": "x"}), vec![("/deletedBy", "readOnly")])],
        ),
        // Tenants (updates; onboarding has its own test)
        body_cases(
            Method::PATCH,
            &tenant_item,
            vec![
                (json!({"status": 9}), vec![("/status", "type")]),
                (json!({"status": "1x"}), vec![("/status", "type")]),
                (json!({"status": "ACTIVATED"}), vec![("/status", "type")]),
                (json!({"key": "Acme"}), vec![("/key", "pattern")]),
                (json!({"key": "a b"}), vec![("/key", "pattern")]),
                (json!({"key": "abcdefghijk"}), vec![("/key", "maxLength")]),
                (json!({"key": ""}), vec![("/key", "minLength")]),
                (json!({"domains": "acme.com"}), vec![("/domains", "type")]),
                (
                    json!({"domains": ["a.com", "A.COM"]}),
                    vec![("/domains", "uniqueItems")],
                ),
                (
                    json!({"domains": ["bad domain"]}),
                    vec![("/domains/0", "format")],
                ),
                (
                    json!({"domains": ["a.com", "b..com"]}),
                    vec![("/domains/1", "format")],
                ),
                (json!({"leadId": "not-a-uuid"}), vec![("/leadId", "type")]),
                (json!({"addressId": 5}), vec![("/addressId", "type")]),
                (json!({"name": null}), vec![("/name", "type")]),
                (json!({"name": long}), vec![("/name", "maxLength")]),
                (
                    json!({"spocUserId": long}),
                    vec![("/spocUserId", "maxLength")],
                ),
                (json!({"id": random_uuid()}), vec![("/id", "const")]),
                (json!({"contacts": []}), vec![("", "additionalProperties")]),
                (json!([{"name": "x"}]), vec![("", "type")]),
                (json!("x"), vec![("", "type")]),
            ],
        ),
        body_cases(
            Method::PUT,
            &tenant_item,
            vec![(json!({"name": "x"}), vec![("", "required"); 3])],
        ),
        changed_body_cases(
            Method::PUT,
            &tenant_item,
            tenant_put_body("ok"),
            vec![(json!({"status": null}), vec![("/status", "type")])],
        ),
        body_cases(
            Method::PATCH,
            &format!("/tenants{all}"),
            vec![(json!({"status": -1}), vec![("/status", "type")])],
        ),
    ]
    .concat();
    for (method, path, body, expected) in cases {
        let what = format!("{method} {path} {body}");
        let (status, answer) = send(&app, method, &path, Some(&admin), Some(&body)).await;
        assert_eq!(
            validation_pairs(status, &answer, &what),
            pairs(&expected),
            "{what}: {answer}"
        );
        assert_unchanged(&before, &snapshot(&app).await, &what);
    }
});

/// A request with a bad body and the `(path, code)` pairs of the 422 it must answer.
type BodyCase<'a> = (Method, String, Value, Vec<(&'a str, &'a str)>);

/// The cases sending each of `bodies` (with the pairs of its 422) with `method` to `path`.
fn body_cases<'a>(
    method: Method,
    path: &str,
    bodies: Vec<(Value, Vec<(&'a str, &'a str)>)>,
) -> Vec<BodyCase<'a>> {
    bodies
        .into_iter()
        .map(|(body, expected)| (method.clone(), path.to_string(), body, expected))
        .collect()
}

/// [`body_cases`] whose bodies are `base` with each of `changes` applied (a change's properties
/// replace the base's).
fn changed_body_cases<'a>(
    method: Method,
    path: &str,
    base: Value,
    changes: Vec<(Value, Vec<(&'a str, &'a str)>)>,
) -> Vec<BodyCase<'a>> {
    let bodies = changes
        .into_iter()
        .map(|(change, expected)| {
            let mut body = base.clone();
            for (k, v) in change.as_object().unwrap() {
                body[k] = v.clone();
            }
            (body, expected)
        })
        .collect();
    body_cases(method, path, bodies)
}

/// Every route that reads a JSON body, and whether it needs a token.
fn body_routes(t: &str, contact: &str, invoice: &str, config: &str) -> Vec<(Method, String, bool)> {
    let mut routes = vec![
        (Method::POST, "/tenants".to_string(), true),
        (Method::PATCH, format!("/tenants/{t}"), true),
        (Method::PUT, format!("/tenants/{t}"), true),
        (Method::PATCH, "/tenants".into(), true),
        (Method::POST, "/leads".into(), false),
    ];
    for (path, id) in [
        ("/contacts", contact),
        ("/invoices", invoice),
        ("/tenant-configs", config),
    ] {
        routes.extend([
            (Method::POST, path.to_string(), true),
            (Method::PATCH, format!("{path}/{id}"), true),
            (Method::PUT, format!("{path}/{id}"), true),
            (Method::PATCH, path.to_string(), true),
        ]);
    }
    routes
}

both_dbs!(
    malformed_json_is_400_and_writes_nothing,
    [("PUBLIC_API_MAX_ATTEMPTS", "1000000")],
    |app| async move {
        let admin = app.admin_token();
        let (t, contact, invoice, config) = one_of_each(&app).await;
        let before = snapshot(&app).await;
        for (method, path, auth) in body_routes(&t, &contact, &invoice, &config) {
            let token = auth.then_some(admin.as_str());
            for body in [
                "{bad",
                "{\"name\": }",
                "",
                "{} x",
                "{\"a\":1,}",
                "[1, 2",
                "nul",
                "'x'",
            ] {
                let what = format!("{method} {path} with body {body:?}");
                let response = app
                    .raw(method.clone(), &path, token, body, Some("application/json"))
                    .await;
                assert_eq!(response.status, 400, "{what}: {}", response.text);
                response.assert_error(400, "SyntaxError");
            }
            for body in ["[]", "\"x\"", "42", "null", "true", "[{}]"] {
                let what = format!("{method} {path} with body {body}");
                let response = app
                    .raw(method.clone(), &path, token, body, Some("application/json"))
                    .await;
                let answer = response.json();
                assert_eq!(
                    validation_pairs(response.status, &answer, &what),
                    pairs(&[("", "type")]),
                    "{what}"
                );
            }
        }
        assert_unchanged(&before, &snapshot(&app).await, "malformed bodies");
    }
);

// ---------------------------------------------------------------------------------------------
// Shaping lists and reads: fields, order, limit, skip, include — JSON and bracket form
// ---------------------------------------------------------------------------------------------

/// Three tenants: alpha (status 0; contacts ada, bob, cid), beta (1; bea), gamma (2; gus).
async fn three_tenants(app: &TestApp) -> [String; 3] {
    let admin = app.admin_token();
    let mut ids = Vec::new();
    for (key, domain, person, status) in [
        ("alpha", "acme.com", "ada", 0),
        ("beta", "beta.io", "bea", 1),
        ("gamma", "gamma.org", "gus", 2),
    ] {
        let tenant = onboard(
            app,
            &admin,
            onboarding(key, &key.to_uppercase(), &[domain], person),
        )
        .await;
        let id = id_of(&tenant);
        patch_ok(
            app,
            &admin,
            &format!("/tenants/{id}"),
            &json!({"status": status}),
        )
        .await;
        ids.push(id);
    }
    for email in ["bob@acme.com", "cid@acme.com"] {
        create(app, &admin, "/contacts", &contact_body(&ids[0], email)).await;
    }
    [ids[0].clone(), ids[1].clone(), ids[2].clone()]
}

fn keys_in(rows: &Value) -> Vec<String> {
    rows.as_array()
        .unwrap_or_else(|| panic!("not a list: {rows}"))
        .iter()
        .map(|r| r["key"].as_str().unwrap_or("?").to_string())
        .collect()
}

both_dbs!(
    lists_are_shaped_in_json_and_bracket_form,
    |app| async move {
        let admin = app.admin_token();
        let [alpha, _beta, _gamma] = three_tenants(&app).await;
        let cases: Vec<(Value, &str, Vec<&str>)> = vec![
            (
                json!({"order": "key DESC"}),
                "filter[order]=key%20DESC",
                vec!["gamma", "beta", "alpha"],
            ),
            (
                json!({"order": ["status DESC", "key ASC"]}),
                "filter[order][0]=status%20DESC&filter[order][1]=key%20ASC",
                vec!["gamma", "beta", "alpha"],
            ),
            (
                json!({"order": "key", "limit": 1, "skip": 1}),
                "filter[order]=key&filter[limit]=1&filter[skip]=1",
                vec!["beta"],
            ),
            (
                json!({"order": "key", "offset": 2}),
                "filter[order]=key&filter[offset]=2",
                vec!["gamma"],
            ),
            (
                json!({"where": {"status": {"inq": [0, 2]}}, "order": "key"}),
                "filter[where][status][inq][0]=0&filter[where][status][inq][1]=2&filter[order]=key",
                vec!["alpha", "gamma"],
            ),
            (
                json!({"where": {"status": {"inq": [0, 2]}}, "order": "key"}),
                "filter[where][status][inq]=0&filter[where][status][inq]=2&filter[order]=key",
                vec!["alpha", "gamma"],
            ),
            (
                json!({"where": {"status": {"inq": [0, 2]}}, "order": "key"}),
                "filter[where][status][inq][]=ACTIVE&filter[where][status][inq][]=PROVISIONING&filter[order]=key",
                vec!["alpha", "gamma"],
            ),
            (
                json!({"where": {"or": [{"key": "alpha"}, {"key": "gamma"}]}, "order": "key DESC"}),
                "filter[where][or][0][key]=alpha&filter[where][or][1][key]=gamma&filter[order]=key+DESC",
                vec!["gamma", "alpha"],
            ),
            (
                json!({"where": {"name": {"like": "%A%"}, "status": {"gte": 1}}, "order": "key"}),
                "filter[where][name][like]=%25A%25&filter[where][status][gte]=1&filter[order]=key",
                vec!["beta", "gamma"],
            ),
        ];
        for (json_filter, bracket, expected) in cases {
            let from_json = get_ok(&app, &admin, &with_filter("/tenants", &json_filter)).await;
            let from_brackets = get_ok(&app, &admin, &format!("/tenants?{bracket}")).await;
            assert_eq!(keys_in(&from_json), expected, "{json_filter}");
            assert_eq!(from_json, from_brackets, "{json_filter} and {bracket}");
        }

        // fields: as an object of flags or a list; exactly the chosen fields, in the model's order.
        for (json_filter, bracket) in [
            (
                json!({"fields": {"key": true, "name": true}, "order": "key"}),
                "filter[fields][key]=true&filter[fields][name]=true&filter[order]=key",
            ),
            (
                json!({"fields": ["key", "name"], "order": "key"}),
                "filter[fields][0]=key&filter[fields][1]=name&filter[order]=key",
            ),
            (
                json!({"fields": {"key": true, "name": true, "status": false}, "order": "key"}),
                "filter[fields][key]=1&filter[fields][name]=true&filter[fields][status]=false&filter[order]=key",
            ),
        ] {
            let from_json = get_ok(&app, &admin, &with_filter("/tenants", &json_filter)).await;
            assert_eq!(
                from_json,
                json!([{"name": "ALPHA", "key": "alpha"}, {"name": "BETA", "key": "beta"},
                   {"name": "GAMMA", "key": "gamma"}]),
                "{json_filter}"
            );
            let from_brackets = get_ok(&app, &admin, &format!("/tenants?{bracket}")).await;
            assert_eq!(from_json, from_brackets, "{bracket}");
        }
        let without = get_ok(
            &app,
            &admin,
            &with_filter(
                "/tenants",
                &json!({"fields": {"domains": false, "deletedOn": false}}),
            ),
        )
        .await;
        for row in without.as_array().unwrap() {
            let mut want = row_keys(&TENANT_FIELDS);
            want.retain(|k| k != "domains" && k != "deletedOn");
            assert_eq!(keys_of(row), want, "{row}");
        }

        // include with a scope, per parent.
        let scoped = json!({"where": {"key": "alpha"}, "fields": ["key"],
        "include": [{"relation": "contacts",
                     "scope": {"order": "email DESC", "limit": 2, "fields": ["email"]}}]});
        let bracket = "filter[where][key]=alpha&filter[fields][0]=key\
        &filter[include][0][relation]=contacts&filter[include][0][scope][order]=email%20DESC\
        &filter[include][0][scope][limit]=2&filter[include][0][scope][fields][0]=email";
        let expected = json!([{"key": "alpha", "contacts": [{"email": "cid@acme.com"}, {"email": "bob@acme.com"}]}]);
        assert_eq!(
            get_ok(&app, &admin, &with_filter("/tenants", &scoped)).await,
            expected
        );
        assert_eq!(
            get_ok(&app, &admin, &format!("/tenants?{bracket}")).await,
            expected
        );
        let skipped = json!({"order": "key", "fields": ["key"],
        "include": [{"relation": "contacts", "scope": {"order": "email", "skip": 1, "fields": {"email": true}}}]});
        assert_eq!(
            get_ok(&app, &admin, &with_filter("/tenants", &skipped)).await,
            json!([{"key": "alpha", "contacts": [{"email": "bob@acme.com"}, {"email": "cid@acme.com"}]},
               {"key": "beta", "contacts": []}, {"key": "gamma", "contacts": []}])
        );
        let plain = get_ok(
            &app,
            &admin,
            "/tenants?filter[include]=contacts&filter[order]=key",
        )
        .await;
        let counts: Vec<usize> = plain
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["contacts"].as_array().map_or(99, Vec::len))
            .collect();
        assert_eq!(counts, [3, 1, 1], "{plain}");
        let nested = json!({"where": {"email": "bob@acme.com"}, "fields": ["email"],
        "include": [{"relation": "tenant", "scope": {"fields": ["key"],
            "include": [{"relation": "contacts", "scope": {"fields": ["email"], "order": "email"}}]}}]});
        assert_eq!(
            get_ok(&app, &admin, &with_filter("/contacts", &nested)).await,
            json!([{"email": "bob@acme.com", "tenant": {"key": "alpha", "contacts": [
            {"email": "ada@acme.com"}, {"email": "bob@acme.com"}, {"email": "cid@acme.com"}]}}])
        );

        // count takes `where` in both forms.
        for (query, n) in [
            (format!("where={}", q(&json!({"status": 0}))), 1),
            ("where[status]=0".to_string(), 1),
            (
                "where[status][inq][0]=0&where[status][inq][1]=1".to_string(),
                2,
            ),
            ("where[name][ilike]=%25a%25".to_string(), 3),
            (String::new(), 3),
            ("where=".to_string(), 3),
        ] {
            assert_eq!(
                get_ok(&app, &admin, &format!("/tenants/count?{query}")).await,
                json!({"count": n}),
                "{query}"
            );
        }
        assert_eq!(
            get_ok(
                &app,
                &admin,
                &format!("/contacts/count?where[tenantId]={alpha}")
            )
            .await,
            json!({"count": 3})
        );

        // A read by id takes fields and include, not where.
        let item = format!("/tenants/{alpha}");
        let shaped = json!({"fields": ["key"], "include": [{"relation": "contacts", "scope": {"fields": ["email"], "order": "email", "limit": 1}}]});
        let expected = json!({"key": "alpha", "contacts": [{"email": "ada@acme.com"}]});
        assert_eq!(
            get_ok(&app, &admin, &with_filter(&item, &shaped)).await,
            expected
        );
        let bracket = format!(
            "{item}?filter[fields][key]=true&filter[include][0][relation]=contacts\
        &filter[include][0][scope][fields][email]=true&filter[include][0][scope][order]=email&filter[include][0][scope][limit]=1"
        );
        assert_eq!(get_ok(&app, &admin, &bracket).await, expected);
        let (status, body) = app
            .get(
                &with_filter(&item, &json!({"where": {"key": "beta"}})),
                Some(&admin),
            )
            .await;
        expect_bad_param(status, &body, "filter", "where", "where in a read by id");
        let (status, body) = app
            .get(&format!("{item}?filter[where][key]=alpha"), Some(&admin))
            .await;
        expect_bad_param(
            status,
            &body,
            "filter",
            "where",
            "bracket where in a read by id",
        );
    }
);

both_dbs!(soft_deleted_rows_are_hidden_everywhere, |app| async move {
    let admin = app.admin_token();
    let [alpha, beta, _gamma] = three_tenants(&app).await;
    let bob = get_ok(
        &app,
        &admin,
        &with_filter("/contacts", &json!({"where": {"email": "bob@acme.com"}})),
    )
    .await;
    let bob = id_of(&bob[0]);
    let invoice = id_of(&create(&app, &admin, "/invoices", &invoice_body(&beta)).await);
    let config = id_of(&create(&app, &admin, "/tenant-configs", &config_body(&beta)).await);

    // A deleted child is gone from includes, lists, counts and bulk updates.
    delete_ok(&app, &admin, &format!("/contacts/{bob}")).await;
    let with_contacts = get_ok(
        &app,
        &admin,
        &with_filter(
            &format!("/tenants/{alpha}"),
            &json!({"include": ["contacts"]}),
        ),
    )
    .await;
    let emails: Vec<&str> = with_contacts["contacts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["email"].as_str().unwrap())
        .collect();
    assert!(!emails.contains(&"bob@acme.com"), "{emails:?}");
    assert_eq!(emails.len(), 2, "{emails:?}");
    assert_eq!(count(&app, "/contacts").await, 4);
    bulk_patch(&app, &admin, "/contacts", &json!({"type": "x"}), 4).await;
    let filtered = get_ok(
        &app,
        &admin,
        &with_filter("/contacts", &json!({"where": {"deleted": true}})),
    )
    .await;
    assert_eq!(
        filtered,
        json!([]),
        "deleted rows stay invisible whatever the filter says"
    );
    let counted = get_ok(
        &app,
        &admin,
        &count_path(
            "/contacts",
            &json!({"or": [{"deleted": true}, {"deleted": false}]}),
        ),
    )
    .await;
    assert_eq!(counted, json!({"count": 4}));

    // A deleted parent is gone from the includes of its children.
    let tenant_row = get_ok(&app, &admin, &format!("/tenants/{beta}")).await;
    let invoice_with_tenant = with_filter(
        &format!("/invoices/{invoice}"),
        &json!({"include": ["tenant"]}),
    );
    let with_tenant = get_ok(&app, &admin, &invoice_with_tenant).await;
    assert_eq!(with_tenant["tenant"], tenant_row);
    delete_ok(&app, &admin, &format!("/tenants/{beta}")).await;
    let with_tenant = get_ok(&app, &admin, &invoice_with_tenant).await;
    assert!(
        with_tenant.get("tenant").is_none_or(Value::is_null),
        "{with_tenant}"
    );
    let listed = get_ok(
        &app,
        &admin,
        &with_filter(
            "/contacts",
            &json!({"where": {"tenantId": beta}, "include": ["tenant"]}),
        ),
    )
    .await;
    assert_eq!(listed.as_array().map(Vec::len), Some(1), "{listed}");
    assert!(
        listed[0].get("tenant").is_none_or(Value::is_null),
        "{listed}"
    );
    let configs = get_ok(
        &app,
        &admin,
        &with_filter(
            "/tenant-configs",
            &json!({"include": [{"relation": "tenant"}]}),
        ),
    )
    .await;
    assert!(
        configs[0].get("tenant").is_none_or(Value::is_null),
        "{configs}"
    );
    let (status, body) = app
        .get(&format!("/tenant-configs/{config}/tenant"), Some(&admin))
        .await;
    expect_error(
        status,
        &body,
        404,
        "NotFoundError",
        "tenant of a config whose tenant is deleted",
    );
    assert_eq!(
        keys_in(
            &get_ok(
                &app,
                &admin,
                &with_filter("/tenants", &json!({"order": "key"}))
            )
            .await
        ),
        ["alpha", "gamma"]
    );
    assert_eq!(count(&app, "/tenants").await, 2);
});

// ---------------------------------------------------------------------------------------------
// Values neither database can store the same way: refused with 422 on both, never a 500
// ---------------------------------------------------------------------------------------------

both_dbs!(
    nul_characters_and_unstorable_instants_are_422,
    [("PUBLIC_API_MAX_ATTEMPTS", "1000000")],
    |app| async move {
        let admin = app.admin_token();
        let (t, contact, invoice, config) = one_of_each(&app).await;
        let mut before = snapshot(&app).await;
        let nul = "a\u{0}b";
        let with_name = {
            let mut b = onboarding("nul", "Nul", &["nul.com"], "n");
            b["name"] = json!(nul);
            b
        };
        let with_contact_name = {
            let mut b = onboarding("nul", "Nul", &["nul.com"], "n");
            b["contact"]["firstName"] = json!(nul);
            b
        };
        let with_invoice = |field: &str, value: &str| {
            let mut b = invoice_body(&t);
            b[field] = json!(value);
            b
        };
        // (method, path, with a token, body, the path of the detail expected)
        let cases: Vec<(Method, String, bool, Value, &str)> = vec![
            (Method::POST, "/tenants".into(), true, with_name, "/name"),
            (
                Method::POST,
                "/tenants".into(),
                true,
                with_contact_name,
                "/contact/firstName",
            ),
            (
                Method::PATCH,
                format!("/tenants/{t}"),
                true,
                json!({"spocUserId": nul}),
                "/spocUserId",
            ),
            (
                Method::PATCH,
                "/tenants".into(),
                true,
                json!({"name": nul}),
                "/name",
            ),
            (
                Method::POST,
                "/contacts".into(),
                true,
                contact_body(&t, "nul@acme.com").tap(|b| b["firstName"] = json!(nul)),
                "/firstName",
            ),
            (
                Method::PATCH,
                format!("/contacts/{contact}"),
                true,
                json!({"type": nul}),
                "/type",
            ),
            (
                Method::PUT,
                format!("/invoices/{invoice}"),
                true,
                with_invoice("invoiceFile", nul),
                "/invoiceFile",
            ),
            (
                Method::POST,
                "/tenant-configs".into(),
                true,
                json!({"configKey": "k", "configValue": {"a": nul}, "tenantId": t}),
                "/configValue",
            ),
            (
                Method::PATCH,
                format!("/tenant-configs/{config}"),
                true,
                json!({"configValue": {nul: 1}}),
                "/configValue",
            ),
            (
                Method::PATCH,
                format!("/tenant-configs/{config}"),
                true,
                json!({"configKey": nul}),
                "/configKey",
            ),
            (
                Method::POST,
                "/leads".into(),
                false,
                json!({"firstName": nul, "lastName": "L", "email": "nul@acme.com", "companyName": "C"}),
                "/firstName",
            ),
            (
                Method::POST,
                "/leads".into(),
                false,
                json!({"firstName": "F", "lastName": "L", "email": "nul@acme.com", "companyName": "C", "address": {"city": nul, "country": "X"}}),
                "/address/city",
            ),
            // Valid ISO 8601 whose instant in UTC falls outside the years 0000-9999.
            (
                Method::POST,
                "/invoices".into(),
                true,
                with_invoice("startDate", "9999-12-31T23:30:00-01:00"),
                "/startDate",
            ),
            (
                Method::POST,
                "/invoices".into(),
                true,
                with_invoice("dueDate", "0000-01-01T00:30:00+01:00"),
                "/dueDate",
            ),
            (
                Method::PATCH,
                format!("/invoices/{invoice}"),
                true,
                json!({"endDate": "9999-12-31T23:59:59.999-00:01"}),
                "/endDate",
            ),
        ];
        let mut problems = Vec::new();
        for (method, path, with_token, body, detail) in cases {
            let what = format!(
                "{method} {path} {}",
                body.to_string().replace('\u{0}', "\\u0000")
            );
            let token = with_token.then_some(admin.as_str());
            let (status, answer) = send(&app, method, &path, token, Some(&body)).await;
            let details = answer["error"]["details"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            let named = details
                .iter()
                .any(|d| d["path"].as_str().is_some_and(|p| p.starts_with(detail)));
            if status != 422 || answer["error"]["name"] != "UnprocessableEntityError" || !named {
                problems.push(format!(
                    "{what}: expected 422 naming {detail}, got {status} {answer}"
                ));
            }
            let after = snapshot(&app).await;
            if after != before {
                problems.push(format!("{what}: the refused request changed data"));
                before = after;
            }
        }
        assert!(problems.is_empty(), "{}", problems.join("\n"));
    }
);

// ---------------------------------------------------------------------------------------------
// Concurrent writes
// ---------------------------------------------------------------------------------------------

/// Sends `bodies` to `POST /tenants` all at once; returns the statuses.
async fn onboard_concurrently(app: &TestApp, bodies: Vec<Value>) -> Vec<u16> {
    let token = app.admin_token();
    let mut tasks = tokio::task::JoinSet::new();
    for body in bodies {
        let request = app
            .client
            .post(app.url("/tenants"))
            .bearer_auth(&token)
            .json(&body);
        tasks.spawn(async move {
            let response = request.send().await.expect("request failed");
            let status = response.status().as_u16();
            let text = response.text().await.unwrap_or_default();
            (status, text)
        });
    }
    let mut statuses = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        let (status, text) = joined.expect("task panicked");
        assert!(status < 500, "concurrent onboarding: {status} {text}");
        statuses.push(status);
    }
    statuses.sort();
    statuses
}

both_dbs!(concurrent_onboardings_conflict_cleanly, |app| async move {
    let admin = app.admin_token();
    let same: Vec<Value> = (0..8)
        .map(|i| onboarding("same", &format!("Same {i}"), &[&format!("s{i}.com")], "s"))
        .collect();
    let statuses = onboard_concurrently(&app, same).await;
    assert_eq!(statuses, [200, 409, 409, 409, 409, 409, 409, 409]);
    let distinct: Vec<Value> = (0..8)
        .map(|i| onboarding(&format!("k{i}"), "K", &[&format!("k{i}.com")], "k"))
        .collect();
    let statuses = onboard_concurrently(&app, distinct).await;
    assert_eq!(statuses, [200; 8]);
    assert_eq!(count(&app, "/tenants").await, 9);
    assert_eq!(count(&app, "/contacts").await, 9);
    let same = get_ok(
        &app,
        &admin,
        &with_filter(
            "/tenants",
            &json!({"where": {"key": "same"}, "include": ["contacts"]}),
        ),
    )
    .await;
    assert_eq!(same.as_array().map(Vec::len), Some(1), "{same}");
    assert_eq!(
        same[0]["contacts"].as_array().map(Vec::len),
        Some(1),
        "{same}"
    );
});

// Clients of the original read a row, change a field and send the whole object back with `PUT`
// (or `PATCH`): the service-managed fields in it are accepted and ignored, the audit values stay
// as the service sets them, and an `id` other than the row's is refused.
both_dbs!(
    a_row_read_and_sent_back_whole_is_accepted,
    |app| async move {
        let creator = admin_as(&app, "creator-1");
        let editor = admin_as(&app, "editor-2");
        let tenant = id_of(
            &onboard(
                &app,
                &creator,
                onboarding("acme", "Acme", &["acme.com"], "ada"),
            )
            .await,
        );
        let contact = id_of(
            &create(
                &app,
                &creator,
                "/contacts",
                &contact_body(&tenant, "bob@acme.com"),
            )
            .await,
        );
        let invoice = id_of(&create(&app, &creator, "/invoices", &invoice_body(&tenant)).await);
        let config = id_of(&create(&app, &creator, "/tenant-configs", &config_body(&tenant)).await);
        tick().await;
        let cases = [
            (format!("/tenants/{tenant}"), "name", json!("Acme Renamed")),
            (format!("/contacts/{contact}"), "lastName", json!("Builder")),
            (format!("/invoices/{invoice}"), "amount", json!(12.5)),
            (
                format!("/tenant-configs/{config}"),
                "configValue",
                json!({"logo_url": "other"}),
            ),
        ];
        for (method, (path, field, value)) in [Method::PUT, Method::PATCH]
            .into_iter()
            .flat_map(|m| cases.iter().map(move |c| (m.clone(), c)))
        {
            let before = get_ok(&app, &creator, path).await;
            let mut body = before.clone();
            body[*field] = value.clone();
            // Audit values a client might send stale or forged: all ignored.
            body["createdBy"] = json!("someone-else");
            body["modifiedOn"] = json!("2001-01-01T00:00:00.000Z");
            body["deleted"] = json!(true);
            let (status, answer) = app
                .request(method.clone(), path, Some(&editor), Some(&body))
                .await;
            assert_eq!(
                status, 204,
                "{method} {path} with the row read back: {answer}"
            );
            let after = get_ok(&app, &creator, path).await;
            assert_eq!(after[*field], *value, "{method} {path}");
            assert_eq!(after["createdBy"], "creator-1", "{method} {path}");
            assert_eq!(after["createdOn"], before["createdOn"], "{method} {path}");
            assert_eq!(after["modifiedBy"], "editor-2", "{method} {path}");
            assert_eq!(after["deleted"], false, "{method} {path}");
            assert!(
                after["modifiedOn"].as_str() > before["modifiedOn"].as_str(),
                "{method} {path}: modifiedOn {} → {}",
                before["modifiedOn"],
                after["modifiedOn"]
            );

            // The row of another id: refused, nothing written.
            let mut other = after.clone();
            other["id"] = json!(random_uuid());
            other[*field] = before[*field].clone();
            let (status, answer) = app
                .request(method.clone(), path, Some(&editor), Some(&other))
                .await;
            assert_eq!(
                validation_pairs(status, &answer, path),
                pairs(&[("/id", "const")]),
                "{method} {path}"
            );
            assert_eq!(get_ok(&app, &creator, path).await, after, "{method} {path}");
            tick().await;
        }
    }
);

// On every guarded route an unsupported method is a 401 to a caller without valid
// credentials, and a 405 only to an authenticated one; a lead-token route reads the token
// before the body.
both_dbs!(credentials_come_before_405_and_415, |app| async move {
    let admin = app.admin_token();
    let tenant = id_of(
        &onboard(
            &app,
            &admin,
            onboarding("acme", "Acme", &["acme.com"], "ada"),
        )
        .await,
    );
    let lead = create_lead(
        &app,
        &json!({"firstName": "L", "lastName": "M", "email": "l@m.io", "companyName": "LM"}),
    )
    .await;
    for (method, path) in [
        (Method::DELETE, "/tenants".to_string()),
        (Method::PUT, "/tenants".to_string()),
        (Method::POST, "/tenants/count".to_string()),
        (Method::POST, format!("/tenants/{tenant}")),
        (Method::DELETE, "/contacts".to_string()),
        (Method::PUT, "/invoices".to_string()),
        (Method::DELETE, "/leads".to_string()),
        (Method::POST, format!("/tenant-configs/{tenant}/tenant")),
        (Method::GET, format!("/leads/{lead}/tenants")),
    ] {
        let what = format!("{method} {path}");
        let response = app.raw(method.clone(), &path, None, "", None).await;
        response.assert_error(401, "UnauthorizedError");
        let response = app
            .raw(method.clone(), &path, Some("not-a-jwt"), "", None)
            .await;
        response.assert_error(401, "UnauthorizedError");
        let (status, answer) = send(&app, method.clone(), &path, Some(&admin), None).await;
        expect_error(status, &answer, 405, "MethodNotAllowedError", &what);
    }
    // Onboarding from a lead without a content type: the token is checked first.
    let path = format!("/leads/{lead}/tenants");
    let response = app.raw(Method::POST, &path, None, "{}", None).await;
    response.assert_error(401, "UnauthorizedError");
    let response = app.raw(Method::POST, &path, Some(&admin), "{}", None).await;
    response.assert_error(401, "UnauthorizedError");
});

// A contact's email is at one of its tenant's domains on every write, not only at onboarding:
// 400 with the original's message, nothing written.
both_dbs!(
    a_contacts_email_is_at_its_tenants_domain,
    |app| async move {
        let admin = app.admin_token();
        let acme = id_of(
            &onboard(
                &app,
                &admin,
                onboarding("acme", "Acme", &["acme.com", "acme.io"], "ada"),
            )
            .await,
        );
        let beta = id_of(
            &onboard(
                &app,
                &admin,
                onboarding("beta", "Beta", &["beta.io"], "bea"),
            )
            .await,
        );
        let mismatch = |status: StatusCode, body: &Value, what: &str| {
            expect_error(status, body, 400, "BadRequestError", what);
            assert_eq!(
                body["error"]["message"], "Contact email domain does not match tenant domains",
                "{what}"
            );
        };
        let before = snapshot(&app).await;
        let (status, body) = app
            .post(
                "/contacts",
                Some(&admin),
                &contact_body(&acme, "bob@beta.io"),
            )
            .await;
        mismatch(status, &body, "POST with another tenant's domain");
        let (status, body) = app
            .post(
                "/contacts",
                Some(&admin),
                &contact_body(&acme, "bob@sub.acme.com"),
            )
            .await;
        mismatch(status, &body, "POST with a subdomain");
        assert_unchanged(&before, &snapshot(&app).await, "refused creates");

        let bob = id_of(
            &create(
                &app,
                &admin,
                "/contacts",
                &contact_body(&acme, "Bob@ACME.io"),
            )
            .await,
        );
        let item = format!("/contacts/{bob}");
        let before = snapshot(&app).await;
        for (method, body, what) in [
            (
                Method::PATCH,
                json!({"email": "bob@beta.io"}),
                "PATCH email",
            ),
            (Method::PATCH, json!({"tenantId": beta}), "PATCH tenant"),
            (
                Method::PUT,
                contact_body(&beta, "bob@acme.com"),
                "PUT with a mismatch",
            ),
        ] {
            let (status, answer) = send(&app, method, &item, Some(&admin), Some(&body)).await;
            mismatch(status, &answer, what);
        }
        let (status, answer) = send(
            &app,
            Method::PATCH,
            &with_where("/contacts", &json!({"tenantId": acme})),
            Some(&admin),
            Some(&json!({"email": "all@beta.io"})),
        )
        .await;
        mismatch(status, &answer, "bulk PATCH");
        assert_unchanged(&before, &snapshot(&app).await, "refused updates");

        // Email and tenant changed together, consistently: accepted.
        patch_ok(
            &app,
            &admin,
            &item,
            &json!({"email": "bob@beta.io", "tenantId": beta}),
        )
        .await;
        let moved = get_ok(&app, &admin, &item).await;
        assert_eq!(
            (moved["email"].as_str(), moved["tenantId"].as_str()),
            (Some("bob@beta.io"), Some(beta.as_str()))
        );
        let (status, answer) = send(
            &app,
            Method::PATCH,
            &with_where("/contacts", &json!({"tenantId": acme})),
            Some(&admin),
            Some(&json!({"lastName": "Same"})),
        )
        .await;
        assert_eq!(status, 200, "a bulk PATCH that keeps emails: {answer}");
    }
);
