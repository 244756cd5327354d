//! The `idempotency_keys` table: one row per `Idempotency-Key` of a caller on a route
//! (`domain::idempotency` decides what the row's id and fingerprint are and which answers are
//! kept). A row is claimed by the request that does the work (`owner`, until `locked_until`),
//! then holds its answer until `expires_at`. The transactions of the work itself mark the row
//! committed (`committed_at`, see [`within`]), so a key whose work was saved is never run again,
//! even when its answer is lost. Every time is bound from the application's clock, never the
//! database's, so both databases give the same answers.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use chrono::{DateTime, Utc};
use serde_json::Value;
use uuid::Uuid;

use super::{Conn, Param};

// The statements are the same text on both databases; instants, UUIDs, JSON and bytes are bound
// as each stores them.

/// `$6` = now. A new key is inserted; an expired row, or one whose request was abandoned (still
/// without an answer after its lease, and its work never committed), is taken over. Anything
/// else stays as it is — and on PostgreSQL stays locked by this statement until the transaction
/// ends.
const CLAIM: &str = "INSERT INTO idempotency_keys \
     (id, fingerprint, owner, status, headers, body, locked_until, expires_at, committed_at) \
     VALUES ($1, $2, $3, NULL, NULL, NULL, $4, $5, NULL) \
     ON CONFLICT (id) DO UPDATE SET fingerprint = excluded.fingerprint, owner = excluded.owner, \
     status = NULL, headers = NULL, body = NULL, locked_until = excluded.locked_until, \
     expires_at = excluded.expires_at, committed_at = NULL \
     WHERE idempotency_keys.expires_at <= $6 \
     OR (idempotency_keys.status IS NULL AND idempotency_keys.committed_at IS NULL \
         AND idempotency_keys.locked_until <= $6)";

const FIND: &str = "SELECT fingerprint, status, headers, body, locked_until, committed_at \
     FROM idempotency_keys WHERE id = $1";

/// Run inside the work's transaction: `$3` = now.
const MARK_COMMITTED: &str = "UPDATE idempotency_keys SET committed_at = $3 \
     WHERE id = $1 AND owner = $2 AND status IS NULL";

const COMPLETE: &str = "UPDATE idempotency_keys SET status = $3, headers = $4, body = $5 \
     WHERE id = $1 AND owner = $2 AND status IS NULL";

const RELEASE: &str = "DELETE FROM idempotency_keys \
     WHERE id = $1 AND owner = $2 AND status IS NULL AND committed_at IS NULL";

/// A released claim whose work committed stays, its lease ended at `$3` (now): the key answers
/// that its work was done.
const RELEASE_COMMITTED: &str = "UPDATE idempotency_keys SET locked_until = $3 \
     WHERE id = $1 AND owner = $2 AND status IS NULL AND committed_at IS NOT NULL";

const PURGE: &str = "DELETE FROM idempotency_keys WHERE expires_at <= $1";

/// A claim to write: the row a request holds while it does the work.
#[derive(Debug, Clone, Copy)]
pub struct NewClaim<'a> {
    pub id: &'a str,
    pub fingerprint: &'a str,
    /// Who holds it: only this owner completes or releases it.
    pub owner: Uuid,
    /// Until when the claim holds without an answer; after that it counts as abandoned.
    pub locked_until: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

/// A row that was already there.
#[derive(Debug, Clone, PartialEq)]
pub struct Existing {
    pub fingerprint: String,
    /// `None` while its request is still running.
    pub status: Option<i64>,
    /// The answer's headers as stored (`[[name, value], …]`).
    pub headers: Option<Value>,
    pub body: Option<Vec<u8>>,
    /// Until when its request holds it without an answer.
    pub locked_until: DateTime<Utc>,
    /// When its work committed, if it did.
    pub committed_at: Option<DateTime<Utc>>,
}

/// The claim of the request running in this task, which its transactions mark committed.
#[derive(Debug, Clone)]
pub struct ClaimRef {
    pub id: String,
    pub owner: Uuid,
    /// Set when a commit found the claim taken over by another request (and failed).
    pub taken_over: Arc<AtomicBool>,
}

tokio::task_local! {
    static RUNNING: ClaimRef;
}

/// Runs `work` (a request holding the claim `claim`) so that every transaction it commits
/// ([`super::Tx::commit`]) marks the claim committed in that same transaction. Work spawned into
/// other tasks is not covered.
pub async fn within<F: Future>(claim: ClaimRef, work: F) -> F::Output {
    RUNNING.scope(claim, work).await
}

/// The claim of the request running in this task, if it holds one.
fn running() -> Option<ClaimRef> {
    RUNNING.try_with(ClaimRef::clone).ok()
}

