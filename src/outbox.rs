//! The transactional outbox (SPEC §6, `docs/outbox.md`): [`enqueue`] writes a message in the
//! caller's transaction, so it commits or rolls back with the business change it announces; a
//! relay ([`relay_step`], looped by [`spawn_relay`]) claims due rows one at a time under a lease,
//! delivers them outside any transaction, then marks them delivered or schedules a retry with
//! exponential backoff. Delivery is at least once; each message carries its row id for consumer
//! de-duplication. How a row is claimed differs per backend and stays in this module.

use std::future::Future;
use std::time::Duration;

use anyhow::Context;
use chrono::{DateTime, Utc};
use serde_json::Value;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::store::values::format_timestamp;
use crate::store::{Backend, Conn, Db, Param, RawRow};

/// Delay before the first retry; each further failure doubles it.
pub const BACKOFF_BASE: Duration = Duration::from_secs(5);
/// Longest delay between two attempts: a row keeps being retried at this pace, never dropped.
pub const BACKOFF_CAP: Duration = Duration::from_secs(3600);
/// After this many failed attempts every further failure is logged at error level.
pub const ALERT_AFTER_ATTEMPTS: u32 = 20;
/// How long [`spawn_relay`] holds a claimed row; a delivery still running after this may be
/// repeated by another relay, so it exceeds every transport timeout.
pub const RELAY_LEASE: Duration = Duration::from_secs(120);
/// How long [`spawn_relay`] waits when nothing is due.
pub const POLL_INTERVAL: Duration = Duration::from_millis(500);
/// How long [`spawn_relay`] waits after a database error before trying again.
pub const ERROR_PAUSE: Duration = Duration::from_secs(5);
/// `last_error` keeps at most this many characters.
const MAX_ERROR_CHARS: usize = 2000;

/// Delivers the payload of one outbox row to where its topic goes (a mail transport, an event
/// sink). `id` is the row's id, stable across retries: pass it on for de-duplication.
pub trait Deliver: Send + Sync {
    fn deliver(&self, id: Uuid, payload: &Value)
    -> impl Future<Output = anyhow::Result<()>> + Send;
}

/// A shared handler delivers as the handler it shares.
impl<T: Deliver> Deliver for std::sync::Arc<T> {
    fn deliver(
        &self,
        id: Uuid,
        payload: &Value,
    ) -> impl Future<Output = anyhow::Result<()>> + Send {
        (**self).deliver(id, payload)
    }
}

/// What one [`relay_step`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// The row was delivered and marked so.
    Delivered(Uuid),
    /// Nothing was due.
    Empty,
    /// Delivery failed; the error is recorded and a retry scheduled.
    Failed(Uuid),
}

/// A row claimed by [`claim_due`]: the relay holds it until `locked_until`.
#[derive(Debug, Clone, PartialEq)]
pub struct Claimed {
    pub id: Uuid,
    pub payload: Value,
    /// Failed or successful attempts before this one.
    pub attempts: u32,
    /// The lease: also the token that proves this relay still holds the row when it records a
    /// failure.
    pub locked_until: DateTime<Utc>,
}

/// One outbox row as stored, for inspection (tests, operators).
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub id: Uuid,
    pub topic: String,
    pub payload: Value,
    pub attempts: u32,
    pub next_attempt_at: DateTime<Utc>,
    pub locked_until: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
    pub delivered_at: Option<DateTime<Utc>>,
    pub created_on: DateTime<Utc>,
}

/// Writes a message for `topic` where `conn` runs statements: inside the caller's transaction it
/// commits or rolls back with the rest of it. Due at once. Returns the message id.
#[tracing::instrument(skip_all, err, fields(topic = %topic))]
pub async fn enqueue(
    conn: &mut Conn<'_>,
    topic: &str,
    payload: &Value,
) -> Result<Uuid, sqlx::Error> {
    let id = Uuid::new_v4();
    let now = millis(conn.now());
    conn.raw_execute(
        "INSERT INTO outbox (id, topic, payload, attempts, next_attempt_at, created_on) \
         VALUES ($1, $2, $3, 0, $4, $4)",
        &[
            Param::Uuid(id),
            Param::Text(topic),
            Param::Json(payload),
            Param::Instant(now),
        ],
    )
    .await?;
    Ok(id)
}

