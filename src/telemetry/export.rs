//! The OTLP/HTTP exporter: batches of spans posted by the SDK's batch processor (its own
//! thread) through tms's reqwest client, sent on the Tokio runtime.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::Context;
use opentelemetry_http::{Bytes, HttpClient, HttpError, Request, Response};
use opentelemetry_otlp::{Protocol, WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{Sampler as SdkSampler, SdkTracerProvider};

use crate::config::{OtlpProtocol, Root, Sampler, TracesConfig};

/// The tracer provider exporting to `config`'s collector.
pub(super) fn provider(config: &TracesConfig) -> anyhow::Result<SdkTracerProvider> {
    let runtime = tokio::runtime::Handle::try_current()
        .context("the exporter needs the Tokio runtime to send on")?;
    let client = reqwest::Client::builder()
        .timeout(config.timeout)
        .build()
        .context("cannot build the HTTP client of the OTLP exporter")?;
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_http_client(ExportClient {
            client,
            runtime,
            endpoint: crate::config::mask_url_password(&config.endpoint),
            warned: Mutex::new(None),
        })
        .with_endpoint(config.endpoint.clone())
        .with_protocol(match config.protocol {
            OtlpProtocol::Protobuf => Protocol::HttpBinary,
            OtlpProtocol::Json => Protocol::HttpJson,
        })
        .with_timeout(config.timeout)
        .with_headers(config.header_pairs().collect::<HashMap<_, _>>())
        .build()
        .context("cannot build the OTLP span exporter")?;
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_sampler(sampler(config.sampler))
        .with_resource(
            Resource::builder()
                .with_service_name(config.service_name.clone())
                .build(),
        )
        .build())
}

fn sampler(sampler: Sampler) -> SdkSampler {
    let root = |root: Root| match root {
        Root::AlwaysOn => SdkSampler::AlwaysOn,
        Root::AlwaysOff => SdkSampler::AlwaysOff,
        Root::Ratio(r) => SdkSampler::TraceIdRatioBased(r),
    };
    match sampler {
        Sampler::AlwaysOn => SdkSampler::AlwaysOn,
        Sampler::AlwaysOff => SdkSampler::AlwaysOff,
        Sampler::Ratio(r) => SdkSampler::TraceIdRatioBased(r),
        Sampler::ParentBased(r) => SdkSampler::ParentBased(Box::new(root(r))),
    }
}

/// tms's own reqwest client (rustls, the one version in the build) as the exporter's HTTP
/// client. The batch processor runs the export future on its own thread, outside the runtime,
/// so the request is spawned on the runtime and its outcome awaited from there.
///
/// A failed export (no answer, or not 2xx) is logged, at most once a minute: the SDK drops the
/// batch silently otherwise.
#[derive(Debug)]
struct ExportClient {
    client: reqwest::Client,
    runtime: tokio::runtime::Handle,
    endpoint: String,
    warned: Mutex<Option<Instant>>,
}

/// How often a collector that keeps failing is logged.
const WARN_EVERY: Duration = Duration::from_secs(60);

impl ExportClient {
    fn warn(&self, problem: &str) {
        let Ok(mut warned) = self.warned.lock() else {
            return;
        };
        if warned.is_some_and(|at| at.elapsed() < WARN_EVERY) {
            return;
        }
        *warned = Some(Instant::now());
        tracing::warn!(endpoint = %self.endpoint, problem, "cannot export spans to the collector");
    }
}

#[async_trait::async_trait]
impl HttpClient for ExportClient {
    async fn send_bytes(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        let request = reqwest::Request::try_from(request)?;
        let client = self.client.clone();
        let sent = self.runtime.spawn(async move {
            // Without the URL: the error is logged, and a URL can hold credentials.
            let response = client.execute(request).await.map_err(|e| e.without_url())?;
            let mut answer = Response::builder().status(response.status());
            if let Some(headers) = answer.headers_mut() {
                *headers = response.headers().clone();
            }
            let body = response.bytes().await.map_err(|e| e.without_url())?;
            Ok::<_, HttpError>(answer.body(body)?)
        });
        let answer = sent.await?;
        match &answer {
            Ok(response) if !response.status().is_success() => {
                self.warn(&format!("it answered {}", response.status()));
            }
            Ok(_) => {}
            Err(err) => self.warn(&err.to_string()),
        }
        answer
    }
}
