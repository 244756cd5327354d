//! Billing from the subscription over real HTTP and billing runs, on SQLite and PostgreSQL: the
//! first invoice when a tenant on a paid plan becomes ACTIVE, exactly one more per period as a
//! shared manual clock moves through three periods with two runs racing at every step, gap-free
//! numbers, overdue invoices announced once, suspension pausing billing and reactivation
//! resuming it with the next period, the optional suspension of tenants that do not pay, and
//! plans whose billing terms are refused before anything is written.

mod common;
mod lifecycle_support;
mod rest_support;

use std::time::Duration;

use common::*;
use lifecycle_support::*;

const DAY: Duration = Duration::from_secs(24 * 3600);

fn monthly(price: Value, currency: &str) -> Value {
    json!({"price": price, "currency": {"currencyCode": currency},
           "billingCycle": {"cycleName": "Monthly", "duration": 1, "durationUnit": "month"}})
}

/// The invoices of `tenant`, oldest period first.
async fn invoices_of(app: &TestApp, tenant: &str) -> Vec<Value> {
    let (status, rows) = app
        .get(
            &format!("/invoices?filter[where][tenantId]={tenant}&filter[order][0]=startDate%20ASC"),
            Some(&app.admin_token()),
        )
        .await;
    assert_eq!(status, 200, "{rows}");
    rows.as_array().unwrap().clone()
}

fn of_type<'a>(events: &'a [Value], kind: &str) -> Vec<&'a Value> {
    events.iter().filter(|e| e["type"] == kind).collect()
}

/// Lets the relay deliver what is in the outbox, then returns the events.
async fn settled(app: &TestApp) -> Vec<Value> {
    tokio::time::sleep(Duration::from_millis(700)).await;
    events(app)
}

/// Every event in the outbox, delivered or not (the server's relay, on the real clock, leaves
/// those written at a later time on a test clock for then).
async fn outbox_events(db: &tms::store::Db) -> Vec<Value> {
    db.conn()
        .raw_fetch(
            "SELECT payload FROM outbox WHERE topic = 'event' ORDER BY created_on",
            &[],
            false,
        )
        .await
        .unwrap()
        .iter()
        .map(|row| row.json("payload").unwrap())
        .collect()
}

fn instant(value: &Value) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::parse_from_rfc3339(value.as_str().unwrap())
        .unwrap()
        .with_timezone(&chrono::Utc)
}

both_dbs!(
    a_monthly_plan_is_billed_once_per_period_even_with_racing_runs,
    [("BILLING_INTERVAL", "0")],
    |app| async move {
        let subscription = paid_subscription("STANDARD", monthly(json!(49.99), "usd"));
        let tenant = active_tenant_on(&app, "acme", &subscription).await;

        // The first invoice comes with the activation.
        let first = invoices_of(&app, &tenant).await;
        assert_eq!(first.len(), 1, "{first:?}");
        let invoice = &first[0];
        assert_eq!(invoice["invoiceNumber"], "INV-000001");
        assert_eq!(invoice["amount"], json!(49.99));
        assert_eq!(invoice["currencyCode"], "USD");
        assert_eq!(invoice["status"], 0);
        let anchor = instant(&invoice["startDate"]);
        assert_eq!(
            instant(&invoice["endDate"]),
            anchor.checked_add_months(chrono::Months::new(1)).unwrap()
        );
        assert_eq!(
            instant(&invoice["dueDate"]),
            anchor + chrono::Duration::days(30),
            "due after BILLING_NET_DAYS"
        );
        let issued = wait_for_event_of(&app, &tenant, "INVOICE_ISSUED").await;
        assert_eq!(issued["invoice"]["id"], invoice["id"]);

        // Two billing runs, as two replicas on one clock, race at every step.
        let clock = tms::clock::Clock::manual(anchor + chrono::Duration::minutes(1));
        let one = Sweeper::on_clock(&app, &[], clock.clone()).await;
        let two = Sweeper::on_clock(&app, &[], clock.clone()).await;
        let (a, b) = tokio::join!(one.run_billing(), two.run_billing());
        assert_eq!(a.issued + b.issued, 0, "nothing is due yet");
        for period in 1..=3 {
            // 31 days, three times: one month start passed each time (no three months are
            // longer than 92 days), never two.
            clock.advance(31 * DAY);
            let (a, b) = tokio::join!(one.run_billing(), two.run_billing());
            assert_eq!(a.issued + b.issued, 1, "period {period}: {a:?} {b:?}");
            assert_eq!(
                a.overdue + b.overdue,
                1,
                "period {period}: the one before is overdue"
            );
            let (a, b) = tokio::join!(one.run_billing(), two.run_billing());
            assert_eq!((a.issued + b.issued, a.overdue + b.overdue), (0, 0));
        }

        let all = invoices_of(&app, &tenant).await;
        assert_eq!(all.len(), 4);
        for (k, invoice) in all.iter().enumerate() {
            let start = anchor
                .checked_add_months(chrono::Months::new(k as u32))
                .unwrap();
            assert_eq!(instant(&invoice["startDate"]), start, "period {k}");
            assert_eq!(invoice["invoiceNumber"], format!("INV-{:06}", k + 1));
            assert_eq!(invoice["amount"], json!(49.99));
        }
        let overdue: Vec<bool> = all.iter().map(|i| i["overdueAt"].is_string()).collect();
        assert_eq!(overdue, [true, true, true, false]);
        // Overdue invoices are found by a list filter.
        let (_, found) = app
            .get(
                &format!(
                    "/invoices/count?where[status]=0&where[dueDate][lt]={}",
                    tms::store::values::format_timestamp(&clock.now())
                ),
                Some(&app.admin_token()),
            )
            .await;
        assert_eq!(found["count"], 3);

        let seen = outbox_events(&one.db).await;
        assert_eq!(of_type(&seen, "INVOICE_ISSUED").len(), 4);
        assert_eq!(of_type(&seen, "INVOICE_OVERDUE").len(), 3);
        // The overdue mail is queued once per invoice.
        assert_eq!(overdue_mails(&one.db).await, 3);
        if let Some(problems) = schema_problems("billing", &seen) {
            assert!(problems.is_empty(), "{problems:#?}");
        }
        one.close().await;
        two.close().await;
    }
);

