//! The relay's claim with a backlog: on PostgreSQL, with 100,000 pending events across 5,000
//! partitions (and as many delivered ones) written straight into a table that was never
//! analysed, the claim — the statement the store runs, as a generic and as a custom plan — reads
//! the partitions' heads through their index and a number of rows bounded by the leases held, not
//! by the backlog. On both databases: with writers and relays racing on the same partitions,
//! every partition is delivered whole and in the order it was written; rows an older version
//! wrote without a head mark are found.

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, SecondsFormat, Utc};
use common::{Db as Kind, TestDb, Value, json};
use sqlx::{AssertSqlSafe, Connection, Executor};
use tms::events::{self, Deliver, Step};
use uuid::Uuid;

const TOPIC: &str = "event";
const LEASE: Duration = Duration::from_secs(60);

/// The backlog of the PostgreSQL test: pending rows, their partitions, delivered rows before them.
const PENDING: i64 = 100_000;
const PARTITIONS: i64 = 5_000;
const DELIVERED: i64 = 100_000;
/// Leases held when the claim is explained: three replicas' relays, each with its deliveries in
/// flight.
const LEASED: usize = 3 * events::RELAY_CONCURRENCY;

fn now() -> DateTime<Utc> {
    DateTime::from_timestamp_millis(Utc::now().timestamp_millis()).unwrap()
}

