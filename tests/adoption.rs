//! Taking over a running deployment of the original on PostgreSQL: a schema built from the facts
//! of the original's migrations and filled as the original fills it is recognised, recorded in
//! tms's migration history and given only tms's own tables, columns and indexes (a dump before
//! and after shows nothing of the original altered); every row is served as the original served
//! it (ids, enums, uuid audit columns, domains, dates, JSON, soft-deleted rows hidden) through
//! lists, counts, includes and filters; creating, updating, deleting, the funnel, provisioning
//! and billing work on it; and a schema holding something else stops start-up.

mod common;
mod lifecycle_support;
mod original_support;
mod rest_support;

use common::*;
use lifecycle_support::*;
use original_support::*;
use sqlx::{Connection, PgConnection};

/// A connection to the database of `storage`, its schema first on the search path.
async fn connect(storage: &Storage) -> PgConnection {
    let mut conn = PgConnection::connect(storage.postgres_app_url().expect("a PostgreSQL storage"))
        .await
        .expect("cannot connect to PostgreSQL");
    let schema = storage.postgres_schema().unwrap();
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "SET search_path TO \"{schema}\""
    )))
    .execute(&mut conn)
    .await
    .unwrap();
    conn
}

/// A storage holding the original's schema filled as the original fills it, its dump, and a
/// connection to it; `None` (a recorded skip) without PostgreSQL.
async fn original_deployment(test: &str) -> Option<(Storage, PgConnection, SchemaDump)> {
    if !db_available(Db::Postgres, test) {
        return None;
    }
    let storage = Storage::new(Db::Postgres);
    let schema = storage.postgres_schema().unwrap().to_string();
    let mut conn = connect(&storage).await;
    create_original_schema(&mut conn, &schema).await;
    seed_as_the_original(&mut conn, &schema).await;
    let dump = schema_dump(&mut conn, &schema).await;
    Some((storage, conn, dump))
}

async fn get_ok(app: &TestApp, path: &str) -> Value {
    let (status, body) = app.get(path, Some(&app.admin_token())).await;
    assert_eq!(status, 200, "GET {path}: {body}");
    body
}

fn ids(rows: &Value) -> Vec<String> {
    let mut ids: Vec<String> = rows
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_string())
        .collect();
    ids.sort();
    ids
}

fn sorted(ids: &[&str]) -> Vec<String> {
    let mut ids: Vec<String> = ids.iter().map(|s| s.to_string()).collect();
    ids.sort();
    ids
}

