//! Offboarding and suspension over real HTTP, on SQLite and PostgreSQL:
//! `POST /tenants/{id}/deprovision` writes `TENANT_DEPROVISIONING` with a fresh secret and the
//! pipeline the tenant was provisioned with, and the signed result makes it INACTIVE (resources
//! retired) or takes it back where it was with the reason; `suspend` / `reactivate` move it
//! between ACTIVE and SUSPENDED with their events. A retried call answers the same and writes
//! nothing, racing calls write one event, illegal moves are 409, and every refusal writes nothing.

mod common;
mod lifecycle_support;
mod rest_support;

use common::*;
use lifecycle_support::*;
use rest_support::{a_tenant, expect_error};

/// A 409 whose message starts with `message`.
#[track_caller]
fn expect_conflict(status: StatusCode, body: &Value, message: &str) {
    expect_error(status, body, 409, "ConflictError", message);
    let said = body["error"]["message"].as_str().unwrap_or_default();
    assert!(
        said.starts_with(message),
        "{said:?} does not start with {message:?}"
    );
}

/// A tenant provisioned on a free plan of `tier` and made ACTIVE with two resources.
async fn active_tenant(app: &TestApp, key: &str, tier: &str) -> String {
    active_tenant_on(app, key, &subscription(tier)).await
}

async fn call(app: &TestApp, tenant: &str, operation: &str) -> (StatusCode, Value) {
    app.post(
        &format!("/tenants/{tenant}/{operation}"),
        Some(&app.admin_token()),
        &json!({}),
    )
    .await
}

async fn resources(app: &TestApp, tenant: &str) -> Vec<Value> {
    let (_, row) = app
        .get(
            &format!("/tenants/{tenant}?filter[include][0]=resources"),
            Some(&app.admin_token()),
        )
        .await;
    row["resources"].as_array().unwrap().clone()
}

async fn invoices_of(app: &TestApp, tenant: &str) -> i64 {
    let path = format!("/invoices/count?where[tenantId]={tenant}");
    let (status, body) = app.get(&path, Some(&app.admin_token())).await;
    assert_eq!(status, 200, "{body}");
    body["count"].as_i64().unwrap()
}

/// Lets the relay deliver anything it would, then returns the number of events.
async fn settled_events(app: &TestApp) -> usize {
    tokio::time::sleep(std::time::Duration::from_millis(700)).await;
    events(app).len()
}

both_dbs!(
    offboarding_ends_inactive_and_retires_resources,
    |app| async move {
        let tenant = active_tenant(&app, "acme", "PREMIUM").await;
        assert_eq!(resources(&app, &tenant).await.len(), 2);
        let provisioned = wait_for_events(&app, 1).await.remove(0);

        let (status, body) = call(&app, &tenant, "deprovision").await;
        assert_eq!(status, 204, "{body}");
        assert_eq!(status_of(&app, &tenant).await, 4, "DEPROVISIONING");
        let event = wait_for_events(&app, 2).await.remove(1);
        assert_eq!(event["type"], "TENANT_DEPROVISIONING");
        assert_eq!(event["tenant"]["id"], tenant);
        assert_eq!(event["tenant"]["status"], 4);
        assert_eq!(
            event["pipeline"], "siloed",
            "the pipeline that provisioned it"
        );
        assert_eq!(
            (&event["tier"], &event["isolation"]),
            (&json!("PREMIUM"), &json!("silo"))
        );
        assert_eq!(event["subscription"], subscription("PREMIUM"));
        assert_eq!(event["secret"].as_str().unwrap().len(), 32);
        assert_ne!(event["secret"], provisioned["secret"], "a fresh secret");
        let state = state_of(&app, &tenant).await;
        assert_eq!(
            (&state["operation"], &state["attempts"]),
            (&json!("deprovision"), &json!(1))
        );
        assert_eq!(state["finishedAt"], Value::Null);

        // A retry answers the same and writes nothing.
        let (status, _) = call(&app, &tenant, "deprovision").await;
        assert_eq!(status, 204);
        assert_eq!(settled_events(&app).await, 2, "no second event");

        // The provisioning's secret no longer signs anything.
        send(&app, &report(&provisioned, json!({"status": 1})))
            .await
            .assert_error(401, "UnauthorizedError");

        let done = report(&event, json!({"status": 1}));
        let response = send(&app, &done).await;
        assert_eq!(response.status, 204, "{}", response.text);
        assert_eq!(status_of(&app, &tenant).await, 5, "INACTIVE");
        assert!(
            resources(&app, &tenant).await.is_empty(),
            "resources retired"
        );
        let state = state_of(&app, &tenant).await;
        assert!(state["finishedAt"].is_string());
        assert_eq!(state["reason"], Value::Null);
        send(&app, &done)
            .await
            .assert_error(401, "UnauthorizedError");

        // INACTIVE is final: offboarding again is a no-op; nothing else moves it.
        assert_eq!(call(&app, &tenant, "deprovision").await.0, 204);
        for operation in ["suspend", "reactivate"] {
            let (status, body) = call(&app, &tenant, operation).await;
            expect_conflict(status, &body, "Tenant is INACTIVE (5)");
        }
        let (status, body) = provision(&app, &tenant, &subscription("PREMIUM")).await;
        expect_conflict(status, &body, "Tenant is INACTIVE (5)");
        assert_eq!(settled_events(&app).await, 2);
    }
);

