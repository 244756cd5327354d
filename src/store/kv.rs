//! The `kv_entries` table: the database backend of the expiring key store (`kv`). Keys arrive
//! as stored (with their prefix); a row holds either a value or a counter. Every expiry is
//! compared against a `now` the caller binds from the application's clock, never the database
//! clock, so both databases give the same answers.

use chrono::{DateTime, Utc};

use super::{Conn, Param};

// The statements are the same text on both databases; instants are bound as each stores them
// (timestamptz on PostgreSQL, ISO 8601 text on SQLite).

const PUT: &str = "INSERT INTO kv_entries (key, value, count, expires_at) VALUES ($1, $2, NULL, $3) \
     ON CONFLICT (key) DO UPDATE SET value = excluded.value, count = NULL, \
     expires_at = excluded.expires_at";

const GET: &str = "SELECT COALESCE(value, CAST(count AS TEXT)) AS value FROM kv_entries \
     WHERE key = $1 AND expires_at > $2";

const TAKE: &str = "DELETE FROM kv_entries WHERE key = $1 AND expires_at > $2 \
     RETURNING COALESCE(value, CAST(count AS TEXT)) AS value";

const DELETE: &str = "DELETE FROM kv_entries WHERE key = $1";

/// `$2` = the expiry of a new window, `$3` = now. An expired entry (or a plain value) under the
/// key starts a new window; otherwise the count goes up and the expiry stays.
const HIT: &str = "INSERT INTO kv_entries (key, value, count, expires_at) VALUES ($1, NULL, 1, $2) \
     ON CONFLICT (key) DO UPDATE SET value = NULL, \
     count = CASE WHEN kv_entries.expires_at <= $3 OR kv_entries.count IS NULL THEN 1 \
                  ELSE kv_entries.count + 1 END, \
     expires_at = CASE WHEN kv_entries.expires_at <= $3 OR kv_entries.count IS NULL \
                  THEN excluded.expires_at ELSE kv_entries.expires_at END \
     RETURNING count, expires_at";

const PURGE: &str = "DELETE FROM kv_entries WHERE expires_at <= $1";

/// A fixed-window counter after a hit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Counter {
    /// Hits in the window so far, this one included.
    pub count: i64,
    /// When the window ends.
    pub expires_at: DateTime<Utc>,
}

/// Stores `value` under `key` until `expires_at`, replacing whatever was there, where `conn`
/// runs statements (the pool, or a transaction).
pub async fn put(
    conn: &mut Conn<'_>,
    key: &str,
    value: &str,
    expires_at: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    let params = [
        Param::Text(key),
        Param::Text(value),
        Param::Instant(expires_at),
    ];
    conn.raw_execute(PUT, &params).await?;
    Ok(())
}

/// The value of `key` (a counter's count as text) unless it has expired at `now`.
pub async fn get(
    conn: &mut Conn<'_>,
    key: &str,
    now: DateTime<Utc>,
) -> Result<Option<String>, sqlx::Error> {
    let params = [Param::Text(key), Param::Instant(now)];
    let row = conn.raw_fetch_optional(GET, &params, false).await?;
    Ok(row.map(|r| r.text("value")).transpose()?.flatten())
}

/// Deletes `key` and returns its value unless it has expired at `now`, in one statement, where
/// `conn` runs statements (the pool, or a transaction whose rollback brings it back).
pub async fn take(
    conn: &mut Conn<'_>,
    key: &str,
    now: DateTime<Utc>,
) -> Result<Option<String>, sqlx::Error> {
    let params = [Param::Text(key), Param::Instant(now)];
    let row = conn.raw_fetch_optional(TAKE, &params, true).await?;
    Ok(row.map(|r| r.text("value")).transpose()?.flatten())
}

/// Deletes `key` where `conn` runs statements (the pool, or a transaction).
pub async fn delete(conn: &mut Conn<'_>, key: &str) -> Result<(), sqlx::Error> {
    conn.raw_execute(DELETE, &[Param::Text(key)]).await?;
    Ok(())
}

/// Counts a hit on the counter `key` at `now`, in one statement: a missing or expired entry (or
/// a plain value) starts a new window ending at `new_window_end` with count 1; otherwise the
/// count goes up and the window's end stays. `None` if the statement returned no row.
pub async fn hit(
    conn: &mut Conn<'_>,
    key: &str,
    new_window_end: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<Option<Counter>, sqlx::Error> {
    let params = [
        Param::Text(key),
        Param::Instant(new_window_end),
        Param::Instant(now),
    ];
    let rows = conn.raw_fetch(HIT, &params, true).await?;
    rows.first()
        .map(|row| {
            Ok(Counter {
                count: row.int("count")?,
                expires_at: row.required_instant("expires_at")?,
            })
        })
        .transpose()
}

/// Deletes the entries expired at `now` and returns how many.
pub async fn purge_expired(conn: &mut Conn<'_>, now: DateTime<Utc>) -> Result<u64, sqlx::Error> {
    conn.raw_execute(PURGE, &[Param::Instant(now)]).await
}
