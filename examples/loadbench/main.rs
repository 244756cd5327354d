//! The load benchmark (docs/PERFORMANCE.md): every scenario of SPEC §8 against a freshly started
//! release `tms`, one JSON line per scenario with the service's figure, its baseline and their
//! ratio. On PostgreSQL: the reads and `POST /tenants` against the same statements issued by
//! `pgbench -M prepared`, the lead funnel, start-up and memory, the reads again at `--scale`
//! tenants (flat as data grows), the outbox relay under a burst and a billing run over every
//! account, with the API's p99 during them; then the embedded SQLite database.
//!
//! Built only with the `bench` feature, so `cargo test` never compiles it:
//!
//! ```sh
//! cargo build --release --locked --features bench --bin tms --example loadbench && target/release/examples/loadbench
//! ```
//!
//! Everything happens in a fresh schema of the database at `--database-url` (dropped at the end)
//! and in temporary directories, over loopback only. Every loop is bounded in time and in count.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener as StdListener, TcpStream as StdStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use chrono::Utc;
use clap::Parser;
use secrecy::SecretString;
use serde_json::{Value, json};
use sqlx::postgres::PgConnectOptions;
use sqlx::{AssertSqlSafe, ConnectOptions, Connection, Executor};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

mod batch;
mod flows;
mod pgbench;
mod reads;
mod sqlite;
mod suite;

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

/// The groups of scenarios, in the order they run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Group {
    /// The reads at 1,000 tenants against pgbench, at each `--concurrency`.
    Reads,
    /// `POST /tenants` against a pgbench script of its statements.
    Writes,
    /// Sign-up, verification and onboarding of a lead, one after the other.
    Funnel,
    /// Start to first `/ping` and idle RSS before and after the load.
    Resources,
    /// The reads again at `--scale` tenants, against their figures at 1,000.
    Scale,
    /// The outbox relay under a burst of `--burst` events.
    Relay,
    /// A billing run over `--scale` accounts.
    Billing,
    /// The embedded SQLite database: reads, writes and the funnel, three runs each.
    Sqlite,
}

#[derive(Parser)]
#[command(name = "loadbench", about = "tms load benchmark (SPEC §8)")]
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
    /// Concurrent clients of the reads, one phase per value; the other scenarios run at the
    /// first.
    #[arg(long, value_delimiter = ',', default_value = "32,64")]
    concurrency: Vec<usize>,
    /// Measured seconds per phase.
    #[arg(long, default_value_t = 5.0)]
    duration: f64,
    /// Warm-up seconds per phase, not measured.
    #[arg(long, default_value_t = 1.0)]
    warmup: f64,
    /// Tenants (with accounts) of the scale, relay and billing scenarios; 0 leaves them out.
    #[arg(long, default_value_t = 1_000_000)]
    scale: u64,
    /// Events of the relay's burst.
    #[arg(long, default_value_t = 100_000)]
    burst: u64,
    /// `EVENT_SINK` of the service (default: the service's own, a JSON-lines file).
    #[arg(long)]
    event_sink: Option<String>,
    /// Tenants seeded through the API on SQLite (each with twelve invoices) before its reads.
    #[arg(long, default_value_t = 1000)]
    sqlite_tenants: u64,
    /// Consecutive runs of the SQLite writes and funnel.
    #[arg(long, default_value_t = 3)]
    sqlite_runs: usize,
    /// Only these groups (default: all).
    #[arg(long, value_enum, value_delimiter = ',')]
    only: Vec<Group>,
    /// DB_POOL_SIZE of the service.
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
}

impl Args {
    fn runs(&self, group: Group) -> bool {
        self.only.is_empty() || self.only.contains(&group)
    }

    fn warmup(&self) -> Duration {
        Duration::from_secs_f64(self.warmup)
    }

    fn duration(&self) -> Duration {
        Duration::from_secs_f64(self.duration)
    }
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
        (1..=100).contains(&args.pool_size),
        "--pool-size must be within 1..=100"
    );
    ensure!(
        (1..=50).contains(&args.starts),
        "--starts must be within 1..=50"
    );
    ensure!(
        (1..=20).contains(&args.sqlite_runs),
        "--sqlite-runs must be within 1..=20"
    );
    ensure!(
        args.scale == 0 || (reads::SMALL + 1..=10_000_000).contains(&args.scale),
        "--scale must be 0 or within {}..=10000000",
        reads::SMALL + 1
    );
    ensure!(
        (1..=100_000).contains(&args.sqlite_tenants),
        "--sqlite-tenants must be within 1..=100000"
    );
    ensure!(
        (1..=10_000_000).contains(&args.burst),
        "--burst must be within 1..=10000000"
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
    runtime.block_on(run(args, tms))
}

