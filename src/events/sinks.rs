//! Where lifecycle events go (`EVENT_SINK`, `docs/events.md`): a JSON-lines file (the embedded
//! default), an HTTP endpoint (signed), NATS JetStream, or the local command runner that plays
//! the provisioning pipeline on this machine. Each sink is an outbox handler: it returns only once
//! the event is safely handed over (written and flushed, answered 2xx, acknowledged by JetStream,
//! run and reported), and an error otherwise, which the relay retries with backoff.

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{Mutex, OnceCell};
use uuid::Uuid;

use super::relay::Deliver;
use crate::clock::Clock;
use crate::config::{Config, EventSink};
use crate::domain::signature;

/// How long an outbound HTTP request of a sink may take.
const HTTP_TIMEOUT: Duration = Duration::from_secs(30);
/// How much of a failed pipeline's stderr its failure reason keeps.
const STDERR_TAIL: usize = 2000;

/// The configured sink.
#[derive(Clone)]
pub enum Sink {
    Jsonl(Arc<JsonlSink>),
    Http(Arc<HttpSink>),
    Nats(Arc<NatsSink>),
    Command(Arc<CommandSink>),
}

impl Sink {
    /// The sink of `config`; `self_url` is where this service answers (the command sink posts
    /// the pipeline's result to its own webhook there).
    pub fn from_config(config: &Config, self_url: &str, clock: Clock) -> anyhow::Result<Sink> {
        let http = || {
            reqwest::Client::builder()
                .timeout(HTTP_TIMEOUT)
                .build()
                .context("cannot build the HTTP client of the event sink")
        };
        Ok(match &config.event_sink {
            EventSink::Jsonl(path) => Sink::Jsonl(Arc::new(JsonlSink {
                path: path.clone(),
                lock: Mutex::new(()),
            })),
            EventSink::Http(url) => Sink::Http(Arc::new(HttpSink {
                client: http()?,
                url: url.clone(),
                secret: config
                    .event_sink_secret
                    .clone()
                    .context("EVENT_SINK_SECRET is required by the http sink")?,
                clock,
            })),
            EventSink::Nats(url) => Sink::Nats(Arc::new(NatsSink {
                url: url.clone(),
                stream: config.nats_stream.clone(),
                prefix: config.nats_subject_prefix.clone(),
                duplicate_window: config.nats_duplicate_window,
                jetstream: OnceCell::new(),
            })),
            EventSink::Command => Sink::Command(Arc::new(CommandSink {
                commands: config.pipeline_commands.clone(),
                dir: config.pipelines_dir.clone(),
                timeout: config.pipeline_timeout,
                data_dir: config.data_dir.clone(),
                webhook: format!("{}/webhook", self_url.trim_end_matches('/')),
                client: http()?,
                clock,
            })),
        })
    }

    /// `jsonl`, `http`, `nats` or `command`, for logs.
    pub fn describe(&self) -> String {
        match self {
            Self::Jsonl(s) => format!("jsonl {}", s.path.display()),
            Self::Http(s) => format!("http {}", s.url),
            Self::Nats(s) => format!("nats {}", s.url),
            Self::Command(s) => format!("command ({})", s.dir.display()),
        }
    }
}

impl Deliver for Sink {
    async fn deliver(&self, id: Uuid, payload: &Value) -> anyhow::Result<()> {
        match self {
            Self::Jsonl(sink) => sink.append(payload).await,
            Self::Http(sink) => sink.post(id, payload).await,
            Self::Nats(sink) => sink.publish(id, payload).await,
            Self::Command(sink) => sink.run(payload).await,
        }
    }
}

fn event_type(payload: &Value) -> &str {
    payload
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or("UNKNOWN")
}

/// Appends each event as one line of JSON to a file, flushed to disk before it counts as
/// delivered.
pub struct JsonlSink {
    path: PathBuf,
    /// One append at a time, so lines never interleave.
    lock: Mutex<()>,
}

impl JsonlSink {
    async fn append(&self, payload: &Value) -> anyhow::Result<()> {
        let mut line = serde_json::to_vec(payload)?;
        line.push(b'\n');
        let _one_at_a_time = self.lock.lock().await;
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            crate::files::create_dir_async(dir)
                .await
                .with_context(|| format!("cannot create {}", dir.display()))?;
        }
        // Events carry webhook secrets: the log is owner-only (0600) from its first line.
        let mut file = crate::files::open_options_async()
            .create(true)
            .append(true)
            .open(&self.path)
            .await
            .with_context(|| format!("cannot open {}", self.path.display()))?;
        file.write_all(&line).await?;
        file.flush().await?;
        file.sync_data()
            .await
            .with_context(|| format!("cannot flush {}", self.path.display()))?;
        Ok(())
    }
}

