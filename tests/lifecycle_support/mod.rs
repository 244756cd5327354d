//! Helpers of the tests of the tenant lifecycle (`provisioning.rs`, `offboarding.rs`): the
//! events of the embedded jsonl sink, pipeline results signed as a pipeline signs them, and the
//! tenant's status and provisioning state.
//!
//! Used next to the harness: `mod common; mod lifecycle_support; use lifecycle_support::*;`.
#![allow(dead_code)]

use std::time::{Duration, Instant};

use tms::domain::signature;

use crate::common::*;

pub const PATIENCE: Duration = Duration::from_secs(20);

/// A subscription on a free plan of `tier` (no price: never billed).
pub fn subscription(tier: &str) -> Value {
    json!({"id": "sub-1", "subscriberId": "acme", "planId": "plan-gold", "status": 1,
           "startDate": "2026-12-01", "endDate": "2027-12-01",
           "plan": {"tier": tier, "name": "Gold"}})
}

/// A subscription whose plan has `billing` (price, currency, billingCycle) besides its tier.
pub fn paid_subscription(tier: &str, billing: Value) -> Value {
    let mut subscription = subscription(tier);
    let plan = subscription["plan"].as_object_mut().unwrap();
    plan.extend(billing.as_object().unwrap().clone());
    subscription
}

/// The events written so far to the jsonl sink of `app`.
pub fn events(app: &TestApp) -> Vec<Value> {
    std::fs::read_to_string(app.data_dir.join("events.jsonl"))
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).expect("each line is JSON"))
        .collect()
}

