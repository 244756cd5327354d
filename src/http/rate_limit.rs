//! Per-client-IP rate limiting of a group of routes: a fixed one-minute window counted in the
//! key-value store (shared by every replica), 429 with `Retry-After` beyond the limit.
//!
//! ```ignore
//! let limit = RateLimit::new(kv, config.public_api_max_attempts, "public", config.trusted_proxies.clone());
//! router.layer(axum::middleware::from_fn_with_state(limit, rate_limit::enforce))
//! ```
//!
//! When the store fails the request is let through (fail open) and the failure logged: an outage
//! of Redis or the database must not take down sign-up and the provisioning webhook, whose own
//! checks (single-use keys, signatures) do not depend on the limit.

use std::net::SocketAddr;
use std::time::Duration;

use axum::extract::connect_info::{ConnectInfo, MockConnectInfo};
use axum::extract::{Request, State};
use axum::http::{Extensions, HeaderName, HeaderValue};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::client_ip::TrustedProxies;
use crate::clock::Clock;
use crate::http::error::AppError;
use crate::kv::Kv;

const WINDOW: Duration = Duration::from_secs(60);

/// What a client is told when over the limit (the original's wording).
pub const MESSAGE: &str = "Too many requests, please try again later.";

static LIMIT: HeaderName = HeaderName::from_static("x-ratelimit-limit");
static REMAINING: HeaderName = HeaderName::from_static("x-ratelimit-remaining");
static RESET: HeaderName = HeaderName::from_static("x-ratelimit-reset");

/// The limit of one group of routes (its `scope`): at most `max_per_minute` requests per client
/// IP and minute.
#[derive(Clone)]
pub struct RateLimit {
    kv: Kv,
    max_per_minute: u32,
    scope: &'static str,
    proxies: TrustedProxies,
    clock: Clock,
}

impl RateLimit {
    /// `scope` names the group in the counter keys (`rl:<scope>:<ip>:<window>`), so groups
    /// are counted separately.
    pub fn new(kv: Kv, max_per_minute: u32, scope: &'static str, proxies: TrustedProxies) -> Self {
        Self {
            kv,
            max_per_minute,
            scope,
            proxies,
            clock: Clock::system(),
        }
    }

    /// The same limit with windows counted on `clock` (the application's; tests use a manual
    /// clock so that no window boundary falls in the middle of a test).
    pub fn with_clock(self, clock: Clock) -> Self {
        Self { clock, ..self }
    }
}

/// The middleware: counts the request against its client's window and answers 429 (with
/// `Retry-After`, in seconds) beyond the limit. Every answer carries `X-RateLimit-Limit`,
/// `X-RateLimit-Remaining` and `X-RateLimit-Reset` (Unix seconds) (the legacy headers of
/// express-rate-limit, which the original's limiter is built on).
pub async fn enforce(State(limit): State<RateLimit>, request: Request, next: Next) -> Response {
    let Some(peer) = peer_address(request.extensions()) else {
        return AppError::Internal(anyhow::anyhow!(
            "rate limiting needs the peer address: serve with into_make_service_with_connect_info"
        ))
        .into_response();
    };
    let client = limit.proxies.client_ip(peer.ip(), request.headers());
    let now = limit.clock.now();
    let now_ms = u64::try_from(now.timestamp_millis()).unwrap_or(0);
    let window_ms = WINDOW.as_millis() as u64;
    let window = now_ms / window_ms;
    let window_end_ms = (window + 1) * window_ms;
    let key = format!("rl:{}:{client}:{window}", limit.scope);

    let hit = match limit
        .kv
        .hit(&key, Duration::from_millis(window_end_ms - now_ms))
        .await
    {
        Ok(hit) => hit,
        Err(err) => {
            tracing::error!(
                error = format!("{err:#}"),
                scope = limit.scope,
                "rate limit store failed; letting the request through"
            );
            return next.run(request).await;
        }
    };
    let max = u64::from(limit.max_per_minute);
    let reset_at = (now_ms + millis(hit.reset_in)).div_ceil(1000);
    let mut response = if hit.count > max {
        tracing::info!(scope = limit.scope, %client, "rate limit exceeded");
        AppError::TooManyRequests {
            message: MESSAGE.to_string(),
            retry_after_secs: millis(hit.reset_in)
                .div_ceil(1000)
                .clamp(1, WINDOW.as_secs()),
        }
        .into_response()
    } else {
        next.run(request).await
    };
    let headers = response.headers_mut();
    headers.insert(LIMIT.clone(), HeaderValue::from(max));
    headers.insert(
        REMAINING.clone(),
        HeaderValue::from(max.saturating_sub(hit.count)),
    );
    headers.insert(RESET.clone(), HeaderValue::from(reset_at));
    response
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// The TCP peer, as the server (or `MockConnectInfo` in tests) records it in a request's
/// `extensions`.
pub(crate) fn peer_address(extensions: &Extensions) -> Option<SocketAddr> {
    extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| *addr)
        .or_else(|| {
            extensions
                .get::<MockConnectInfo<SocketAddr>>()
                .map(|MockConnectInfo(addr)| *addr)
        })
}