both_dbs!(
    a_failed_offboarding_goes_back_where_it_was,
    |app| async move {
        let tenant = active_tenant(&app, "globex", "STANDARD").await;
        assert_eq!(call(&app, &tenant, "suspend").await.0, 204);
        assert_eq!(call(&app, &tenant, "deprovision").await.0, 204);
        let event = wait_for_events(&app, 3).await.remove(2);
        assert_eq!(event["type"], "TENANT_DEPROVISIONING");
        assert_eq!(event["pipeline"], "pooled");

        let failed = report(&event, json!({"status": 0, "error": "bucket not empty"}));
        let response = send(&app, &failed).await;
        assert_eq!(response.status, 204, "{}", response.text);
        assert_eq!(status_of(&app, &tenant).await, 6, "back to SUSPENDED");
        assert_eq!(state_of(&app, &tenant).await["reason"], "bucket not empty");
        assert_eq!(resources(&app, &tenant).await.len(), 2, "resources kept");

        // Offboarding again is the retry: counted, with a new secret.
        assert_eq!(call(&app, &tenant, "deprovision").await.0, 204);
        let retry = wait_for_events(&app, 4).await.remove(3);
        assert_ne!(retry["secret"], event["secret"]);
        let state = state_of(&app, &tenant).await;
        assert_eq!(
            (&state["attempts"], &state["reason"]),
            (&json!(2), &Value::Null)
        );
    }
);

both_dbs!(suspension_and_reactivation, |app| async move {
    let tenant = active_tenant(&app, "initech", "BASIC").await;
    let token = app.admin_token();
    let (status, body) = app
        .post(
            &format!("/tenants/{tenant}/suspend"),
            Some(&token),
            &json!({"reason": "invoice 42 unpaid"}),
        )
        .await;
    assert_eq!(status, 204, "{body}");
    assert_eq!(status_of(&app, &tenant).await, 6, "SUSPENDED");
    let event = wait_for_events(&app, 2).await.remove(1);
    assert_eq!(event["type"], "TENANT_SUSPENDED");
    assert_eq!(event["reason"], "invoice 42 unpaid");
    assert_eq!(event["tenant"]["status"], 6);
    assert!(event.get("secret").is_none(), "nothing to sign");

    // No body at all is fine too, and a retry writes nothing.
    let response = app
        .raw(
            Method::POST,
            &format!("/tenants/{tenant}/suspend"),
            Some(&token),
            "",
            None,
        )
        .await;
    assert_eq!(response.status, 204, "{}", response.text);
    assert_eq!(settled_events(&app).await, 2);

    assert_eq!(call(&app, &tenant, "reactivate").await.0, 204);
    assert_eq!(status_of(&app, &tenant).await, 0, "ACTIVE");
    let event = wait_for_events(&app, 3).await.remove(2);
    assert_eq!(event["type"], "TENANT_REACTIVATED");
    assert_eq!(call(&app, &tenant, "reactivate").await.0, 204);
    assert_eq!(settled_events(&app).await, 3);

    // Events of one tenant arrive in the order they were written.
    let kinds: Vec<Value> = events(&app).iter().map(|e| e["type"].clone()).collect();
    assert_eq!(
        kinds,
        [
            "TENANT_PROVISIONING",
            "TENANT_SUSPENDED",
            "TENANT_REACTIVATED"
        ]
    );
});

