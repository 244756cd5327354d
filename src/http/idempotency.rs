//! `Idempotency-Key` on POST routes (`docs/idempotency.md`): the middleware that reads the raw
//! body, asks `domain::idempotency` whether the request is new, a replay, running or a misuse of
//! its key, runs the handler for a new one and keeps its answer. The rules (scope, fingerprint,
//! which answers are kept, expiry) are the domain's; the records are `store::idempotency`'s.
//!
//! ```ignore
//! let keyed = Idempotent::new(state.clone(), Callers::TokenHolders);
//! router.layer(axum::middleware::from_fn_with_state(keyed, idempotency::enforce))
//! ```
//!
//! A request without the header, or not a POST, passes through untouched: no body read, no
//! database round trip.

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http_body_util::{BodyExt, LengthLimitError, Limited};

use super::AppState;
use super::auth::bearer_token;
use super::error::AppError;
use super::rate_limit::peer_address;
use crate::auth::Principal;
use crate::domain::idempotency::{
    Answer, Begun, Caller, Claim, IdempotencyError, IdempotencyKey, KEY_RULE, is_kept,
};

/// The request header naming a request.
pub const IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");
/// Set (`true`) on an answer sent again for a key.
pub const IDEMPOTENCY_REPLAYED: HeaderName = HeaderName::from_static("idempotency-replayed");

/// What `Retry-After` says while the request holding a key runs.
pub const IN_PROGRESS_RETRY_AFTER_SECS: u64 = 1;

/// The headers that carry a public caller's credentials (a lead key, a webhook signature): an
/// answer is replayed only to a request presenting the same ones.
const CREDENTIAL_HEADERS: [HeaderName; 2] = [
    header::AUTHORIZATION,
    HeaderName::from_static("x-signature"),
];

/// Headers of an answer that belong to one response and are not kept with it.
const NOT_KEPT: [HeaderName; 5] = [
    header::CONTENT_LENGTH,
    header::TRANSFER_ENCODING,
    header::CONNECTION,
    header::DATE,
    super::REQUEST_ID,
];

/// Who may use keys on a group of routes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Callers {
    /// Routes that need a bearer token: a request without a valid one is passed to its handler
    /// (whose 401 is never kept) without touching the records.
    TokenHolders,
    /// Public routes (sign-up, a lead's verification, the webhook): also callers without a
    /// token, identified by their credentials, address and request body.
    Anyone,
}

/// The middleware's state: the services and who may use keys on the routes it wraps.
#[derive(Clone)]
pub struct Idempotent {
    services: AppState,
    callers: Callers,
}

impl Idempotent {
    pub fn new(services: AppState, callers: Callers) -> Self {
        Self { services, callers }
    }
}

impl From<IdempotencyError> for AppError {
    fn from(err: IdempotencyError) -> Self {
        match err {
            IdempotencyError::Database(err) => err.into(),
            other => AppError::Internal(other.into()),
        }
    }
}

/// The middleware: a POST with an `Idempotency-Key` is answered from its key's record when the
/// same request was answered (with `Idempotency-Replayed: true`), 409 with `Retry-After` while
/// it runs, 422 when the key was used for another request, 400 for a malformed key; otherwise
/// the handler runs and its answer is kept when it is final.
pub async fn enforce(State(keyed): State<Idempotent>, request: Request, next: Next) -> Response {
    if request.method() != Method::POST {
        return next.run(request).await;
    }
    let mut values = request.headers().get_all(&IDEMPOTENCY_KEY).iter();
    let Some(raw_key) = values.next() else {
        return next.run(request).await;
    };
    let several = values.next().is_some();
    let principal = verified_caller(&keyed.services, request.headers());
    if principal.is_none() && keyed.callers == Callers::TokenHolders {
        return next.run(request).await;
    }
    let key = match IdempotencyKey::parse(raw_key.as_bytes()) {
        Some(key) if !several => key,
        _ => return AppError::BadRequest(KEY_RULE.into()).into_response(),
    };

    let (parts, body) = request.into_parts();
    let body = match read_body(body, keyed.services.config.request_body_limit).await {
        Ok(body) => body,
        Err(err) => return err.into_response(),
    };
    let caller = match &principal {
        Some(principal) => Caller::Principal(&principal.id),
        None => Caller::Public {
            credentials: CREDENTIAL_HEADERS
                .iter()
                .flat_map(|name| parts.headers.get_all(name))
                .map(HeaderValue::as_bytes)
                .collect(),
            client: peer_address(&parts.extensions).map(|peer| {
                keyed
                    .services
                    .config
                    .trusted_proxies
                    .client_ip(peer.ip(), &parts.headers)
            }),
        },
    };
    let described = crate::domain::idempotency::Request {
        caller,
        method: parts.method.as_str(),
        path: parts.uri.path(),
        query: parts.uri.query().unwrap_or(""),
        body: &body,
        key: &key,
    };
    let begun = keyed.services.idempotency().begin(&described).await;
    match begun {
        Err(err) => AppError::from(err).into_response(),
        Ok(Begun::Replay(answer)) => {
            tracing::info!(
                status = answer.status,
                "answer replayed for its Idempotency-Key"
            );
            replay(answer)
        }
        Ok(Begun::InProgress) => in_progress(),
        Ok(Begun::AnswerLost) => AppError::Conflict(
            "The request with this Idempotency-Key was carried out, but its answer was lost \
             (its server stopped or it was cancelled after its work was saved); look the result \
             up instead of sending the request again."
                .into(),
        )
        .into_response(),
        Ok(Begun::Mismatch) => AppError::Unprocessable(
            "This Idempotency-Key was used for another request (another body or query string); \
             a new request needs a new key."
                .into(),
        )
        .into_response(),
        Ok(Begun::Started(claim)) => {
            // Held first: a request dropped while it runs frees (or ends) its claim.
            let held = Held::new(keyed.services.clone(), claim);
            let work = next.run(Request::from_parts(parts, Body::from(body)));
            let (response, taken_over) =
                held.services.idempotency().within(&held.claim, work).await;
            if taken_over {
                // The claim's lease ran out and another request took the key over: this one's
                // work was rolled back, that one's is the key's.
                held.disarm();
                return in_progress();
            }
            keep(held, response).await
        }
    }
}

