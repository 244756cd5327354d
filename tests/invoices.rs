//! Invoices over real HTTP, on SQLite and PostgreSQL: `POST /invoices` with server-managed,
//! gap-free numbers (a refused invoice writes nothing and takes no number), money checked
//! against ISO 4217 and rounded half away from zero to the currency's minor units, the
//! PENDING → PAID | CANCELLED lifecycle enforced on PATCH, PUT, bulk PATCH (all or nothing) and
//! `POST /invoices/{id}/pay` and `/cancel`, the `INVOICE_ISSUED` and `INVOICE_PAID` events
//! (validated against the published schema), and the PDF download by id and by query: its
//! headers, what it shows, and who may fetch it (ViewInvoice, CreateInvoice, a lead's own
//! tenant only).

mod common;
mod lifecycle_support;
mod rest_support;

use common::*;
use lifecycle_support::*;
use rest_support::*;

/// The body of a new invoice of `tenant` for November 2026 (half-open: it ends at midnight on
/// 1 December), due 15 December.
fn invoice(tenant: &str, amount: Value, currency: &str) -> Value {
    json!({
        "startDate": "2026-11-01T00:00:00.000Z",
        "endDate": "2026-12-01T00:00:00.000Z",
        "amount": amount,
        "currencyCode": currency,
        "dueDate": "2026-12-15T00:00:00.000Z",
        "status": 0,
        "tenantId": tenant,
    })
}

/// `POST /invoices` as an administrator, which must answer 200; the stored row.
async fn issue(app: &TestApp, body: &Value) -> Value {
    create(app, &app.admin_token(), "/invoices", body).await
}

/// The invoice `id` as it is stored now.
async fn read(app: &TestApp, id: &str) -> Value {
    get_ok(app, &app.admin_token(), &format!("/invoices/{id}")).await
}

/// `GET /invoices/count`.
async fn count(app: &TestApp) -> i64 {
    get_ok(app, &app.admin_token(), "/invoices/count").await["count"]
        .as_i64()
        .unwrap()
}

/// Every invoice of `tenant` as stored now, in the order of their numbers.
async fn invoices_of(app: &TestApp, tenant: &str) -> Value {
    let filter = json!({"where": {"tenantId": tenant}, "order": ["invoiceNumber ASC"]});
    get_ok(app, &app.admin_token(), &with_filter("/invoices", &filter)).await
}

/// The events of `kind` about invoice `id` in the jsonl sink so far.
fn events_about(app: &TestApp, kind: &str, id: &str) -> Vec<Value> {
    events(app)
        .into_iter()
        .filter(|e| e["type"] == kind && e["invoice"]["id"] == id)
        .collect()
}

/// Waits for the event of `kind` about invoice `id` and returns it. Events of one tenant are
/// delivered in the order they were written, so once it is there, every earlier event of the
/// same tenant is too.
async fn wait_for_invoice_event(app: &TestApp, tenant: &str, kind: &str, id: &str) -> Value {
    let deadline = std::time::Instant::now() + PATIENCE;
    loop {
        if let Some(event) = events_about(app, kind, id).pop() {
            assert_eq!(event["tenant"]["id"], tenant, "{event}");
            return event;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no {kind} event of invoice {id}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// Every event written so far matches `docs/events.schema.json`.
fn assert_events_match_schema(app: &TestApp, test: &str) {
    let seen = events(app);
    assert!(!seen.is_empty(), "{test}: no events to check");
    if let Some(problems) = schema_problems(&format!("{test}::{}", app.db.name()), &seen) {
        assert!(problems.is_empty(), "{problems:#?}");
    }
}

/// The 422 detail paths of a refused write.
#[track_caller]
fn refused_paths(status: StatusCode, body: &Value, what: &str) -> Vec<String> {
    validation_pairs(status, body, what)
        .into_iter()
        .map(|(path, _)| path)
        .collect()
}

/// A 409 about a final invoice, named by its number.
#[track_caller]
fn expect_final(status: StatusCode, body: &Value, number: &str, what: &str) {
    expect_error(status, body, 409, "ConflictError", what);
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.starts_with(&format!("Invoice {number} ")),
        "{what}: {message}"
    );
}

/// A whole response with its body as bytes (a PDF is not text).
struct Download {
    status: StatusCode,
    headers: HeaderMap,
    bytes: Vec<u8>,
}

impl Download {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.bytes).unwrap_or(Value::Null)
    }
}

async fn download(app: &TestApp, path: &str, token: Option<&str>) -> Download {
    let mut request = app.client.get(app.url(path));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.expect("request failed");
    Download {
        status: response.status(),
        headers: response.headers().clone(),
        bytes: response.bytes().await.expect("a body").to_vec(),
    }
}

/// A PDF download of invoice `number` that must succeed; its bytes.
async fn pdf_of(app: &TestApp, path: &str, token: &str, number: &str) -> Vec<u8> {
    let answer = download(app, path, Some(token)).await;
    assert_eq!(
        answer.status,
        200,
        "GET {path}: {}",
        String::from_utf8_lossy(&answer.bytes)
    );
    assert_eq!(answer.header("content-type"), Some("application/pdf"));
    assert_eq!(
        answer.header("content-disposition"),
        Some(format!("attachment; filename=\"{number}.pdf\"").as_str())
    );
    assert!(answer.bytes.starts_with(b"%PDF-"), "not a PDF: {path}");
    answer.bytes
}

