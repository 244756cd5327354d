//! Provisioning over HTTP (`docs/provisioning.md`): `POST /tenants/{id}/provision` (ProvisionTenant),
//! `POST /tenants/{id}/deprovision`, `/suspend` and `/reactivate` (UpdateTenant),
//! `GET /tenants/{id}/provisioning` (ViewTenant or ProvisionTenant: where it is and why it
//! failed) and the
//! pipelines' signed `POST /webhook` (public, rate limited). The rules live in
//! `domain::provisioning`, `domain::offboarding` and `domain::webhook`.

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use serde_json::value::RawValue;
use serde_json::{Value, json};

use super::AppState;
use super::Path;
use super::auth::Require;
use super::collections::{actor, parse_id, scope_of};
use super::{Json, OptionalJson, money_text};
use crate::auth::{Permission, Principal, ProvisionTenant, UpdateTenant, ViewTenant};
use crate::domain::offboarding;
use crate::domain::provisioning::{self, ProvisioningError};
use crate::domain::tenant::{self, LifecycleError};
use crate::domain::webhook::{Signed, WebhookError};
use crate::http::error::{AppError, AppResult};
use crate::store::provisioning as record;
use crate::store::values::format_timestamp;

/// The routes that need a token.
pub fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/tenants/{id}/provision",
            post(provision).fallback(super::authenticated_method_not_allowed),
        )
        .route(
            "/tenants/{id}/provisioning",
            get(provisioning_state).fallback(super::authenticated_method_not_allowed),
        )
        .route(
            "/tenants/{id}/deprovision",
            post(deprovision).fallback(super::authenticated_method_not_allowed),
        )
        .route(
            "/tenants/{id}/suspend",
            post(suspend).fallback(super::authenticated_method_not_allowed),
        )
        .route(
            "/tenants/{id}/reactivate",
            post(reactivate).fallback(super::authenticated_method_not_allowed),
        )
}

/// The signed callbacks of pipelines (rate limited by the caller).
pub fn webhook_router() -> Router<AppState> {
    Router::new().route("/webhook", post(webhook))
}

impl From<LifecycleError> for AppError {
    fn from(err: LifecycleError) -> Self {
        match err {
            LifecycleError::NotFound => AppError::entity_not_found(),
            LifecycleError::Illegal { .. } => AppError::Conflict(err.to_string()),
            LifecycleError::Database(err) => err.into(),
            LifecycleError::Write(err) => err.into(),
        }
    }
}

impl From<ProvisioningError> for AppError {
    fn from(err: ProvisioningError) -> Self {
        match err {
            ProvisioningError::Invalid(details) => AppError::Validation(details),
            ProvisioningError::MissingSubscriptionId => AppError::BadRequest(err.to_string()),
            ProvisioningError::NotFound => AppError::entity_not_found(),
            ProvisioningError::Lifecycle(err) => err.into(),
            ProvisioningError::Database(err) => err.into(),
            ProvisioningError::Write(err) => err.into(),
            ProvisioningError::Keys(err) => err.into(),
            ProvisioningError::Billing(err) => (*err).into(),
        }
    }
}

impl From<WebhookError> for AppError {
    fn from(err: WebhookError) -> Self {
        match err {
            WebhookError::Unauthorized(why) => {
                tracing::info!(reason = why, "webhook refused");
                AppError::Unauthorized("Unauthorized".into())
            }
            WebhookError::Malformed(message) => AppError::MalformedJson(message),
            WebhookError::Invalid(details) => AppError::Validation(details),
            WebhookError::InvalidType => AppError::Unprocessable(err.to_string()),
            WebhookError::Provisioning(err) => err.into(),
            WebhookError::Keys(err) => err.into(),
            WebhookError::Database(err) => err.into(),
        }
    }
}

