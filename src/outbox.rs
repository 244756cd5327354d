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
use sqlx::Row;
use sqlx::postgres::PgRow;
use sqlx::sqlite::SqliteRow;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::store::values::{format_timestamp, parse_timestamp};
use crate::store::{Conn, Db};

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
    let now = millis(Utc::now());
    const PG: &str = "INSERT INTO outbox \
                      (id, topic, payload, attempts, next_attempt_at, created_on) \
                      VALUES ($1, $2, $3, 0, $4, $4)";
    const LITE: &str = "INSERT INTO outbox \
                        (id, topic, payload, attempts, next_attempt_at, created_on) \
                        VALUES (?1, ?2, ?3, 0, ?4, ?4)";
    let pg = || {
        sqlx::query(PG)
            .bind(id)
            .bind(topic)
            .bind(sqlx::types::Json(payload))
            .bind(now)
    };
    let lite = || {
        sqlx::query(LITE)
            .bind(id.hyphenated().to_string())
            .bind(topic)
            .bind(payload.to_string())
            .bind(format_timestamp(&now))
    };
    match conn {
        Conn::PgPool(pool) => pg().execute(&**pool).await?.rows_affected(),
        Conn::PgTx(c) => pg().execute(&mut **c).await?.rows_affected(),
        Conn::SqlitePool(pool) => lite().execute(&**pool).await?.rows_affected(),
        Conn::SqliteTx(c) => lite().execute(&mut **c).await?.rows_affected(),
    };
    Ok(id)
}

