//! Provisioning over real HTTP, on SQLite and PostgreSQL: `POST /tenants/{id}/provision` writes
//! the `TENANT_PROVISIONING` event (read back from the embedded jsonl sink), a pipeline's signed
//! result on `POST /webhook` makes the tenant ACTIVE with its resources and a welcome mail, or
//! PROVISIONFAILED with the reason, readable on `GET /tenants/{id}/provisioning`; every refusal
//! (401, 404, 409, 400/422) writes nothing; racing provision calls move a tenant once; an
//! operation past its deadline fails as "timed out".

mod common;
mod lifecycle_support;
mod rest_support;

use std::time::{Duration, Instant};

use common::*;
use lifecycle_support::*;
use rest_support::{a_tenant, expect_error};
use tms::domain::signature;
use uuid::Uuid;

both_dbs!(
    provisioning_ends_active_with_resources_and_a_welcome,
    |app| async move {
        let tenant = a_tenant(&app, "acme").await;
        let (status, body) = provision(&app, &tenant, &subscription("premium")).await;
        assert_eq!(status, 204, "{body}");
        assert_eq!(status_of(&app, &tenant).await, 2, "PROVISIONING");
        let state = state_of(&app, &tenant).await;
        assert_eq!(state["operation"], "provision");
        assert_eq!(state["isolation"], "silo", "PREMIUM, any case, is silo");
        assert_eq!(state["pipeline"], "siloed");
        assert_eq!(state["attempts"], 1);
        assert_eq!(state["subscription"]["id"], "sub-1");
        assert_eq!(state["reason"], Value::Null);

        let event = wait_for_events(&app, 1).await.remove(0);
        assert_eq!(event["type"], "TENANT_PROVISIONING");
        assert!(Uuid::parse_str(event["id"].as_str().unwrap()).is_ok());
        assert!(event["occurredAt"].is_string());
        assert_eq!(event["tenant"]["id"], tenant);
        assert_eq!(event["tenant"]["contacts"][0]["email"], "ada@acme.io");
        assert_eq!(event["subscription"], subscription("premium"));
        assert_eq!(event["pipeline"], "siloed");
        assert_eq!(event["isolation"], "silo");
        let secret = event["secret"].as_str().unwrap();
        assert_eq!(secret.len(), 32);
        assert!(Uuid::parse_str(event["context"].as_str().unwrap()).is_ok());

        let mails_before = mails(&app).await;
        let ok = report(
            &event,
            json!({"status": 1, "appPlaneUrl": "https://acme.app.example",
               "resources": [
                   {"type": "database", "externalIdentifier": "db-acme",
                    "metadata": {"host": "db.internal", "port": 5432}},
                   {"metadata": {"bucket": "acme-files"}}]}),
        );
        let response = send(&app, &ok).await;
        assert_eq!(response.status, 204, "{}", response.text);
        assert_eq!(status_of(&app, &tenant).await, 0, "ACTIVE");
        let state = state_of(&app, &tenant).await;
        assert!(state["finishedAt"].is_string());
        assert_eq!(state["reason"], Value::Null);
        let (_, listed) = app
            .get(
                &format!("/tenants/{tenant}?filter[include][0]=resources"),
                Some(&app.admin_token()),
            )
            .await;
        let mut stored: Vec<(String, String)> = listed["resources"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                (
                    r["externalIdentifier"].as_str().unwrap().to_string(),
                    r["type"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        stored.sort();
        assert_eq!(
            stored,
            [
                ("acme-files".to_string(), "bucket".to_string()),
                ("db-acme".to_string(), "database".to_string())
            ]
        );

        // The welcome mail reaches the primary contact with the app plane's address.
        let deadline = Instant::now() + PATIENCE;
        while mails(&app).await <= mails_before {
            assert!(Instant::now() < deadline, "no welcome mail");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let outbox = app.data_dir.join("outbox");
        let welcome = std::fs::read_dir(&outbox)
            .unwrap()
            .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap())
            .find(|m| m.contains("is provisioned"))
            .expect("the welcome mail");
        assert!(welcome.contains("To: ada@acme.io"), "{welcome}");
        assert!(welcome.contains("https://acme.app.example"), "{welcome}");

        // The same report again: refused (the result is taken once), nothing changes.
        let replay = send(&app, &ok).await;
        replay.assert_error(401, "UnauthorizedError");
        assert_eq!(status_of(&app, &tenant).await, 0);
    }
);

both_dbs!(
    a_failed_provisioning_keeps_its_reason_and_can_be_retried,
    |app| async move {
        let tenant = a_tenant(&app, "beta").await;
        let (status, _) = provision(&app, &tenant, &subscription("STANDARD")).await;
        assert_eq!(status, 204);
        let event = wait_for_events(&app, 1).await.remove(0);
        assert_eq!(event["isolation"], "pooled");
        assert_eq!(event["pipeline"], "pooled");
        let failed = report(
            &event,
            json!({"status": 0, "error": "quota exceeded in eu-west-1"}),
        );
        let response = send(&app, &failed).await;
        assert_eq!(response.status, 204, "{}", response.text);
        assert_eq!(status_of(&app, &tenant).await, 3, "PROVISIONFAILED");
        assert_eq!(
            state_of(&app, &tenant).await["reason"],
            "quota exceeded in eu-west-1"
        );

        // Provisioning again is the retry: a new secret, the attempt counted, the reason cleared.
        let (status, body) = provision(&app, &tenant, &subscription("STANDARD")).await;
        assert_eq!(status, 204, "{body}");
        let state = state_of(&app, &tenant).await;
        assert_eq!(
            (state["attempts"].as_i64(), &state["reason"]),
            (Some(2), &Value::Null)
        );
        let retry = wait_for_events(&app, 2).await.remove(1);
        assert_ne!(retry["secret"], event["secret"]);
        // The first attempt's secret no longer signs anything.
        let stale = report(&event, json!({"status": 1}));
        send(&app, &stale)
            .await
            .assert_error(401, "UnauthorizedError");
        let ok = report(&retry, json!({"status": 1, "resources": []}));
        assert_eq!(send(&app, &ok).await.status, 204);
        assert_eq!(status_of(&app, &tenant).await, 0);
    }
);

both_dbs!(
    refused_webhooks_are_401_and_change_nothing,
    [("WEBHOOK_API_MAX_ATTEMPTS", "1000")],
    |app| async move {
        let tenant = a_tenant(&app, "gamma").await;
        provision(&app, &tenant, &subscription("BASIC")).await;
        let event = wait_for_events(&app, 1).await.remove(0);
        let good = report(&event, json!({"status": 1}));
        let wrong_secret = {
            let mut other = event.clone();
            other["secret"] = json!("0123456789abcdef0123456789abcdef");
            report(&other, json!({"status": 1}))
        };
        let wrong_context = {
            let mut other = event.clone();
            other["context"] = json!(Uuid::new_v4().to_string());
            report(&other, json!({"status": 1}))
        };
        let unknown = {
            let mut other = event.clone();
            other["tenant"]["id"] = json!(Uuid::new_v4().to_string());
            report(&other, json!({"status": 1}))
        };
        let not_hex = "zz".repeat(32);
        let another_body = good.body.replace("\"status\":1", "\"status\":0");
        let old = report_at(&event, json!({"status": 1}), now_ms() - 60_000);
        let future = report_at(&event, json!({"status": 1}), now_ms() + 60_000);
        let cases: Vec<(&str, &str, Option<&str>, Option<&str>)> = vec![
            ("no signature", &good.body, None, Some(&good.timestamp)),
            ("no timestamp", &good.body, Some(&good.signature), None),
            (
                "a short signature",
                &good.body,
                Some(&good.signature[..40]),
                Some(&good.timestamp),
            ),
            (
                "a signature that is not hex",
                &good.body,
                Some(&not_hex),
                Some(&good.timestamp),
            ),
            (
                "a timestamp that is not a number",
                &good.body,
                Some(&good.signature),
                Some("soon"),
            ),
            (
                "a timestamp a minute old",
                &old.body,
                Some(&old.signature),
                Some(&old.timestamp),
            ),
            (
                "a timestamp a minute ahead",
                &future.body,
                Some(&future.signature),
                Some(&future.timestamp),
            ),
            (
                "an unknown initiator",
                &unknown.body,
                Some(&unknown.signature),
                Some(&unknown.timestamp),
            ),
            (
                "a wrong secret",
                &wrong_secret.body,
                Some(&wrong_secret.signature),
                Some(&wrong_secret.timestamp),
            ),
            (
                "a wrong context",
                &wrong_context.body,
                Some(&wrong_context.signature),
                Some(&wrong_context.timestamp),
            ),
            (
                "another body",
                &another_body,
                Some(&good.signature),
                Some(&good.timestamp),
            ),
        ];
        for (case, body, signature, timestamp) in cases {
            let response = post_webhook(&app, body, signature, timestamp).await;
            assert_eq!(response.status, 401, "{case}: {}", response.text);
            response.assert_error(401, "UnauthorizedError");
        }
        // A body that is not JSON is 400; one of another shape (correctly signed) is 422.
        let response = post_webhook(
            &app,
            "{not json",
            Some(&good.signature),
            Some(&good.timestamp),
        )
        .await;
        response.assert_error(400, "SyntaxError");
        for (data, what) in [
            (json!({"status": 5}), "a status other than 0 or 1"),
            (
                json!({"status": 1, "resources": [{"type": "db"}]}),
                "a resource without metadata",
            ),
        ] {
            let bad = report(&event, data);
            let response = send(&app, &bad).await;
            assert_eq!(response.status, 422, "{what}: {}", response.text);
        }
        let wrong_type = {
            let body =
                json!({"initiatorId": event["tenant"]["id"], "type": 4, "data": {"status": 1}})
                    .to_string();
            let ts = now_ms().to_string();
            let sig = signature::sign(
                event["secret"].as_str().unwrap().as_bytes(),
                &[
                    body.as_bytes(),
                    event["context"].as_str().unwrap().as_bytes(),
                    ts.as_bytes(),
                ],
            );
            post_webhook(&app, &body, Some(&sig), Some(&ts)).await
        };
        wrong_type.assert_error(422, "UnprocessableEntityError");
        assert_eq!(
            wrong_type.json()["error"]["message"],
            "Invalid type of webhook"
        );
        assert_eq!(status_of(&app, &tenant).await, 2, "still PROVISIONING");

        // The good one still works afterwards; then the tenant is ACTIVE and nothing more is taken.
        assert_eq!(
            send(&app, &report(&event, json!({"status": 1})))
                .await
                .status,
            204
        );
        assert_eq!(status_of(&app, &tenant).await, 0);
        let late = report(&event, json!({"status": 0}));
        send(&app, &late)
            .await
            .assert_error(401, "UnauthorizedError");
    }
);

both_dbs!(refused_provision_calls_change_nothing, |app| async move {
    let tenant = a_tenant(&app, "delta").await;
    let (status, body) = provision(&app, &Uuid::new_v4().to_string(), &subscription("BASIC")).await;
    expect_error(status, &body, 404, "NotFoundError", "an unknown tenant");
    let (status, body) = provision(&app, "not-a-uuid", &subscription("BASIC")).await;
    expect_error(status, &body, 404, "NotFoundError", "a malformed id");
    let (status, body) = provision(&app, &tenant, &json!({"plan": {"tier": "BASIC"}})).await;
    expect_error(status, &body, 400, "BadRequestError", "no subscription id");
    assert_eq!(body["error"]["message"], "Subscription ID is required");
    let (status, body) = provision(&app, &tenant, &json!({"id": "s", "plan": {"name": "x"}})).await;
    expect_error(status, &body, 422, "UnprocessableEntityError", "no tier");
    let (status, body) = provision(&app, &tenant, &json!({"id": "s"})).await;
    expect_error(status, &body, 422, "UnprocessableEntityError", "no plan");
    let response = app
        .raw(
            Method::POST,
            &format!("/tenants/{tenant}/provision"),
            None,
            &subscription("BASIC").to_string(),
            Some("application/json"),
        )
        .await;
    response.assert_error(401, "UnauthorizedError");
    let (status, body) = app
        .post(
            &format!("/tenants/{tenant}/provision"),
            Some(&app.token(&["10207"])),
            &subscription("BASIC"),
        )
        .await;
    expect_error(
        status,
        &body,
        403,
        "ForbiddenError",
        "without ProvisionTenant",
    );
    assert_eq!(status_of(&app, &tenant).await, 1, "still PENDINGPROVISION");
    assert_eq!(state_of(&app, &tenant).await["operation"], Value::Null);

    // Provisioning while provisioning, or once active: 409 naming the states.
    assert_eq!(
        provision(&app, &tenant, &subscription("BASIC")).await.0,
        204
    );
    let (status, body) = provision(&app, &tenant, &subscription("BASIC")).await;
    expect_error(status, &body, 409, "ConflictError", "provisioning twice");
    assert_eq!(
        body["error"]["message"],
        "Tenant is PROVISIONING (2); it cannot move to PROVISIONING (2)"
    );
    let event = wait_for_events(&app, 1).await.remove(0);
    assert_eq!(
        send(&app, &report(&event, json!({"status": 1})))
            .await
            .status,
        204
    );
    let (status, body) = provision(&app, &tenant, &subscription("BASIC")).await;
    expect_error(
        status,
        &body,
        409,
        "ConflictError",
        "provisioning an active tenant",
    );
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(events(&app).len(), 1, "the refused calls wrote no event");
});

both_dbs!(
    racing_provision_calls_move_the_tenant_once,
    |app| async move {
        let tenant = a_tenant(&app, "race").await;
        let token = app.admin_token();
        let path = format!("/tenants/{tenant}/provision");
        let body = subscription("BASIC");
        let calls = (0..50).map(|_| app.post(&path, Some(&token), &body));
        let statuses: Vec<u16> = futures_util::future::join_all(calls)
            .await
            .into_iter()
            .map(|(s, _)| s.as_u16())
            .collect();
        assert_eq!(
            statuses.iter().filter(|s| **s == 204).count(),
            1,
            "{statuses:?}"
        );
        assert_eq!(
            statuses.iter().filter(|s| **s == 409).count(),
            49,
            "{statuses:?}"
        );
        wait_for_events(&app, 1).await;
        tokio::time::sleep(Duration::from_millis(700)).await;
        assert_eq!(events(&app).len(), 1, "one event");
        assert_eq!(state_of(&app, &tenant).await["attempts"], 1);
    }
);

both_dbs!(
    a_lead_token_provisions_only_its_own_tenant,
    [("LEAD_KEY_IN_RESPONSE", "true")],
    |app| async move {
        let other = a_tenant(&app, "other").await;
        let (status, lead) = app
        .post(
            "/leads",
            None,
            &json!({"firstName": "Lea", "lastName": "Lee", "email": "lea@own.io", "companyName": "Own"}),
        )
        .await;
        assert_eq!(status, 200, "{lead}");
        let id = lead["id"].as_str().unwrap();
        let (_, verified) = app
            .request(
                Method::POST,
                &format!("/leads/{id}/verify"),
                Some(lead["key"].as_str().unwrap()),
                None,
            )
            .await;
        let token = verified["token"].as_str().unwrap().to_string();
        let (status, own) = app
            .post(
                &format!("/leads/{id}/tenants"),
                Some(&token),
                &json!({"key": "own", "domains": ["own.io"]}),
            )
            .await;
        assert_eq!(status, 200, "{own}");
        let own = own["id"].as_str().unwrap();
        let (status, body) = app
            .post(
                &format!("/tenants/{other}/provision"),
                Some(&token),
                &subscription("BASIC"),
            )
            .await;
        expect_error(status, &body, 404, "NotFoundError", "another tenant");
        assert_eq!(status_of(&app, &other).await, 1);
        let (status, body) = app
            .post(
                &format!("/tenants/{own}/provision"),
                Some(&token),
                &subscription("BASIC"),
            )
            .await;
        assert_eq!(status, 204, "{body}");
        assert_eq!(status_of(&app, own).await, 2);

        // It may watch its own provisioning, and no other tenant's.
        let (status, state) = app
            .get(&format!("/tenants/{own}/provisioning"), Some(&token))
            .await;
        assert_eq!(status, 200, "{state}");
        assert_eq!(state["statusName"], "PROVISIONING");
        let (status, body) = app
            .get(&format!("/tenants/{other}/provisioning"), Some(&token))
            .await;
        expect_error(status, &body, 404, "NotFoundError", "another tenant");
        // A token with neither ViewTenant nor ProvisionTenant may not.
        let (status, body) = app
            .get(
                &format!("/tenants/{own}/provisioning"),
                Some(&app.token(&["10203"])),
            )
            .await;
        expect_error(status, &body, 403, "ForbiddenError", "NotAllowedAccess");
    }
);

/// An operation past its deadline fails as "timed out": the tenant is PROVISIONFAILED with that
/// reason, and the pipeline's late report is refused.
#[tokio::test]
async fn a_provisioning_past_its_deadline_times_out() {
    for kind in [Db::Sqlite, Db::Postgres] {
        let test = "a_provisioning_past_its_deadline_times_out";
        if !db_available(kind, test) {
            continue;
        }
        let app = TestApp::spawn_with(kind, &[("PROVISIONING_TIMEOUT", "60000")]).await;
        let tenant = a_tenant(&app, "slow").await;
        assert_eq!(
            provision(&app, &tenant, &subscription("BASIC")).await.0,
            204
        );
        let event = wait_for_events(&app, 1).await.remove(0);

        // The sweeper of a second instance whose clock is past the deadline.
        let sweeper = Sweeper::at(&app, &[("PROVISIONING_TIMEOUT", "60000")], 61).await;
        assert_eq!(sweeper.fail_overdue().await, 1);
        assert_eq!(sweeper.fail_overdue().await, 0, "once");
        assert_eq!(status_of(&app, &tenant).await, 3);
        assert_eq!(state_of(&app, &tenant).await["reason"], "timed out");
        send(&app, &report(&event, json!({"status": 1})))
            .await
            .assert_error(401, "UnauthorizedError");
        sweeper.close().await;
    }
}
