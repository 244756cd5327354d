//! tms: the tenant management service. `App::build` opens the database, applies migrations,
//! binds the listener and assembles the router; `run_until_stopped` serves until a shutdown signal.
#![forbid(unsafe_code)]

pub mod audit;
pub mod auth;
pub mod client_ip;
pub mod clock;
pub mod config;
pub mod domain;
pub mod events;
pub mod files;
pub mod http;
pub mod idp;
pub mod kv;
pub mod mail;
pub mod metrics;
pub mod model;
pub mod pdf;
pub mod store;
pub mod telemetry;

use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use secrecy::{ExposeSecret, SecretString};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::auth::JwtKeys;
use crate::clock::Clock;
use crate::config::{Config, Environment};
use crate::domain::Services;
use crate::kv::Kv;
use crate::mail::Mailer;
use crate::store::Db;

/// A built application: migrated database, bound listener, assembled router.
pub struct App {
    listener: TcpListener,
    router: axum::Router,
    state: Services,
    /// Where lifecycle events go (`EVENT_SINK`).
    sink: events::sinks::Sink,
    /// No `JWT_SECRET` was configured: the development secret of the data directory is in force.
    dev_secret: bool,
    /// `METRICS_ADDR`: the listener serving `GET /metrics` alone.
    metrics_listener: Option<TcpListener>,
}

