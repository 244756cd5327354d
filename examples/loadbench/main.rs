//! The load benchmark of SPEC §8: start-up time, idle memory, and `GET /tenants/{id}` through the
//! release `tms` binary compared with the same query issued directly through sqlx, on PostgreSQL;
//! with `--sqlite-writes N`, onboarding throughput over N phases on one growing SQLite database;
//! with `--scale N`, the common reads at 1,000 and at N tenants (`scale.rs`).
//!
//! Built only with the `bench` feature, so `cargo test` never compiles it:
//!
//! ```sh
//! cargo build --release --locked --features bench --bin tms --example loadbench && target/release/examples/loadbench
//! ```
//!
//! Everything happens in a fresh schema of the database at `--database-url` (dropped at the end)
//! and over loopback only. Every loop is bounded in time and in count.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener as StdListener, TcpStream as StdStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use chrono::{DateTime, Utc};
use clap::Parser;
use secrecy::SecretString;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{AssertSqlSafe, ConnectOptions, Connection, Executor};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use uuid::Uuid;

mod scale;

/// The direct query: every tenant column, live rows only.
const DIRECT_SQL: &str = "SELECT deleted, deleted_on, deleted_by, created_on, modified_on, \
     created_by, modified_by, id, name, status, key, spoc_user_id, domains, lead_id, address_id \
     FROM tenants WHERE id = $1 AND NOT deleted";
/// Latency samples kept per phase (over all clients); a phase ends early when they are used up.
const MAX_SAMPLES: usize = 8_000_000;
/// Per-request timeout; a request over it counts as an error.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Errors tolerated per client before its phase is abandoned.
const MAX_ERRORS_PER_CLIENT: u64 = 100;
/// How long a started server may take to answer `/ping`.
const START_TIMEOUT: Duration = Duration::from_secs(15);
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(15);
const JWT_ISSUER: &str = "tms";

#[derive(Parser)]
#[command(
    name = "loadbench",
    about = "tms load benchmark against PostgreSQL (SPEC §8)"
)]
pub struct Args {
    /// PostgreSQL to run against; a fresh schema is created there and dropped at the end.
    #[arg(
        long,
        env = "LOADBENCH_DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/test"
    )]
    database_url: String,
    /// The service binary (default: target/release/tms of this package).
    #[arg(long)]
    tms: Option<PathBuf>,
    /// Concurrent clients, one phase per value.
    #[arg(long, value_delimiter = ',', default_value = "16,64")]
    concurrency: Vec<usize>,
    /// Measured seconds per phase.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Warm-up seconds per phase, not measured.
    #[arg(long, default_value_t = 2.0)]
    warmup: f64,
    /// Tenants seeded through the API and read at random.
    #[arg(long, default_value_t = 1000)]
    tenants: usize,
    /// DB_POOL_SIZE of the service, and the size of the direct pool.
    #[arg(long, default_value_t = 10)]
    pool_size: u32,
    /// Start-up measurements (the median is reported).
    #[arg(long, default_value_t = 5)]
    starts: usize,
    /// LOG_LEVEL of the service (default: the service's own default).
    #[arg(long)]
    log_level: Option<String>,
    /// Export the service's traces to this OTLP/HTTP collector (`OTEL_EXPORTER_OTLP_ENDPOINT`):
    /// the cost of tracing on.
    #[arg(long)]
    otlp_endpoint: Option<String>,
    /// Keep the service's logs (their directory is printed) instead of deleting them.
    #[arg(long)]
    keep_logs: bool,
    /// Instead of the PostgreSQL benchmark: this many consecutive phases of `POST /tenants`
    /// (onboarding) on the embedded SQLite database, at the first `--concurrency`, each
    /// `--duration` long, on one growing database — does writing slow down as tables grow?
    #[arg(long, default_value_t = 0)]
    sqlite_writes: usize,
    /// Instead of the benchmark above: the common reads (by id, key and domain, status and name
    /// pages, counts, contacts with their tenant, a tenant's invoices) at the first
    /// `--concurrency` with 1,000 tenants and then with this many, seeded straight into the
    /// database with their addresses, contacts and twelve invoices each.
    #[arg(long, default_value_t = 0)]
    scale: u64,
}

fn main() -> anyhow::Result<()> {
    run_with(Args::parse())
}