/// Claims the oldest due row of `topic` (undelivered, `next_attempt_at <= now`, no lease or an
/// expired one) by setting its lease to `now + lease`, in one statement. On PostgreSQL the row is
/// selected with `FOR UPDATE SKIP LOCKED`, so concurrent relays on many replicas never claim the
/// same row; SQLite (one relay, one writer) has no row locks and needs none.
pub async fn claim_due(
    db: &Db,
    topic: &str,
    now: DateTime<Utc>,
    lease: Duration,
) -> Result<Option<Claimed>, sqlx::Error> {
    const CLAIM_POSTGRES: &str = "UPDATE outbox SET locked_until = $3 \
         WHERE id = (SELECT id FROM outbox \
                     WHERE topic = $1 AND delivered_at IS NULL AND next_attempt_at <= $2 \
                       AND (locked_until IS NULL OR locked_until < $2) \
                     ORDER BY next_attempt_at, created_on LIMIT 1 \
                     FOR UPDATE SKIP LOCKED) \
         RETURNING id, payload, attempts";
    const CLAIM_SQLITE: &str = "UPDATE outbox SET locked_until = $3 \
         WHERE id = (SELECT id FROM outbox \
                     WHERE topic = $1 AND delivered_at IS NULL AND next_attempt_at <= $2 \
                       AND (locked_until IS NULL OR locked_until < $2) \
                     ORDER BY next_attempt_at, created_on LIMIT 1) \
         RETURNING id, payload, attempts";
    let now = millis(now);
    let locked_until = millis(now + to_chrono(lease));
    let mut conn = db.conn();
    let sql = match conn.backend() {
        Backend::Postgres => CLAIM_POSTGRES,
        Backend::Sqlite => CLAIM_SQLITE,
    };
    let row = conn
        .raw_fetch_optional(
            sql,
            &[
                Param::Text(topic),
                Param::Instant(now),
                Param::Instant(locked_until),
            ],
            true,
        )
        .await?;
    row.map(|row| {
        Ok(Claimed {
            id: row.uuid("id")?,
            payload: row.json("payload")?,
            attempts: count(row.int("attempts")?),
            locked_until,
        })
    })
    .transpose()
}

/// One relay iteration for `topic`: claim one due row (lease `lease` from `now`), deliver it with
/// `handler` outside any transaction, then mark it delivered, or record the error and schedule
/// the next attempt after [`backoff`] (with jitter). A failure is never dropped: past
/// [`ALERT_AFTER_ATTEMPTS`] the row keeps being retried every [`BACKOFF_CAP`] and each failure is
/// logged at error level. `Err` only for database errors; an unrecorded outcome is repaired when
/// the lease expires (the row is delivered again: at least once).
pub async fn relay_step(
    db: &Db,
    topic: &str,
    handler: &impl Deliver,
    now: DateTime<Utc>,
    lease: Duration,
) -> anyhow::Result<Step> {
    let Some(claimed) = claim_due(db, topic, now, lease)
        .await
        .with_context(|| format!("cannot claim from the {topic} outbox"))?
    else {
        return Ok(Step::Empty);
    };
    let id = claimed.id;
    match handler.deliver(id, &claimed.payload).await {
        Ok(()) => {
            mark_delivered(db, id, now)
                .await
                .with_context(|| format!("cannot mark outbox row {id} delivered"))?;
            let attempts = claimed.attempts.saturating_add(1);
            tracing::debug!(%id, topic, attempts, "outbox row delivered");
            Ok(Step::Delivered(id))
        }
        Err(err) => {
            let attempts = claimed.attempts.saturating_add(1);
            let delay = jittered(backoff(attempts), rand::random::<f64>());
            let next_attempt_at = millis(now + to_chrono(delay));
            let message = truncate(&format!("{err:#}"), MAX_ERROR_CHARS);
            record_failure(db, &claimed, attempts, &message, next_attempt_at)
                .await
                .with_context(|| format!("cannot record the failure of outbox row {id}"))?;
            let next = format_timestamp(&next_attempt_at);
            if attempts >= ALERT_AFTER_ATTEMPTS {
                tracing::error!(%id, topic, attempts, next_attempt_at = %next, error = %message,
                    "outbox delivery keeps failing; retrying");
            } else {
                tracing::warn!(%id, topic, attempts, next_attempt_at = %next, error = %message,
                    "outbox delivery failed; will retry");
            }
            Ok(Step::Failed(id))
        }
    }
}

