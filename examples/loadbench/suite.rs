//! The PostgreSQL groups, in order, against one freshly started service: reads and writes
//! against pgbench, the funnel, start-up and memory, then — with `--scale` tenants seeded — the
//! reads at scale, the relay's burst and the billing run.

use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::time::Duration;

use serde_json::json;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use uuid::Uuid;

use super::reads::{self, SMALL};
use super::{
    Args, Bench, Group, PhaseStats, admin_token, batch, emit, figures, flows, http_client, load,
    mb, memory_kb, ms, pause, pgbench, round2,
};

/// The bars of SPEC §8 the figures are held to.
pub(super) const RATIO_BAR: f64 = 0.7;
pub(super) const READ_P99_BAR_MS: f64 = 10.0;
pub(super) const FUNNEL_P99_BAR_MS: f64 = 50.0;
pub(super) const RSS_BAR_MB: f64 = 20.0;
pub(super) const START_BAR_MS: f64 = 100.0;
pub(super) const FLAT_BAR: f64 = 2.0;

/// What a scenario's line says of the service against pgbench.
fn against_pgbench(stats: &PhaseStats, baseline: &pgbench::Baseline) -> serde_json::Value {
    json!({"what": "pgbench -M prepared, the same statements", "tps": baseline.tps.round(),
           "latency_avg_ms": round2(baseline.latency_avg_ms), "failed": baseline.failed,
           "ratio_of": round2(stats.rate / baseline.tps)})
}

pub(super) async fn run(args: &Args, bench: &Bench, base: &PgConnectOptions) -> anyhow::Result<()> {
    let schema = bench.schema();
    eprintln!("loadbench: schema {schema}, migrating");
    bench.migrate()?;
    let pool = PgPoolOptions::new()
        .max_connections(2)
        .connect_with(base.clone().options([("search_path", schema)]))
        .await?;
    let start = if args.runs(Group::Resources) {
        Some(bench.start_median(args.starts)?)
    } else {
        None
    };
    let (server, _) = bench.start("serve")?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (rss_start, _) = memory_kb(server.pid())?;
    let token = admin_token(&bench.jwt_secret)?;
    let port = server.port;
    let c0 = args.concurrency[0];

    reads::seed(&pool, 0, SMALL).await?;
    let small = reads::sample(&pool, SMALL).await?;
    let pgbench_dir = bench.data_dir.join("pgbench");
    std::fs::create_dir_all(&pgbench_dir)?;
    let pgbench = pgbench::Pgbench {
        base,
        schema,
        dir: &pgbench_dir,
        warmup: args.warmup(),
        duration: args.duration(),
    };

    // Each read's p99 at the first concurrency with 1,000 tenants: the baseline at scale.
    let mut small_p99 = Vec::new();
    if args.runs(Group::Reads) {
        for &concurrency in &args.concurrency {
            for scenario in reads::scenarios() {
                let stats = read(args, port, &scenario, &small, &token, concurrency).await?;
                let baseline = pgbench.run(
                    &slug(scenario.name),
                    &scenario.pgbench_script(SMALL)?,
                    concurrency,
                )?;
                pause().await;
                let ratio = stats.rate / baseline.tps;
                emit(json!({
                    "group": "reads", "db": "postgres", "scenario": scenario.name,
                    "tenants": SMALL, "concurrency": concurrency,
                    "service": figures(&stats), "baseline": against_pgbench(&stats, &baseline),
                    "ratio": round2(ratio),
                    "bars": {"ratio >= 0.7": ratio >= RATIO_BAR,
                             "p99 < 10 ms": stats.p99 < READ_P99_BAR_MS},
                }));
                if concurrency == c0 {
                    small_p99.push(stats.p99);
                }
            }
        }
    }

    let next = Arc::new(AtomicUsize::new(0));
    if args.runs(Group::Writes) {
        let stats = flows::onboarding(args, port, &token, &next, c0).await?;
        pause().await;
        let baseline = pgbench.run("onboarding", flows::ONBOARDING_SCRIPT, c0)?;
        pause().await;
        let ratio = stats.rate / baseline.tps;
        emit(json!({
            "group": "writes", "db": "postgres",
            "scenario": "POST /tenants (address, tenant, contact)", "concurrency": c0,
            "service": figures(&stats), "baseline": against_pgbench(&stats, &baseline),
            "ratio": round2(ratio), "bars": {"ratio >= 0.7": ratio >= RATIO_BAR},
        }));
    }
    if args.runs(Group::Funnel) {
        let stats = flows::funnel(args, port, &next, c0).await?;
        pause().await;
        emit(funnel_line("postgres", c0, &stats));
    }
    if args.runs(Group::Resources) {
        tokio::time::sleep(Duration::from_secs(2)).await;
        let (rss_after, rss_peak) = memory_kb(server.pid())?;
        emit(resource_line(
            "postgres", start, rss_start, rss_after, rss_peak,
        ));
    }

    let at_scale = [Group::Scale, Group::Relay, Group::Billing];
    if args.scale > 0 && at_scale.iter().any(|g| args.runs(*g)) {
        scale(args, bench, &pool, (port, server.pid()), &token, small_p99).await?;
    }
    server.stop()?;
    pool.close().await;
    Ok(())
}

