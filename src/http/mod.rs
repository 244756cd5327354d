//! The HTTP surface: router assembly, the middleware stack (request ids, tracing, panics, timeout,
//! body limit; rate limits and `Idempotency-Key` on their groups of routes), the LoopBack error
//! body on every failure, and the project's own extractors.

mod audit;
pub mod auth;
mod collections;
mod docs;
pub mod error;
mod funnel;
pub mod idempotency;
mod identity;
mod invoices;
pub mod metrics;
mod money_text;
mod onboarding;
pub mod openapi;
mod ping;
mod provisioning;
pub mod rate_limit;
pub mod server;
mod state;

pub use state::AppState;

use std::any::Any;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, FromRequest, FromRequestParts, MatchedPath, Request};
use axum::http::{HeaderName, Response, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::IntoResponse;
use tower::ServiceBuilder;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

use crate::http::error::AppError;

pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The whole application router with its middleware.
pub fn router(state: AppState) -> Router {
    let body_limit = state.config.request_body_limit;
    let timeout = state.config.request_timeout;
    let counted = state.metrics.clone();
    let public_limit = rate_limit::RateLimit::new(
        state.kv.clone(),
        state.config.public_api_max_attempts,
        "public",
        state.config.trusted_proxies.clone(),
    )
    .with_clock(state.clock.clone());
    let webhook_limit = rate_limit::RateLimit::new(
        state.kv.clone(),
        state.config.webhook_api_max_attempts,
        "webhook",
        state.config.trusted_proxies.clone(),
    )
    .with_clock(state.clock.clone());
    // Every POST route takes an Idempotency-Key. On the rate-limited groups the limit comes
    // first: a replay counts as a request, and a client over the limit never reaches the
    // records.
    let keyed = |callers| {
        middleware::from_fn_with_state(
            idempotency::Idempotent::new(state.clone(), callers),
            idempotency::enforce,
        )
    };
    let routes = Router::new()
        .merge(
            funnel::public_router()
                .layer(keyed(idempotency::Callers::Anyone))
                .layer(middleware::from_fn_with_state(
                    public_limit,
                    rate_limit::enforce,
                )),
        )
        .merge(
            provisioning::webhook_router()
                .merge(identity::router())
                .layer(keyed(idempotency::Callers::Anyone))
                .layer(middleware::from_fn_with_state(
                    webhook_limit,
                    rate_limit::enforce,
                )),
        )
        .merge(
            Router::new()
                .merge(provisioning::router())
                .merge(collections::router())
                .merge(invoices::router())
                .merge(onboarding::router())
                .merge(audit::router())
                .layer(keyed(idempotency::Callers::TokenHolders)),
        )
        .merge(ping::router())
        .merge(docs::router())
        .merge(metrics::router())
        .fallback(unknown_route)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state);
    with_middleware(routes, body_limit, timeout)
        .layer(middleware::from_fn_with_state(counted, metrics::record))
}

/// The middleware every route gets: request id (generated or passed through, echoed back),
/// request span and log line, LoopBack bodies for errors from below the handlers, panics
/// answered with a bare 500, the request timeout (503) and the body limit (413).
pub fn with_middleware(routes: Router, body_limit: usize, timeout: Duration) -> Router {
    routes.layer(
        ServiceBuilder::new()
            .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
            .layer(
                TraceLayer::new_for_http()
                    .make_span_with(|request: &Request| {
                        let route = request
                            .extensions()
                            .get::<MatchedPath>()
                            .map(|p| p.as_str())
                            .unwrap_or_default();
                        let request_id = request
                            .headers()
                            .get(REQUEST_ID)
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or("");
                        if !crate::telemetry::enabled() {
                            return tracing::info_span!(
                                "request",
                                method = %request.method(),
                                route,
                                path = %request.uri().path(),
                                request_id,
                            );
                        }
                        // Exported: the route template, never the raw path (it carries ids).
                        let span = tracing::info_span!(
                            target: crate::telemetry::TARGET,
                            "request",
                            method = %request.method(),
                            route,
                            request_id,
                            trace_id = tracing::field::Empty,
                            span_id = tracing::field::Empty,
                            otel.name = tracing::field::Empty,
                            otel.kind = tracing::field::Empty,
                        );
                        crate::telemetry::continue_request(
                            &span,
                            request.headers(),
                            request.method().as_str(),
                            route,
                        );
                        span
                    })
                    .on_request(())
                    .on_response(
                        |response: &Response<Body>, latency: Duration, span: &tracing::Span| {
                            crate::telemetry::request_finished(span, response.status().as_u16());
                            tracing::info!(
                                status = response.status().as_u16(),
                                latency_ms = latency.as_secs_f64() * 1000.0,
                                "request finished"
                            );
                        },
                    ),
            )
            .layer(PropagateRequestIdLayer::new(REQUEST_ID))
            .layer(middleware::from_fn(loopback_error_bodies))
            .layer(CatchPanicLayer::custom(panic_response))
            .layer(TimeoutLayer::with_status_code(
                StatusCode::SERVICE_UNAVAILABLE,
                timeout,
            ))
            .layer(DefaultBodyLimit::max(body_limit)),
    )
}

