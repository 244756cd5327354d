//! `Idempotency-Key` (`docs/idempotency.md`): the rules of replaying a POST's first answer. A
//! key is 1–255 printable ASCII characters; it belongs to one caller on one route (method and
//! path); the request it names is the query string and body (their SHA-256, the fingerprint).
//! The first request with a key claims it, does the work and keeps its answer for
//! `IDEMPOTENCY_TTL` — unless the answer says the request may succeed when sent again (5xx, a
//! rate limit, missing credentials), in which case the key is freed. A key whose work committed
//! is never freed: the work's own transactions mark it, so a lost answer cannot make the work
//! run twice. The records live in the database (`store::idempotency`), shared by every replica.

use std::future::Future;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use serde_json::Value;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::config::Config;
use crate::store::Db;
use crate::store::idempotency::{self as record, Existing, NewClaim};

/// The most characters a key may have.
pub const MAX_KEY_LENGTH: usize = 255;

/// How much longer than `REQUEST_TIMEOUT` a claim holds without an answer before another request
/// may take the key over: by then the request that claimed it has been cancelled, or its server
/// is gone.
pub const LEASE_MARGIN: Duration = Duration::from_secs(5);

/// What a client is told about a key it may not use.
pub const KEY_RULE: &str = "Idempotency-Key must be 1 to 255 printable ASCII characters";

/// A well-formed `Idempotency-Key`: 1 to [`MAX_KEY_LENGTH`] printable ASCII characters (space
/// to `~`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    /// The key in a header value's bytes; `None` when it breaks [`KEY_RULE`].
    pub fn parse(raw: &[u8]) -> Option<Self> {
        let fits = (1..=MAX_KEY_LENGTH).contains(&raw.len())
            && raw.iter().all(|b| (b' '..=b'~').contains(b));
        fits.then(|| Self(String::from_utf8_lossy(raw).into_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Who sent a request, as far as whose answer it may be given goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller<'a> {
    /// A verified bearer token: its caller id (`Principal::id`), whichever token it came with.
    Principal(&'a str),
    /// Anyone else (public routes): the credentials the request presents (an `Authorization`
    /// value such as a lead key, a webhook signature; possibly none) and its client address.
    /// Their answers are kept per request body too: see [`Request::record_id`].
    Public {
        credentials: Vec<&'a [u8]>,
        client: Option<IpAddr>,
    },
}

/// A POST with an `Idempotency-Key`, as the rules see it.
#[derive(Debug, Clone)]
pub struct Request<'a> {
    pub caller: Caller<'a>,
    pub method: &'a str,
    pub path: &'a str,
    /// The raw query string (without `?`; empty when there is none).
    pub query: &'a str,
    pub body: &'a [u8],
    pub key: &'a IdempotencyKey,
}

impl Request<'_> {
    /// What makes two requests with one key the same request: the SHA-256 of the query string
    /// and the raw body bytes.
    pub fn fingerprint(&self) -> String {
        digest(&[b"fingerprint", self.query.as_bytes(), self.body])
    }

    /// The record of this key: the SHA-256 of the caller, method, path and key, so that one
    /// caller's key never names another's answer, and neither keys nor credentials are stored.
    /// A public caller's record is also per fingerprint: a stranger who guesses a key (and shares
    /// an address) gets a stored answer only by sending the very same body with the very same
    /// credentials — the request whose answer it is.
    pub fn record_id(&self) -> String {
        let route = [
            self.method.as_bytes(),
            self.path.as_bytes(),
            self.key.as_str().as_bytes(),
        ];
        match &self.caller {
            Caller::Principal(id) => {
                let [method, path, key] = route;
                digest(&[
                    b"tms-idempotency/1 principal",
                    id.as_bytes(),
                    method,
                    path,
                    key,
                ])
            }
            Caller::Public {
                credentials,
                client,
            } => {
                let client = client.map(|ip| ip.to_canonical().to_string());
                let credentials = digest(credentials);
                let fingerprint = self.fingerprint();
                let [method, path, key] = route;
                digest(&[
                    b"tms-idempotency/1 public",
                    client.as_deref().unwrap_or("").as_bytes(),
                    credentials.as_bytes(),
                    fingerprint.as_bytes(),
                    method,
                    path,
                    key,
                ])
            }
        }
    }
}

/// The hex SHA-256 of `parts`, each prefixed with its length so that no two lists of parts
/// hash alike.
fn digest(parts: &[&[u8]]) -> String {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update((part.len() as u64).to_be_bytes());
        hasher.update(part);
    }
    hex::encode(hasher.finalize())
}