both_dbs!(illegal_moves_and_refusals_write_nothing, |app| async move {
    let pending = a_tenant(&app, "pending").await;
    let token = app.admin_token();
    for (operation, wanted) in [
        ("deprovision", "DEPROVISIONING (4)"),
        ("suspend", "SUSPENDED (6)"),
        ("reactivate", "ACTIVE (0)"),
    ] {
        let (status, body) = call(&app, &pending, operation).await;
        let message = format!("Tenant is PENDINGPROVISION (1); it cannot move to {wanted}");
        expect_conflict(status, &body, &message);
    }
    let (status, body) = provision(&app, &pending, &subscription("BASIC")).await;
    assert_eq!(status, 204, "{body}");
    let (status, body) = call(&app, &pending, "deprovision").await;
    expect_conflict(status, &body, "Tenant is PROVISIONING (2)");

    let unknown = uuid::Uuid::new_v4();
    for operation in ["deprovision", "suspend", "reactivate"] {
        let (status, body) = call(&app, &unknown.to_string(), operation).await;
        expect_error(status, &body, 404, "NotFoundError", "EntityNotFound");
        let path = format!("/tenants/{pending}/{operation}");
        let (status, body) = app.post(&path, None, &json!({})).await;
        expect_error(status, &body, 401, "UnauthorizedError", "");
        // A lead's token may provision but not offboard or suspend.
        let (status, body) = app
            .post(&path, Some(&app.token(&["10216", "10207"])), &json!({}))
            .await;
        expect_error(status, &body, 403, "ForbiddenError", "NotAllowedAccess");
        let (status, _) = app.get(&path, Some(&token)).await;
        assert_eq!(status, 405);
    }

    let active = active_tenant(&app, "active", "BASIC").await;
    let path = format!("/tenants/{active}/suspend");
    let (status, body) = app.post(&path, Some(&token), &json!({"why": "x"})).await;
    expect_error(status, &body, 422, "UnprocessableEntityError", "");
    let (status, body) = app.post(&path, Some(&token), &json!({"reason": 7})).await;
    expect_error(status, &body, 422, "UnprocessableEntityError", "");
    let response = app
        .raw(
            Method::POST,
            &path,
            Some(&token),
            "{not json",
            Some("application/json"),
        )
        .await;
    response.assert_error(400, "SyntaxError");
    let response = app
        .raw(Method::POST, &path, Some(&token), "reason=x", None)
        .await;
    response.assert_error(415, "UnsupportedMediaTypeError");
    assert_eq!(status_of(&app, &active).await, 0, "still ACTIVE");
    assert_eq!(settled_events(&app).await, 2, "the two provisionings only");
});

both_dbs!(racing_calls_move_a_tenant_once, |app| async move {
    let tenant = active_tenant(&app, "race", "BASIC").await;
    for (operation, status, kind) in [
        ("suspend", 6, "TENANT_SUSPENDED"),
        ("reactivate", 0, "TENANT_REACTIVATED"),
        ("deprovision", 4, "TENANT_DEPROVISIONING"),
    ] {
        let before = settled_events(&app).await;
        let calls = (0..20).map(|_| call(&app, &tenant, operation));
        for (answer, body) in futures_util::future::join_all(calls).await {
            assert_eq!(answer, 204, "{operation}: {body}");
        }
        assert_eq!(status_of(&app, &tenant).await, status);
        assert_eq!(
            settled_events(&app).await,
            before + 1,
            "{operation}: one event"
        );
        assert_eq!(events(&app).last().unwrap()["type"], kind);
    }
});

/// An offboarding past its deadline fails as "timed out" and goes back where it was.
#[tokio::test]
async fn an_offboarding_past_its_deadline_goes_back() {
    for kind in [Db::Sqlite, Db::Postgres] {
        let test = "an_offboarding_past_its_deadline_goes_back";
        if !db_available(kind, test) {
            continue;
        }
        let settings = [("PROVISIONING_TIMEOUT", "60000")];
        let app = TestApp::spawn_with(kind, &settings).await;
        let tenant = active_tenant(&app, "slow", "BASIC").await;
        assert_eq!(call(&app, &tenant, "deprovision").await.0, 204);
        let event = wait_for_events(&app, 2).await.remove(1);
        let sweeper = Sweeper::at(&app, &settings, 61).await;
        assert_eq!(sweeper.fail_overdue().await, 1);
        assert_eq!(status_of(&app, &tenant).await, 0, "back to ACTIVE");
        assert_eq!(state_of(&app, &tenant).await["reason"], "timed out");
        send(&app, &report(&event, json!({"status": 1})))
            .await
            .assert_error(401, "UnauthorizedError");
        sweeper.close().await;
    }
}

