//! Invoices over HTTP beyond the generic reads: the writes of `/invoices` (reached through the
//! generic collection handlers, which hand them here), `POST /invoices/{id}/pay` and
//! `/cancel` (UpdateInvoice), and the PDF: `GET /invoices/{id}/download` and the original's
//! `GET /invoices/download?id=` (ViewInvoice or CreateInvoice, the original's permission for
//! it; a lead token reaches its own tenant's invoices). The rules live in `domain::invoices`.

use axum::Router;
use axum::extract::{RawQuery, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use uuid::Uuid;

use super::AppState;
use super::Path;
use super::auth::Require;
use super::collections::{actor, parse_id, scope_of};
use crate::auth::{CreateInvoice, Permission, Principal, UpdateInvoice, ViewInvoice};
use crate::domain::billing::BillingError;
use crate::domain::invoices::{self, Change, InvoiceError, InvoiceStatus};
use crate::http::error::{AppError, AppResult};
use crate::store::Object;
use crate::store::crud::Target;

pub fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/invoices/{id}/pay",
            post(pay).fallback(super::authenticated_method_not_allowed),
        )
        .route(
            "/invoices/{id}/cancel",
            post(cancel).fallback(super::authenticated_method_not_allowed),
        )
        .route(
            "/invoices/{id}/download",
            get(download).fallback(super::authenticated_method_not_allowed),
        )
        .route(
            "/invoices/download",
            get(download_by_query).fallback(super::authenticated_method_not_allowed),
        )
}

impl From<InvoiceError> for AppError {
    fn from(err: InvoiceError) -> Self {
        match err {
            InvoiceError::Invalid(details) => AppError::Validation(details),
            InvoiceError::Final(message) => AppError::Conflict(message),
            InvoiceError::NotFound => AppError::entity_not_found(),
            InvoiceError::Write(err) => err.into(),
            InvoiceError::Database(err) => err.into(),
            InvoiceError::Pdf(err) => AppError::Internal(anyhow::Error::new(err)),
        }
    }
}

impl From<BillingError> for AppError {
    fn from(err: BillingError) -> Self {
        match err {
            BillingError::Invoice(err) => err.into(),
            BillingError::Database(err) => err.into(),
        }
    }
}

/// `POST /invoices` (validated `values`): the invoice, numbered, as stored.
pub(super) async fn create(
    state: &AppState,
    principal: &Principal,
    values: Object,
) -> AppResult<Object> {
    Ok(invoices::create(
        &state.db,
        &state.config.billing,
        values,
        &super::collections::actor(principal),
    )
    .await?)
}

/// `PATCH`/`PUT /invoices/{id}` and `PATCH /invoices?where=` (validated `values`): how many
/// invoices the target matched.
pub(super) async fn update(
    state: &AppState,
    principal: &Principal,
    target: Target<'_>,
    values: Object,
    change: Change,
) -> AppResult<u64> {
    Ok(invoices::update(&state.db, target, values, change, &actor(principal)).await?)
}

