//! The audit trail's settings (`docs/audit.md`): how long its records are kept.

use super::{ConfigError, Vars};

/// How the audit trail is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuditConfig {
    /// Records older than this many days are deleted by the janitor
    /// (`AUDIT_RETENTION_DAYS`, default 365; 0: kept for ever).
    pub retention_days: Option<u32>,
}

impl AuditConfig {
    pub(super) fn from_vars(v: &Vars<'_>) -> Result<Self, ConfigError> {
        let days = v.number("AUDIT_RETENTION_DAYS", 365u32, 0, 36_500)?;
        Ok(Self {
            retention_days: (days > 0).then_some(days),
        })
    }

    /// The settings as `tms config` prints them.
    pub(super) fn lines(&self) -> Vec<(&'static str, String)> {
        vec![(
            "AUDIT_RETENTION_DAYS",
            self.retention_days.unwrap_or(0).to_string(),
        )]
    }
}
