//! `GET /ping` (the original's greeting, date, url and headers) and the health probes.

use axum::Router;
use axum::extract::{OriginalUri, State};
use axum::http::HeaderMap;
use axum::routing::get;
use serde_json::{Map, Value, json};

use super::AppState;
use super::Json;
use crate::http::error::{AppError, AppResult};

/// Request headers never echoed back by `/ping`.
const HIDDEN_HEADERS: [&str; 4] = [
    "authorization",
    "cookie",
    "x-signature",
    "proxy-authorization",
];

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/ping", get(ping))
        .route("/health/live", get(live))
        .route("/health/ready", get(ready))
}

async fn ping(OriginalUri(uri): OriginalUri, headers: HeaderMap) -> Json<Value> {
    let echoed: Map<String, Value> = headers
        .iter()
        .filter(|(name, _)| !HIDDEN_HEADERS.contains(&name.as_str()))
        .map(|(name, value)| {
            (
                name.to_string(),
                Value::from(String::from_utf8_lossy(value.as_bytes()).into_owned()),
            )
        })
        .collect();
    Json(json!({
        "greeting": "Hello from tms",
        "date": chrono::Utc::now().to_rfc2822(),
        "url": uri.to_string(),
        "headers": echoed,
    }))
}

async fn live() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

/// Ready when the database answers.
async fn ready(State(state): State<AppState>) -> AppResult<Json<Value>> {
    match state.db.ping().await {
        Ok(()) => Ok(Json(json!({
            "status": "ok",
            "database": state.db.backend_name(),
        }))),
        Err(err) => {
            tracing::warn!(error = %err, "readiness check: database unreachable");
            Err(AppError::unavailable("database unreachable"))
        }
    }
}
