//! `POST /manage/users` (`docs/identity.md`): the provisioning pipeline's signed request
//! to create the tenant's first admin user in its identity provider. Public, rate limited with
//! the webhook; the rules live in `domain::admin_user`, the vendor clients in `idp`.

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::routing::post;
use serde_json::{Value, json};

use super::AppState;
use super::Json;
use crate::domain::admin_user::AdminUserError;
use crate::domain::webhook::Signed;
use crate::http::error::{AppError, AppResult, RETRY_AFTER_SECS};
use crate::idp::IdpError;

/// The route (rate limited by the caller).
pub fn router() -> Router<AppState> {
    Router::new().route("/manage/users", post(create_admin_user))
}

impl From<AdminUserError> for AppError {
    fn from(err: AdminUserError) -> Self {
        match err {
            AdminUserError::Signed(err) => err.into(),
            AdminUserError::Invalid(details) => AppError::Validation(details),
            AdminUserError::Settings(message) => AppError::Unprocessable(message),
            AdminUserError::NotProvisioning(_) => AppError::Conflict(err.to_string()),
            AdminUserError::Provider(IdpError::BadSetting(message)) => {
                AppError::Unprocessable(message)
            }
            AdminUserError::Provider(ref provider @ IdpError::Refused { .. }) => {
                AppError::BadGateway(provider.to_string())
            }
            AdminUserError::Provider(ref provider @ IdpError::Unavailable { retry_after, .. }) => {
                AppError::Unavailable {
                    message: provider.to_string(),
                    retry_after_secs: retry_after.unwrap_or(RETRY_AFTER_SECS).clamp(1, 3600),
                }
            }
            AdminUserError::Database(err) => err.into(),
            AdminUserError::Write(err) => err.into(),
        }
    }
}

/// `POST /manage/users`: 200 `{"authId": …}` once the user exists in the provider.
async fn create_admin_user(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> AppResult<Json<Value>> {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let signed = Signed {
        body: &body,
        signature: header("x-signature"),
        timestamp: header("x-timestamp"),
    };
    let auth_id = state.admin_users().create(&signed).await?;
    Ok(Json(json!({"authId": auth_id})))
}

/// The OpenAPI entry of the route.
pub fn documented_routes() -> Vec<super::openapi::DocumentedRoute> {
    use super::openapi::{DocumentedRoute, error_response, operation, schema_ref};
    let mut op = operation(
        "IdpController",
        "idpConfigure",
        "",
        vec![],
        Some(schema_ref("IdpDetailsDTO")),
        (
            "200",
            "The admin user exists in the tenant's identity provider",
            Some(json!({"type": "object", "required": ["authId"],
                "properties": {"authId": {"type": "string"}}})),
        ),
    );
    op["description"] = json!(
        "Creates (or finds) the tenant's first admin user in its identity provider \
         (tenant.identityProvider: keycloak or auth0). Signed by the provisioning pipeline: \
         x-signature = hex(HMAC-SHA256(secret, raw body + x-timestamp)) with the secret of the \
         tenant's TENANT_PROVISIONING event; x-timestamp in ms since the epoch, within 20 s."
    );
    op["parameters"] = json!([
        {"name": "x-signature", "in": "header", "required": true, "schema": {"type": "string"}},
        {"name": "x-timestamp", "in": "header", "required": true, "schema": {"type": "string"}},
    ]);
    op["responses"]["401"] = error_response("A problem with the signature or the tenant");
    op["responses"]["409"] = error_response("The tenant is not PROVISIONING");
    op["responses"]["429"] = error_response("Too many requests from this client");
    op["responses"]["502"] = error_response("The identity provider refused a request");
    op["responses"]["503"] =
        error_response("The identity provider is unreachable or busy; try again after Retry-After");
    vec![DocumentedRoute {
        path: "/manage/users".into(),
        method: "post",
        operation: op,
    }]
}
