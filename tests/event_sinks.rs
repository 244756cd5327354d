//! The event sinks end to end: the command sink runs the shipped example pipelines and reports
//! to the service's own webhook (tenant ACTIVE with resources, or PROVISIONFAILED with the
//! pipeline's exit code and stderr; a pipeline past its timeout); the HTTP sink signs its
//! requests and retries a failed one; the NATS sink publishes to the real JetStream here with
//! the event id as `Nats-Msg-Id`. Faults: NATS unreachable while an event is pending, the
//! process stopped before it could publish, and two instances on one PostgreSQL delivering each
//! event once.

mod common;
mod rest_support;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::HeaderMap as AxumHeaders;
use common::proxy::FaultProxy;
use common::*;
use rest_support::a_tenant;
use tms::domain::signature;

/// Long enough for a first retry (5 s backoff at most) and the relay's polling.
const PATIENCE: Duration = Duration::from_secs(30);

fn pipelines_dir() -> String {
    format!("{}/pipelines", env!("CARGO_MANIFEST_DIR"))
}

fn subscription(tier: &str) -> Value {
    json!({"id": "sub-1", "plan": {"tier": tier}})
}

fn subscription_with_pipeline(pipeline: &str) -> Value {
    json!({"id": "sub-2", "plan": {"tier": "BASIC", "metaData": {"pipelineName": pipeline}}})
}

async fn provision(app: &TestApp, tenant: &str, body: &Value) {
    let (status, answer) = app
        .post(
            &format!("/tenants/{tenant}/provision"),
            Some(&app.admin_token()),
            body,
        )
        .await;
    assert_eq!(status, 204, "{answer}");
}

