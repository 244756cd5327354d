//! The closing lines of `cargo test`: how many test variants ran on each backend and service
//! (SQLite, PostgreSQL, Redis, the SMTP server, Chromium, …), and which were skipped and why,
//! so that a green run that skipped half its variants says so. Test targets run in name order,
//! so this one (`harness = false`, no doc tests after it) prints last; it reads the records the
//! other test processes of this run left (`common::ledger`) and removes them.

#[path = "common/mod.rs"]
#[allow(unused_imports)]
mod common;

use std::collections::BTreeMap;

fn main() {
    let dir = common::ledger::dir(std::os::unix::process::parent_id());
    let Ok(entries) = std::fs::read_dir(&dir) else {
        println!("\ntest variants: none recorded in this run (run the whole suite: cargo test)");
        return;
    };
    // service → (ran, skipped, first reason for a skip)
    let mut tally: BTreeMap<String, (usize, usize, String)> = BTreeMap::new();
    for entry in entries.flatten() {
        let Ok(text) = std::fs::read_to_string(entry.path()) else {
            continue;
        };
        for line in text.lines() {
            let mut fields = line.splitn(4, '\t');
            let (Some(service), Some(outcome)) = (fields.next(), fields.next()) else {
                continue;
            };
            let why = fields.nth(1).unwrap_or_default();
            let counts = tally.entry(service.to_string()).or_default();
            if outcome == "ran" {
                counts.0 += 1;
            } else {
                counts.1 += 1;
                if counts.2.is_empty() {
                    counts.2 = why.to_string();
                }
            }
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    let skipped: usize = tally.values().map(|c| c.1).sum();
    println!("\ntest variants by backend and service:");
    for (service, (ran, skips, why)) in &tally {
        if *skips == 0 {
            println!("  {service:<24} {ran:>4} ran");
        } else {
            println!("  {service:<24} {ran:>4} ran, {skips} SKIPPED: {why}");
        }
    }
    if skipped == 0 {
        println!("every variant ran");
    } else {
        println!(
            "{skipped} variants were SKIPPED (the README lists the settings that run them; \
             under CI=true a missing service fails instead)"
        );
    }
}
