//! The benchmark (`examples/loadbench/`, docs/PERFORMANCE.md) still runs: every scenario, each
//! for a fraction of a second against the debug `tms` binary and small sizes — the reads and
//! `POST /tenants` against pgbench, the funnel, start-up and memory, the reads at scale with their
//! plans, the relay's burst, the billing run and the embedded SQLite database. Only that it runs
//! without an error is asserted: the figures of a debug build on a shared machine mean nothing,
//! and speed is judged by the benchmark itself.

mod common;

#[allow(dead_code)]
#[path = "../examples/loadbench/main.rs"]
mod loadbench;

use clap::Parser;
use common::*;

#[test]
fn the_benchmark_runs_every_scenario() {
    let test = "the_benchmark_runs_every_scenario";
    if !db_available(Db::Postgres, test) {
        return;
    }
    let database = postgres_url().unwrap_or_default();
    let args = loadbench::Args::parse_from([
        "loadbench",
        "--tms",
        env!("CARGO_BIN_EXE_tms"),
        "--database-url",
        &database,
        "--duration",
        "0.3",
        "--warmup",
        "0",
        "--concurrency",
        "2",
        "--starts",
        "1",
        "--scale",
        "1100",
        "--burst",
        "200",
        "--sqlite-tenants",
        "20",
        "--sqlite-runs",
        "1",
    ]);
    loadbench::run_with(args).expect("the benchmark");
}
