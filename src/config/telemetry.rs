//! OpenTelemetry traces (`docs/operations.md`, "Traces"), under the standard `OTEL_*` names an
//! operator already knows: on when `OTEL_EXPORTER_OTLP_ENDPOINT` (or the traces-only
//! `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set, off otherwise. Exported over OTLP/HTTP,
//! protobuf by default or JSON (`OTEL_EXPORTER_OTLP_PROTOCOL`).

use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};

use super::{ConfigError, Vars, problem};

/// Where and how spans are exported.
#[derive(Debug, Clone)]
pub struct TracesConfig {
    /// The full URL spans are posted to: `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` as it is, else
    /// `OTEL_EXPORTER_OTLP_ENDPOINT` with `/v1/traces` appended.
    pub endpoint: String,
    /// `OTEL_EXPORTER_OTLP_TRACES_HEADERS`, else `OTEL_EXPORTER_OTLP_HEADERS`: `name=value` pairs
    /// sent with every export (an API key, typically), values percent-decoded. Secret.
    pub headers: Vec<(String, SecretString)>,
    /// `OTEL_EXPORTER_OTLP_PROTOCOL` (or `…_TRACES_PROTOCOL`).
    pub protocol: OtlpProtocol,
    /// How long one export may take (`OTEL_EXPORTER_OTLP_TIMEOUT`, ms, default 10 000).
    pub timeout: Duration,
    /// `OTEL_SERVICE_NAME` (default `tms`).
    pub service_name: String,
    /// `OTEL_TRACES_SAMPLER` with `OTEL_TRACES_SAMPLER_ARG`.
    pub sampler: Sampler,
}

/// The OTLP/HTTP encodings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OtlpProtocol {
    /// `http/protobuf`, the default of OTLP/HTTP.
    Protobuf,
    /// `http/json`.
    Json,
}

impl OtlpProtocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Protobuf => "http/protobuf",
            Self::Json => "http/json",
        }
    }
}

/// Which traces are recorded (the OpenTelemetry sampler names).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Sampler {
    AlwaysOn,
    AlwaysOff,
    /// A share of the traces, chosen by trace id (0.0 to 1.0).
    Ratio(f64),
    /// As the caller's `traceparent` says when there is one, else the inner sampler.
    ParentBased(Root),
}

/// What a parent-based sampler does for a trace that starts in tms.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Root {
    AlwaysOn,
    AlwaysOff,
    Ratio(f64),
}

impl Sampler {
    /// The `OTEL_TRACES_SAMPLER` name and the `OTEL_TRACES_SAMPLER_ARG` it goes with.
    pub fn describe(self) -> (&'static str, String) {
        match self {
            Self::AlwaysOn => ("always_on", String::new()),
            Self::AlwaysOff => ("always_off", String::new()),
            Self::Ratio(r) => ("traceidratio", r.to_string()),
            Self::ParentBased(Root::AlwaysOn) => ("parentbased_always_on", String::new()),
            Self::ParentBased(Root::AlwaysOff) => ("parentbased_always_off", String::new()),
            Self::ParentBased(Root::Ratio(r)) => ("parentbased_traceidratio", r.to_string()),
        }
    }
}

impl TracesConfig {
    /// The settings; `None` when traces are off: no endpoint, `OTEL_SDK_DISABLED=true` or
    /// `OTEL_TRACES_EXPORTER=none`.
    pub(super) fn from_vars(v: &Vars<'_>) -> Result<Option<Self>, ConfigError> {
        if v.boolean("OTEL_SDK_DISABLED", false)? {
            return Ok(None);
        }
        match v.get("OTEL_TRACES_EXPORTER").map(str::to_ascii_lowercase) {
            None => {}
            Some(e) if e == "otlp" => {}
            Some(e) if e == "none" => return Ok(None),
            Some(other) => {
                return Err(problem(
                    "OTEL_TRACES_EXPORTER",
                    format!("expected otlp or none, got {other:?}"),
                ));
            }
        }
        let endpoint = match (
            v.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"),
            v.get("OTEL_EXPORTER_OTLP_ENDPOINT"),
        ) {
            (Some(traces), _) => http_url("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", traces)?,
            (None, Some(base)) => format!(
                "{}/v1/traces",
                http_url("OTEL_EXPORTER_OTLP_ENDPOINT", base)?.trim_end_matches('/')
            ),
            (None, None) => return Ok(None),
        };
        let headers = match [
            "OTEL_EXPORTER_OTLP_TRACES_HEADERS",
            "OTEL_EXPORTER_OTLP_HEADERS",
        ]
        .into_iter()
        .find_map(|name| v.get(name).map(|raw| (name, raw)))
        {
            Some((name, raw)) => parse_headers(raw).map_err(|err| problem(name, err))?,
            None => Vec::new(),
        };
        let protocol = match [
            "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
            "OTEL_EXPORTER_OTLP_PROTOCOL",
        ]
        .into_iter()
        .find_map(|name| v.get(name).map(|raw| (name, raw)))
        {
            None => OtlpProtocol::Protobuf,
            Some((_, "http/protobuf")) => OtlpProtocol::Protobuf,
            Some((_, "http/json")) => OtlpProtocol::Json,
            Some((name, other)) => {
                return Err(problem(
                    name,
                    format!(
                        "expected http/protobuf or http/json (grpc is not built in), got {other:?}"
                    ),
                ));
            }
        };
        let timeout = Duration::from_millis(v.number(
            "OTEL_EXPORTER_OTLP_TIMEOUT",
            10_000u64,
            100,
            600_000,
        )?);
        let service_name = v.string("OTEL_SERVICE_NAME", "tms");
        Ok(Some(Self {
            endpoint,
            headers,
            protocol,
            timeout,
            service_name,
            sampler: sampler(v)?,
        }))
    }

