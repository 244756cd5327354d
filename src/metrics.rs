//! What tms counts for Prometheus (`docs/operations.md`, "Metrics"), one registry per service
//! (no global: every test server counts alone). Counters and histograms are kept as things
//! happen — requests, deliveries, provisioning outcomes, billing runs; the database pool, the
//! outbox backlog and the tenants by status are read when `GET /metrics` is scraped
//! ([`Metrics::render`]).

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::store::PoolStats;
use crate::store::stats::OutboxBacklog;

/// The content type of [`Metrics::render`]'s text.
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// Request latencies, seconds: from a millisecond to the request timeout.
const LATENCY_BUCKETS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];
/// Provisioning and offboarding durations, seconds: from a second to a day.
const OPERATION_BUCKETS: [f64; 10] = [
    1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 1800.0, 3600.0, 14_400.0, 86_400.0,
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    /// The matched route template (`/tenants/{id}`), never the raw path; `unmatched` else.
    route: String,
    method: String,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DeliveryLabels {
    /// The outbox topic: `mail` or `event`.
    topic: String,
    /// `delivered` or `failed`.
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OperationLabels {
    /// `provision` or `deprovision`.
    operation: &'static str,
    /// `succeeded`, `failed` or `timed_out`.
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    /// `completed` or `failed`.
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabels {
    state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BacklogLabels {
    topic: String,
    /// `pending` or `failed`.
    state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TopicLabels {
    topic: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TenantLabels {
    /// The status name (`ACTIVE`); its code is the wire value.
    status: &'static str,
}

/// How a provisioning or offboarding ended, for [`Metrics::operation_finished`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OperationOutcome {
    Succeeded,
    Failed,
    TimedOut,
}

impl OperationOutcome {
    fn as_str(self) -> &'static str {
        match self {
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::TimedOut => "timed_out",
        }
    }
}

/// The registry and the metrics in it; cheap to clone (shared).
#[derive(Clone)]
pub struct Metrics(Arc<Inner>);

struct Inner {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    request_seconds: Family<RequestLabels, Histogram>,
    deliveries: Family<DeliveryLabels, Counter>,
    operations: Family<OperationLabels, Histogram>,
    billing_runs: Family<ResultLabels, Counter>,
    invoices_issued: Counter,
    audit_records: Counter,
    pool: Family<StateLabels, Gauge>,
    pool_max: Gauge,
    outbox_rows: Family<BacklogLabels, Gauge>,
    outbox_oldest: Family<TopicLabels, Gauge<f64, std::sync::atomic::AtomicU64>>,
    tenants: Family<TenantLabels, Gauge>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("tms");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "http_requests",
            "HTTP requests answered, by route template, method and status",
            requests.clone(),
        );
        let request_seconds = Family::<RequestLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(LATENCY_BUCKETS)
        });
        registry.register(
            "http_request_duration_seconds",
            "Time to answer an HTTP request, by route template, method and status",
            request_seconds.clone(),
        );
        let deliveries = Family::<DeliveryLabels, Counter>::default();
        registry.register(
            "outbox_deliveries",
            "Outbox deliveries (mail and lifecycle events) by topic and result",
            deliveries.clone(),
        );
        let operations = Family::<OperationLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(OPERATION_BUCKETS)
        });
        registry.register(
            "provisioning_duration_seconds",
            "Provisionings and offboardings from their start to their end, by outcome",
            operations.clone(),
        );
        let billing_runs = Family::<ResultLabels, Counter>::default();
        registry.register(
            "billing_runs",
            "Billing runs of this server, by result",
            billing_runs.clone(),
        );
        let invoices_issued = Counter::default();
        registry.register(
            "billing_invoices_issued",
            "Invoices issued by the billing runs of this server",
            invoices_issued.clone(),
        );
        let audit_records = Counter::default();
        registry.register(
            "audit_records_written",
            "Audit records written by this server (including those of transactions that rolled \
             back)",
            audit_records.clone(),
        );
        let pool = Family::<StateLabels, Gauge>::default();
        registry.register(
            "db_pool_connections",
            "Database connections of the pool, in use or idle",
            pool.clone(),
        );
        let pool_max = Gauge::default();
        registry.register(
            "db_pool_max_connections",
            "The most connections the pool opens (DB_POOL_SIZE); callers wait beyond",
            pool_max.clone(),
        );
        let outbox_rows = Family::<BacklogLabels, Gauge>::default();
        registry.register(
            "outbox_undelivered_rows",
            "Outbox rows not delivered yet, by topic and state (pending, failed)",
            outbox_rows.clone(),
        );
        let outbox_oldest =
            Family::<TopicLabels, Gauge<f64, std::sync::atomic::AtomicU64>>::default();
        registry.register(
            "outbox_oldest_undelivered_age_seconds",
            "Age of the oldest outbox row not delivered yet, by topic",
            outbox_oldest.clone(),
        );
        let tenants = Family::<TenantLabels, Gauge>::default();
        registry.register("tenants", "Live tenants by status", tenants.clone());
        Self(Arc::new(Inner {
            registry,
            requests,
            request_seconds,
            deliveries,
            operations,
            billing_runs,
            invoices_issued,
            audit_records,
            pool,
            pool_max,
            outbox_rows,
            outbox_oldest,
            tenants,
        }))
    }

    /// An HTTP request answered `status` after `elapsed`; `route` is the matched template.
    pub fn request(&self, route: Option<&str>, method: &str, status: u16, elapsed: Duration) {
        let labels = RequestLabels {
            route: route.unwrap_or("unmatched").to_string(),
            method: method.to_string(),
            status,
        };
        self.0
            .request_seconds
            .get_or_create(&labels)
            .observe(elapsed.as_secs_f64());
        self.0.requests.get_or_create(&labels).inc();
    }

    /// An outbox delivery of `topic` ended.
    pub fn delivery(&self, topic: &str, delivered: bool) {
        self.0
            .deliveries
            .get_or_create(&DeliveryLabels {
                topic: topic.to_string(),
                result: if delivered { "delivered" } else { "failed" },
            })
            .inc();
    }

    /// A provisioning (`provision`) or offboarding (`deprovision`) ended after `took`.
    pub fn operation_finished(
        &self,
        operation: &'static str,
        outcome: OperationOutcome,
        took: Duration,
    ) {
        self.0
            .operations
            .get_or_create(&OperationLabels {
                operation,
                outcome: outcome.as_str(),
            })
            .observe(took.as_secs_f64());
    }

    /// A billing run ended: how many invoices it issued, or that it failed.
    pub fn billing_run(&self, issued: Option<usize>) {
        let result = match issued {
            Some(issued) => {
                self.0.invoices_issued.inc_by(issued as u64);
                "completed"
            }
            None => "failed",
        };
        self.0
            .billing_runs
            .get_or_create(&ResultLabels { result })
            .inc();
    }

    /// The text of a scrape: what was counted, with the database's state as `state` gives it.
    pub fn render(&self, state: &Scraped) -> String {
        let inner = &self.0;
        inner
            .pool
            .get_or_create(&StateLabels { state: "in_use" })
            .set(i64::from(state.pool.in_use));
        inner
            .pool
            .get_or_create(&StateLabels { state: "idle" })
            .set(i64::from(state.pool.idle));
        inner.pool_max.set(i64::from(state.pool.max));
        let written = state
            .audit_records
            .saturating_sub(inner.audit_records.get());
        inner.audit_records.inc_by(written);
        // A backlog that emptied since the last scrape must read 0, not its last value.
        inner.outbox_rows.clear();
        inner.outbox_oldest.clear();
        for row in &state.outbox {
            inner
                .outbox_rows
                .get_or_create(&BacklogLabels {
                    topic: row.topic.clone(),
                    state: row.state.clone(),
                })
                .set(row.rows);
            if let Some(oldest) = row.oldest {
                let age = (state.now - oldest).num_milliseconds().max(0) as f64 / 1000.0;
                let gauge = inner.outbox_oldest.get_or_create(&TopicLabels {
                    topic: row.topic.clone(),
                });
                if age > gauge.get() {
                    gauge.set(age);
                }
            }
        }
        for (status, count) in &state.tenants {
            inner
                .tenants
                .get_or_create(&TenantLabels { status })
                .set(*count);
        }
        let mut text = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::prometheus_text::encode(&mut text, &inner.registry);
        text
    }
}

