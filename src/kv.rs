//! The expiring key-value store behind single-use lead keys, webhook secrets and rate-limit
//! counters: Redis when `REDIS_URL` is set, otherwise the `kv_entries` table of the database in
//! use. Both backends give the same answers (see `docs/keys-and-limits.md`); keys are namespaced
//! with `REDIS_KEY_PREFIX` on both.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use anyhow::Context;
use chrono::{DateTime, TimeDelta, Utc};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use secrecy::ExposeSecret;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::{Config, mask_url_password};
use crate::store::Db;
use crate::store::values::{format_timestamp, parse_timestamp};

/// The longest expiry the store keeps (longer ones are shortened to it), so that every expiry
/// instant stays a four-digit-year timestamp on SQLite.
const MAX_TTL: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// Redis commands that take longer than this fail (and rate limiting lets the request through).
const REDIS_TIMEOUT: Duration = Duration::from_secs(2);

/// Where time comes from: the system clock, or a manual clock that tests move forward.
#[derive(Clone, Default)]
pub struct Clock(Option<Arc<AtomicI64>>);

impl Clock {
    /// The system clock.
    pub fn system() -> Self {
        Self(None)
    }

    /// A clock that stands still at `start` until [`Clock::advance`] moves it.
    pub fn manual(start: DateTime<Utc>) -> Self {
        Self(Some(Arc::new(AtomicI64::new(start.timestamp_millis()))))
    }

    /// Now, truncated to the millisecond (what both databases store).
    pub fn now(&self) -> DateTime<Utc> {
        let millis = match &self.0 {
            Some(manual) => manual.load(Ordering::SeqCst),
            None => Utc::now().timestamp_millis(),
        };
        DateTime::from_timestamp_millis(millis).unwrap_or(DateTime::<Utc>::MIN_UTC)
    }

    /// Moves a manual clock (and every clone of it) forward by `by`.
    ///
    /// # Panics
    /// On the system clock.
    pub fn advance(&self, by: Duration) {
        let manual = self
            .0
            .as_ref()
            .expect("only a manual clock can be advanced");
        manual.fetch_add(millis(by), Ordering::SeqCst);
    }
}

/// One counted hit of a fixed window: the count so far in the window (1 for the first hit) and
/// how long until the window ends and the count starts again from 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hit {
    pub count: u64,
    pub reset_in: Duration,
}

/// The key-value store chosen at start-up.
#[derive(Clone)]
pub enum Kv {
    Db(DbKv),
    Redis(RedisKv),
}

/// The database backend: table `kv_entries`.
#[derive(Clone)]
pub struct DbKv {
    db: Db,
    prefix: Arc<str>,
    clock: Clock,
}

/// The Redis backend.
#[derive(Clone)]
pub struct RedisKv {
    conn: ConnectionManager,
    prefix: Arc<str>,
    hit_script: Arc<redis::Script>,
}

/// Increments the counter, gives it its expiry when it has none (it was just created), and
/// returns the count and the milliseconds left. One script, so no counter is left without expiry.
const HIT_SCRIPT: &str = r"
local count = redis.call('INCR', KEYS[1])
local ttl = redis.call('PTTL', KEYS[1])
if ttl < 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
  ttl = tonumber(ARGV[1])
end
return {count, ttl}
";

impl Kv {
    /// Redis when `REDIS_URL` (or `REDIS_HOST`) is set — start-up fails when it cannot be
    /// reached — otherwise the database `db`.
    pub async fn connect(config: &Config, db: &Db) -> anyhow::Result<Kv> {
        match &config.redis_url {
            Some(url) => Self::redis(url.expose_secret(), &config.redis_key_prefix)
                .await
                .with_context(|| {
                    format!(
                        "cannot connect to Redis at {} (REDIS_URL)",
                        mask_url_password(url.expose_secret())
                    )
                }),
            None => Ok(Self::database(db.clone(), &config.redis_key_prefix)),
        }
    }

    /// The database backend on the system clock.
    pub fn database(db: Db, prefix: &str) -> Kv {
        Self::database_with_clock(db, prefix, Clock::system())
    }