    /// The settings as `NAME=value` lines, the header values masked.
    pub(super) fn lines(traces: Option<&Self>) -> Vec<(&'static str, String)> {
        let Some(t) = traces else {
            return vec![("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", String::new())];
        };
        let headers = t
            .headers
            .iter()
            .map(|(name, _)| format!("{name}=***"))
            .collect::<Vec<_>>()
            .join(",");
        let (sampler, arg) = t.sampler.describe();
        vec![
            (
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                super::mask_url_password(&t.endpoint),
            ),
            ("OTEL_EXPORTER_OTLP_HEADERS", headers),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", t.protocol.as_str().into()),
            (
                "OTEL_EXPORTER_OTLP_TIMEOUT",
                t.timeout.as_millis().to_string(),
            ),
            ("OTEL_SERVICE_NAME", t.service_name.clone()),
            ("OTEL_TRACES_SAMPLER", sampler.into()),
            ("OTEL_TRACES_SAMPLER_ARG", arg),
        ]
    }

    /// The export headers with their values, for the exporter only.
    pub fn header_pairs(&self) -> impl Iterator<Item = (String, String)> + '_ {
        self.headers
            .iter()
            .map(|(name, value)| (name.clone(), value.expose_secret().to_string()))
    }
}

fn http_url(name: &str, raw: &str) -> Result<String, ConfigError> {
    let parsed = url::Url::parse(raw)
        .map_err(|err| problem(name, format!("expected an http:// or https:// URL: {err}")))?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
        return Err(problem(name, "expected an http:// or https:// URL"));
    }
    Ok(raw.to_string())
}

/// `name=value,name=value` (the W3C baggage form the OpenTelemetry specification uses), values
/// percent-decoded. Never echoes a value back: they are secrets.
fn parse_headers(raw: &str) -> Result<Vec<(String, SecretString)>, String> {
    let mut headers = Vec::new();
    for (i, pair) in raw.split(',').enumerate() {
        let pair = pair.trim();
        if pair.is_empty() {
            continue;
        }
        let Some((name, value)) = pair.split_once('=') else {
            return Err(format!("entry {} is not name=value", i + 1));
        };
        let name = name.trim().to_ascii_lowercase();
        if reqwest::header::HeaderName::from_bytes(name.as_bytes()).is_err() {
            return Err(format!("entry {} has an invalid header name", i + 1));
        }
        let value = percent_encoding::percent_decode_str(value.trim())
            .decode_utf8()
            .map_err(|_| format!("the value of {name} is not UTF-8 once decoded"))?
            .into_owned();
        if reqwest::header::HeaderValue::from_str(&value).is_err() {
            return Err(format!("the value of {name} is not a valid header value"));
        }
        headers.push((name, SecretString::from(value)));
    }
    Ok(headers)
}

