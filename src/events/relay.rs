//! The relay of a topic (`docs/events.md`): claims due rows of the outbox, hands each to the
//! topic's [`Deliver`] handler outside any transaction, and records the outcome — delivered, or
//! failed with the error and the next attempt after an exponential backoff. Up to
//! [`RELAY_CONCURRENCY`] deliveries run at once, each on its own partition (the outbox only hands
//! out the head of a partition); a handler that panics counts as a failed attempt. Delivery is
//! at least once: every handler passes the row id on for de-duplication.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use chrono::{DateTime, Utc};
use futures_util::FutureExt;
use serde_json::Value;
use tokio::task::{JoinHandle, JoinSet};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;
use uuid::Uuid;

use super::outbox::{self, Claimed, millis, to_chrono};
use crate::store::Db;
use crate::store::values::format_timestamp;

/// Delay before the first retry; each further failure doubles it.
pub const BACKOFF_BASE: Duration = Duration::from_secs(5);
/// Longest delay between two attempts: a row keeps being retried at this pace, never dropped.
pub const BACKOFF_CAP: Duration = Duration::from_secs(3600);
/// After this many failed attempts every further failure is logged at error level.
pub const ALERT_AFTER_ATTEMPTS: u32 = 20;
/// How long [`spawn_relay`] holds a claimed row from the claim or the last renewal. A delivery in
/// progress renews it every third of it ([`deliver_claimed`]), so a slow delivery keeps its row
/// however long it takes, and the rows of a relay that died (a crash, a kill) are free again
/// this long after its last renewal.
pub const RELAY_LEASE: Duration = Duration::from_secs(30);
/// How many deliveries [`spawn_relay`] runs at once (each on a different partition).
pub const RELAY_CONCURRENCY: usize = 16;
/// How long [`spawn_relay`] waits when nothing is due.
pub const POLL_INTERVAL: Duration = Duration::from_millis(500);
/// How long [`spawn_relay`] waits after a database error before trying again.
pub const ERROR_PAUSE: Duration = Duration::from_secs(5);
/// How often [`spawn_relay`] looks for partitions without a head (rows written or delivered by
/// an older version running beside this one, `store::outbox::repair_heads`).
pub const REPAIR_INTERVAL: Duration = Duration::from_secs(60);
/// `last_error` keeps at most this many characters.
const MAX_ERROR_CHARS: usize = 2000;

/// Delivers the payload of one outbox row to where its topic goes (a mail transport, an event
/// sink). `id` is the row's id, stable across retries: pass it on for de-duplication.
pub trait Deliver: Send + Sync {
    fn deliver(&self, id: Uuid, payload: &Value)
    -> impl Future<Output = anyhow::Result<()>> + Send;
}

/// A shared handler delivers as the handler it shares.
impl<T: Deliver> Deliver for Arc<T> {
    fn deliver(
        &self,
        id: Uuid,
        payload: &Value,
    ) -> impl Future<Output = anyhow::Result<()>> + Send {
        (**self).deliver(id, payload)
    }
}

/// What one delivery did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// The row was delivered and marked so.
    Delivered(Uuid),
    /// Nothing was due.
    Empty,
    /// Delivery failed; the error is recorded and a retry scheduled.
    Failed(Uuid),
}

/// One relay step for `topic`, for tests and tools: claim one due row (lease `lease` from
/// `now`) and [`deliver_claimed`] it. `Err` only for database errors.
pub async fn relay_step(
    db: &Db,
    topic: &str,
    handler: &impl Deliver,
    now: DateTime<Utc>,
    lease: Duration,
) -> anyhow::Result<Step> {
    let Some(claimed) = outbox::claim_due(db, topic, now, lease)
        .await
        .with_context(|| format!("cannot claim from the {topic} outbox"))?
    else {
        return Ok(Step::Empty);
    };
    deliver_claimed(db, topic, handler, claimed, now).await
}

