//! The connection to Redis as the settings describe it: one server (a reconnecting
//! [`ConnectionManager`]), or the primary the sentinels name, followed through a failover.
//! Both speak [`ConnectionLike`], so commands and scripts run the same on either.

use std::sync::{Arc, Mutex as SyncMutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use redis::aio::{
    ConnectionLike, ConnectionManager, ConnectionManagerConfig, MultiplexedConnection,
};
use redis::sentinel::{SentinelClient, SentinelClientBuilder, SentinelServerType};
use redis::{
    AsyncConnectionConfig, Client, Cmd, ConnectionAddr, Pipeline, RedisError, RedisFuture,
    RedisResult, TlsCertificates, TlsMode, Value,
};
use secrecy::ExposeSecret;
use tokio::sync::Mutex;

use crate::config::{RedisConfig, RedisTarget, RedisTls, SentinelConfig};

/// How long a command waits for the primary during a failover (the sentinels noticing the
/// primary is gone, electing a replica and promoting it) before it fails as transient (503).
pub const FAILOVER_PATIENCE: Duration = Duration::from_secs(8);

/// A connection to Redis; cheap to clone (clones share one multiplexed connection).
#[derive(Clone)]
pub enum Link {
    Direct(ConnectionManager),
    Sentinel(Arc<SentinelLink>),
}

/// The primary the sentinels name, asked again whenever it fails or turns out to be a replica.
pub struct SentinelLink {
    sentinels: Mutex<SentinelClient>,
    /// The connection in use and how many times it was replaced (so that of several requests
    /// seeing one failure, only the first asks the sentinels).
    current: SyncMutex<Option<(u64, MultiplexedConnection)>>,
    connection: AsyncConnectionConfig,
    db: i64,
}

impl Link {
    /// Connects as `config` says; `timeout` bounds connecting and every answer.
    pub async fn open(config: &RedisConfig, timeout: Duration) -> anyhow::Result<Link> {
        let certificates = match &config.tls {
            RedisTls::CaFile { pem, .. } => Some(TlsCertificates {
                client_tls: None,
                root_cert: Some(pem.clone()),
            }),
            RedisTls::Off | RedisTls::PublicRoots => None,
        };
        match &config.target {
            RedisTarget::Direct(url) => {
                let url = url.expose_secret();
                let client = match certificates {
                    Some(certs) => Client::build_with_tls(url, certs),
                    None => Client::open(url),
                }
                .context("invalid Redis URL")?;
                let manager = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(timeout))
                    .set_response_timeout(Some(timeout))
                    .set_number_of_retries(2);
                let conn = ConnectionManager::new_with_config(client, manager).await?;
                Ok(Link::Direct(conn))
            }
            RedisTarget::Sentinel(sentinel) => {
                let client = sentinel_client(sentinel, &config.tls, certificates)?;
                let link = SentinelLink {
                    sentinels: Mutex::new(client),
                    current: SyncMutex::new(None),
                    connection: AsyncConnectionConfig::new()
                        .set_connection_timeout(Some(timeout))
                        .set_response_timeout(Some(timeout)),
                    db: sentinel.database,
                };
                link.reconnect(None).await.with_context(|| {
                    format!(
                        "no primary for master group {:?} from the sentinels",
                        sentinel.master_name
                    )
                })?;
                Ok(Link::Sentinel(Arc::new(link)))
            }
        }
    }
}

fn sentinel_client(
    config: &SentinelConfig,
    tls: &RedisTls,
    certificates: Option<TlsCertificates>,
) -> anyhow::Result<SentinelClient> {
    let nodes = config
        .nodes
        .iter()
        .map(|node| ConnectionAddr::Tcp(node.host.clone(), node.port));
    let mut builder =
        SentinelClientBuilder::new(nodes, &config.master_name, SentinelServerType::Master)?
            .set_client_to_redis_db(config.database);
    if let Some(username) = &config.username {
        builder = builder.set_client_to_redis_username(username);
    }
    if let Some(password) = &config.password {
        builder = builder.set_client_to_redis_password(password.expose_secret());
    }
    if let Some(password) = &config.sentinel_password {
        builder = builder.set_client_to_sentinel_password(password.expose_secret());
    }
    if *tls != RedisTls::Off {
        builder = builder.set_client_to_redis_tls_mode(TlsMode::Secure);
    }
    if let Some(certs) = certificates {
        builder = builder.set_client_to_redis_certificates(certs);
    }
    Ok(builder.build()?)
}

