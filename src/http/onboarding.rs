//! The administrator's onboarding, `POST /tenants` with a `contact` (`docs/funnel.md`).

use axum::Router;
use axum::extract::State;
use axum::routing::post;
use serde_json::Value;

use super::AppState;
use super::Json;
use super::auth::Require;
use super::collections::{actor, scope_of};
use crate::auth::CreateTenant;
use crate::domain::onboarding::{self, OnboardingError};
use crate::http::error::{AppError, AppResult};
use crate::store::crud::Scope;

pub fn router() -> Router<AppState> {
    Router::new().route("/tenants", post(onboard_tenant))
}

/// `POST /tenants` by an administrator: onboarding with a `contact`.
async fn onboard_tenant(
    State(state): State<AppState>,
    auth: Require<CreateTenant>,
    Json(body): Json<Value>,
) -> AppResult<Json<Value>> {
    // Lead tokens onboard through /leads/{id}/tenants only.
    if scope_of(&auth.principal) != Scope::All {
        return Err(AppError::Forbidden("NotAllowedAccess".into()));
    }
    let onboarding = onboarding::admin_body(&body).map_err(AppError::Validation)?;
    let tenant = onboarding::onboard(&state.db, &onboarding, &actor(&auth.principal)).await?;
    Ok(Json(Value::Object(tenant)))
}

impl From<OnboardingError> for AppError {
    fn from(err: OnboardingError) -> Self {
        match err {
            OnboardingError::ContactDomain => AppError::BadRequest(err.to_string()),
            OnboardingError::KeyTaken(key) => AppError::Conflict(format!(
                "Unique constraint violation: a Tenant with key \"{key}\" already exists"
            )),
            OnboardingError::LeadTaken => AppError::Unauthorized("Unauthorized".into()),
            OnboardingError::Store(err) => err.into(),
        }
    }
}

/// The OpenAPI entry of `POST /tenants`.
pub fn documented_routes() -> Vec<crate::http::openapi::DocumentedRoute> {
    use crate::auth::Permission;
    use crate::http::openapi::{DocumentedRoute, error_response, operation, schema_ref};
    let mut op = operation(
        "TenantController",
        "create",
        CreateTenant::CODE,
        vec![],
        Some(schema_ref("NewTenantOnboarding")),
        (
            "200",
            "Tenant model instance",
            Some(schema_ref("TenantWithRelations")),
        ),
    );
    op["responses"]["409"] = error_response("A tenant with this key exists");
    vec![DocumentedRoute {
        path: "/tenants".into(),
        method: "post",
        operation: op,
    }]
}
