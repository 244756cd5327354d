//! The expiring key-value store behind single-use lead keys, webhook secrets and rate-limit
//! counters: Redis when `REDIS_URL` is set, otherwise the `kv_entries` table of the database in
//! use. Both backends give the same answers (see `docs/keys-and-limits.md`); keys are namespaced
//! with `REDIS_KEY_PREFIX` on both.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use chrono::{DateTime, TimeDelta, Utc};
use secrecy::{ExposeSecret, SecretString};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

mod link;
pub mod original;

pub use link::FAILOVER_PATIENCE;

use crate::clock::Clock;
use crate::config::{Config, RedisConfig, RedisTarget, RedisTls, ReplicaWait, mask_url_password};
use crate::store::{self, Conn, Db, Tx};

/// The longest expiry the store keeps (longer ones are shortened to it), so that every expiry
/// instant stays a four-digit-year timestamp on SQLite.
const MAX_TTL: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// Redis commands that take longer than this fail (and rate limiting lets the request through).
const REDIS_TIMEOUT: Duration = Duration::from_secs(2);

/// A failed key-store operation. Its text names the operation and the key's namespace only
/// (`lead-key`), never the key: keys can be secrets.
#[derive(Debug, thiserror::Error)]
#[error("key store: {op} {namespace}")]
pub struct KvError {
    op: &'static str,
    namespace: String,
    #[source]
    cause: Cause,
}

/// What went wrong underneath a [`KvError`].
#[derive(Debug, thiserror::Error)]
pub enum Cause {
    #[error(transparent)]
    Database(#[from] sqlx::Error),
    #[error(transparent)]
    Redis(#[from] redis::RedisError),
    #[error("{0}")]
    Corrupt(String),
    #[error(
        "written, but only {acknowledged} of {wanted} replicas confirmed it (REDIS_WAIT_REPLICAS)"
    )]
    NotReplicated { acknowledged: i64, wanted: u32 },
}

impl KvError {
    /// Whether the store is unreachable or overloaded (clients get 503), rather than holding
    /// something it cannot read. Every Redis failure counts: the commands are fixed, so what
    /// fails is the connection, a timeout or a server that is loading or read-only.
    pub fn is_transient(&self) -> bool {
        match &self.cause {
            Cause::Database(err) => crate::store::is_transient(err),
            Cause::Redis(_) | Cause::NotReplicated { .. } => true,
            Cause::Corrupt(_) => false,
        }
    }
}

type Outcome<T> = Result<T, Cause>;