/// Every event type, as written, matches its schema in `docs/events.schema.json`; an event that
/// lacks what its type requires does not.
#[tokio::test]
async fn every_event_matches_the_published_schema() {
    let test = "every_event_matches_the_published_schema";
    let app = TestApp::spawn(Db::Sqlite).await;
    let mut body = rest_support::onboarding("addr", "With address", &["addr.io"], "ada");
    body["country"] = json!("DE");
    body["city"] = json!("Berlin");
    let with_address = rest_support::onboard(&app, &app.admin_token(), body).await;
    let with_address = with_address["id"].as_str().unwrap().to_string();
    let (status, body) = provision(&app, &with_address, &subscription("PREMIUM")).await;
    assert_eq!(status, 204, "{body}");

    let tenant = active_tenant(&app, "every", "BASIC").await;
    let suspend = format!("/tenants/{tenant}/suspend");
    let token = app.admin_token();
    let (status, _) = app
        .post(&suspend, Some(&token), &json!({"reason": "unpaid"}))
        .await;
    assert_eq!(status, 204);
    assert_eq!(call(&app, &tenant, "reactivate").await.0, 204);
    assert_eq!(call(&app, &tenant, "suspend").await.0, 204);
    assert_eq!(call(&app, &tenant, "deprovision").await.0, 204);
    let written = wait_for_events(&app, 6).await;
    let mut kinds: Vec<&str> = written
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    kinds.sort_unstable();
    kinds.dedup();
    assert_eq!(
        kinds,
        [
            "TENANT_DEPROVISIONING",
            "TENANT_PROVISIONING",
            "TENANT_REACTIVATED",
            "TENANT_SUSPENDED"
        ]
    );
    assert!(
        written
            .iter()
            .any(|e| e["tenant"]["address"]["city"] == "Berlin")
    );

    let Some(problems) = schema_problems(test, &written) else {
        return;
    };
    assert!(problems.is_empty(), "{problems:#?}");

    // The check can fail: each event stripped of something its type requires.
    let broken: Vec<Value> = written
        .iter()
        .map(|e| {
            let mut e = e.clone();
            let kind = e["type"].as_str().unwrap().to_string();
            let object = e.as_object_mut().unwrap();
            match kind.as_str() {
                "TENANT_PROVISIONING" | "TENANT_DEPROVISIONING" => object.remove("secret"),
                "TENANT_SUSPENDED" => object.remove("reason"),
                _ => object.insert("occurredAt".into(), json!(17)),
            };
            e
        })
        .collect();
    let problems = schema_problems(test, &broken).unwrap();
    assert_eq!(problems.len(), broken.len(), "{problems:#?}");
}

/// What an operator's action on a tenant in one state answers: 204 and the state it leaves the
/// tenant in (with an event when it moved), or 409.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Answer {
    Moves(i64),
    Holds,
    Conflict,
}