fn sampler(v: &Vars<'_>) -> Result<Sampler, ConfigError> {
    const NAME: &str = "OTEL_TRACES_SAMPLER";
    let ratio = || -> Result<f64, ConfigError> {
        let Some(raw) = v.get("OTEL_TRACES_SAMPLER_ARG") else {
            return Ok(1.0);
        };
        match raw.parse::<f64>() {
            Ok(r) if (0.0..=1.0).contains(&r) => Ok(r),
            _ => Err(problem(
                "OTEL_TRACES_SAMPLER_ARG",
                format!("expected a ratio between 0 and 1, got {raw:?}"),
            )),
        }
    };
    Ok(
        match v
            .get(NAME)
            .map(str::to_ascii_lowercase)
            .as_deref()
            .unwrap_or("parentbased_always_on")
        {
            "always_on" => Sampler::AlwaysOn,
            "always_off" => Sampler::AlwaysOff,
            "traceidratio" => Sampler::Ratio(ratio()?),
            "parentbased_always_on" => Sampler::ParentBased(Root::AlwaysOn),
            "parentbased_always_off" => Sampler::ParentBased(Root::AlwaysOff),
            "parentbased_traceidratio" => Sampler::ParentBased(Root::Ratio(ratio()?)),
            other => {
                return Err(problem(
                    NAME,
                    format!(
                        "expected always_on, always_off, traceidratio, parentbased_always_on, \
                         parentbased_always_off or parentbased_traceidratio, got {other:?}"
                    ),
                ));
            }
        },
    )
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn traces(pairs: &[(&str, &str)]) -> Result<Option<TracesConfig>, ConfigError> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        TracesConfig::from_vars(&Vars(&map))
    }

    #[test]
    fn off_without_an_endpoint_or_when_disabled() {
        assert!(traces(&[]).unwrap().is_none());
        let on = [("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318")];
        assert!(traces(&on).unwrap().is_some());
        let disabled = [on[0], ("OTEL_SDK_DISABLED", "true")];
        assert!(traces(&disabled).unwrap().is_none());
        let none = [on[0], ("OTEL_TRACES_EXPORTER", "none")];
        assert!(traces(&none).unwrap().is_none());
    }

    #[test]
    fn the_traces_endpoint_is_used_as_it_is_the_base_one_gets_the_path() {
        let base = traces(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318/")])
            .unwrap()
            .unwrap();
        assert_eq!(base.endpoint, "http://c:4318/v1/traces");
        let own = traces(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"),
            ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "https://t/x"),
        ])
        .unwrap()
        .unwrap();
        assert_eq!(own.endpoint, "https://t/x");
        let err = traces(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "collector:4318")]).unwrap_err();
        assert_eq!(err.var, "OTEL_EXPORTER_OTLP_ENDPOINT");
    }

    #[test]
    fn headers_are_decoded_and_never_printed() {
        let t = traces(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"),
            ("OTEL_EXPORTER_OTLP_HEADERS", "Api-Key=s3cr%20t,x-team=ops"),
        ])
        .unwrap()
        .unwrap();
        let pairs: Vec<_> = t.header_pairs().collect();
        assert_eq!(
            pairs,
            [
                ("api-key".to_string(), "s3cr t".to_string()),
                ("x-team".to_string(), "ops".to_string())
            ]
        );
        let lines = TracesConfig::lines(Some(&t));
        let printed = format!("{lines:?}");
        assert!(printed.contains("api-key=***,x-team=***"), "{printed}");
        assert!(!printed.contains("s3cr"), "{printed}");
        let err = traces(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"),
            ("OTEL_EXPORTER_OTLP_HEADERS", "novalue-s3cret"),
        ])
        .unwrap_err();
        assert_eq!(err.var, "OTEL_EXPORTER_OTLP_HEADERS");
        assert!(!err.problem.contains("s3cret"), "{}", err.problem);
    }

    #[test]
    fn samplers_and_protocols() {
        let on = ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318");
        let t = traces(&[on]).unwrap().unwrap();
        assert_eq!(t.sampler, Sampler::ParentBased(Root::AlwaysOn));
        assert_eq!(t.protocol, OtlpProtocol::Protobuf);
        assert_eq!(t.service_name, "tms");
        let t = traces(&[
            on,
            ("OTEL_TRACES_SAMPLER", "parentbased_traceidratio"),
            ("OTEL_TRACES_SAMPLER_ARG", "0.25"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json"),
        ])
        .unwrap()
        .unwrap();
        assert_eq!(t.sampler, Sampler::ParentBased(Root::Ratio(0.25)));
        assert_eq!(t.protocol, OtlpProtocol::Json);
        let bad = traces(&[on, ("OTEL_TRACES_SAMPLER", "sometimes")]).unwrap_err();
        assert_eq!(bad.var, "OTEL_TRACES_SAMPLER");
        let bad = traces(&[
            on,
            ("OTEL_TRACES_SAMPLER", "traceidratio"),
            ("OTEL_TRACES_SAMPLER_ARG", "2"),
        ])
        .unwrap_err();
        assert_eq!(bad.var, "OTEL_TRACES_SAMPLER_ARG");
        let bad = traces(&[on, ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")]).unwrap_err();
        assert_eq!(bad.var, "OTEL_EXPORTER_OTLP_PROTOCOL");
    }
}
