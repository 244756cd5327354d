//! The `outbox` table (`docs/events.md`): the messages `events` writes in the caller's
//! transaction and its relays claim, mark and prune. Each row belongs to a *partition*: only the
//! oldest undelivered row of a partition can be claimed. How a row is numbered when it is written
//! and how it is taken when it is claimed differ per backend, and stay in this module.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::Value;
use uuid::Uuid;

use super::{Backend, Conn, Param, RawRow};

/// Where a row is in its delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Not attempted yet.
    Pending,
    /// Delivered; kept until pruned.
    Delivered,
    /// The last attempt failed (`attempts`, `last_error`); retried at `next_attempt_at`.
    Failed,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Delivered => "delivered",
            Self::Failed => "failed",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        [Self::Pending, Self::Delivered, Self::Failed]
            .into_iter()
            .find(|state| state.as_str() == s)
    }
}

/// A row taken by [`claim`]: the relay holds it until `locked_until`.
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
    /// Rows of one partition are delivered one at a time, in the order they were written.
    pub partition_key: String,
    pub state: State,
    pub payload: Value,
    pub attempts: u32,
    pub next_attempt_at: DateTime<Utc>,
    pub locked_until: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
    pub delivered_at: Option<DateTime<Utc>>,
    pub created_on: DateTime<Utc>,
}

/// Inserts message `id` of `topic` in `partition` where `conn` runs statements (inside the
/// caller's transaction it commits or rolls back with the rest of it): pending, due at once.
pub async fn enqueue(
    conn: &mut Conn<'_>,
    id: Uuid,
    topic: &str,
    partition: &str,
    payload: &Value,
) -> Result<(), sqlx::Error> {
    // `seq` numbers the rows in the order they are written: an identity column on PostgreSQL;
    // on SQLite (one writer at a time) the next number is read in the same statement.
    const INSERT_POSTGRES: &str = "INSERT INTO outbox \
         (id, topic, partition_key, state, payload, attempts, next_attempt_at, created_on) \
         VALUES ($1, $2, $3, 'pending', $4, 0, $5, $5)";
    const INSERT_SQLITE: &str = "INSERT INTO outbox \
         (id, topic, partition_key, state, payload, attempts, next_attempt_at, created_on, seq) \
         VALUES ($1, $2, $3, 'pending', $4, 0, $5, $5, \
                 (SELECT COALESCE(MAX(seq), 0) + 1 FROM outbox))";
    let now = millis(conn.now());
    let sql = match conn.backend() {
        Backend::Postgres => INSERT_POSTGRES,
        Backend::Sqlite => INSERT_SQLITE,
    };
    conn.raw_execute(
        sql,
        &[
            Param::Uuid(id),
            Param::Text(topic),
            Param::Text(partition),
            Param::Json(payload),
            Param::Instant(now),
        ],
    )
    .await?;
    Ok(())
}

/// Claims the oldest due row of `topic` that heads its partition (undelivered,
/// `next_attempt_at <= now`, no lease or an expired one, and no undelivered row of its partition
/// written before it) by setting its lease to `now + lease`, in one statement. On PostgreSQL the
/// row is taken `FOR UPDATE SKIP LOCKED`, so relays on many replicas never claim the same row; a
/// relay that skips a row another holds cannot take the row behind it in that partition either,
/// since the held row is still undelivered.
pub async fn claim(
    conn: &mut Conn<'_>,
    topic: &str,
    now: DateTime<Utc>,
    lease: Duration,
) -> Result<Option<Claimed>, sqlx::Error> {
    const CLAIM_POSTGRES: &str = "UPDATE outbox SET locked_until = $3 \
         WHERE id = (SELECT o.id FROM outbox o \
                     WHERE o.topic = $1 AND o.delivered_at IS NULL AND o.next_attempt_at <= $2 \
                       AND (o.locked_until IS NULL OR o.locked_until < $2) \
                       AND NOT EXISTS (SELECT 1 FROM outbox e \
                                       WHERE e.topic = o.topic \
                                         AND e.partition_key = o.partition_key \
                                         AND e.delivered_at IS NULL AND e.seq < o.seq) \
                     ORDER BY o.next_attempt_at, o.seq LIMIT 1 \
                     FOR UPDATE SKIP LOCKED) \
         RETURNING id, payload, attempts";
    const CLAIM_SQLITE: &str = "UPDATE outbox SET locked_until = $3 \
         WHERE id = (SELECT o.id FROM outbox o \
                     WHERE o.topic = $1 AND o.delivered_at IS NULL AND o.next_attempt_at <= $2 \
                       AND (o.locked_until IS NULL OR o.locked_until < $2) \
                       AND NOT EXISTS (SELECT 1 FROM outbox e \
                                       WHERE e.topic = o.topic \
                                         AND e.partition_key = o.partition_key \
                                         AND e.delivered_at IS NULL AND e.seq < o.seq) \
                     ORDER BY o.next_attempt_at, o.seq LIMIT 1) \
         RETURNING id, payload, attempts";
    let now = millis(now);
    let locked_until = millis(now + to_chrono(lease));
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

/// Marks `id` delivered at `now` (unless another relay already did: its time is kept).
pub async fn mark_delivered(
    conn: &mut Conn<'_>,
    id: Uuid,
    now: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    conn.raw_execute(
        "UPDATE outbox SET state = 'delivered', delivered_at = $2, locked_until = NULL, \
         attempts = attempts + 1 WHERE id = $1 AND delivered_at IS NULL",
        &[Param::Uuid(id), Param::Instant(millis(now))],
    )
    .await?;
    Ok(())
}

/// Records a failed attempt and the next one — only while the row is still held under the lease
/// of `claimed` (else another relay owns the row now and records its own outcome). Returns
/// whether it was.
pub async fn mark_failed(
    conn: &mut Conn<'_>,
    claimed: &Claimed,
    attempts: u32,
    error: &str,
    next_attempt_at: DateTime<Utc>,
) -> Result<bool, sqlx::Error> {
    let changed = conn
        .raw_execute(
            "UPDATE outbox SET state = 'failed', attempts = $2, last_error = $3, \
             next_attempt_at = $4, locked_until = NULL \
             WHERE id = $1 AND locked_until = $5 AND delivered_at IS NULL",
            &[
                Param::Uuid(claimed.id),
                Param::Int(i64::from(attempts)),
                Param::Text(error),
                Param::Instant(millis(next_attempt_at)),
                Param::Instant(claimed.locked_until),
            ],
        )
        .await?;
    Ok(changed > 0)
}

/// The row `id`, or `None`.
pub async fn get(conn: &mut Conn<'_>, id: Uuid) -> Result<Option<Entry>, sqlx::Error> {
    conn.raw_fetch_optional(
        "SELECT id, topic, partition_key, state, payload, attempts, next_attempt_at, \
         locked_until, last_error, delivered_at, created_on FROM outbox WHERE id = $1",
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

fn entry(row: &RawRow) -> Result<Entry, sqlx::Error> {
    let state = row.text("state")?.unwrap_or_default();
    Ok(Entry {
        id: row.uuid("id")?,
        topic: row.text("topic")?.unwrap_or_default(),
        partition_key: row.text("partition_key")?.unwrap_or_default(),
        state: State::parse(&state).ok_or_else(|| sqlx::Error::ColumnDecode {
            index: "state".into(),
            source: format!("unknown outbox state {state:?}").into(),
        })?,
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
pub(crate) fn millis(t: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(t.timestamp_millis()).unwrap_or(t)
}

pub(crate) fn to_chrono(d: Duration) -> chrono::Duration {
    chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX)
}
