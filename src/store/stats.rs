//! What `GET /metrics` reads from the database when it is scraped (`docs/operations.md`): the
//! outbox's undelivered rows by topic and state with the oldest one's age, and the live tenants
//! by status. Both are counts over partial indexes (`outbox … WHERE delivered_at IS NULL`,
//! `tenants (status) WHERE NOT deleted`), so a scrape stays cheap as the tables grow.

use chrono::{DateTime, Utc};

use super::Conn;

/// Undelivered outbox rows of one topic in one state.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxBacklog {
    pub topic: String,
    /// `pending` or `failed`.
    pub state: String,
    pub rows: i64,
    /// When the oldest of them was written.
    pub oldest: Option<DateTime<Utc>>,
}

/// The undelivered outbox rows, by topic and state.
pub async fn outbox_backlog(conn: &mut Conn<'_>) -> Result<Vec<OutboxBacklog>, sqlx::Error> {
    conn.raw_fetch(
        "SELECT topic, state, COUNT(*) AS rows_, MIN(created_on) AS oldest FROM outbox \
         WHERE delivered_at IS NULL GROUP BY topic, state ORDER BY topic, state",
        &[],
        false,
    )
    .await?
    .iter()
    .map(|row| {
        Ok(OutboxBacklog {
            topic: row.text("topic")?.unwrap_or_default(),
            state: row.text("state")?.unwrap_or_default(),
            rows: row.int("rows_")?,
            oldest: row.instant("oldest")?,
        })
    })
    .collect()
}

/// The live tenants by status code (statuses without a tenant are left out).
pub async fn tenants_by_status(conn: &mut Conn<'_>) -> Result<Vec<(i64, i64)>, sqlx::Error> {
    conn.raw_fetch(
        "SELECT CAST(status AS integer) AS status, COUNT(*) AS tenants FROM tenants \
         WHERE NOT deleted GROUP BY status ORDER BY status",
        &[],
        false,
    )
    .await?
    .iter()
    .map(|row| Ok((row.int("status")?, row.int("tenants")?)))
    .collect()
}
