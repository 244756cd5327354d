//! Structured logs: JSON lines in prod, readable text elsewhere (`LOG_FORMAT` overrides), level
//! from `LOG_LEVEL` (or a full `RUST_LOG` filter).

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

use crate::config::{Config, Environment};

/// Installs the global subscriber. Safe to call once per process.
pub fn init(config: &Config) {
    let filter = std::env::var("RUST_LOG")
        .ok()
        .and_then(|f| EnvFilter::try_new(f).ok())
        .unwrap_or_else(|| {
            EnvFilter::new(format!(
                "{level},sqlx=warn,tower_http=warn,hyper=warn",
                level = config.log_level
            ))
        });
    let json = match std::env::var("LOG_FORMAT").ok().as_deref() {
        Some("json") => true,
        Some("text") => false,
        _ => config.env == Environment::Prod,
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    if json {
        builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .init();
    } else {
        builder.compact().init();
    }
}