/// POSTs each event as JSON, signed like the webhook: `x-signature` is
/// `hex(HMAC-SHA256(EVENT_SINK_SECRET, body ‖ x-timestamp))`. Any answer but 2xx is a failed
/// attempt.
pub struct HttpSink {
    client: reqwest::Client,
    url: String,
    secret: secrecy::SecretString,
    clock: Clock,
}

impl HttpSink {
    async fn post(&self, id: Uuid, payload: &Value) -> anyhow::Result<()> {
        use secrecy::ExposeSecret;
        let body = serde_json::to_vec(payload)?;
        let timestamp = self.clock.now().timestamp_millis().to_string();
        let signature = signature::sign(
            self.secret.expose_secret().as_bytes(),
            &[&body, timestamp.as_bytes()],
        );
        let request = self
            .client
            .post(&self.url)
            .header("content-type", "application/json")
            .header("x-event-id", id.to_string())
            .header("x-event-type", event_type(payload))
            .header("x-timestamp", timestamp)
            .header("x-signature", signature)
            .body(body);
        // With traces on, `traceparent` names the delivery's span (of the event's trace).
        let response = crate::telemetry::client_send(request)
            .await
            .with_context(|| format!("cannot reach the event sink {}", self.url))?;
        let status = response.status();
        if !status.is_success() {
            let text = response.text().await.unwrap_or_default();
            bail!(
                "the event sink answered {status}: {}",
                text.chars().take(300).collect::<String>()
            );
        }
        Ok(())
    }
}

/// Publishes each event to NATS JetStream on `<NATS_SUBJECT_PREFIX>.<type>` (`tms.events.…`)
/// with its id as `Nats-Msg-Id`, so JetStream drops a second publication of it within the
/// stream's de-duplication window (`NATS_DUPLICATE_WINDOW`, longer than the relay's lease, after
/// which an event whose relay died before marking it delivered is published again); creates the
/// stream `NATS_STREAM` with that window when it is missing and widens the window of an existing
/// one that is shorter. An event counts as delivered when JetStream acknowledged it.
pub struct NatsSink {
    url: String,
    stream: String,
    prefix: String,
    duplicate_window: Duration,
    jetstream: OnceCell<async_nats::jetstream::Context>,
}

impl NatsSink {
    /// The JetStream context, connecting (and creating the stream) on first use; a failure is
    /// retried at the next delivery.
    async fn context(&self) -> anyhow::Result<&async_nats::jetstream::Context> {
        self.jetstream
            .get_or_try_init(|| async {
                let client = async_nats::ConnectOptions::new()
                    .connection_timeout(Duration::from_secs(5))
                    .connect(self.url.as_str())
                    .await
                    .with_context(|| format!("cannot connect to NATS at {}", self.url))?;
                let jetstream = async_nats::jetstream::new(client);
                let stream = jetstream
                    .get_or_create_stream(async_nats::jetstream::stream::Config {
                        name: self.stream.clone(),
                        subjects: vec![format!("{}.>", self.prefix)],
                        duplicate_window: self.duplicate_window,
                        ..Default::default()
                    })
                    .await
                    .map_err(|e| {
                        anyhow!("cannot create the JetStream stream {}: {e}", self.stream)
                    })?;
                self.widen_duplicate_window(&jetstream, &stream.cached_info().config)
                    .await;
                Ok::<_, anyhow::Error>(jetstream)
            })
            .await
    }

    /// Widens the de-duplication window of the existing stream `config` to `NATS_DUPLICATE_WINDOW`
    /// when it is shorter (a stream created with JetStream's default of 2 minutes), keeping the
    /// rest of its configuration; never beyond the stream's `max_age`, which JetStream refuses. A
    /// stream that cannot be changed (no permission) is logged and used as it is.
    async fn widen_duplicate_window(
        &self,
        jetstream: &async_nats::jetstream::Context,
        config: &async_nats::jetstream::stream::Config,
    ) {
        let mut wanted = self.duplicate_window;
        if !config.max_age.is_zero() {
            wanted = wanted.min(config.max_age);
        }
        if config.duplicate_window >= wanted {
            return;
        }
        let widened = async_nats::jetstream::stream::Config {
            duplicate_window: wanted,
            ..config.clone()
        };
        match jetstream.update_stream(&widened).await {
            Ok(_) => tracing::info!(stream = %self.stream,
                from_ms = config.duplicate_window.as_millis(), to_ms = wanted.as_millis(),
                "JetStream de-duplication window widened"),
            Err(err) => tracing::warn!(stream = %self.stream, error = %err,
                window_ms = config.duplicate_window.as_millis(),
                "cannot widen the JetStream de-duplication window; a redelivery after a \
                 crash may reach consumers twice"),
        }
    }