async fn settle(
    state: &AppState,
    principal: &Principal,
    id: &str,
    to: InvoiceStatus,
) -> AppResult<StatusCode> {
    let id = parse_id(id)?;
    invoices::settle(&state.db, id, to, &actor(principal)).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /invoices/{id}/pay`: 204 once PAID (also when it already was); 409 when CANCELLED.
async fn pay(
    State(state): State<AppState>,
    auth: Require<UpdateInvoice>,
    Path(id): Path<String>,
) -> AppResult<StatusCode> {
    settle(&state, &auth.principal, &id, InvoiceStatus::Paid).await
}

/// `POST /invoices/{id}/cancel`: 204 once CANCELLED (also when it already was); 409 when PAID.
async fn cancel(
    State(state): State<AppState>,
    auth: Require<UpdateInvoice>,
    Path(id): Path<String>,
) -> AppResult<StatusCode> {
    settle(&state, &auth.principal, &id, InvoiceStatus::Cancelled).await
}

/// ViewInvoice, or CreateInvoice (what the original asks for its download).
fn may_download(principal: &Principal) -> AppResult<()> {
    if principal.has_any(&[ViewInvoice::CODE, CreateInvoice::CODE]) {
        Ok(())
    } else {
        Err(AppError::Forbidden("NotAllowedAccess".into()))
    }
}

/// The PDF of invoice `id` as `principal` (checked by [`may_download`]) may see it.
async fn pdf(state: &AppState, principal: &Principal, id: Uuid) -> AppResult<Response> {
    let (name, bytes) = invoices::document(
        &mut state.db.conn(),
        &state.config.billing,
        id,
        scope_of(principal),
    )
    .await?;
    let name: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    Ok((
        [
            (header::CONTENT_TYPE, "application/pdf".to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{name}\""),
            ),
        ],
        bytes,
    )
        .into_response())
}

/// `GET /invoices/{id}/download`: the invoice as `application/pdf`.
async fn download(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> AppResult<Response> {
    may_download(&principal)?;
    let id = parse_id(&id)?;
    pdf(&state, &principal, id).await
}

/// `GET /invoices/download?id=`: the same, at the original's path (400 without `id`, as it).
async fn download_by_query(
    State(state): State<AppState>,
    principal: Principal,
    RawQuery(query): RawQuery,
) -> AppResult<Response> {
    may_download(&principal)?;
    let id = form_urlencoded::parse(query.unwrap_or_default().as_bytes())
        .find(|(key, _)| key == "id")
        .map(|(_, value)| value.into_owned())
        .filter(|value| !value.is_empty())
        .ok_or(AppError::MissingParameter("id"))?;
    let id = parse_id(&id)?;
    pdf(&state, &principal, id).await
}

/// The OpenAPI entries of these routes.
pub fn documented_routes() -> Vec<super::openapi::DocumentedRoute> {
    use super::openapi::{DocumentedRoute, error_response, id_parameter, operation};
    use serde_json::json;
    let settle = |name: &str, what: &str, other: &str| {
        let mut op = operation(
            "InvoiceController",
            name,
            UpdateInvoice::CODE,
            vec![id_parameter()],
            None,
            ("204", what, None),
        );
        op["responses"]["404"] = error_response("No such invoice");
        op["responses"]["409"] = error_response(&format!("The invoice is {other}"));
        op
    };
    let pdf_response = json!({"description": "The invoice as a PDF document",
        "content": {"application/pdf": {"schema": {"type": "string", "format": "binary"}}}});
    let permission = format!("{} or {}", ViewInvoice::CODE, CreateInvoice::CODE);
    let mut by_id = operation(
        "InvoiceController",
        "downloadInvoiceById",
        &permission,
        vec![id_parameter()],
        None,
        ("200", "The invoice as a PDF document", None),
    );
    by_id["responses"]["200"] = pdf_response.clone();
    by_id["responses"]["404"] = error_response("No such invoice");
    let mut by_query = operation(
        "InvoiceController",
        "downloadInvoice",
        &permission,
        vec![json!({"name": "id", "in": "query", "required": true,
            "schema": {"type": "string", "format": "uuid"}})],
        None,
        ("200", "The invoice as a PDF document", None),
    );
    by_query["responses"]["200"] = pdf_response;
    by_query["responses"]["404"] = error_response("No such invoice");
    vec![
        DocumentedRoute {
            path: "/invoices/{id}/pay".into(),
            method: "post",
            operation: settle(
                "pay",
                "The invoice is PAID (event INVOICE_PAID when it was PENDING)",
                "CANCELLED",
            ),
        },
        DocumentedRoute {
            path: "/invoices/{id}/cancel".into(),
            method: "post",
            operation: settle("cancel", "The invoice is CANCELLED", "PAID"),
        },
        DocumentedRoute {
            path: "/invoices/{id}/download".into(),
            method: "get",
            operation: by_id,
        },
        DocumentedRoute {
            path: "/invoices/download".into(),
            method: "get",
            operation: by_query,
        },
    ]
}
