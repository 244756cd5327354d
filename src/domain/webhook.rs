//! The provisioning webhook, `POST /webhook` (`docs/provisioning.md`): a pipeline reports the
//! result of a provisioning or offboarding, signed with the secret and context stored for the
//! tenant when the operation started —
//! `hex(HMAC-SHA256(secret, raw body ‖ context ‖ timestamp))` in `x-signature`, the timestamp
//! (ms since the epoch) in `x-timestamp`. The raw bytes are signed, not a re-serialisation of
//! them. A result is accepted once: the secret is deleted with it.

use serde_json::{Map, Value, json};
use tracing::Instrument;
use uuid::Uuid;

use super::pipeline_actor;
use super::provisioning::{self, Outcome, ProvisionedResource, ProvisioningError};
use super::secrets::{forget_secret, stored_secret};
use super::signature;
use super::tenant::{self, TenantStatus};
use super::validation::{ValidationDetail, missing_property, not_an_object, unknown_property};
use crate::config::Config;
use crate::kv::{Kv, KvError};
use crate::mail::Mailer;
use crate::metrics::{Metrics, OperationOutcome};
use crate::store::provisioning::{self as record, Operation};
use crate::store::{Db, Tx};

/// How far a signed timestamp may be from now.
pub const TIMESTAMP_TOLERANCE_MS: i64 = 20_000;

/// A request as the webhook received it.
#[derive(Debug, Clone, Copy)]
pub struct Signed<'a> {
    pub body: &'a [u8],
    pub signature: Option<&'a str>,
    pub timestamp: Option<&'a str>,
}

