//! The spans tms exports and the W3C trace context (`traceparent`, `tracestate`) it takes and
//! passes on. Every function here returns at once (a disabled span, no header) when traces are
//! off.

use std::collections::HashMap;

use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::{Status, TraceContextExt};
use opentelemetry_http::{HeaderExtractor, HeaderInjector};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tracing::Instrument;
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use super::enabled;

/// A W3C trace context as text: what an event carries and a provisioning keeps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceParent {
    pub traceparent: String,
    pub tracestate: Option<String>,
}

fn propagator() -> TraceContextPropagator {
    TraceContextPropagator::new()
}

// Contexts are extracted into an empty context: `extract` would fall back to the current one
// (the span being worked in), so a missing or invalid `traceparent` would look valid.

/// Makes `span` (a request's, not yet entered) continue the caller's trace when the request
/// carries a valid `traceparent`, and names it after the route template. Records `trace_id`
/// and `span_id` on it for the log lines.
pub fn continue_request(span: &Span, headers: &axum::http::HeaderMap, method: &str, route: &str) {
    if !enabled() {
        return;
    }
    let name = if route.is_empty() {
        method.to_string()
    } else {
        format!("{method} {route}")
    };
    span.record("otel.name", name.as_str());
    span.record("otel.kind", "server");
    let parent = propagator()
        .extract_with_context(&opentelemetry::Context::new(), &HeaderExtractor(headers));
    if parent.span().span_context().is_valid() {
        let _ = span.set_parent(parent);
    }
    span.set_attribute("http.request.method", method.to_string());
    if !route.is_empty() {
        span.set_attribute("http.route", route.to_string());
    }
    record_ids(span);
}

/// Whether `headers` hold a valid `traceparent` (always false when traces are off).
pub fn carries_trace(headers: &axum::http::HeaderMap) -> bool {
    enabled()
        && propagator()
            .extract_with_context(&opentelemetry::Context::new(), &HeaderExtractor(headers))
            .span()
            .span_context()
            .is_valid()
}

/// Records the answer's status on a request span; a 5xx marks it failed.
pub fn request_finished(span: &Span, status: u16) {
    if !enabled() {
        return;
    }
    span.set_attribute("http.response.status_code", i64::from(status));
    if status >= 500 {
        span.set_status(Status::error(format!("answered {status}")));
    }
}

/// Records the OpenTelemetry ids of `span` in its `trace_id` and `span_id` fields (shown in
/// the log lines of everything under it).
fn record_ids(span: &Span) {
    let cx = span.context();
    let otel = cx.span();
    let ids = otel.span_context();
    if ids.is_valid() {
        span.record("trace_id", tracing::field::display(ids.trace_id()));
        span.record("span_id", tracing::field::display(ids.span_id()));
    }
}

/// The trace context of the current span, to store with what it causes (an event, a
/// provisioning); `None` when traces are off.
pub fn current_traceparent() -> Option<TraceParent> {
    if !enabled() {
        return None;
    }
    let mut carrier = HashMap::new();
    propagator().inject_context(&Span::current().context(), &mut carrier);
    let traceparent = carrier.remove("traceparent")?;
    Some(TraceParent {
        traceparent,
        tracestate: carrier.remove("tracestate").filter(|s| !s.is_empty()),
    })
}

/// Adds the current span's trace context to `message` (an event, a mail) as `traceparent` and
/// `tracestate`, so its delivery joins the trace; nothing when traces are off.
pub fn stamp_message(message: &mut serde_json::Map<String, serde_json::Value>) {
    if let Some(trace) = current_traceparent() {
        message.insert("traceparent".into(), trace.traceparent.into());
        if let Some(state) = trace.tracestate {
            message.insert("tracestate".into(), state.into());
        }
    }
}