// Every action from every state (the tenant put there by an operator's `PATCH`), as
// docs/lifecycle.md has it: nothing an operator asks for starts from PROVISIONING (2) or
// DEPROVISIONING (4), where a pipeline is at work.
both_dbs!(every_action_from_every_state, |app| async move {
    use Answer::*;
    let token = app.admin_token();
    // States 0..=6: ACTIVE, PENDINGPROVISION, PROVISIONING, PROVISIONFAILED, DEPROVISIONING,
    // INACTIVE, SUSPENDED.
    let table: [(&str, [Answer; 7]); 4] = [
        (
            "provision",
            [
                Conflict,
                Moves(2),
                Conflict,
                Moves(2),
                Conflict,
                Conflict,
                Conflict,
            ],
        ),
        (
            "deprovision",
            [
                Moves(4),
                Conflict,
                Conflict,
                Moves(4),
                Holds,
                Holds,
                Moves(4),
            ],
        ),
        (
            "suspend",
            [
                Moves(6),
                Conflict,
                Conflict,
                Conflict,
                Conflict,
                Conflict,
                Holds,
            ],
        ),
        (
            "reactivate",
            [
                Holds,
                Conflict,
                Conflict,
                Conflict,
                Conflict,
                Conflict,
                Moves(0),
            ],
        ),
    ];
    let mut moved = Vec::new();
    for (a, (action, answers)) in table.iter().enumerate() {
        for (from, answer) in answers.iter().enumerate() {
            let tenant = a_tenant(&app, &format!("t{a}s{from}")).await;
            let (status, body) = app
                .patch(
                    &format!("/tenants/{tenant}"),
                    Some(&token),
                    &json!({"status": from}),
                )
                .await;
            assert_eq!(status, 204, "{body}");
            let (status, body) = if *action == "provision" {
                provision(&app, &tenant, &subscription("BASIC")).await
            } else {
                call(&app, &tenant, action).await
            };
            let case = format!("{action} from {from}: {status} {body}");
            match answer {
                Moves(to) => {
                    assert_eq!(status, 204, "{case}");
                    assert_eq!(status_of(&app, &tenant).await, *to, "{case}");
                    moved.push(tenant);
                }
                Holds => {
                    assert_eq!(status, 204, "{case}");
                    assert_eq!(status_of(&app, &tenant).await, from as i64, "{case}");
                }
                Conflict => {
                    assert_eq!(status, 409, "{case}");
                    assert_eq!(body["error"]["name"], "ConflictError", "{case}");
                    assert_eq!(status_of(&app, &tenant).await, from as i64, "{case}");
                }
            }
        }
    }
    // One event for each tenant that moved, none for the others.
    assert_eq!(settled_events(&app).await, moved.len());
    let mut announced: Vec<String> = events(&app)
        .iter()
        .map(|e| e["tenant"]["id"].as_str().unwrap().to_string())
        .collect();
    announced.sort();
    moved.sort();
    assert_eq!(announced, moved);
});

// Reactivating a tenant its pipeline is provisioning is refused; the pipeline's result then
// makes it ACTIVE as it should, and nothing was announced or billed in between.
both_dbs!(
    an_operator_cannot_take_a_provisioning_tenant_from_its_pipeline,
    |app| async move {
        let tenant = a_tenant(&app, "busy").await;
        let paid = paid_subscription("BASIC", json!({"price": 10, "currency": "USD"}));
        let (status, body) = provision(&app, &tenant, &paid).await;
        assert_eq!(status, 204, "{body}");
        let event = wait_for_event_of(&app, &tenant, "TENANT_PROVISIONING").await;
        for action in ["reactivate", "suspend", "deprovision"] {
            let (status, body) = call(&app, &tenant, action).await;
            expect_conflict(status, &body, "Tenant is PROVISIONING (2)");
        }
        assert_eq!(invoices_of(&app, &tenant).await, 0, "not billed");
        assert_eq!(status_of(&app, &tenant).await, 2);

        let response = send(&app, &report(&event, json!({"status": 1}))).await;
        assert_eq!(response.status, 204, "{}", response.text);
        assert_eq!(status_of(&app, &tenant).await, 0);
        assert_eq!(
            invoices_of(&app, &tenant).await,
            1,
            "billed once, from ACTIVE"
        );
        let kinds: Vec<Value> = events(&app).iter().map(|e| e["type"].clone()).collect();
        assert_eq!(kinds, [json!("TENANT_PROVISIONING")]);
    }
);

// Neither reactivating nor suspending a tenant being offboarded, one after the other, takes it
// from its pipeline: both are refused and the offboarding result still ends it INACTIVE.
both_dbs!(
    an_operator_cannot_take_an_offboarding_tenant_from_its_pipeline,
    |app| async move {
        let tenant = active_tenant(&app, "leaving", "BASIC").await;
        let (status, body) = call(&app, &tenant, "deprovision").await;
        assert_eq!(status, 204, "{body}");
        let event = wait_for_event_of(&app, &tenant, "TENANT_DEPROVISIONING").await;
        for action in ["reactivate", "suspend", "reactivate", "provision"] {
            let (status, body) = if action == "provision" {
                provision(&app, &tenant, &subscription("BASIC")).await
            } else {
                call(&app, &tenant, action).await
            };
            expect_conflict(status, &body, "Tenant is DEPROVISIONING (4)");
        }
        assert_eq!(resources(&app, &tenant).await.len(), 2, "still there");

        let response = send(&app, &report(&event, json!({"status": 1}))).await;
        assert_eq!(response.status, 204, "{}", response.text);
        assert_eq!(status_of(&app, &tenant).await, 5, "INACTIVE");
        assert!(resources(&app, &tenant).await.is_empty(), "retired");
        assert_eq!(
            settled_events(&app).await,
            2,
            "provisioning and offboarding only"
        );
    }
);
