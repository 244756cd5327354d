//! The admin APIs of the identity providers (`docs/identity.md`): creating a tenant's first admin
//! user in Keycloak ([`keycloak`]) or Auth0 ([`auth0`]). What is common lives here: the user to
//! create, the vendor errors and how they map to an answer, admin tokens cached until shortly
//! before they expire, and one HTTP client with timeouts.
//!
//! Every step finds what an earlier attempt made before it makes anything, so a retried call
//! returns the same user. Credentials, tokens and passwords are never logged.

pub mod auth0;
pub mod keycloak;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use reqwest::{RequestBuilder, Response, StatusCode};
use serde_json::Value;

use crate::clock::Clock;

/// How long one call to a provider may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// A cached token is dropped this long before it expires, or a quarter of its lifetime before
/// when that is shorter (Keycloak's admin tokens live a minute).
const TOKEN_MARGIN_SECS: i64 = 60;

/// The tenant's admin user, as the identity provider is to know it.
#[derive(Debug, Clone)]
pub struct Admin<'a> {
    pub email: &'a str,
    pub first_name: &'a str,
    pub last_name: &'a str,
}

/// The tenant the user belongs to.
#[derive(Debug, Clone)]
pub struct TenantInfo<'a> {
    pub key: &'a str,
    pub name: &'a str,
}

/// An identity provider with the settings of one tenant.
#[derive(Debug, Clone)]
pub enum Provider {
    Keycloak(keycloak::Settings),
    Auth0(auth0::Settings),
}

/// Why a provider did not create the user.
#[derive(Debug, thiserror::Error)]
pub enum IdpError {
    /// The provider refused a request it should have taken: wrong admin credentials, a missing
    /// permission, a bad setting (502).
    #[error("{vendor} refused {call}: {status} {message}")]
    Refused {
        vendor: &'static str,
        call: &'static str,
        status: u16,
        message: String,
    },
    /// The provider could not be reached, did not answer in time, is rate limiting (429) or
    /// failing (5xx): try again later (503).
    #[error("{vendor} is unavailable ({call}: {detail})")]
    Unavailable {
        vendor: &'static str,
        call: &'static str,
        detail: String,
        /// The provider's `Retry-After`, in seconds, when it gave one.
        retry_after: Option<u64>,
    },
    /// A setting cannot be used (a host that is not a URL, say).
    #[error("{0}")]
    BadSetting(String),
}

/// The clients of the identity providers: one HTTP client and the admin tokens in use.
#[derive(Clone)]
pub struct IdentityProviders {
    client: reqwest::Client,
    tokens: Arc<Mutex<HashMap<String, CachedToken>>>,
    clock: Clock,
}

#[derive(Clone)]
struct CachedToken {
    token: String,
    until: DateTime<Utc>,
}

