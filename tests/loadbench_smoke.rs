//! The benchmark (`examples/loadbench/`, docs/PERFORMANCE.md) still runs: each of its modes for
//! a fraction of a second against the debug `tms` binary — the PostgreSQL read benchmark with its
//! start-up and memory figures, `--scale` (its seeding, every read scenario, the plans) and
//! `--sqlite-writes`. Only that they run without an error is asserted: the figures of a debug
//! build on a shared machine mean nothing, and speed is judged by the benchmark itself.

mod common;

#[allow(dead_code)]
#[path = "../examples/loadbench/main.rs"]
mod loadbench;

use clap::Parser;
use common::*;

fn args(extra: &[&str]) -> loadbench::Args {
    let database = postgres_url().unwrap_or_default();
    let tms = env!("CARGO_BIN_EXE_tms");
    let mut argv = vec![
        "loadbench",
        "--tms",
        tms,
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
    ];
    argv.extend_from_slice(extra);
    loadbench::Args::parse_from(argv)
}

#[test]
fn the_benchmark_runs_in_each_of_its_modes() {
    let test = "the_benchmark_runs_in_each_of_its_modes";
    if !db_available(Db::Postgres, test) {
        return;
    }
    loadbench::run_with(args(&["--tenants", "20"])).expect("the read benchmark");
    loadbench::run_with(args(&["--scale", "1100"])).expect("the scale benchmark");
    loadbench::run_with(args(&["--sqlite-writes", "1"])).expect("the SQLite write benchmark");
}