/// The benchmark `args` describe (also what `tests/loadbench_smoke.rs` runs, for a few seconds).
pub fn run_with(args: Args) -> anyhow::Result<()> {
    ensure!(
        (0.1..=600.0).contains(&args.duration),
        "--duration must be within 0.1..=600 seconds"
    );
    ensure!(
        (0.0..=60.0).contains(&args.warmup),
        "--warmup must be within 0..=60 seconds"
    );
    ensure!(
        (1..=100_000).contains(&args.tenants),
        "--tenants must be within 1..=100000"
    );
    ensure!(
        (1..=100).contains(&args.pool_size),
        "--pool-size must be within 1..=100"
    );
    ensure!(
        (1..=50).contains(&args.starts),
        "--starts must be within 1..=50"
    );
    ensure!(
        !args.concurrency.is_empty() && args.concurrency.iter().all(|c| (1..=1024).contains(c)),
        "--concurrency values must be within 1..=1024"
    );
    let tms = args
        .tms
        .clone()
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target/release/tms"));
    ensure!(
        tms.is_file(),
        "{} not found: build it first (cargo build --release --features bench --bin tms)",
        tms.display()
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    if args.sqlite_writes > 0 {
        ensure!(
            args.sqlite_writes <= 20,
            "--sqlite-writes must be within 1..=20"
        );
        return runtime.block_on(sqlite_writes(args, tms));
    }
    runtime.block_on(run(args, tms))
}

/// The SQLite write benchmark: `--sqlite-writes` phases of onboarding on one database.
async fn sqlite_writes(args: Args, tms: PathBuf) -> anyhow::Result<()> {
    let data_dir = tempfile::tempdir()?;
    let jwt_secret = hex::encode(rand::random::<[u8; 32]>());
    let port = free_port()?;
    let log = data_dir.path().join("serve.log");
    let log_file = std::fs::File::create(&log)?;
    let mut command = Command::new(&tms);
    command
        .arg("serve")
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("JWT_SECRET", &jwt_secret)
        .env("HOST", "127.0.0.1")
        .env("PORT", port.to_string())
        .env("TMS_DATA_DIR", data_dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::from(log_file.try_clone()?))
        .stderr(Stdio::from(log_file));
    if let Some(level) = &args.log_level {
        command.env("LOG_LEVEL", level);
    }
    if let Some(endpoint) = &args.otlp_endpoint {
        command.env("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint);
    }
    let started = Instant::now();
    let server = Server {
        child: Some(command.spawn()?),
        port,
        log,
    };
    while !ping(port) {
        ensure!(
            started.elapsed() < START_TIMEOUT,
            "tms did not answer /ping: {}",
            tail(&server.log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let token = admin_token(&jwt_secret)?;
    let concurrency = args.concurrency[0];
    let warmup = Duration::from_secs_f64(args.warmup);
    let duration = Duration::from_secs_f64(args.duration);
    let next = Arc::new(AtomicUsize::new(0));
    println!(
        "POST /tenants (onboarding: tenant, contact, address) on SQLite, {concurrency} keep-alive \
         clients, {:.0} s measured after {:.0} s warm-up per run, one growing database",
        args.duration, args.warmup
    );
    println!(
        "{:>4} {:>9} {:>9} {:>8} {:>7} {:>7} {:>7} {:>7}",
        "run", "tenants", "requests", "req/s", "p50 ms", "p99 ms", "max ms", "errors"
    );
    for run in 1..=args.sqlite_writes {
        let stats = load(concurrency, warmup, duration, |seed, window| {
            onboarding_client(port, token.clone(), Arc::clone(&next), seed, window)
        })
        .await?;
        println!(
            "{run:>4} {:>9} {:>9} {:>8.0} {:>7.2} {:>7.2} {:>7.2} {:>7}",
            next.load(Ordering::Relaxed),
            stats.requests,
            stats.rate,
            stats.p50,
            stats.p99,
            stats.max,
            stats.errors
        );
    }
    server.stop()?;
    Ok(())
}

/// One keep-alive HTTP/1.1 connection onboarding new tenants back to back (numbered from
/// `next`, shared by all clients); a request counts as successful on 200.
async fn onboarding_client(
    port: u16,
    token: String,
    next: Arc<AtomicUsize>,
    seed: u64,
    window: Window,
) -> ClientStats {
    let _ = seed; // every request is new: nothing to pick at random
    let mut stats = ClientStats::default();
    let mut buf = Vec::with_capacity(16 * 1024);
    let mut stream: Option<TcpStream> = None;
    while Instant::now() < window.end {
        let n = next.fetch_add(1, Ordering::Relaxed);
        let domain = format!("w{n}.example.com");
        let body = serde_json::json!({
            "name": format!("Write tenant {n}"),
            "key": format!("w{n}"),
            "domains": [domain],
            "country": "US",
            "city": "Springfield",
            "contact": {"firstName": "Load", "lastName": "Bench",
                        "email": format!("admin@{domain}"), "isPrimary": true},
        })
        .to_string();
        let request = format!(
            "POST /tenants HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        let started = Instant::now();
        let outcome = tokio::time::timeout(REQUEST_TIMEOUT, async {
            if stream.is_none() {
                let s = TcpStream::connect(("127.0.0.1", port)).await?;
                s.set_nodelay(true)?;
                stream = Some(s);
            }
            let s = stream.as_mut().expect("connected above");
            exchange(s, request.as_bytes(), &mut buf).await
        })
        .await;
        let ok = matches!(outcome, Ok(Ok(200)));
        if !matches!(outcome, Ok(Ok(_))) {
            stream = None;
        }
        if !stats.record(&window, started, ok) {
            break;
        }
    }
    stats.finished = Some(Instant::now());
    stats
}

async fn run(args: Args, tms: PathBuf) -> anyhow::Result<()> {
    let schema = format!(
        "loadbench_{}_{}_{:08x}",
        std::process::id(),
        Utc::now().timestamp(),
        rand::random::<u32>()
    );
    let base = PgConnectOptions::from_str(&args.database_url)
        .context("--database-url is not a PostgreSQL URL")?;
    ensure!(
        matches!(base.get_host(), "127.0.0.1" | "localhost" | "::1")
            || base.get_host().starts_with('/'),
        "the benchmark runs against a local PostgreSQL only (got host {})",
        base.get_host()
    );
    let mut admin = base
        .connect()
        .await
        .context("cannot connect to PostgreSQL")?;
    let server_version: String = sqlx::query_scalar("SHOW server_version")
        .fetch_one(&mut admin)
        .await?;
    let data_dir = tempfile::tempdir()?;
    let bench = Bench {
        tms,
        database_url: args.database_url.clone(),
        schema: schema.clone(),
        jwt_secret: hex::encode(rand::random::<[u8; 32]>()),
        data_dir: data_dir.path().to_path_buf(),
        pool_size: args.pool_size,
        log_level: args.log_level.clone(),
        otlp_endpoint: args.otlp_endpoint.clone(),
    };
    let outcome = if args.scale > 0 {
        scale::run(&args, &bench, &base).await
    } else {
        measure(&args, &bench, &base, &server_version).await
    };
    admin
        .execute(AssertSqlSafe(format!(
            "DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"
        )))
        .await
        .with_context(|| format!("cannot drop schema {schema}"))?;
    admin.close().await?;
    if args.keep_logs {
        let kept = data_dir.keep();
        println!("service logs kept in {}", kept.display());
    }
    outcome
}

/// How to start the service.
struct Bench {
    tms: PathBuf,
    database_url: String,
    schema: String,
    jwt_secret: String,
    data_dir: PathBuf,
    pool_size: u32,
    log_level: Option<String>,
    otlp_endpoint: Option<String>,
}

impl Bench {
    fn command(&self, subcommand: &str, port: u16, log: &Path) -> anyhow::Result<Command> {
        let log = std::fs::File::create(log)?;
        let mut command = Command::new(&self.tms);
        command
            .arg(subcommand)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("DATABASE_URL", &self.database_url)
            .env("DB_SCHEMA", &self.schema)
            .env("DB_POOL_SIZE", self.pool_size.to_string())
            .env("JWT_SECRET", &self.jwt_secret)
            .env("HOST", "127.0.0.1")
            .env("PORT", port.to_string())
            .env("TMS_DATA_DIR", &self.data_dir)
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone()?))
            .stderr(Stdio::from(log));
        if let Some(level) = &self.log_level {
            command.env("LOG_LEVEL", level);
        }
        if let Some(endpoint) = &self.otlp_endpoint {
            command.env("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint);
        }
        Ok(command)
    }

    fn migrate(&self) -> anyhow::Result<()> {
        let log = self.data_dir.join("migrate.log");
        let status = self.command("migrate", 0, &log)?.status()?;
        ensure!(
            status.success(),
            "tms migrate failed: {}",
            tail(&log).unwrap_or_default()
        );
        Ok(())
    }

    /// Starts `tms serve` and waits for its first successful `/ping`; returns the server and the
    /// time from spawning to that answer.
    fn start(&self, name: &str) -> anyhow::Result<(Server, Duration)> {
        let port = free_port()?;
        let log = self.data_dir.join(format!("{name}.log"));
        let mut command = self.command("serve", port, &log)?;
        let started = Instant::now();
        let child = command
            .spawn()
            .with_context(|| format!("cannot start {}", self.tms.display()))?;
        let mut server = Server {
            child: Some(child),
            port,
            log,
        };
        loop {
            if ping(port) {
                return Ok((server, started.elapsed()));
            }
            if let Some(status) = server.child_mut().try_wait()? {
                bail!(
                    "tms exited with {status} before answering /ping: {}",
                    tail(&server.log).unwrap_or_default()
                );
            }
            if started.elapsed() > START_TIMEOUT {
                bail!("tms did not answer /ping within {START_TIMEOUT:?}");
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

/// A running service; killed when dropped without `stop`.
struct Server {
    child: Option<Child>,
    port: u16,
    log: PathBuf,
}

impl Server {
    fn child_mut(&mut self) -> &mut Child {
        self.child.as_mut().expect("a running server has a child")
    }

    fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// SIGTERM, then waits for the graceful shutdown (killed by `Drop` after
    /// `SHUTDOWN_TIMEOUT`).
    fn stop(mut self) -> anyhow::Result<()> {
        let _ = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status();
        let deadline = Instant::now() + SHUTDOWN_TIMEOUT;
        while Instant::now() < deadline {
            if self.child_mut().try_wait()?.is_some() {
                self.child = None;
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        bail!("tms did not stop within {SHUTDOWN_TIMEOUT:?} of SIGTERM")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn free_port() -> anyhow::Result<u16> {
    Ok(StdListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// One `GET /ping` on a fresh connection; true on a 200.
fn ping(port: u16) -> bool {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let Ok(mut stream) = StdStream::connect_timeout(&addr, Duration::from_millis(200)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let _ = stream.set_write_timeout(Some(Duration::from_secs(2)));
    if stream
        .write_all(b"GET /ping HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).is_ok() && head.starts_with(b"HTTP/1.1 200")
}

fn tail(path: &Path) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(path)?;
    let lines: Vec<&str> = text.lines().collect();
    Ok(lines[lines.len().saturating_sub(10)..].join("\n"))
}

/// VmRSS and VmHWM (peak) of a process, in kB.
fn memory_kb(pid: u32) -> anyhow::Result<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let field = |name: &str| -> anyhow::Result<u64> {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
            .with_context(|| format!("no {name} in /proc/{pid}/status"))
    };
    Ok((field("VmRSS:")?, field("VmHWM:")?))
}

async fn measure(
    args: &Args,
    bench: &Bench,
    base: &PgConnectOptions,
    server_version: &str,
) -> anyhow::Result<()> {
    eprintln!("loadbench: schema {}, migrating", bench.schema);
    bench.migrate()?;

    let mut starts = Vec::with_capacity(args.starts);
    for i in 0..args.starts {
        let (server, took) = bench.start(&format!("start-{i}"))?;
        starts.push(took);
        server.stop()?;
    }
    starts.sort();
    let start_median = starts[starts.len() / 2];

    let (server, _) = bench.start("serve")?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (rss_start, _) = memory_kb(server.pid())?;

    let token = admin_token(&bench.jwt_secret)?;
    eprintln!(
        "loadbench: tms pid {} on port {}, seeding {} tenants",
        server.pid(),
        server.port,
        args.tenants
    );
    let ids = seed(server.port, &token, args.tenants).await?;
    let requests: Arc<Vec<Vec<u8>>> = Arc::new(
        ids.iter()
            .map(|id| {
                format!(
                    "GET /tenants/{id} HTTP/1.1\r\nHost: 127.0.0.1\r\n\
                     Authorization: Bearer {token}\r\n\r\n"
                )
                .into_bytes()
            })
            .collect(),
    );
    let ids = Arc::new(ids);
    let direct_pool = PgPoolOptions::new()
        .max_connections(args.pool_size)
        .acquire_timeout(Duration::from_secs(10))
        .connect_with(
            base.clone()
                .options([("search_path", bench.schema.as_str())]),
        )
        .await?;

    let warmup = Duration::from_secs_f64(args.warmup);
    let duration = Duration::from_secs_f64(args.duration);
    let mut rows = Vec::new();
    for &concurrency in &args.concurrency {
        eprintln!("loadbench: http (tms) at concurrency {concurrency}");
        let http = load(concurrency, warmup, duration, |seed, window| {
            http_client(server.port, Arc::clone(&requests), seed, window)
        })
        .await?;
        pause().await;
        eprintln!("loadbench: direct sqlx at concurrency {concurrency}");
        let direct = load(concurrency, warmup, duration, |seed, window| {
            direct_client(direct_pool.clone(), Arc::clone(&ids), seed, window)
        })
        .await?;
        pause().await;
        rows.push((concurrency, http, direct));
    }
    direct_pool.close().await;

    tokio::time::sleep(Duration::from_secs(2)).await;
    let (rss_after, rss_peak) = memory_kb(server.pid())?;
    server.stop()?;

    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!(
        "tms load benchmark: PostgreSQL {server_version}, {cpus} CPUs, DB_POOL_SIZE {}, {} tenants, \
         LOG_LEVEL {}",
        args.pool_size,
        args.tenants,
        args.log_level.as_deref().unwrap_or("default")
    );
    println!(
        "start to first /ping (existing schema, {} runs): median {:.1} ms (min {:.1}, max {:.1})",
        starts.len(),
        ms(start_median),
        ms(starts[0]),
        ms(starts[starts.len() - 1])
    );
    println!(
        "RSS: {:.1} MB idle after start, {:.1} MB idle after load, {:.1} MB peak",
        mb(rss_start),
        mb(rss_after),
        mb(rss_peak)
    );
    println!();
    println!(
        "GET /tenants/{{id}}: {:.0} s measured after {:.0} s warm-up, keep-alive clients on loopback",
        args.duration, args.warmup
    );
    println!(
        "{:<12} {:>5} {:>9} {:>9} {:>7} {:>7} {:>7} {:>7} {:>6}",
        "target", "conc", "requests", "req/s", "p50 ms", "p90 ms", "p99 ms", "max ms", "errors"
    );
    for (concurrency, http, direct) in &rows {
        for (name, stats) in [("http (tms)", http), ("direct sqlx", direct)] {
            println!(
                "{:<12} {:>5} {:>9} {:>9.0} {:>7.2} {:>7.2} {:>7.2} {:>7.2} {:>6}",
                name,
                concurrency,
                stats.requests,
                stats.rate,
                stats.p50,
                stats.p90,
                stats.p99,
                stats.max,
                stats.errors
            );
        }
    }
    println!();
    println!("SPEC §8 bars:");
    for (concurrency, http, direct) in &rows {
        let ratio = http.rate / direct.rate;
        println!(
            "  throughput http/direct at {concurrency:>3}: {ratio:.2} (bar >= 0.70) {}",
            verdict(ratio >= 0.70)
        );
    }
    for (concurrency, http, _) in &rows {
        println!(
            "  read p99 at {concurrency:>3}: {:.2} ms (bar < 10 ms) {}",
            http.p99,
            verdict(http.p99 < 10.0)
        );
    }
    println!(
        "  idle RSS: {:.1} / {:.1} MB (bar < 20 MB) {}",
        mb(rss_start),
        mb(rss_after),
        verdict(mb(rss_start.max(rss_after)) < 20.0)
    );
    println!(
        "  start to first /ping: {:.1} ms (bar < 100 ms) {}",
        ms(start_median),
        verdict(ms(start_median) < 100.0)
    );
    Ok(())
}

fn verdict(met: bool) -> &'static str {
    if met { "met" } else { "MISSED" }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn mb(kb: u64) -> f64 {
    kb as f64 / 1024.0
}

async fn pause() {
    tokio::time::sleep(Duration::from_millis(500)).await;
}

/// An admin token for the benchmark, minted with the service's own code.
fn admin_token(secret: &str) -> anyhow::Result<String> {
    let keys = tms::auth::JwtKeys::new(&SecretString::from(secret.to_string()), JWT_ISSUER);
    keys.mint(
        "00000000-0000-0000-0000-000000000001",
        tms::auth::ALL_PERMISSIONS
            .iter()
            .map(|p| p.to_string())
            .collect(),
        3600,
    )
}

/// Onboards `count` tenants (each with its primary contact) through `POST /tenants`.
async fn seed(port: u16, token: &str, count: usize) -> anyhow::Result<Vec<Uuid>> {
    const WORKERS: usize = 8;
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .no_proxy()
        .build()?;
    let next = Arc::new(AtomicUsize::new(0));
    let mut workers = Vec::with_capacity(WORKERS);
    for _ in 0..WORKERS {
        let client = client.clone();
        let next = Arc::clone(&next);
        let url = format!("http://127.0.0.1:{port}/tenants");
        let auth = format!("Bearer {token}");
        workers.push(tokio::spawn(async move {
            let mut ids = Vec::new();
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= count {
                    return Ok::<_, anyhow::Error>(ids);
                }
                let domain = format!("b{n}.example.com");
                let body = serde_json::json!({
                    "name": format!("Bench tenant {n}"),
                    "key": format!("b{n}"),
                    "domains": [domain],
                    "country": "US",
                    "city": "Springfield",
                    "contact": {
                        "firstName": "Load",
                        "lastName": "Bench",
                        "email": format!("admin@{domain}"),
                        "isPrimary": true,
                    },
                });
                let response = client
                    .post(&url)
                    .header("authorization", &auth)
                    .json(&body)
                    .send()
                    .await?;
                let status = response.status();
                let text = response.text().await?;
                ensure!(status.is_success(), "POST /tenants: {status} {text}");
                let created: serde_json::Value = serde_json::from_str(&text)?;
                let id = created["id"]
                    .as_str()
                    .and_then(|s| Uuid::parse_str(s).ok())
                    .context("POST /tenants answered without an id")?;
                ids.push(id);
            }
        }));
    }
    let mut ids = Vec::with_capacity(count);
    for worker in workers {
        ids.extend(worker.await??);
    }
    ensure!(
        ids.len() == count,
        "seeded {} of {count} tenants",
        ids.len()
    );
    Ok(ids)
}

/// The measurement window of one phase.
#[derive(Clone, Copy)]
struct Window {
    /// Requests started before this are warm-up and not recorded.
    measure_from: Instant,
    /// No request starts after this.
    end: Instant,
    /// Samples one client may record before it stops.
    max_samples: usize,
}

/// What one client saw.
#[derive(Default)]
struct ClientStats {
    /// Latencies in microseconds of the successful requests started in the window.
    latencies_us: Vec<u32>,
    /// Failed requests (transport errors, timeouts, wrong status, missing row).
    errors: u64,
    /// When this client finished its last request.
    finished: Option<Instant>,
}

impl ClientStats {
    /// Records the outcome of a request started at `started`; false when the client must stop.
    fn record(&mut self, window: &Window, started: Instant, ok: bool) -> bool {
        if ok {
            if started >= window.measure_from {
                let us = started.elapsed().as_micros();
                self.latencies_us
                    .push(u32::try_from(us).unwrap_or(u32::MAX));
            }
        } else {
            self.errors += 1;
        }
        self.errors <= MAX_ERRORS_PER_CLIENT && self.latencies_us.len() < window.max_samples
    }
}

/// The statistics of one phase.
struct PhaseStats {
    requests: usize,
    rate: f64,
    p50: f64,
    p90: f64,
    p99: f64,
    max: f64,
    errors: u64,
}

/// Runs `concurrency` clients for the warm-up and then the measured duration.
async fn load<F, Fut>(
    concurrency: usize,
    warmup: Duration,
    duration: Duration,
    client: F,
) -> anyhow::Result<PhaseStats>
where
    F: Fn(u64, Window) -> Fut,
    Fut: Future<Output = ClientStats> + Send + 'static,
{
    let begin = Instant::now();
    let window = Window {
        measure_from: begin + warmup,
        end: begin + warmup + duration,
        max_samples: MAX_SAMPLES / concurrency,
    };
    let tasks: Vec<_> = (0..concurrency)
        .map(|i| tokio::spawn(client(0x9E37_79B9_7F4A_7C15 ^ (i as u64 + 1), window)))
        .collect();
    let mut latencies = Vec::new();
    let mut errors = 0;
    let mut finished = window.measure_from;
    for task in tasks {
        let stats = task.await?;
        latencies.extend(stats.latencies_us);
        errors += stats.errors;
        finished = finished.max(stats.finished.unwrap_or(finished));
    }
    ensure!(
        !latencies.is_empty(),
        "no successful request at concurrency {concurrency} ({errors} errors)"
    );
    latencies.sort_unstable();
    let quantile = |q: f64| {
        let rank = ((q * latencies.len() as f64).ceil() as usize).clamp(1, latencies.len());
        f64::from(latencies[rank - 1]) / 1000.0
    };
    let measured = finished.duration_since(window.measure_from).as_secs_f64();
    Ok(PhaseStats {
        requests: latencies.len(),
        rate: latencies.len() as f64 / measured.max(1e-9),
        p50: quantile(0.50),
        p90: quantile(0.90),
        p99: quantile(0.99),
        max: f64::from(latencies[latencies.len() - 1]) / 1000.0,
        errors,
    })
}

/// xorshift64*: cheap per-client randomness for picking ids.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % n as u64) as usize
    }
}

/// One keep-alive HTTP/1.1 connection issuing the prepared requests at random.
async fn http_client(
    port: u16,
    requests: Arc<Vec<Vec<u8>>>,
    seed: u64,
    window: Window,
) -> ClientStats {
    let mut stats = ClientStats::default();
    let mut rng = Rng(seed);
    let mut buf = Vec::with_capacity(16 * 1024);
    let mut stream: Option<TcpStream> = None;
    while Instant::now() < window.end {
        let request = &requests[rng.below(requests.len())];
        let started = Instant::now();
        let outcome = tokio::time::timeout(REQUEST_TIMEOUT, async {
            if stream.is_none() {
                let s = TcpStream::connect(("127.0.0.1", port)).await?;
                s.set_nodelay(true)?;
                stream = Some(s);
            }
            let s = stream.as_mut().expect("connected above");
            exchange(s, request, &mut buf).await
        })
        .await;
        let ok = matches!(outcome, Ok(Ok(200)));
        if !matches!(outcome, Ok(Ok(_))) {
            stream = None;
        }
        if !stats.record(&window, started, ok) {
            break;
        }
    }
    stats.finished = Some(Instant::now());
    stats
}

/// Writes one request and reads its whole response (Content-Length framed); returns the status.
async fn exchange(
    stream: &mut TcpStream,
    request: &[u8],
    buf: &mut Vec<u8>,
) -> anyhow::Result<u16> {
    stream.write_all(request).await?;
    buf.clear();
    let header_end = loop {
        if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        ensure!(buf.len() < 64 * 1024, "response head too long");
        if stream.read_buf(buf).await? == 0 {
            bail!("connection closed");
        }
    };
    let head = std::str::from_utf8(&buf[..header_end])?;
    let status: u16 = head
        .get(9..12)
        .and_then(|s| s.parse().ok())
        .context("bad status line")?;
    let length: usize = head
        .lines()
        .find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse().ok())?
        })
        .context("response without Content-Length")?;
    let total = header_end + length;
    ensure!(total <= 16 * 1024 * 1024, "response too long");
    while buf.len() < total {
        if stream.read_buf(buf).await? == 0 {
            bail!("connection closed");
        }
    }
    Ok(status)
}

/// A tenant row as a Rust client would read it.
#[derive(sqlx::FromRow)]
#[allow(dead_code)]
struct TenantRow {
    deleted: bool,
    deleted_on: Option<DateTime<Utc>>,
    deleted_by: Option<String>,
    created_on: DateTime<Utc>,
    modified_on: DateTime<Utc>,
    created_by: Option<String>,
    modified_by: Option<String>,
    id: Uuid,
    name: String,
    status: i16,
    key: String,
    spoc_user_id: Option<String>,
    domains: Vec<String>,
    lead_id: Option<Uuid>,
    address_id: Option<Uuid>,
}

/// One client issuing the same read directly on the pool.
async fn direct_client(
    pool: PgPool,
    ids: Arc<Vec<Uuid>>,
    seed: u64,
    window: Window,
) -> ClientStats {
    let mut stats = ClientStats::default();
    let mut rng = Rng(seed);
    while Instant::now() < window.end {
        let id = ids[rng.below(ids.len())];
        let started = Instant::now();
        let outcome = tokio::time::timeout(
            REQUEST_TIMEOUT,
            sqlx::query_as::<_, TenantRow>(DIRECT_SQL)
                .bind(id)
                .fetch_optional(&pool),
        )
        .await;
        let ok = matches!(&outcome, Ok(Ok(Some(row))) if row.id == id);
        std::hint::black_box(&outcome);
        if !stats.record(&window, started, ok) {
            break;
        }
    }
    stats.finished = Some(Instant::now());
    stats
}
