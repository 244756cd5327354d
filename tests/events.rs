//! The outbox as an event log, on SQLite and PostgreSQL: rows of one partition are handed out one
//! at a time in the order they were written, while other partitions go on (and a failing row
//! holds back only its own partition); the relay delivers several partitions at once; a handler
//! that panics counts as a failed attempt and the relay goes on; every row shows its state.

mod common;

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use common::{TestDb, Value, json};
use tms::events::{self, Deliver, State, Step};
use uuid::Uuid;

const TOPIC: &str = "event";
const LEASE: Duration = Duration::from_secs(60);

fn now() -> DateTime<Utc> {
    DateTime::from_timestamp_millis(Utc::now().timestamp_millis()).unwrap()
}

async fn enqueue(db: &tms::store::Db, partition: &str, n: u32) -> Uuid {
    let mut tx = db.begin().await.unwrap();
    let id = events::enqueue(
        &mut tx.conn(),
        TOPIC,
        Some(partition),
        &json!({"p": partition, "n": n}),
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    id
}

async fn claim(db: &tms::store::Db, at: DateTime<Utc>) -> Option<Uuid> {
    events::claim_due(db, TOPIC, at, LEASE)
        .await
        .unwrap()
        .map(|c| c.id)
}

async fn state(db: &tms::store::Db, id: Uuid) -> events::Entry {
    events::get(&mut db.conn(), id)
        .await
        .unwrap()
        .expect("the row")
}

/// Delivers, or fails rows whose payload says `"fail": true`, or panics on `"panic": true`;
/// records the order of deliveries per partition and the most deliveries in flight at once.
#[derive(Default)]
struct Sink {
    delay: Duration,
    in_flight: AtomicUsize,
    most_in_flight: AtomicUsize,
    delivered: Mutex<Vec<Value>>,
}

impl Deliver for Sink {
    async fn deliver(&self, _id: Uuid, payload: &Value) -> anyhow::Result<()> {
        let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.most_in_flight.fetch_max(now, Ordering::SeqCst);
        tokio::time::sleep(self.delay).await;
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
        if payload["panic"] == true {
            panic!("the sink fell over");
        }
        if payload["fail"] == true {
            anyhow::bail!("the sink said no");
        }
        self.delivered.lock().unwrap().push(payload.clone());
        Ok(())
    }
}

async fn a_partition_is_delivered_in_order_body(t: TestDb) -> TestDb {
    let db = &t.db;
    let a1 = enqueue(db, "tenant-a", 1).await;
    let a2 = enqueue(db, "tenant-a", 2).await;
    let b1 = enqueue(db, "tenant-b", 1).await;
    let a3 = enqueue(db, "tenant-a", 3).await;
    let t0 = now();
    assert_eq!(state(db, a1).await.state, State::Pending);
    assert_eq!(state(db, a1).await.partition_key, "tenant-a");

    // Only the head of each partition can be claimed.
    let first = claim(db, t0).await.unwrap();
    let second = claim(db, t0).await.unwrap();
    assert_eq!(
        {
            let mut heads = vec![first, second];
            heads.sort();
            heads
        },
        {
            let mut heads = vec![a1, b1];
            heads.sort();
            heads
        }
    );
    assert_eq!(claim(db, t0).await, None, "a2 waits behind a1");

    // a1 fails: its partition waits for its retry; b's partition is not held back.
    let sink = Sink::default();
    let claimed_a1 = events::Claimed {
        id: a1,
        payload: json!({"fail": true}),
        attempt: 1,
        locked_until: DateTime::from_timestamp_millis(
            (t0 + chrono::Duration::from_std(LEASE).unwrap()).timestamp_millis(),
        )
        .unwrap(),
        lease: LEASE,
    };
    let step = events::deliver_claimed(db, TOPIC, &sink, claimed_a1, t0)
        .await
        .unwrap();
    assert_eq!(step, Step::Failed(a1));
    let failed = state(db, a1).await;
    assert_eq!(failed.state, State::Failed);
    assert_eq!(failed.attempts, 1);
    assert_eq!(failed.last_error.as_deref(), Some("the sink said no"));
    let b2 = enqueue(db, "tenant-b", 2).await;
    // Before its retry is due, a1 holds back a2 and a3; b1 is still leased and holds back b2.
    assert_eq!(claim(db, t0).await, None);
    // Once b1's lease is over and a1's retry due (5 s at most), the heads come back, and only
    // they: b2 still waits behind b1, a2 behind a1.
    let after_lease = t0 + chrono::Duration::seconds(61);
    let mut next: Vec<Uuid> = Vec::new();
    while let Some(id) = claim(db, after_lease).await {
        next.push(id);
    }
    next.sort();
    let mut heads = vec![a1, b1];
    heads.sort();
    assert_eq!(next, heads);

    // Delivered in order: a1 (at its retry), then a2, then a3.
    let mut order = Vec::new();
    let later = t0 + chrono::Duration::hours(2);
    let sink = Sink::default();
    loop {
        match events::relay_step(db, TOPIC, &sink, later, LEASE)
            .await
            .unwrap()
        {
            Step::Delivered(id) => order.push(id),
            Step::Empty => break,
            Step::Failed(id) => panic!("{id} failed"),
        }
    }
    let a_order: Vec<Uuid> = order
        .iter()
        .copied()
        .filter(|id| [a1, a2, a3].contains(id))
        .collect();
    assert_eq!(a_order, vec![a1, a2, a3]);
    let b_order: Vec<Uuid> = order
        .iter()
        .copied()
        .filter(|id| [b1, b2].contains(id))
        .collect();
    assert_eq!(b_order, vec![b1, b2]);
    assert_eq!(state(db, a1).await.state, State::Delivered);
    assert_eq!(events::pending(&mut db.conn(), TOPIC).await.unwrap(), 0);
    t
}
both_stores!(
    a_partition_is_delivered_in_order,
    a_partition_is_delivered_in_order_body
);

async fn the_relay_delivers_partitions_side_by_side_body(t: TestDb) -> TestDb {
    let db = &t.db;
    // Eight partitions of four rows each.
    let mut written: HashMap<String, Vec<u32>> = HashMap::new();
    for n in 0..4 {
        for p in 0..8 {
            let partition = format!("tenant-{p}");
            enqueue(db, &partition, n).await;
            written.entry(partition).or_default().push(n);
        }
    }
    let sink = std::sync::Arc::new(Sink {
        delay: Duration::from_millis(50),
        ..Sink::default()
    });
    let shutdown = tokio_util::sync::CancellationToken::new();
    let relay = events::spawn_relay(db.clone(), TOPIC, sink.clone(), shutdown.clone());
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while sink.delivered.lock().unwrap().len() < 32 {
        assert!(
            std::time::Instant::now() < deadline,
            "not everything was delivered"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    shutdown.cancel();
    relay.await.unwrap();
    let most = sink.most_in_flight.load(Ordering::SeqCst);
    assert!(
        (2..=events::RELAY_CONCURRENCY).contains(&most),
        "deliveries at once: {most}"
    );
    // Every partition in its own order.
    let mut seen: HashMap<String, Vec<u32>> = HashMap::new();
    for payload in sink.delivered.lock().unwrap().iter() {
        seen.entry(payload["p"].as_str().unwrap().to_string())
            .or_default()
            .push(payload["n"].as_u64().unwrap() as u32);
    }
    assert_eq!(seen, written);
    t
}
both_stores!(
    the_relay_delivers_partitions_side_by_side,
    the_relay_delivers_partitions_side_by_side_body
);

async fn a_panicking_handler_is_a_failed_attempt_body(t: TestDb) -> TestDb {
    let db = &t.db;
    let mut tx = db.begin().await.unwrap();
    let bad = events::enqueue(&mut tx.conn(), TOPIC, None, &json!({"panic": true}))
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let good = enqueue(db, "tenant-x", 1).await;
    let sink = std::sync::Arc::new(Sink::default());
    let shutdown = tokio_util::sync::CancellationToken::new();
    let relay = events::spawn_relay(db.clone(), TOPIC, sink.clone(), shutdown.clone());
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let failed = state(db, bad).await;
        let delivered = state(db, good).await;
        if failed.state == State::Failed && delivered.state == State::Delivered {
            assert!(
                failed
                    .last_error
                    .as_deref()
                    .is_some_and(|e| e.contains("panicked") && e.contains("the sink fell over")),
                "{failed:?}"
            );
            assert_eq!(failed.attempts, 1);
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{failed:?} {delivered:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        !relay.is_finished(),
        "the relay outlives a panicking handler"
    );
    shutdown.cancel();
    relay.await.unwrap();
    t
}
both_stores!(
    a_panicking_handler_is_a_failed_attempt,
    a_panicking_handler_is_a_failed_attempt_body
);