/// The span of one unit of scheduled work (`name`: billing a tenant, say) done for `tenant`: a
/// child of the stored trace context `continues` (the request that started what it finishes),
/// else the root of a trace of its own, as no request caused it; what it writes (events, mail)
/// carries its trace. Disabled when traces are off.
pub fn job_span(name: &'static str, tenant: uuid::Uuid, continues: Option<&str>) -> Span {
    if !enabled() {
        return Span::none();
    }
    let span = tracing::info_span!(
        target: super::TARGET,
        parent: None,
        "job",
        otel.name = name,
        otel.kind = "internal",
        tenant.id = %tenant,
        trace_id = tracing::field::Empty,
        span_id = tracing::field::Empty,
    );
    if let Some(parent) = continues.and_then(|tp| context_of(tp, None)) {
        let _ = span.set_parent(parent);
    }
    record_ids(&span);
    span
}

/// Adds the current span's `traceparent` (and `tracestate`) to outbound headers.
pub fn inject_headers(headers: &mut axum::http::HeaderMap) {
    if enabled() {
        propagator().inject_context(&Span::current().context(), &mut HeaderInjector(headers));
    }
}

fn context_of(traceparent: &str, tracestate: Option<&str>) -> Option<opentelemetry::Context> {
    let mut carrier = HashMap::from([("traceparent".to_string(), traceparent.to_string())]);
    if let Some(state) = tracestate {
        carrier.insert("tracestate".to_string(), state.to_string());
    }
    let cx = propagator().extract_with_context(&opentelemetry::Context::new(), &carrier);
    cx.span().span_context().is_valid().then_some(cx)
}

/// The span `span` makes, a child of the stored trace context `traceparent` (when there is one)
/// and linked to the span current now: work done later on behalf of an earlier request (a pipeline's result)
/// joins that request's trace.
pub fn resumed_span(span: impl FnOnce() -> Span, traceparent: Option<&str>) -> Span {
    if !enabled() {
        return Span::none();
    }
    let span = span();
    let Some(parent) = traceparent.and_then(|tp| context_of(tp, None)) else {
        return span;
    };
    let _ = span.set_parent(parent);
    let here = Span::current().context();
    let here = here.span().span_context().clone();
    if here.is_valid() {
        span.add_link(here);
    }
    record_ids(&span);
    span
}

/// The span of one delivery of an outbox message, a child of the trace context the message
/// carries (`traceparent` in an event); disabled when traces are off.
pub fn delivery_span(
    topic: &str,
    id: uuid::Uuid,
    attempt: u32,
    payload: &serde_json::Value,
) -> Span {
    if !enabled() {
        return Span::none();
    }
    let span = tracing::info_span!(
        target: super::TARGET,
        "outbox delivery",
        otel.name = %format!("{topic} publish"),
        otel.kind = "producer",
        messaging.destination.name = topic,
        messaging.message.id = %id,
        attempt,
        trace_id = tracing::field::Empty,
        span_id = tracing::field::Empty,
    );
    let text = |key: &str| payload.get(key).and_then(serde_json::Value::as_str);
    if let Some(parent) = text("traceparent").and_then(|tp| context_of(tp, text("tracestate"))) {
        let _ = span.set_parent(parent);
    }
    record_ids(&span);
    span
}

/// The span of one SQL statement under the current span: the database system, the statement
/// kind and its table (from `sql`'s text; never a bound value). Disabled when traces are off
/// or nothing traced is running (the background loops' statements make no traces of their own).
pub fn sql_span(system: &'static str, sql: &str) -> Span {
    if !enabled() || Span::current().is_none() {
        return Span::none();
    }
    let (operation, table) = summarize(sql);
    let name = if table.is_empty() {
        operation.to_string()
    } else {
        format!("{operation} {table}")
    };
    tracing::trace_span!(
        target: super::TARGET,
        "sql",
        otel.name = %name,
        otel.kind = "client",
        db.system = system,
        db.system.name = system,
        db.operation.name = operation,
        db.collection.name = table,
    )
}