/// Inside a request holding a claim ([`within`]): marks the claim committed in the transaction
/// `conn` is in, just before it commits, so that the key never runs its work again. A claim no
/// longer the request's (taken over after its lease) fails the commit instead: another request
/// now does the work.
pub(super) async fn mark_running_claim(conn: &mut Conn<'_>) -> Result<(), sqlx::Error> {
    let Some(claim) = running() else {
        return Ok(());
    };
    let now = conn.now();
    if mark_committed(conn, &claim, now).await? {
        return Ok(());
    }
    claim.taken_over.store(true, Ordering::Relaxed);
    tracing::warn!(
        "the Idempotency-Key of this request was taken over while it ran; its work is rolled back"
    );
    Err(sqlx::Error::Protocol(
        "the request's Idempotency-Key was taken over by another request".into(),
    ))
}

/// Marks `claim` committed at `now`, in the transaction `conn` is in; `false` when the claim is
/// no longer its request's (taken over after its lease, or already answered).
async fn mark_committed(
    conn: &mut Conn<'_>,
    claim: &ClaimRef,
    now: DateTime<Utc>,
) -> Result<bool, sqlx::Error> {
    let params = [
        Param::Text(&claim.id),
        Param::Uuid(claim.owner),
        Param::Instant(now),
    ];
    Ok(conn.raw_execute(MARK_COMMITTED, &params).await? == 1)
}

/// Writes `claim` unless a live row holds its id, at `now`; whether the claim is now this
/// caller's. Run it in a transaction and read the existing row with [`find`] in the same one
/// when it is not: PostgreSQL keeps that row locked until the transaction ends (an upsert
/// locks the conflicting row even when it updates nothing), SQLite's write transaction holds
/// the whole database.
pub async fn claim(
    conn: &mut Conn<'_>,
    claim: &NewClaim<'_>,
    now: DateTime<Utc>,
) -> Result<bool, sqlx::Error> {
    let params = [
        Param::Text(claim.id),
        Param::Text(claim.fingerprint),
        Param::Uuid(claim.owner),
        Param::Instant(claim.locked_until),
        Param::Instant(claim.expires_at),
        Param::Instant(now),
    ];
    Ok(conn.raw_execute(CLAIM, &params).await? == 1)
}

/// The row under `id`, expired or not.
pub async fn find(conn: &mut Conn<'_>, id: &str) -> Result<Option<Existing>, sqlx::Error> {
    let Some(row) = conn
        .raw_fetch_optional(FIND, &[Param::Text(id)], false)
        .await?
    else {
        return Ok(None);
    };
    Ok(Some(Existing {
        fingerprint: row.text("fingerprint")?.unwrap_or_default(),
        status: row.opt_int("status")?,
        headers: row.opt_json("headers")?,
        body: row.opt_bytes("body")?,
        locked_until: row.required_instant("locked_until")?,
        committed_at: row.instant("committed_at")?,
    }))
}

/// Stores the answer of the request that holds the claim `id` as `owner`; `false` when it no
/// longer does (its lease ran out and another request took the key over).
pub async fn complete(
    conn: &mut Conn<'_>,
    id: &str,
    owner: Uuid,
    status: u16,
    headers: &Value,
    body: &[u8],
) -> Result<bool, sqlx::Error> {
    let params = [
        Param::Text(id),
        Param::Uuid(owner),
        Param::Int(i64::from(status)),
        Param::Json(headers),
        Param::Bytes(body),
    ];
    Ok(conn.raw_execute(COMPLETE, &params).await? == 1)
}

/// Frees the claim `id` of `owner` that has no answer yet, at `now`: deleted, so that the key can
/// be used again, unless its work committed — then it stays, its lease ended. Whether there was
/// one.
pub async fn release(
    conn: &mut Conn<'_>,
    id: &str,
    owner: Uuid,
    now: DateTime<Utc>,
) -> Result<bool, sqlx::Error> {
    let params = [Param::Text(id), Param::Uuid(owner)];
    if conn.raw_execute(RELEASE, &params).await? == 1 {
        return Ok(true);
    }
    let params = [Param::Text(id), Param::Uuid(owner), Param::Instant(now)];
    Ok(conn.raw_execute(RELEASE_COMMITTED, &params).await? == 1)
}

/// Deletes the rows expired at `now` and returns how many.
pub async fn purge_expired(conn: &mut Conn<'_>, now: DateTime<Utc>) -> Result<u64, sqlx::Error> {
    conn.raw_execute(PURGE, &[Param::Instant(now)]).await
}