impl IdentityProviders {
    pub fn new(clock: Clock) -> anyhow::Result<Self> {
        let client = reqwest::Client::builder()
            .timeout(CALL_TIMEOUT)
            .connect_timeout(CONNECT_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        Ok(Self {
            client,
            tokens: Arc::new(Mutex::new(HashMap::new())),
            clock,
        })
    }

    /// Creates the tenant's admin user in `provider` — or finds the one an earlier attempt
    /// made — and returns its id there.
    pub async fn create_admin(
        &self,
        provider: &Provider,
        tenant: &TenantInfo<'_>,
        admin: &Admin<'_>,
    ) -> Result<String, IdpError> {
        match provider {
            Provider::Keycloak(settings) => settings.create_admin(self, tenant, admin).await,
            Provider::Auth0(settings) => settings.create_admin(self, tenant, admin).await,
        }
    }

    fn http(&self) -> &reqwest::Client {
        &self.client
    }

    /// An admin token: the one cached under `key`, or a new one from the token `endpoint`
    /// with the `form` of its grant, then kept for its lifetime.
    async fn token(
        &self,
        key: String,
        step: Call,
        endpoint: url::Url,
        form: &[(&str, &str)],
    ) -> Result<String, IdpError> {
        if let Some(token) = self.cached_token(&key) {
            return Ok(token);
        }
        let request = self.http().post(endpoint).form(form);
        let response = step.expect_success(request).await?;
        let (token, expires_in) = access_token(step, &step.json(response).await?)?;
        self.keep_token(key, &token, expires_in);
        Ok(token)
    }

    /// The token cached under `key`, if it is still good.
    fn cached_token(&self, key: &str) -> Option<String> {
        let now = self.clock.now();
        let tokens = self.tokens.lock().unwrap_or_else(|p| p.into_inner());
        tokens
            .get(key)
            .filter(|t| t.until > now)
            .map(|t| t.token.clone())
    }

    /// Keeps `token`, valid for `expires_in` seconds, under `key`.
    fn keep_token(&self, key: String, token: &str, expires_in: Option<i64>) {
        let Some(lifetime) = expires_in else {
            return;
        };
        let margin = TOKEN_MARGIN_SECS.min(lifetime / 4);
        let until = self.clock.now() + chrono::Duration::seconds(lifetime - margin);
        if until <= self.clock.now() {
            return;
        }
        let mut tokens = self.tokens.lock().unwrap_or_else(|p| p.into_inner());
        tokens.insert(
            key,
            CachedToken {
                token: token.to_string(),
                until,
            },
        );
    }

    /// Forgets the token under `key` (the provider refused it).
    fn drop_token(&self, key: &str) {
        let mut tokens = self.tokens.lock().unwrap_or_else(|p| p.into_inner());
        tokens.remove(key);
    }
}

/// One call to a provider: its name (for errors and logs) and the vendor.
#[derive(Debug, Clone, Copy)]
struct Call {
    vendor: &'static str,
    name: &'static str,
}

impl Call {
    /// Sends `request`. No answer, 429 and 5xx are [`IdpError::Unavailable`]; every other answer
    /// is the caller's to judge.
    async fn send(self, request: RequestBuilder) -> Result<Response, IdpError> {
        let response = crate::telemetry::client_send(request).await.map_err(|err| {
            let detail = if err.is_timeout() {
                "no answer in time".to_string()
            } else if err.is_connect() {
                "cannot connect".to_string()
            } else {
                "the request failed".to_string()
            };
            tracing::warn!(vendor = self.vendor, call = self.name, error = %err, "identity provider call failed");
            self.unavailable(detail, None)
        })?;
        let status = response.status();
        tracing::debug!(
            vendor = self.vendor,
            call = self.name,
            status = status.as_u16(),
            "identity provider answered"
        );
        if status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error() {
            let retry_after = response
                .headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse().ok());
            let message = vendor_message(response).await;
            tracing::warn!(vendor = self.vendor, call = self.name, status = status.as_u16(),
                %message, "identity provider unavailable");
            return Err(self.unavailable(format!("{status} {message}"), retry_after));
        }
        Ok(response)
    }

    /// Sends `request` and expects a 2xx.
    async fn expect_success(self, request: RequestBuilder) -> Result<Response, IdpError> {
        let response = self.send(request).await?;
        if response.status().is_success() {
            Ok(response)
        } else {
            Err(self.refused(response).await)
        }
    }

    fn unavailable(self, detail: String, retry_after: Option<u64>) -> IdpError {
        IdpError::Unavailable {
            vendor: self.vendor,
            call: self.name,
            detail,
            retry_after,
        }
    }

    /// The error of an answer the call did not expect.
    async fn refused(self, response: Response) -> IdpError {
        let status = response.status().as_u16();
        let message = vendor_message(response).await;
        tracing::warn!(vendor = self.vendor, call = self.name, status, %message,
            "identity provider refused a call");
        IdpError::Refused {
            vendor: self.vendor,
            call: self.name,
            status,
            message,
        }
    }

    /// The JSON body of a successful answer.
    async fn json(self, response: Response) -> Result<Value, IdpError> {
        response.json().await.map_err(|_| IdpError::Refused {
            vendor: self.vendor,
            call: self.name,
            status: 200,
            message: "the answer is not the JSON expected".into(),
        })
    }
}

