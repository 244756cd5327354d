//! Structured logs: JSON lines in prod, readable text elsewhere (`LOG_FORMAT` overrides), level
//! from `LOG_LEVEL` (or a full `RUST_LOG` filter). With `OTEL_EXPORTER_OTLP_ENDPOINT`, also
//! OpenTelemetry traces over OTLP (`docs/operations.md`, "Traces"): the spans of tms's own code
//! (requests, SQL statements, outbound calls, event deliveries) go to the collector, with
//! the log lines written under them as their span events, and the
//! W3C trace context is taken from requests and passed on (`spans`). Without it no layer is
//! installed and no exporter runs: the span helpers cost one relaxed atomic load.

mod export;
pub mod spans;

use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, Ordering};

use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::Layer;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use crate::config::{Config, Environment};

pub use spans::{
    TraceParent, carries_trace, client_send, client_span, continue_request, current_traceparent,
    delivery_span, inject_headers, job_span, request_finished, resumed_span, sql_span,
    stamp_message,
};

/// Whether traces are exported (set once by [`init`]).
static ENABLED: AtomicBool = AtomicBool::new(false);

/// Whether traces are exported: the span helpers do nothing when they are not.
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// Flushes the spans not yet exported when the process ends: [`Telemetry::shutdown`].
#[must_use = "call shutdown() before the process exits, or the last spans are lost"]
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Exports the spans still queued and stops the exporter (at most the export timeout).
    /// Runs off the async workers: the exporter's thread sends on this runtime.
    pub async fn shutdown(self) {
        let Some(provider) = self.provider else {
            return;
        };
        let done = tokio::task::spawn_blocking(move || provider.shutdown()).await;
        match done {
            Ok(Ok(())) => {}
            Ok(Err(err)) => eprintln!("tms: cannot flush the last spans: {err}"),
            Err(err) => eprintln!("tms: cannot flush the last spans: {err}"),
        }
    }
}

/// The target of the spans tms exports (requests, statements, calls, deliveries): enabled
/// whatever the log level when traces are on.
pub const TARGET: &str = "tms::trace";

/// Installs the global subscriber, with the OpenTelemetry layer when traces are configured.
/// Call once per process, inside the Tokio runtime (the exporter sends on it).
pub fn init(config: &Config) -> Telemetry {
    let (provider, problem) = match config.traces.as_ref().map(export::provider) {
        None => (None, None),
        Some(Ok(provider)) => (Some(provider), None),
        Some(Err(err)) => (None, Some(err)),
    };
    let mut filter = std::env::var("RUST_LOG")
        .ok()
        .and_then(|f| EnvFilter::try_new(f).ok())
        .unwrap_or_else(|| {
            EnvFilter::new(format!(
                "{level},sqlx=warn,tower_http=warn,hyper=warn",
                level = config.log_level
            ))
        });
    if provider.is_some() {
        // One global filter (per-layer filters lose spans beside `tracing::enabled!` checks
        // such as sqlx's): the exported spans pass it whatever the log level.
        if let Ok(directive) = format!("{TARGET}=trace").parse() {
            filter = filter.add_directive(directive);
        }
    }
    let json = match std::env::var("LOG_FORMAT").ok().as_deref() {
        Some("json") => true,
        Some("text") => false,
        _ => config.env == Environment::Prod,
    };
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    let fmt = if json {
        fmt.json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(true)
            .boxed()
    } else {
        fmt.compact().boxed()
    };
    let otel = provider.as_ref().map(|provider| {
        use opentelemetry::trace::TracerProvider as _;
        // The log lines written under a span are its span events.
        tracing_opentelemetry::layer()
            .with_tracer(provider.tracer("tms"))
            .with_location(false)
            .with_threads(false)
            .with_target(false)
    });
    tracing_subscriber::registry()
        .with(filter)
        .with(otel)
        .with(fmt)
        .init();
    if let Some(err) = problem {
        tracing::error!(error = %format!("{err:#}"), "traces are off: cannot start the OTLP exporter");
    }
    if let (Some(traces), Some(_)) = (&config.traces, &provider) {
        ENABLED.store(true, Ordering::Relaxed);
        tracing::info!(endpoint = %crate::config::mask_url_password(&traces.endpoint), protocol = traces.protocol.as_str(),
            service = %traces.service_name, "traces are exported over OTLP");
    }
    Telemetry { provider }
}
