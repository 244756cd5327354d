//! The pieces of `tests/replicas_behind_lb.rs`: `tms` replicas and HAProxy as child processes
//! killed when dropped (a panic included), the HAProxy configuration of the recipe in
//! docs/operations.md, the test's own NATS stream and Redis keys, and a client that sends a POST
//! again with its `Idempotency-Key` until it has an answer of its own.
#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures_util::StreamExt;

use crate::common::*;

/// The address HAProxy connects to the replicas from: the only `TRUSTED_PROXIES` entry.
pub const BALANCER_SOURCE: &str = "127.0.0.2";
/// Give up on an operation, or on the system settling, after this long.
pub const PATIENCE: Duration = Duration::from_secs(45);

// ---------------------------------------------------------------------------------------------
// The processes: replicas and the balancer, killed when dropped (a panic included)
// ---------------------------------------------------------------------------------------------

/// A child process killed (SIGKILL) and reaped when dropped; its output goes to `log`.
pub struct Process {
    child: Option<Child>,
    log: PathBuf,
}

impl Process {
    pub fn spawn(command: &mut Command, log: PathBuf) -> Process {
        let out = std::fs::File::create(&log).expect("cannot create a log file");
        let err = out.try_clone().expect("cannot share the log file");
        let child = command
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {command:?}: {e}"));
        Process {
            child: Some(child),
            log,
        }
    }

    /// SIGKILL, as `kill -9` does, and waits for the process to be gone.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Panics with the process's output when it has exited.
    pub fn assert_running(&mut self, what: &str) {
        if let Some(child) = self.child.as_mut()
            && let Ok(Some(status)) = child.try_wait()
        {
            panic!("{what} exited ({status}): {}", self.output());
        }
    }

    pub fn output(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            let output = self.output();
            let tail: Vec<&str> = output.lines().rev().take(60).collect();
            eprintln!(
                "--- the last lines of {}:\n{}",
                self.log.display(),
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        }
    }
}

pub struct Replica {
    pub name: String,
    pub port: u16,
    pub process: Process,
}

impl Replica {
    pub fn start(name: &str, env: &HashMap<String, String>, logs: &Path) -> Replica {
        let port = SmtpSink::free_port();
        let mut command = Command::new(env!("CARGO_BIN_EXE_tms"));
        command
            .arg("serve")
            .env_clear()
            .envs(env)
            .env("PORT", port.to_string());
        Replica {
            name: name.to_string(),
            port,
            process: Process::spawn(&mut command, logs.join(format!("{name}.log"))),
        }
    }

    pub async fn wait_ready(&mut self, http: &reqwest::Client) {
        let url = format!("http://127.0.0.1:{}/health/ready", self.port);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            self.process.assert_running(&self.name);
            if let Ok(answer) = http.get(&url).send().await
                && answer.status() == 200
            {
                return;
            }
            assert!(Instant::now() < deadline, "{} is not ready", self.name);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// The HAProxy configuration of the test (and of the recipe in docs/operations.md): round robin
/// over the replicas, health checks on `/health/ready`, connections to them from
/// [`BALANCER_SOURCE`], the client appended to `X-Forwarded-For`; a request whose connection
/// failed goes to another replica (`option redispatch`); one that reached a replica and got no
/// answer is sent again only when that is safe: a GET, or a request with an `Idempotency-Key`.
pub fn haproxy_config(port: u16, replicas: &[Replica]) -> String {
    let mut config = format!(
        "global
    maxconn 1000
    log stderr format raw local0 info

defaults
    mode http
    log global
    option httplog
    option dontlog-normal
    timeout connect 1s
    timeout client 30s
    timeout server 30s
    timeout check 1s
    option forwardfor
    retries 3
    option redispatch 1
    retry-on conn-failure empty-response

frontend tms
    bind 127.0.0.1:{port}
    http-request disable-l7-retry unless METH_GET || {{ req.hdr(idempotency-key) -m found }}
    default_backend replicas

backend replicas
    balance roundrobin
    option httpchk GET /health/ready
    http-check expect status 200
    default-server check inter 500ms fall 2 rise 2 source {BALANCER_SOURCE}
    http-response set-header X-Replica %[srv_name]
"
    );
    for replica in replicas {
        config.push_str(&format!(
            "    server {} 127.0.0.1:{}\n",
            replica.name, replica.port
        ));
    }
    config
}

pub fn haproxy_installed() -> Result<(), String> {
    match Command::new("haproxy").arg("-v").output() {
        Ok(out) if out.status.success() => Ok(()),
        _ => Err("haproxy is not installed (apt-get install haproxy)".into()),
    }
}

pub fn nats_url() -> String {
    std::env::var("TMS_TEST_NATS_URL")
        .ok()
        .filter(|u| !u.trim().is_empty())
        .unwrap_or_else(|| "nats://127.0.0.1:4222".into())
}

/// The test's own NATS stream, deleted when dropped.
pub struct Stream {
    pub url: String,
    pub name: String,
}

impl Stream {
    /// Every message of the stream: (Nats-Msg-Id, subject).
    pub async fn messages(&self) -> Vec<(String, String)> {
        use async_nats::jetstream::consumer;
        let client = async_nats::connect(self.url.as_str()).await.unwrap();
        let jetstream = async_nats::jetstream::new(client);
        let mut stream = jetstream.get_stream(&self.name).await.unwrap();
        let total = stream.info().await.unwrap().state.messages as usize;
        let consumer = stream
            .create_consumer(consumer::pull::Config {
                ack_policy: consumer::AckPolicy::None,
                ..Default::default()
            })
            .await
            .unwrap();
        let mut out = Vec::with_capacity(total);
        let deadline = Instant::now() + Duration::from_secs(10);
        while out.len() < total {
            assert!(Instant::now() < deadline, "read {} of {total}", out.len());
            let mut batch = consumer.fetch().max_messages(500).messages().await.unwrap();
            while let Some(Ok(message)) = batch.next().await {
                let id = message
                    .headers
                    .as_ref()
                    .and_then(|h| h.get(async_nats::header::NATS_MESSAGE_ID))
                    .map(|v| v.as_str().to_string())
                    .unwrap_or_default();
                out.push((id, message.subject.to_string()));
            }
        }
        out
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        let (url, name) = (self.url.clone(), self.name.clone());
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async {
                if let Ok(client) = async_nats::connect(url.as_str()).await {
                    let _ = async_nats::jetstream::new(client)
                        .delete_stream(&name)
                        .await;
                }
            });
        })
        .join();
    }
}