fn sql_instant(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

fn pg_pool(db: &tms::store::Db) -> &sqlx::PgPool {
    match db.pool() {
        tms::store::Pool::Postgres(pool) => pool,
        tms::store::Pool::Sqlite(_) => panic!("a PostgreSQL test"),
    }
}

/// Writes the backlog straight into the table, as the outbox would have written it: first
/// `delivered` delivered rows, then `PENDING` pending rows, row `n` in partition
/// `tenant-<n % PARTITIONS>`, due `PENDING - n` ms before `t0` (so the oldest first), the first
/// row of each partition its head. Autovacuum is off for the table, so nothing analyses it.
async fn write_backlog(db: &tms::store::Db, t0: DateTime<Utc>, delivered: i64) {
    let pool = pg_pool(db);
    let mut conn = pool.acquire().await.unwrap();
    conn.execute("ALTER TABLE outbox SET (autovacuum_enabled = false)")
        .await
        .unwrap();
    let history = format!(
        "INSERT INTO outbox (id, topic, partition_key, state, payload, attempts, \
           next_attempt_at, created_on, delivered_at) \
         SELECT gen_random_uuid(), '{TOPIC}', 'old-' || (n % 1000), 'delivered', \
           jsonb_build_object('old', n), 1, t, t, t \
         FROM generate_series(0, {delivered} - 1) n, \
              LATERAL (SELECT '{t0}'::timestamptz - interval '2 days' \
                              + n * interval '1 ms' AS t) at",
        t0 = sql_instant(t0)
    );
    conn.execute(AssertSqlSafe(history)).await.unwrap();
    let pending = format!(
        "INSERT INTO outbox (id, topic, partition_key, state, payload, attempts, \
           next_attempt_at, created_on, head) \
         SELECT gen_random_uuid(), '{TOPIC}', 'tenant-' || (n % {PARTITIONS}), 'pending', \
           jsonb_build_object('n', n, 'p', 'tenant-' || (n % {PARTITIONS})), 0, t, t, \
           n < {PARTITIONS} \
         FROM generate_series(0, {PENDING} - 1) n, \
              LATERAL (SELECT '{t0}'::timestamptz - ({PENDING} - n) * interval '1 ms' AS t) at",
        t0 = sql_instant(t0)
    );
    conn.execute(AssertSqlSafe(pending)).await.unwrap();
    let analysed: (Option<DateTime<Utc>>, Option<DateTime<Utc>>) = sqlx::query_as(
        "SELECT last_analyze, last_autoanalyze FROM pg_stat_user_tables \
         WHERE relid = 'outbox'::regclass",
    )
    .fetch_one(&mut *conn)
    .await
    .unwrap();
    assert_eq!(analysed, (None, None), "the outbox was never analysed");
}

/// The plan of the claim as `EXPLAIN (ANALYZE, FORMAT JSON)` shows it, run on its own connection
/// in a transaction that is rolled back, as a prepared statement under `plan_cache_mode`.
async fn explain_claim(db: &tms::store::Db, at: DateTime<Utc>, plan_cache_mode: &str) -> Value {
    let options = pg_pool(db).connect_options();
    let mut conn = sqlx::PgConnection::connect_with(&options).await.unwrap();
    conn.execute(AssertSqlSafe(format!(
        "SET plan_cache_mode = {plan_cache_mode}"
    )))
    .await
    .unwrap();
    conn.execute(AssertSqlSafe(format!(
        "PREPARE claim AS {}",
        tms::store::outbox::CLAIM_POSTGRES
    )))
    .await
    .unwrap();
    let lease_end = at + chrono::Duration::from_std(LEASE).unwrap();
    let explain = format!(
        "EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) EXECUTE claim('{TOPIC}', '{}', '{}')",
        sql_instant(at),
        sql_instant(lease_end)
    );
    // Five runs: a prepared statement gets its generic plan from the sixth on under `auto`.
    let mut plan = Value::Null;
    for _ in 0..6 {
        conn.execute("BEGIN").await.unwrap();
        plan = sqlx::query_scalar::<_, Value>(AssertSqlSafe(explain.clone()))
            .fetch_one(&mut conn)
            .await
            .unwrap();
        conn.execute("ROLLBACK").await.unwrap();
    }
    conn.close().await.unwrap();
    plan
}

/// Every node of `plan` (the `Plan` of EXPLAIN's JSON and the plans below it), depth first.
fn nodes(plan: &Value) -> Vec<&Value> {
    let mut out = vec![plan];
    for child in plan["Plans"].as_array().into_iter().flatten() {
        out.extend(nodes(child));
    }
    out
}

/// The rows a scan node read: returned and removed by its filters, over all its loops.
fn rows_read(node: &Value) -> f64 {
    let field = |name: &str| node[name].as_f64().unwrap_or(0.0);
    (field("Actual Rows")
        + field("Rows Removed by Filter")
        + field("Rows Removed by Index Recheck"))
        * field("Actual Loops").max(1.0)
}

/// What is wrong with the claim's plan `explained`: a scan of the table, a sort, no scan of the
/// heads' index, or more rows read than the `leased` heads ahead of the one claimed (and the
/// row updated).
fn plan_problems(explained: &Value, leased: usize) -> Vec<String> {
    let plan = &explained[0]["Plan"];
    let all = nodes(plan);
    let mut problems = Vec::new();
    let scans: Vec<&&Value> = all
        .iter()
        .filter(|n| n["Node Type"].as_str().is_some_and(|t| t.contains("Scan")))
        .collect();
    for node in &all {
        let kind = node["Node Type"].as_str().unwrap_or_default();
        if kind == "Seq Scan" || kind.contains("Sort") || kind.contains("Bitmap") {
            problems.push(format!("a {kind} node"));
        }
    }
    if !scans.iter().any(|n| n["Index Name"] == "outbox_head_idx") {
        problems.push("no scan of outbox_head_idx".into());
    }
    let read: f64 = scans.iter().map(|n| rows_read(n)).sum();
    let bound = (leased + 2) as f64;
    if read > bound {
        problems.push(format!("{read} rows read, more than {bound}"));
    }
    problems
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_claim_reads_a_bounded_number_of_rows_whatever_the_backlog() {
    let name = "a_claim_reads_a_bounded_number_of_rows_whatever_the_backlog";
    let Some(t) = TestDb::connect(Kind::Postgres, name).await else {
        return;
    };
    t.db.migrate().await.expect("migrations");
    let db = &t.db;
    let t0 = now();
    write_backlog(db, t0, DELIVERED).await;

    let mut problems = Vec::new();
    let mut check = |what: &str, explained: &Value, leased: usize| {
        for problem in plan_problems(explained, leased) {
            problems.push(format!("{what}: {problem}\n{explained:#}"));
        }
    };
    for mode in ["force_generic_plan", "force_custom_plan"] {
        let explained = explain_claim(db, t0, mode).await;
        check(&format!("nothing leased, {mode}"), &explained, 0);
    }
    // Three replicas' relays take their rows: the oldest heads, oldest first.
    for expected in 0..LEASED {
        let claimed = events::claim_due(db, TOPIC, t0, LEASE)
            .await
            .unwrap()
            .expect("a head is due");
        assert_eq!(claimed.payload["n"], json!(expected), "claimed in order");
    }
    for mode in ["force_generic_plan", "force_custom_plan"] {
        let explained = explain_claim(db, t0, mode).await;
        check(&format!("{LEASED} leased, {mode}"), &explained, LEASED);
    }
    // The claim that follows takes the next head.
    let next = events::claim_due(db, TOPIC, t0, LEASE)
        .await
        .unwrap()
        .expect("a head is due");
    assert_eq!(next.payload["n"], json!(LEASED));
    assert!(problems.is_empty(), "{}", problems.join("\n\n"));
    t.close().await;
}

// ---------------------------------------------------------------------------------------------
// Order under racing writers and relays
// ---------------------------------------------------------------------------------------------

/// Records each delivery's partition and number.
#[derive(Default)]
struct Recorder {
    delivered: Mutex<Vec<(String, u64)>>,
}

impl Deliver for Recorder {
    async fn deliver(&self, _id: Uuid, payload: &Value) -> anyhow::Result<()> {
        tokio::task::yield_now().await;
        let partition = payload["p"].as_str().unwrap_or_default().to_string();
        let n = payload["n"].as_u64().unwrap_or_default();
        self.delivered.lock().unwrap().push((partition, n));
        Ok(())
    }
}

async fn enqueue(db: &tms::store::Db, partition: &str, n: u64) {
    let mut tx = db.begin().await.unwrap();
    events::enqueue(
        &mut tx.conn(),
        TOPIC,
        Some(partition),
        &json!({"p": partition, "n": n}),
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
}

async fn racing_writers_and_relays_keep_each_partition_in_order_body(t: TestDb) -> TestDb {
    const PARTITIONS: usize = 6;
    const PER_PARTITION: u64 = 40;
    const RELAYS: usize = 4;
    let db = &t.db;
    let recorder = Arc::new(Recorder::default());
    let writing = tokio_util::sync::CancellationToken::new();
    // One writer per partition, so each partition has an order of writing; the relays deliver
    // while the writers write, so a row is often written just as its partition's head is marked
    // delivered.
    let writers: Vec<_> = (0..PARTITIONS)
        .map(|p| {
            let db = db.clone();
            tokio::spawn(async move {
                for n in 0..PER_PARTITION {
                    enqueue(&db, &format!("tenant-{p}"), n).await;
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            })
        })
        .collect();
    let relays: Vec<_> = (0..RELAYS)
        .map(|_| {
            let (db, recorder, writing) = (db.clone(), recorder.clone(), writing.clone());
            tokio::spawn(async move {
                loop {
                    match events::relay_step(&db, TOPIC, &recorder, now(), LEASE).await {
                        Ok(Step::Delivered(_)) => {}
                        Ok(Step::Empty) if writing.is_cancelled() => return,
                        Ok(Step::Empty) => tokio::time::sleep(Duration::from_millis(2)).await,
                        Ok(Step::Failed(id)) => panic!("{id} failed"),
                        Err(err) => panic!("relay step: {err:#}"),
                    }
                }
            })
        })
        .collect();
    for writer in writers {
        writer.await.unwrap();
    }
    writing.cancel();
    for relay in relays {
        relay.await.unwrap();
    }
    // A last pass: nothing is left behind (a partition without a head would stay pending).
    let deadline = Instant::now() + Duration::from_secs(20);
    while events::pending(&mut db.conn(), TOPIC).await.unwrap() > 0 {
        assert!(Instant::now() < deadline, "rows left pending for ever");
        match events::relay_step(db, TOPIC, &recorder, now(), LEASE).await {
            Ok(Step::Delivered(_)) => {}
            Ok(Step::Empty) => panic!(
                "{} rows pending but none can be claimed",
                events::pending(&mut db.conn(), TOPIC).await.unwrap()
            ),
            other => panic!("{other:?}"),
        }
    }
    let mut seen: HashMap<String, Vec<u64>> = HashMap::new();
    for (partition, n) in recorder.delivered.lock().unwrap().iter() {
        seen.entry(partition.clone()).or_default().push(*n);
    }
    let expected: Vec<u64> = (0..PER_PARTITION).collect();
    for p in 0..PARTITIONS {
        assert_eq!(
            seen.get(&format!("tenant-{p}")),
            Some(&expected),
            "partition tenant-{p} delivered whole, once, in order"
        );
    }
    t
}
both_stores!(
    racing_writers_and_relays_keep_each_partition_in_order,
    racing_writers_and_relays_keep_each_partition_in_order_body
);

// ---------------------------------------------------------------------------------------------
// Rows of an older version
// ---------------------------------------------------------------------------------------------

/// Writes a row of `partition` as a version of tms from before heads were marked did: never a
/// head. Returns its id.
async fn write_unmarked(db: &tms::store::Db, partition: &str, n: u64) -> Uuid {
    let id = Uuid::new_v4();
    let at = tms::store::values::format_timestamp(&now());
    let payload = json!({"p": partition, "n": n}).to_string();
    match db.pool() {
        tms::store::Pool::Postgres(pool) => {
            sqlx::query(
                "INSERT INTO outbox (id, topic, partition_key, state, payload, attempts, \
                 next_attempt_at, created_on) \
                 VALUES ($1, $2, $3, 'pending', $4::jsonb, 0, $5::timestamptz, $5::timestamptz)",
            )
            .bind(id)
            .bind(TOPIC)
            .bind(partition)
            .bind(payload)
            .bind(at)
            .execute(pool)
            .await
            .unwrap();
        }
        tms::store::Pool::Sqlite(pool) => {
            sqlx::query(
                "INSERT INTO outbox (id, topic, partition_key, state, payload, attempts, \
                 next_attempt_at, created_on, seq) \
                 VALUES ($1, $2, $3, 'pending', $4, 0, $5, $5, \
                         (SELECT COALESCE(MAX(seq), 0) + 1 FROM outbox))",
            )
            .bind(id.to_string())
            .bind(TOPIC)
            .bind(partition)
            .bind(payload)
            .bind(at)
            .execute(pool)
            .await
            .unwrap();
        }
    }
    id
}

async fn rows_an_older_version_wrote_are_resumed_body(t: TestDb) -> TestDb {
    let db = &t.db;
    // An older replica writes two rows into an idle partition, and one behind a row of this
    // version.
    let first = write_unmarked(db, "tenant-old", 0).await;
    let second = write_unmarked(db, "tenant-old", 1).await;
    enqueue(db, "tenant-mixed", 0).await;
    let behind = write_unmarked(db, "tenant-mixed", 1).await;
    let at = now() + chrono::Duration::seconds(1);
    let claimed = events::claim_due(db, TOPIC, at, LEASE)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(claimed.payload, json!({"p": "tenant-mixed", "n": 0}));
    assert_eq!(
        events::claim_due(db, TOPIC, at, LEASE).await.unwrap(),
        None,
        "rows without a head mark are not claimed"
    );
    // The row of this version, delivered, hands the head on; the older version's partition is
    // resumed by the repair, its first row only.
    events::outbox::mark_delivered(db, claimed.id, at)
        .await
        .unwrap();
    assert_eq!(events::repair_heads(db, TOPIC).await.unwrap(), 1);
    assert_eq!(events::repair_heads(db, TOPIC).await.unwrap(), 0);
    let mut ids = Vec::new();
    while let Some(c) = events::claim_due(db, TOPIC, at, LEASE).await.unwrap() {
        ids.push(c.id);
    }
    ids.sort();
    let mut heads = vec![first, behind];
    heads.sort();
    assert_eq!(ids, heads);
    events::outbox::mark_delivered(db, first, at).await.unwrap();
    let next = events::claim_due(db, TOPIC, at, LEASE)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(next.id, second);
    t
}
both_stores!(
    rows_an_older_version_wrote_are_resumed,
    rows_an_older_version_wrote_are_resumed_body
);

// ---------------------------------------------------------------------------------------------
// The figures of docs/PERFORMANCE.md
// ---------------------------------------------------------------------------------------------

/// A handler that only counts.
#[derive(Default)]
struct Counter(std::sync::atomic::AtomicU64);

impl Deliver for Counter {
    async fn deliver(&self, _id: Uuid, _payload: &Value) -> anyhow::Result<()> {
        self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(())
    }
}

/// Not a check: measures the claim and the delivery rate of three relays (three pools, as three
/// replicas) on the backlog of the plan test, and prints them (`docs/PERFORMANCE.md`). Run with
/// `cargo test --test outbox_claim -- --ignored --nocapture` (`OUTBOX_BENCH_DELIVERED=1000000`
/// for a longer history).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "a measurement, not a check"]
async fn measure_claims_and_deliveries_with_a_backlog() {
    const CLAIMS: usize = 200;
    const RUN: Duration = Duration::from_secs(20);
    let name = "measure_claims_and_deliveries_with_a_backlog";
    let Some(t) = TestDb::connect(Kind::Postgres, name).await else {
        return;
    };
    t.db.migrate().await.expect("migrations");
    let t0 = now();
    // `OUTBOX_BENCH_DELIVERED` rows of history instead of `DELIVERED`.
    let delivered = std::env::var("OUTBOX_BENCH_DELIVERED")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(DELIVERED);
    write_backlog(&t.db, t0, delivered).await;

    let mut took = Vec::with_capacity(CLAIMS);
    for _ in 0..CLAIMS {
        let start = Instant::now();
        events::claim_due(&t.db, TOPIC, now(), LEASE)
            .await
            .unwrap()
            .expect("a head is due");
        took.push(start.elapsed());
    }
    took.sort();
    let mean = took.iter().sum::<Duration>() / CLAIMS as u32;
    println!(
        "claim with {PENDING} pending in {PARTITIONS} partitions and {delivered} delivered, \
         {CLAIMS} claims one after the other: mean {mean:.2?}, median {:.2?}, p95 {:.2?}, \
         max {:.2?}",
        took[CLAIMS / 2],
        took[CLAIMS * 95 / 100],
        took[CLAIMS - 1]
    );
    sqlx::query("UPDATE outbox SET locked_until = NULL")
        .execute(pg_pool(&t.db))
        .await
        .unwrap();

    let counter = Arc::new(Counter::default());
    let shutdown = tokio_util::sync::CancellationToken::new();
    let mut replicas = Vec::new();
    let mut relays = Vec::new();
    for _ in 0..3 {
        let db = t.reconnect().await;
        relays.push(events::spawn_relay(
            db.clone(),
            TOPIC,
            counter.clone(),
            shutdown.clone(),
        ));
        replicas.push(db);
    }
    tokio::time::sleep(RUN).await;
    shutdown.cancel();
    for relay in relays {
        relay.await.unwrap();
    }
    let delivered = counter.0.load(std::sync::atomic::Ordering::Relaxed);
    println!(
        "three relays, {} s: {delivered} events delivered, {:.1} events/s",
        RUN.as_secs(),
        delivered as f64 / RUN.as_secs_f64()
    );
    for db in replicas {
        db.close().await;
    }
    t.close().await;
}