/// The caller of a verified bearer token, when the request has one.
fn verified_caller(services: &AppState, headers: &HeaderMap) -> Option<Principal> {
    let token = bearer_token(headers).ok()?;
    services.jwt.verify(token).ok()
}

/// The whole request body, at most `limit` bytes (413 beyond, as the handlers' extractors).
async fn read_body(body: Body, limit: usize) -> Result<Bytes, AppError> {
    match Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(err) if err.downcast_ref::<LengthLimitError>().is_some() => {
            Err(AppError::PayloadTooLarge)
        }
        Err(err) => Err(AppError::BadRequest(format!(
            "Cannot read the request body: {err}"
        ))),
    }
}

/// Keeps the handler's `response` as the answer of `held`'s key when it is final; frees the key
/// otherwise. The client gets the response either way.
async fn keep(held: Held, response: Response) -> Response {
    let status = response.status();
    if !is_kept(status.as_u16()) {
        held.abandon().await;
        return response;
    }
    let (parts, body) = response.into_parts();
    let body = match body.collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(err) => {
            held.abandon().await;
            return AppError::Internal(anyhow::Error::new(err).context("reading an answer"))
                .into_response();
        }
    };
    let answer = Answer {
        status: status.as_u16(),
        headers: parts
            .headers
            .iter()
            .filter(|(name, _)| !NOT_KEPT.contains(name))
            .filter_map(|(name, value)| Some((name.to_string(), value.to_str().ok()?.to_string())))
            .collect(),
        body: body.to_vec(),
    };
    match held
        .services
        .idempotency()
        .complete(&held.claim, &answer)
        .await
    {
        Ok(true) => held.disarm(),
        Ok(false) => {
            tracing::warn!(
                "an Idempotency-Key was taken over while its request ran (longer than \
                 REQUEST_TIMEOUT); its answer is not kept"
            );
            held.disarm();
        }
        Err(err) => {
            tracing::error!(
                error = %err,
                "keeping the answer of an Idempotency-Key failed; freeing the key"
            );
            held.abandon().await;
        }
    }
    Response::from_parts(parts, Body::from(body))
}

/// A kept answer, sent again.
fn replay(answer: Answer) -> Response {
    let Ok(status) = StatusCode::from_u16(answer.status) else {
        return AppError::Internal(anyhow::anyhow!("kept status {} is invalid", answer.status))
            .into_response();
    };
    let mut response = Response::new(Body::from(answer.body));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    for (name, value) in answer.headers {
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(&value),
        ) {
            headers.append(name, value);
        }
    }
    headers.insert(IDEMPOTENCY_REPLAYED, HeaderValue::from_static("true"));
    response
}

/// 409 with `Retry-After`: the request holding the key has not answered yet.
fn in_progress() -> Response {
    let mut response = AppError::Conflict(
        "A request with this Idempotency-Key is in progress; retry after it has finished.".into(),
    )
    .into_response();
    response.headers_mut().insert(
        header::RETRY_AFTER,
        HeaderValue::from(IN_PROGRESS_RETRY_AFTER_SECS),
    );
    response
}

/// A claimed key while its request runs. Dropped before it is settled — the request timed out
/// (`REQUEST_TIMEOUT`), its handler panicked, its connection went away — it frees the key in
/// the background, so that the client can send the request again at once.
struct Held {
    services: AppState,
    claim: Claim,
    settled: bool,
}

impl Held {
    fn new(services: AppState, claim: Claim) -> Self {
        Self {
            services,
            claim,
            settled: false,
        }
    }

    /// Frees the key now.
    async fn abandon(mut self) {
        self.settled = true;
        free(&self.services, &self.claim).await;
    }

    /// The key is settled: nothing to do on drop.
    fn disarm(mut self) {
        self.settled = true;
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        if self.settled {
            return;
        }
        let (services, claim) = (self.services.clone(), self.claim.clone());
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move { free(&services, &claim).await });
        }
    }
}

async fn free(services: &AppState, claim: &Claim) {
    if let Err(err) = services.idempotency().abandon(claim).await {
        tracing::warn!(
            error = %err,
            "freeing an Idempotency-Key failed; it is free again after its lease"
        );
    }
}
