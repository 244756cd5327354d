//! The audit trail (`docs/audit.md`): every write route leaves one record per row it changed, in
//! the transaction of the change, naming who (a user token, a lead, the pipeline, the system),
//! what (entity, id, action, the fields before and after) and when, with secrets masked;
//! `GET /audit-logs` reads it with the LoopBack filter for holders of ViewAuditLog (10224),
//! never for a lead token; records past `AUDIT_RETENTION_DAYS` are pruned on the clock. On
//! SQLite and PostgreSQL.

mod common;
mod lifecycle_support;
mod rest_support;

use common::*;
use lifecycle_support::*;
use rest_support::*;

const USER: &str = "aaaaaaaa-0000-4000-8000-0000000000c1";
const USER_TENANT: &str = "aaaaaaaa-0000-4000-8000-0000000000d2";

/// The records matching `where_`, oldest first.
async fn trail(app: &TestApp, where_: Value) -> Vec<Value> {
    let filter = json!({"where": where_, "order": ["occurredOn ASC"]});
    let rows = get_ok(
        app,
        &app.admin_token(),
        &with_filter("/audit-logs", &filter),
    )
    .await;
    rows.as_array().unwrap().clone()
}

/// The records of one row.
async fn of(app: &TestApp, entity: &str, id: &str) -> Vec<Value> {
    trail(app, json!({"entity": entity, "entityId": id})).await
}

/// The one record of `entity` `id` with `action`; panics naming what there is otherwise.
async fn the_record(app: &TestApp, entity: &str, id: &str, action: &str) -> Value {
    let all = of(app, entity, id).await;
    let found: Vec<&Value> = all.iter().filter(|r| r["action"] == action).collect();
    assert_eq!(found.len(), 1, "{entity} {id} {action}: {all:#?}");
    found[0].clone()
}

fn assert_user(record: &Value) {
    assert_eq!(record["actorKind"], "user", "{record}");
    assert_eq!(record["actorId"], USER, "{record}");
    assert_eq!(record["actorTenantId"], USER_TENANT, "{record}");
    assert!(is_iso_ms(&record["occurredOn"]), "{record}");
}