/// A delivery handler whose outcomes are counted under its topic.
pub struct Counted<H> {
    pub topic: &'static str,
    pub handler: H,
    pub metrics: Metrics,
}

impl<H: crate::events::Deliver> crate::events::Deliver for Counted<H> {
    async fn deliver(&self, id: uuid::Uuid, payload: &serde_json::Value) -> anyhow::Result<()> {
        let outcome = self.handler.deliver(id, payload).await;
        self.metrics.delivery(self.topic, outcome.is_ok());
        outcome
    }
}

/// The database's state at a scrape.
#[derive(Debug, Clone)]
pub struct Scraped {
    pub now: chrono::DateTime<chrono::Utc>,
    pub pool: PoolStats,
    pub outbox: Vec<OutboxBacklog>,
    /// (status name, live tenants), every status.
    pub tenants: Vec<(&'static str, i64)>,
    /// Audit records this process has written (`store::audit::written`).
    pub audit_records: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_scrape_shows_what_was_counted_and_the_database() {
        let metrics = Metrics::new();
        metrics.request(Some("/tenants/{id}"), "GET", 200, Duration::from_millis(3));
        metrics.request(None, "GET", 404, Duration::from_millis(1));
        metrics.delivery("event", true);
        metrics.delivery("event", false);
        metrics.operation_finished(
            "provision",
            OperationOutcome::Succeeded,
            Duration::from_secs(7),
        );
        metrics.billing_run(Some(3));
        let now = chrono::Utc::now();
        let text = metrics.render(&Scraped {
            now,
            pool: PoolStats {
                in_use: 2,
                idle: 3,
                max: 10,
            },
            outbox: vec![OutboxBacklog {
                topic: "event".into(),
                state: "pending".into(),
                rows: 4,
                oldest: Some(now - chrono::Duration::seconds(90)),
            }],
            tenants: vec![("ACTIVE", 5), ("PROVISIONING", 1), ("SUSPENDED", 0)],
            audit_records: 7,
        });
        for line in [
            r#"tms_http_requests_total{route="/tenants/{id}",method="GET",status="200"} 1"#,
            r#"tms_http_requests_total{route="unmatched",method="GET",status="404"} 1"#,
            r#"tms_http_request_duration_seconds_bucket{route="/tenants/{id}",method="GET",status="200",le="0.005"} 1"#,
            r#"tms_outbox_deliveries_total{topic="event",result="failed"} 1"#,
            r#"tms_provisioning_duration_seconds_count{operation="provision",outcome="succeeded"} 1"#,
            r#"tms_billing_runs_total{result="completed"} 1"#,
            "tms_billing_invoices_issued_total 3",
            "tms_audit_records_written_total 7",
            r#"tms_db_pool_connections{state="in_use"} 2"#,
            "tms_db_pool_max_connections 10",
            r#"tms_outbox_undelivered_rows{topic="event",state="pending"} 4"#,
            r#"tms_outbox_oldest_undelivered_age_seconds{topic="event"} 90.0"#,
            r#"tms_tenants{status="ACTIVE"} 5"#,
            r#"tms_tenants{status="PROVISIONING"} 1"#,
            r#"tms_tenants{status="SUSPENDED"} 0"#,
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "{line} missing from\n{text}"
            );
        }
        // An emptied backlog reads nothing left, not its last value.
        let text = metrics.render(&Scraped {
            now,
            pool: PoolStats {
                in_use: 0,
                idle: 5,
                max: 10,
            },
            outbox: vec![],
            tenants: vec![],
            audit_records: 0,
        });
        assert!(!text.contains("tms_outbox_undelivered_rows{"), "{text}");
    }
}