    /// The database backend with the clock that decides expiry.
    pub fn database_with_clock(db: Db, prefix: &str, clock: Clock) -> Kv {
        Kv::Db(DbKv {
            db,
            prefix: prefix.into(),
            clock,
        })
    }

    /// The Redis backend at `url` (`redis://` or `rediss://`), checked with a `PING`.
    pub async fn redis(url: &str, prefix: &str) -> anyhow::Result<Kv> {
        let client = redis::Client::open(url).context("invalid Redis URL")?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(REDIS_TIMEOUT))
            .set_response_timeout(Some(REDIS_TIMEOUT))
            .set_number_of_retries(2);
        let mut conn = ConnectionManager::new_with_config(client, config).await?;
        redis::cmd("PING").query_async::<()>(&mut conn).await?;
        Ok(Kv::Redis(RedisKv {
            conn,
            prefix: prefix.into(),
            hit_script: Arc::new(redis::Script::new(HIT_SCRIPT)),
        }))
    }

    /// `redis` or `database`, for logs.
    pub fn backend_name(&self) -> &'static str {
        match self {
            Self::Db(_) => "database",
            Self::Redis(_) => "redis",
        }
    }

    /// Stores `value` under `key` for `ttl`, replacing whatever was there.
    ///
    /// Errors name only the key's namespace (`lead-key:…`): keys can be secrets.
    pub async fn put(&self, key: &str, value: &str, ttl: Duration) -> anyhow::Result<()> {
        match self {
            Self::Db(kv) => kv.put(key, value, ttl).await,
            Self::Redis(kv) => kv.put(key, value, ttl).await,
        }
        .with_context(|| format!("kv put {}", namespace(key)))
    }

    /// The value of `key`; `None` when absent or expired. (The value of a counter is its count.)
    pub async fn get(&self, key: &str) -> anyhow::Result<Option<String>> {
        match self {
            Self::Db(kv) => kv.get(key).await,
            Self::Redis(kv) => kv.get(key).await,
        }
        .with_context(|| format!("kv get {}", namespace(key)))
    }

    /// Gets and deletes `key` in one step, for single-use keys: of concurrent `take`s of one key
    /// exactly one gets the value.
    pub async fn take(&self, key: &str) -> anyhow::Result<Option<String>> {
        match self {
            Self::Db(kv) => kv.take(key).await,
            Self::Redis(kv) => kv.take(key).await,
        }
        .with_context(|| format!("kv take {}", namespace(key)))
    }

    /// Removes `key` (nothing happens when it is absent).
    pub async fn delete(&self, key: &str) -> anyhow::Result<()> {
        match self {
            Self::Db(kv) => kv.delete(key).await,
            Self::Redis(kv) => kv.delete(key).await,
        }
        .with_context(|| format!("kv delete {}", namespace(key)))
    }

    /// Counts a hit on the fixed-window counter `key`: the first hit starts a window of length
    /// `window` with count 1; later hits in the window increment it atomically; the first hit
    /// after the window starts a new one.
    pub async fn hit(&self, key: &str, window: Duration) -> anyhow::Result<Hit> {
        match self {
            Self::Db(kv) => kv.hit(key, window).await,
            Self::Redis(kv) => kv.hit(key, window).await,
        }
        .with_context(|| format!("kv hit {}", namespace(key)))
    }

    /// Deletes expired entries and returns how many. Expired entries are already invisible;
    /// this only reclaims space. Redis expires keys itself: always 0 there.
    pub async fn purge_expired(&self) -> anyhow::Result<u64> {
        match self {
            Self::Db(kv) => kv.purge_expired().await.context("kv purge"),
            Self::Redis(_) => Ok(0),
        }
    }

    /// Runs [`Kv::purge_expired`] now and then every `every` until `shutdown` is cancelled;
    /// failures are logged and retried at the next tick. On Redis it only waits for `shutdown`.
    pub fn spawn_janitor(&self, every: Duration, shutdown: CancellationToken) -> JoinHandle<()> {
        let kv = self.clone();
        tokio::spawn(async move {
            if let Self::Redis(_) = kv {
                shutdown.cancelled().await;
                return;
            }
            let mut ticks = tokio::time::interval(every.max(Duration::from_millis(1)));
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = ticks.tick() => match kv.purge_expired().await {
                        Ok(0) => {}
                        Ok(purged) => tracing::debug!(purged, "expired kv entries purged"),
                        Err(err) => tracing::warn!(error = format!("{err:#}"), "kv purge failed"),
                    },
                }
            }
        })
    }
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

