//! The lead funnel (`docs/funnel.md`) over HTTP: `POST /leads` (public), `POST /leads/{id}/verify` (lead
//! key), `POST /leads/resend-verification` (public) and `POST /leads/{id}/tenants` (lead token).
//! The rules live in `domain::funnel`; here requests are read and answers written.

use axum::Router;
use axum::extract::{FromRequest, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use serde_json::{Value, json};

use super::AppState;
use super::auth::bearer_token;
use super::{Json, Path};
use crate::auth::Principal;
use crate::domain::funnel::{self, FunnelError};
use crate::domain::validation;
use crate::http::error::{AppError, AppResult};

/// The public funnel routes (rate limited by the caller).
pub fn public_router() -> Router<AppState> {
    Router::new()
        .route("/leads", post(create_lead))
        .route("/leads/resend-verification", post(resend_verification))
        .route("/leads/{id}/verify", post(verify_lead))
        .route(
            "/leads/{id}/tenants",
            post(tenant_from_lead).fallback(super::authenticated_method_not_allowed),
        )
}

impl From<FunnelError> for AppError {
    fn from(err: FunnelError) -> Self {
        match err {
            FunnelError::Invalid(details) => AppError::Validation(details),
            FunnelError::EmailTaken => AppError::Conflict(err.to_string()),
            FunnelError::Unauthorized => AppError::Unauthorized("Unauthorized".into()),
            FunnelError::AddressMismatch => AppError::BadRequest(err.to_string()),
            FunnelError::Onboarding(err) => err.into(),
            FunnelError::Database(err) => err.into(),
            FunnelError::Write(err) => err.into(),
            FunnelError::Keys(err) => err.into(),
            FunnelError::Token(err) => AppError::Internal(err),
        }
    }
}

/// `POST /leads`: records the lead (and its address), mails the verification link, answers
/// `{id}` (plus `key` only with `LEAD_KEY_IN_RESPONSE=true`).
async fn create_lead(
    State(state): State<AppState>,
    Json(body): Json<Value>,
) -> AppResult<Json<Value>> {
    let signed_up = state.funnel().sign_up(&body).await?;
    let mut answer = json!({ "id": signed_up.id.to_string() });
    if state.config.lead_key_in_response {
        answer["key"] = json!(signed_up.key);
    }
    Ok(Json(answer))
}

/// `POST /leads/{id}/verify` with `Authorization: Bearer <key>`: consumes the key, answers
/// `{id, token}`.
async fn verify_lead(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> AppResult<Json<Value>> {
    let key = bearer_token(&headers)?;
    let verified = state.funnel().verify(&id, key).await?;
    Ok(Json(
        json!({ "id": verified.id.to_string(), "token": verified.token }),
    ))
}

/// What `POST /leads/resend-verification` answers, whether or not the address is known.
pub const RESEND_ANSWER: &str = "If this address belongs to a lead that has not finished \
     signing up, a new verification link is on its way.";

/// `POST /leads/resend-verification` `{email}`: mails a fresh link to a lead that still needs
/// one. 202 with the same answer whether or not the address is known.
async fn resend_verification(
    State(state): State<AppState>,
    Json(body): Json<Value>,
) -> AppResult<(StatusCode, Json<Value>)> {
    let email = validation::email_only(&body).map_err(AppError::Validation)?;
    state.funnel().resend_link(&email).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({ "message": RESEND_ANSWER })),
    ))
}

/// `POST /leads/{id}/tenants` with the lead's token: onboards the tenant of a validated lead
/// that has none yet, with the lead's person as primary admin contact.
async fn tenant_from_lead(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
    request: Request,
) -> AppResult<Json<Value>> {
    // Only the lead's own token gets as far as its body (401 before 415/422, as the original).
    funnel::lead_token_for(&id, principal.lead, &principal.id)?;
    let Json(body) = Json::<Value>::from_request(request, &state).await?;
    let tenant = state
        .funnel()
        .onboard(&id, principal.lead, &principal.id, &body)
        .await?;
    Ok(Json(Value::Object(tenant)))
}

/// The OpenAPI entries of the funnel routes.
pub fn documented_routes() -> Vec<crate::http::openapi::DocumentedRoute> {
    use crate::http::openapi::{
        DocumentedRoute, error_response, id_parameter, operation, schema_ref,
    };
    let mut create = operation(
        "LeadController",
        "create",
        "",
        vec![],
        Some(schema_ref("CreateLeadDTO")),
        (
            "200",
            "The lead's id; the verification link is mailed",
            Some(schema_ref("CreateLeadResponse")),
        ),
    );
    create["responses"]["409"] = error_response("A validated lead with this email exists");
    create["responses"]["429"] = error_response("Too many requests from this client");
    let mut verify = operation(
        "LeadController",
        "validateLead",
        "",
        vec![id_parameter()],
        None,
        (
            "200",
            "The lead token",
            Some(schema_ref("VerifyLeadResponseDTO")),
        ),
    );
    verify["description"] =
        json!("Authorization: Bearer <key from the verification mail>. The key is single-use.");
    verify["security"] = json!([{"HTTPBearer": []}]);
    let mut onboard = operation(
        "LeadController",
        "tenantFromLead",
        "",
        vec![id_parameter()],
        Some(schema_ref("TenantOnboardDto")),
        (
            "200",
            "The onboarded tenant",
            Some(schema_ref("TenantWithRelations")),
        ),
    );
    onboard["description"] = json!("Authorization: Bearer <lead token from /verify>.");
    onboard["security"] = json!([{"HTTPBearer": []}]);
    onboard["responses"]["409"] = error_response("A tenant with this key exists");
    let mut resend = operation(
        "LeadController",
        "resendVerification",
        "",
        vec![],
        Some(
            json!({"type": "object", "required": ["email"], "additionalProperties": false,
            "properties": {"email": {"type": "string", "format": "email", "maxLength": 100}}}),
        ),
        (
            "202",
            "Accepted; the same answer whether or not the address is known",
            Some(json!({"type": "object", "properties": {"message": {"type": "string"}}})),
        ),
    );
    resend["description"] = json!(
        "Mails a new verification link to the lead signed up with this address, when it is not \
         verified yet or verified without a tenant. Public and rate-limited."
    );
    resend["responses"]["429"] = error_response("Too many requests from this client");
    [
        ("/leads", create),
        ("/leads/resend-verification", resend),
        ("/leads/{id}/verify", verify),
        ("/leads/{id}/tenants", onboard),
    ]
    .into_iter()
    .map(|(path, operation)| DocumentedRoute {
        path: path.into(),
        method: "post",
        operation,
    })
    .collect()
}