/// Claims the oldest due row of `topic` (undelivered, `next_attempt_at <= now`, no lease or an
/// expired one) by setting its lease to `now + lease`. On PostgreSQL the row is selected with
/// `FOR UPDATE SKIP LOCKED` in a short transaction, so concurrent relays on many replicas never
/// claim the same row; on SQLite (one relay) a single `UPDATE … RETURNING` does it.
pub async fn claim_due(
    db: &Db,
    topic: &str,
    now: DateTime<Utc>,
    lease: Duration,
) -> Result<Option<Claimed>, sqlx::Error> {
    let now = millis(now);
    let locked_until = millis(now + to_chrono(lease));
    match db {
        Db::Postgres(pool) => {
            let mut tx = pool.begin().await?;
            let row = sqlx::query(
                "SELECT id, payload, attempts FROM outbox \
                 WHERE topic = $1 AND delivered_at IS NULL AND next_attempt_at <= $2 \
                   AND (locked_until IS NULL OR locked_until < $2) \
                 ORDER BY next_attempt_at, created_on \
                 LIMIT 1 \
                 FOR UPDATE SKIP LOCKED",
            )
            .bind(topic)
            .bind(now)
            .fetch_optional(&mut *tx)
            .await?;
            let Some(row) = row else {
                tx.commit().await?;
                return Ok(None);
            };
            let id: Uuid = row.try_get("id")?;
            sqlx::query("UPDATE outbox SET locked_until = $2 WHERE id = $1")
                .bind(id)
                .bind(locked_until)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok(Some(Claimed {
                id,
                payload: row.try_get("payload")?,
                attempts: count(row.try_get::<i32, _>("attempts")?.into()),
                locked_until,
            }))
        }
        Db::Sqlite(pool) => {
            let now_text = format_timestamp(&now);
            let row = sqlx::query(
                "UPDATE outbox SET locked_until = ?3 \
                 WHERE id = (SELECT id FROM outbox \
                             WHERE topic = ?1 AND delivered_at IS NULL AND next_attempt_at <= ?2 \
                               AND (locked_until IS NULL OR locked_until < ?2) \
                             ORDER BY next_attempt_at, created_on \
                             LIMIT 1) \
                 RETURNING id, payload, attempts",
            )
            .bind(topic)
            .bind(&now_text)
            .bind(format_timestamp(&locked_until))
            .fetch_optional(pool)
            .await?;
            let Some(row) = row else {
                return Ok(None);
            };
            Ok(Some(Claimed {
                id: sqlite_uuid(&row, "id")?,
                payload: sqlite_json(&row, "payload")?,
                attempts: count(row.try_get("attempts")?),
                locked_until,
            }))
        }
    }
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
            let pause = match relay_step(&db, topic, &handler, Utc::now(), RELAY_LEASE).await {
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
    const PG: &str = "SELECT id, topic, payload, attempts, next_attempt_at, locked_until, \
                      last_error, delivered_at, created_on FROM outbox WHERE id = $1";
    const LITE: &str = "SELECT id, topic, payload, attempts, next_attempt_at, locked_until, \
                        last_error, delivered_at, created_on FROM outbox WHERE id = ?1";
    let lite_id = id.hyphenated().to_string();
    match conn {
        Conn::PgPool(pool) => sqlx::query(PG).bind(id).fetch_optional(&**pool).await?,
        Conn::PgTx(c) => sqlx::query(PG).bind(id).fetch_optional(&mut **c).await?,
        Conn::SqlitePool(pool) => {
            return sqlx::query(LITE)
                .bind(&lite_id)
                .fetch_optional(&**pool)
                .await?
                .map(|r| sqlite_entry(&r))
                .transpose();
        }
        Conn::SqliteTx(c) => {
            return sqlx::query(LITE)
                .bind(&lite_id)
                .fetch_optional(&mut **c)
                .await?
                .map(|r| sqlite_entry(&r))
                .transpose();
        }
    }
    .map(|r| pg_entry(&r))
    .transpose()
}

/// How many rows of `topic` are not delivered yet (due or waiting for a retry).
pub async fn pending(conn: &mut Conn<'_>, topic: &str) -> Result<i64, sqlx::Error> {
    const PG: &str = "SELECT count(*) FROM outbox WHERE topic = $1 AND delivered_at IS NULL";
    const LITE: &str = "SELECT count(*) FROM outbox WHERE topic = ?1 AND delivered_at IS NULL";
    match conn {
        Conn::PgPool(pool) => sqlx::query_scalar(PG).bind(topic).fetch_one(&**pool).await,
        Conn::PgTx(c) => sqlx::query_scalar(PG).bind(topic).fetch_one(&mut **c).await,
        Conn::SqlitePool(pool) => {
            sqlx::query_scalar(LITE)
                .bind(topic)
                .fetch_one(&**pool)
                .await
        }
        Conn::SqliteTx(c) => {
            sqlx::query_scalar(LITE)
                .bind(topic)
                .fetch_one(&mut **c)
                .await
        }
    }
}

/// Deletes rows delivered before `before` (retention); returns how many.
pub async fn prune_delivered(
    conn: &mut Conn<'_>,
    before: DateTime<Utc>,
) -> Result<u64, sqlx::Error> {
    const PG: &str = "DELETE FROM outbox WHERE delivered_at IS NOT NULL AND delivered_at < $1";
    const LITE: &str = "DELETE FROM outbox WHERE delivered_at IS NOT NULL AND delivered_at < ?1";
    let before = millis(before);
    let lite = format_timestamp(&before);
    Ok(match conn {
        Conn::PgPool(pool) => sqlx::query(PG).bind(before).execute(&**pool).await?,
        Conn::PgTx(c) => sqlx::query(PG).bind(before).execute(&mut **c).await?,
        Conn::SqlitePool(pool) => {
            return Ok(sqlx::query(LITE)
                .bind(lite)
                .execute(&**pool)
                .await?
                .rows_affected());
        }
        Conn::SqliteTx(c) => {
            return Ok(sqlx::query(LITE)
                .bind(lite)
                .execute(&mut **c)
                .await?
                .rows_affected());
        }
    }
    .rows_affected())
}

/// Marks `id` delivered at `now` (unless another relay already did: its time is kept).
async fn mark_delivered(db: &Db, id: Uuid, now: DateTime<Utc>) -> Result<(), sqlx::Error> {
    let now = millis(now);
    match db {
        Db::Postgres(pool) => sqlx::query(
            "UPDATE outbox SET delivered_at = $2, locked_until = NULL, \
                 attempts = attempts + 1 WHERE id = $1 AND delivered_at IS NULL",
        )
        .bind(id)
        .bind(now)
        .execute(pool)
        .await?
        .rows_affected(),
        Db::Sqlite(pool) => sqlx::query(
            "UPDATE outbox SET delivered_at = ?2, locked_until = NULL, \
                 attempts = attempts + 1 WHERE id = ?1 AND delivered_at IS NULL",
        )
        .bind(id.hyphenated().to_string())
        .bind(format_timestamp(&now))
        .execute(pool)
        .await?
        .rows_affected(),
    };
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
    let attempts = i32::try_from(attempts).unwrap_or(i32::MAX);
    let changed = match db {
        Db::Postgres(pool) => sqlx::query(
            "UPDATE outbox SET attempts = $2, last_error = $3, next_attempt_at = $4, \
                 locked_until = NULL \
                 WHERE id = $1 AND locked_until = $5 AND delivered_at IS NULL",
        )
        .bind(claimed.id)
        .bind(attempts)
        .bind(error)
        .bind(next_attempt_at)
        .bind(claimed.locked_until)
        .execute(pool)
        .await?
        .rows_affected(),
        Db::Sqlite(pool) => sqlx::query(
            "UPDATE outbox SET attempts = ?2, last_error = ?3, next_attempt_at = ?4, \
                 locked_until = NULL \
                 WHERE id = ?1 AND locked_until = ?5 AND delivered_at IS NULL",
        )
        .bind(claimed.id.hyphenated().to_string())
        .bind(attempts)
        .bind(error)
        .bind(format_timestamp(&next_attempt_at))
        .bind(format_timestamp(&claimed.locked_until))
        .execute(pool)
        .await?
        .rows_affected(),
    };
    if changed == 0 {
        tracing::warn!(id = %claimed.id, "outbox lease lost before the failure was recorded");
    }
    Ok(())
}

fn pg_entry(row: &PgRow) -> Result<Entry, sqlx::Error> {
    Ok(Entry {
        id: row.try_get("id")?,
        topic: row.try_get("topic")?,
        payload: row.try_get("payload")?,
        attempts: count(row.try_get::<i32, _>("attempts")?.into()),
        next_attempt_at: row.try_get("next_attempt_at")?,
        locked_until: row.try_get("locked_until")?,
        last_error: row.try_get("last_error")?,
        delivered_at: row.try_get("delivered_at")?,
        created_on: row.try_get("created_on")?,
    })
}

fn sqlite_entry(row: &SqliteRow) -> Result<Entry, sqlx::Error> {
    let time = |column: &str| -> Result<Option<DateTime<Utc>>, sqlx::Error> {
        row.try_get::<Option<String>, _>(column)?
            .map(|s| {
                parse_timestamp(&s).ok_or_else(|| decode_error(column, format!("bad time {s:?}")))
            })
            .transpose()
    };
    let required = |column: &str| {
        time(column)?.ok_or_else(|| decode_error(column, "unexpected NULL".to_string()))
    };
    Ok(Entry {
        id: sqlite_uuid(row, "id")?,
        topic: row.try_get("topic")?,
        payload: sqlite_json(row, "payload")?,
        attempts: count(row.try_get("attempts")?),
        next_attempt_at: required("next_attempt_at")?,
        locked_until: time("locked_until")?,
        last_error: row.try_get("last_error")?,
        delivered_at: time("delivered_at")?,
        created_on: required("created_on")?,
    })
}

fn sqlite_uuid(row: &SqliteRow, column: &str) -> Result<Uuid, sqlx::Error> {
    let text: String = row.try_get(column)?;
    Uuid::parse_str(&text).map_err(|e| decode_error(column, e.to_string()))
}

fn sqlite_json(row: &SqliteRow, column: &str) -> Result<Value, sqlx::Error> {
    let text: String = row.try_get(column)?;
    serde_json::from_str(&text).map_err(|e| decode_error(column, e.to_string()))
}

fn decode_error(column: &str, message: String) -> sqlx::Error {
    sqlx::Error::ColumnDecode {
        index: column.to_string(),
        source: message.into(),
    }
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
                Utc::now() - chrono::Duration::from_std(KEEP_DELIVERED).unwrap_or_default();
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