fn expiry(now: DateTime<Utc>, ttl: Duration) -> DateTime<Utc> {
    now + TimeDelta::milliseconds(millis(ttl.min(MAX_TTL)))
}

// The statements are the same text on both databases (`$n` parameters work on SQLite too); only
// the type bound for an instant differs (timestamptz on PostgreSQL, ISO 8601 text on SQLite).
// Every expiry is compared against a bound `now`, never the database clock.

const PUT: &str = "INSERT INTO kv_entries (key, value, count, expires_at) VALUES ($1, $2, NULL, $3) \
     ON CONFLICT (key) DO UPDATE SET value = excluded.value, count = NULL, \
     expires_at = excluded.expires_at";

const GET: &str = "SELECT COALESCE(value, CAST(count AS TEXT)) FROM kv_entries \
     WHERE key = $1 AND expires_at > $2";

const TAKE: &str = "DELETE FROM kv_entries WHERE key = $1 AND expires_at > $2 \
     RETURNING COALESCE(value, CAST(count AS TEXT))";

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

impl DbKv {
    fn key(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }

    async fn put(&self, key: &str, value: &str, ttl: Duration) -> anyhow::Result<()> {
        let expires_at = expiry(self.clock.now(), ttl);
        let key = self.key(key);
        match &self.db {
            Db::Postgres(pool) => {
                sqlx::query(PUT)
                    .bind(key)
                    .bind(value)
                    .bind(expires_at)
                    .execute(pool)
                    .await?;
            }
            Db::Sqlite(pool) => {
                sqlx::query(PUT)
                    .bind(key)
                    .bind(value)
                    .bind(format_timestamp(&expires_at))
                    .execute(pool)
                    .await?;
            }
        }
        Ok(())
    }

    async fn get(&self, key: &str) -> anyhow::Result<Option<String>> {
        self.value_query(GET, key).await
    }

    async fn take(&self, key: &str) -> anyhow::Result<Option<String>> {
        self.value_query(TAKE, key).await
    }

    /// Runs `sql` (with `$1` = key, `$2` = now) that yields at most one nullable text.
    async fn value_query(&self, sql: &'static str, key: &str) -> anyhow::Result<Option<String>> {
        let now = self.clock.now();
        let key = self.key(key);
        let value: Option<Option<String>> = match &self.db {
            Db::Postgres(pool) => {
                sqlx::query_scalar(sql)
                    .bind(key)
                    .bind(now)
                    .fetch_optional(pool)
                    .await?
            }
            Db::Sqlite(pool) => {
                sqlx::query_scalar(sql)
                    .bind(key)
                    .bind(format_timestamp(&now))
                    .fetch_optional(pool)
                    .await?
            }
        };
        Ok(value.flatten())
    }

    async fn delete(&self, key: &str) -> anyhow::Result<()> {
        let key = self.key(key);
        match &self.db {
            Db::Postgres(pool) => sqlx::query(DELETE).bind(key).execute(pool).await.map(drop),
            Db::Sqlite(pool) => sqlx::query(DELETE).bind(key).execute(pool).await.map(drop),
        }?;
        Ok(())
    }