both_dbs!(every_write_route_leaves_its_record, |app| async move {
    let token = arc_token(USER, USER_TENANT);

    // Onboarding: address, tenant and contact, each created.
    let mut body = onboarding("acme", "Acme", &["acme.io"], "ada");
    body["country"] = json!("NL");
    let tenant = onboard(&app, &token, body).await;
    let t = id_of(&tenant);
    let created = the_record(&app, "Tenant", &t, "create").await;
    assert_user(&created);
    assert_eq!(created["tenantId"], t.as_str());
    assert_eq!(created["before"], Value::Null);
    assert_eq!(created["after"]["key"], "acme");
    assert_eq!(created["after"]["id"], t.as_str(), "the whole row");
    let address = tenant["addressId"].as_str().unwrap();
    assert_eq!(
        the_record(&app, "Address", address, "create").await["after"]["country"],
        "NL"
    );
    let first_contact = id_of(&tenant["contacts"][0]);
    the_record(&app, "Contact", &first_contact, "create").await;

    // Each generic route of a collection, one (kind of) record each.
    let contact = id_of(
        &create(
            &app,
            &token,
            "/contacts",
            &json!({"firstName": "Grace", "lastName": "Hopper", "email": "grace@acme.io",
                "isPrimary": false, "tenantId": t}),
        )
        .await,
    );
    let path = format!("/contacts/{contact}");
    patch_ok(&app, &token, &path, &json!({"firstName": "Amazing"})).await;
    let (status, answer) = app
        .put(
            &path,
            Some(&token),
            &json!({"firstName": "Amazing", "lastName": "Grace", "email": "grace@acme.io",
                "isPrimary": false, "tenantId": t}),
        )
        .await;
    assert_eq!(status, 204, "{answer}");
    let records = of(&app, "Contact", &contact).await;
    let actions: Vec<&str> = records
        .iter()
        .map(|r| r["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["create", "update", "update"], "{records:#?}");
    let patched = records
        .iter()
        .find(|r| r["after"]["firstName"] == "Amazing")
        .unwrap();
    assert_user(patched);
    assert_eq!(patched["before"]["firstName"], "Grace");
    assert!(
        patched["after"].get("email").is_none(),
        "only what changed: {patched}"
    );
    let put = records
        .iter()
        .find(|r| r["after"]["lastName"] == "Grace")
        .unwrap();
    assert_eq!(put["before"]["lastName"], "Hopper");

    // A bulk PATCH: one record per row it changed.
    let (status, answer) = app
        .patch(
            &with_where("/contacts", &json!({"tenantId": t})),
            Some(&token),
            &json!({"lastName": "Bulk"}),
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["count"], 2);
    for id in [&contact, &first_contact] {
        let bulk: Vec<Value> = of(&app, "Contact", id)
            .await
            .into_iter()
            .filter(|r| r["after"]["lastName"] == "Bulk")
            .collect();
        assert_eq!(bulk.len(), 1, "{id}: {bulk:?}");
        assert_eq!(bulk[0]["action"], "update");
        assert_eq!(bulk[0]["tenantId"], t.as_str());
    }

    // A delete keeps the whole row as it was.
    delete_ok(&app, &token, &path).await;
    let deleted = the_record(&app, "Contact", &contact, "delete").await;
    assert_user(&deleted);
    assert_eq!(deleted["before"]["email"], "grace@acme.io");
    assert_eq!(deleted["before"]["deleted"], false);
    assert_eq!(deleted["after"], Value::Null);

    // A tenant's own PATCH, a config, an invoice and its payment.
    patch_ok(
        &app,
        &token,
        &format!("/tenants/{t}"),
        &json!({"name": "Acme 2"}),
    )
    .await;
    let renamed = the_record(&app, "Tenant", &t, "update").await;
    assert_eq!(
        (&renamed["before"]["name"], &renamed["after"]["name"]),
        (&json!("Acme"), &json!("Acme 2"))
    );
    let config = id_of(
        &create(
            &app,
            &token,
            "/tenant-configs",
            &json!({"configKey": "billing-app", "configValue": {"plan": "gold"}, "tenantId": t}),
        )
        .await,
    );
    the_record(&app, "TenantMgmtConfig", &config, "create").await;
    let invoice = id_of(
        &create(
            &app,
            &token,
            "/invoices",
            &json!({"startDate": "2026-11-01T00:00:00.000Z", "endDate": "2026-12-01T00:00:00.000Z",
                "amount": 10, "currencyCode": "USD", "dueDate": "2026-12-15T00:00:00.000Z",
                "status": 0, "tenantId": t}),
        )
        .await,
    );
    the_record(&app, "Invoice", &invoice, "create").await;
    let (status, answer) = app
        .post(
            &format!("/invoices/{invoice}/pay"),
            Some(&token),
            &json!({}),
        )
        .await;
    assert_eq!(status, 204, "{answer}");
    let paid = the_record(&app, "Invoice", &invoice, "pay").await;
    assert_user(&paid);
    assert_eq!(
        (&paid["before"]["status"], &paid["after"]["status"]),
        (&json!(0), &json!(1))
    );

    // A lead's sign-up is its own.
    let lead = create_lead(
        &app,
        &json!({"firstName": "Li", "lastName": "Ma", "email": "li@lead.io", "companyName": "L"}),
    )
    .await;
    let signed_up = the_record(&app, "Lead", &lead, "create").await;
    assert_eq!(
        (&signed_up["actorKind"], &signed_up["actorId"]),
        (&json!("lead"), &json!(lead))
    );
    assert_eq!(signed_up["tenantId"], Value::Null);

    // Filter and count agree.
    let (status, count) = app
        .get(
            &count_path("/audit-logs", &json!({"tenantId": t})),
            Some(&app.admin_token()),
        )
        .await;
    assert_eq!(status, 200, "{count}");
    let of_tenant = trail(&app, json!({"tenantId": t})).await;
    assert_eq!(count["count"], json!(of_tenant.len()));
    assert!(of_tenant.len() >= 12, "{of_tenant:#?}");
    let page = get_ok(
        &app,
        &app.admin_token(),
        &with_filter(
            "/audit-logs",
            &json!({"where": {"action": "update", "entity": "Contact"}, "limit": 2,
                "fields": ["entityId", "action"]}),
        ),
    )
    .await;
    let page = page.as_array().unwrap();
    assert_eq!(page.len(), 2, "{page:?}");
    assert_eq!(keys_of(&page[0]), ["entityId", "action"]);
});

both_dbs!(
    lifecycle_moves_name_the_pipeline_and_the_caller,
    |app| async move {
        let token = arc_token(USER, USER_TENANT);
        let t = active_tenant_on(&app, "moves", &subscription("STANDARD")).await;
        let provision = the_record(&app, "Tenant", &t, "provision").await;
        assert_eq!(provision["actorKind"], "user", "{provision}");
        let done = the_record(&app, "Tenant", &t, "provisioned").await;
        assert_eq!(done["actorKind"], "pipeline", "{done}");
        assert_eq!(
            (&done["before"]["status"], &done["after"]["status"]),
            (&json!(2), &json!(0))
        );
        let resources = trail(&app, json!({"entity": "Resource", "tenantId": t})).await;
        assert_eq!(resources.len(), 2, "{resources:#?}");
        assert!(
            resources
                .iter()
                .all(|r| r["actorKind"] == "pipeline" && r["action"] == "create")
        );

        for (step, status) in [("suspend", 6), ("reactivate", 0)] {
            let (code, body) = app
                .post(&format!("/tenants/{t}/{step}"), Some(&token), &json!({}))
                .await;
            assert_eq!(code, 204, "{step}: {body}");
            let moved = the_record(&app, "Tenant", &t, step).await;
            assert_user(&moved);
            assert_eq!(moved["after"]["status"], status);
        }
    }
);

both_dbs!(a_write_that_fails_leaves_no_record, |app| async move {
    let token = arc_token(USER, USER_TENANT);
    a_tenant(&app, "taken").await;
    let addresses = trail(&app, json!({"entity": "Address"})).await.len();
    let all = trail(&app, json!({})).await.len();
    // The address is written (with its record) before the tenant's key is refused: the
    // transaction takes both back.
    let mut body = onboarding("taken", "Again", &["again.io"], "bo");
    body["country"] = json!("DE");
    let (status, answer) = app.post("/tenants", Some(&token), &body).await;
    assert_eq!(status, 409, "{answer}");
    assert_eq!(
        trail(&app, json!({"entity": "Address"})).await.len(),
        addresses
    );
    assert_eq!(trail(&app, json!({})).await.len(), all);
    // An update refused by the database: no record either.
    let other = a_tenant(&app, "other").await;
    let before = of(&app, "Tenant", &other).await.len();
    let (status, answer) = app
        .patch(
            &format!("/tenants/{other}"),
            Some(&token),
            &json!({"key": "taken"}),
        )
        .await;
    assert_eq!(status, 409, "{answer}");
    assert_eq!(of(&app, "Tenant", &other).await.len(), before);
});

both_dbs!(
    secrets_written_through_the_api_are_never_recorded,
    |app| async move {
        let token = arc_token(USER, USER_TENANT);
        let t = a_tenant(&app, "vault").await;
        let secrets = [
            "pw-7f3a-never",
            "cs-91bb-never",
            "tok-55e1-never",
            "key-0c4d-never",
            "url-pass-never",
        ];
        let config = create(
            &app,
            &token,
            "/tenant-configs",
            &json!({"configKey": "payments", "tenantId": t, "configValue": {
            "adminPassword": secrets[0], "clientSecret": secrets[1],
            "nested": [{"accessToken": secrets[2], "apiKey": secrets[3]}],
            "smtp": format!("smtp://mailer:{}@mail.vault.io:587", secrets[4]),
            "region": "eu-west-1"}}),
        )
        .await;
        let id = id_of(&config);
        patch_ok(
            &app,
            &token,
            &format!("/tenant-configs/{id}"),
            &json!({"configValue": {"adminPassword": "pw-2-never", "region": "eu-central-1"}}),
        )
        .await;
        delete_ok(&app, &token, &format!("/tenant-configs/{id}")).await;
        let response = app
            .get_raw(
                &with_filter("/audit-logs", &json!({"where": {"entityId": id}})),
                Some(&app.admin_token()),
            )
            .await;
        assert_eq!(response.status, 200);
        for secret in secrets.iter().chain(&["pw-2-never"]) {
            assert!(
                !response.text.contains(secret),
                "{secret}: {}",
                response.text
            );
        }
        let records = response.json();
        let records = records.as_array().unwrap();
        assert_eq!(records.len(), 3, "{records:#?}");
        let created = records.iter().find(|r| r["action"] == "create").unwrap();
        let value = &created["after"]["configValue"];
        assert_eq!(value["adminPassword"], "***");
        assert_eq!(value["nested"][0]["apiKey"], "***");
        assert_eq!(value["smtp"], "smtp://mailer:***@mail.vault.io:587");
        assert_eq!(value["region"], "eu-west-1", "what is not secret stays");
        assert_eq!(created["after"]["configKey"], "payments");
        // Nor in the database itself.
        let db = tms::store::Db::connect(&app.config_with(&[]))
            .await
            .unwrap();
        let rows = db
            .conn()
            .raw_fetch(
                match db.backend() {
                    tms::store::Backend::Postgres => {
                        "SELECT CAST(before AS text) AS b, CAST(after AS text) AS a FROM audit_logs"
                    }
                    tms::store::Backend::Sqlite => "SELECT before AS b, after AS a FROM audit_logs",
                },
                &[],
                false,
            )
            .await
            .unwrap();
        let stored: String = rows
            .iter()
            .flat_map(|r| [r.text("b").unwrap(), r.text("a").unwrap()])
            .flatten()
            .collect();
        assert!(stored.contains("eu-west-1"), "the trail was read");
        for secret in secrets {
            assert!(!stored.contains(secret), "{secret} stored");
        }
        db.close().await;
    }
);

both_dbs!(
    only_holders_of_the_code_and_never_leads_read_the_trail,
    [("LEAD_KEY_IN_RESPONSE", "true")],
    |app| async move {
        let path = "/audit-logs";
        let (status, _) = app.get(path, None).await;
        assert_eq!(status, 401);
        let without = token_without(&app, USER, "10224");
        for path in [path, "/audit-logs/count"] {
            let (status, body) = app.get(path, Some(&without)).await;
            expect_error(status, &body, 403, "ForbiddenError", path);
        }
        let (lead, _, _) = lead_with_tenant(&app, "leady", "leady.io").await;
        // A lead token, even one that carries the code.
        let claims = json!({"id": lead, "leadId": lead, "permissions": ["10224", "10203"],
        "iss": JWT_ISSUER, "exp": tms::auth::now_secs() + 600});
        let lead_token = jsonwebtoken::encode(
            &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
            &claims,
            &jsonwebtoken::EncodingKey::from_secret(JWT_SECRET.as_bytes()),
        )
        .unwrap();
        let (status, body) = app.get("/leads/count", Some(&lead_token)).await;
        assert_eq!(status, 200, "the token works: {body}");
        for path in [path, "/audit-logs/count"] {
            let (status, body) = app.get(path, Some(&lead_token)).await;
            expect_error(status, &body, 403, "ForbiddenError", path);
        }
        let (status, body) = app.get(path, Some(&app.admin_token())).await;
        assert_eq!(status, 200, "{body}");
        assert!(!body.as_array().unwrap().is_empty());
        // The lead's own writes: its sign-up, verification and tenant.
        let verified = the_record(&app, "Lead", &lead, "verify").await;
        assert_eq!(verified["actorKind"], "lead");
        assert_eq!(verified["after"]["isValidated"], true);
        let tenant = trail(&app, json!({"entity": "Tenant", "action": "create"})).await;
        assert_eq!(tenant[0]["actorKind"], "lead", "{tenant:?}");
        assert_eq!(tenant[0]["actorId"], lead.as_str());
        // A bad filter is a 400, as on every collection.
        let (status, body) = app
            .get(
                &with_filter(path, &json!({"where": {"nope": 1}})),
                Some(&app.admin_token()),
            )
            .await;
        assert_eq!(status, 400, "{body}");
    }
);

both_dbs!(
    records_past_the_retention_are_pruned_on_the_clock,
    [("AUDIT_RETENTION_DAYS", "30")],
    |app| async move {
        a_tenant(&app, "old").await;
        let written = trail(&app, json!({})).await.len();
        assert!(written >= 2, "{written}");

        let soon = Sweeper::at(&app, &[("AUDIT_RETENTION_DAYS", "30")], 29 * 86_400).await;
        assert_eq!(soon.services.audit_trail().prune().await.unwrap(), 0);
        soon.close().await;
        let forever = Sweeper::at(&app, &[("AUDIT_RETENTION_DAYS", "0")], 400 * 86_400).await;
        assert_eq!(forever.services.audit_trail().prune().await.unwrap(), 0);
        forever.close().await;
        assert_eq!(trail(&app, json!({})).await.len(), written);

        let later = Sweeper::at(&app, &[("AUDIT_RETENTION_DAYS", "30")], 31 * 86_400).await;
        assert_eq!(
            later.services.audit_trail().prune().await.unwrap(),
            written as u64
        );
        later.close().await;
        assert!(trail(&app, json!({})).await.is_empty());
    }
);

both_dbs!(
    a_passed_deadline_is_the_systems_move,
    [("PROVISIONING_TIMEOUT", "60000")],
    |app| async move {
        let t = a_tenant(&app, "late").await;
        assert_eq!(provision(&app, &t, &subscription("BASIC")).await.0, 204);
        wait_for_events(&app, 1).await;
        let sweeper = Sweeper::at(&app, &[("PROVISIONING_TIMEOUT", "60000")], 61).await;
        assert_eq!(sweeper.fail_overdue().await, 1);
        sweeper.close().await;
        let failed = the_record(&app, "Tenant", &t, "provisioning-failed").await;
        assert_eq!(failed["actorKind"], "system", "{failed}");
        assert_eq!(failed["actorId"], app.config.system_user_id.as_str());
        assert_eq!(
            (&failed["before"]["status"], &failed["after"]["status"]),
            (&json!(2), &json!(3))
        );
    }
);
