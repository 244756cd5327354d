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
    /// Which attempt this is (1 = the first): the claim counts it, so an attempt lost with its
    /// process (a crash, a kill) is counted too.
    pub attempt: u32,
    /// The lease: also the token that proves this relay still holds the row when it renews the
    /// lease or records a failure.
    pub locked_until: DateTime<Utc>,
    /// How long the lease lasts from its last renewal.
    pub lease: Duration,
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
/// caller's transaction it commits or rolls back with the rest of it): pending, due at once, and
/// the head of its partition when the partition has no undelivered row. A row in a partition of
/// its own (`partition` is its id) is its head. In a shared partition, PostgreSQL first takes the
/// partition's lock (until the end of the transaction), so that the row is numbered and marked
/// after the partition's rows written or delivered by transactions that committed before it,
/// never beside them; SQLite has one writer at a time.
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
         (id, topic, partition_key, state, payload, attempts, next_attempt_at, created_on, head) \
         VALUES ($1, $2, $3, 'pending', $4, 0, $5, $5, \
                 $6 OR NOT EXISTS (SELECT 1 FROM outbox WHERE topic = $2 AND partition_key = $3 \
                                   AND delivered_at IS NULL))";
    const INSERT_SQLITE: &str = "INSERT INTO outbox \
         (id, topic, partition_key, state, payload, attempts, next_attempt_at, created_on, head, \
          seq) \
         VALUES ($1, $2, $3, 'pending', $4, 0, $5, $5, \
                 $6 OR NOT EXISTS (SELECT 1 FROM outbox WHERE topic = $2 AND partition_key = $3 \
                                   AND delivered_at IS NULL), \
                 (SELECT COALESCE(MAX(seq), 0) + 1 FROM outbox))";
    let now = millis(conn.now());
    let own = is_own_partition(id, partition);
    let (sql, lock) = match conn.backend() {
        Backend::Postgres => (INSERT_POSTGRES, !own),
        Backend::Sqlite => (INSERT_SQLITE, false),
    };
    let params = [
        Param::Uuid(id),
        Param::Text(topic),
        Param::Text(partition),
        Param::Json(payload),
        Param::Instant(now),
        Param::Bool(own),
    ];
    if !lock {
        conn.raw_execute(sql, &params).await?;
        return Ok(());
    }
    conn.atomically(async |conn| {
        lock_partition(conn, topic, partition).await?;
        conn.raw_execute(sql, &params).await
    })
    .await?;
    Ok(())
}

/// Whether `partition` is the partition of row `id` alone: nothing is ever written behind it.
fn is_own_partition(id: Uuid, partition: &str) -> bool {
    Uuid::parse_str(partition).is_ok_and(|key| key == id)
}

/// Takes the lock of `partition` of `topic` on PostgreSQL until the end of the transaction `conn`
/// is in (an advisory lock with two keys: the outbox's, and the partition's name hashed). The
/// writes that change which row heads a partition take it: writing a row into it and delivering
/// its head. SQLite writes one transaction at a time.
async fn lock_partition(
    conn: &mut Conn<'_>,
    topic: &str,
    partition: &str,
) -> Result<(), sqlx::Error> {
    // 0x746d7370: "tmsp".
    const LOCK: &str = "SELECT pg_advisory_xact_lock(1953330032, hashtext($1))";
    if conn.backend() == Backend::Postgres {
        conn.raw_execute(LOCK, &[Param::Text(&format!("{topic}/{partition}"))])
            .await?;
    }
    Ok(())
}

/// The claim on PostgreSQL (`$1` topic, `$2` now, `$3` the lease's end): the first head of the
/// topic's partitions, in the order of `outbox_head_idx` (due first, then written first), that is
/// due and free, taken `FOR UPDATE SKIP LOCKED`. The index holds only the heads, so the rows it
/// reads are the leased heads ahead of the one claimed, whatever the backlog behind them.
pub const CLAIM_POSTGRES: &str = "UPDATE outbox SET locked_until = $3, attempts = attempts + 1 \
     WHERE id = (SELECT id FROM outbox \
                 WHERE topic = $1 AND head AND delivered_at IS NULL AND next_attempt_at <= $2 \
                   AND (locked_until IS NULL OR locked_until < $2) \
                 ORDER BY next_attempt_at, seq LIMIT 1 \
                 FOR UPDATE SKIP LOCKED) \
     RETURNING id, payload, attempts";

/// [`CLAIM_POSTGRES`] on SQLite, where one relay runs and writers take turns.
pub const CLAIM_SQLITE: &str = "UPDATE outbox SET locked_until = $3, attempts = attempts + 1 \
     WHERE id = (SELECT id FROM outbox \
                 WHERE topic = $1 AND head AND delivered_at IS NULL AND next_attempt_at <= $2 \
                   AND (locked_until IS NULL OR locked_until < $2) \
                 ORDER BY next_attempt_at, seq LIMIT 1) \
     RETURNING id, payload, attempts";

/// Claims the oldest due row of `topic` that heads its partition (undelivered,
/// `next_attempt_at <= now`, no lease or an expired one, and no undelivered row of its partition
/// written before it: `head`) by setting its lease to `now + lease` and counting the attempt, in
/// one statement. On
/// PostgreSQL the row is taken `FOR UPDATE SKIP LOCKED`, so relays on many replicas never claim
/// the same row; a relay that skips a row another holds cannot take the row behind it in that
/// partition either, since only a head can be claimed.
pub async fn claim(
    conn: &mut Conn<'_>,
    topic: &str,
    now: DateTime<Utc>,
    lease: Duration,
) -> Result<Option<Claimed>, sqlx::Error> {
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
            attempt: count(row.int("attempts")?),
            locked_until,
            lease,
        })
    })
    .transpose()
}

