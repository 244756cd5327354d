//! The embedded mode, what a newcomer runs: the service on its SQLite database, 1,000 tenants
//! (`--sqlite-tenants`)
//! seeded through the API (each with an address, a primary contact, a status and twelve
//! invoices), the reads at each concurrency, then `--sqlite-runs` consecutive runs of the writes
//! and of the funnel on the growing database (does writing slow down as tables grow?), start-up
//! and memory, and whether SQLite ever said "database is locked".

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::{Context, ensure};
use serde_json::{Value, json};
use tokio::sync::Mutex;
use uuid::Uuid;

use super::reads;
use super::suite::{self, READ_P99_BAR_MS};
use super::{
    Args, Bench, Client, PhaseStats, admin_token, emit, figures, flows, memory_kb, pause, request,
    round2,
};

/// The bar on a later run's throughput against the first run's: this machine varies by about a
/// fifth from one run to the next, a decline beyond that is the tables growing.
const HOLDS: f64 = 0.8;

pub(super) async fn run(args: &Args, bench: &Bench) -> anyhow::Result<()> {
    // The first start creates and migrates the database; the measured ones find it.
    let (first, _) = bench.start("sqlite-first")?;
    first.stop()?;
    let start = bench.start_median(args.starts)?;
    let (server, _) = bench.start("sqlite")?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (rss_start, _) = memory_kb(server.pid())?;
    let token = admin_token(&bench.jwt_secret)?;
    let port = server.port;
    let c0 = args.concurrency[0];

    let size = args.sqlite_tenants;
    eprintln!("loadbench: seeding {size} tenants on SQLite through the API");
    let tenants = seed(port, &token, size).await?;
    for &concurrency in &args.concurrency {
        for scenario in reads::scenarios() {
            let stats = suite::read(args, port, &scenario, &tenants, &token, concurrency).await?;
            emit(json!({
                "group": "reads", "db": "sqlite", "scenario": scenario.name, "tenants": size,
                "concurrency": concurrency, "service": figures(&stats),
                "baseline": {"what": "the bar on p99", "p99_ms": READ_P99_BAR_MS},
                "ratio": round2(stats.p99 / READ_P99_BAR_MS),
                "bars": {"p99 < 10 ms": stats.p99 < READ_P99_BAR_MS},
            }));
        }
    }

    let next = Arc::new(AtomicUsize::new(0));
    let mut first_run = None;
    for run in 1..=args.sqlite_runs {
        let tenants_before = size as usize + next.load(Ordering::Relaxed);
        let stats = flows::onboarding(args, port, &token, &next, c0).await?;
        pause().await;
        let first = *first_run.get_or_insert(stats.rate);
        let mut line = json!({
            "group": "writes", "db": "sqlite", "scenario": "POST /tenants (address, tenant, contact)",
            "concurrency": c0, "tenants_before": tenants_before, "service": figures(&stats),
            "baseline": {"what": "the first run's throughput", "rps": first.round()},
            "ratio": round2(stats.rate / first), "bars": {},
        });
        against_first(&mut line, run, &stats, first);
        emit(line);
    }
    let mut first_run = None;
    for run in 1..=args.sqlite_runs {
        let stats = flows::funnel(args, port, &next, c0).await?;
        pause().await;
        let first = *first_run.get_or_insert(stats.rate);
        let mut line = suite::funnel_line("sqlite", c0, &stats);
        against_first(&mut line, run, &stats, first);
        emit(line);
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (rss_after, rss_peak) = memory_kb(server.pid())?;
    emit(suite::resource_line(
        "sqlite",
        Some(start),
        rss_start,
        rss_after,
        rss_peak,
    ));
    let log = server.log.clone();
    server.stop()?;
    let locked = std::fs::read_to_string(&log)?
        .matches("database is locked")
        .count();
    emit(json!({
        "group": "sqlite", "db": "sqlite", "scenario": "\"database is locked\" in the service's log",
        "service": {"count": locked}, "bars": {"never": locked == 0},
    }));
    Ok(())
}

/// Adds to `line` how run number `run` compares with the first run's throughput (`first`
/// requests per second), and whether any request of it failed.
fn against_first(line: &mut Value, run: usize, stats: &PhaseStats, first: f64) {
    let holds = stats.rate / first;
    line["run"] = json!(run);
    line["throughput_of_run_1"] = json!(round2(holds));
    line["bars"]["holds (>= 0.8 of run 1)"] = json!(holds >= HOLDS);
    line["bars"]["no error"] = json!(stats.errors == 0);
}

/// Sends every request of `requests` on `workers` connections; the answers' bodies, in order.
/// Each must answer `expect`.
async fn send_all(
    port: u16,
    requests: Vec<Vec<u8>>,
    expect: u16,
    workers: usize,
) -> anyhow::Result<Vec<Value>> {
    let requests = Arc::new(requests);
    let next = Arc::new(AtomicUsize::new(0));
    let answers = Arc::new(Mutex::new(vec![Value::Null; requests.len()]));
    let mut tasks = Vec::new();
    for _ in 0..workers {
        let (requests, next, answers) = (requests.clone(), next.clone(), answers.clone());
        tasks.push(tokio::spawn(async move {
            let mut client = Client::new(port);
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(request) = requests.get(i) else {
                    return Ok::<_, anyhow::Error>(());
                };
                let (status, body) = client.send(request).await?;
                ensure!(
                    status == expect,
                    "seeding: {status} {}",
                    String::from_utf8_lossy(body)
                );
                let value = serde_json::from_slice(body).unwrap_or(Value::Null);
                answers.lock().await[i] = value;
            }
        }));
    }
    for task in tasks {
        task.await??;
    }
    let answers = answers.lock().await.clone();
    Ok(answers)
}