#[tokio::test]
async fn the_original_schema_is_taken_over_and_served_as_the_original_served_it() {
    let test = "the_original_schema_is_taken_over_and_served_as_the_original_served_it";
    let Some((storage, mut conn, before)) = original_deployment(test).await else {
        return;
    };
    let schema = storage.postgres_schema().unwrap().to_string();
    let app = TestApp::spawn_on(storage, &[]).await;

    // Recorded in tms's history; the original's columns, constraints, triggers and indexes kept.
    let after = schema_dump(&mut conn, &schema).await;
    before.assert_kept_in(&after);
    let added: Vec<String> = before
        .added_columns(&after)
        .iter()
        .map(|c| {
            c.split(' ')
                .nth(1)
                .map(|name| format!("{}.{name}", &c[..c.find('.').unwrap()]))
                .unwrap()
        })
        .collect();
    assert_eq!(
        added,
        [
            "invoices.seller",
            "invoices.invoice_number",
            "invoices.billing_period",
            "invoices.overdue_at"
        ],
        "only tms's own columns, nullable"
    );
    let history: Vec<(i64, String)> =
        sqlx::query_as("SELECT version, description FROM _sqlx_migrations ORDER BY version")
            .fetch_all(&mut conn)
            .await
            .unwrap();
    assert_eq!(history[0].0, 1);
    assert!(history[0].1.contains("adopted"), "{history:?}");
    assert!(history.len() >= 9, "{history:?}");
    let counts = row_counts(&mut conn, &schema).await;
    assert_eq!(counts, SEEDED_ROW_COUNTS.map(|(t, n)| (t.to_string(), n)));

    // Live rows only, everywhere.
    for (path, n) in [
        ("/tenants/count", 2),
        ("/leads/count", 2),
        ("/contacts/count", 3),
        ("/invoices/count", 2),
        ("/tenant-configs/count", 2),
    ] {
        assert_eq!(get_ok(&app, path).await, json!({"count": n}), "{path}");
    }
    assert_eq!(
        ids(&get_ok(&app, "/tenants").await),
        sorted(&[TENANT_ACTIVE, TENANT_PENDING])
    );
    for gone in [
        format!("/tenants/{TENANT_DELETED}"),
        format!("/leads/{LEAD_DELETED}"),
        format!("/contacts/{CONTACT_DELETED}"),
        format!("/invoices/{INVOICE_DELETED}"),
    ] {
        let (status, _) = app.get(&gone, Some(&app.admin_token())).await;
        assert_eq!(status, 404, "{gone}");
    }

    // A tenant with its relations, value by value.
    let tenant = get_ok(
        &app,
        &format!(
            "/tenants/{TENANT_ACTIVE}?filter[include][0]=contacts&filter[include][1]=resources\
             &filter[include][2]=address&filter[include][3]=lead"
        ),
    )
    .await;
    assert_eq!(tenant["key"], TENANT_ACTIVE_KEY);
    assert_eq!(tenant["status"], 0);
    assert_eq!(tenant["domains"], json!(TENANT_ACTIVE_DOMAINS));
    assert_eq!(tenant["spocUserId"], SPOC_USER_ID);
    assert_eq!(
        tenant["createdBy"], LEAD_VALIDATED,
        "the lead's own token onboarded it"
    );
    assert_eq!(tenant["createdOn"], TS_TENANT_ACTIVE_CREATED.wire);
    assert_eq!(tenant["deletedOn"], Value::Null);
    assert_eq!(
        ids(&tenant["contacts"]),
        sorted(&[CONTACT_PRIMARY, CONTACT_BILLING])
    );
    let billing = tenant["contacts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == CONTACT_BILLING)
        .unwrap();
    assert_eq!(
        (
            &billing["type"],
            &billing["modifiedOn"],
            &billing["modifiedBy"]
        ),
        (&Value::Null, &Value::Null, &Value::Null)
    );
    assert_eq!(billing["createdOn"], TS_CONTACT_BILLING.wire);
    assert_eq!(billing["createdBy"], ADMIN_USER_TENANT_ID);
    let primary = tenant["contacts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == CONTACT_PRIMARY)
        .unwrap();
    assert_eq!(primary["type"], "admin");
    let bucket = tenant["resources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == RESOURCE_BUCKET)
        .unwrap();
    assert_eq!(bucket["metadata"], bucket_metadata());
    assert_eq!(bucket["externalIdentifier"], RESOURCE_BUCKET_EXTERNAL_ID);
    assert_eq!(tenant["address"]["id"], ADDRESS_FULL);
    assert_eq!(tenant["address"]["createdOn"], TS_ADDRESS_FULL.wire);
    assert_eq!(tenant["lead"]["id"], LEAD_VALIDATED);
    assert_eq!(tenant["lead"]["isValidated"], true);

    // Invoices: numeric amounts, char(3) currencies, dates that may be null.
    let paid = get_ok(&app, &format!("/invoices/{INVOICE_PAID}")).await;
    assert_eq!(paid["amount"], json!(1499.99));
    assert_eq!(paid["currencyCode"], "USD");
    assert_eq!(paid["status"], INVOICE_PAID_STATUS);
    assert_eq!(paid["endDate"], TS_INVOICE_PAID_END.wire);
    assert_eq!(
        paid["invoiceNumber"],
        Value::Null,
        "written before tms numbered"
    );
    let undated = get_ok(&app, &format!("/invoices/{INVOICE_UNDATED}")).await;
    assert_eq!(undated["amount"], json!(12.3456));
    assert_eq!(
        (&undated["startDate"], &undated["dueDate"]),
        (&Value::Null, &Value::Null)
    );
    let config = get_ok(&app, &format!("/tenant-configs/{CONFIG_KEYCLOAK}")).await;
    assert_eq!(config["configValue"], keycloak_config_value());
    assert_eq!(config["modifiedOn"], TS_CONFIG_KEYCLOAK_MODIFIED.wire);
    let owner = get_ok(&app, &format!("/tenant-configs/{CONFIG_KEYCLOAK}/tenant")).await;
    assert_eq!(owner["id"], TENANT_ACTIVE);

    // Filters, including on the uuid audit columns and the varchar[] domains.
    for (path, want) in [
        (
            format!("/contacts?filter[where][createdBy]={ADMIN_USER_TENANT_ID}"),
            vec![CONTACT_BILLING, CONTACT_PENDING_PRIMARY],
        ),
        (
            "/contacts?filter[where][createdBy][like]=4feef33d%25".to_string(),
            vec![CONTACT_BILLING, CONTACT_PENDING_PRIMARY],
        ),
        (
            // Onboarded with the lead's own token.
            format!("/contacts?filter[where][createdBy]={LEAD_VALIDATED}"),
            vec![CONTACT_PRIMARY],
        ),
        (
            "/tenants?filter[where][domains]=acme.example.org".to_string(),
            vec![TENANT_ACTIVE],
        ),
        (
            "/tenants?filter[where][status]=1".to_string(),
            vec![TENANT_PENDING],
        ),
        (
            "/tenants?filter[where][key][like]=glo%25".to_string(),
            vec![TENANT_PENDING],
        ),
        (
            "/invoices?filter[where][amount][gt]=100".to_string(),
            vec![INVOICE_PAID],
        ),
        (
            "/invoices?filter[where][currencyCode]=EUR".to_string(),
            vec![INVOICE_UNDATED],
        ),
        (
            "/leads?filter[where][isValidated]=true".to_string(),
            vec![LEAD_VALIDATED],
        ),
        (
            format!("/contacts?filter[where][tenantId]={TENANT_PENDING}"),
            vec![CONTACT_PENDING_PRIMARY],
        ),
    ] {
        assert_eq!(ids(&get_ok(&app, &path).await), sorted(&want), "{path}");
    }
    let ordered = get_ok(&app, "/tenants?filter[order][0]=name%20DESC").await;
    assert_eq!(ordered[0]["id"], TENANT_PENDING, "Globex before Acme");

    // Starting again finds tms's schema: nothing more happens.
    let again = app.restart().await;
    assert_eq!(get_ok(&again, "/tenants/count").await, json!({"count": 2}));
    let last = schema_dump(&mut conn, &schema).await;
    assert_eq!(last, after);
}

#[tokio::test]
async fn writes_work_on_a_taken_over_schema() {
    let test = "writes_work_on_a_taken_over_schema";
    let Some((storage, mut conn, before)) = original_deployment(test).await else {
        return;
    };
    let schema = storage.postgres_schema().unwrap().to_string();
    let app = TestApp::spawn_on(storage, &[("LEAD_KEY_IN_RESPONSE", "true")]).await;
    let token = arc_token(ADMIN_USER_ID, ADMIN_USER_TENANT_ID);

    // A contact by an ARC user: stamped as the original stamps it, in its uuid columns.
    let (status, contact) = app
        .post(
            "/contacts",
            Some(&token),
            &json!({"firstName": "Grace", "lastName": "Hopper",
                    "email": "grace@acme.example.com", "isPrimary": false, "type": "billing",
                    "tenantId": TENANT_ACTIVE}),
        )
        .await;
    assert_eq!(status, 200, "{contact}");
    assert_eq!(contact["createdBy"], ADMIN_USER_TENANT_ID);
    let id = contact["id"].as_str().unwrap().to_string();
    let path = format!("/contacts/{id}");
    let (status, _) = app
        .patch(&path, Some(&token), &json!({"firstName": "G."}))
        .await;
    assert_eq!(status, 204);
    assert_eq!(get_ok(&app, &path).await["type"], "billing");
    assert_eq!(app.delete(&path, Some(&token)).await.0, 204);
    let (deleted_by, contact_type): (Option<uuid::Uuid>, Option<String>) =
        sqlx::query_as("SELECT deleted_by, contact_type FROM contacts WHERE id = $1::uuid")
            .bind(&id)
            .fetch_one(&mut conn)
            .await
            .unwrap();
    assert_eq!(
        deleted_by.map(|u| u.to_string()).as_deref(),
        Some(ADMIN_USER_ID)
    );
    assert_eq!(contact_type.as_deref(), Some("billing"));

    // What the original's columns cannot take is 422, not 500, and writes nothing: a user id
    // that is not a UUID for its uuid `deleted_by`, a spocUserId, a file name over varchar(100).
    let odd_user = arc_token("auth0|12345", ADMIN_USER_TENANT_ID);
    let (status, body) = app
        .delete(&format!("/contacts/{CONTACT_BILLING}"), Some(&odd_user))
        .await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(
        get_ok(&app, &format!("/contacts/{CONTACT_BILLING}")).await["id"],
        CONTACT_BILLING
    );
    let (status, body) = app
        .patch(
            &format!("/tenants/{TENANT_PENDING}"),
            Some(&token),
            &json!({"spocUserId": "not-a-uuid"}),
        )
        .await;
    assert_eq!(status, 422, "{body}");
    let long_file = "f".repeat(150);
    let (status, body) = app
        .post(
            "/invoices",
            Some(&token),
            &json!({"startDate": "2026-12-01", "endDate": "2027-01-01", "amount": 10,
                    "currencyCode": "USD", "dueDate": "2026-12-31", "status": 0,
                    "invoiceFile": long_file, "tenantId": TENANT_ACTIVE}),
        )
        .await;
    assert_eq!(status, 422, "varchar(100): {body}");
    assert_eq!(get_ok(&app, "/invoices/count").await, json!({"count": 2}));

    // An invoice tms numbers, in the original's table.
    let (status, invoice) = app
        .post(
            "/invoices",
            Some(&token),
            &json!({"startDate": "2026-12-01", "endDate": "2027-01-01", "amount": 10.005,
                    "currencyCode": "USD", "dueDate": "2026-12-31", "status": 0,
                    "tenantId": TENANT_ACTIVE}),
        )
        .await;
    assert_eq!(status, 200, "{invoice}");
    assert_eq!(
        (&invoice["invoiceNumber"], &invoice["amount"]),
        (&json!("INV-000001"), &json!(10.01))
    );

    // Onboarding: a tenant with its contact and address, domains into varchar[].
    let onboarded = rest_support::onboard(
        &app,
        &token,
        rest_support::onboarding("hooli", "Hooli", &["hooli.example.com"], "gavin"),
    )
    .await;
    let hooli = onboarded["id"].as_str().unwrap().to_string();
    let read = get_ok(&app, &format!("/tenants/{hooli}")).await;
    assert_eq!(read["domains"], json!(["hooli.example.com"]));
    assert_eq!(read["createdBy"], ADMIN_USER_TENANT_ID);

    // The funnel: sign-up, verification, the lead's tenant.
    let (status, lead) = app
        .post(
            "/leads",
            None,
            &json!({"firstName": "Ada", "lastName": "Lovelace",
                    "email": "ada@engines.example.com", "companyName": "Engines"}),
        )
        .await;
    assert_eq!(status, 200, "{lead}");
    let lead_id = lead["id"].as_str().unwrap().to_string();
    let (status, verified) = app
        .post(
            &format!("/leads/{lead_id}/verify"),
            Some(lead["key"].as_str().unwrap()),
            &json!({}),
        )
        .await;
    assert_eq!(status, 200, "{verified}");
    let lead_token = verified["token"].as_str().unwrap().to_string();
    let (status, own) = app
        .post(
            &format!("/leads/{lead_id}/tenants"),
            Some(&lead_token),
            &json!({"key": "engines", "domains": ["engines.example.com"]}),
        )
        .await;
    assert_eq!(status, 200, "{own}");
    let engines = own["id"].as_str().unwrap().to_string();

    // Provisioning on a paid plan: ACTIVE, resources, the first invoice, all by SYSTEM_USER_ID.
    let subscription = paid_subscription("BASIC", json!({"price": 20, "currency": "EUR"}));
    let (status, body) = provision(&app, &engines, &subscription).await;
    assert_eq!(status, 204, "{body}");
    let event = wait_for_event_of(&app, &engines, "TENANT_PROVISIONING").await;
    let done = report(
        &event,
        json!({"status": 1, "resources": [{"type": "bucket", "externalIdentifier": "engines-b",
            "metadata": {"bucket": "engines-b"}}]}),
    );
    let response = send(&app, &done).await;
    assert_eq!(response.status, 204, "{}", response.text);
    let provisioned = get_ok(
        &app,
        &format!("/tenants/{engines}?filter[include][0]=resources"),
    )
    .await;
    assert_eq!(provisioned["status"], 0);
    assert_eq!(
        provisioned["modifiedBy"],
        tms::config::DEFAULT_SYSTEM_USER_ID
    );
    assert_eq!(
        provisioned["resources"][0]["externalIdentifier"],
        "engines-b"
    );
    let invoices = get_ok(
        &app,
        &format!("/invoices?filter[where][tenantId]={engines}"),
    )
    .await;
    assert_eq!(invoices[0]["invoiceNumber"], "INV-000002");

    // The original's tables still are the original's.
    let after = schema_dump(&mut conn, &schema).await;
    before.assert_kept_in(&after);
}

#[tokio::test]
async fn a_schema_of_something_else_stops_start_up() {
    let test = "a_schema_of_something_else_stops_start_up";
    if !db_available(Db::Postgres, test) {
        return;
    }
    let storage = Storage::new(Db::Postgres);
    let mut conn = connect(&storage).await;
    let schema = storage.postgres_schema().unwrap().to_string();
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "CREATE SCHEMA IF NOT EXISTS \"{schema}\"; \
         CREATE TABLE \"{schema}\".orders (id int); CREATE TABLE \"{schema}\".tenants (id int)"
    )))
    .execute(&mut conn)
    .await
    .unwrap();
    let config = storage.config(&[]);
    let db = tms::store::Db::connect(&config).await.unwrap();
    let err = format!("{:#}", db.migrate().await.unwrap_err());
    assert!(
        err.contains("neither empty, nor tms's, nor the original's")
            && err.contains("orders, tenants"),
        "{err}"
    );
    db.close().await;
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT table_name::text FROM information_schema.tables WHERE table_schema = $1 ORDER BY 1",
    )
    .bind(&schema)
    .fetch_all(&mut conn)
    .await
    .unwrap();
    assert_eq!(tables, ["orders", "tenants"], "nothing added");
}

#[tokio::test]
async fn taking_over_needs_a_uuid_system_user() {
    let test = "taking_over_needs_a_uuid_system_user";
    let Some((storage, mut conn, before)) = original_deployment(test).await else {
        return;
    };
    let schema = storage.postgres_schema().unwrap().to_string();
    let db = tms::store::Db::connect(&storage.config(&[("SYSTEM_USER_ID", "system")]))
        .await
        .unwrap();
    let err = format!("{:#}", db.migrate().await.unwrap_err());
    assert!(err.contains("SYSTEM_USER_ID must be a UUID"), "{err}");
    db.close().await;
    let after = schema_dump(&mut conn, &schema).await;
    assert_eq!(after, before, "nothing added");
}
