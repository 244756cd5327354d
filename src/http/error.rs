//! The one application error and its LoopBack body:
//! `{"error":{"statusCode":404,"name":"NotFoundError","message":"…","code":"…","details":[…]}}`.
//! Internal failures are logged with their cause chain and shown to clients only as a bare 500.

pub use crate::domain::validation::ValidationDetail;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("{0}")]
    BadRequest(String),
    /// A request body that is not JSON (LoopBack names it `SyntaxError`).
    #[error("{0}")]
    MalformedJson(String),
    /// A query parameter that cannot be used (bad filter, bad id…).
    #[error("{message}")]
    InvalidParameter { message: String },
    /// A required parameter that is not there, as LoopBack words it.
    #[error("Required parameter {0} is missing!")]
    MissingParameter(&'static str),
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("Method Not Allowed")]
    MethodNotAllowed,
    #[error("{0}")]
    Conflict(String),
    #[error("request entity too large")]
    PayloadTooLarge,
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("The request body is invalid. See error object `details` property for more info.")]
    Validation(Vec<ValidationDetail>),
    /// A body that is well-formed but cannot be processed, with the original's own message.
    #[error("{0}")]
    Unprocessable(String),
    #[error("{message}")]
    TooManyRequests {
        message: String,
        retry_after_secs: u64,
    },
    /// A service tms depends on refused a request it should have taken (an identity provider
    /// rejecting the admin credentials, say).
    #[error("{0}")]
    BadGateway(String),
    /// The database or key store is unreachable, restarting or busy, or the request took too
    /// long: the client may try again after `retry_after_secs`.
    #[error("{message}")]
    Unavailable {
        message: String,
        retry_after_secs: u64,
    },
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl AppError {
    pub fn status_code(&self) -> StatusCode {
        match self {
            Self::BadRequest(_)
            | Self::MalformedJson(_)
            | Self::InvalidParameter { .. }
            | Self::MissingParameter(_) => StatusCode::BAD_REQUEST,
            Self::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::Conflict(_) => StatusCode::CONFLICT,
            Self::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::Validation(_) | Self::Unprocessable(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Self::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::BadGateway(_) => StatusCode::BAD_GATEWAY,
            Self::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The `name` of the LoopBack body (the http-errors class name).
    fn name(&self) -> &'static str {
        match self {
            Self::MalformedJson(_) => "SyntaxError",
            Self::BadRequest(_) | Self::InvalidParameter { .. } | Self::MissingParameter(_) => {
                "BadRequestError"
            }
            Self::Unauthorized(_) => "UnauthorizedError",
            Self::Forbidden(_) => "ForbiddenError",
            Self::NotFound(_) => "NotFoundError",
            Self::MethodNotAllowed => "MethodNotAllowedError",
            Self::Conflict(_) => "ConflictError",
            Self::PayloadTooLarge => "PayloadTooLargeError",
            Self::UnsupportedMediaType(_) => "UnsupportedMediaTypeError",
            Self::Validation(_) | Self::Unprocessable(_) => "UnprocessableEntityError",
            Self::TooManyRequests { .. } => "TooManyRequestsError",
            Self::BadGateway(_) => "BadGatewayError",
            Self::Unavailable { .. } => "ServiceUnavailableError",
            Self::Internal(_) => "InternalServerError",
        }
    }

    fn code(&self) -> Option<&'static str> {
        match self {
            Self::Validation(_) => Some("VALIDATION_FAILED"),
            Self::InvalidParameter { .. } => Some("INVALID_PARAMETER_VALUE"),
            Self::MissingParameter(_) => Some("MISSING_REQUIRED_PARAMETER"),
            Self::MalformedJson(_) => Some("INVALID_JSON"),
            _ => None,
        }
    }

    /// The `not found` answer for one entity, as the original words it.
    pub fn entity_not_found() -> Self {
        Self::NotFound("EntityNotFound".into())
    }

    pub fn invalid_parameter(name: &str, problem: impl std::fmt::Display) -> Self {
        Self::InvalidParameter {
            message: format!("Invalid value for parameter \"{name}\": {problem}"),
        }
    }

    pub fn validation(detail: ValidationDetail) -> Self {
        Self::Validation(vec![detail])
    }

    /// 503 with `Retry-After`, for a part of the service that is down or busy.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::Unavailable {
            message: message.into(),
            retry_after_secs: RETRY_AFTER_SECS,
        }
    }
}