/// Waits until the jsonl sink holds `n` events, and returns them.
pub async fn wait_for_events(app: &TestApp, n: usize) -> Vec<Value> {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let seen = events(app);
        if seen.len() >= n {
            return seen;
        }
        assert!(Instant::now() < deadline, "{} of {n} events", seen.len());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until the jsonl sink holds an event of `kind` for `tenant`, and returns the last one.
pub async fn wait_for_event_of(app: &TestApp, tenant: &str, kind: &str) -> Value {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let found = events(app)
            .into_iter()
            .rev()
            .find(|e| e["type"] == kind && e["tenant"]["id"] == tenant);
        if let Some(event) = found {
            return event;
        }
        assert!(Instant::now() < deadline, "no {kind} event of {tenant}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// A webhook request for `event`'s tenant with `data`, signed as a pipeline signs it.
pub struct Report {
    pub body: String,
    pub signature: String,
    pub timestamp: String,
}

pub fn report(event: &Value, data: Value) -> Report {
    report_at(event, data, now_ms())
}

pub fn report_at(event: &Value, data: Value, at_ms: i64) -> Report {
    let body = json!({"initiatorId": event["tenant"]["id"], "type": 0, "data": data}).to_string();
    let timestamp = at_ms.to_string();
    let signature = signature::sign(
        event["secret"].as_str().unwrap().as_bytes(),
        &[
            body.as_bytes(),
            event["context"].as_str().unwrap().as_bytes(),
            timestamp.as_bytes(),
        ],
    );
    Report {
        body,
        signature,
        timestamp,
    }
}

pub async fn post_webhook(
    app: &TestApp,
    body: &str,
    signature: Option<&str>,
    timestamp: Option<&str>,
) -> TestResponse {
    post_signed(app, "/webhook", body, signature, timestamp).await
}

/// `POST path` with `body` as it is and the signature headers given.
pub async fn post_signed(
    app: &TestApp,
    path: &str,
    body: &str,
    signature: Option<&str>,
    timestamp: Option<&str>,
) -> TestResponse {
    let mut request = app
        .client
        .post(app.url(path))
        .header("content-type", "application/json")
        .body(body.to_string());
    if let Some(s) = signature {
        request = request.header("x-signature", s);
    }
    if let Some(t) = timestamp {
        request = request.header("x-timestamp", t);
    }
    TestResponse::read(request.send().await.unwrap()).await
}

pub async fn send(app: &TestApp, report: &Report) -> TestResponse {
    post_webhook(
        app,
        &report.body,
        Some(&report.signature),
        Some(&report.timestamp),
    )
    .await
}

pub async fn status_of(app: &TestApp, tenant: &str) -> i64 {
    let (status, body) = app
        .get(&format!("/tenants/{tenant}"), Some(&app.admin_token()))
        .await;
    assert_eq!(status, 200, "{body}");
    body["status"].as_i64().unwrap()
}

pub async fn state_of(app: &TestApp, tenant: &str) -> Value {
    let (status, body) = app
        .get(
            &format!("/tenants/{tenant}/provisioning"),
            Some(&app.admin_token()),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    body
}

/// The `.eml` files the server wrote (no SMTP configured).
pub async fn mails(app: &TestApp) -> usize {
    std::fs::read_dir(app.data_dir.join("outbox"))
        .map(|d| d.count())
        .unwrap_or(0)
}

/// A tenant provisioned with `subscription` and made ACTIVE by its pipeline's signed result
/// with two resources; returns its id.
pub async fn active_tenant_on(app: &TestApp, key: &str, subscription: &Value) -> String {
    let tenant = crate::rest_support::a_tenant(app, key).await;
    let (status, body) = provision(app, &tenant, subscription).await;
    assert_eq!(status, 204, "{body}");
    let event = wait_for_event_of(app, &tenant, "TENANT_PROVISIONING").await;
    let done = report(
        &event,
        json!({"status": 1, "resources": [
            {"type": "database", "externalIdentifier": format!("db-{key}"), "metadata": {}},
            {"metadata": {"bucket": format!("files-{key}")}}]}),
    );
    let response = send(app, &done).await;
    assert_eq!(response.status, 204, "{}", response.text);
    assert_eq!(status_of(app, &tenant).await, 0);
    tenant
}

pub async fn provision(app: &TestApp, tenant: &str, body: &Value) -> (StatusCode, Value) {
    app.post(
        &format!("/tenants/{tenant}/provision"),
        Some(&app.admin_token()),
        body,
    )
    .await
}

/// A second instance's view of the app's database and key store, on a clock `ahead` seconds
/// past now, to run the deadline sweeper, billing runs and lifecycle moves at another time.
pub struct Sweeper {
    pub services: tms::domain::Services,
    pub db: tms::store::Db,
    pub clock: tms::clock::Clock,
}

impl Sweeper {
    pub async fn at(app: &TestApp, overrides: &[(&str, &str)], ahead: i64) -> Sweeper {
        let clock =
            tms::clock::Clock::manual(chrono::Utc::now() + chrono::Duration::seconds(ahead));
        Self::on_clock(app, overrides, clock).await
    }

    /// An instance on `clock` (shared with others: advancing one advances all).
    pub async fn on_clock(
        app: &TestApp,
        overrides: &[(&str, &str)],
        clock: tms::clock::Clock,
    ) -> Sweeper {
        let config = app.config_with(overrides);
        let db = tms::store::Db::connect(&config)
            .await
            .unwrap()
            .with_clock(clock.clone());
        let kv = tms::kv::Kv::connect(&config, &db, clock.clone())
            .await
            .unwrap();
        let services = tms::domain::Services {
            db: db.clone(),
            kv,
            mailer: tms::mail::Mailer::from_config(&config).unwrap(),
            idp: tms::idp::IdentityProviders::new(clock.clone()).unwrap(),
            jwt: app.jwt_keys().with_clock(clock.clone()),
            config: std::sync::Arc::new(config),
            clock: clock.clone(),
            metrics: tms::metrics::Metrics::new(),
        };
        Sweeper {
            services,
            db,
            clock,
        }
    }

    /// Provisioning, offboarding and suspension on this instance.
    pub fn lifecycle(&self) -> tms::domain::offboarding::Offboarding<'_> {
        self.services.offboarding()
    }

    /// Fails the operations past their deadline; how many.
    pub async fn fail_overdue(&self) -> usize {
        self.services.provisioning().fail_overdue().await.unwrap()
    }

    /// One billing run at this instance's now.
    pub async fn run_billing(&self) -> tms::domain::billing_run::RunReport {
        self.services.billing_run().run().await.unwrap()
    }

    pub async fn close(self) {
        self.db.close().await;
    }
}

/// Checks `events` against `docs/events.schema.json` with a real JSON Schema validator (Python's
/// `jsonschema`, which `.ci/run` installs with `openapi-spec-validator`): the problems found, one
/// line per event that does not match. `None` when the validator is not installed (the test then
/// records a skip).
pub fn schema_problems(test: &str, events: &[Value]) -> Option<Vec<String>> {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let available = python_module("jsonschema", "jsonschema");
    if !needs(test, "jsonschema", available) {
        return None;
    }
    const CHECK: &str = r#"
import json, sys, jsonschema
schema = json.load(open(sys.argv[1]))
jsonschema.Draft202012Validator.check_schema(schema)
validator = jsonschema.Draft202012Validator(schema, format_checker=jsonschema.FormatChecker())
for event in json.load(sys.stdin):
    error = jsonschema.exceptions.best_match(validator.iter_errors(event))
    if error is not None:
        print(event.get("type"), event.get("id"), "/".join(map(str, error.absolute_path)), error.message)
"#;
    let schema = format!("{}/docs/events.schema.json", env!("CARGO_MANIFEST_DIR"));
    let mut child = Command::new("python3")
        .args(["-c", CHECK, &schema])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let input = serde_json::to_vec(events).unwrap();
    child.stdin.take().unwrap().write_all(&input).unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "the schema check failed to run: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    Some(
        String::from_utf8_lossy(&output.stdout)
            .lines()
            .map(str::to_string)
            .collect(),
    )
}
