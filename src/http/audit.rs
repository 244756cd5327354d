//! `GET /audit-logs` and `GET /audit-logs/count` (`docs/audit.md`): the audit trail, read with
//! the LoopBack filter, by holders of ViewAuditLog (10224) — never by a lead token.

use axum::Router;
use axum::extract::{RawQuery, State};
use axum::routing::get;
use serde_json::{Value, json};

use super::AppState;
use super::Json;
use super::auth::Require;
use super::collections::{parse_filter, parse_where};
use crate::auth::{Permission, ViewAuditLog};
use crate::domain::audit_trail::AuditReadError;
use crate::http::error::{AppError, AppResult};
use crate::http::openapi::{DocumentedRoute, operation, schema_ref};
use crate::model::AUDIT_LOGS;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/audit-logs", get(find))
        .route("/audit-logs/count", get(count))
}

impl From<AuditReadError> for AppError {
    fn from(err: AuditReadError) -> Self {
        match err {
            AuditReadError::Lead => AppError::Forbidden("NotAllowedAccess".into()),
            AuditReadError::Database(err) => err.into(),
        }
    }
}

async fn find(
    State(state): State<AppState>,
    auth: Require<ViewAuditLog>,
    RawQuery(query): RawQuery,
) -> AppResult<Json<Value>> {
    let trail = state.audit_trail();
    let reader = trail.reader(&auth.principal)?;
    let filter = parse_filter(&state, &AUDIT_LOGS, query.as_deref())?;
    let rows = reader.find(&filter).await?;
    Ok(Json(Value::Array(
        rows.into_iter().map(Value::Object).collect(),
    )))
}

async fn count(
    State(state): State<AppState>,
    auth: Require<ViewAuditLog>,
    RawQuery(query): RawQuery,
) -> AppResult<Json<Value>> {
    let trail = state.audit_trail();
    let reader = trail.reader(&auth.principal)?;
    let where_ = parse_where(&AUDIT_LOGS, query.as_deref())?;
    let count = reader.count(where_.as_ref()).await?;
    Ok(Json(json!({ "count": count })))
}

/// The OpenAPI entries of the audit routes.
pub fn documented_routes() -> Vec<DocumentedRoute> {
    let filter_param = |name: &str| {
        json!({"name": name, "in": "query",
            "description": "LoopBack filter, as JSON or in bracket form (filter[where][field]=value)",
            "content": {"application/json": {"schema": {"type": "object", "additionalProperties": true}}}})
    };
    vec![
        DocumentedRoute {
            path: "/audit-logs".into(),
            method: "get",
            operation: operation(
                "AuditLogController",
                "find",
                ViewAuditLog::CODE,
                vec![filter_param("filter")],
                None,
                (
                    "200",
                    "Audit records, newest first unless the filter orders them",
                    Some(json!({"type": "array", "items": schema_ref(AUDIT_LOGS.title)})),
                ),
            ),
        },
        DocumentedRoute {
            path: "/audit-logs/count".into(),
            method: "get",
            operation: operation(
                "AuditLogController",
                "count",
                ViewAuditLog::CODE,
                vec![filter_param("where")],
                None,
                (
                    "200",
                    "Number of audit records matching the where",
                    Some(schema_ref("loopback.Count")),
                ),
            ),
        },
    ]
}
