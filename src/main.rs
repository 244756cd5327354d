//! The `tms` command line: `serve` (default), `migrate`, `config`, `token`, `openapi`,
//! `billing run`, `health`.

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tikv_jemallocator::Jemalloc;
use tms::auth::{ALL_PERMISSIONS, JwtKeys};
use tms::config::Config;

/// jemalloc, purging freed memory in a background thread about a second after it was freed
/// (`.cargo/config.toml`), gives the memory of a burst of large responses back to the system;
/// see docs/faults.md ("Large lists").
#[global_allocator]
static ALLOCATOR: Jemalloc = Jemalloc;

#[derive(Parser)]
#[command(
    name = "tms",
    version,
    about = "Tenant management service for SaaS control planes"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the HTTP server (the default).
    Serve,
    /// Apply database migrations and exit.
    Migrate,
    /// Print the effective configuration, secrets masked.
    Config,
    /// Mint a bearer token signed with JWT_SECRET.
    Token {
        /// `all`, or a comma-separated list of permission codes.
        #[arg(long, default_value = "all")]
        permissions: String,
        /// The caller id the token carries (default: SYSTEM_USER_ID).
        #[arg(long)]
        id: Option<String>,
        /// Lifetime in seconds.
        #[arg(long, default_value_t = 3600)]
        ttl: u64,
    },
    /// Print the OpenAPI document.
    Openapi,
    /// Billing: `tms billing run` issues the invoices that are due, announces overdue ones and
    /// (with BILLING_SUSPEND_AFTER_DAYS) suspends tenants that leave them unpaid.
    Billing {
        #[command(subcommand)]
        command: BillingCommand,
    },
    /// Exit 0 when the server on this machine (PORT) is ready (`GET /health/ready` answers 200),
    /// else 1: a container's health check, with no HTTP client in the image.
    Health {
        /// The readiness URL (default: http://127.0.0.1:<PORT>/health/ready).
        #[arg(long)]
        url: Option<String>,
    },
}

#[derive(Subcommand)]
enum BillingCommand {
    /// One billing run now, then exit (safe beside running servers and other runs).
    Run,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let config = match Config::from_env() {
        Ok(config) => config,
        Err(err) => {
            eprintln!("tms: {err}");
            return ExitCode::from(2);
        }
    };
    match run(cli.command.unwrap_or(Command::Serve), config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("tms: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(command: Command, config: Config) -> anyhow::Result<()> {
    match command {
        Command::Config => {
            for line in config.masked_lines() {
                println!("{line}");
            }
            Ok(())
        }
        Command::Openapi => {
            println!("{:#}", tms::http::openapi::document());
            Ok(())
        }
        Command::Token {
            permissions,
            id,
            ttl,
        } => {
            let secret = tms::resolve_jwt_secret(&config)?;
            let permissions = if permissions == "all" {
                ALL_PERMISSIONS.iter().map(|p| p.to_string()).collect()
            } else {
                permissions
                    .split(',')
                    .map(|p| p.trim().to_string())
                    .filter(|p| !p.is_empty())
                    .collect()
            };
            let keys = JwtKeys::new(&secret.secret, &config.jwt_issuer);
            let id = id.unwrap_or_else(|| config.system_user_id.clone());
            println!("{}", keys.mint(&id, permissions, ttl)?);
            Ok(())
        }
        Command::Health { url } => runtime()?.block_on(async {
            let url =
                url.unwrap_or_else(|| format!("http://127.0.0.1:{}/health/ready", config.port));
            let answer = reqwest::Client::builder()
                .timeout(std::time::Duration::from_secs(5))
                .build()?
                .get(&url)
                .send()
                .await;
            match answer {
                Ok(response) if response.status().is_success() => Ok(()),
                Ok(response) => anyhow::bail!("{url} answered {}", response.status()),
                Err(err) => anyhow::bail!("{url}: {err}"),
            }
        }),
        Command::Migrate => runtime()?.block_on(async {
            let telemetry = tms::telemetry::init(&config);
            tms::files::secure_data(&config);
            let migrated = async {
                let db = tms::store::Db::connect(&config).await?;
                db.migrate().await?;
                db.close().await;
                tracing::info!(database = db.backend_name(), "migrations applied");
                Ok(())
            }
            .await;
            telemetry.shutdown().await;
            migrated
        }),
        Command::Billing {
            command: BillingCommand::Run,
        } => runtime()?.block_on(async {
            let telemetry = tms::telemetry::init(&config);
            let report = tms::run_billing_once(config).await;
            telemetry.shutdown().await;
            let report = report?;
            println!(
                "issued {} invoice(s), announced {} overdue, suspended {} tenant(s)",
                report.issued, report.overdue, report.suspended
            );
            Ok(())
        }),
        Command::Serve => runtime()?.block_on(async {
            let telemetry = tms::telemetry::init(&config);
            let served = async {
                let app = tms::App::build(config).await?;
                // In development only: the URL and a ready admin token, on the terminal, not
                // in the log.
                if let Some(message) = app.start_up_message(std::io::stdout().is_terminal())? {
                    println!("{message}");
                }
                app.run_until_stopped(tms::shutdown_signal()).await
            }
            .await;
            // The spans of the last requests, before the process ends.
            telemetry.shutdown().await;
            served
        }),
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}