/// Why a webhook request was refused.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    /// 401, as the original answers every problem with the signature or the tenant; the reason
    /// is for the log only.
    #[error("Unauthorized ({0})")]
    Unauthorized(&'static str),
    /// The body is not JSON (400).
    #[error("{0}")]
    Malformed(String),
    /// The body does not have the webhook's shape (422).
    #[error("the webhook body is invalid")]
    Invalid(Vec<ValidationDetail>),
    /// A `type` other than RESOURCES_PROVISIONED (422, the original's message).
    #[error("Invalid type of webhook")]
    InvalidType,
    #[error(transparent)]
    Provisioning(#[from] ProvisioningError),
    #[error(transparent)]
    Keys(#[from] KvError),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// A pipeline's report, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    pub tenant: Uuid,
    pub succeeded: bool,
    pub resources: Vec<ProvisionedResource>,
    pub app_plane_url: Option<String>,
    /// `data.error` or `data.message` of a failure.
    pub reason: Option<String>,
}

/// Checks the signature headers of a request signed over `parts` and a timestamp: present,
/// well-formed, signed with `secret`, and timestamped within the tolerance of `now_ms`.
pub fn check_signature(
    signed: &Signed<'_>,
    secret: &str,
    parts: &[&[u8]],
    now_ms: i64,
) -> Result<(), WebhookError> {
    let signature = signed
        .signature
        .ok_or(WebhookError::Unauthorized("no signature"))?;
    let timestamp = signed
        .timestamp
        .ok_or(WebhookError::Unauthorized("no timestamp"))?;
    let at: i64 = timestamp
        .trim()
        .parse()
        .map_err(|_| WebhookError::Unauthorized("a timestamp that is not a number"))?;
    let mut signed_parts: Vec<&[u8]> = parts.to_vec();
    signed_parts.push(timestamp.as_bytes());
    if !signature::verify(secret.as_bytes(), &signed_parts, signature) {
        return Err(WebhookError::Unauthorized("a wrong signature"));
    }
    if (at - now_ms).abs() > TIMESTAMP_TOLERANCE_MS {
        return Err(WebhookError::Unauthorized("a timestamp out of tolerance"));
    }
    Ok(())
}

/// The tenant a signed request is about: `field` of the JSON body (a UUID string).
fn initiator(body: &Value, path: &[&str]) -> Result<Uuid, WebhookError> {
    let mut at = body;
    for key in path {
        at = at
            .get(key)
            .ok_or(WebhookError::Unauthorized("no initiator"))?;
    }
    at.as_str()
        .and_then(|s| Uuid::parse_str(s).ok())
        .ok_or(WebhookError::Unauthorized("an unknown initiator"))
}

/// Parses a JSON body (400 when it is not JSON).
pub fn parse_json(body: &[u8]) -> Result<Value, WebhookError> {
    serde_json::from_slice(body)
        .map_err(|e| WebhookError::Malformed(format!("Malformed JSON in request body: {e}")))
}

/// Verifies a signed request about the tenant at `path` in its body, the way the webhook and
/// the IdP callback do: headers first (401), then JSON (400), then the tenant's stored secret
/// and the signature over the raw body, `with_context` the stored context, and the timestamp.
/// Returns the body and the tenant.
pub async fn verify(
    kv: &Kv,
    now_ms: i64,
    signed: &Signed<'_>,
    path: &[&str],
    with_context: bool,
) -> Result<(Value, Uuid), WebhookError> {
    if signed.signature.is_none() || signed.timestamp.is_none() {
        return Err(WebhookError::Unauthorized("missing signature headers"));
    }
    let body = parse_json(signed.body)?;
    let tenant = initiator(&body, path)?;
    let secret = stored_secret(kv, tenant)
        .await?
        .ok_or(WebhookError::Unauthorized("no secret for this initiator"))?;
    let mut parts: Vec<&[u8]> = vec![signed.body];
    if with_context {
        parts.push(secret.context.as_bytes());
    }
    check_signature(signed, &secret.secret, &parts, now_ms)?;
    Ok((body, tenant))
}

/// Validates the `WebhookDTO` of a verified request.
pub fn report(body: &Value, tenant: Uuid) -> Result<Report, WebhookError> {
    let Value::Object(props) = body else {
        return Err(WebhookError::Invalid(vec![not_an_object("")]));
    };
    let mut problems: Vec<ValidationDetail> = props
        .keys()
        .filter(|k| !["initiatorId", "type", "data"].contains(&k.as_str()))
        .map(|k| unknown_property("", k))
        .collect();
    match props.get("type") {
        None => problems.push(missing_property("", "type")),
        Some(t) if t.as_i64() == Some(0) => {}
        Some(_) => return Err(WebhookError::InvalidType),
    }
    let data = match props.get("data") {
        Some(Value::Object(data)) => data.clone(),
        None => {
            problems.push(missing_property("", "data"));
            Map::new()
        }
        Some(_) => {
            problems.push(not_an_object("/data"));
            Map::new()
        }
    };
    let succeeded = match data.get("status").and_then(Value::as_i64) {
        Some(1) => true,
        Some(0) => false,
        _ if problems.is_empty() => {
            problems.push(ValidationDetail::new(
                "/data/status",
                "enum",
                "must be 0 (FAILURE) or 1 (SUCCESS)",
                json!({"allowedValues": [0, 1]}),
            ));
            false
        }
        _ => false,
    };
    let text = |key: &str| data.get(key).and_then(Value::as_str).map(str::to_string);
    let mut resources = Vec::new();
    match data.get("resources") {
        None | Some(Value::Null) => {}
        Some(Value::Array(items)) => {
            for (i, item) in items.iter().enumerate() {
                match resource(item) {
                    Some(r) => resources.push(r),
                    None => problems.push(ValidationDetail::new(
                        format!("/data/resources/{i}"),
                        "type",
                        "must be an object with an object metadata and an externalIdentifier \
                         (or metadata.bucket), at most 255 characters",
                        Value::Null,
                    )),
                }
            }
        }
        Some(_) => problems.push(ValidationDetail::new(
            "/data/resources",
            "type",
            "must be array",
            json!({"type": "array"}),
        )),
    }
    if !problems.is_empty() {
        return Err(WebhookError::Invalid(problems));
    }
    Ok(Report {
        tenant,
        succeeded,
        resources,
        app_plane_url: text("appPlaneUrl"),
        reason: text("error").or_else(|| text("message")),
    })
}

/// One reported resource: `{type?, metadata: {…}, externalIdentifier?}`; without an external
/// identifier `metadata.bucket` names it (as the original stores it), and the type defaults to
/// `bucket`.
fn resource(item: &Value) -> Option<ProvisionedResource> {
    let metadata = item.get("metadata")?.as_object()?;
    let external = item
        .get("externalIdentifier")
        .and_then(Value::as_str)
        .or_else(|| metadata.get("bucket").and_then(Value::as_str))?;
    let kind = match item.get("type") {
        None | Some(Value::Null) => "bucket",
        Some(kind) => kind.as_str()?,
    };
    let fits = |s: &str, max: usize| !s.is_empty() && s.chars().count() <= max && !s.contains('\0');
    (fits(external, 255) && fits(kind, 100)).then(|| ProvisionedResource {
        external_identifier: external.to_string(),
        kind: kind.to_string(),
        metadata: Value::Object(metadata.clone()),
    })
}

/// What the webhook works with.
#[derive(Clone, Copy)]
pub struct Webhook<'a> {
    pub db: &'a Db,
    pub kv: &'a Kv,
    pub mailer: &'a Mailer,
    pub config: &'a Config,
    pub metrics: &'a Metrics,
}

impl Webhook<'_> {
    /// Verifies and applies a pipeline's report (see the module's documentation). In one
    /// transaction: the tenant moves (ACTIVE / PROVISIONFAILED for a provisioning, INACTIVE / back
    /// for an offboarding), a provisioning's resources are stored and its welcome mail queued, an
    /// offboarding's resources are marked deleted, the reason of a failure is recorded and the
    /// secret deleted. A tenant not in the operation's running state is
    /// 401, as the original answers.
    ///
    /// With traces on, the work is a `pipeline result` span of the operation's trace: the
    /// request's own when the pipeline passed the `traceparent` on (`caller_traced`), else the
    /// one stored when the operation started.
    pub async fn accept(
        &self,
        signed: &Signed<'_>,
        caller_traced: bool,
    ) -> Result<(), WebhookError> {
        let now_ms = self.db.clock().now().timestamp_millis();
        let (body, tenant) = verify(self.kv, now_ms, signed, &["initiatorId"], true).await?;
        let report = report(&body, tenant)?;
        let mut tx = self.db.begin().await?;
        let rec = match record::get(&mut tx.conn(), tenant).await? {
            Some(rec) => rec,
            None => self.adopt(&mut tx, tenant).await?,
        };
        let stored = rec.traceparent.clone().filter(|_| !caller_traced);
        let span = crate::telemetry::resumed_span(
            || {
                tracing::info_span!(target: crate::telemetry::TARGET, "pipeline result",
                    operation = rec.operation.as_str(), %tenant)
            },
            stored.as_deref(),
        );
        self.apply(tx, rec, report, tenant).instrument(span).await
    }

    /// Applies `report` to the operation `rec` of `tenant` in `tx`, and commits.
    async fn apply(
        &self,
        mut tx: Tx,
        rec: record::Record,
        report: Report,
        tenant: Uuid,
    ) -> Result<(), WebhookError> {
        let running = match rec.operation {
            Operation::Provision => TenantStatus::Provisioning,
            Operation::Deprovision => TenantStatus::Deprovisioning,
        };
        if tenant::status_of(&mut tx.conn(), tenant).await? != Some(running) {
            return Err(WebhookError::Unauthorized(
                "the tenant is not waiting for a result",
            ));
        }
        let reason = report.reason.clone().unwrap_or_else(|| {
            format!("the {} pipeline reported a failure", rec.operation.as_str())
        });
        let outcome = if report.succeeded {
            Outcome::Succeeded
        } else {
            Outcome::Failed(&reason)
        };
        let pipeline = pipeline_actor(self.config);
        provisioning::finish_operation(&mut tx, self.config, &rec, outcome, &pipeline)
            .await
            .map_err(|err| match err {
                // Moved by a concurrent request between the check and the move.
                ProvisioningError::Lifecycle(_) => {
                    WebhookError::Unauthorized("the tenant is not waiting for a result")
                }
                other => other.into(),
            })?;
        if report.succeeded && rec.operation == Operation::Provision {
            provisioning::store_resources(&mut tx.conn(), &pipeline, tenant, &report.resources)
                .await?;
            provisioning::mail_welcome(
                &mut tx.conn(),
                self.mailer,
                self.config,
                tenant,
                report.app_plane_url.as_deref(),
            )
            .await?;
        }
        if report.succeeded && rec.operation == Operation::Deprovision {
            provisioning::retire_resources(&mut tx.conn(), &pipeline, tenant).await?;
        }
        forget_secret(self.kv, &mut tx, tenant).await?;
        tx.commit().await?;
        let took = (self.db.clock().now() - rec.started_at)
            .to_std()
            .unwrap_or_default();
        let outcome = if report.succeeded {
            OperationOutcome::Succeeded
        } else {
            OperationOutcome::Failed
        };
        self.metrics
            .operation_finished(rec.operation.as_str(), outcome, took);
        tracing::info!(%tenant, operation = rec.operation.as_str(), succeeded = report.succeeded,
            "pipeline result accepted");
        Ok(())
    }

    /// The record of a provisioning tms did not start: a tenant the original put into
    /// PROVISIONING before the take-over, whose pipeline signs its result with the secret the
    /// original stored (verified before this). Any other tenant without a record is 401.
    async fn adopt(&self, tx: &mut Tx, tenant: Uuid) -> Result<record::Record, WebhookError> {
        if tenant::status_of(&mut tx.conn(), tenant).await? != Some(TenantStatus::Provisioning) {
            return Err(WebhookError::Unauthorized("no operation recorded"));
        }
        let deadline_at = provisioning::deadline_of(self.config, tx);
        record::adopt(&mut tx.conn(), tenant, deadline_at).await?;
        record::get(&mut tx.conn(), tenant)
            .await?
            .ok_or(WebhookError::Unauthorized("no operation recorded"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signed<'a>(body: &'a [u8], signature: &'a str, timestamp: &'a str) -> Signed<'a> {
        Signed {
            body,
            signature: Some(signature),
            timestamp: Some(timestamp),
        }
    }

    #[test]
    fn signatures_cover_the_raw_body_the_context_and_the_timestamp() {
        let body = br#"{"initiatorId":"x","type":0}"#;
        let now = 1_700_000_000_000i64;
        let ts = now.to_string();
        let good = signature::sign(b"s3cret", &[body, b"ctx", ts.as_bytes()]);
        let check = |sig: &str, ts: &str, secret: &str, context: &[u8]| {
            check_signature(&signed(body, sig, ts), secret, &[body, context], now)
        };
        assert!(check(&good, &ts, "s3cret", b"ctx").is_ok());
        assert!(check(&good, &ts, "other", b"ctx").is_err());
        assert!(check(&good, &ts, "s3cret", b"other").is_err());
        assert!(check(&good[..40], &ts, "s3cret", b"ctx").is_err());
        assert!(check(&good, "soon", "s3cret", b"ctx").is_err());
        // The same bytes re-serialised (a space) are another body.
        let spaced = br#"{"initiatorId": "x","type":0}"#;
        assert!(
            check_signature(
                &signed(spaced, &good, &ts),
                "s3cret",
                &[spaced, b"ctx"],
                now
            )
            .is_err()
        );
        // 20 s either side is in tolerance, beyond is not.
        for (offset, ok) in [
            (-20_000, true),
            (20_000, true),
            (-20_001, false),
            (20_001, false),
        ] {
            let ts = (now + offset).to_string();
            let sig = signature::sign(b"s3cret", &[body, b"ctx", ts.as_bytes()]);
            assert_eq!(check(&sig, &ts, "s3cret", b"ctx").is_ok(), ok, "{offset}");
        }
    }

    #[test]
    fn reports_are_validated() {
        let t = Uuid::new_v4();
        let ok = report(
            &json!({"initiatorId": t.to_string(), "type": 0, "data": {"status": 1,
                "resources": [{"type": "db", "metadata": {"host": "h"}, "externalIdentifier": "db-1"},
                              {"metadata": {"bucket": "b-1"}}],
                "appPlaneUrl": "https://acme.app"}}),
            t,
        )
        .unwrap();
        assert!(ok.succeeded);
        assert_eq!(ok.resources.len(), 2);
        assert_eq!(ok.resources[1].external_identifier, "b-1");
        assert_eq!(ok.resources[1].kind, "bucket");
        assert_eq!(ok.app_plane_url.as_deref(), Some("https://acme.app"));
        let failed = report(
            &json!({"initiatorId": "x", "type": 0, "data": {"status": 0, "error": "quota"}}),
            t,
        )
        .unwrap();
        assert_eq!(
            (failed.succeeded, failed.reason.as_deref()),
            (false, Some("quota"))
        );
        assert!(matches!(
            report(&json!({"initiatorId": "x", "type": 3, "data": {}}), t),
            Err(WebhookError::InvalidType)
        ));
        for bad in [
            json!({"initiatorId": "x", "type": 0}),
            json!({"initiatorId": "x", "type": 0, "data": {"status": 7}}),
            json!({"initiatorId": "x", "type": 0, "data": {"status": 1, "resources": [{}]}}),
            json!({"initiatorId": "x", "type": 0, "data": {"status": 1}, "more": 1}),
        ] {
            assert!(
                matches!(report(&bad, t), Err(WebhookError::Invalid(_))),
                "{bad}"
            );
        }
    }
}
