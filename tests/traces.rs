//! OpenTelemetry traces, end to end: the `tms` binary (a child process: the tracing subscriber
//! is global) exports to a local OTLP/HTTP receiver (`POST /v1/traces`, JSON) when
//! `OTEL_EXPORTER_OTLP_ENDPOINT` is set. A request's span carries the route template and the
//! status and continues a caller's `traceparent`; SQL statements are child spans; the event a
//! provisioning writes carries the trace, and the pipeline's result joins it. Unset, nothing is
//! sent. On SQLite and PostgreSQL.

mod common;
mod lifecycle_support;
mod rest_support;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::routing::post;
use common::*;
use lifecycle_support::{paid_subscription, schema_problems, subscription};
use tms::domain::signature;

const PATIENCE: Duration = Duration::from_secs(20);

/// An event received by the sink: its `traceparent` header and its body.
type Sunk = (Option<String>, Value);

/// A local OTLP/HTTP receiver: the JSON bodies posted to `/v1/traces`; and an event sink on
/// `/sink`: the `traceparent` header and body of each event posted there.
struct Receiver {
    addr: SocketAddr,
    bodies: Arc<Mutex<Vec<Value>>>,
    sunk: Arc<Mutex<Vec<Sunk>>>,
}

impl Receiver {
    async fn start() -> Receiver {
        let bodies: Arc<Mutex<Vec<Value>>> = Arc::default();
        let sunk: Arc<Mutex<Vec<Sunk>>> = Arc::default();
        let kept = bodies.clone();
        let events = sunk.clone();
        let app = Router::new()
            .route(
                "/sink",
                post(
                    move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
                        let events = events.clone();
                        async move {
                            let traceparent = headers
                                .get("traceparent")
                                .and_then(|v| v.to_str().ok())
                                .map(str::to_string);
                            let event = serde_json::from_slice(&body).unwrap_or(Value::Null);
                            events.lock().unwrap().push((traceparent, event));
                            axum::http::StatusCode::NO_CONTENT
                        }
                    },
                ),
            )
            .route(
                "/v1/traces",
                post(move |body: axum::body::Bytes| {
                    let kept = kept.clone();
                    async move {
                        let json: Value = serde_json::from_slice(&body).unwrap_or_else(
                            |_| json!({"undecodable": String::from_utf8_lossy(&body).to_string()}),
                        );
                        kept.lock().unwrap().push(json);
                        "{}"
                    }
                }),
            );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        Receiver { addr, bodies, sunk }
    }

    fn requests(&self) -> usize {
        self.bodies.lock().unwrap().len()
    }

    fn spans(&self) -> Vec<Span> {
        let bodies = self.bodies.lock().unwrap();
        let mut spans = Vec::new();
        for body in bodies.iter() {
            assert!(body.get("undecodable").is_none(), "not OTLP JSON: {body}");
            for resource in body["resourceSpans"].as_array().into_iter().flatten() {
                let service = attributes(&resource["resource"]["attributes"]);
                for scope in resource["scopeSpans"].as_array().into_iter().flatten() {
                    for span in scope["spans"].as_array().into_iter().flatten() {
                        spans.push(Span {
                            service: service.get("service.name").cloned().unwrap_or_default(),
                            trace: text(&span["traceId"]),
                            id: text(&span["spanId"]),
                            parent: text(&span["parentSpanId"]),
                            name: text(&span["name"]),
                            attributes: attributes(&span["attributes"]),
                            links: span["links"]
                                .as_array()
                                .into_iter()
                                .flatten()
                                .map(|l| text(&l["traceId"]))
                                .collect(),
                        });
                    }
                }
            }
        }
        spans
    }

    /// Waits until a span named `name` has arrived; the first such span.
    async fn span_named(&self, name: &str) -> Span {
        let spans = self.wait_for(name, |s| s.name == name).await;
        spans.into_iter().find(|s| s.name == name).unwrap()
    }

    /// Waits until a span matching `wanted` has arrived; all spans then.
    async fn wait_for(&self, what: &str, wanted: impl Fn(&Span) -> bool) -> Vec<Span> {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let spans = self.spans();
            if spans.iter().any(&wanted) {
                return spans;
            }
            assert!(
                Instant::now() < deadline,
                "no span {what} among: {:#?}",
                spans
                    .iter()
                    .map(|s| format!("{} {} <- {} {}", s.trace, s.id, s.parent, s.name))
                    .collect::<Vec<_>>()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

#[derive(Debug, Clone)]
struct Span {
    service: String,
    trace: String,
    id: String,
    parent: String,
    name: String,
    attributes: HashMap<String, String>,
    links: Vec<String>,
}

fn text(v: &Value) -> String {
    v.as_str().unwrap_or_default().to_string()
}

/// OTLP key-value attributes as text (numbers as their decimal form).
fn attributes(list: &Value) -> HashMap<String, String> {
    list.as_array()
        .into_iter()
        .flatten()
        .map(|kv| {
            let value = &kv["value"];
            let shown = ["stringValue", "intValue", "boolValue", "doubleValue"]
                .iter()
                .find_map(|k| value.get(k))
                .map(|v| match v {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                })
                .unwrap_or_default();
            (text(&kv["key"]), shown)
        })
        .collect()
}

/// Whether `span` is `ancestor` or below it.
fn descends_from(spans: &[Span], span: &Span, ancestor: &Span) -> bool {
    let mut current = span.clone();
    for _ in 0..64 {
        if current.id == ancestor.id && current.trace == ancestor.trace {
            return true;
        }
        match spans
            .iter()
            .find(|s| s.id == current.parent && s.trace == current.trace)
        {
            Some(parent) => current = parent.clone(),
            None => return false,
        }
    }
    false
}

/// The `tms` binary serving on a port of its own, its stderr (JSON logs) kept in a file.
struct Tms {
    child: Child,
    base: String,
    data_dir: PathBuf,
    stderr: PathBuf,
    env: Vec<(String, String)>,
    dir: tempfile::TempDir,
    _storage: Storage,
}

impl Tms {
    async fn start(db: Db, extra: &[(&str, String)]) -> Tms {
        let dir = tempfile::tempdir().unwrap();
        let data_dir = dir.path().join("data");
        let storage = Storage::new(db);
        let port = {
            let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            probe.local_addr().unwrap().port()
        };
        let mut env: Vec<(String, String)> = [
            ("TMS_ENV", "test".to_string()),
            ("HOST", "127.0.0.1".to_string()),
            ("PORT", port.to_string()),
            ("JWT_SECRET", JWT_SECRET.to_string()),
            ("JWT_ISSUER", JWT_ISSUER.to_string()),
            ("BILLING_INTERVAL", "0".to_string()),
            ("LOG_LEVEL", "info".to_string()),
            ("LOG_FORMAT", "json".to_string()),
            ("TMS_DATA_DIR", data_dir.display().to_string()),
            ("PATH", std::env::var("PATH").unwrap_or_default()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        if let (Some(url), Some(schema)) = (storage.postgres_app_url(), storage.postgres_schema()) {
            env.push(("DATABASE_URL".into(), url.to_string()));
            env.push(("DB_SCHEMA".into(), schema.to_string()));
        }
        env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.clone())));
        let migrate_log = dir.path().join("migrate.log");
        let migrated = spawn(&env, "migrate", &migrate_log).wait().unwrap();
        assert!(
            migrated.success(),
            "tms migrate: {}",
            std::fs::read_to_string(&migrate_log).unwrap_or_default()
        );
        let stderr = dir.path().join("serve.log");
        let mut tms = Tms {
            child: spawn(&env, "serve", &stderr),
            base: format!("http://127.0.0.1:{port}"),
            data_dir,
            stderr,
            env,
            dir,
            _storage: storage,
        };
        tms.wait_until_serving().await;
        tms
    }

    async fn wait_until_serving(&mut self) {
        let deadline = Instant::now() + PATIENCE;
        while reqwest::get(self.url("/ping")).await.is_err() {
            assert!(
                Instant::now() < deadline,
                "tms did not start: {}",
                std::fs::read_to_string(&self.stderr).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Stops the server gracefully and serves again on the same storage and settings, less the
    /// variables named in `unset`.
    async fn restart_without(&mut self, unset: &[&str]) {
        self.terminate();
        self.env.retain(|(name, _)| !unset.contains(&name.as_str()));
        self.child = spawn(&self.env, "serve", &self.stderr);
        self.wait_until_serving().await;
    }

    /// Runs `tms <args>` to its end with the server's settings; its stderr.
    fn run(&self, args: &[&str]) -> String {
        let log = self.dir.path().join("run.log");
        let mut command = command(&self.env, args[0], &log);
        let status = command.args(&args[1..]).status().unwrap();
        let logs = std::fs::read_to_string(&log).unwrap_or_default();
        assert!(status.success(), "tms {args:?}: {logs}");
        logs
    }

    /// The storage's database, opened in this process.
    async fn database(&self) -> tms::store::Db {
        let vars: HashMap<String, String> = self.env.iter().cloned().collect();
        let config = tms::config::Config::from_map(&vars).unwrap();
        tms::store::Db::connect(&config).await.unwrap()
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn admin_token(&self) -> String {
        harness_admin_token()
    }

    fn events(&self) -> Vec<Value> {
        std::fs::read_to_string(self.data_dir.join("events.jsonl"))
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    async fn wait_for_event(&self) -> Value {
        self.wait_for_events("any event", |_| true, 1)
            .await
            .remove(0)
    }

    /// Waits until `count` events written match `wanted`; those, in the order written.
    async fn wait_for_events(
        &self,
        what: &str,
        wanted: impl Fn(&Value) -> bool,
        count: usize,
    ) -> Vec<Value> {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let found: Vec<Value> = self.events().into_iter().filter(&wanted).collect();
            if found.len() >= count {
                return found;
            }
            assert!(Instant::now() < deadline, "no {count} events {what}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// SIGTERM, a graceful shutdown (which flushes the spans still queued); its logs.
    fn stop(mut self) -> String {
        self.terminate();
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// SIGTERM; waits for the exit.
    fn terminate(&mut self) {
        let pid = self.child.id().to_string();
        let killed = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        assert!(killed.success());
        let deadline = Instant::now() + PATIENCE;
        while self.child.try_wait().unwrap().is_none() {
            assert!(Instant::now() < deadline, "tms did not stop on SIGTERM");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// `tms <command>` with exactly `env`, its stderr (JSON logs) to `stderr`.
fn command(env: &[(String, String)], command: &str, stderr: &Path) -> Command {
    let mut built = Command::new(env!("CARGO_BIN_EXE_tms"));
    built
        .arg(command)
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(stderr).unwrap());
    built
}

fn spawn(env: &[(String, String)], what: &str, stderr: &Path) -> Child {
    command(env, what, stderr).spawn().unwrap()
}

impl Drop for Tms {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn traced(receiver: &Receiver) -> Vec<(&'static str, String)> {
    vec![
        (
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            format!("http://{}", receiver.addr),
        ),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json".into()),
        ("OTEL_SERVICE_NAME", "tms-under-test".into()),
        // Batches every 100 ms instead of 5 s.
        ("OTEL_BSP_SCHEDULE_DELAY", "100".into()),
    ]
}

async fn onboard(tms: &Tms, client: &reqwest::Client, key: &str) -> String {
    let response = client
        .post(tms.url("/tenants"))
        .bearer_auth(tms.admin_token())
        .json(&json!({"name": format!("Tenant {key}"), "key": key,
            "domains": [format!("{key}.io")],
            "contact": {"firstName": "Ada", "lastName": "L", "email": format!("ada@{key}.io"),
                        "isPrimary": true, "type": "admin"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let tenant: Value = response.json().await.unwrap();
    tenant["id"].as_str().unwrap().to_string()
}

async fn follows_a_provisioning_from_the_api_call_to_the_pipeline_result(db: Db) {
    let receiver = Receiver::start().await;
    let tms = Tms::start(db, &traced(&receiver)).await;
    let client = reqwest::Client::new();

    // A caller's trace is continued: same trace id, the caller's span as parent.
    let caller_trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let caller_span = "00f067aa0ba902b7";
    let ping = client
        .get(tms.url("/ping"))
        .header("traceparent", format!("00-{caller_trace}-{caller_span}-01"))
        .send()
        .await
        .unwrap();
    assert_eq!(ping.status(), 200);
    // (The start-up's own pings, untraced, are spans of traces of their own.)
    let of_caller = |s: &Span| s.name == "GET /ping" && s.parent == caller_span;
    let spans = receiver
        .wait_for("GET /ping under the caller's", of_caller)
        .await;
    let ping = spans.iter().find(|s| of_caller(s)).unwrap();
    assert_eq!(ping.trace, caller_trace);
    assert_eq!(ping.parent, caller_span);
    assert_eq!(ping.service, "tms-under-test");
    assert_eq!(ping.attributes["http.route"], "/ping");
    assert_eq!(ping.attributes["http.request.method"], "GET");
    assert_eq!(ping.attributes["http.response.status_code"], "200");

    // Onboarding: the request span, its route template and status, SQL statements under it.
    let tenant = onboard(&tms, &client, "acme").await;
    let spans = receiver
        .wait_for("POST /tenants", |s| s.name == "POST /tenants")
        .await;
    let onboarding = spans.iter().find(|s| s.name == "POST /tenants").unwrap();
    assert_eq!(onboarding.attributes["http.response.status_code"], "200");
    let insert = spans
        .iter()
        .find(|s| s.name == "INSERT tenants" && descends_from(&spans, s, onboarding))
        .unwrap_or_else(|| panic!("no INSERT tenants under the onboarding: {spans:#?}"));
    let system = if db == Db::Postgres {
        "postgresql"
    } else {
        "sqlite"
    };
    assert_eq!(insert.attributes["db.system"], system);
    assert_eq!(insert.attributes["db.operation.name"], "INSERT");
    assert_eq!(insert.attributes["db.collection.name"], "tenants");
    for span in &spans {
        for value in span.attributes.values() {
            assert!(!value.contains("ada@acme.io"), "a bound value in {span:?}");
        }
    }

    // Provisioning: the route template, never the raw path.
    start_provisioning(&tms, &client, &tenant).await;
    let name = "POST /tenants/{id}/provision";
    let provision = receiver.span_named(name).await;
    assert_eq!(
        provision.attributes["http.route"],
        "/tenants/{id}/provision"
    );
    assert_eq!(provision.attributes["http.response.status_code"], "204");
    assert!(
        provision.attributes.values().all(|v| !v.contains(&tenant)),
        "the raw path is not exported: {provision:?}"
    );

    // The event carries the provisioning's trace, and matches the published schema.
    let event = tms.wait_for_event().await;
    assert_eq!(event["type"], "TENANT_PROVISIONING");
    let traceparent = event["traceparent"]
        .as_str()
        .expect("the event's traceparent");
    let parts: Vec<&str> = traceparent.split('-').collect();
    assert_eq!(parts.len(), 4, "{traceparent}");
    assert_eq!(
        parts[1], provision.trace,
        "the event is of the request's trace"
    );
    if let Some(problems) = schema_problems(
        "follows_a_provisioning_from_the_api_call_to_the_pipeline_result",
        std::slice::from_ref(&event),
    ) {
        assert!(problems.is_empty(), "{problems:?}");
    }
    // Its delivery is a span of that trace too.
    receiver
        .wait_for("event publish", |s| {
            s.name == "event publish" && s.trace == provision.trace
        })
        .await;

    // The pipeline's result, without a traceparent: joins the trace stored with the
    // provisioning.
    report_provisioned(&tms, &client, &tenant, &event).await;
    let spans = receiver
        .wait_for("pipeline result", |s| s.name == "pipeline result")
        .await;
    let result = spans.iter().find(|s| s.name == "pipeline result").unwrap();
    assert_eq!(result.trace, provision.trace, "the result joins the trace");
    let webhook = spans.iter().find(|s| s.name == "POST /webhook").unwrap();
    assert!(
        result.links.contains(&webhook.trace),
        "linked to the webhook's request"
    );
    let spans = receiver
        .wait_for("an UPDATE under the pipeline result", |s| {
            s.name.starts_with("UPDATE") && s.parent == result.id
        })
        .await;
    assert!(
        spans
            .iter()
            .any(|s| s.trace == provision.trace && s.name == "UPDATE tenants"),
        "{:?}",
        spans
            .iter()
            .filter(|s| s.parent == result.id)
            .map(|s| &s.name)
            .collect::<Vec<_>>()
    );

    // The log lines of a request name its trace.
    let logs = tms.stop();
    let finished = logs
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|l| l["message"] == "request finished" && l["span"]["trace_id"] == caller_trace)
        .unwrap_or_else(|| panic!("no log line of the caller's trace: {logs}"));
    assert_eq!(finished["span"]["route"], "/ping", "{finished}");
    assert_eq!(finished["span"]["span_id"], ping.id.as_str(), "{finished}");
}

async fn nothing_is_sent_without_an_endpoint(db: Db) {
    let receiver = Receiver::start().await;
    // The receiver is there, but tms is not told about it.
    let tms = Tms::start(db, &[]).await;
    let client = reqwest::Client::new();
    let traced = client
        .get(tms.url("/ping"))
        .header(
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(traced.status(), 200);
    let tenant = onboard(&tms, &client, "quiet").await;
    start_provisioning(&tms, &client, &tenant).await;
    let event = tms.wait_for_event().await;
    assert!(event.get("traceparent").is_none(), "{event}");
    let logs = tms.stop();
    assert!(!logs.contains("trace_id"), "{logs}");
    // Nothing arrives, not even at shutdown, nor after it.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(receiver.requests(), 0);
}

/// The trace of the event reaches its consumers: the http sink's `traceparent` header, a
/// pipeline command's `TRACEPARENT`, and the webhook request of the command sink, which continues
/// the trace itself.
async fn sinks_pass_the_events_trace_on(db: Db) {
    let receiver = Receiver::start().await;
    let mut env = traced(&receiver);
    env.push(("EVENT_SINK", format!("http://{}/sink", receiver.addr)));
    env.push(("EVENT_SINK_SECRET", "sink-secret-0123456789abcdef".into()));
    let tms = Tms::start(db, &env).await;
    let client = reqwest::Client::new();
    let tenant = onboard(&tms, &client, "sunk").await;
    start_provisioning(&tms, &client, &tenant).await;
    let name = "POST /tenants/{id}/provision";
    let provision = receiver.span_named(name).await;
    let deadline = Instant::now() + PATIENCE;
    let (header, event) = loop {
        if let Some(sunk) = receiver.sunk.lock().unwrap().first().cloned() {
            break sunk;
        }
        assert!(Instant::now() < deadline, "no event reached the http sink");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let header = header.expect("the traceparent header of the http sink");
    assert_eq!(header.split('-').nth(1), Some(provision.trace.as_str()));
    assert_eq!(
        event["traceparent"]
            .as_str()
            .and_then(|t| t.split('-').nth(1)),
        Some(provision.trace.as_str())
    );
    // The header names the delivery's call, a span of the trace.
    let call = header.split('-').nth(2).unwrap().to_string();
    let spans = receiver.wait_for("the sink's call", |s| s.id == call).await;
    let call = spans.iter().find(|s| s.id == call).unwrap();
    assert_eq!(call.trace, provision.trace);
    assert_eq!(call.attributes["http.request.method"], "POST");
    assert_eq!(call.attributes["http.response.status_code"], "204");
    drop(tms);

    // The command sink: the pipeline gets TRACEPARENT, its result comes back with the header.
    let receiver = Receiver::start().await;
    let mut env = traced(&receiver);
    env.push(("EVENT_SINK", "command".into()));
    env.push((
        "PIPELINE_COMMAND_SILOED",
        "printf '%s' \"$TRACEPARENT\" > \"$TRACE_OUT\"; echo '{}'".into(),
    ));
    let out = tempfile::tempdir().unwrap();
    let trace_out = out.path().join("traceparent");
    env.push(("TRACE_OUT", trace_out.display().to_string()));
    let tms = Tms::start(db, &env).await;
    let tenant = onboard(&tms, &client, "piped").await;
    start_provisioning(&tms, &client, &tenant).await;
    let provision = receiver.span_named(name).await;
    let spans = receiver
        .wait_for("pipeline result", |s| s.name == "pipeline result")
        .await;
    let webhook = spans
        .iter()
        .find(|s| s.name == "POST /webhook")
        .expect("the webhook's request span");
    assert_eq!(
        webhook.trace, provision.trace,
        "the webhook request continues the trace"
    );
    assert_eq!(webhook.attributes["http.response.status_code"], "204");
    let result = spans.iter().find(|s| s.name == "pipeline result").unwrap();
    assert_eq!(result.parent, webhook.id);
    let given = std::fs::read_to_string(&trace_out).expect("the pipeline's TRACEPARENT");
    assert_eq!(
        given.split('-').nth(1),
        Some(provision.trace.as_str()),
        "{given}"
    );
    tms.stop();
}

/// Posts the signed result "provisioned" of the provisioning `event` of `tenant` to the webhook,
/// without a `traceparent`.
async fn report_provisioned(tms: &Tms, client: &reqwest::Client, tenant: &str, event: &Value) {
    let body = json!({"initiatorId": tenant, "type": 0,
        "data": {"status": 1, "resources": []}})
    .to_string();
    let timestamp = chrono::Utc::now().timestamp_millis().to_string();
    let signature = signature::sign(
        event["secret"].as_str().unwrap().as_bytes(),
        &[
            body.as_bytes(),
            event["context"].as_str().unwrap().as_bytes(),
            timestamp.as_bytes(),
        ],
    );
    let answered = client
        .post(tms.url("/webhook"))
        .header("content-type", "application/json")
        .header("x-signature", signature)
        .header("x-timestamp", timestamp)
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(answered.status(), 204);
}

/// `POST /tenants/{id}/provision` of `tenant` with `subscription`.
async fn provision_with(tms: &Tms, client: &reqwest::Client, tenant: &str, subscription: &Value) {
    let provisioned = client
        .post(tms.url(&format!("/tenants/{tenant}/provision")))
        .bearer_auth(tms.admin_token())
        .json(subscription)
        .send()
        .await
        .unwrap();
    assert_eq!(provisioned.status(), 204);
}

/// `POST /tenants/{id}/provision` of `tenant` on an unpaid premium plan.
async fn start_provisioning(tms: &Tms, client: &reqwest::Client, tenant: &str) {
    provision_with(tms, client, tenant, &subscription("premium")).await;
}

/// The trace id of a `traceparent`.
fn trace_of(traceparent: &str) -> &str {
    traceparent.split('-').nth(1).unwrap_or_default()
}

/// Work nobody requested has traces of its own: each tenant a billing run bills is a root span
/// whose events carry its trace (and `tms billing run`, another process, exports it too);
/// an operation failed past its deadline joins the trace of the request that started it; and
/// mail joins the trace of the request that queued it.
async fn scheduled_work_and_mail_are_traced(db: Db) {
    let receiver = Receiver::start().await;
    let mut env = traced(&receiver);
    env.push(("PROVISIONING_TIMEOUT", "1000".into()));
    let mut tms = Tms::start(db, &env).await;
    let client = reqwest::Client::new();

    // A sign-up's mail: its delivery is a span of the sign-up's trace.
    let signed_up = client
        .post(tms.url("/leads"))
        .json(
            &json!({"firstName": "Grace", "lastName": "H", "companyName": "Navy",
            "email": "grace@navy.example"}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(signed_up.status(), 200, "{:?}", signed_up.text().await);
    let sign_up = receiver.span_named("POST /leads").await;
    receiver
        .wait_for("mail publish of the sign-up's trace", |s| {
            s.name == "mail publish" && s.trace == sign_up.trace
        })
        .await;
    // And the mail, with its trace context in the payload, is still delivered (an .eml file).
    let outbox = tms::files::outbox_dir(&tms.data_dir);
    let deadline = Instant::now() + PATIENCE;
    while !std::fs::read_dir(&outbox)
        .into_iter()
        .flatten()
        .flatten()
        .any(|f| {
            std::fs::read_to_string(f.path()).is_ok_and(|m| m.contains("To: grace@navy.example"))
        })
    {
        assert!(Instant::now() < deadline, "no mail to grace in {outbox:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // A provisioning that passes its deadline: failed by the sweeper of the next start, in
    // the provisioning's trace.
    let late = onboard(&tms, &client, "late").await;
    start_provisioning(&tms, &client, &late).await;
    let name = "POST /tenants/{id}/provision";
    let started = receiver.span_named(name).await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    // (The next provisioning has the default hour.)
    tms.restart_without(&["PROVISIONING_TIMEOUT"]).await;
    let timed_out = receiver.span_named("operation timed out").await;
    assert_eq!(
        timed_out.trace, started.trace,
        "joins the provisioning's trace"
    );
    assert_eq!(timed_out.attributes["tenant.id"], late);
    let spans = receiver
        .wait_for("UPDATE tenants under the time-out", |s| {
            s.name == "UPDATE tenants" && s.parent == timed_out.id
        })
        .await;
    assert!(
        spans
            .iter()
            .any(|s| s.parent == timed_out.id && s.trace == started.trace)
    );

    // A billing run, in a process of its own: the tenant's billing is a trace of its own, the
    // INVOICE_ISSUED event carries it, and the server's delivery of the event joins it.
    let billed = onboard(&tms, &client, "billed").await;
    let paid = paid_subscription(
        "premium",
        json!({"price": 10, "currency": {"currencyCode": "EUR"},
            "billingCycle": {"cycleName": "Monthly", "duration": 1, "durationUnit": "month"}}),
    );
    provision_with(&tms, &client, &billed, &paid).await;
    let provisioning = tms
        .wait_for_events(
            "of the provisioning",
            |e| e["type"] == "TENANT_PROVISIONING" && e["tenant"]["id"] == billed.as_str(),
            1,
        )
        .await
        .remove(0);
    report_provisioned(&tms, &client, &billed, &provisioning).await;
    let db = tms.database().await;
    // Its first period (invoiced at activation) began 40 days ago: the second is due.
    let anchor = chrono::Utc::now() - chrono::Duration::days(40);
    let due = db
        .conn()
        .raw_execute(
            "UPDATE tenant_billing SET anchor_at = $1, next_period_start = $2",
            &[
                tms::store::raw::Param::Instant(anchor),
                tms::store::raw::Param::Instant(anchor + chrono::Duration::days(31)),
            ],
        )
        .await
        .unwrap();
    assert_eq!(due, 1, "the billed tenant's account is due");
    db.close().await;
    tms.run(&["billing", "run"]);
    let billing = receiver.span_named("bill tenant").await;
    assert_eq!(billing.parent, "", "a root span: {billing:?}");
    assert_eq!(billing.attributes["tenant.id"], billed);
    assert_ne!(billing.trace, started.trace);
    // (The first invoice was issued when the tenant became ACTIVE, in the provisioning's
    // trace; the run issues the second.)
    let issued = tms
        .wait_for_events("INVOICE_ISSUED", |e| e["type"] == "INVOICE_ISSUED", 2)
        .await
        .remove(1);
    assert_eq!(
        trace_of(
            issued["traceparent"]
                .as_str()
                .expect("the event's traceparent")
        ),
        billing.trace
    );
    receiver
        .wait_for("event publish of the billing's trace", |s| {
            s.name == "event publish" && s.trace == billing.trace
        })
        .await;
    tms.stop();
}

/// A control: with the endpoint set the same receiver does get spans (so the test above can
/// fail), and the exporter's own requests make no spans of their own.
async fn the_exporter_traces_nothing_of_its_own(db: Db) {
    let receiver = Receiver::start().await;
    let tms = Tms::start(db, &traced(&receiver)).await;
    reqwest::get(tms.url("/ping")).await.unwrap();
    receiver
        .wait_for("GET /ping", |s| s.name == "GET /ping")
        .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    tms.stop();
    let spans = receiver.spans();
    assert!(
        spans.iter().all(|s| s
            .attributes
            .get("server.address")
            .is_none_or(|a| a != "127.0.0.1")),
        "{spans:#?}"
    );
}

/// The nats sink: the event's message carries `traceparent` as a header, of the event's trace.
#[tokio::test(flavor = "multi_thread")]
async fn the_nats_sink_sends_the_events_trace_as_a_header() {
    use futures_util::StreamExt;
    let test = "the_nats_sink_sends_the_events_trace_as_a_header";
    let url = std::env::var("TMS_TEST_NATS_URL")
        .ok()
        .filter(|u| !u.trim().is_empty())
        .unwrap_or_else(|| "nats://127.0.0.1:4222".into());
    let reachable = async_nats::connect(url.as_str()).await.is_ok();
    let available = reachable
        .then_some(())
        .ok_or_else(|| format!("NATS is not reachable at {url} (TMS_TEST_NATS_URL)"));
    if !needs(test, "nats", available) {
        return;
    }
    let tag = uuid::Uuid::new_v4().simple().to_string();
    let stream = format!("tms_test_{tag}");
    let receiver = Receiver::start().await;
    let mut env = traced(&receiver);
    env.push(("EVENT_SINK", format!("nats:{url}")));
    env.push(("NATS_STREAM", stream.clone()));
    env.push(("NATS_SUBJECT_PREFIX", format!("test{tag}.events")));
    let tms = Tms::start(Db::Sqlite, &env).await;
    let client = reqwest::Client::new();
    let tenant = onboard(&tms, &client, "natty").await;
    start_provisioning(&tms, &client, &tenant).await;
    let name = "POST /tenants/{id}/provision";
    let provision = receiver.span_named(name).await;

    let jetstream = async_nats::jetstream::new(async_nats::connect(url.as_str()).await.unwrap());
    let deadline = Instant::now() + PATIENCE;
    let header = loop {
        let mut found = None;
        if let Ok(stream) = jetstream.get_stream(&stream).await {
            let consumer = stream
                .create_consumer(async_nats::jetstream::consumer::pull::Config::default())
                .await
                .unwrap();
            let mut batch = consumer.fetch().max_messages(10).messages().await.unwrap();
            while let Some(Ok(message)) = batch.next().await {
                found = message
                    .headers
                    .as_ref()
                    .and_then(|h| h.get("traceparent"))
                    .map(|v| v.as_str().to_string());
            }
        }
        if let Some(header) = found {
            break header;
        }
        assert!(
            Instant::now() < deadline,
            "no event with a traceparent header"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let _ = jetstream.delete_stream(&stream).await;
    assert_eq!(
        header.split('-').nth(1),
        Some(provision.trace.as_str()),
        "{header}"
    );
    tms.stop();
}

macro_rules! on_both {
    ($name:ident) => {
        mod $name {
            use super::*;

            #[tokio::test(flavor = "multi_thread")]
            async fn sqlite() {
                super::$name(Db::Sqlite).await;
            }

            #[tokio::test(flavor = "multi_thread")]
            async fn postgres() {
                if db_available(Db::Postgres, concat!(stringify!($name), "::postgres")) {
                    super::$name(Db::Postgres).await;
                }
            }
        }
    };
}

on_both!(follows_a_provisioning_from_the_api_call_to_the_pipeline_result);
on_both!(nothing_is_sent_without_an_endpoint);
on_both!(the_exporter_traces_nothing_of_its_own);
on_both!(sinks_pass_the_events_trace_on);
on_both!(scheduled_work_and_mail_are_traced);