/// Whether an answer with `status` is kept and replayed: every 2xx and every 4xx that the
/// request itself decides (validation, not found, conflicts with the state). Not kept: 5xx (the
/// client should try again), 401 and 403 (the credentials, not the request, were refused), 408,
/// 413 and 415 (how the request was sent), 429 (the client should try again later).
pub fn is_kept(status: u16) -> bool {
    match status {
        200..=299 => true,
        401 | 403 | 408 | 413 | 415 | 429 => false,
        400..=499 => true,
        _ => false,
    }
}

/// A kept answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub status: u16,
    /// The headers to send again, as they were sent (name, value).
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// A key held by the request that does the work, until it completes or abandons it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    id: String,
    owner: Uuid,
}

/// What a request with a key is to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Begun {
    /// The work is this request's: do it, then [`Idempotency::complete`] or
    /// [`Idempotency::abandon`].
    Started(Claim),
    /// The same request was answered: send this answer again.
    Replay(Answer),
    /// The same request is running now (here or on another replica).
    InProgress,
    /// The same request did its work (its transaction committed) but its answer was lost: its
    /// server stopped, or it was cancelled, before the answer was kept. Nothing is done again.
    AnswerLost,
    /// The key was used for another request (another query string or body).
    Mismatch,
}

/// Why a key could not be looked up or its answer kept.
#[derive(Debug, thiserror::Error)]
pub enum IdempotencyError {
    #[error(transparent)]
    Database(#[from] sqlx::Error),
    /// A kept answer that cannot be read back.
    #[error("unreadable idempotency record: {0}")]
    Unreadable(String),
}

/// The keys of the service, in its database.
pub struct Idempotency<'a> {
    pub db: &'a Db,
    pub config: &'a Config,
}

impl Idempotency<'_> {
    /// How long a claim holds without an answer.
    pub fn lease(&self) -> Duration {
        self.config.request_timeout + LEASE_MARGIN
    }

    /// Looks up `request`'s key and claims it when it is free (new, expired, or abandoned by a
    /// request whose lease ran out), in one transaction.
    pub async fn begin(&self, request: &Request<'_>) -> Result<Begun, IdempotencyError> {
        let now = self.db.clock().now();
        let id = request.record_id();
        let fingerprint = request.fingerprint();
        let owner = Uuid::new_v4();
        let claim = NewClaim {
            id: &id,
            fingerprint: &fingerprint,
            owner,
            locked_until: later(now, self.lease()),
            expires_at: later(now, self.config.idempotency_ttl),
        };
        let mut tx = self.db.begin().await?;
        let begun = if record::claim(&mut tx.conn(), &claim, now).await? {
            Begun::Started(Claim {
                id: id.clone(),
                owner,
            })
        } else {
            match record::find(&mut tx.conn(), &id).await? {
                // The claim conflicted with this row, which the transaction holds.
                None => return Err(IdempotencyError::Unreadable("the record vanished".into())),
                Some(existing) => decide(existing, &fingerprint, now)?,
            }
        };
        tx.commit().await?;
        Ok(begun)
    }

    /// Keeps `answer` as the answer of `claim`'s key; `false` when the claim was lost (its lease
    /// ran out and another request took the key over).
    pub async fn complete(&self, claim: &Claim, answer: &Answer) -> Result<bool, sqlx::Error> {
        let headers = Value::Array(
            answer
                .headers
                .iter()
                .map(|(name, value)| serde_json::json!([name, value]))
                .collect(),
        );
        record::complete(
            &mut self.db.conn(),
            &claim.id,
            claim.owner,
            answer.status,
            &headers,
            &answer.body,
        )
        .await
    }

    /// Does `work`, the request holding `claim`, so that each transaction it commits marks the
    /// key's work committed in that transaction (see [`Begun::AnswerLost`]). Also whether the
    /// claim was found taken over by another request (its lease ran out) when the work tried to
    /// commit: that commit failed, the other request does the work.
    pub async fn within<F: Future>(&self, claim: &Claim, work: F) -> (F::Output, bool) {
        let taken_over = Arc::new(AtomicBool::new(false));
        let running = record::ClaimRef {
            id: claim.id.clone(),
            owner: claim.owner,
            taken_over: taken_over.clone(),
        };
        let output = record::within(running, work).await;
        (output, taken_over.load(Ordering::Relaxed))
    }

    /// Frees `claim`'s key without an answer (the answer is not kept, or the request never got
    /// one), so that the request can be sent again — unless its work committed: then the key
    /// answers [`Begun::AnswerLost`] from now on.
    pub async fn abandon(&self, claim: &Claim) -> Result<(), sqlx::Error> {
        let now = self.db.clock().now();
        record::release(&mut self.db.conn(), &claim.id, claim.owner, now).await?;
        Ok(())
    }

    /// Deletes the records expired now (the janitor's step); how many. Expired records are
    /// already ignored: this only reclaims space.
    pub async fn purge_expired(&self) -> Result<u64, sqlx::Error> {
        record::purge_expired(&mut self.db.conn(), self.db.clock().now()).await
    }
}