/// The text of every page of a PDF, whitespace runs collapsed to one space.
fn pdf_text(bytes: &[u8]) -> String {
    let doc = lopdf::Document::load_mem(bytes).expect("a PDF lopdf can read");
    let pages: Vec<u32> = doc.get_pages().keys().copied().collect();
    let text = doc.extract_text(&pages).expect("extractable text");
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[track_caller]
fn assert_shows(text: &str, expected: &[&str]) {
    for fragment in expected {
        assert!(
            text.contains(fragment),
            "{fragment:?} missing from {text:?}"
        );
    }
}

/// A verified lead of `company` at `domain` that has onboarded its tenant (needs
/// `LEAD_KEY_IN_RESPONSE=true`): the lead's token and the tenant's id.
async fn lead_with_tenant(
    app: &TestApp,
    company: &str,
    key: &str,
    domain: &str,
) -> (String, String) {
    let (status, lead) = app
        .post(
            "/leads",
            None,
            &json!({"firstName": "Lea", "lastName": "Lee", "email": format!("lea@{domain}"),
                    "companyName": company}),
        )
        .await;
    assert_eq!(status, 200, "{lead}");
    let lead_id = id_of(&lead);
    let (status, verified) = app
        .request(
            Method::POST,
            &format!("/leads/{lead_id}/verify"),
            Some(lead["key"].as_str().unwrap()),
            None,
        )
        .await;
    assert_eq!(status, 200, "{verified}");
    let token = verified["token"].as_str().unwrap().to_string();
    let (status, tenant) = app
        .post(
            &format!("/leads/{lead_id}/tenants"),
            Some(&token),
            &json!({"key": key, "domains": [domain]}),
        )
        .await;
    assert_eq!(status, 200, "{tenant}");
    (token, id_of(&tenant))
}

both_dbs!(
    posted_invoices_are_numbered_without_gaps_and_refusals_take_no_number,
    |app| async move {
        let tenant = a_tenant(&app, "acme").await;
        let first = issue(&app, &invoice(&tenant, json!(49.99), "USD")).await;
        let mut keys = row_keys(&INVOICE_FIELDS);
        keys.extend(["seller", "invoiceNumber", "overdueAt"].map(String::from));
        let mut got = keys_of(&first);
        got.sort();
        keys.sort();
        assert_eq!(got, keys, "{first}");
        assert_eq!(first["invoiceNumber"], "INV-000001");
        assert_eq!(first["overdueAt"], Value::Null);
        assert_eq!(first["currencyCode"], "USD");
        assert_eq!(first["amount"], json!(49.99));
        assert_eq!(first["status"], 0);
        assert_eq!(first["tenantId"], tenant.as_str());
        assert_eq!(
            read(&app, &id_of(&first)).await,
            first,
            "stored as answered"
        );

        // Refused before anything is written, or (an unknown tenant) after the number was
        // taken in the transaction: either way nothing is written and no number is used up.
        let unknown_tenant = random_uuid();
        let mut numbered = invoice(&tenant, json!(5), "USD");
        numbered["invoiceNumber"] = json!("INV-000777");
        for (body, path) in [
            (invoice(&tenant, json!(5), "XYZ"), "/currencyCode"),
            (invoice(&tenant, json!(5), "XAU"), "/currencyCode"),
            (invoice(&tenant, json!(5), "usd1"), "/currencyCode"),
            (invoice(&tenant, json!(-0.01), "USD"), "/amount"),
            (numbered, "/invoiceNumber"),
        ] {
            let (status, answer) = app.post("/invoices", Some(&app.admin_token()), &body).await;
            assert_eq!(refused_paths(status, &answer, &body.to_string()), [path]);
            assert_eq!(count(&app).await, 1, "{body} wrote nothing");
        }
        let (status, answer) = app
            .post(
                "/invoices",
                Some(&app.admin_token()),
                &invoice(&unknown_tenant, json!(5), "USD"),
            )
            .await;
        expect_error(status, &answer, 404, "NotFoundError", "an unknown tenant");
        assert_eq!(
            count(&app).await,
            1,
            "the unknown tenant's invoice is not written"
        );

        let second = issue(&app, &invoice(&tenant, json!(5), "EUR")).await;
        assert_eq!(
            second["invoiceNumber"], "INV-000002",
            "no gap after refusals"
        );
        let third = issue(&app, &invoice(&tenant, json!(7), "EUR")).await;
        assert_eq!(third["invoiceNumber"], "INV-000003");
        assert_eq!(count(&app).await, 3);

        // Concurrent writes, every other one refused after taking its number: the accepted
        // ones share no number and leave no gap.
        let admin = app.admin_token();
        let bodies: Vec<Value> = (0..8)
            .map(|k| {
                let owner = if k % 2 == 0 { &tenant } else { &unknown_tenant };
                invoice(owner, json!(k), "USD")
            })
            .collect();
        let answers = futures_util::future::join_all(
            bodies
                .iter()
                .map(|body| app.post("/invoices", Some(&admin), body)),
        )
        .await;
        let (mut numbers, mut accepted) = (Vec::new(), vec![first, second, third]);
        for (k, (status, answer)) in answers.iter().enumerate() {
            if k % 2 == 0 {
                assert_eq!(*status, 200, "{answer}");
                numbers.push(answer["invoiceNumber"].as_str().unwrap().to_string());
                accepted.push(answer.clone());
            } else {
                expect_error(*status, answer, 404, "NotFoundError", "an unknown tenant");
            }
        }
        numbers.sort();
        assert_eq!(
            numbers,
            ["INV-000004", "INV-000005", "INV-000006", "INV-000007"]
        );
        assert_eq!(count(&app).await, 7);

        // Each created invoice is announced once, with its tenant.
        for row in &accepted {
            let event = wait_for_invoice_event(&app, &tenant, "INVOICE_ISSUED", &id_of(row)).await;
            assert_eq!(&event["invoice"], row, "the event carries the stored row");
            assert_eq!(event["tenant"]["name"], "Tenant acme");
        }
        let issued: Vec<Value> = events(&app)
            .into_iter()
            .filter(|e| e["type"] == "INVOICE_ISSUED")
            .collect();
        assert_eq!(issued.len(), 7, "refused invoices are not announced");
        assert_events_match_schema(&app, module_path!());
    }
);

both_dbs!(
    amounts_are_rounded_half_away_from_zero_to_the_currencys_minor_units,
    |app| async move {
        let tenant = a_tenant(&app, "globex").await;
        for (amount, currency, stored, code) in [
            (json!(10.005), "USD", json!(10.01), "USD"),
            (json!(10.0049), "USD", json!(10), "USD"),
            (json!(1234.5), "JPY", json!(1235), "JPY"),
            (json!(1234.4), "JPY", json!(1234), "JPY"),
            (json!(1.2345), "KWD", json!(1.235), "KWD"),
            (json!(0.125), "EUR", json!(0.13), "EUR"),
            (json!("19.995"), "EUR", json!(20), "EUR"),
            (json!(0), "CHF", json!(0), "CHF"),
        ] {
            let row = issue(&app, &invoice(&tenant, amount.clone(), currency)).await;
            let what = format!("{amount} {currency}");
            assert_eq!(row["amount"], stored, "{what}");
            assert_eq!(row["currencyCode"], code, "{what}");
            let again = read(&app, &id_of(&row)).await;
            assert_eq!(again["amount"], stored, "{what} as read back");
            assert_eq!(again["currencyCode"], code, "{what} as read back");
        }

        // The status may be given by name, and an invoice may be created in any status.
        let mut paid = invoice(&tenant, json!(1), "USD");
        paid["status"] = json!("PAID");
        assert_eq!(issue(&app, &paid).await["status"], 1);
        let mut cancelled = invoice(&tenant, json!(1), "USD");
        cancelled["status"] = json!("cancelled");
        assert_eq!(issue(&app, &cancelled).await["status"], 2);
        assert_eq!(count(&app).await, 10);
    }
);

/// `body` (whose `amount` is 0) sent verbatim with its amount spelled `amount`: spellings a
/// `Value` cannot keep. The status and the answer.
async fn send_spelled(
    app: &TestApp,
    method: Method,
    path: &str,
    body: &Value,
    amount: &str,
) -> (StatusCode, Value) {
    let text = body.to_string();
    assert!(text.contains(r#""amount":0"#), "{text}");
    let text = text.replace(r#""amount":0"#, &format!(r#""amount":{amount}"#));
    let response = app
        .raw(
            method,
            path,
            Some(&app.admin_token()),
            &text,
            Some("application/json"),
        )
        .await;
    (response.status, response.json())
}

/// Amounts whose value, as written, has more than four decimal places or is too large, spelled
/// so that a binary float would round them to an amount that passes.
const HOSTILE_AMOUNTS: [&str; 9] = [
    "12.3450000000000000000000001",
    "1e-400",
    "-1e-400",
    "1.00000000000000000001",
    "0.1000000000000000000000000000001",
    "99999999999.99990000000000000001",
    "1.00001e0",
    "1e400",
    "-1e400",
];

both_dbs!(
    amounts_are_judged_on_the_value_written_whatever_its_spelling,
    |app| async move {
        let tenant = a_tenant(&app, "initech").await;
        let admin = app.admin_token();
        for amount in HOSTILE_AMOUNTS {
            let before = count(&app).await;
            let body = invoice(&tenant, json!(0), "CLF");
            let (status, answer) =
                send_spelled(&app, Method::POST, "/invoices", &body, amount).await;
            assert_eq!(refused_paths(status, &answer, amount), ["/amount"]);
            let message = answer["error"]["details"][0]["message"].as_str().unwrap();
            assert!(
                message.starts_with("amount ")
                    && (message.contains("at most 4 decimal places")
                        || message.contains("too large")),
                "{amount}: {message}"
            );
            assert_eq!(count(&app).await, before, "{amount} wrote nothing");
        }
        assert!(
            events(&app).iter().all(|e| e["type"] != "INVOICE_ISSUED"),
            "no invoice was announced"
        );

        // The same values spelled otherwise, and other spellings of amounts that pass.
        for (amount, currency, stored) in [
            ("12.3400", "USD", json!(12.34)),
            ("12.3400000000000000000000000", "USD", json!(12.34)),
            ("1.5e2", "USD", json!(150)),
            ("1E2", "USD", json!(100)),
            ("0.00010", "CLF", json!(0.0001)),
            ("1e-4", "CLF", json!(0.0001)),
            ("-0", "USD", json!(0)),
            ("99999999999.99990", "CLF", json!(99999999999.9999)),
        ] {
            let body = invoice(&tenant, json!(0), currency);
            let (status, row) = send_spelled(&app, Method::POST, "/invoices", &body, amount).await;
            assert_eq!(status, 200, "{amount}: {row}");
            assert_eq!(row["amount"], stored, "{amount} {currency}");
            assert_eq!(
                read(&app, &id_of(&row)).await["amount"],
                stored,
                "{amount} read back"
            );
        }
        let first = invoices_of(&app, &tenant).await[0].clone();
        assert_eq!(
            first["invoiceNumber"], "INV-000001",
            "refusals took no number"
        );

        // PATCH, PUT and the bulk PATCH refuse them the same way, and change nothing.
        let id = id_of(&first);
        let item = format!("/invoices/{id}");
        let whole = invoice(&tenant, json!(0), "USD");
        let all = with_where("/invoices", &json!({"tenantId": tenant}));
        let stored = invoices_of(&app, &tenant).await;
        for amount in HOSTILE_AMOUNTS {
            for (method, path, body) in [
                (Method::PATCH, &item, json!({"amount": 0})),
                (Method::PUT, &item, whole.clone()),
                (Method::PATCH, &all, json!({"amount": 0})),
            ] {
                let (status, answer) =
                    send_spelled(&app, method.clone(), path, &body, amount).await;
                let what = format!("{method} {path} {amount}");
                assert_eq!(refused_paths(status, &answer, &what), ["/amount"]);
            }
        }
        assert_eq!(invoices_of(&app, &tenant).await, stored, "nothing changed");
        let (status, _) = app
            .patch(&item, Some(&admin), &json!({"amount": 12.5}))
            .await;
        assert_eq!(status, 204, "a plain amount still passes");
    }
);

both_dbs!(
    currency_codes_are_three_upper_case_letters_of_iso_4217,
    |app| async move {
        let admin = app.admin_token();
        let tenant = a_tenant(&app, "cases").await;
        let yen = issue(&app, &invoice(&tenant, json!(1234.5), "JPY")).await;
        let path = format!("/invoices/{}", id_of(&yen));
        patch_ok(
            &app,
            &admin,
            &path,
            &json!({"currencyCode": "KWD", "amount": 1.2345}),
        )
        .await;
        let dinar = read(&app, &id_of(&yen)).await;
        assert_eq!(
            (&dinar["currencyCode"], &dinar["amount"]),
            (&json!("KWD"), &json!(1.235))
        );
        // ISO 4217 writes codes in upper case; anything else is refused, on every write.
        for code in ["usd", "Jpy", "xau"] {
            let (status, answer) = app
                .post("/invoices", Some(&admin), &invoice(&tenant, json!(1), code))
                .await;
            assert_eq!(refused_paths(status, &answer, code), ["/currencyCode"]);
            let (status, answer) = app
                .put(&path, Some(&admin), &invoice(&tenant, json!(1), code))
                .await;
            assert_eq!(refused_paths(status, &answer, code), ["/currencyCode"]);
        }
        // Upper case, but a metal rather than a currency.
        let (status, answer) = app
            .post(
                "/invoices",
                Some(&admin),
                &invoice(&tenant, json!(1), "XAU"),
            )
            .await;
        assert_eq!(refused_paths(status, &answer, "XAU"), ["/currencyCode"]);
        assert_eq!(count(&app).await, 1);
        assert_eq!(read(&app, &id_of(&yen)).await, dinar, "nothing changed");
    }
);

both_dbs!(
    a_paid_invoice_is_final_and_repeating_its_status_changes_nothing,
    |app| async move {
        let admin = app.admin_token();
        let tenant = a_tenant(&app, "initech").await;
        let row = issue(&app, &invoice(&tenant, json!(100), "USD")).await;
        let id = id_of(&row);
        let path = format!("/invoices/{id}");
        let number = row["invoiceNumber"].as_str().unwrap().to_string();

        // A PENDING invoice changes freely, by PATCH and by PUT.
        patch_ok(
            &app,
            &admin,
            &path,
            &json!({"invoiceFile": "s3://bills/1.pdf"}),
        )
        .await;
        assert_eq!(read(&app, &id).await["invoiceFile"], "s3://bills/1.pdf");
        let mut replaced = invoice(&tenant, json!(120), "USD");
        replaced["invoiceFile"] = json!("s3://bills/1b.pdf");
        let (status, answer) = app.put(&path, Some(&admin), &replaced).await;
        assert_eq!(status, 204, "{answer}");
        let pending = read(&app, &id).await;
        assert_eq!(pending["amount"], 120);
        assert_eq!(pending["invoiceFile"], "s3://bills/1b.pdf");
        assert_eq!(
            pending["invoiceNumber"],
            number.as_str(),
            "PUT keeps the number"
        );
        assert!(
            events_about(&app, "INVOICE_PAID", &id).is_empty(),
            "not paid yet"
        );

        // PENDING → PAID: one INVOICE_PAID with the paid row.
        tick().await;
        patch_ok(&app, &admin, &path, &json!({"status": 1})).await;
        let paid = read(&app, &id).await;
        assert_eq!(paid["status"], 1);
        assert_ne!(paid["modifiedOn"], pending["modifiedOn"]);
        let event = wait_for_invoice_event(&app, &tenant, "INVOICE_PAID", &id).await;
        assert_eq!(event["invoice"], paid);

        // A retry of the same status: 204, nothing changes.
        tick().await;
        patch_ok(&app, &admin, &path, &json!({"status": 1})).await;
        patch_ok(&app, &admin, &path, &json!({"status": "PAID"})).await;
        assert_eq!(read(&app, &id).await, paid, "modifiedOn unchanged");

        // Any other change of a PAID invoice: 409, nothing changes.
        for (body, what) in [
            (json!({"status": 2}), "PAID → CANCELLED"),
            (json!({"status": 0}), "back to PENDING"),
            (json!({"amount": 5}), "a new amount"),
            (
                json!({"status": 1, "amount": 5}),
                "the same status with a new amount",
            ),
        ] {
            let (status, answer) = app.patch(&path, Some(&admin), &body).await;
            expect_final(status, &answer, &number, what);
            assert_eq!(read(&app, &id).await, paid, "{what} changed the invoice");
        }
        let (status, answer) = app.patch(&path, Some(&admin), &json!({"status": 2})).await;
        let message = answer["error"]["message"].as_str().unwrap_or_default();
        assert!(
            message.contains("PAID") && message.contains("CANCELLED"),
            "{status}: {message}"
        );

        // PUT of the invoice exactly as read back: a retry; with another amount: 409.
        let (status, answer) = app.put(&path, Some(&admin), &paid).await;
        assert_eq!(status, 204, "PUT as read back: {answer}");
        assert_eq!(read(&app, &id).await, paid);
        let mut changed = paid.clone();
        changed["amount"] = json!(99);
        let (status, answer) = app.put(&path, Some(&admin), &changed).await;
        expect_final(status, &answer, &number, "PUT with another amount");
        assert_eq!(read(&app, &id).await, paid);

        // pay again: 204; cancel: 409.
        let (status, answer) = app
            .post(&format!("{path}/pay"), Some(&admin), &json!({}))
            .await;
        assert_eq!(status, 204, "pay a PAID invoice: {answer}");
        let (status, answer) = app
            .post(&format!("{path}/cancel"), Some(&admin), &json!({}))
            .await;
        expect_final(status, &answer, &number, "cancel a PAID invoice");
        assert_eq!(read(&app, &id).await, paid);

        // None of the retries announced a second payment: paying another invoice of the tenant
        // (delivered after everything before it) shows exactly one INVOICE_PAID for this one.
        let other = issue(&app, &invoice(&tenant, json!(1), "USD")).await;
        patch_ok(
            &app,
            &admin,
            &format!("/invoices/{}", id_of(&other)),
            &json!({"status": 1}),
        )
        .await;
        wait_for_invoice_event(&app, &tenant, "INVOICE_PAID", &id_of(&other)).await;
        assert_eq!(events_about(&app, "INVOICE_PAID", &id).len(), 1);
        assert_events_match_schema(&app, module_path!());
    }
);

both_dbs!(
    pay_and_cancel_settle_pending_invoices_and_refuse_the_other_final_state,
    |app| async move {
        let admin = app.admin_token();
        let tenant = a_tenant(&app, "umbrella").await;
        let to_pay = issue(&app, &invoice(&tenant, json!(10), "EUR")).await;
        let to_cancel = issue(&app, &invoice(&tenant, json!(20), "EUR")).await;
        let (pay_id, cancel_id) = (id_of(&to_pay), id_of(&to_cancel));
        let cancel_number = to_cancel["invoiceNumber"].as_str().unwrap().to_string();
        let none = json!({});

        // Who may: UpdateInvoice only.
        let pay = format!("/invoices/{pay_id}/pay");
        let (status, answer) = app.post(&pay, None, &none).await;
        expect_error(
            status,
            &answer,
            401,
            "UnauthorizedError",
            "pay without a token",
        );
        let viewer = app.token(&[INVOICE_CODES.view, INVOICE_CODES.create]);
        let (status, answer) = app.post(&pay, Some(&viewer), &none).await;
        expect_error(
            status,
            &answer,
            403,
            "ForbiddenError",
            "pay without UpdateInvoice",
        );
        let without = token_without(&app, TEST_USER_ID, INVOICE_CODES.update);
        let (status, answer) = app.post(&pay, Some(&without), &none).await;
        expect_error(
            status,
            &answer,
            403,
            "ForbiddenError",
            "pay with all but UpdateInvoice",
        );
        assert_eq!(
            read(&app, &pay_id).await,
            to_pay,
            "refused payments change nothing"
        );

        // Unknown invoices.
        for id in [random_uuid(), "not-a-uuid".to_string()] {
            for action in ["pay", "cancel"] {
                let (status, answer) = app
                    .post(&format!("/invoices/{id}/{action}"), Some(&admin), &none)
                    .await;
                expect_error(
                    status,
                    &answer,
                    404,
                    "NotFoundError",
                    &format!("{action} {id}"),
                );
            }
        }

        // pay: PENDING → PAID, once; again is a retry.
        let updater = app.token(&[INVOICE_CODES.update]);
        let (status, answer) = app.post(&pay, Some(&updater), &none).await;
        assert_eq!(status, 204, "{answer}");
        let paid = read(&app, &pay_id).await;
        assert_eq!(paid["status"], 1);
        let (status, answer) = app.post(&pay, Some(&updater), &none).await;
        assert_eq!(status, 204, "pay again: {answer}");
        assert_eq!(read(&app, &pay_id).await, paid);

        // cancel: PENDING → CANCELLED; again is a retry; pay is refused.
        let cancel = format!("/invoices/{cancel_id}/cancel");
        let (status, answer) = app.post(&cancel, Some(&updater), &none).await;
        assert_eq!(status, 204, "{answer}");
        let cancelled = read(&app, &cancel_id).await;
        assert_eq!(cancelled["status"], 2);
        let (status, answer) = app.post(&cancel, Some(&updater), &none).await;
        assert_eq!(status, 204, "cancel again: {answer}");
        let (status, answer) = app
            .post(&format!("/invoices/{cancel_id}/pay"), Some(&updater), &none)
            .await;
        expect_final(status, &answer, &cancel_number, "pay a CANCELLED invoice");
        let (status, answer) = app
            .patch(
                &format!("/invoices/{cancel_id}"),
                Some(&admin),
                &json!({"status": 1}),
            )
            .await;
        expect_final(
            status,
            &answer,
            &cancel_number,
            "PATCH a CANCELLED invoice to PAID",
        );
        assert_eq!(read(&app, &cancel_id).await, cancelled);

        // Exactly one INVOICE_PAID, for the paid invoice; barrier: a new invoice's
        // INVOICE_ISSUED is delivered after everything written before it.
        let last = issue(&app, &invoice(&tenant, json!(1), "EUR")).await;
        wait_for_invoice_event(&app, &tenant, "INVOICE_ISSUED", &id_of(&last)).await;
        let paid_events: Vec<Value> = events(&app)
            .into_iter()
            .filter(|e| e["type"] == "INVOICE_PAID")
            .collect();
        assert_eq!(paid_events.len(), 1, "{paid_events:#?}");
        assert_eq!(paid_events[0]["invoice"], paid);
        assert_events_match_schema(&app, module_path!());
    }
);

both_dbs!(
    a_currency_change_needs_an_amount_and_amounts_follow_the_invoices_currency,
    |app| async move {
        let admin = app.admin_token();
        let tenant = a_tenant(&app, "hooli").await;
        let yen = issue(&app, &invoice(&tenant, json!(1000), "JPY")).await;
        let path = format!("/invoices/{}", id_of(&yen));

        let (status, answer) = app
            .patch(&path, Some(&admin), &json!({"currencyCode": "EUR"}))
            .await;
        assert_eq!(
            validation_pairs(status, &answer, "currencyCode alone"),
            pairs(&[("", "required")])
        );
        assert_eq!(
            answer["error"]["details"][0]["info"],
            json!({"missingProperty": "amount"})
        );
        assert_eq!(read(&app, &id_of(&yen)).await, yen, "nothing changed");
        let (status, answer) = app
            .patch(
                &path,
                Some(&admin),
                &json!({"currencyCode": "XAU", "amount": 3}),
            )
            .await;
        assert_eq!(refused_paths(status, &answer, "XAU"), ["/currencyCode"]);
        let (status, answer) = app.patch(&path, Some(&admin), &json!({"amount": -1})).await;
        assert_eq!(
            refused_paths(status, &answer, "a negative amount"),
            ["/amount"]
        );
        assert_eq!(read(&app, &id_of(&yen)).await, yen, "nothing changed");

        // An amount alone is rounded by the invoice's currency.
        patch_ok(&app, &admin, &path, &json!({"amount": 10.6})).await;
        assert_eq!(read(&app, &id_of(&yen)).await["amount"], 11);
        // With a currency, by that currency.
        patch_ok(
            &app,
            &admin,
            &path,
            &json!({"currencyCode": "KWD", "amount": 1.2345}),
        )
        .await;
        let dinar = read(&app, &id_of(&yen)).await;
        assert_eq!(
            (&dinar["currencyCode"], &dinar["amount"]),
            (&json!("KWD"), &json!(1.235))
        );
        // A PUT is rounded by the currency it gives.
        let (status, answer) = app
            .put(&path, Some(&admin), &invoice(&tenant, json!(7.777), "USD"))
            .await;
        assert_eq!(status, 204, "{answer}");
        let dollars = read(&app, &id_of(&yen)).await;
        assert_eq!(
            (&dollars["currencyCode"], &dollars["amount"]),
            (&json!("USD"), &json!(7.78))
        );
        assert_eq!(dollars["invoiceNumber"], yen["invoiceNumber"]);
    }
);

both_dbs!(
    a_bulk_amount_over_currencies_with_different_minor_units_is_refused,
    |app| async move {
        let admin = app.admin_token();
        let mixed = a_tenant(&app, "mixed").await;
        issue(&app, &invoice(&mixed, json!(10), "USD")).await;
        issue(&app, &invoice(&mixed, json!(1000), "JPY")).await;
        let before = invoices_of(&app, &mixed).await;
        let (status, answer) = app
            .patch(
                &with_where("/invoices", &json!({"tenantId": mixed})),
                Some(&admin),
                &json!({"amount": 1.005}),
            )
            .await;
        assert_eq!(refused_paths(status, &answer, "USD and JPY"), ["/amount"]);
        assert_eq!(invoices_of(&app, &mixed).await, before, "nothing changed");

        // Invoices whose currencies share their minor units take the amount, rounded.
        let cents = a_tenant(&app, "cents").await;
        issue(&app, &invoice(&cents, json!(10), "USD")).await;
        issue(&app, &invoice(&cents, json!(20), "EUR")).await;
        let (status, answer) = app
            .patch(
                &with_where("/invoices", &json!({"tenantId": cents})),
                Some(&admin),
                &json!({"amount": 1.005}),
            )
            .await;
        assert_eq!((status, &answer), (StatusCode::OK, &json!({"count": 2})));
        let amounts: Vec<Value> = invoices_of(&app, &cents)
            .await
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["amount"].clone())
            .collect();
        assert_eq!(amounts, [json!(1.01), json!(1.01)]);
        assert_eq!(
            invoices_of(&app, &mixed).await,
            before,
            "the other tenant's untouched"
        );
    }
);

both_dbs!(
    a_bulk_status_change_applies_to_all_matched_invoices_or_to_none,
    |app| async move {
        let admin = app.admin_token();
        let blocked = a_tenant(&app, "blocked").await;
        let mut ids = Vec::new();
        for amount in [1, 2] {
            ids.push(id_of(
                &issue(&app, &invoice(&blocked, json!(amount), "USD")).await,
            ));
        }
        // The CANCELLED one is written last, so a write in matched order would have paid the
        // others before meeting it.
        let cancelled = issue(&app, &invoice(&blocked, json!(3), "USD")).await;
        let (status, answer) = app
            .post(
                &format!("/invoices/{}/cancel", id_of(&cancelled)),
                Some(&admin),
                &json!({}),
            )
            .await;
        assert_eq!(status, 204, "{answer}");
        let before = invoices_of(&app, &blocked).await;
        assert_eq!(before[2]["status"], 2);
        let (status, answer) = app
            .patch(
                &with_where("/invoices", &json!({"tenantId": blocked})),
                Some(&admin),
                &json!({"status": 1}),
            )
            .await;
        expect_final(
            status,
            &answer,
            "INV-000003",
            "one matched invoice is CANCELLED",
        );
        assert_eq!(invoices_of(&app, &blocked).await, before, "none changed");

        let open = a_tenant(&app, "open").await;
        let mut open_ids = Vec::new();
        for amount in [4, 5, 6] {
            open_ids.push(id_of(
                &issue(&app, &invoice(&open, json!(amount), "USD")).await,
            ));
        }
        let (status, answer) = app
            .patch(
                &with_where("/invoices", &json!({"tenantId": open})),
                Some(&admin),
                &json!({"status": "PAID"}),
            )
            .await;
        assert_eq!((status, &answer), (StatusCode::OK, &json!({"count": 3})));
        let statuses: Vec<Value> = invoices_of(&app, &open)
            .await
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["status"].clone())
            .collect();
        assert_eq!(statuses, [1, 1, 1]);
        for id in &open_ids {
            wait_for_invoice_event(&app, &open, "INVOICE_PAID", id).await;
        }
        // The refused bulk write announced nothing: a later event of that tenant is delivered
        // after anything it could have written.
        let barrier = issue(&app, &invoice(&blocked, json!(9), "USD")).await;
        wait_for_invoice_event(&app, &blocked, "INVOICE_ISSUED", &id_of(&barrier)).await;
        for id in &ids {
            assert!(events_about(&app, "INVOICE_PAID", id).is_empty(), "{id}");
        }
        let paid = events(&app)
            .into_iter()
            .filter(|e| e["type"] == "INVOICE_PAID")
            .count();
        assert_eq!(paid, 3);
        // Repeating it: every matched invoice is PAID already, a retry.
        let (status, answer) = app
            .patch(
                &with_where("/invoices", &json!({"tenantId": open})),
                Some(&admin),
                &json!({"status": 1}),
            )
            .await;
        assert_eq!((status, &answer), (StatusCode::OK, &json!({"count": 3})));
        assert_events_match_schema(&app, module_path!());
    }
);

both_dbs!(
    an_invoice_downloads_as_a_pdf_showing_what_it_bills,
    [
        ("BILLING_SELLER_NAME", "Müller Billing GmbH"),
        ("BILLING_SELLER_ADDRESS", "Königstraße 5|80331 München"),
    ],
    |app| async move {
        let admin = app.admin_token();
        let tenant = a_tenant(&app, "acme").await;
        let row = issue(&app, &invoice(&tenant, json!(1234.5), "USD")).await;
        let id = id_of(&row);
        let bytes = pdf_of(
            &app,
            &format!("/invoices/{id}/download"),
            &admin,
            "INV-000001",
        )
        .await;
        let text = pdf_text(&bytes);
        assert_shows(
            &text,
            &[
                "Müller Billing GmbH",
                "Königstraße 5",
                "80331 München",
                "INVOICE",
                "INV-000001",
                "Due 2026-12-15",
                "Status PENDING",
                "BILL TO Tenant acme",
                // The period ends at midnight on 1 December: its last day is 30 November.
                "Period: 2026-11-01 – 2026-11-30",
                "1,234.50 USD",
                "Total 1,234.50 USD",
                "Please pay 1,234.50 USD by 2026-12-15.",
            ],
        );
        assert!(
            !text.contains("– 2026-12-01"),
            "the end instant is not a day of the period: {text}"
        );

        // The original's path gives the same document.
        let by_query = pdf_of(
            &app,
            &format!("/invoices/download?id={id}"),
            &admin,
            "INV-000001",
        )
        .await;
        assert_eq!(by_query, bytes);

        // A period ending later than midnight shows its end day; yen have no minor units; a
        // PAID invoice shows its status and asks for nothing.
        let mut body = invoice(&tenant, json!(1234567), "JPY");
        body["endDate"] = json!("2026-12-01T12:00:00.000Z");
        body["status"] = json!(1);
        let yen = issue(&app, &body).await;
        let text = pdf_text(
            &pdf_of(
                &app,
                &format!("/invoices/{}/download", id_of(&yen)),
                &admin,
                "INV-000002",
            )
            .await,
        );
        assert_shows(
            &text,
            &[
                "INV-000002",
                "Period: 2026-11-01 – 2026-12-01",
                "Total 1,234,567 JPY",
                "Status PAID",
            ],
        );
        assert!(!text.contains("Please pay"), "{text}");
        assert!(!text.contains("INV-000001"), "{text}");
    }
);

both_dbs!(
    downloads_need_a_known_invoice_id_and_view_or_create_permission,
    |app| async move {
        let tenant = a_tenant(&app, "wayne").await;
        let row = issue(&app, &invoice(&tenant, json!(5), "EUR")).await;
        let id = id_of(&row);
        let by_id = format!("/invoices/{id}/download");
        let by_query = format!("/invoices/download?id={id}");

        // Without an id.
        for path in ["/invoices/download", "/invoices/download?id="] {
            let answer = download(&app, path, Some(&app.admin_token())).await;
            assert_eq!(answer.status, 400, "{path}");
            assert_eq!(
                answer.json(),
                json!({"error": {"statusCode": 400, "name": "BadRequestError",
                    "message": "Required parameter id is missing!",
                    "code": "MISSING_REQUIRED_PARAMETER"}}),
                "{path}"
            );
        }
        // Unknown and malformed ids.
        let unknown = random_uuid();
        for path in [
            format!("/invoices/{unknown}/download"),
            format!("/invoices/download?id={unknown}"),
            "/invoices/not-a-uuid/download".to_string(),
            "/invoices/download?id=not-a-uuid".to_string(),
        ] {
            let answer = download(&app, &path, Some(&app.admin_token())).await;
            expect_error(answer.status, &answer.json(), 404, "NotFoundError", &path);
        }
        // A deleted invoice is gone.
        let gone = issue(&app, &invoice(&tenant, json!(6), "EUR")).await;
        delete_ok(
            &app,
            &app.admin_token(),
            &format!("/invoices/{}", id_of(&gone)),
        )
        .await;
        let answer = download(
            &app,
            &format!("/invoices/{}/download", id_of(&gone)),
            Some(&app.admin_token()),
        )
        .await;
        expect_error(
            answer.status,
            &answer.json(),
            404,
            "NotFoundError",
            "a deleted invoice",
        );

        // ViewInvoice or CreateInvoice may download; neither is 403; no token is 401.
        let number = row["invoiceNumber"].as_str().unwrap();
        let viewer = app.token(&[INVOICE_CODES.view]);
        let creator = app.token(&[INVOICE_CODES.create]);
        let (status, answer) = app.get(&format!("/invoices/{id}"), Some(&creator)).await;
        expect_error(
            status,
            &answer,
            403,
            "ForbiddenError",
            "CreateInvoice cannot read rows",
        );
        let others = app.token(&[
            INVOICE_CODES.update,
            INVOICE_CODES.delete,
            TENANT_CODES.view,
        ]);
        let all_but: Vec<&str> = tms::auth::ALL_PERMISSIONS
            .iter()
            .copied()
            .filter(|c| *c != INVOICE_CODES.view && *c != INVOICE_CODES.create)
            .collect();
        let all_but = app.token(&all_but);
        for path in [&by_id, &by_query] {
            let viewed = pdf_of(&app, path, &viewer, number).await;
            let created = pdf_of(&app, path, &creator, number).await;
            assert_eq!(viewed, created, "{path}");
            for token in [&others, &all_but] {
                let answer = download(&app, path, Some(token)).await;
                expect_error(answer.status, &answer.json(), 403, "ForbiddenError", path);
            }
            let answer = download(&app, path, None).await;
            expect_error(
                answer.status,
                &answer.json(),
                401,
                "UnauthorizedError",
                path,
            );
        }
    }
);

both_dbs!(
    a_lead_downloads_its_own_tenants_invoices_and_no_others,
    [("LEAD_KEY_IN_RESPONSE", "true")],
    |app| async move {
        let other = a_tenant(&app, "other").await;
        let (token, own) = lead_with_tenant(&app, "Own Widgets", "own", "own.io").await;
        let theirs = issue(&app, &invoice(&other, json!(1), "USD")).await;
        let mine = issue(&app, &invoice(&own, json!(2), "USD")).await;
        let number = mine["invoiceNumber"].as_str().unwrap();
        assert_eq!(number, "INV-000002");

        for path in [
            format!("/invoices/{}/download", id_of(&mine)),
            format!("/invoices/download?id={}", id_of(&mine)),
        ] {
            let text = pdf_text(&pdf_of(&app, &path, &token, number).await);
            assert_shows(&text, &[number, "BILL TO Own Widgets", "2.00 USD"]);
        }
        for path in [
            format!("/invoices/{}/download", id_of(&theirs)),
            format!("/invoices/download?id={}", id_of(&theirs)),
        ] {
            let answer = download(&app, &path, Some(&token)).await;
            expect_error(answer.status, &answer.json(), 404, "NotFoundError", &path);
        }
        // It cannot write an invoice for another tenant (to it, there is none), and that
        // refusal takes no number.
        let (status, answer) = app
            .post("/invoices", Some(&token), &invoice(&other, json!(3), "USD"))
            .await;
        expect_error(
            status,
            &answer,
            404,
            "NotFoundError",
            "a lead bills another tenant",
        );
        let next = issue(&app, &invoice(&other, json!(4), "USD")).await;
        assert_eq!(next["invoiceNumber"], "INV-000003");
        // The lead token may download, not list (it has CreateInvoice, not ViewInvoice).
        let (status, answer) = app.get("/invoices", Some(&token)).await;
        expect_error(
            status,
            &answer,
            403,
            "ForbiddenError",
            "a lead lists invoices",
        );
    }
);