/// The overdue mails queued in the outbox.
async fn overdue_mails(db: &tms::store::Db) -> i64 {
    let sql = match db.backend() {
        tms::store::Backend::Postgres => {
            "SELECT COUNT(*) AS n FROM outbox WHERE topic = 'mail' AND payload::text LIKE '%is overdue%'"
        }
        tms::store::Backend::Sqlite => {
            "SELECT COUNT(*) AS n FROM outbox WHERE topic = 'mail' AND payload LIKE '%is overdue%'"
        }
    };
    db.conn().raw_fetch(sql, &[], false).await.unwrap()[0]
        .int("n")
        .unwrap()
}

both_dbs!(
    suspension_pauses_billing_and_reactivation_resumes_with_the_next_period,
    [("BILLING_INTERVAL", "0")],
    |app| async move {
        let subscription = paid_subscription("STANDARD", monthly(json!("1234.5"), "JPY"));
        let tenant = active_tenant_on(&app, "globex", &subscription).await;
        let first = invoices_of(&app, &tenant).await;
        assert_eq!(first[0]["amount"], json!(1235), "rounded to yen");
        let anchor = instant(&first[0]["startDate"]);
        let id = uuid::Uuid::parse_str(&tenant).unwrap();
        let system = tms::store::crud::Actor {
            id: "ops".into(),
            scope: tms::store::crud::Scope::All,
            who: tms::audit::Who::user("ops", "ops"),
        };

        let clock = tms::clock::Clock::manual(anchor + chrono::Duration::days(10));
        let ops = Sweeper::on_clock(&app, &[], clock.clone()).await;
        ops.lifecycle()
            .suspend(id, Some("paused"), &system)
            .await
            .unwrap();
        clock.advance(30 * DAY); // day 40: period 1 started while suspended
        assert_eq!(ops.run_billing().await.issued, 0);
        clock.advance(35 * DAY); // day 75: back, in the middle of period 2
        ops.lifecycle().reactivate(id, &system).await.unwrap();
        assert_eq!(
            ops.run_billing().await.issued,
            0,
            "period 2 began while suspended"
        );
        clock.advance(20 * DAY); // day 95: period 3 has begun
        assert_eq!(ops.run_billing().await.issued, 1);

        let all = invoices_of(&app, &tenant).await;
        let starts: Vec<_> = all.iter().map(|i| instant(&i["startDate"])).collect();
        assert_eq!(
            starts,
            [
                anchor,
                anchor.checked_add_months(chrono::Months::new(3)).unwrap()
            ]
        );

        // Offboarding pauses it for good.
        ops.lifecycle().deprovision(id, &system).await.unwrap();
        clock.advance(40 * DAY);
        assert_eq!(ops.run_billing().await.issued, 0);
        assert_eq!(invoices_of(&app, &tenant).await.len(), 2);
        ops.close().await;
    }
);