/// What `Retry-After` says on a 503: long enough for a restarting database to come back or a
/// busy one to drain, short enough that clients do not give up.
pub const RETRY_AFTER_SECS: u64 = 2;

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ErrorBody<'a> {
    status_code: u16,
    name: &'a str,
    message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    code: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    details: Option<&'a [ValidationDetail]>,
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let status = self.status_code();
        let message = match &self {
            Self::Internal(err) => {
                tracing::error!(error = format!("{err:#}"), "request failed");
                "Internal Server Error".to_string()
            }
            other => other.to_string(),
        };
        let details = match &self {
            Self::Validation(details) => Some(details.as_slice()),
            _ => None,
        };
        let body = serde_json::json!({ "error": ErrorBody {
            status_code: status.as_u16(),
            name: self.name(),
            message,
            code: self.code(),
            details,
        }});
        let mut response = (status, axum::Json(body)).into_response();
        if let Self::TooManyRequests {
            retry_after_secs, ..
        }
        | Self::Unavailable {
            retry_after_secs, ..
        } = &self
        {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(*retry_after_secs));
        }
        response
    }
}

impl From<sqlx::Error> for AppError {
    fn from(err: sqlx::Error) -> Self {
        if crate::store::is_transient(&err) {
            tracing::warn!(error = %err, "database unavailable");
            return Self::unavailable("The database is unavailable or busy; try again shortly.");
        }
        Self::Internal(anyhow::Error::new(err).context("database error"))
    }
}

impl From<crate::kv::KvError> for AppError {
    fn from(err: crate::kv::KvError) -> Self {
        if err.is_transient() {
            tracing::warn!(
                error = format!("{:#}", anyhow::Error::new(err)),
                "key store unavailable"
            );
            return Self::unavailable("The key store is unavailable; try again shortly.");
        }
        Self::Internal(anyhow::Error::new(err))
    }
}

impl From<crate::store::crud::WriteError> for AppError {
    fn from(err: crate::store::crud::WriteError) -> Self {
        use crate::store::crud::WriteError;
        match err {
            WriteError::Conflict(_) => Self::Conflict("Unique constraint violation".into()),
            // A tenantId/leadId/addressId naming no live row: 404, as the original answers.
            WriteError::MissingReference { field, id } => Self::NotFound(format!(
                "Related entity not found: {field} {id:?} does not exist"
            )),
            WriteError::Unfit(message) => Self::Unprocessable(message),
            WriteError::Db(err) => err.into(),
        }
    }
}

pub type AppResult<T> = Result<T, AppError>;

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::to_bytes;
    use serde_json::Value;

    async fn body_of(err: AppError) -> (StatusCode, Value) {
        let response = err.into_response();
        let status = response.status();
        let bytes = to_bytes(response.into_body(), 1 << 20).await.unwrap();
        (status, serde_json::from_slice(&bytes).unwrap())
    }

    #[tokio::test]
    async fn not_found_has_the_loopback_shape() {
        let (status, body) = body_of(AppError::entity_not_found()).await;
        assert_eq!(status, 404);
        assert_eq!(
            body,
            serde_json::json!({"error":{"statusCode":404,"name":"NotFoundError","message":"EntityNotFound"}})
        );
    }

    #[tokio::test]
    async fn internal_errors_hide_their_cause() {
        let (status, body) = body_of(AppError::Internal(anyhow::anyhow!(
            "password=hunter2 leaked"
        )))
        .await;
        assert_eq!(status, 500);
        assert_eq!(body["error"]["message"], "Internal Server Error");
        assert!(!body.to_string().contains("hunter2"));
    }

    #[tokio::test]
    async fn validation_carries_code_and_details() {
        let (status, body) = body_of(AppError::validation(ValidationDetail::new(
            "/key",
            "pattern",
            "must match pattern \"^[a-z0-9]+$\"",
            serde_json::json!({"pattern": "^[a-z0-9]+$"}),
        )))
        .await;
        assert_eq!(status, 422);
        assert_eq!(body["error"]["code"], "VALIDATION_FAILED");
        assert_eq!(body["error"]["details"][0]["path"], "/key");
    }
}
