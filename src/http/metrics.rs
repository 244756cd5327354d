//! `GET /metrics` (`docs/operations.md`, "Metrics"): the Prometheus text of the service's
//! [`Metrics`](crate::metrics::Metrics), with the database read at the scrape. Guarded: on the
//! service's port it needs `Authorization: Bearer <METRICS_TOKEN>` (open only in development
//! when no token is set); with `METRICS_ADDR` it is also served alone on that address, for a
//! scraper on an internal network.

use std::time::Instant;

use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderMap, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use secrecy::ExposeSecret;
use subtle::ConstantTimeEq;

use super::AppState;
use super::error::{AppError, AppResult};
use crate::config::Environment;
use crate::domain::tenant::TenantStatus;
use crate::metrics::{CONTENT_TYPE, Metrics, Scraped};
use crate::store::stats;

/// `/metrics` on the service's port, behind its guard.
pub fn router() -> Router<AppState> {
    Router::new().route("/metrics", get(guarded))
}

/// `/metrics` alone, for the `METRICS_ADDR` listener (a network the operator chose).
pub fn dedicated_router(state: AppState) -> Router {
    Router::new()
        .route("/metrics", get(scrape))
        .with_state(state)
}

async fn guarded(State(state): State<AppState>, headers: HeaderMap) -> AppResult<Response> {
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim());
    match (&state.config.metrics_token, given) {
        (Some(token), Some(given))
            if bool::from(token.expose_secret().as_bytes().ct_eq(given.as_bytes())) => {}
        (Some(_), _) => return Err(AppError::Unauthorized("Bearer realm=\"metrics\"".into())),
        (None, _) if state.config.env == Environment::Dev => {}
        // Not enabled on this port: as if there were no such route.
        (None, _) => {
            return Err(AppError::NotFound(
                "Endpoint \"GET /metrics\" not found.".into(),
            ));
        }
    }
    scrape(State(state)).await
}

async fn scrape(State(state): State<AppState>) -> AppResult<Response> {
    let mut conn = state.db.conn();
    let outbox = stats::outbox_backlog(&mut conn).await?;
    let counted = stats::tenants_by_status(&mut conn).await?;
    let tenants = TenantStatus::ALL
        .into_iter()
        .map(|status| {
            let n = counted
                .iter()
                .find(|(code, _)| *code == status.code())
                .map_or(0, |(_, n)| *n);
            (status.name(), n)
        })
        .collect();
    let text = state.metrics.render(&Scraped {
        now: state.clock.now(),
        pool: state.db.pool_stats(),
        outbox,
        tenants,
        audit_records: crate::store::audit::written(),
    });
    Ok(([(header::CONTENT_TYPE, CONTENT_TYPE)], text).into_response())
}

/// Counts every request by its route template, method and status, with its latency.
pub async fn record(State(metrics): State<Metrics>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().to_string();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string());
    let response = next.run(request).await;
    let status = response.status();
    metrics.request(
        route.as_deref(),
        &method,
        status.as_u16(),
        started.elapsed(),
    );
    response
}