async fn unknown_route(request: Request) -> AppError {
    AppError::NotFound(format!(
        "Endpoint \"{} {}\" not found.",
        request.method(),
        request.uri().path()
    ))
}

async fn method_not_allowed() -> AppError {
    AppError::MethodNotAllowed
}

/// The 405 of a guarded route: a caller without valid credentials gets 401 first (the
/// credentials are checked before anything else on a guarded route).
pub(crate) async fn authenticated_method_not_allowed(_: crate::auth::Principal) -> AppError {
    AppError::MethodNotAllowed
}

fn panic_response(_: Box<dyn Any + Send + 'static>) -> Response<Body> {
    tracing::error!("a request handler panicked");
    AppError::Internal(anyhow::anyhow!("handler panicked")).into_response()
}

/// Gives every error response that did not come from `AppError` (timeouts from the middleware
/// stack, for instance) the LoopBack body, so clients see one error shape everywhere.
async fn loopback_error_bodies(request: Request, next: Next) -> Response<Body> {
    let response = next.run(request).await;
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let error = match status {
        StatusCode::SERVICE_UNAVAILABLE => {
            AppError::unavailable("The request took too long and was cancelled.")
        }
        StatusCode::PAYLOAD_TOO_LARGE => AppError::PayloadTooLarge,
        StatusCode::METHOD_NOT_ALLOWED => AppError::MethodNotAllowed,
        StatusCode::NOT_FOUND => AppError::NotFound("Not Found".into()),
        StatusCode::INTERNAL_SERVER_ERROR => {
            AppError::Internal(anyhow::anyhow!("unexpected error response"))
        }
        other => AppError::BadRequest(other.canonical_reason().unwrap_or("Bad Request").into()),
    };
    let mut rewritten = error.into_response();
    *rewritten.status_mut() = status;
    rewritten
}

/// A JSON request body whose rejections carry the LoopBack error body (400 for malformed JSON,
/// 413 for too large, 415 for a wrong content type, 422 for a body of the wrong shape).
#[derive(Debug, Clone, Copy, Default)]
pub struct Json<T>(pub T);

impl<T, S> FromRequest<S> for Json<T>
where
    axum::Json<T>: FromRequest<S, Rejection = JsonRejection>,
    S: Send + Sync,
{
    type Rejection = AppError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(value)) => Ok(Self(value)),
            Err(rejection) => Err(json_rejection(rejection)),
        }
    }
}

impl<T: serde::Serialize> IntoResponse for Json<T> {
    fn into_response(self) -> axum::response::Response {
        axum::Json(self.0).into_response()
    }
}

/// An optional JSON request body: no body at all (nothing but whitespace, and no content type)
/// is `None`; anything else is read as [`Json`], with its rejections.
#[derive(Debug, Clone, Default)]
pub struct OptionalJson<T>(pub Option<T>);

impl<T, S> FromRequest<S> for OptionalJson<T>
where
    axum::Json<T>: FromRequest<S, Rejection = JsonRejection>,
    S: Send + Sync,
{
    type Rejection = AppError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        if req.headers().contains_key(axum::http::header::CONTENT_TYPE) {
            return Json::<T>::from_request(req, state)
                .await
                .map(|Json(value)| Self(Some(value)));
        }
        let bytes = axum::body::Bytes::from_request(req, state)
            .await
            .map_err(|err| {
                if err.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    AppError::PayloadTooLarge
                } else {
                    AppError::BadRequest(err.body_text())
                }
            })?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            Ok(Self(None))
        } else {
            Err(AppError::UnsupportedMediaType(
                "Content-Type must be application/json".into(),
            ))
        }
    }
}