    async fn publish(&self, id: Uuid, payload: &Value) -> anyhow::Result<()> {
        let jetstream = self.context().await?;
        let subject = format!("{}.{}", self.prefix, event_type(payload));
        let mut headers = async_nats::HeaderMap::new();
        headers.insert(async_nats::header::NATS_MESSAGE_ID, id.to_string().as_str());
        // With traces on, the delivery's span (of the event's trace) for consumers to continue.
        if let Some(trace) = crate::telemetry::current_traceparent() {
            headers.insert("traceparent", trace.traceparent.as_str());
            if let Some(state) = &trace.tracestate {
                headers.insert("tracestate", state.as_str());
            }
        }
        let ack = jetstream
            .publish_with_headers(subject, headers, serde_json::to_vec(payload)?.into())
            .await
            .map_err(|e| anyhow!("cannot publish to JetStream: {e}"))?;
        ack.await
            .map_err(|e| anyhow!("JetStream did not acknowledge the event: {e}"))?;
        Ok(())
    }
}

/// The local provisioner: runs the event's pipeline — `PIPELINE_COMMAND_<NAME>` (run by
/// `sh -c`) or the executable `<PIPELINES_DIR>/<name>` — with the event on stdin and its gist in
/// the environment (`TMS_EVENT_TYPE`, `TMS_TENANT_ID`, `TMS_TENANT_KEY`, `TMS_DATA_DIR`), then reports
/// the result of a provisioning or offboarding to this service's webhook, signed with the
/// event's secret and context: success with the resources of the command's JSON output, or
/// failure with its exit code and the tail of its stderr. Other events only run the command.
pub struct CommandSink {
    commands: std::collections::BTreeMap<String, String>,
    dir: PathBuf,
    timeout: Duration,
    data_dir: PathBuf,
    webhook: String,
    client: reqwest::Client,
    clock: Clock,
}

/// What a pipeline run came to.
struct Run {
    succeeded: bool,
    stdout: Vec<u8>,
    reason: String,
}

impl CommandSink {
    /// The command line of pipeline `name`.
    fn command(&self, name: &str) -> anyhow::Result<tokio::process::Command> {
        let env_name = name.to_ascii_uppercase().replace('-', "_");
        if let Some(line) = self.commands.get(&env_name) {
            let mut command = tokio::process::Command::new("sh");
            command.arg("-c").arg(line);
            return Ok(command);
        }
        if !is_pipeline_name(name) {
            bail!("{name:?} is not a pipeline name");
        }
        let path = self.dir.join(name);
        if !path.is_file() {
            bail!(
                "no pipeline {name:?}: set PIPELINE_COMMAND_{env_name} or add {}",
                path.display()
            );
        }
        Ok(tokio::process::Command::new(path))
    }