/// The groups with `--scale` tenants.
async fn scale(
    args: &Args,
    bench: &Bench,
    pool: &PgPool,
    server: (u16, u32),
    token: &str,
    mut small_p99: Vec<f64>,
) -> anyhow::Result<()> {
    let port = server.0;
    let c0 = args.concurrency[0];
    if args.runs(Group::Scale) && small_p99.is_empty() {
        let small = reads::sample(pool, SMALL).await?;
        for scenario in reads::scenarios() {
            small_p99.push(read(args, port, &scenario, &small, token, c0).await?.p99);
        }
    }
    let seeding = std::time::Instant::now();
    reads::seed(pool, SMALL, args.scale).await?;
    emit(json!({
        "group": "scale", "seeded": {"tenants": args.scale, "seconds": seeding.elapsed().as_secs(),
        "on_disk": reads::size_on_disk(pool, bench.schema()).await?},
    }));
    let large = reads::sample(pool, args.scale).await?;
    if args.runs(Group::Scale) {
        for (scenario, small) in reads::scenarios().iter().zip(&small_p99) {
            let stats = read(args, port, scenario, &large, token, c0).await?;
            let ratio = stats.p99 / small;
            emit(json!({
                "group": "scale", "db": "postgres", "scenario": scenario.name,
                "tenants": args.scale, "concurrency": c0, "service": figures(&stats),
                "baseline": {"what": "p99 of the same read at 1,000 tenants", "tenants": SMALL,
                             "p99_ms": round2(*small)},
                "ratio": round2(ratio), "bars": {"p99 within 2x": ratio <= FLAT_BAR},
            }));
        }
        for (name, plan) in reads::plans(pool).await? {
            emit(json!({"group": "scale", "plan": name, "lines": plan}));
        }
    }
    let by_id = &reads::scenarios()[0];
    let requests = reads::requests(by_id, &large, token);
    if args.runs(Group::Relay) {
        batch::relay(args, (pool, token), server, &requests).await?;
    }
    if args.runs(Group::Billing) {
        batch::billing(args, bench, pool, server, &requests).await?;
    }
    Ok(())
}

/// One read scenario about `tenants` at `concurrency`; every request must succeed.
pub(super) async fn read(
    args: &Args,
    port: u16,
    scenario: &reads::Scenario,
    tenants: &[(u64, Uuid)],
    token: &str,
    concurrency: usize,
) -> anyhow::Result<PhaseStats> {
    eprintln!("loadbench: {} at concurrency {concurrency}", scenario.name);
    let requests = reads::requests(scenario, tenants, token);
    let stats = load(
        concurrency,
        args.warmup(),
        args.duration(),
        |seed, window| http_client(port, Arc::clone(&requests), seed, window),
    )
    .await?;
    anyhow::ensure!(
        stats.errors == 0,
        "{}: {} requests failed",
        scenario.name,
        stats.errors
    );
    pause().await;
    Ok(stats)
}

/// The funnel's line: its p99 against the bar.
pub(super) fn funnel_line(db: &str, concurrency: usize, stats: &PhaseStats) -> serde_json::Value {
    json!({
        "group": "funnel", "db": db, "scenario": "sign-up, verify, onboard (one iteration)",
        "concurrency": concurrency, "service": figures(stats),
        "baseline": {"what": "the bar on the iteration's p99", "p99_ms": FUNNEL_P99_BAR_MS},
        "ratio": round2(stats.p99 / FUNNEL_P99_BAR_MS),
        "bars": {"p99 < 50 ms": stats.p99 < FUNNEL_P99_BAR_MS},
    })
}

/// Start-up and memory, as one line.
pub(super) fn resource_line(
    db: &str,
    start: Option<Duration>,
    rss_start: u64,
    rss_after: u64,
    rss_peak: u64,
) -> serde_json::Value {
    let worst = mb(rss_start.max(rss_after));
    let mut line = json!({
        "group": "resources", "db": db, "scenario": "idle RSS after start and after the load",
        "service": {"rss_after_start_mb": round2(mb(rss_start)),
                    "rss_after_load_mb": round2(mb(rss_after)), "rss_peak_mb": round2(mb(rss_peak))},
        "baseline": {"what": "the bar", "rss_mb": RSS_BAR_MB},
        "ratio": round2(worst / RSS_BAR_MB),
        "bars": {"RSS < 20 MB": worst < RSS_BAR_MB},
    });
    if let Some(start) = start {
        line["start_to_first_ping_ms"] = json!(round2(ms(start)));
        line["bars"]["start < 100 ms"] = json!(ms(start) < START_BAR_MS);
    }
    line
}

/// A file name for `name`.
fn slug(name: &str) -> String {
    name.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect()
}