trait Named<T> {
    fn named(self, op: &'static str, key: &str) -> Result<T, KvError>;
}

impl<T> Named<T> for Outcome<T> {
    fn named(self, op: &'static str, key: &str) -> Result<T, KvError> {
        self.map_err(|cause| KvError {
            op,
            namespace: namespace(key).to_string(),
            cause,
        })
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

/// The database backend: table `kv_entries` (`store::kv`).
#[derive(Clone)]
pub struct DbKv {
    db: Db,
    prefix: Arc<str>,
    clock: Clock,
}

/// The Redis backend.
#[derive(Clone)]
pub struct RedisKv {
    conn: link::Link,
    prefix: Arc<str>,
    hit_script: Arc<redis::Script>,
    /// Replicas that must confirm a write of a key before it is acknowledged.
    wait: ReplicaWait,
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

/// A single-use key claimed for a database transaction ([`Kv::claim`]); it is consumed when
/// the transaction commits and [`Kv::settle`] confirms it.
#[derive(Debug)]
pub struct Claim {
    value: String,
    /// On Redis: the stored key, deleted by `settle`.
    pending: Option<String>,
}

impl Claim {
    /// The value stored under the key.
    pub fn value(&self) -> &str {
        &self.value
    }
}

impl Kv {
    /// Redis when `REDIS_URL`, `REDIS_HOST` or Sentinel is set — start-up fails when it cannot
    /// be reached (or its certificate does not chain to `REDIS_TLS_CERT`), and warns when its
    /// settings can lose or evict keys — otherwise the database `db`.
    pub async fn connect(config: &Config, db: &Db, clock: Clock) -> anyhow::Result<Kv> {
        match &config.redis {
            Some(redis) => {
                let masked = describe(redis);
                let kv = Self::redis_with(redis, &config.redis_key_prefix)
                    .await
                    .with_context(|| format!("cannot connect to Redis at {masked}"))?;
                if let Kv::Redis(redis) = &kv {
                    for warning in redis.durability_warnings().await {
                        tracing::warn!(redis = %masked, "{warning}; see docs/keys-and-limits.md");
                    }
                }
                Ok(kv)
            }
            None => Ok(Self::database_with_clock(
                db.clone(),
                &config.redis_key_prefix,
                clock,
            )),
        }
    }

    /// The database backend with the clock that decides expiry.
    pub fn database_with_clock(db: Db, prefix: &str, clock: Clock) -> Kv {
        Kv::Db(DbKv {
            db,
            prefix: prefix.into(),
            clock,
        })
    }

    /// The Redis backend at `url` (`redis://` or `rediss://`, public roots), checked with a
    /// `PING`.
    pub async fn redis(url: &str, prefix: &str) -> anyhow::Result<Kv> {
        let config = RedisConfig {
            target: RedisTarget::Direct(SecretString::from(url.to_string())),
            tls: if url.starts_with("rediss://") {
                RedisTls::PublicRoots
            } else {
                RedisTls::Off
            },
            wait: ReplicaWait {
                replicas: 0,
                timeout: Duration::ZERO,
            },
        };
        Self::redis_with(&config, prefix).await
    }

    /// The Redis backend `config` describes (one server or Sentinel, TLS), checked with a
    /// `PING`.
    pub async fn redis_with(config: &RedisConfig, prefix: &str) -> anyhow::Result<Kv> {
        let timeout = REDIS_TIMEOUT + config.wait.timeout;
        let mut conn = link::Link::open(config, timeout).await?;
        redis::cmd("PING").query_async::<()>(&mut conn).await?;
        Ok(Kv::Redis(RedisKv {
            conn,
            prefix: prefix.into(),
            hit_script: Arc::new(redis::Script::new(HIT_SCRIPT)),
            wait: config.wait,
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
    pub async fn put(&self, key: &str, value: &str, ttl: Duration) -> Result<(), KvError> {
        match self {
            Self::Db(kv) => kv.put(&mut kv.db.conn(), key, value, ttl).await,
            Self::Redis(kv) => kv.put(key, value, ttl).await,
        }
        .named("put", key)
    }

    /// The value of `key`; `None` when absent or expired. (The value of a counter is its count.)
    pub async fn get(&self, key: &str) -> Result<Option<String>, KvError> {
        match self {
            Self::Db(kv) => kv.get(key).await,
            Self::Redis(kv) => kv.get(key).await,
        }
        .named("get", key)
    }

    /// Gets and deletes `key` in one step, for single-use keys: of concurrent `take`s of one key
    /// exactly one gets the value.
    pub async fn take(&self, key: &str) -> Result<Option<String>, KvError> {
        match self {
            Self::Db(kv) => kv.take(&mut kv.db.conn(), key).await,
            Self::Redis(kv) => kv.take(key).await,
        }
        .named("take", key)
    }

    /// Claims the single-use `key` for the work of `tx`, so that the key is consumed exactly
    /// when that work commits: on the database backend the key is deleted by a statement of `tx`
    /// (a rollback keeps it); on Redis it is only read here, and [`Kv::settle`] deletes it after
    /// the commit, so a failure — or a crash — before the commit leaves it usable. `None` when
    /// the key is absent or expired.
    pub async fn claim(&self, tx: &mut Tx, key: &str) -> Result<Option<Claim>, KvError> {
        match self {
            Self::Db(kv) => kv.take(&mut tx.conn(), key).await.map(|value| {
                value.map(|value| Claim {
                    value,
                    pending: None,
                })
            }),
            Self::Redis(kv) => kv.get(key).await.map(|value| {
                value.map(|value| Claim {
                    value,
                    pending: Some(kv.key(key)),
                })
            }),
        }
        .named("claim", key)
    }

    /// Stores `value` under `key` for `ttl` with the work of `tx`: on the database backend by a
    /// statement of `tx` (a rollback removes it); on Redis at once — a rolled-back transaction
    /// then leaves a key that nothing refers to until it expires (callers write keys that are
    /// harmless alone, such as a fresh webhook secret).
    pub async fn put_in(
        &self,
        tx: &mut Tx,
        key: &str,
        value: &str,
        ttl: Duration,
    ) -> Result<(), KvError> {
        match self {
            Self::Db(kv) => kv.put(&mut tx.conn(), key, value, ttl).await,
            Self::Redis(kv) => kv.put(key, value, ttl).await,
        }
        .named("put", key)
    }

    /// Deletes `key` with the work of `tx`: on the database backend by a statement of `tx`; on
    /// Redis at once (callers delete keys whose loss is harmless if `tx` rolls back).
    pub async fn delete_in(&self, tx: &mut Tx, key: &str) -> Result<(), KvError> {
        match self {
            Self::Db(kv) => kv.delete(&mut tx.conn(), key).await,
            Self::Redis(kv) => kv.delete(key).await,
        }
        .named("delete", key)
    }

    /// Completes `claim` once its transaction has committed: `true` when this claim consumed
    /// the key, `false` when a concurrent one consumed it first (possible on Redis only; the
    /// caller must then not act on the claim).
    pub async fn settle(&self, claim: Claim) -> Result<bool, KvError> {
        let Some(stored) = claim.pending else {
            return Ok(true);
        };
        let Self::Redis(kv) = self else {
            return Ok(true);
        };
        let key = stored.strip_prefix(&*kv.prefix).unwrap_or_default();
        let taken = kv.take_stored(&stored).await.named("settle", key)?;
        Ok(taken.as_deref() == Some(claim.value.as_str()))
    }

    /// Removes `key` (nothing happens when it is absent).
    pub async fn delete(&self, key: &str) -> Result<(), KvError> {
        match self {
            Self::Db(kv) => kv.delete(&mut kv.db.conn(), key).await,
            Self::Redis(kv) => kv.delete(key).await,
        }
        .named("delete", key)
    }

    /// The original's entry `_kvModel:<id>` (a MessagePack map, `docs/switch-over.md`), on
    /// Redis; there are none on the database backend.
    pub async fn original_get(&self, id: &str) -> Result<Option<Vec<u8>>, KvError> {
        match self {
            Self::Db(_) => Ok(None),
            Self::Redis(kv) => kv.bytes("GET", &original_key(id)).await,
        }
        .named("get", ORIGINAL_NAMESPACE)
    }

    /// Gets and deletes the original's entry `_kvModel:<id>` in one step (`GETDEL`).
    pub async fn original_take(&self, id: &str) -> Result<Option<Vec<u8>>, KvError> {
        match self {
            Self::Db(_) => Ok(None),
            Self::Redis(kv) => kv.bytes("GETDEL", &original_key(id)).await,
        }
        .named("take", ORIGINAL_NAMESPACE)
    }

    /// Stores `value` as the original's entry `_kvModel:<id>` for `ttl`; on the database backend
    /// (which the original never read) it is an error.
    pub async fn original_put(&self, id: &str, value: &[u8], ttl: Duration) -> Result<(), KvError> {
        match self {
            Self::Db(_) => Err(Cause::Corrupt(
                "entries in the original's format need Redis".into(),
            )),
            Self::Redis(kv) => kv.put_bytes(&original_key(id), value, ttl).await,
        }
        .named("put", ORIGINAL_NAMESPACE)
    }

    /// Removes the original's entry `_kvModel:<id>`, if there is one.
    pub async fn original_delete(&self, id: &str) -> Result<(), KvError> {
        match self {
            Self::Db(_) => Ok(()),
            Self::Redis(kv) => kv.bytes("DEL", &original_key(id)).await.map(drop),
        }
        .named("delete", ORIGINAL_NAMESPACE)
    }

    /// Counts a hit on the fixed-window counter `key`: the first hit starts a window of length
    /// `window` with count 1; later hits in the window increment it atomically; the first hit
    /// after the window starts a new one.
    pub async fn hit(&self, key: &str, window: Duration) -> Result<Hit, KvError> {
        match self {
            Self::Db(kv) => kv.hit(key, window).await,
            Self::Redis(kv) => kv.hit(key, window).await,
        }
        .named("hit", key)
    }

    /// Deletes expired entries and returns how many. Expired entries are already invisible;
    /// this only reclaims space. Redis expires keys itself: always 0 there.
    pub async fn purge_expired(&self) -> Result<u64, KvError> {
        match self {
            Self::Db(kv) => kv.purge_expired().await.named("purge", ""),
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

/// The key of the original's entry for `id` (its KV model's name, no `REDIS_KEY_PREFIX`).
fn original_key(id: &str) -> String {
    format!("_kvModel:{id}")
}

/// How errors name the original's entries (their ids can be secrets).
const ORIGINAL_NAMESPACE: &str = "_kvModel:";

/// `key` as stored: with `REDIS_KEY_PREFIX` in front.
fn prefixed(prefix: &str, key: &str) -> String {
    format!("{prefix}{key}")
}

impl DbKv {
    fn key(&self, key: &str) -> String {
        prefixed(&self.prefix, key)
    }

    /// Stores `key` where `conn` runs statements (the pool, or a transaction).
    async fn put(&self, conn: &mut Conn<'_>, key: &str, value: &str, ttl: Duration) -> Outcome<()> {
        let expires_at = expiry(self.clock.now(), ttl);
        Ok(store::kv::put(conn, &self.key(key), value, expires_at).await?)
    }

    async fn get(&self, key: &str) -> Outcome<Option<String>> {
        let now = self.clock.now();
        Ok(store::kv::get(&mut self.db.conn(), &self.key(key), now).await?)
    }

    /// Deletes `key` where `conn` runs statements (the pool, or a transaction whose rollback
    /// brings it back) and returns its value.
    async fn take(&self, conn: &mut Conn<'_>, key: &str) -> Outcome<Option<String>> {
        Ok(store::kv::take(conn, &self.key(key), self.clock.now()).await?)
    }

    /// Deletes `key` where `conn` runs statements (the pool, or a transaction).
    async fn delete(&self, conn: &mut Conn<'_>, key: &str) -> Outcome<()> {
        Ok(store::kv::delete(conn, &self.key(key)).await?)
    }

    async fn hit(&self, key: &str, window: Duration) -> Outcome<Hit> {
        let now = self.clock.now();
        let counter = store::kv::hit(
            &mut self.db.conn(),
            &self.key(key),
            expiry(now, window),
            now,
        )
        .await?
        .ok_or_else(|| Cause::Corrupt("the counter upsert returned no row".into()))?;
        Ok(Hit {
            count: u64::try_from(counter.count).unwrap_or(0),
            reset_in: (counter.expires_at - now)
                .to_std()
                .unwrap_or(Duration::ZERO),
        })
    }

    async fn purge_expired(&self) -> Outcome<u64> {
        Ok(store::kv::purge_expired(&mut self.db.conn(), self.clock.now()).await?)
    }
}

impl RedisKv {
    fn key(&self, key: &str) -> String {
        prefixed(&self.prefix, key)
    }

    /// A connection handle (cheap: one multiplexed connection, reconnected on failure).
    fn conn(&self) -> link::Link {
        self.conn.clone()
    }

    async fn put(&self, key: &str, value: &str, ttl: Duration) -> Outcome<()> {
        self.put_bytes(&self.key(key), value.as_bytes(), ttl).await
    }

    async fn get(&self, key: &str) -> Outcome<Option<String>> {
        Ok(redis::cmd("GET")
            .arg(self.key(key))
            .query_async(&mut self.conn())
            .await?)
    }

    async fn take(&self, key: &str) -> Outcome<Option<String>> {
        self.take_stored(&self.key(key)).await
    }

    /// `GETDEL` of a key as stored (prefixed).
    async fn take_stored(&self, stored: &str) -> Outcome<Option<String>> {
        Ok(redis::cmd("GETDEL")
            .arg(stored)
            .query_async(&mut self.conn())
            .await?)
    }

    /// `command` (`GET`, `GETDEL`, `DEL`) on a key as stored, its answer as bytes.
    async fn bytes(&self, command: &str, stored: &str) -> Outcome<Option<Vec<u8>>> {
        let value: redis::Value = redis::cmd(command)
            .arg(stored)
            .query_async(&mut self.conn())
            .await?;
        Ok(match value {
            redis::Value::BulkString(bytes) => Some(bytes),
            _ => None,
        })
    }

    /// `SET … PX` of a key as stored (prefixed, or the original's), followed on the same
    /// connection by `WAIT` when replicas must confirm it (`REDIS_WAIT_REPLICAS`): a primary
    /// lost before replicating would otherwise take an acknowledged key with it.
    async fn put_bytes(&self, stored: &str, value: &[u8], ttl: Duration) -> Outcome<()> {
        let mut pipe = redis::pipe();
        pipe.cmd("SET")
            .arg(stored)
            .arg(value)
            .arg("PX")
            .arg(millis(ttl.min(MAX_TTL)).max(1))
            .ignore();
        if self.wait.replicas == 0 {
            pipe.query_async::<()>(&mut self.conn()).await?;
            return Ok(());
        }
        pipe.cmd("WAIT")
            .arg(self.wait.replicas)
            .arg(millis(self.wait.timeout));
        let (acknowledged,): (i64,) = pipe.query_async(&mut self.conn()).await?;
        if acknowledged < i64::from(self.wait.replicas) {
            return Err(Cause::NotReplicated {
                acknowledged,
                wanted: self.wait.replicas,
            });
        }
        Ok(())
    }

    async fn delete(&self, key: &str) -> Outcome<()> {
        redis::cmd("DEL")
            .arg(self.key(key))
            .query_async::<()>(&mut self.conn())
            .await?;
        Ok(())
    }

    async fn hit(&self, key: &str, window: Duration) -> Outcome<Hit> {
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

    /// What in the server's settings can lose keys: no persistence (a restart forgets every
    /// outstanding lead key and webhook secret) or an eviction policy other than `noeviction`
    /// under a memory limit (every key here has an expiry, so `volatile-*` policies evict them
    /// too). Servers that refuse `CONFIG GET` (managed services) cannot be checked: say so.
    async fn durability_warnings(&self) -> Vec<String> {
        let conn = self.conn();
        let config = |name: &'static str| {
            let mut conn = conn.clone();
            async move {
                redis::cmd("CONFIG")
                    .arg("GET")
                    .arg(name)
                    .query_async::<Vec<String>>(&mut conn)
                    .await
                    .map(|pair| pair.get(1).cloned().unwrap_or_default())
            }
        };
        let (appendonly, save, policy, maxmemory) = match (
            config("appendonly").await,
            config("save").await,
            config("maxmemory-policy").await,
            config("maxmemory").await,
        ) {
            (Ok(a), Ok(s), Ok(p), Ok(m)) => (a, s, p, m),
            (Err(err), ..) | (_, Err(err), ..) | (_, _, Err(err), _) | (.., Err(err)) => {
                tracing::info!(error = %err, "cannot read the Redis settings (CONFIG GET); their durability is not checked");
                return Vec::new();
            }
        };
        let mut warnings = Vec::new();
        if appendonly != "yes" && save.trim().is_empty() {
            warnings.push(
                "Redis keeps nothing on disk (appendonly no, save \"\"): a restart loses every \
                 outstanding lead verification key and webhook secret"
                    .to_string(),
            );
        }
        if maxmemory != "0" && policy != "noeviction" {
            warnings.push(format!(
                "Redis evicts keys under memory pressure (maxmemory-policy {policy}): lead keys \
                 and webhook secrets can disappear before they expire; use noeviction"
            ));
        }
        warnings
    }
}

/// Where Redis is, for messages: the URL with its password masked, or the sentinels.
fn describe(config: &RedisConfig) -> String {
    let trust = match &config.tls {
        RedisTls::CaFile { path, .. } => format!(
            ", trusting only certificates issued by the CA of REDIS_TLS_CERT ({})",
            path.display()
        ),
        RedisTls::PublicRoots => ", over TLS with the public root certificates".into(),
        RedisTls::Off => String::new(),
    };
    let place = match &config.target {
        RedisTarget::Direct(url) => {
            format!("{} (REDIS_URL)", mask_url_password(url.expose_secret()))
        }
        RedisTarget::Sentinel(s) => {
            let nodes: Vec<String> = s
                .nodes
                .iter()
                .map(|n| format!("{}:{}", n.host, n.port))
                .collect();
            format!(
                "master group {} of the sentinels {} (REDIS_SENTINELS)",
                s.master_name,
                nodes.join(", ")
            )
        }
    };
    format!("{place}{trust}")
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
    fn expiries_are_capped() {
        let now = Clock::system().now();
        let far = expiry(now, Duration::MAX);
        assert!(
            crate::store::values::format_timestamp(&far).len() == "2030-01-01T00:00:00.000Z".len()
        );
        assert_eq!(
            expiry(now, Duration::from_millis(1500)) - now,
            TimeDelta::milliseconds(1500)
        );
    }

    #[test]
    fn errors_name_the_namespace_not_the_key() {
        let err: Result<(), KvError> =
            Err(Cause::Corrupt("x".into())).named("take", "lead-key:s3cr3t");
        let text = format!("{:#}", anyhow::Error::new(err.unwrap_err()));
        assert!(text.contains("lead-key"), "{text}");
        assert!(!text.contains("s3cr3t"), "{text}");
    }
}