/// What a vendor said in an error answer: `errorMessage` (Keycloak), `error_description`
/// (OAuth), `message` (Auth0), `error`, or the start of the text.
async fn vendor_message(response: Response) -> String {
    let text = response.text().await.unwrap_or_default();
    let said = serde_json::from_str::<Value>(&text).ok().and_then(|body| {
        ["errorMessage", "error_description", "message", "error"]
            .iter()
            .find_map(|k| body.get(*k).and_then(Value::as_str).map(str::to_string))
    });
    let said = said.unwrap_or(text);
    said.chars()
        .take(300)
        .collect::<String>()
        .trim()
        .to_string()
}

/// `base` with `segments` appended as path segments (each percent-encoded).
fn url(base: &str, segments: &[&str]) -> Result<url::Url, IdpError> {
    let mut url = url::Url::parse(base)
        .map_err(|_| IdpError::BadSetting(format!("{base:?} is not a URL")))?;
    url.path_segments_mut()
        .map_err(|_| IdpError::BadSetting(format!("{base:?} cannot be a base URL")))?
        .pop_if_empty()
        .extend(segments);
    Ok(url)
}

/// The access token of a token endpoint's answer and its lifetime in seconds.
fn access_token(call: Call, body: &Value) -> Result<(String, Option<i64>), IdpError> {
    let token = body
        .get("access_token")
        .and_then(Value::as_str)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| IdpError::Refused {
            vendor: call.vendor,
            call: call.name,
            status: 200,
            message: "the answer has no access_token".into(),
        })?;
    Ok((
        token.to_string(),
        body.get("expires_in").and_then(Value::as_i64),
    ))
}

/// The last path segment of a `Location` header: the id of what a POST created.
fn created_id(response: &Response) -> Option<String> {
    let location = response
        .headers()
        .get(reqwest::header::LOCATION)?
        .to_str()
        .ok()?;
    let id = location.trim_end_matches('/').rsplit('/').next()?;
    (!id.is_empty()).then(|| id.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_keep_the_base_path_and_encode_segments() {
        assert_eq!(
            url(
                "https://sso.example.com/auth",
                &["admin", "realms", "a b/c"]
            )
            .unwrap()
            .as_str(),
            "https://sso.example.com/auth/admin/realms/a%20b%2Fc"
        );
        assert_eq!(
            url("http://127.0.0.1:8080/", &["realms", "master"])
                .unwrap()
                .as_str(),
            "http://127.0.0.1:8080/realms/master"
        );
        assert!(matches!(url("sso", &[]), Err(IdpError::BadSetting(_))));
    }

    #[test]
    fn tokens_are_cached_until_shortly_before_they_expire() {
        let clock = Clock::manual(Utc::now());
        let idp = IdentityProviders::new(clock.clone()).unwrap();
        idp.keep_token("k".into(), "t1", Some(86_400));
        idp.keep_token("minute".into(), "t2", Some(60));
        assert_eq!(idp.cached_token("k").as_deref(), Some("t1"));
        clock.advance(Duration::from_secs(44));
        assert_eq!(idp.cached_token("minute").as_deref(), Some("t2"));
        clock.advance(Duration::from_secs(2));
        assert_eq!(
            idp.cached_token("minute"),
            None,
            "a quarter of a minute before"
        );
        clock.advance(Duration::from_secs(86_400 - 46 - 61));
        assert_eq!(idp.cached_token("k").as_deref(), Some("t1"));
        clock.advance(Duration::from_secs(2));
        assert_eq!(idp.cached_token("k"), None, "a minute before a day");
        idp.keep_token("gone".into(), "t3", Some(0));
        assert_eq!(idp.cached_token("gone"), None, "expired already");
        idp.keep_token("none".into(), "t3", None);
        assert_eq!(idp.cached_token("none"), None, "no lifetime, not kept");
        idp.keep_token("k".into(), "t4", Some(3600));
        idp.drop_token("k");
        assert_eq!(idp.cached_token("k"), None);
    }
}
