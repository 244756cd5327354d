//! Work at scale beside the API: the outbox relay under a burst of events, and a billing run over
//! every account — how many rows per second, whether memory stays flat, and the API's p99 (reads
//! by id) during them against the same reads just before.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use serde_json::{Value, json};
use sqlx::Executor;
use sqlx::postgres::PgPool;

use super::suite::FLAT_BAR;
use super::{
    Args, Bench, PhaseStats, emit, figures, http_client, load, mb, memory_kb, pause, round2,
};

/// How often memory and progress are sampled.
const SAMPLE_EVERY: Duration = Duration::from_millis(500);
/// The longest a drain or a run may take before the benchmark gives up.
const PATIENCE: Duration = Duration::from_secs(3 * 3600);

/// The API reads at the first concurrency, as long as one phase.
async fn api(args: &Args, port: u16, requests: &Arc<Vec<Vec<u8>>>) -> anyhow::Result<PhaseStats> {
    load(
        args.concurrency[0],
        args.warmup(),
        args.duration(),
        |seed, window| http_client(port, Arc::clone(requests), seed, window),
    )
    .await
}

/// The line comparing the API's reads during `what` with the same reads without it.
fn api_line(
    args: &Args,
    group: &str,
    what: &str,
    during: &PhaseStats,
    without: &PhaseStats,
) -> Value {
    let ratio = during.p99 / without.p99;
    json!({
        "group": group, "db": "postgres", "scenario": format!("GET /tenants/{{id}} during {what}"),
        "tenants": args.scale, "concurrency": args.concurrency[0],
        "service": figures(during),
        "baseline": {"what": format!("the same reads just before {what}"),
                     "rps": without.rate.round(), "p99_ms": round2(without.p99)},
        "ratio": round2(ratio), "bars": {"p99 within 2x": ratio <= FLAT_BAR},
    })
}

/// Resident memory of a process, sampled while it works.
#[derive(Default)]
struct Memory {
    min_kb: u64,
    max_kb: u64,
    last_kb: u64,
}

impl Memory {
    fn sample(&mut self, pid: u32) {
        if let Ok((rss, _)) = memory_kb(pid) {
            self.min_kb = if self.min_kb == 0 {
                rss
            } else {
                self.min_kb.min(rss)
            };
            self.max_kb = self.max_kb.max(rss);
            self.last_kb = rss;
        }
    }

    fn figures(&self) -> Value {
        json!({"min_mb": round2(mb(self.min_kb)), "max_mb": round2(mb(self.max_kb)),
               "last_mb": round2(mb(self.last_kb))})
    }
}

async fn pending_events(pool: &PgPool) -> anyhow::Result<i64> {
    Ok(
        sqlx::query_scalar("SELECT count(*) FROM outbox WHERE delivered_at IS NULL")
            .fetch_one(pool)
            .await?,
    )
}

/// Waits until the relay has delivered every event (bounded by `patience`); samples the
/// server's memory meanwhile.
async fn drained(
    pool: &PgPool,
    server_pid: u32,
    memory: &mut Memory,
    patience: Duration,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + patience;
    loop {
        memory.sample(server_pid);
        let pending = pending_events(pool).await?;
        if pending == 0 {
            return Ok(());
        }
        ensure!(
            Instant::now() < deadline,
            "the relay left {pending} events undelivered after {patience:?}"
        );
        tokio::time::sleep(SAMPLE_EVERY).await;
    }
}