/// Runs the relay for `topic` until `shutdown` is cancelled: steps with the real clock and lease
/// [`RELAY_LEASE`], back to back while rows are due, pausing [`POLL_INTERVAL`] when none is and
/// [`ERROR_PAUSE`] after a database error. A step in progress is finished before it returns.
pub fn spawn_relay<H: Deliver + 'static>(
    db: Db,
    topic: &'static str,
    handler: H,
    shutdown: CancellationToken,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        tracing::info!(topic, "outbox relay started");
        while !shutdown.is_cancelled() {
            let now = db.clock().now();
            let pause = match relay_step(&db, topic, &handler, now, RELAY_LEASE).await {
                Ok(Step::Delivered(_) | Step::Failed(_)) => continue,
                Ok(Step::Empty) => POLL_INTERVAL,
                Err(err) => {
                    tracing::error!(topic, error = %format!("{err:#}"), "outbox relay step failed");
                    ERROR_PAUSE
                }
            };
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep(pause) => {}
            }
        }
        tracing::info!(topic, "outbox relay stopped");
    })
}

/// The delay before the next attempt after `failures` failed attempts (1 = the first):
/// [`BACKOFF_BASE`] · 2^(failures − 1), at most [`BACKOFF_CAP`].
pub fn backoff(failures: u32) -> Duration {
    let exponent = failures.saturating_sub(1).min(31);
    BACKOFF_BASE
        .checked_mul(1u32 << exponent)
        .map_or(BACKOFF_CAP, |d| d.min(BACKOFF_CAP))
}

/// `delay` shortened by up to a quarter (`unit` in `[0, 1)` picks how much), so rows that failed
/// together do not all come back at the same instant.
pub fn jittered(delay: Duration, unit: f64) -> Duration {
    delay.mul_f64(1.0 - 0.25 * unit.clamp(0.0, 1.0))
}

/// The row `id`, or `None`.
pub async fn get(conn: &mut Conn<'_>, id: Uuid) -> Result<Option<Entry>, sqlx::Error> {
    conn.raw_fetch_optional(
        "SELECT id, topic, payload, attempts, next_attempt_at, locked_until, last_error, \
         delivered_at, created_on FROM outbox WHERE id = $1",
        &[Param::Uuid(id)],
        false,
    )
    .await?
    .map(|row| entry(&row))
    .transpose()
}

/// How many rows of `topic` are not delivered yet (due or waiting for a retry).
pub async fn pending(conn: &mut Conn<'_>, topic: &str) -> Result<i64, sqlx::Error> {
    let rows = conn
        .raw_fetch(
            "SELECT count(*) AS pending FROM outbox WHERE topic = $1 AND delivered_at IS NULL",
            &[Param::Text(topic)],
            false,
        )
        .await?;
    rows.first().map_or(Ok(0), |row| row.int("pending"))
}

/// Deletes rows delivered before `before` (retention); returns how many.
pub async fn prune_delivered(
    conn: &mut Conn<'_>,
    before: DateTime<Utc>,
) -> Result<u64, sqlx::Error> {
    conn.raw_execute(
        "DELETE FROM outbox WHERE delivered_at IS NOT NULL AND delivered_at < $1",
        &[Param::Instant(millis(before))],
    )
    .await
}

/// Marks `id` delivered at `now` (unless another relay already did: its time is kept).
async fn mark_delivered(db: &Db, id: Uuid, now: DateTime<Utc>) -> Result<(), sqlx::Error> {
    db.conn()
        .raw_execute(
            "UPDATE outbox SET delivered_at = $2, locked_until = NULL, attempts = attempts + 1 \
             WHERE id = $1 AND delivered_at IS NULL",
            &[Param::Uuid(id), Param::Instant(millis(now))],
        )
        .await?;
    Ok(())
}

