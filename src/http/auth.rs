//! Reading the caller from a request: the bearer token verified into a [`Principal`], and
//! [`Require<P>`], the extractor a handler names so that it cannot forget its permission
//! (`_: Require<ViewTenant>`): 401 without a valid token, 403 without the code.

use std::marker::PhantomData;

use axum::extract::{FromRef, FromRequestParts};
use axum::http::{header, request::Parts};

use crate::auth::{JwtKeys, Permission, Principal, TokenError};
use crate::http::error::AppError;

/// The bearer token of a request, verified: 401 when it does not verify, 503 while the
/// identity provider's keys it needs are not available.
impl<S> FromRequestParts<S> for Principal
where
    JwtKeys: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let token = bearer_token(&parts.headers)?;
        JwtKeys::from_ref(state)
            .authenticate(token)
            .await
            .map_err(|err| match err {
                TokenError::Invalid(invalid) => AppError::Unauthorized(invalid.0),
                TokenError::KeysUnavailable { retry_after_secs } => AppError::Unavailable {
                    message: err.to_string(),
                    retry_after_secs,
                },
            })
    }
}

/// The raw bearer token of a request; 401 when there is none.
pub fn bearer_token(headers: &axum::http::HeaderMap) -> Result<&str, AppError> {
    let missing = || AppError::Unauthorized("Bearer realm=\"Users\"".into());
    let value = headers
        .get(header::AUTHORIZATION)
        .ok_or_else(missing)?
        .to_str()
        .map_err(|_| missing())?;
    let (scheme, token) = value.split_once(' ').ok_or_else(missing)?;
    if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
        return Err(missing());
    }
    Ok(token.trim())
}

/// An authenticated caller holding permission `P`: 401 without a valid token, 403 without `P`.
pub struct Require<P: Permission> {
    pub principal: Principal,
    _permission: PhantomData<P>,
}

impl<P: Permission, S> FromRequestParts<S> for Require<P>
where
    JwtKeys: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let principal = Principal::from_request_parts(parts, state).await?;
        if !principal.has(P::CODE) {
            return Err(AppError::Forbidden("NotAllowedAccess".into()));
        }
        Ok(Self {
            principal,
            _permission: PhantomData,
        })
    }
}