/// Whether `err` means "this is not (or no longer) the primary, ask again": the connection
/// failed or timed out, or the server is a replica, loading, or sees its primary down.
fn means_failover(err: &RedisError) -> bool {
    err.is_io_error()
        || err.is_connection_refusal()
        || err.is_connection_dropped()
        || err.is_timeout()
        || matches!(
            err.code(),
            Some("READONLY" | "LOADING" | "MASTERDOWN" | "TRYAGAIN")
        )
}

impl SentinelLink {
    /// Asks the sentinels for the primary and connects to it (they check its `ROLE`), unless
    /// another caller has already replaced connection `seen`.
    async fn reconnect(&self, seen: Option<u64>) -> RedisResult<(u64, MultiplexedConnection)> {
        let mut sentinels = self.sentinels.lock().await;
        if let Some(current) = self.snapshot()
            && Some(current.0) != seen
        {
            return Ok(current);
        }
        if seen.is_some() {
            tracing::warn!("the Redis primary failed; asking the sentinels which one to use");
        }
        let client = sentinels.async_get_client().await?;
        let conn = client
            .get_multiplexed_async_connection_with_config(&self.connection)
            .await?;
        let generation = seen.map_or(0, |g| g + 1);
        tracing::info!(
            primary = %client.get_connection_info().addr(),
            "connected to the Redis primary named by the sentinels"
        );
        let fresh = (generation, conn);
        if let Ok(mut current) = self.current.lock() {
            *current = Some(fresh.clone());
        }
        Ok(fresh)
    }

    fn snapshot(&self) -> Option<(u64, MultiplexedConnection)> {
        self.current.lock().ok().and_then(|current| current.clone())
    }

    /// Sends `request` to the primary; on a failover-like error asks the sentinels again and
    /// resends it, for at most [`FAILOVER_PATIENCE`]. (tms's commands are safe to resend: `SET`
    /// and `DEL` are idempotent; a `GETDEL` or counter hit whose answer was lost with the
    /// primary was lost with its effect, unless the replica had received it.)
    async fn run(&self, request: Request<'_>) -> RedisResult<Answer> {
        let started = Instant::now();
        let mut pause = Duration::from_millis(50);
        let mut seen = None;
        loop {
            let attempt = match self.snapshot() {
                Some((generation, conn)) if Some(generation) != seen => Ok((generation, conn)),
                _ => self.reconnect(seen).await,
            };
            // Until the sentinels have promoted a replica they name the dead primary, and
            // asking them fails whatever the error's kind: wait for them too.
            let (err, retry) = match attempt {
                Ok((generation, mut conn)) => match request.send(&mut conn).await {
                    Ok(value) => return Ok(value),
                    Err(err) => {
                        seen = Some(generation);
                        let retry = means_failover(&err);
                        (err, retry)
                    }
                },
                Err(err) => (err, true),
            };
            if !retry || started.elapsed() + pause > FAILOVER_PATIENCE {
                return Err(err);
            }
            tracing::debug!(error = %err, "Redis primary unavailable; asking the sentinels again");
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(500));
        }
    }
}

/// A command or a pipeline, as [`ConnectionLike`] passes them.
#[derive(Clone, Copy)]
enum Request<'a> {
    One(&'a Cmd),
    Many(&'a Pipeline, usize, usize),
}

enum Answer {
    One(Value),
    Many(Vec<Value>),
}

impl Request<'_> {
    async fn send(self, conn: &mut MultiplexedConnection) -> RedisResult<Answer> {
        match self {
            Request::One(cmd) => conn.req_packed_command(cmd).await.map(Answer::One),
            Request::Many(pipeline, offset, count) => conn
                .req_packed_commands(pipeline, offset, count)
                .await
                .map(Answer::Many),
        }
    }
}

fn unexpected() -> RedisError {
    RedisError::from((
        redis::ErrorKind::Client,
        "a pipeline answered as a single command",
    ))
}

impl ConnectionLike for Link {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Link::Direct(conn) => conn.req_packed_command(cmd),
            Link::Sentinel(link) => Box::pin(async move {
                match link.run(Request::One(cmd)).await? {
                    Answer::One(value) => Ok(value),
                    Answer::Many(_) => Err(unexpected()),
                }
            }),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Link::Direct(conn) => conn.req_packed_commands(pipeline, offset, count),
            Link::Sentinel(link) => Box::pin(async move {
                match link.run(Request::Many(pipeline, offset, count)).await? {
                    Answer::Many(values) => Ok(values),
                    Answer::One(_) => Err(unexpected()),
                }
            }),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Link::Direct(conn) => conn.get_db(),
            Link::Sentinel(link) => link.db,
        }
    }
}
