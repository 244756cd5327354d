//! Keeping the audit trail (`docs/audit.md`): records older than `AUDIT_RETENTION_DAYS` on the
//! service's clock are deleted by a janitor; 0 keeps them for ever.

use chrono::{DateTime, Duration, Utc};

use crate::config::AuditConfig;
use crate::store::{Db, audit};

/// The trail as the retention sees it.
pub struct AuditTrail<'a> {
    pub db: &'a Db,
    pub config: &'a AuditConfig,
}

/// Before when records are deleted at `now`; `None` when they are kept for ever.
pub fn retention_cutoff(now: DateTime<Utc>, days: Option<u32>) -> Option<DateTime<Utc>> {
    days.map(|d| now - Duration::days(i64::from(d)))
}

impl AuditTrail<'_> {
    /// Deletes the records past the retention at the database clock's now; how many.
    pub async fn prune(&self) -> Result<u64, sqlx::Error> {
        let now = self.db.clock().now();
        match retention_cutoff(now, self.config.retention_days) {
            Some(cutoff) => audit::prune(&mut self.db.conn(), cutoff).await,
            None => Ok(0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_days_keeps_everything_and_days_count_back_from_now() {
        let now = Utc::now();
        assert_eq!(retention_cutoff(now, None), None);
        assert_eq!(
            retention_cutoff(now, Some(2)),
            Some(now - Duration::days(2))
        );
    }
}