/// What an existing live record means for a request with `fingerprint`.
fn decide(
    existing: Existing,
    fingerprint: &str,
    now: DateTime<Utc>,
) -> Result<Begun, IdempotencyError> {
    if existing.fingerprint != fingerprint {
        return Ok(Begun::Mismatch);
    }
    let Some(status) = existing.status else {
        // Until its lease ends the request may still keep its answer.
        return Ok(match existing.committed_at {
            Some(_) if existing.locked_until <= now => Begun::AnswerLost,
            _ => Begun::InProgress,
        });
    };
    let status = u16::try_from(status)
        .map_err(|_| IdempotencyError::Unreadable(format!("status {status}")))?;
    let headers = match existing.headers {
        None => Vec::new(),
        Some(value) => serde_json::from_value(value)
            .map_err(|err| IdempotencyError::Unreadable(format!("headers: {err}")))?,
    };
    Ok(Begun::Replay(Answer {
        status,
        headers,
        body: existing.body.unwrap_or_default(),
    }))
}

fn later(now: DateTime<Utc>, by: Duration) -> DateTime<Utc> {
    now + TimeDelta::milliseconds(i64::try_from(by.as_millis()).unwrap_or(i64::MAX / 2))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(raw: &str) -> IdempotencyKey {
        IdempotencyKey::parse(raw.as_bytes()).unwrap()
    }

    fn request<'a>(caller: Caller<'a>, key: &'a IdempotencyKey, body: &'a [u8]) -> Request<'a> {
        Request {
            caller,
            method: "POST",
            path: "/tenants",
            query: "",
            body,
            key,
        }
    }

    #[test]
    fn keys_are_1_to_255_printable_ascii_characters() {
        for good in [
            "a",
            " ",
            "~",
            "0d6c3a9e-8a4b-4bb8-9a55-3a3b2b0e9f10",
            &"k".repeat(255),
        ] {
            assert_eq!(
                IdempotencyKey::parse(good.as_bytes()).unwrap().as_str(),
                good
            );
        }
        for bad in [
            &b""[..],
            &[b'k'; 256],
            "é".as_bytes(),
            b"tab\there",
            b"new\nline",
            b"\x7f",
            b"\x00",
        ] {
            assert_eq!(IdempotencyKey::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn final_answers_are_kept_and_retryable_ones_are_not() {
        for kept in [200, 201, 202, 204, 400, 404, 409, 410, 422] {
            assert!(is_kept(kept), "{kept}");
        }
        for not_kept in [
            100, 301, 304, 401, 403, 408, 413, 415, 429, 500, 502, 503, 504,
        ] {
            assert!(!is_kept(not_kept), "{not_kept}");
        }
    }

    #[test]
    fn the_fingerprint_covers_the_query_and_the_body() {
        let k = key("k1");
        let base = request(Caller::Principal("u1"), &k, b"{\"a\":1}");
        let other_body = request(Caller::Principal("u1"), &k, b"{\"a\": 1}");
        let mut with_query = base.clone();
        with_query.query = "x=1";
        // A query string and body that would concatenate alike still differ.
        let mut shifted = request(Caller::Principal("u1"), &k, b"=1{\"a\":1}");
        shifted.query = "x";
        let prints = [
            base.fingerprint(),
            other_body.fingerprint(),
            with_query.fingerprint(),
            shifted.fingerprint(),
        ];
        for (i, a) in prints.iter().enumerate() {
            for b in &prints[i + 1..] {
                assert_ne!(a, b);
            }
        }
        assert_eq!(
            base.fingerprint(),
            request(Caller::Principal("u2"), &k, b"{\"a\":1}").fingerprint()
        );
    }

    #[test]
    fn records_are_per_caller_route_and_key() {
        let (k1, k2) = (key("k1"), key("k2"));
        let body = b"{}";
        let base = request(Caller::Principal("u1"), &k1, body);
        let mut other_path = base.clone();
        other_path.path = "/contacts";
        let mut other_method = base.clone();
        other_method.method = "PUT";
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let public = |credentials: Vec<&'static [u8]>, client| Caller::Public {
            credentials,
            client: Some(client),
        };
        let ids = [
            base.record_id(),
            request(Caller::Principal("u2"), &k1, body).record_id(),
            request(Caller::Principal("u1"), &k2, body).record_id(),
            other_path.record_id(),
            other_method.record_id(),
            request(public(vec![], ip), &k1, body).record_id(),
            request(public(vec![b"Bearer a"], ip), &k1, body).record_id(),
            request(public(vec![b"Bearer b"], ip), &k1, body).record_id(),
            request(public(vec![], "192.0.2.2".parse().unwrap()), &k1, body).record_id(),
            request(public(vec![], ip), &k1, b"{ }").record_id(),
        ];
        for (i, a) in ids.iter().enumerate() {
            assert_eq!(a.len(), 64);
            for b in &ids[i + 1..] {
                assert_ne!(a, b);
            }
        }
        // An authenticated caller's record does not depend on the body (so that another body
        // is found and refused), nor on its address.
        assert_eq!(
            base.record_id(),
            request(Caller::Principal("u1"), &k1, b"[1]").record_id()
        );
        // An IPv4-mapped address is its IPv4 address.
        assert_eq!(
            request(public(vec![], ip), &k1, body).record_id(),
            request(
                public(vec![], "::ffff:192.0.2.1".parse().unwrap()),
                &k1,
                body
            )
            .record_id()
        );
    }

    #[test]
    fn an_existing_record_is_a_mismatch_a_request_in_progress_an_answer_or_a_lost_answer() {
        let now = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        let existing = |fingerprint: &str, status: Option<i64>| Existing {
            fingerprint: fingerprint.into(),
            status,
            headers: Some(serde_json::json!([["content-type", "application/json"]])),
            body: Some(b"{}".to_vec()),
            locked_until: now + TimeDelta::seconds(5),
            committed_at: None,
        };
        let decide = |existing: Existing, fingerprint: &str| decide(existing, fingerprint, now);
        assert_eq!(
            decide(existing("a", Some(200)), "b").unwrap(),
            Begun::Mismatch
        );
        assert_eq!(decide(existing("a", None), "b").unwrap(), Begun::Mismatch);
        assert_eq!(decide(existing("a", None), "a").unwrap(), Begun::InProgress);
        assert_eq!(
            decide(existing("a", Some(201)), "a").unwrap(),
            Begun::Replay(Answer {
                status: 201,
                headers: vec![("content-type".into(), "application/json".into())],
                body: b"{}".to_vec(),
            })
        );
        let mut broken = existing("a", Some(200));
        broken.headers = Some(serde_json::json!({"not": "a list"}));
        assert!(decide(broken, "a").is_err());

        // Work committed, no answer: in progress while its request may still keep one, then
        // lost — never a new claim. Another body is still a mismatch; a kept answer wins.
        let mut committed = existing("a", None);
        committed.committed_at = Some(now - TimeDelta::seconds(1));
        assert_eq!(decide(committed.clone(), "a").unwrap(), Begun::InProgress);
        committed.locked_until = now;
        assert_eq!(decide(committed.clone(), "a").unwrap(), Begun::AnswerLost);
        assert_eq!(decide(committed.clone(), "b").unwrap(), Begun::Mismatch);
        committed.status = Some(204);
        committed.body = Some(Vec::new());
        assert!(matches!(
            decide(committed, "a").unwrap(),
            Begun::Replay(Answer { status: 204, .. })
        ));
    }
}