async fn run(args: Args, tms: PathBuf) -> anyhow::Result<()> {
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let data_dir = tempfile::tempdir()?;
    let postgres_groups = [
        Group::Reads,
        Group::Writes,
        Group::Funnel,
        Group::Resources,
        Group::Scale,
        Group::Relay,
        Group::Billing,
    ];
    let mut outcome = Ok(());
    if postgres_groups.iter().any(|g| args.runs(*g)) {
        outcome = on_postgres(&args, &tms, data_dir.path(), cpus).await;
    }
    if outcome.is_ok() && args.runs(Group::Sqlite) {
        let bench = Bench {
            tms: tms.clone(),
            database: None,
            jwt_secret: hex::encode(rand::random::<[u8; 32]>()),
            data_dir: data_dir.path().join("sqlite"),
            pool_size: args.pool_size,
            log_level: args.log_level.clone(),
            otlp_endpoint: args.otlp_endpoint.clone(),
            event_sink: args.event_sink.clone(),
        };
        std::fs::create_dir_all(&bench.data_dir)?;
        outcome = sqlite::run(&args, &bench).await;
    }
    if args.keep_logs {
        let kept = data_dir.keep();
        println!("service logs kept in {}", kept.display());
    }
    outcome
}

/// The PostgreSQL groups, in a schema of their own dropped afterwards whatever happens.
async fn on_postgres(args: &Args, tms: &Path, data_dir: &Path, cpus: usize) -> anyhow::Result<()> {
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
    emit(json!({
        "machine": {"cpus": cpus, "postgresql": server_version, "pool_size": args.pool_size,
                    "log_level": args.log_level.as_deref().unwrap_or("default"),
                    "concurrency": args.concurrency, "duration_s": args.duration,
                    "warmup_s": args.warmup},
    }));
    let bench = Bench {
        tms: tms.to_path_buf(),
        database: Some((args.database_url.clone(), schema.clone())),
        jwt_secret: hex::encode(rand::random::<[u8; 32]>()),
        data_dir: data_dir.join("postgres"),
        pool_size: args.pool_size,
        log_level: args.log_level.clone(),
        otlp_endpoint: args.otlp_endpoint.clone(),
        event_sink: args.event_sink.clone(),
    };
    std::fs::create_dir_all(&bench.data_dir)?;
    let outcome = suite::run(args, &bench, &base).await;
    admin
        .execute(AssertSqlSafe(format!(
            "DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"
        )))
        .await
        .with_context(|| format!("cannot drop schema {schema}"))?;
    admin.close().await?;
    outcome
}

/// Prints one result line.
fn emit(line: Value) {
    println!("{line}");
}

/// A figure with two decimals, as the result lines give it.
fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// A load phase's figures for a result line.
fn figures(stats: &PhaseStats) -> Value {
    json!({"rps": stats.rate.round(), "p50_ms": round2(stats.p50), "p90_ms": round2(stats.p90),
           "p99_ms": round2(stats.p99), "max_ms": round2(stats.max), "requests": stats.requests,
           "errors": stats.errors})
}

/// How to start the service: on PostgreSQL (URL and schema) or on the embedded SQLite database
/// in `data_dir`.
struct Bench {
    tms: PathBuf,
    database: Option<(String, String)>,
    jwt_secret: String,
    data_dir: PathBuf,
    pool_size: u32,
    log_level: Option<String>,
    otlp_endpoint: Option<String>,
    event_sink: Option<String>,
}

impl Bench {
    /// The PostgreSQL schema the service runs in ("" on SQLite).
    fn schema(&self) -> &str {
        self.database
            .as_ref()
            .map_or("", |(_, schema)| schema.as_str())
    }

