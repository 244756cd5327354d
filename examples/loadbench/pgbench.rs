//! The baseline: the statements tms runs for a scenario, issued by `pgbench -M prepared` (a C
//! client, each statement prepared once per connection) at the same concurrency, against the same
//! schema — what PostgreSQL itself serves, so that the ratio is the service's own cost.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, bail, ensure};
use sqlx::postgres::PgConnectOptions;

/// What one pgbench run measured.
pub struct Baseline {
    /// Transactions (script runs) per second, without the initial connection time.
    pub tps: f64,
    pub latency_avg_ms: f64,
    pub failed: u64,
}

/// Where and how long pgbench runs: the database `base` points at, in `schema`, its scripts
/// written to `dir`; `warmup` unmeasured, then `duration`.
pub struct Pgbench<'a> {
    pub base: &'a PgConnectOptions,
    pub schema: &'a str,
    pub dir: &'a Path,
    pub warmup: Duration,
    pub duration: Duration,
}

impl Pgbench<'_> {
    /// Runs `script` (pgbench's script language: `\set` lines and SQL; one script run is one
    /// transaction of the figures) with `concurrency` clients on two threads.
    pub fn run(&self, name: &str, script: &str, concurrency: usize) -> anyhow::Result<Baseline> {
        let file = self.dir.join(format!("{name}.pgbench"));
        std::fs::write(&file, script)?;
        if self.warmup >= Duration::from_secs(1) {
            invoke(self.base, self.schema, &file, concurrency, self.warmup)?;
        }
        let time = self.duration.max(Duration::from_secs(1));
        let output = invoke(self.base, self.schema, &file, concurrency, time)?;
        parse(&output).with_context(|| format!("pgbench output of {name}: {output}"))
    }
}

fn invoke(
    base: &PgConnectOptions,
    schema: &str,
    script: &Path,
    concurrency: usize,
    time: Duration,
) -> anyhow::Result<String> {
    let mut command = Command::new("pgbench");
    command
        .args(["--no-vacuum", "--protocol", "prepared", "--jobs", "2"])
        .arg("--client")
        .arg(concurrency.to_string())
        .arg("--time")
        .arg(time.as_secs().to_string())
        .arg("--file")
        .arg(script)
        .arg("--host")
        .arg(base.get_host())
        .arg("--port")
        .arg(base.get_port().to_string())
        .arg("--username")
        .arg(base.get_username())
        .env("PGOPTIONS", format!("-c search_path={schema}"));
    if let Some(database) = base.get_database() {
        command.arg(database);
    }
    let output = command
        .output()
        .context("cannot run pgbench (PostgreSQL's benchmark client, in postgresql-15)")?;
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    if !output.status.success() {
        bail!(
            "pgbench failed ({}): {stdout}{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(stdout)
}

fn parse(output: &str) -> anyhow::Result<Baseline> {
    let number = |prefix: &str| -> Option<f64> {
        output.lines().find_map(|line| {
            let rest = line.trim().strip_prefix(prefix)?;
            rest.split_whitespace().next()?.parse().ok()
        })
    };
    let tps = number("tps = ").context("no tps")?;
    let latency_avg_ms = number("latency average = ").context("no latency")?;
    let failed = number("number of failed transactions: ").unwrap_or(0.0) as u64;
    ensure!(tps > 0.0, "no transaction completed");
    Ok(Baseline {
        tps,
        latency_avg_ms,
        failed,
    })
}

/// `sql` as pgbench runs it: each occurrence of a `(literal, expression)` pair replaced (so a
/// value tms binds becomes a pgbench variable, a parameter of the prepared statement), on one
/// line ending with `;`.
pub fn statement(sql: &str, replace: &[(String, String)]) -> anyhow::Result<String> {
    let mut out = sql.replace('\n', " ");
    for (literal, expression) in replace {
        ensure!(
            out.contains(literal.as_str()),
            "{literal} is not in the statement {out}"
        );
        out = out.replace(literal.as_str(), expression);
    }
    Ok(format!("{out};\n"))
}