both_dbs!(
    tenants_that_leave_an_invoice_unpaid_are_suspended_when_configured,
    [("BILLING_INTERVAL", "0")],
    |app| async move {
        let subscription = paid_subscription("STANDARD", monthly(json!(10), "EUR"));
        let tenant = active_tenant_on(&app, "initech", &subscription).await;
        let invoice = invoices_of(&app, &tenant).await.remove(0);
        let due = instant(&invoice["dueDate"]);

        let clock = tms::clock::Clock::manual(due + chrono::Duration::days(3));
        let biller =
            Sweeper::on_clock(&app, &[("BILLING_SUSPEND_AFTER_DAYS", "5")], clock.clone()).await;
        let report = biller.run_billing().await;
        assert_eq!(
            (report.overdue, report.suspended),
            (1, 0),
            "3 days is not 5"
        );
        assert_eq!(status_of(&app, &tenant).await, 0);
        clock.advance(3 * DAY);
        let report = biller.run_billing().await;
        assert_eq!(report.suspended, 1);
        assert_eq!(status_of(&app, &tenant).await, 6, "SUSPENDED");
        let seen = outbox_events(&biller.db).await;
        let suspended = of_type(&seen, "TENANT_SUSPENDED");
        assert_eq!(suspended.len(), 1);
        let reason = suspended[0]["reason"].as_str().unwrap();
        assert!(reason.contains("INV-000001"), "{reason}");
        // Suspended tenants are not suspended again, and a paid invoice suspends nobody.
        assert_eq!(biller.run_billing().await.suspended, 0);
        biller.close().await;
    }
);

both_dbs!(a_plan_without_a_price_is_not_billed, |app| async move {
    let tenant = active_tenant_on(&app, "free", &subscription("BASIC")).await;
    assert!(invoices_of(&app, &tenant).await.is_empty());
    let later = Sweeper::at(&app, &[], 100 * 24 * 3600).await;
    assert_eq!(later.run_billing().await.issued, 0);
    later.close().await;
});