    fn command(&self, subcommand: &[&str], port: u16, log: &Path) -> anyhow::Result<Command> {
        let log = std::fs::File::create(log)?;
        let mut command = Command::new(&self.tms);
        command
            .args(subcommand)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("DB_POOL_SIZE", self.pool_size.to_string())
            .env("JWT_SECRET", &self.jwt_secret)
            .env("HOST", "127.0.0.1")
            .env("PORT", port.to_string())
            .env("TMS_DATA_DIR", &self.data_dir)
            // The billing run is the benchmark's to start (`tms billing run`).
            .env("BILLING_INTERVAL", "0")
            // The funnel's clients read the verification key from the sign-up's answer instead
            // of a mail, and all come from 127.0.0.1.
            .env("LEAD_KEY_IN_RESPONSE", "true")
            .env("PUBLIC_API_MAX_ATTEMPTS", "1000000")
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone()?))
            .stderr(Stdio::from(log));
        if let Some((url, schema)) = &self.database {
            command.env("DATABASE_URL", url).env("DB_SCHEMA", schema);
        }
        if let Some(level) = &self.log_level {
            command.env("LOG_LEVEL", level);
        }
        if let Some(endpoint) = &self.otlp_endpoint {
            command.env("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint);
        }
        if let Some(sink) = &self.event_sink {
            command.env("EVENT_SINK", sink);
        }
        Ok(command)
    }

    /// Runs `tms <subcommand>` to its end.
    fn run_to_end(&self, subcommand: &[&str], log_name: &str) -> anyhow::Result<()> {
        let log = self.data_dir.join(log_name);
        let status = self.command(subcommand, 0, &log)?.status()?;
        ensure!(
            status.success(),
            "tms {} failed: {}",
            subcommand.join(" "),
            tail(&log).unwrap_or_default()
        );
        Ok(())
    }

    fn migrate(&self) -> anyhow::Result<()> {
        self.run_to_end(&["migrate"], "migrate.log")
    }

    /// Starts `tms serve` and waits for its first successful `/ping`; returns the server and the
    /// time from spawning to that answer.
    fn start(&self, name: &str) -> anyhow::Result<(Server, Duration)> {
        let port = free_port()?;
        let log = self.data_dir.join(format!("{name}.log"));
        let mut command = self.command(&["serve"], port, &log)?;
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

    /// The median time from spawn to first `/ping` over `starts` starts on the existing
    /// database.
    fn start_median(&self, starts: usize) -> anyhow::Result<Duration> {
        let mut took = Vec::with_capacity(starts);
        for i in 0..starts {
            let (server, t) = self.start(&format!("start-{i}"))?;
            took.push(t);
            server.stop()?;
        }
        took.sort();
        Ok(took[took.len() / 2])
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

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn mb(kb: u64) -> f64 {
    kb as f64 / 1024.0
}

async fn pause() {
    tokio::time::sleep(Duration::from_millis(500)).await;
}

/// An HTTP/1.1 request with a JSON body, with `token` as its bearer token when given.
fn request(method: &str, path: &str, token: Option<&str>, body: &Value) -> Vec<u8> {
    let body = body.to_string();
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{auth}Content-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
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

/// One keep-alive HTTP/1.1 connection to the service, opened again after a failure.
struct Client {
    port: u16,
    stream: Option<TcpStream>,
    buf: Vec<u8>,
}

impl Client {
    fn new(port: u16) -> Self {
        Self {
            port,
            stream: None,
            buf: Vec::with_capacity(16 * 1024),
        }
    }

    /// Sends `request` and reads its response within [`REQUEST_TIMEOUT`]: its status and body.
    async fn send(&mut self, request: &[u8]) -> anyhow::Result<(u16, &[u8])> {
        let outcome = tokio::time::timeout(REQUEST_TIMEOUT, async {
            if self.stream.is_none() {
                let s = TcpStream::connect(("127.0.0.1", self.port)).await?;
                s.set_nodelay(true)?;
                self.stream = Some(s);
            }
            match self.stream.as_mut() {
                Some(s) => exchange(s, request, &mut self.buf).await,
                None => bail!("not connected"),
            }
        })
        .await
        .map_err(anyhow::Error::from)
        .and_then(|r| r);
        match outcome {
            Ok((status, body)) => Ok((status, &self.buf[body..])),
            Err(err) => {
                self.stream = None;
                Err(err)
            }
        }
    }
}

/// One client issuing the prepared requests at random; a request counts as successful on 200.
async fn http_client(
    port: u16,
    requests: Arc<Vec<Vec<u8>>>,
    seed: u64,
    window: Window,
) -> ClientStats {
    let mut stats = ClientStats::default();
    let mut rng = Rng(seed);
    let mut client = Client::new(port);
    while Instant::now() < window.end {
        let request = &requests[rng.below(requests.len())];
        let started = Instant::now();
        let ok = matches!(client.send(request).await, Ok((200, _)));
        if !stats.record(&window, started, ok) {
            break;
        }
    }
    stats.finished = Some(Instant::now());
    stats
}

/// Writes one request and reads its whole response (Content-Length framed) into `buf`; returns
/// the status and where the body starts in `buf`.
async fn exchange(
    stream: &mut TcpStream,
    request: &[u8],
    buf: &mut Vec<u8>,
) -> anyhow::Result<(u16, usize)> {
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
    // No body, and no Content-Length to say so.
    if matches!(status, 204 | 304) {
        return Ok((status, header_end));
    }
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
    Ok((status, header_end))
}