impl App {
    /// Binds `HOST:PORT` (port 0 picks a free port, as tests do), resolves the JWT secret,
    /// opens and migrates the database, connects the key store and loads the identity
    /// provider's keys (when `JWT_JWKS_URL` is set; it starts without them if they cannot be
    /// had), on the system clock. The listener comes first: a bad address fails before
    /// anything is migrated.
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        Self::build_with_clock(config, Clock::system()).await
    }

    /// [`App::build`] with the clock every time-dependent part reads.
    pub async fn build_with_clock(config: Config, clock: Clock) -> anyhow::Result<Self> {
        let addr = format!("{}:{}", config.host, config.port);
        let listener = TcpListener::bind(&addr)
            .await
            .with_context(|| format!("cannot listen on {addr} (HOST, PORT)"))?;
        let metrics_listener = match config.metrics_addr {
            Some(addr) => Some(
                TcpListener::bind(addr)
                    .await
                    .with_context(|| format!("cannot listen on {addr} (METRICS_ADDR)"))?,
            ),
            None => None,
        };
        files::secure_data(&config);
        let (state, dev_secret) = connect_services(config, clock).await?;
        if let Some(jwks) = state.jwt.jwks() {
            jwks.load().await;
        }
        let router = http::router(state.clone());
        let sink = events::sinks::Sink::from_config(
            &state.config,
            &self_url(listener.local_addr()?),
            state.clock.clone(),
        )?;
        Ok(Self {
            listener,
            router,
            state,
            sink,
            dev_secret,
            metrics_listener,
        })
    }

    pub fn port(&self) -> u16 {
        self.local_addr().port()
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    /// Where `GET /metrics` is served alone (`METRICS_ADDR`), if it is.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_listener
            .as_ref()
            .and_then(|l| l.local_addr().ok())
    }

    pub fn state(&self) -> &Services {
        &self.state
    }

    /// What `tms serve` prints on the terminal when it starts in development (`None` in test
    /// and prod): the URL, the API explorer, where mail and events go, and — when the generated
    /// development secret is in force and `terminal` says the message goes to a terminal — a
    /// ready admin token valid 24 h. The token is never logged: logs are collected and shipped,
    /// a developer's terminal is not.
    pub fn start_up_message(&self, terminal: bool) -> anyhow::Result<Option<String>> {
        if self.state.config.env != Environment::Dev {
            return Ok(None);
        }
        let url = browser_url(self.local_addr());
        let token = if !self.dev_secret {
            "mint one with `tms token --permissions all` (signed with JWT_SECRET)".to_string()
        } else if !terminal {
            "not printed (the output is not a terminal); mint one with \
             `tms token --permissions all`"
                .to_string()
        } else {
            let token = self.state.jwt.mint(
                &self.state.config.system_user_id,
                auth::ALL_PERMISSIONS
                    .iter()
                    .map(|p| p.to_string())
                    .collect(),
                24 * 3600,
            )?;
            format!("(all permissions, valid 24 h; `tms token` mints another)\n    {token}")
        };
        Ok(Some(format!(
            "\ntms is running (development) on {url}\n  \
             API explorer: {url}/explorer\n  \
             data:         {data} ({database})\n  \
             mail:         {mail}\n  \
             events:       {events}\n  \
             admin token:  {token}\n",
            data = self.state.config.data_dir.display(),
            database = self.state.db.backend_name(),
            mail = self.state.mailer.describe_transport(),
            events = self.sink.describe(),
        )))
    }

    /// Serves, with the background workers (relays, deadline sweeper, billing, outbox pruner,
    /// expired-key, idempotency-key and audit-trail janitors), until `shutdown` completes; lets in-flight
    /// requests finish (within `SHUTDOWN_TIMEOUT`), stops the workers, then closes the pool.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        tracing::info!(
            address = %self.local_addr(),
            database = self.state.db.backend_name(),
            keys = self.state.kv.backend_name(),
            mail = %self.state.mailer.describe_transport(),
            events = %self.sink.describe(),
            "tms is listening"
        );
        let workers = CancellationToken::new();
        let handles = [
            events::spawn_relay(
                self.state.db.clone(),
                mail::TOPIC,
                metrics::Counted {
                    topic: mail::TOPIC,
                    handler: self.state.mailer.clone(),
                    metrics: self.state.metrics.clone(),
                },
                workers.clone(),
            ),
            self.state
                .kv
                .spawn_janitor(Duration::from_secs(60), workers.clone()),
            events::spawn_relay(
                self.state.db.clone(),
                domain::events::TOPIC,
                metrics::Counted {
                    topic: domain::events::TOPIC,
                    handler: self.sink.clone(),
                    metrics: self.state.metrics.clone(),
                },
                workers.clone(),
            ),
            spawn_deadline_sweeper(self.state.clone(), workers.clone()),
            spawn_metrics_listener(self.metrics_listener, self.state.clone(), workers.clone()),
            spawn_billing(self.state.clone(), workers.clone()),
            events::spawn_pruner(self.state.db.clone(), workers.clone()),
            spawn_idempotency_janitor(self.state.clone(), workers.clone()),
            spawn_audit_janitor(self.state.clone(), workers.clone()),
        ];
        let limits = http::server::Limits {
            header_timeout: self.state.config.http_header_timeout,
            idle_timeout: self.state.config.http_idle_timeout,
            write_timeout: self.state.config.http_write_timeout,
            shutdown_timeout: self.state.config.shutdown_timeout,
        };
        // The whole shutdown — requests in flight, then the workers' current steps — fits in
        // SHUTDOWN_TIMEOUT from the signal, so an orchestrator's grace period is respected.
        let signalled = Arc::new(std::sync::OnceLock::new());
        let mark = Arc::clone(&signalled);
        let shutdown = async move {
            shutdown.await;
            let _ = mark.set(tokio::time::Instant::now());
        };
        http::server::serve(self.listener, self.router, limits, shutdown).await;
        workers.cancel();
        let deadline = signalled
            .get()
            .copied()
            .unwrap_or_else(tokio::time::Instant::now)
            + limits.shutdown_timeout;
        for mut handle in handles {
            if tokio::time::timeout_at(deadline, &mut handle)
                .await
                .is_err()
            {
                // A delivery still running (a slow SMTP server): its row stays leased and is
                // delivered again after the lease, by this or another replica.
                tracing::warn!("a background worker did not stop in time; abandoning it");
                handle.abort();
            }
        }
        self.state.db.close().await;
        tracing::info!("tms stopped");
        Ok(())
    }
}

/// Serves `GET /metrics` alone on the `METRICS_ADDR` listener, if there is one, until
/// `shutdown`.
fn spawn_metrics_listener(
    listener: Option<TcpListener>,
    services: Services,
    shutdown: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let Some(listener) = listener else {
            return;
        };
        if let Ok(addr) = listener.local_addr() {
            tracing::info!(%addr, "metrics are served on their own address");
        }
        let router = http::metrics::dedicated_router(services);
        let stopped = shutdown.cancelled_owned();
        if let Err(err) = axum::serve(listener, router)
            .with_graceful_shutdown(stopped)
            .await
        {
            tracing::warn!(error = %err, "the metrics listener stopped");
        }
    })
}