both_dbs!(
    billing_terms_are_checked_before_provisioning_starts,
    |app| async move {
        let tenant = rest_support::a_tenant(&app, "picky").await;
        for (billing, path) in [
            (json!({"price": -5}), "/plan/price"),
            (json!({"price": "ten"}), "/plan/price"),
            (json!({"price": 5, "currency": "XYZ"}), "/plan/currency"),
            (
                json!({"price": 5, "currency": {"currencyCode": "XAU"}}),
                "/plan/currency",
            ),
            (
                json!({"price": 5, "billingCycle": {"duration": 0, "durationUnit": "month"}}),
                "/plan/billingCycle/duration",
            ),
            (
                json!({"price": 5, "billingCycle": {"duration": 1, "durationUnit": "fortnight"}}),
                "/plan/billingCycle/durationUnit",
            ),
        ] {
            let (status, body) =
                provision(&app, &tenant, &paid_subscription("BASIC", billing.clone())).await;
            assert_eq!(status, 422, "{billing}: {body}");
            let paths: Vec<&str> = body["error"]["details"]
                .as_array()
                .unwrap()
                .iter()
                .map(|d| d["path"].as_str().unwrap())
                .collect();
            assert_eq!(paths, [path], "{billing}");
        }
        // A price is judged on the value written, whatever its spelling.
        for price in ["12.3450000000000000000000001", "1e-400", "1e400"] {
            let body = paid_subscription("BASIC", json!({"price": 0}))
                .to_string()
                .replace(r#""price":0"#, &format!(r#""price":{price}"#));
            assert!(body.contains(price), "{body}");
            let response = app
                .raw(
                    Method::POST,
                    &format!("/tenants/{tenant}/provision"),
                    Some(&app.admin_token()),
                    &body,
                    Some("application/json"),
                )
                .await;
            let body = response.json();
            assert_eq!(response.status, 422, "{price}: {body}");
            assert_eq!(
                body["error"]["details"][0]["path"], "/plan/price",
                "{price}"
            );
            assert_eq!(
                body["error"]["details"].as_array().unwrap().len(),
                1,
                "{body}"
            );
        }
        assert_eq!(status_of(&app, &tenant).await, 1, "still PENDINGPROVISION");
        assert!(settled(&app).await.is_empty(), "no event written");
    }
);

both_dbs!(
    the_billing_run_command_announces_overdue_invoices_once,
    |app| async move {
        let tenant = rest_support::a_tenant(&app, "late").await;
        let yesterday = chrono::Utc::now() - chrono::Duration::days(1);
        let day = |t: chrono::DateTime<chrono::Utc>| t.format("%Y-%m-%d").to_string();
        let invoice = rest_support::create(
            &app,
            &app.admin_token(),
            "/invoices",
            &json!({"startDate": day(yesterday - chrono::Duration::days(30)),
                    "endDate": day(yesterday), "amount": 12.5, "currencyCode": "USD",
                    "dueDate": day(yesterday), "status": 0, "tenantId": tenant}),
        )
        .await;
        let run = || {
            std::process::Command::new(env!("CARGO_BIN_EXE_tms"))
                .args(["billing", "run"])
                .env_clear()
                .envs(app.variables(&[("LOG_LEVEL", "warn")]))
                .output()
                .unwrap()
        };
        let first = run();
        assert!(first.status.success(), "{first:?}");
        assert_eq!(
            String::from_utf8_lossy(&first.stdout),
            "issued 0 invoice(s), announced 1 overdue, suspended 0 tenant(s)\n"
        );
        let again = run();
        assert!(
            String::from_utf8_lossy(&again.stdout).contains("announced 0 overdue"),
            "{again:?}"
        );
        let (_, row) = app
            .get(
                &format!("/invoices/{}", invoice["id"].as_str().unwrap()),
                Some(&app.admin_token()),
            )
            .await;
        assert!(row["overdueAt"].is_string(), "{row}");
        let overdue = wait_for_event_of(&app, &tenant, "INVOICE_OVERDUE").await;
        assert_eq!(overdue["invoice"]["id"], invoice["id"]);
    }
);

both_dbs!(
    a_tenant_set_to_another_status_directly_is_paused_by_the_run,
    [("BILLING_INTERVAL", "0")],
    |app| async move {
        let subscription = paid_subscription("STANDARD", monthly(json!(5), "GBP"));
        let tenant = active_tenant_on(&app, "hooli", &subscription).await;
        let anchor = instant(&invoices_of(&app, &tenant).await[0]["startDate"]);
        // An operator's override, past the lifecycle.
        rest_support::patch_ok(
            &app,
            &app.admin_token(),
            &format!("/tenants/{tenant}"),
            &json!({"status": 6}),
        )
        .await;
        let clock = tms::clock::Clock::manual(anchor + chrono::Duration::days(40));
        let biller = Sweeper::on_clock(&app, &[], clock.clone()).await;
        let due = || async {
            tms::store::invoices::due_accounts(&mut biller.db.conn(), clock.now(), 10)
                .await
                .unwrap()
        };
        assert_eq!(due().await.len(), 1, "period 1 has started");
        assert_eq!(biller.run_billing().await.issued, 0);
        assert!(due().await.is_empty(), "paused: no longer looked at");
        assert_eq!(invoices_of(&app, &tenant).await.len(), 1);
        biller.close().await;
    }
);

both_dbs!(
    a_period_begun_before_a_suspension_is_billed_with_it,
    |app| async move {
        let subscription = paid_subscription("STANDARD", monthly(json!(7), "USD"));
        let tenant = active_tenant_on(&app, "umbrella", &subscription).await;
        let anchor = instant(&invoices_of(&app, &tenant).await[0]["startDate"]);
        let id = uuid::Uuid::parse_str(&tenant).unwrap();
        let ops = tms::store::crud::Actor {
            id: "ops".into(),
            scope: tms::store::crud::Scope::All,
            who: tms::audit::Who::user("ops", "ops"),
        };
        // Period 1 began an hour ago and no run has billed it yet.
        let clock = tms::clock::Clock::manual(
            anchor.checked_add_months(chrono::Months::new(1)).unwrap() + chrono::Duration::hours(1),
        );
        let at = Sweeper::on_clock(&app, &[], clock.clone()).await;
        at.lifecycle().suspend(id, None, &ops).await.unwrap();
        assert_eq!(
            invoices_of(&app, &tenant).await.len(),
            2,
            "billed with the move"
        );
        clock.advance(40 * DAY);
        at.lifecycle().reactivate(id, &ops).await.unwrap();
        assert_eq!(
            at.run_billing().await.issued,
            0,
            "period 2 began while suspended"
        );
        at.close().await;
    }
);

both_dbs!(
    a_tenant_provisioned_again_resumes_its_billing,
    // Nothing falls overdue meanwhile: an event written on the test clock would hold up the
    // tenant's later events until that time.
    [("BILLING_NET_DAYS", "90")],
    |app| async move {
        let subscription = paid_subscription("STANDARD", monthly(json!(9), "USD"));
        let tenant = active_tenant_on(&app, "stark", &subscription).await;
        let first = wait_for_event_of(&app, &tenant, "TENANT_PROVISIONING").await;
        let anchor = instant(&invoices_of(&app, &tenant).await[0]["startDate"]);
        // An operator takes it out of ACTIVE; a run pauses its billing.
        rest_support::patch_ok(
            &app,
            &app.admin_token(),
            &format!("/tenants/{tenant}"),
            &json!({"status": 3}),
        )
        .await;
        let clock = tms::clock::Clock::manual(anchor + chrono::Duration::days(40));
        let biller = Sweeper::on_clock(&app, &[], clock.clone()).await;
        assert_eq!(biller.run_billing().await.issued, 0);
        // Provisioned again (PROVISIONFAILED → PROVISIONING → ACTIVE): billing resumes.
        let (status, body) = provision(&app, &tenant, &subscription).await;
        assert_eq!(status, 204, "{body}");
        let deadline = std::time::Instant::now() + PATIENCE;
        let event = loop {
            let event = wait_for_event_of(&app, &tenant, "TENANT_PROVISIONING").await;
            if event["id"] != first["id"] {
                break event;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "no second provisioning event"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let response = send(&app, &report(&event, json!({"status": 1}))).await;
        assert_eq!(response.status, 204, "{}", response.text);
        clock.advance(60 * DAY);
        assert!(biller.run_billing().await.issued >= 1, "billing resumed");
        biller.close().await;
    }
);

both_dbs!(
    invoices_of_a_deleted_tenant_hold_up_nothing,
    |app| async move {
        let admin = app.admin_token();
        let gone = rest_support::a_tenant(&app, "gone").await;
        let kept = rest_support::a_tenant(&app, "kept").await;
        let invoice = |tenant: &str| {
            json!({"startDate": "2026-01-01", "endDate": "2026-02-01", "amount": 5,
                   "currencyCode": "USD", "dueDate": "2026-02-15", "status": 0,
                   "tenantId": tenant})
        };
        // The deleted tenant's invoice falls due first.
        let orphan = rest_support::create(&app, &admin, "/invoices", &invoice(&gone)).await;
        let mut later = invoice(&kept);
        later["dueDate"] = json!("2026-03-01");
        let other = rest_support::create(&app, &admin, "/invoices", &later).await;
        assert_eq!(
            app.delete(&format!("/tenants/{gone}"), Some(&admin))
                .await
                .0,
            204
        );
        let biller = Sweeper::at(&app, &[], 0).await;
        assert_eq!(biller.run_billing().await.overdue, 2);
        for row in [&orphan, &other] {
            let read = app
                .get(
                    &format!("/invoices/{}", row["id"].as_str().unwrap()),
                    Some(&admin),
                )
                .await
                .1;
            assert!(read["overdueAt"].is_string(), "{read}");
        }
        // It can still be settled.
        let (status, body) = app
            .post(
                &format!("/invoices/{}/pay", orphan["id"].as_str().unwrap()),
                Some(&admin),
                &json!({}),
            )
            .await;
        assert_eq!(status, 204, "{body}");
        biller.close().await;
    }
);

both_dbs!(a_renamed_seller_starts_its_own_series, |app| async move {
    let admin = app.admin_token();
    let tenant = rest_support::a_tenant(&app, "wayne").await;
    let body = json!({"startDate": "2026-01-01", "endDate": "2026-02-01", "amount": 5,
                          "currencyCode": "USD", "dueDate": "2027-02-15", "status": 0,
                          "tenantId": tenant});
    let first = rest_support::create(&app, &admin, "/invoices", &body).await;
    assert_eq!(
        (&first["seller"], &first["invoiceNumber"]),
        (&json!("tms"), &json!("INV-000001"))
    );
    let app = app
        .restart_with(&[("BILLING_SELLER_NAME", "Wayne Billing Ltd")])
        .await;
    let admin = app.admin_token();
    let second = rest_support::create(&app, &admin, "/invoices", &body).await;
    assert_eq!(
        (&second["seller"], &second["invoiceNumber"]),
        (&json!("Wayne Billing Ltd"), &json!("INV-000001"))
    );
    let (_, old) = app
        .get(
            &format!("/invoices/{}", first["id"].as_str().unwrap()),
            Some(&admin),
        )
        .await;
    assert_eq!(old["seller"], "tms", "an invoice keeps who issued it");
});