/// Records a failed attempt and the next one — only while this relay still holds the lease it
/// claimed the row with (else another relay owns the row now and records its own outcome).
async fn record_failure(
    db: &Db,
    claimed: &Claimed,
    attempts: u32,
    error: &str,
    next_attempt_at: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    let changed = db
        .conn()
        .raw_execute(
            "UPDATE outbox SET attempts = $2, last_error = $3, next_attempt_at = $4, \
             locked_until = NULL \
             WHERE id = $1 AND locked_until = $5 AND delivered_at IS NULL",
            &[
                Param::Uuid(claimed.id),
                Param::Int(i64::from(attempts)),
                Param::Text(error),
                Param::Instant(next_attempt_at),
                Param::Instant(claimed.locked_until),
            ],
        )
        .await?;
    if changed == 0 {
        tracing::warn!(id = %claimed.id, "outbox lease lost before the failure was recorded");
    }
    Ok(())
}

fn entry(row: &RawRow) -> Result<Entry, sqlx::Error> {
    Ok(Entry {
        id: row.uuid("id")?,
        topic: row.text("topic")?.unwrap_or_default(),
        payload: row.json("payload")?,
        attempts: count(row.int("attempts")?),
        next_attempt_at: row.required_instant("next_attempt_at")?,
        locked_until: row.instant("locked_until")?,
        last_error: row.text("last_error")?,
        delivered_at: row.instant("delivered_at")?,
        created_on: row.required_instant("created_on")?,
    })
}

fn count(n: i64) -> u32 {
    u32::try_from(n.max(0)).unwrap_or(u32::MAX)
}

/// `t` truncated to the millisecond, so both databases hold the same instant and a lease read
/// back compares equal to the one written.
fn millis(t: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(t.timestamp_millis()).unwrap_or(t)
}

fn to_chrono(d: Duration) -> chrono::Duration {
    chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX)
}

fn truncate(s: &str, max_chars: usize) -> String {
    match s.char_indices().nth(max_chars) {
        Some((at, _)) => format!("{}…", &s[..at]),
        None => s.to_string(),
    }
}

/// How long delivered rows are kept (for inspection) before the pruner removes them.
pub const KEEP_DELIVERED: Duration = Duration::from_secs(7 * 24 * 3600);

/// Removes rows delivered more than [`KEEP_DELIVERED`] ago, hourly, until `shutdown`.
pub fn spawn_pruner(db: Db, shutdown: CancellationToken) -> JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            let before =
                db.clock().now() - chrono::Duration::from_std(KEEP_DELIVERED).unwrap_or_default();
            match prune_delivered(&mut db.conn(), before).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(rows = n, "pruned delivered outbox rows"),
                Err(err) => tracing::warn!(error = %err, "pruning the outbox failed"),
            }
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep(Duration::from_secs(3600)) => {}
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_five_seconds_up_to_an_hour() {
        let secs: Vec<u64> = (1..=12).map(|n| backoff(n).as_secs()).collect();
        assert_eq!(
            secs,
            [5, 10, 20, 40, 80, 160, 320, 640, 1280, 2560, 3600, 3600]
        );
        assert_eq!(backoff(0), BACKOFF_BASE);
        assert_eq!(backoff(ALERT_AFTER_ATTEMPTS), BACKOFF_CAP);
        assert_eq!(backoff(u32::MAX), BACKOFF_CAP);
    }

    #[test]
    fn jitter_only_shortens_and_by_at_most_a_quarter() {
        let d = Duration::from_secs(40);
        assert_eq!(jittered(d, 0.0), d);
        assert_eq!(jittered(d, 0.5), Duration::from_secs(35));
        assert_eq!(jittered(d, 1.0), Duration::from_secs(30));
        for _ in 0..1000 {
            let j = jittered(d, rand::random::<f64>());
            assert!(j <= d && j >= Duration::from_secs(30), "{j:?}");
        }
    }

    #[test]
    fn long_errors_are_truncated_on_a_character_boundary() {
        assert_eq!(truncate("abc", 5), "abc");
        assert_eq!(truncate("ééééé", 2), "éé…");
    }

    #[test]
    fn instants_are_kept_to_the_millisecond() {
        let t = DateTime::parse_from_rfc3339("2026-01-02T03:04:05.678912Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(format_timestamp(&millis(t)), "2026-01-02T03:04:05.678Z");
        assert_eq!(millis(t).timestamp_subsec_micros(), 678_000);
    }
}