/// How often operations past their deadline are looked for.
const DEADLINE_SWEEP: Duration = Duration::from_secs(30);

/// Fails provisioning and offboarding operations that passed their deadline
/// (`PROVISIONING_TIMEOUT`), every [`DEADLINE_SWEEP`], until `shutdown`.
fn spawn_deadline_sweeper(
    services: Services,
    shutdown: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let provisioning = &services.provisioning();
        clock::repeat(DEADLINE_SWEEP, &shutdown, || async move {
            if let Err(err) = provisioning.fail_overdue().await {
                tracing::warn!(error = %err, "failing overdue operations did not work");
            }
        })
        .await;
    })
}

/// How often expired `Idempotency-Key` records are deleted.
const IDEMPOTENCY_PURGE: Duration = Duration::from_secs(600);

/// Deletes expired `Idempotency-Key` records (`domain::idempotency`, on the application's
/// clock) now and every [`IDEMPOTENCY_PURGE`], until `shutdown`. Expired records are ignored
/// already; this reclaims their space.
fn spawn_idempotency_janitor(
    services: Services,
    shutdown: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let services = &services;
        clock::repeat(IDEMPOTENCY_PURGE, &shutdown, || async move {
            match services.idempotency().purge_expired().await {
                Ok(0) => {}
                Ok(n) => tracing::debug!(rows = n, "expired idempotency keys purged"),
                Err(err) => tracing::warn!(error = %err, "purging idempotency keys failed"),
            }
        })
        .await;
    })
}

/// How often audit records past their retention are deleted.
const AUDIT_PRUNE: Duration = Duration::from_secs(3600);

/// Deletes audit records older than `AUDIT_RETENTION_DAYS` (on the application's clock) now and
/// every [`AUDIT_PRUNE`], until `shutdown`; does nothing when they are kept for ever.
fn spawn_audit_janitor(
    services: Services,
    shutdown: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        if services.config.audit.retention_days.is_none() {
            return;
        }
        let services = &services;
        clock::repeat(AUDIT_PRUNE, &shutdown, || async move {
            match services.audit_trail().prune().await {
                Ok(0) => {}
                Ok(n) => tracing::info!(rows = n, "audit records past their retention deleted"),
                Err(err) => tracing::warn!(error = %err, "pruning the audit trail failed"),
            }
        })
        .await;
    })
}

/// How soon after start the first billing run goes (or one interval, if that is shorter): a
/// server restarted more often than `BILLING_INTERVAL` still bills.
const FIRST_BILLING_RUN: Duration = Duration::from_secs(30);

/// Runs billing (`domain::billing`) shortly after start and then every `BILLING_INTERVAL`, until
/// `shutdown`; does nothing when the interval is 0.
fn spawn_billing(services: Services, shutdown: CancellationToken) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let Some(interval) = services.config.billing.interval else {
            return;
        };
        let mut wait = interval.min(FIRST_BILLING_RUN);
        let billing = services.billing_run();
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep(wait) => {}
            }
            wait = interval;
            match billing.run().await {
                Ok(report) => services.metrics.billing_run(Some(report.issued)),
                Err(err) => {
                    services.metrics.billing_run(None);
                    tracing::warn!(error = %err, "the billing run did not complete; the next one resumes it");
                }
            }
        }
    })
}

/// Opens and migrates the database, connects the key store and builds the rest of the
/// services on `clock`; also whether the generated development JWT secret is in force.
async fn connect_services(config: Config, clock: Clock) -> anyhow::Result<(Services, bool)> {
    let jwt_secret = resolve_jwt_secret(&config)?;
    let mailer = Mailer::from_config(&config)?;
    let db = Db::connect(&config).await?.with_clock(clock.clone());
    db.migrate().await?;
    let kv = Kv::connect(&config, &db, clock.clone()).await?;
    let jwks = match &config.jwks {
        Some(settings) => Some(auth::jwks::Jwks::new(settings.clone(), clock.clone())?),
        None => None,
    };
    let services = Services {
        db,
        jwt: JwtKeys::new(&jwt_secret.secret, &config.jwt_issuer)
            .with_previous(config.jwt_previous_secret.as_ref())
            .with_clock(clock.clone())
            .with_jwks(jwks),
        config: Arc::new(config),
        kv,
        mailer,
        idp: idp::IdentityProviders::new(clock.clone())?,
        clock,
        metrics: metrics::Metrics::new(),
    };
    Ok((services, jwt_secret.generated_for_dev))
}