/// `POST /tenants/{id}/provision` with a `SubscriptionDTO`: 204 once provisioning has started
/// (the event is on its way). A lead token provisions only the tenant onboarded from its lead.
async fn provision(
    State(state): State<AppState>,
    auth: Require<ProvisionTenant>,
    Path(id): Path<String>,
    Json(raw): Json<Box<RawValue>>,
) -> AppResult<StatusCode> {
    let id = parse_id(&id)?;
    let body = money_text::body(&raw, &[&["plan", "price"]])?;
    let subscription = provisioning::parse_subscription(&body)?;
    state
        .provisioning()
        .provision(id, &subscription, &actor(&auth.principal))
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /tenants/{id}/deprovision`: 204 once offboarding has started, or when it already had
/// (DEPROVISIONING or INACTIVE).
async fn deprovision(
    State(state): State<AppState>,
    auth: Require<UpdateTenant>,
    Path(id): Path<String>,
) -> AppResult<StatusCode> {
    let id = parse_id(&id)?;
    state
        .offboarding()
        .deprovision(id, &actor(&auth.principal))
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /tenants/{id}/suspend` with an optional `{"reason": …}`: 204 once SUSPENDED.
async fn suspend(
    State(state): State<AppState>,
    auth: Require<UpdateTenant>,
    Path(id): Path<String>,
    OptionalJson(body): OptionalJson<Value>,
) -> AppResult<StatusCode> {
    let id = parse_id(&id)?;
    let reason = offboarding::parse_suspension(body.as_ref())?;
    state
        .offboarding()
        .suspend(id, reason.as_deref(), &actor(&auth.principal))
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /tenants/{id}/reactivate`: 204 once ACTIVE again.
async fn reactivate(
    State(state): State<AppState>,
    auth: Require<UpdateTenant>,
    Path(id): Path<String>,
) -> AppResult<StatusCode> {
    let id = parse_id(&id)?;
    state
        .offboarding()
        .reactivate(id, &actor(&auth.principal))
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /tenants/{id}/provisioning`: the tenant's status and its last provisioning or offboarding
/// (subscription, tier, isolation, pipeline, attempts, why it failed, when). ViewTenant, or
/// ProvisionTenant: whoever may start provisioning may watch it (a lead token its own tenant).
async fn provisioning_state(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> AppResult<Json<Value>> {
    if !principal.has_any(&[ViewTenant::CODE, ProvisionTenant::CODE]) {
        return Err(AppError::Forbidden("NotAllowedAccess".into()));
    }
    let id = parse_id(&id)?;
    let mut conn = state.db.conn();
    if tenant::tenant_with_relations(&mut conn, id, scope_of(&principal))
        .await?
        .is_none()
    {
        return Err(AppError::entity_not_found());
    }
    let status = tenant::status_of(&mut conn, id)
        .await?
        .ok_or_else(AppError::entity_not_found)?;
    let rec = record::get(&mut conn, id).await?;
    let time = |t: Option<chrono::DateTime<chrono::Utc>>| t.map(|t| format_timestamp(&t));
    Ok(Json(json!({
        "tenantId": id.to_string(),
        "status": status.code(),
        "statusName": status.name(),
        "operation": rec.as_ref().map(|r| r.operation.as_str()),
        "subscription": rec.as_ref().and_then(|r| r.subscription.clone()),
        "tier": rec.as_ref().and_then(|r| r.tier.clone()),
        "isolation": rec.as_ref().and_then(|r| r.isolation.clone()),
        "pipeline": rec.as_ref().and_then(|r| r.pipeline.clone()),
        "attempts": rec.as_ref().map(|r| r.attempts),
        "reason": rec.as_ref().and_then(|r| r.reason.clone()),
        "startedAt": time(rec.as_ref().map(|r| r.started_at)),
        "deadlineAt": time(rec.as_ref().map(|r| r.deadline_at)),
        "finishedAt": time(rec.as_ref().and_then(|r| r.finished_at)),
    })))
}

/// `POST /webhook`: a pipeline's signed result (see `domain::webhook`). 204 when accepted.
async fn webhook(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> AppResult<StatusCode> {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let signed = Signed {
        body: &body,
        signature: header("x-signature"),
        timestamp: header("x-timestamp"),
    };
    // A pipeline that passes `traceparent` on continues the trace itself (the request's span).
    let traced = crate::telemetry::carries_trace(&headers);
    state.webhook().accept(&signed, traced).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The OpenAPI entries of these routes.
pub fn documented_routes() -> Vec<super::openapi::DocumentedRoute> {
    use super::openapi::{DocumentedRoute, error_response, id_parameter, operation, schema_ref};
    let mut provision = operation(
        "TenantController",
        "provision",
        ProvisionTenant::CODE,
        vec![id_parameter()],
        Some(schema_ref("SubscriptionDTO")),
        ("204", "Provisioning started", None),
    );
    provision["responses"]["404"] = error_response("No such tenant");
    provision["responses"]["409"] =
        error_response("The tenant is not PENDINGPROVISION or PROVISIONFAILED");
    let lifecycle = |name: &str, what: &str, from: &str, body: Option<Value>| {
        let mut op = operation(
            "TenantController",
            name,
            UpdateTenant::CODE,
            vec![id_parameter()],
            body,
            ("204", what, None),
        );
        op["responses"]["404"] = error_response("No such tenant");
        op["responses"]["409"] = error_response(&format!("The tenant is not {from}"));
        op
    };
    let deprovision = lifecycle(
        "deprovision",
        "Offboarding started (or already started or done): DEPROVISIONING, event TENANT_DEPROVISIONING",
        "ACTIVE, SUSPENDED, PROVISIONFAILED, DEPROVISIONING or INACTIVE",
        None,
    );
    let mut suspend = lifecycle(
        "suspend",
        "The tenant is SUSPENDED (event TENANT_SUSPENDED when it was ACTIVE)",
        "ACTIVE or SUSPENDED",
        Some(json!({"type": "object", "additionalProperties": false,
            "properties": {"reason": {"type": "string", "maxLength": 500}}})),
    );
    suspend["requestBody"]["required"] = json!(false);
    let reactivate = lifecycle(
        "reactivate",
        "The tenant is ACTIVE (event TENANT_REACTIVATED when it was SUSPENDED)",
        "SUSPENDED or ACTIVE",
        None,
    );
    let mut state_op = operation(
        "TenantController",
        "provisioning",
        &format!("{} or {}", ViewTenant::CODE, ProvisionTenant::CODE),
        vec![id_parameter()],
        None,
        (
            "200",
            "The tenant's status and its last provisioning or offboarding",
            Some(schema_ref("ProvisioningState")),
        ),
    );
    state_op["responses"]["404"] = error_response("No such tenant");
    let mut hook = operation(
        "WebhookController",
        "webhook",
        "",
        vec![],
        Some(schema_ref("WebhookDTO")),
        ("204", "Webhook success", None),
    );
    hook["description"] = json!(
        "A pipeline's result, signed: x-signature = hex(HMAC-SHA256(secret, raw body + context + \
         x-timestamp)) with the secret and context of the provisioning event; x-timestamp in ms \
         since the epoch, within 20 s."
    );
    hook["parameters"] = json!([
        {"name": "x-signature", "in": "header", "required": true, "schema": {"type": "string"}},
        {"name": "x-timestamp", "in": "header", "required": true, "schema": {"type": "string"}},
    ]);
    hook["responses"]["429"] = error_response("Too many requests from this client");
    vec![
        DocumentedRoute {
            path: "/tenants/{id}/provision".into(),
            method: "post",
            operation: provision,
        },
        DocumentedRoute {
            path: "/tenants/{id}/provisioning".into(),
            method: "get",
            operation: state_op,
        },
        DocumentedRoute {
            path: "/tenants/{id}/deprovision".into(),
            method: "post",
            operation: deprovision,
        },
        DocumentedRoute {
            path: "/tenants/{id}/suspend".into(),
            method: "post",
            operation: suspend,
        },
        DocumentedRoute {
            path: "/tenants/{id}/reactivate".into(),
            method: "post",
            operation: reactivate,
        },
        DocumentedRoute {
            path: "/webhook".into(),
            method: "post",
            operation: hook,
        },
    ]
}