/// `--burst` events written at once (as a billing run's own: one `INVOICE_ISSUED` each, every
/// one in a partition of its own, copies of a real one), then delivered by the server's relay
/// to its sink; the API read meanwhile.
pub(super) async fn relay(
    args: &Args,
    (pool, token): (&PgPool, &str),
    server: (u16, u32),
    requests: &Arc<Vec<Vec<u8>>>,
) -> anyhow::Result<()> {
    let (port, pid) = server;
    let mut memory = Memory::default();
    // A real event to copy: an invoice of tenant 0, issued through the API.
    let mut client = super::Client::new(port);
    let body = json!({"startDate": "2026-01-01T00:00:00.000Z", "endDate": "2026-02-01T00:00:00.000Z",
                      "amount": 49.99, "currencyCode": "USD", "dueDate": "2026-01-15T00:00:00.000Z",
                      "status": 0, "tenantId": super::reads::tenant_id(pool, 0).await?.to_string()});
    let invoice = super::request("POST", "/invoices", Some(token), &body);
    let (status, _) = client.send(&invoice).await?;
    ensure!(status == 200, "POST /invoices answered {status}");
    drained(pool, pid, &mut memory, Duration::from_secs(60)).await?;
    let without = api(args, port, requests).await?;
    pause().await;

    let mut memory = Memory::default();
    memory.sample(pid);
    let written = Instant::now();
    pool.execute(
        sqlx::query(
            "INSERT INTO outbox (id, topic, partition_key, state, payload, attempts, \
             next_attempt_at, created_on, head) \
             SELECT md5('burst' || n)::uuid, 'event', md5('burst' || n)::uuid::text, 'pending', \
             template.payload, 0, now(), now(), true \
             FROM generate_series(1, $1) AS n, \
             (SELECT payload FROM outbox WHERE topic = 'event' ORDER BY seq DESC LIMIT 1) \
             AS template",
        )
        .bind(args.burst as i64),
    )
    .await
    .context("writing the burst")?;
    let wrote_in = written.elapsed();
    let started = Instant::now();
    let (during, drain) = tokio::join!(
        api(args, port, requests),
        drained(pool, pid, &mut memory, PATIENCE)
    );
    let (during, ()) = (during?, drain?);
    let seconds = started.elapsed().as_secs_f64();
    emit(json!({
        "group": "relay", "db": "postgres", "scenario": "the outbox relay under a burst",
        "events": args.burst, "written_in_s": round2(wrote_in.as_secs_f64()),
        "sink": args.event_sink.as_deref().unwrap_or("jsonl (the default)"),
        "service": {"delivered_in_s": round2(seconds),
                    "rows_per_s": (args.burst as f64 / seconds).round(),
                    "server_rss": memory.figures()},
    }));
    emit(api_line(
        args,
        "relay",
        "the relay's burst",
        &during,
        &without,
    ));
    Ok(())
}

/// Every tenant made ACTIVE with an account whose period began this month, then `tms billing
/// run` (a process of its own, as an operator runs it) over them all while the server's relay
/// delivers the events it writes; the API read meanwhile.
pub(super) async fn billing(
    args: &Args,
    bench: &Bench,
    pool: &PgPool,
    server: (u16, u32),
    requests: &Arc<Vec<Vec<u8>>>,
) -> anyhow::Result<()> {
    let (port, server_pid) = server;
    eprintln!("loadbench: opening an account for every tenant");
    let prepared = Instant::now();
    let accounts = {
        let mut tx = pool.begin().await?;
        tx.execute("UPDATE tenants SET status = 0 WHERE status <> 0")
            .await?;
        let opened = tx
            .execute(
                "INSERT INTO tenant_billing (tenant_id, price, currency_code, cycle_count, \
                 cycle_unit, anchor_at, next_period, next_period_start, modified_on) \
                 SELECT id, 49.99, 'USD', 1, 'month', \
                 date_trunc('month', now()) - interval '23 months', 23, \
                 date_trunc('month', now()), now() \
                 FROM tenants WHERE NOT deleted ON CONFLICT (tenant_id) DO NOTHING",
            )
            .await?
            .rows_affected();
        tx.commit().await?;
        pool.execute("VACUUM (ANALYZE) tenants, tenant_billing")
            .await?;
        opened
    };
    let prepared_in = prepared.elapsed();
    let without = api(args, port, requests).await?;
    pause().await;

    let log = bench.data_dir.join("billing-run.log");
    let mut child = bench.command(&["billing", "run"], 0, &log)?.spawn()?;
    let pid = child.id();
    let started = Instant::now();
    let mut memory = Memory::default();
    let mut server_memory = Memory::default();
    let watch = async {
        loop {
            memory.sample(pid);
            server_memory.sample(server_pid);
            if let Some(status) = child.try_wait()? {
                return Ok::<_, anyhow::Error>(status);
            }
            ensure!(
                started.elapsed() < PATIENCE,
                "the billing run took over {PATIENCE:?}"
            );
            tokio::time::sleep(SAMPLE_EVERY).await;
        }
    };
    let (during, status) = tokio::join!(api(args, port, requests), watch);
    let (during, status) = (during?, status?);
    let seconds = started.elapsed().as_secs_f64();
    ensure!(
        status.success(),
        "tms billing run failed: {}",
        super::tail(&log).unwrap_or_default()
    );
    let issued: i64 = sqlx::query_scalar("SELECT count(*) FROM invoices WHERE billing_period = 23")
        .fetch_one(pool)
        .await?;
    emit(json!({
        "group": "billing", "db": "postgres", "scenario": "tms billing run over every account",
        "accounts": accounts, "prepared_in_s": prepared_in.as_secs(),
        "service": {"issued": issued, "seconds": round2(seconds),
                    "rows_per_s": (issued as f64 / seconds).round(),
                    "billing_rss": memory.figures(), "server_rss": server_memory.figures()},
    }));
    emit(api_line(
        args,
        "billing",
        "the billing run",
        &during,
        &without,
    ));
    Ok(())
}