/// Waits until the tenant has `status`; returns its provisioning state.
async fn wait_for_status(app: &TestApp, tenant: &str, status: i64) -> Value {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let (_, state) = app
            .get(
                &format!("/tenants/{tenant}/provisioning"),
                Some(&app.admin_token()),
            )
            .await;
        if state["status"] == status {
            return state;
        }
        assert!(
            Instant::now() < deadline,
            "tenant {tenant} did not reach status {status}: {state}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn resources_of(app: &TestApp, tenant: &str) -> Vec<String> {
    let (_, row) = app
        .get(
            &format!("/tenants/{tenant}?filter[include][0]=resources"),
            Some(&app.admin_token()),
        )
        .await;
    let mut ids: Vec<String> = row["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["externalIdentifier"].as_str().unwrap().to_string())
        .collect();
    ids.sort();
    ids
}

// ---------------------------------------------------------------------------------------------
// The command sink and the shipped pipelines
// ---------------------------------------------------------------------------------------------

both_dbs!(
    the_command_sink_takes_a_tenant_to_active_with_the_shipped_pipelines,
    [
        ("EVENT_SINK", "command"),
        ("PIPELINES_DIR", &pipelines_dir())
    ],
    |app| async move {
        // PREMIUM: the silo pipeline.
        let silo = a_tenant(&app, "acme").await;
        provision(&app, &silo, &subscription("PREMIUM")).await;
        let state = wait_for_status(&app, &silo, 0).await;
        assert_eq!(state["reason"], Value::Null);
        assert_eq!(
            resources_of(&app, &silo).await,
            ["silo-db-acme", "silo-files-acme"]
        );
        assert!(
            app.data_dir.join("tenants/acme/db").is_dir(),
            "the pipeline ran here"
        );

        // STANDARD: the pooled pipeline.
        let pooled = a_tenant(&app, "globex").await;
        provision(&app, &pooled, &subscription("standard")).await;
        wait_for_status(&app, &pooled, 0).await;
        assert_eq!(resources_of(&app, &pooled).await, ["pooled-schema-globex"]);

        // The pooled pipeline refuses keys starting with "fail": exit code 3 and its stderr.
        let failing = a_tenant(&app, "failco").await;
        provision(&app, &failing, &subscription("BASIC")).await;
        let state = wait_for_status(&app, &failing, 3).await;
        let reason = state["reason"].as_str().unwrap();
        assert!(
            reason.contains("pipeline pooled exited with code 3")
                && reason.contains("no capacity left for tenant failco"),
            "{reason}"
        );
        assert!(resources_of(&app, &failing).await.is_empty());

        // Offboarding runs the tenant's pipeline again, which removes what it made.
        let (status, body) = app
            .post(
                &format!("/tenants/{silo}/deprovision"),
                Some(&app.admin_token()),
                &json!({}),
            )
            .await;
        assert_eq!(status, 204, "{body}");
        wait_for_status(&app, &silo, 5).await;
        assert!(!app.data_dir.join("tenants/acme").exists(), "torn down");
        assert!(resources_of(&app, &silo).await.is_empty());
    }
);

both_dbs!(
    pipeline_commands_run_by_name_and_time_out,
    [
        ("EVENT_SINK", "command"),
        ("PIPELINES_DIR", &pipelines_dir()),
        ("PIPELINE_TIMEOUT", "500"),
        ("PIPELINE_COMMAND_SLOW_ONE", "sleep 10"),
        (
            "PIPELINE_COMMAND_CUSTOM",
            r#"cat >/dev/null; echo '{"resources":[{"metadata":{"bucket":"custom-b"}}]}'"#
        ),
    ],
    |app| async move {
        // plan.metaData.pipelineName picks PIPELINE_COMMAND_<NAME> (upper-cased, '-' as '_').
        let custom = a_tenant(&app, "custom").await;
        provision(&app, &custom, &subscription_with_pipeline("custom")).await;
        wait_for_status(&app, &custom, 0).await;
        assert_eq!(resources_of(&app, &custom).await, ["custom-b"]);

        let slow = a_tenant(&app, "slow").await;
        provision(&app, &slow, &subscription_with_pipeline("slow-one")).await;
        let state = wait_for_status(&app, &slow, 3).await;
        assert_eq!(state["reason"], "pipeline slow-one timed out after 0 s");

        // A pipeline that does not exist is a failed delivery, retried (the tenant waits).
        let missing = a_tenant(&app, "missing").await;
        provision(&app, &missing, &subscription_with_pipeline("nowhere")).await;
        tokio::time::sleep(Duration::from_secs(2)).await;
        let (_, state) = app
            .get(
                &format!("/tenants/{missing}/provisioning"),
                Some(&app.admin_token()),
            )
            .await;
        assert_eq!(state["status"], 2, "still PROVISIONING: {state}");
    }
);

// ---------------------------------------------------------------------------------------------
// The HTTP sink
// ---------------------------------------------------------------------------------------------

/// One request a receiver saw: its headers and body.
type Seen = (AxumHeaders, Vec<u8>);

/// What a local HTTP receiver saw: each request's headers and body.
#[derive(Clone, Default)]
struct Receiver {
    requests: Arc<Mutex<Vec<Seen>>>,
    answer: Arc<AtomicU16>,
}

impl Receiver {
    async fn start(answer: u16) -> (Receiver, SocketAddr) {
        let receiver = Receiver {
            answer: Arc::new(AtomicU16::new(answer)),
            ..Receiver::default()
        };
        let seen = receiver.clone();
        let app = axum::Router::new().route(
            "/events",
            axum::routing::post(move |headers: AxumHeaders, body: axum::body::Bytes| {
                let seen = seen.clone();
                async move {
                    seen.requests.lock().unwrap().push((headers, body.to_vec()));
                    axum::http::StatusCode::from_u16(seen.answer.load(Ordering::SeqCst)).unwrap()
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        (receiver, addr)
    }

    fn count(&self) -> usize {
        self.requests.lock().unwrap().len()
    }

    async fn wait_for(&self, n: usize) {
        let deadline = Instant::now() + PATIENCE;
        while self.count() < n {
            assert!(
                Instant::now() < deadline,
                "{} of {n} requests",
                self.count()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

const SINK_SECRET: &str = "sink-secret-0123456789";

#[tokio::test]
async fn the_http_sink_signs_its_requests_and_retries_a_refused_one() {
    let (receiver, addr) = Receiver::start(503).await;
    let url = format!("http:http://{addr}/events");
    let app = TestApp::spawn_with(
        Db::Sqlite,
        &[("EVENT_SINK", &url), ("EVENT_SINK_SECRET", SINK_SECRET)],
    )
    .await;
    let tenant = a_tenant(&app, "hooked").await;
    provision(&app, &tenant, &subscription("BASIC")).await;
    receiver.wait_for(1).await;
    let (headers, body) = receiver.requests.lock().unwrap()[0].clone();
    let event: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(event["type"], "TENANT_PROVISIONING");
    assert_eq!(event["tenant"]["id"], tenant);
    let header = |name: &str| headers.get(name).unwrap().to_str().unwrap().to_string();
    assert_eq!(header("x-event-id"), event["id"].as_str().unwrap());
    assert_eq!(header("x-event-type"), "TENANT_PROVISIONING");
    assert!(signature::verify(
        SINK_SECRET.as_bytes(),
        &[&body, header("x-timestamp").as_bytes()],
        &header("x-signature"),
    ));

    // The 503 was a failed attempt: recorded, then retried until the sink takes it.
    let db = tms::store::Db::connect(&app.config).await.unwrap();
    let id = uuid::Uuid::parse_str(event["id"].as_str().unwrap()).unwrap();
    let deadline = Instant::now() + PATIENCE;
    loop {
        let row = tms::events::get(&mut db.conn(), id).await.unwrap().unwrap();
        if row.state == tms::events::State::Failed {
            assert!(
                row.last_error.as_deref().is_some_and(|e| e.contains("503")),
                "{row:?}"
            );
            break;
        }
        assert!(Instant::now() < deadline, "{row:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    receiver.answer.store(204, Ordering::SeqCst);
    receiver.wait_for(2).await;
    let deadline = Instant::now() + PATIENCE;
    while tms::events::get(&mut db.conn(), id)
        .await
        .unwrap()
        .unwrap()
        .state
        != tms::events::State::Delivered
    {
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (_, again) = receiver.requests.lock().unwrap()[1].clone();
    assert_eq!(again, body, "the same event, byte for byte");
    db.close().await;
}

/// Two instances on one PostgreSQL database relay the same outbox: every event reaches the
/// sink exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_deliver_each_event_once() {
    let test = "two_instances_deliver_each_event_once";
    if !db_available(Db::Postgres, test) {
        return;
    }
    let (receiver, addr) = Receiver::start(204).await;
    let url = format!("http:http://{addr}/events");
    let settings = [
        ("EVENT_SINK", url.as_str()),
        ("EVENT_SINK_SECRET", SINK_SECRET),
    ];
    let app = TestApp::spawn_with(Db::Postgres, &settings).await;
    // A second instance on the same schema.
    let second = tms::App::build(app.config_with(&settings)).await.unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let second = tokio::spawn(second.run_until_stopped(async move {
        let _ = stopped.await;
    }));
    let mut tenants = Vec::new();
    for n in 0..12 {
        tenants.push(a_tenant(&app, &format!("twin{n}")).await);
    }
    for tenant in &tenants {
        provision(&app, tenant, &subscription("BASIC")).await;
    }
    receiver.wait_for(12).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let ids: Vec<String> = receiver
        .requests
        .lock()
        .unwrap()
        .iter()
        .map(|(h, _)| h.get("x-event-id").unwrap().to_str().unwrap().to_string())
        .collect();
    let mut distinct = ids.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!((ids.len(), distinct.len()), (12, 12), "{ids:?}");
    let _ = stop.send(());
    second.await.unwrap().unwrap();
}

// ---------------------------------------------------------------------------------------------
// The NATS sink
// ---------------------------------------------------------------------------------------------

fn nats_url() -> Option<String> {
    let url = std::env::var("TMS_TEST_NATS_URL")
        .ok()
        .filter(|u| !u.trim().is_empty())
        .unwrap_or_else(|| "nats://127.0.0.1:4222".into());
    Some(url)
}

/// NATS settings of one test: its own stream and subjects, so tests never see each other's
/// events; the stream is deleted when dropped.
struct Nats {
    url: String,
    stream: String,
    prefix: String,
}

impl Nats {
    async fn available(test: &str) -> Option<Nats> {
        let url = nats_url()?;
        let reachable = async_nats::connect(url.as_str()).await.is_ok();
        let available = if reachable {
            Ok(())
        } else {
            Err(format!(
                "NATS is not reachable at {url} (TMS_TEST_NATS_URL)"
            ))
        };
        if !needs(test, "nats", available) {
            return None;
        }
        let tag = uuid::Uuid::new_v4().simple().to_string();
        Some(Nats {
            url,
            stream: format!("tms_test_{tag}"),
            prefix: format!("test{tag}.events"),
        })
    }

    /// The messages of the test's stream: (subject, Nats-Msg-Id, body).
    async fn messages(&self) -> Vec<(String, String, Value)> {
        use futures_util::StreamExt;
        let client = async_nats::connect(self.url.as_str()).await.unwrap();
        let jetstream = async_nats::jetstream::new(client);
        let Ok(stream) = jetstream.get_stream(&self.stream).await else {
            return Vec::new();
        };
        let consumer = stream
            .create_consumer(async_nats::jetstream::consumer::pull::Config::default())
            .await
            .unwrap();
        let mut batch = consumer.fetch().max_messages(100).messages().await.unwrap();
        let mut out = Vec::new();
        while let Some(Ok(message)) = batch.next().await {
            let id = message
                .headers
                .as_ref()
                .and_then(|h| h.get(async_nats::header::NATS_MESSAGE_ID))
                .map(|v| v.as_str().to_string())
                .unwrap_or_default();
            out.push((
                message.subject.to_string(),
                id,
                serde_json::from_slice(&message.payload).unwrap(),
            ));
        }
        out
    }

    async fn wait_for(&self, n: usize) -> Vec<(String, String, Value)> {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let seen = self.messages().await;
            if seen.len() >= n {
                return seen;
            }
            assert!(Instant::now() < deadline, "{} of {n} messages", seen.len());
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        let (url, stream) = (self.url.clone(), self.stream.clone());
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async {
                if let Ok(client) = async_nats::connect(url.as_str()).await {
                    let _ = async_nats::jetstream::new(client)
                        .delete_stream(&stream)
                        .await;
                }
            });
        })
        .join();
    }
}

#[tokio::test]
async fn the_nats_sink_publishes_to_jetstream_with_the_event_id() {
    let test = "the_nats_sink_publishes_to_jetstream_with_the_event_id";
    let Some(nats) = Nats::available(test).await else {
        return;
    };
    let sink = format!("nats:{}", nats.url);
    let app = TestApp::spawn_with(
        Db::Sqlite,
        &[
            ("EVENT_SINK", &sink),
            ("NATS_STREAM", &nats.stream),
            ("NATS_SUBJECT_PREFIX", &nats.prefix),
        ],
    )
    .await;
    let tenant = a_tenant(&app, "natsy").await;
    provision(&app, &tenant, &subscription("PREMIUM")).await;
    let messages = nats.wait_for(1).await;
    let (subject, id, event) = &messages[0];
    assert_eq!(subject, &format!("{}.TENANT_PROVISIONING", nats.prefix));
    assert_eq!(id, event["id"].as_str().unwrap());
    assert_eq!(event["tenant"]["id"], tenant);
    assert_eq!(event["isolation"], "silo");
}

/// The stream's de-duplication window outlasts the relay's lease: an event published, then
/// published again after its relay died before marking it delivered (at most a lease later), is
/// dropped by JetStream as a duplicate. Checked on the window tms gives a stream it creates, on a
/// stream created earlier with JetStream's default window (2 minutes, then no longer than the
/// lease that was 2 minutes too), which tms widens, and by publishing one event twice.
#[tokio::test]
async fn the_nats_stream_drops_a_redelivery_after_a_lease() {
    use tms::events::Deliver;
    let test = "the_nats_stream_drops_a_redelivery_after_a_lease";
    let (Some(fresh), Some(older)) = (Nats::available(test).await, Nats::available(test).await)
    else {
        return;
    };
    let client = async_nats::connect(older.url.as_str()).await.unwrap();
    let jetstream = async_nats::jetstream::new(client);
    let created = jetstream
        .get_or_create_stream(async_nats::jetstream::stream::Config {
            name: older.stream.clone(),
            subjects: vec![format!("{}.>", older.prefix)],
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        created.cached_info().config.duplicate_window,
        Duration::from_secs(120),
        "JetStream's default window"
    );
    let wanted = Duration::from_secs(600);
    for nats in [&fresh, &older] {
        let storage = Storage::new(Db::Sqlite);
        let config = storage.config(&[
            ("EVENT_SINK", &format!("nats:{}", nats.url)),
            ("NATS_STREAM", &nats.stream),
            ("NATS_SUBJECT_PREFIX", &nats.prefix),
        ]);
        let sink = tms::events::sinks::Sink::from_config(
            &config,
            "http://127.0.0.1:9",
            tms::clock::Clock::system(),
        )
        .unwrap();
        let id = uuid::Uuid::new_v4();
        let event = json!({"id": id.to_string(), "type": "TENANT_SUSPENDED", "reason": null});
        sink.deliver(id, &event).await.unwrap();
        let mut stream = jetstream.get_stream(&nats.stream).await.unwrap();
        let window = stream.info().await.unwrap().config.duplicate_window;
        assert_eq!(window, wanted, "the window of {}", nats.stream);
        assert!(window >= 2 * tms::events::RELAY_LEASE);
        // The relay died before marking it delivered: the event is published again.
        sink.deliver(id, &event).await.unwrap();
        let messages = nats.messages().await;
        assert_eq!(messages.len(), 1, "{messages:?}");
        assert_eq!(messages[0].1, id.to_string());
    }
}

/// NATS unreachable while an event is pending, and the service stopped before it could publish:
/// the event stays in the outbox and is published once NATS is back, by the restarted service.
#[tokio::test]
async fn events_survive_an_unreachable_nats_and_a_restart() {
    let test = "events_survive_an_unreachable_nats_and_a_restart";
    let Some(nats) = Nats::available(test).await else {
        return;
    };
    let target: SocketAddr = url::Url::parse(&nats.url)
        .ok()
        .and_then(|u| Some(format!("{}:{}", u.host_str()?, u.port().unwrap_or(4222))))
        .and_then(|a| a.parse().ok())
        .expect("TMS_TEST_NATS_URL names an IP address");
    let proxy = FaultProxy::start(target).await;
    proxy.cut();
    let sink = format!("nats:nats://127.0.0.1:{}", proxy.port());
    let settings = [
        ("EVENT_SINK", sink.as_str()),
        ("NATS_STREAM", nats.stream.as_str()),
        ("NATS_SUBJECT_PREFIX", nats.prefix.as_str()),
    ];
    let app = TestApp::spawn_with(Db::Sqlite, &settings).await;
    let tenant = a_tenant(&app, "outage").await;
    provision(&app, &tenant, &subscription("BASIC")).await;

    // The attempt fails and is recorded; the event waits in the outbox.
    let db = tms::store::Db::connect(&app.config).await.unwrap();
    let deadline = Instant::now() + PATIENCE;
    loop {
        let pending = tms::events::pending(&mut db.conn(), "event").await.unwrap();
        let failed = pending == 1 && {
            let rows = common_failed_rows(&db).await;
            rows > 0
        };
        if failed {
            break;
        }
        assert!(Instant::now() < deadline, "no failed attempt recorded");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    db.close().await;

    // The service stops with the event unpublished; NATS comes back; a new instance on the same
    // database publishes it.
    let app = app.restart_with(&settings).await;
    proxy.restore().await;
    let messages = nats.wait_for(1).await;
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0].2["tenant"]["id"], tenant);
    drop(app);
}

/// How many outbox rows of the event topic failed at least once.
async fn common_failed_rows(db: &tms::store::Db) -> usize {
    let sql = "SELECT COUNT(*) FROM outbox WHERE topic = 'event' AND state = 'failed'";
    let count: i64 = match db.pool() {
        tms::store::Pool::Sqlite(pool) => sqlx::query_scalar(sql).fetch_one(pool).await.unwrap(),
        tms::store::Pool::Postgres(pool) => sqlx::query_scalar(sql).fetch_one(pool).await.unwrap(),
    };
    count as usize
}
