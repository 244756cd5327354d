//! Messages that announce business changes — mails now, provisioning and billing events as they
//! arrive — written to the transactional outbox in the transaction of the change (`outbox`, on
//! the table `store::outbox`) and delivered afterwards, at least once, by a relay per topic
//! (`relay`). See `docs/events.md`.

pub mod outbox;
pub mod relay;
pub mod sinks;

pub use outbox::{
    Claimed, Entry, State, claim_due, enqueue, enqueue_with_id, get, pending, prune_delivered,
    repair_heads,
};
pub use relay::{
    ALERT_AFTER_ATTEMPTS, BACKOFF_BASE, BACKOFF_CAP, Deliver, KEEP_DELIVERED, RELAY_CONCURRENCY,
    RELAY_LEASE, REPAIR_INTERVAL, Step, backoff, deliver_claimed, jittered, relay_step,
    spawn_pruner, spawn_relay,
};
