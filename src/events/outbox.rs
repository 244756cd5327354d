//! The outbox as messages see it (`docs/events.md`): [`enqueue`] writes a message in the
//! caller's transaction, so it commits or rolls back with the business change it announces; the
//! relay (`events::relay`) claims due rows with [`claim_due`], delivers them outside any
//! transaction and records the outcome with [`mark_delivered`] or [`record_failure`]. Each
//! message belongs to a *partition* (a tenant's events share one): only the oldest undelivered
//! message of a partition can be claimed, so one partition's messages are delivered in the order
//! they were written, while different partitions are delivered side by side. The table and its
//! statements, the same face on both databases, are `store::outbox`.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::Value;
use uuid::Uuid;

use crate::store::{self, Conn, Db};

pub use crate::store::outbox::{Claimed, Entry, State, get, pending, prune_delivered};
pub(crate) use crate::store::outbox::{millis, to_chrono};

/// Writes a message for `topic` where `conn` runs statements: inside the caller's transaction it
/// commits or rolls back with the rest of it. Due at once. `partition` orders it after the
/// undelivered messages of the same partition (a tenant id); `None` puts it in a partition of its
/// own (no ordering). Returns the message id.
pub async fn enqueue(
    conn: &mut Conn<'_>,
    topic: &str,
    partition: Option<&str>,
    payload: &Value,
) -> Result<Uuid, sqlx::Error> {
    let id = Uuid::new_v4();
    enqueue_with_id(conn, id, topic, partition, payload).await?;
    Ok(id)
}

/// [`enqueue`] with the row id chosen by the caller (an event's own id, so that consumers see
/// one id for the event and its delivery).
#[tracing::instrument(skip_all, err, fields(topic = %topic, %id))]
pub async fn enqueue_with_id(
    conn: &mut Conn<'_>,
    id: Uuid,
    topic: &str,
    partition: Option<&str>,
    payload: &Value,
) -> Result<(), sqlx::Error> {
    let partition = partition.map_or_else(|| id.to_string(), str::to_string);
    store::outbox::enqueue(conn, id, topic, &partition, payload).await
}

/// Claims the oldest due message of `topic` that heads its partition, leased to this relay for
/// `lease` from `now`; `None` when nothing is due. Relays on many replicas never claim the same
/// row (`store::outbox::claim`).
pub async fn claim_due(
    db: &Db,
    topic: &str,
    now: DateTime<Utc>,
    lease: Duration,
) -> Result<Option<Claimed>, sqlx::Error> {
    store::outbox::claim(&mut db.conn(), topic, now, lease).await
}

/// Marks the missing heads of `topic`'s partitions (left by an older version of tms running
/// beside this one), so their rows can be claimed; how many. The relay does it every
/// [`super::relay::REPAIR_INTERVAL`].
pub async fn repair_heads(db: &Db, topic: &str) -> Result<u64, sqlx::Error> {
    store::outbox::repair_heads(&mut db.conn(), topic).await
}

/// Marks `id` delivered at `now` (unless another relay already did: its time is kept).
pub async fn mark_delivered(db: &Db, id: Uuid, now: DateTime<Utc>) -> Result<(), sqlx::Error> {
    store::outbox::mark_delivered(&mut db.conn(), id, now).await
}

/// Records the failure of the attempt `claimed` and the next attempt — only while this relay
/// still holds the lease it claimed (or last renewed) the row with (else another relay owns the
/// row now and records its own outcome).
pub async fn record_failure(
    db: &Db,
    claimed: &Claimed,
    error: &str,
    next_attempt_at: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    let held = store::outbox::mark_failed(&mut db.conn(), claimed, error, next_attempt_at).await?;
    if !held {
        tracing::warn!(id = %claimed.id, "outbox lease lost before the failure was recorded");
    }
    Ok(())
}

/// Extends the lease of row `id`, held until `held`, to `until`, while this relay still holds
/// it: whether it did.
pub async fn renew_lease(
    db: &Db,
    id: Uuid,
    held: DateTime<Utc>,
    until: DateTime<Utc>,
) -> Result<bool, sqlx::Error> {
    store::outbox::renew_lease(&mut db.conn(), id, held, until).await
}