/// The row statements of a delivery (by `id`, `$1`) test "undelivered" as
/// `CASE WHEN delivered_at IS NULL THEN 1 END = 1`, not `delivered_at IS NULL`: PostgreSQL would
/// see that the partial indexes on `delivered_at IS NULL` fit the statement, and with statistics
/// from before a burst its generic plan read `outbox_partition_idx` whole instead of the primary
/// key — 0.3 s per delivered event with 100,000 pending (docs/PERFORMANCE.md, "The relay under a
/// burst"). Written so, only the primary key can serve them, whatever the statistics.
pub const MARK_DELIVERED: &str = "UPDATE outbox SET state = 'delivered', delivered_at = $2, \
     locked_until = NULL, head = FALSE \
     WHERE id = $1 AND CASE WHEN delivered_at IS NULL THEN 1 END = 1 \
     RETURNING topic, partition_key";
/// See [`MARK_DELIVERED`].
pub const MARK_FAILED: &str = "UPDATE outbox SET state = 'failed', last_error = $2, \
     next_attempt_at = $3, locked_until = NULL \
     WHERE id = $1 AND locked_until = $4 AND CASE WHEN delivered_at IS NULL THEN 1 END = 1";
/// See [`MARK_DELIVERED`].
pub const RENEW_LEASE: &str = "UPDATE outbox SET locked_until = $3 \
     WHERE id = $1 AND locked_until = $2 AND CASE WHEN delivered_at IS NULL THEN 1 END = 1";

/// Marks `id` delivered at `now` (unless another relay already did: its time is kept) and
/// passes the head of its partition to the next undelivered row, in one transaction.
pub async fn mark_delivered(
    conn: &mut Conn<'_>,
    id: Uuid,
    now: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    // After the partition's lock, so that a row written meanwhile is seen (it committed) or
    // sees this delivery (it waits for it).
    const NEXT_HEAD: &str = "UPDATE outbox SET head = TRUE \
         WHERE id = (SELECT id FROM outbox \
                     WHERE topic = $1 AND partition_key = $2 AND delivered_at IS NULL \
                     ORDER BY seq LIMIT 1) \
           AND NOT head";
    conn.atomically(async |conn| {
        let Some(row) = conn
            .raw_fetch_optional(
                MARK_DELIVERED,
                &[Param::Uuid(id), Param::Instant(millis(now))],
                true,
            )
            .await?
        else {
            return Ok(());
        };
        let topic = row.text("topic")?.unwrap_or_default();
        let partition = row.text("partition_key")?.unwrap_or_default();
        if !is_own_partition(id, &partition) {
            lock_partition(conn, &topic, &partition).await?;
            conn.raw_execute(NEXT_HEAD, &[Param::Text(&topic), Param::Text(&partition)])
                .await?;
        }
        Ok(())
    })
    .await
}

/// Marks the heads that are missing in `topic`: the oldest undelivered row of each partition
/// that has no head. The outbox's own writes never leave a partition without one; rows written
/// or delivered by a version of tms from before heads were marked (running beside this one
/// during a rolling update) can. Visits each partition with undelivered rows once, through
/// `outbox_partition_idx`. Returns how many heads it marked.
pub async fn repair_heads(conn: &mut Conn<'_>, topic: &str) -> Result<u64, sqlx::Error> {
    const REPAIR: &str = "WITH RECURSIVE partitions(partition_key) AS ( \
             SELECT min(partition_key) FROM outbox WHERE topic = $1 AND delivered_at IS NULL \
           UNION ALL \
             SELECT (SELECT min(o.partition_key) FROM outbox o \
                     WHERE o.topic = $1 AND o.delivered_at IS NULL \
                       AND o.partition_key > p.partition_key) \
             FROM partitions p WHERE p.partition_key IS NOT NULL) \
         UPDATE outbox SET head = TRUE \
         WHERE id IN (SELECT (SELECT o.id FROM outbox o \
                              WHERE o.topic = $1 AND o.partition_key = p.partition_key \
                                AND o.delivered_at IS NULL \
                              ORDER BY o.seq LIMIT 1) \
                      FROM partitions p WHERE p.partition_key IS NOT NULL) \
           AND NOT head AND delivered_at IS NULL";
    conn.raw_execute(REPAIR, &[Param::Text(topic)]).await
}

/// Records the failure of the attempt `claimed` (counted when it was claimed) and the next
/// attempt — only while the row is still held under the lease of `claimed` (else another relay
/// owns the row now and records its own outcome). Returns whether it was.
pub async fn mark_failed(
    conn: &mut Conn<'_>,
    claimed: &Claimed,
    error: &str,
    next_attempt_at: DateTime<Utc>,
) -> Result<bool, sqlx::Error> {
    let changed = conn
        .raw_execute(
            MARK_FAILED,
            &[
                Param::Uuid(claimed.id),
                Param::Text(error),
                Param::Instant(millis(next_attempt_at)),
                Param::Instant(claimed.locked_until),
            ],
        )
        .await?;
    Ok(changed > 0)
}

/// Extends the lease of row `id`, held until `held`, to `until` — only while it is still held
/// under that lease and undelivered. Returns whether it was (else the lease ran out and another
/// relay may have taken the row).
pub async fn renew_lease(
    conn: &mut Conn<'_>,
    id: Uuid,
    held: DateTime<Utc>,
    until: DateTime<Utc>,
) -> Result<bool, sqlx::Error> {
    let changed = conn
        .raw_execute(
            RENEW_LEASE,
            &[
                Param::Uuid(id),
                Param::Instant(held),
                Param::Instant(millis(until)),
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