/// One billing run (`tms billing run`): opens and migrates the database, connects the key
/// store, runs billing once and closes.
pub async fn run_billing_once(config: Config) -> anyhow::Result<domain::billing_run::RunReport> {
    files::secure_data(&config);
    let (services, _) = connect_services(config, Clock::system()).await?;
    let report = services.billing_run().run().await;
    services.db.close().await;
    Ok(report?)
}

/// The URL a browser on this machine opens: `localhost` for a loopback or wildcard address.
fn browser_url(addr: SocketAddr) -> String {
    let ip = addr.ip();
    if ip.is_loopback() || ip.is_unspecified() {
        format!("http://localhost:{}", addr.port())
    } else {
        format!("http://{addr}")
    }
}

/// The URL this service answers on from its own machine (the command sink posts the pipeline's
/// result there): the bound address, with a wildcard address replaced by loopback.
fn self_url(addr: SocketAddr) -> String {
    let ip = match addr.ip() {
        std::net::IpAddr::V4(ip) if ip.is_unspecified() => std::net::Ipv4Addr::LOCALHOST.into(),
        std::net::IpAddr::V6(ip) if ip.is_unspecified() => std::net::Ipv6Addr::LOCALHOST.into(),
        ip => ip,
    };
    format!("http://{}", SocketAddr::new(ip, addr.port()))
}

/// The JWT secret in force, and whether it was generated because none was configured.
pub struct ResolvedSecret {
    pub secret: SecretString,
    pub generated_for_dev: bool,
}

/// `JWT_SECRET` when set; otherwise (dev/test only, prod is refused by config validation) a
/// random secret kept in `<data dir>/jwt-secret`, so that tokens from `tms token` and from earlier
/// runs stay valid.
pub fn resolve_jwt_secret(config: &Config) -> anyhow::Result<ResolvedSecret> {
    if let Some(secret) = &config.jwt_secret {
        if config.env == Environment::Prod && secret.expose_secret().len() < 32 {
            tracing::warn!(
                "JWT_SECRET is shorter than 32 characters (JWT_SECRET_ALLOW_SHORT): rotate it \
                 to a longer one with JWT_PREVIOUS_SECRET (docs/switch-over.md)"
            );
        }
        return Ok(ResolvedSecret {
            secret: secret.clone(),
            generated_for_dev: false,
        });
    }
    anyhow::ensure!(
        config.env != Environment::Prod,
        "JWT_SECRET must be set when TMS_ENV=prod"
    );
    let path = files::jwt_secret_path(&config.data_dir);
    let secret = match std::fs::read_to_string(&path) {
        Ok(existing) if existing.trim().len() >= 32 => {
            files::tighten_or_warn(&path);
            existing.trim().to_string()
        }
        _ => {
            files::create_dir(&config.data_dir).with_context(|| {
                format!("cannot create data directory {}", config.data_dir.display())
            })?;
            let fresh = hex::encode(rand::random::<[u8; 32]>());
            write_private_file(&path, &fresh)?;
            fresh
        }
    };
    Ok(ResolvedSecret {
        secret: SecretString::from(secret),
        generated_for_dev: true,
    })
}

/// Writes `contents` to `path`, owner-only (0600) also when the file was there before.
fn write_private_file(path: &Path, contents: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let mut file = files::open_options()
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    files::tighten(path).with_context(|| format!("cannot make {} owner-only", path.display()))?;
    file.write_all(contents.as_bytes())?;
    Ok(())
}

/// Completes on SIGTERM or ctrl-c.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = terminate => {},
    }
    tracing::info!("shutdown requested: finishing in-flight requests");
}