/// Tenants 0..`size` as the PostgreSQL seeding makes them (key `s<n>`, domain
/// `s<n>.example.com`, status n mod 7, twelve invoices, the last pending), through the API.
async fn seed(port: u16, token: &str, size: u64) -> anyhow::Result<Vec<(u64, Uuid)>> {
    const WORKERS: usize = 8;
    let onboard: Vec<Vec<u8>> = (0..size)
        .map(|n| {
            let domain = format!("s{n}.example.com");
            request(
                "POST",
                "/tenants",
                Some(token),
                &json!({"name": format!("Tenant {:012x}", n.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 16),
                        "key": format!("s{n}"), "domains": [domain],
                        "address": format!("{n} Main Street"), "city": "Springfield",
                        "state": "IL", "zip": "62701", "country": "US",
                        "contact": {"firstName": "Ada", "lastName": "Lovelace",
                                    "email": format!("ada@{domain}"), "isPrimary": true,
                                    "type": "admin"}}),
            )
        })
        .collect();
    let created = send_all(port, onboard, 200, WORKERS).await?;
    let tenants: Vec<(u64, Uuid)> = created
        .iter()
        .zip(0..)
        .map(|(tenant, n)| {
            tenant["id"]
                .as_str()
                .and_then(|id| Uuid::parse_str(id).ok())
                .map(|id| (n, id))
                .context("POST /tenants answered without an id")
        })
        .collect::<anyhow::Result<_>>()?;
    let statuses = tenants
        .iter()
        .map(|(n, id)| {
            request(
                "PATCH",
                &format!("/tenants/{id}"),
                Some(token),
                &json!({"status": n % 7}),
            )
        })
        .collect();
    send_all(port, statuses, 204, WORKERS).await?;
    let invoices = tenants
        .iter()
        .flat_map(|(_, id)| {
            (0..12u32).map(move |k| {
                let month =
                    |m: u32| format!("{}-{:02}-01T00:00:00.000Z", 2025 + m / 12, m % 12 + 1);
                request(
                    "POST",
                    "/invoices",
                    Some(token),
                    &json!({"startDate": month(k), "endDate": month(k + 1), "amount": 49.99,
                            "currencyCode": "USD", "dueDate": month(k + 1),
                            "status": u32::from(k < 11), "tenantId": id.to_string()}),
                )
            })
        })
        .collect();
    send_all(port, invoices, 200, WORKERS).await?;
    Ok(tenants)
}