fn json_rejection(rejection: JsonRejection) -> AppError {
    match rejection {
        JsonRejection::JsonSyntaxError(err) => AppError::MalformedJson(format!(
            "Malformed JSON in request body: {}",
            std::error::Error::source(&err)
                .map(|s| s.to_string())
                .unwrap_or_else(|| err.body_text())
        )),
        JsonRejection::JsonDataError(err) => {
            AppError::validation(crate::http::error::ValidationDetail::new(
                "",
                "type",
                std::error::Error::source(&err)
                    .map(|s| s.to_string())
                    .unwrap_or_else(|| err.body_text()),
                serde_json::Value::Null,
            ))
        }
        JsonRejection::MissingJsonContentType(_) => {
            AppError::UnsupportedMediaType("Content-Type must be application/json".into())
        }
        JsonRejection::BytesRejection(err) if err.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            AppError::PayloadTooLarge
        }
        other => AppError::BadRequest(other.body_text()),
    }
}

/// Path parameters with the LoopBack error body on rejection.
pub struct Path<T>(pub T);

impl<T, S> FromRequestParts<S> for Path<T>
where
    axum::extract::Path<T>: FromRequestParts<S, Rejection = PathRejection>,
    S: Send + Sync,
{
    type Rejection = AppError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, Self::Rejection> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Path(v)| Self(v))
            .map_err(|e| AppError::BadRequest(e.body_text()))
    }
}

/// Query parameters with the LoopBack error body on rejection.
pub struct Query<T>(pub T);

impl<T, S> FromRequestParts<S> for Query<T>
where
    axum::extract::Query<T>: FromRequestParts<S, Rejection = QueryRejection>,
    S: Send + Sync,
{
    type Rejection = AppError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, Self::Rejection> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Query(v)| Self(v))
            .map_err(|e| AppError::BadRequest(e.body_text()))
    }
}

/// The OpenAPI entries of the resource routes.
pub fn documented_routes() -> Vec<crate::http::openapi::DocumentedRoute> {
    let mut routes = collections::documented_routes();
    routes.extend(onboarding::documented_routes());
    routes.extend(funnel::documented_routes());
    routes.extend(provisioning::documented_routes());
    routes.extend(identity::documented_routes());
    routes.extend(invoices::documented_routes());
    routes.extend(audit::documented_routes());
    routes
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::to_bytes;
    use axum::routing::{get, post};
    use tower::ServiceExt;

    fn app() -> Router {
        let routes = Router::new()
            .route(
                "/panic",
                get(|| async {
                    panic!("secret internals");
                    #[allow(unreachable_code)]
                    ""
                }),
            )
            .route(
                "/slow",
                get(|| async {
                    tokio::time::sleep(Duration::from_secs(5)).await;
                    "late"
                }),
            )
            .route(
                "/echo",
                post(|Json(v): Json<serde_json::Value>| async { Json(v) }),
            );
        with_middleware(routes, 64, Duration::from_millis(100))
    }

    async fn call(request: Request) -> (StatusCode, axum::http::HeaderMap, serde_json::Value) {
        let response = app().oneshot(request).await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = to_bytes(response.into_body(), 1 << 20).await.unwrap();
        (status, headers, serde_json::from_slice(&bytes).unwrap())
    }

    fn get_request(path: &str) -> Request {
        Request::builder().uri(path).body(Body::empty()).unwrap()
    }

    #[tokio::test]
    async fn a_panic_is_a_bare_500_with_a_request_id() {
        let (status, headers, body) = call(get_request("/panic")).await;
        assert_eq!(status, 500);
        assert_eq!(body["error"]["message"], "Internal Server Error");
        assert!(!body.to_string().contains("secret"));
        assert!(headers.contains_key(REQUEST_ID));
    }

    #[tokio::test]
    async fn a_slow_request_times_out_with_503() {
        let (status, _, body) = call(get_request("/slow")).await;
        assert_eq!(status, 503);
        assert_eq!(body["error"]["name"], "ServiceUnavailableError");
    }

    #[tokio::test]
    async fn bodies_over_the_limit_are_413() {
        let request = Request::builder()
            .method("POST")
            .uri("/echo")
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(format!("\"{}\"", "x".repeat(100))))
            .unwrap();
        let (status, _, body) = call(request).await;
        assert_eq!(status, 413);
        assert_eq!(body["error"]["name"], "PayloadTooLargeError");
    }

    #[tokio::test]
    async fn a_given_request_id_is_echoed() {
        let request = Request::builder()
            .uri("/nope")
            .header(REQUEST_ID, "abc-123")
            .body(Body::empty())
            .unwrap();
        let (status, headers, _) = call(request).await;
        assert_eq!(status, 404);
        assert_eq!(headers[REQUEST_ID], "abc-123");
    }
}