/// Delivers a claimed row with `handler` outside any transaction, renewing its lease every third
/// of `claimed.lease` while the handler runs, then marks it delivered, or records the error (a
/// panic of the handler included) and schedules the next attempt after [`backoff`] (with jitter)
/// from `now`. A failure is never dropped: past [`ALERT_AFTER_ATTEMPTS`] the row keeps being
/// retried every [`BACKOFF_CAP`] and each failure is logged at error level. An outcome that
/// cannot be recorded is repaired when the lease expires (the row is delivered again: at least
/// once).
pub async fn deliver_claimed(
    db: &Db,
    topic: &str,
    handler: &impl Deliver,
    mut claimed: Claimed,
    now: DateTime<Utc>,
) -> anyhow::Result<Step> {
    let id = claimed.id;
    let attempts = claimed.attempt;
    let delivered = CancellationToken::new();
    // With traces on, the delivery joins the trace of the request that wrote the message.
    let span = crate::telemetry::delivery_span(topic, id, attempts, &claimed.payload);
    let delivery = async {
        let outcome = AssertUnwindSafe(handler.deliver(id, &claimed.payload))
            .catch_unwind()
            .await
            .unwrap_or_else(|panic| {
                Err(anyhow::anyhow!(
                    "the handler panicked: {}",
                    panic_text(&panic)
                ))
            });
        delivered.cancel();
        outcome
    }
    .instrument(span);
    let (outcome, held) = tokio::join!(delivery, keep_lease(db, topic, &claimed, &delivered));
    claimed.locked_until = held;
    match outcome {
        Ok(()) => {
            outbox::mark_delivered(db, id, now)
                .await
                .with_context(|| format!("cannot mark outbox row {id} delivered"))?;
            tracing::debug!(%id, topic, attempts, "outbox row delivered");
            Ok(Step::Delivered(id))
        }
        Err(err) => {
            let delay = jittered(backoff(attempts), rand::random::<f64>());
            let next_attempt_at = millis(now + to_chrono(delay));
            let message = truncate(&format!("{err:#}"), MAX_ERROR_CHARS);
            outbox::record_failure(db, &claimed, &message, next_attempt_at)
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

/// Renews the lease of `claimed` every third of its length until `done` is cancelled (the
/// delivery is over), and returns the lease then held: the token the outcome is recorded with.
/// A renewal in progress is finished before it returns, so the token is never one the database
/// no longer has. When the lease turns out lost (it ran out, say during a database outage, and
/// another relay took the row), it stops renewing; the delivery goes on, at least once.
async fn keep_lease(
    db: &Db,
    topic: &str,
    claimed: &Claimed,
    done: &CancellationToken,
) -> DateTime<Utc> {
    let mut held = claimed.locked_until;
    let every = claimed.lease / 3;
    if every.is_zero() {
        done.cancelled().await;
        return held;
    }
    loop {
        tokio::select! {
            _ = done.cancelled() => return held,
            _ = tokio::time::sleep(every) => {}
        }
        // Never shorter than the lease held (a test's clock may run behind the claim's `now`).
        let until = millis(db.clock().now() + to_chrono(claimed.lease));
        if until <= held {
            continue;
        }
        match outbox::renew_lease(db, claimed.id, held, until).await {
            Ok(true) => held = until,
            Ok(false) => {
                tracing::warn!(id = %claimed.id, topic,
                    "outbox lease lost during the delivery; another relay may deliver it too");
                done.cancelled().await;
                return held;
            }
            Err(err) => tracing::warn!(id = %claimed.id, topic, error = %err,
                "cannot renew the outbox lease; trying again"),
        }
    }
}

fn panic_text(panic: &Box<dyn std::any::Any + Send>) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(no message)".into())
}

/// Runs the relay for `topic` until `shutdown` is cancelled, on the database's clock with lease
/// [`RELAY_LEASE`]: keeps up to [`RELAY_CONCURRENCY`] deliveries in flight, claiming a new row as
/// soon as one finishes; polls every [`POLL_INTERVAL`] when nothing is due and pauses
/// [`ERROR_PAUSE`] after a database error. Deliveries in progress are finished before it returns.
pub fn spawn_relay<H: Deliver + 'static>(
    db: Db,
    topic: &'static str,
    handler: H,
    shutdown: CancellationToken,
) -> JoinHandle<()> {
    let handler = Arc::new(handler);
    tokio::spawn(async move {
        tracing::info!(topic, "outbox relay started");
        let mut in_flight = JoinSet::new();
        let mut next_repair = tokio::time::Instant::now();
        while !shutdown.is_cancelled() {
            let mut pause = POLL_INTERVAL;
            if tokio::time::Instant::now() >= next_repair {
                next_repair += REPAIR_INTERVAL;
                match outbox::repair_heads(&db, topic).await {
                    Ok(0) => {}
                    Ok(marked) => tracing::warn!(
                        topic,
                        partitions = marked,
                        "outbox partitions without a head (written by an older version) resumed"
                    ),
                    Err(err) => tracing::warn!(topic, error = %err,
                        "cannot look for outbox partitions without a head"),
                }
            }
            while in_flight.len() < RELAY_CONCURRENCY {
                let now = db.clock().now();
                match outbox::claim_due(&db, topic, now, RELAY_LEASE).await {
                    Ok(Some(claimed)) => {
                        let (db, handler) = (db.clone(), Arc::clone(&handler));
                        in_flight.spawn(async move {
                            let now = db.clock().now();
                            deliver_claimed(&db, topic, &handler, claimed, now).await
                        });
                    }
                    Ok(None) => break,
                    Err(err) => {
                        tracing::error!(topic, error = %err, "cannot claim from the outbox");
                        pause = ERROR_PAUSE;
                        break;
                    }
                }
            }
            tokio::select! {
                _ = shutdown.cancelled() => break,
                Some(done) = in_flight.join_next(), if !in_flight.is_empty() => {
                    if let Ok(Err(err)) = done {
                        tracing::error!(topic, error = %format!("{err:#}"), "outbox relay step failed");
                    }
                }
                _ = tokio::time::sleep(pause) => {}
            }
        }
        while in_flight.join_next().await.is_some() {}
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
        let db = &db;
        crate::clock::repeat(Duration::from_secs(3600), &shutdown, || async move {
            let before = db.clock().now() - to_chrono(KEEP_DELIVERED);
            match outbox::prune_delivered(&mut db.conn(), before).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(rows = n, "pruned delivered outbox rows"),
                Err(err) => tracing::warn!(error = %err, "pruning the outbox failed"),
            }
        })
        .await;
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
    fn jetstream_remembers_an_event_longer_than_a_lease() {
        let shortest = Duration::from_millis(crate::config::MIN_NATS_DUPLICATE_WINDOW_MS);
        assert!(shortest >= 2 * RELAY_LEASE);
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