/// The test's Redis keys, removed when dropped.
pub struct RedisKeys(pub String);

impl Drop for RedisKeys {
    fn drop(&mut self) {
        remove_redis_keys(&redis_url(), &self.0);
    }
}

// ---------------------------------------------------------------------------------------------
// A client of the balancer that retries like a careful client: with its Idempotency-Key
// ---------------------------------------------------------------------------------------------

/// What the clients went through, summed over every request.
#[derive(Default)]
pub struct Tally {
    pub requests: AtomicUsize,
    /// No answer (connection reset) or a 502/503/504 from the balancer: sent again.
    pub lost: AtomicUsize,
    /// 409 "in progress": the key was held by another request (maybe on the killed replica).
    pub in_progress: AtomicUsize,
    /// Operations that had to be sent again at least once (after a lost answer or while their
    /// key was in progress).
    pub interrupted: AtomicUsize,
    /// Steps whose first try did the work but died before its answer was kept, so that the try
    /// again was refused by the state the first left (docs/idempotency.md, "Which answers are
    /// kept"), by step: `verify`, `onboard`, `provision`. (A sign-up is done again instead.)
    pub done_unanswered: std::sync::Mutex<BTreeMap<&'static str, usize>>,
    /// Answered from the kept answer (`Idempotency-Replayed: true`).
    pub replayed: AtomicUsize,
    pub by_replica: std::sync::Mutex<BTreeMap<String, usize>>,
}

impl Tally {
    pub fn count(&self, field: &AtomicUsize) {
        field.fetch_add(1, Ordering::Relaxed);
    }
}

/// A client coming from `address` (a loopback address of its own: the replicas see it, through
/// the balancer's `X-Forwarded-For`, as a client of its own).
pub fn client_from(address: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(address.parse::<IpAddr>().unwrap())
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

pub struct Answer {
    pub status: u16,
    pub body: Value,
    pub replica: String,
    pub replayed: bool,
    /// `Retry-After`, in seconds.
    pub retry_after: Option<u64>,
    /// Whether this answer came after the request had been sent again (an earlier try lost
    /// its answer, or found its key in progress).
    pub interrupted: bool,
}

pub async fn send(
    client: &reqwest::Client,
    url: &str,
    bearer: Option<&str>,
    body: Option<&Value>,
    key: Option<&str>,
) -> Result<Answer, reqwest::Error> {
    let mut request = client.post(url);
    if let Some(bearer) = bearer {
        request = request.bearer_auth(bearer);
    }
    if let Some(body) = body {
        request = request.json(body);
    }
    if let Some(key) = key {
        request = request.header("idempotency-key", key);
    }
    let response = request.send().await?;
    let status = response.status().as_u16();
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let replica = header("x-replica").unwrap_or_default();
    let replayed = header("idempotency-replayed").as_deref() == Some("true");
    let retry_after = header("retry-after").and_then(|v| v.parse().ok());
    let text = response.text().await?;
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    Ok(Answer {
        status,
        body,
        replica,
        replayed,
        retry_after,
        interrupted: false,
    })
}

/// `POST url` with `key` until it has an answer of its own: sent again after a lost answer, a
/// 409 "in progress" or a 429 (after their `Retry-After`), as the Idempotency-Key contract
/// allows (docs/idempotency.md).
pub async fn post_until_answered(
    client: &reqwest::Client,
    tally: &Tally,
    url: &str,
    bearer: Option<&str>,
    body: &Value,
    key: &str,
) -> Answer {
    let deadline = Instant::now() + PATIENCE;
    let mut again = false;
    let mut history = Vec::new();
    loop {
        assert!(
            Instant::now() < deadline,
            "POST {url} (Idempotency-Key {key}) never answered: {history:?}"
        );
        tally.count(&tally.requests);
        let answer = match send(client, url, bearer, Some(body), Some(key)).await {
            Ok(answer) => answer,
            Err(err) => {
                history.push(format!("{:.1?} {err}", deadline - Instant::now()));
                again = true;
                tally.count(&tally.lost);
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        *tally
            .by_replica
            .lock()
            .unwrap()
            .entry(answer.replica.clone())
            .or_default() += 1;
        let message = answer.body["error"]["message"].as_str().unwrap_or_default();
        history.push(format!(
            "{:.1?} {} {} {message}",
            deadline - Instant::now(),
            answer.replica,
            answer.status
        ));
        match answer.status {
            502..=504 => tally.count(&tally.lost),
            409 if message.contains("in progress") => tally.count(&tally.in_progress),
            429 => {}
            _ => {
                if again {
                    tally.count(&tally.interrupted);
                }
                if answer.replayed {
                    tally.count(&tally.replayed);
                }
                return Answer {
                    interrupted: again,
                    ..answer
                };
            }
        }
        again = true;
        // As a client should: every try counts against its rate limit.
        let pause = answer.retry_after.map_or(250, |s| s * 1000);
        tokio::time::sleep(Duration::from_millis(pause)).await;
    }
}