    async fn run_pipeline(&self, name: &str, payload: &Value) -> anyhow::Result<Run> {
        let tenant = payload.get("tenant");
        let field = |name: &str| {
            tenant
                .and_then(|t| t.get(name))
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string()
        };
        let mut command = self.command(name)?;
        // The delivery's trace context, under the name OpenTelemetry's environment carrier
        // uses, for pipelines that trace their own work.
        if let Some(trace) = crate::telemetry::current_traceparent() {
            command.env("TRACEPARENT", &trace.traceparent);
            if let Some(state) = &trace.tracestate {
                command.env("TRACESTATE", state);
            }
        }
        let mut child = command
            .env("TMS_EVENT_TYPE", event_type(payload))
            .env("TMS_TENANT_ID", field("id"))
            .env("TMS_TENANT_KEY", field("key"))
            .env("TMS_DATA_DIR", &self.data_dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("cannot start pipeline {name:?}"))?;
        let input = serde_json::to_vec(payload)?;
        let mut stdin = child.stdin.take().context("no stdin")?;
        let mut stdout = child.stdout.take().context("no stdout")?;
        let mut stderr = child.stderr.take().context("no stderr")?;
        let work = async {
            // A pipeline that does not read its input must not block on a full pipe.
            let write = async {
                let _ = stdin.write_all(&input).await;
                drop(stdin);
            };
            let mut out = Vec::new();
            let mut err = Vec::new();
            let (_, out_read, err_read, status) = tokio::join!(
                write,
                stdout.read_to_end(&mut out),
                stderr.read_to_end(&mut err),
                child.wait()
            );
            out_read?;
            err_read?;
            Ok::<_, std::io::Error>((status?, out, err))
        };
        let (status, stdout, stderr) = match tokio::time::timeout(self.timeout, work).await {
            Ok(result) => result.with_context(|| format!("pipeline {name:?} failed to run"))?,
            Err(_) => {
                return Ok(Run {
                    succeeded: false,
                    stdout: Vec::new(),
                    reason: format!(
                        "pipeline {name} timed out after {} s",
                        self.timeout.as_secs()
                    ),
                });
            }
        };
        let stderr = String::from_utf8_lossy(&stderr);
        let tail: String = {
            let trimmed = stderr.trim();
            let skip = trimmed.chars().count().saturating_sub(STDERR_TAIL);
            trimmed.chars().skip(skip).collect()
        };
        Ok(Run {
            succeeded: status.success(),
            stdout,
            reason: format!(
                "pipeline {name} exited with {}: {tail}",
                status
                    .code()
                    .map_or_else(|| "a signal".to_string(), |c| format!("code {c}"))
            ),
        })
    }

    async fn run(&self, payload: &Value) -> anyhow::Result<()> {
        let kind = event_type(payload);
        let Some(pipeline) = payload.get("pipeline").and_then(Value::as_str) else {
            // Events without a pipeline (suspension, reactivation) have nothing to run here.
            tracing::info!(event = kind, "no pipeline to run for this event");
            return Ok(());
        };
        let run = self.run_pipeline(pipeline, payload).await?;
        let reports = matches!(kind, "TENANT_PROVISIONING" | "TENANT_DEPROVISIONING");
        if !reports {
            return Ok(());
        }
        let data = if run.succeeded {
            let output: Value = if run.stdout.iter().all(u8::is_ascii_whitespace) {
                json!({})
            } else {
                match serde_json::from_slice(&run.stdout) {
                    Ok(output) => output,
                    Err(e) => {
                        return self
                            .report(
                                payload,
                                json!({"status": 0, "resources": [],
                                "error": format!("pipeline {pipeline} printed no JSON: {e}")}),
                            )
                            .await;
                    }
                }
            };
            json!({
                "status": 1,
                "resources": output.get("resources").cloned().unwrap_or_else(|| json!([])),
                "appPlaneUrl": output.get("appPlaneUrl").cloned().unwrap_or(Value::Null),
            })
        } else {
            json!({"status": 0, "resources": [], "error": run.reason})
        };
        self.report(payload, data).await
    }

    /// Posts `data` as the result for the event's tenant to the webhook, signed with the
    /// event's secret and context. The webhook's answer settles it: 2xx or 4xx (the result was
    /// taken, or the operation is over) count as delivered; a 5xx or no answer is retried.
    async fn report(&self, payload: &Value, data: Value) -> anyhow::Result<()> {
        let text = |key: &str| payload.get(key).and_then(Value::as_str).unwrap_or_default();
        let tenant = payload
            .get("tenant")
            .and_then(|t| t.get("id"))
            .and_then(Value::as_str)
            .unwrap_or_default();
        let body = serde_json::to_vec(&json!({"initiatorId": tenant, "type": 0, "data": data}))?;
        let timestamp = self.clock.now().timestamp_millis().to_string();
        let signature = signature::sign(
            text("secret").as_bytes(),
            &[&body, text("context").as_bytes(), timestamp.as_bytes()],
        );
        let request = self
            .client
            .post(&self.webhook)
            .header("content-type", "application/json")
            .header("x-timestamp", timestamp)
            .header("x-signature", signature)
            .body(body);
        // With traces on, the webhook's request continues the event's trace.
        let response = crate::telemetry::client_send(request)
            .await
            .with_context(|| format!("cannot reach the webhook at {}", self.webhook))?;
        let status = response.status();
        if status.is_server_error() {
            bail!("the webhook answered {status}");
        }
        if !status.is_success() {
            tracing::warn!(%tenant, %status, "the webhook did not take the pipeline's result");
        }
        Ok(())
    }
}
/// A pipeline name: what the command sink looks up as `PIPELINE_COMMAND_<NAME>` or a file.
pub fn is_pipeline_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}
