//! The audit trail once written (`docs/audit.md`): who may read it — never a lead token, whatever
//! codes it carries, since the trail names every tenant's changes and who made them — and how
//! long it is kept: records older than `AUDIT_RETENTION_DAYS` on the service's clock are deleted
//! by a janitor; 0 keeps them for ever.

use chrono::{DateTime, Duration, Utc};

use crate::auth::Principal;
use crate::config::AuditConfig;
use crate::store::filter::{Filter, Where};
use crate::store::{Db, Object, audit};

/// Why the trail could not be read.
#[derive(Debug, thiserror::Error)]
pub enum AuditReadError {
    /// A lead token asked: leads read no audit record.
    #[error("a lead token reads no audit record")]
    Lead,
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

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
    /// The trail as `reader` may read it: refused to a lead token.
    pub fn reader(&self, reader: &Principal) -> Result<AuditReader<'_>, AuditReadError> {
        match reader.lead {
            Some(_) => Err(AuditReadError::Lead),
            None => Ok(AuditReader { db: self.db }),
        }
    }

    /// Deletes the records past the retention at the database clock's now; how many.
    pub async fn prune(&self) -> Result<u64, sqlx::Error> {
        let now = self.db.clock().now();
        match retention_cutoff(now, self.config.retention_days) {
            Some(cutoff) => audit::prune(&mut self.db.conn(), cutoff).await,
            None => Ok(0),
        }
    }
}

/// The trail for a caller allowed to read it ([`AuditTrail::reader`]).
pub struct AuditReader<'a> {
    db: &'a Db,
}

impl AuditReader<'_> {
    /// The records `filter` selects.
    pub async fn find(&self, filter: &Filter) -> Result<Vec<Object>, sqlx::Error> {
        audit::find(&mut self.db.conn(), filter).await
    }

    /// How many records `where_` selects.
    pub async fn count(&self, where_: Option<&Where>) -> Result<i64, sqlx::Error> {
        audit::count(&mut self.db.conn(), where_).await
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