    async fn hit(&self, key: &str, window: Duration) -> anyhow::Result<Hit> {
        let now = self.clock.now();
        let new_expiry = expiry(now, window);
        let key = self.key(key);
        let (count, expires_at): (i64, DateTime<Utc>) = match &self.db {
            Db::Postgres(pool) => {
                sqlx::query_as(HIT)
                    .bind(key)
                    .bind(new_expiry)
                    .bind(now)
                    .fetch_one(pool)
                    .await?
            }
            Db::Sqlite(pool) => {
                let (count, expires_at): (i64, String) = sqlx::query_as(HIT)
                    .bind(key)
                    .bind(format_timestamp(&new_expiry))
                    .bind(format_timestamp(&now))
                    .fetch_one(pool)
                    .await?;
                let expires_at = parse_timestamp(&expires_at)
                    .with_context(|| format!("kv_entries.expires_at {expires_at:?}"))?;
                (count, expires_at)
            }
        };
        Ok(Hit {
            count: u64::try_from(count).unwrap_or(0),
            reset_in: (expires_at - now).to_std().unwrap_or(Duration::ZERO),
        })
    }

    async fn purge_expired(&self) -> anyhow::Result<u64> {
        let now = self.clock.now();
        let result = match &self.db {
            Db::Postgres(pool) => sqlx::query(PURGE)
                .bind(now)
                .execute(pool)
                .await
                .map(|r| r.rows_affected()),
            Db::Sqlite(pool) => sqlx::query(PURGE)
                .bind(format_timestamp(&now))
                .execute(pool)
                .await
                .map(|r| r.rows_affected()),
        };
        Ok(result?)
    }
}

impl RedisKv {
    fn key(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }

    /// A connection handle (cheap: the manager multiplexes one connection and reconnects).
    fn conn(&self) -> ConnectionManager {
        self.conn.clone()
    }

    async fn put(&self, key: &str, value: &str, ttl: Duration) -> anyhow::Result<()> {
        redis::cmd("SET")
            .arg(self.key(key))
            .arg(value)
            .arg("PX")
            .arg(millis(ttl.min(MAX_TTL)).max(1))
            .query_async::<()>(&mut self.conn())
            .await?;
        Ok(())
    }

    async fn get(&self, key: &str) -> anyhow::Result<Option<String>> {
        Ok(redis::cmd("GET")
            .arg(self.key(key))
            .query_async(&mut self.conn())
            .await?)
    }

    async fn take(&self, key: &str) -> anyhow::Result<Option<String>> {
        Ok(redis::cmd("GETDEL")
            .arg(self.key(key))
            .query_async(&mut self.conn())
            .await?)
    }

    async fn delete(&self, key: &str) -> anyhow::Result<()> {
        redis::cmd("DEL")
            .arg(self.key(key))
            .query_async::<()>(&mut self.conn())
            .await?;
        Ok(())
    }

    async fn hit(&self, key: &str, window: Duration) -> anyhow::Result<Hit> {
        let (count, ttl_ms): (i64, i64) = self
            .hit_script
            .key(self.key(key))
            .arg(millis(window.min(MAX_TTL)).max(1))
            .invoke_async(&mut self.conn())
            .await?;
        Ok(Hit {
            count: u64::try_from(count).unwrap_or(0),
            reset_in: Duration::from_millis(u64::try_from(ttl_ms).unwrap_or(0)),
        })
    }
}

/// The namespace of a key (`lead-key` of `lead-key:<secret>`), the only part of it that error
/// messages and logs show: some keys are secrets.
fn namespace(key: &str) -> &str {
    key.split(':').next().unwrap_or("")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manual_clock_moves_only_when_advanced() {
        let start = DateTime::parse_from_rfc3339("2030-01-01T00:00:00.123456Z")
            .unwrap()
            .with_timezone(&Utc);
        let clock = Clock::manual(start);
        let shared = clock.clone();
        assert_eq!(format_timestamp(&clock.now()), "2030-01-01T00:00:00.123Z");
        shared.advance(Duration::from_millis(1500));
        assert_eq!(format_timestamp(&clock.now()), "2030-01-01T00:00:01.623Z");
    }

    #[test]
    fn expiries_are_capped() {
        let now = Clock::system().now();
        let far = expiry(now, Duration::MAX);
        assert!(format_timestamp(&far).len() == "2030-01-01T00:00:00.000Z".len());
        assert_eq!(
            expiry(now, Duration::from_millis(1500)) - now,
            TimeDelta::milliseconds(1500)
        );
    }
}