/// The statement kind (`SELECT`, `INSERT`, …) and the first table it names.
pub fn summarize(sql: &str) -> (&'static str, &str) {
    let mut words = sql.split_ascii_whitespace();
    let first = words.next().unwrap_or_default();
    let operation = [
        "SELECT", "INSERT", "UPDATE", "DELETE", "WITH", "BEGIN", "COMMIT",
    ]
    .into_iter()
    .find(|op| first.eq_ignore_ascii_case(op))
    .unwrap_or("SQL");
    let after = |keyword: &str| {
        let mut words = sql.split_ascii_whitespace();
        words.find(|w| w.eq_ignore_ascii_case(keyword))?;
        words.next()
    };
    let table = match operation {
        "SELECT" | "DELETE" => after("FROM"),
        "INSERT" => after("INTO"),
        "UPDATE" => sql.split_ascii_whitespace().nth(1),
        _ => None,
    }
    .unwrap_or_default();
    let table = table
        .split('(')
        .next()
        .unwrap_or_default()
        .trim_matches(|c: char| c == '"' || c == '`' || c == ',' || c == ')');
    (operation, table)
}

/// Sends an outbound HTTP request in a client span (method, server address and port, status),
/// with the span's `traceparent`; as `builder.send()` when traces are off. The URL's path and
/// query are left out of the span: they can carry tokens.
pub async fn client_send(builder: reqwest::RequestBuilder) -> reqwest::Result<reqwest::Response> {
    if !enabled() {
        return builder.send().await;
    }
    let (client, request) = builder.build_split();
    let mut request = request?;
    let span = tracing::info_span!(
        target: super::TARGET,
        "http client",
        otel.name = %request.method(),
        otel.kind = "client",
        http.request.method = %request.method(),
        server.address = request.url().host_str().unwrap_or_default(),
        server.port = request.url().port_or_known_default().unwrap_or_default(),
    );
    propagator().inject_context(&span.context(), &mut HeaderInjector(request.headers_mut()));
    let answer = client.execute(request).instrument(span.clone()).await;
    match &answer {
        Ok(response) => {
            let status = response.status().as_u16();
            span.set_attribute("http.response.status_code", i64::from(status));
            if status >= 500 {
                span.set_status(Status::error(format!("answered {status}")));
            }
        }
        Err(err) => span.set_status(Status::error(if err.is_timeout() {
            "timed out"
        } else {
            "no answer"
        })),
    }
    answer
}

/// Runs `work` (an SMTP exchange, say) in a client span named `name` towards `server`.
pub async fn client_span<T, E>(
    name: &'static str,
    server: &str,
    work: impl Future<Output = Result<T, E>>,
) -> Result<T, E> {
    if !enabled() {
        return work.await;
    }
    let span = tracing::info_span!(
        target: super::TARGET,
        "client",
        otel.name = name,
        otel.kind = "client",
        server.address = server,
    );
    let done = work.instrument(span.clone()).await;
    if done.is_err() {
        span.set_status(Status::error("failed"));
    }
    done
}

#[cfg(test)]
mod tests {
    use super::summarize;

    #[test]
    fn statements_are_summarised_by_kind_and_table() {
        assert_eq!(
            summarize("SELECT \"id\", \"name\" FROM \"tenants\" WHERE \"id\" = $1"),
            ("SELECT", "tenants")
        );
        assert_eq!(
            summarize("INSERT INTO outbox (id, topic) VALUES ($1, $2)"),
            ("INSERT", "outbox")
        );
        assert_eq!(
            summarize("UPDATE tenant_provisioning SET reason = $2"),
            ("UPDATE", "tenant_provisioning")
        );
        assert_eq!(summarize("delete from kv where k = $1"), ("DELETE", "kv"));
        assert_eq!(
            summarize("WITH x AS (SELECT 1) SELECT * FROM x"),
            ("WITH", "")
        );
        assert_eq!(summarize("SELECT 1"), ("SELECT", ""));
    }
}
