//! The event contract (`docs/events.md`, `docs/events.schema.json`): the lifecycle and billing
//! events tms publishes, and how one is written to the outbox — in the caller's transaction, in
//! the tenant's partition, with the tenant as it is then. What an event asking a pipeline for
//! work carries besides the tenant is its [`WorkOrder`].

use serde_json::{Map, Value, json};
use uuid::Uuid;

use super::secrets::WebhookSecret;
use crate::events;
use crate::store::values::format_timestamp;
use crate::store::{Object, Tx};

/// The outbox topic of the tenant lifecycle events.
pub const TOPIC: &str = "event";

/// The lifecycle and billing events (`docs/events.md` has their schemas).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    TenantProvisioning,
    TenantDeprovisioning,
    TenantSuspended,
    TenantReactivated,
    InvoiceIssued,
    InvoicePaid,
    InvoiceOverdue,
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::TenantProvisioning => "TENANT_PROVISIONING",
            Self::TenantDeprovisioning => "TENANT_DEPROVISIONING",
            Self::TenantSuspended => "TENANT_SUSPENDED",
            Self::TenantReactivated => "TENANT_REACTIVATED",
            Self::InvoiceIssued => "INVOICE_ISSUED",
            Self::InvoicePaid => "INVOICE_PAID",
            Self::InvoiceOverdue => "INVOICE_OVERDUE",
        }
    }
}

/// Writes lifecycle event `kind` of `tenant` (its row with relations) with `extra` fields to the
/// outbox in `tx`, in the tenant's partition. Returns the event id.
pub async fn write_event(
    tx: &mut Tx,
    kind: EventType,
    tenant: &Object,
    extra: Map<String, Value>,
) -> Result<Uuid, sqlx::Error> {
    let id = Uuid::new_v4();
    let tenant_id = tenant.get("id").and_then(Value::as_str).unwrap_or_default();
    let mut event = Map::new();
    event.insert("id".into(), json!(id.to_string()));
    event.insert("type".into(), json!(kind.as_str()));
    event.insert(
        "occurredAt".into(),
        json!(format_timestamp(&tx.conn().now())),
    );
    event.insert("tenant".into(), Value::Object(tenant.clone()));
    event.extend(extra);
    // With traces on, the trace the event belongs to, so its consumers (and the pipeline's
    // result) continue it.
    crate::telemetry::stamp_message(&mut event);
    events::enqueue_with_id(
        &mut tx.conn(),
        id,
        TOPIC,
        Some(tenant_id),
        &Value::Object(event),
    )
    .await?;
    Ok(id)
}

/// What an event that asks a pipeline for work carries besides the tenant: the subscription,
/// where the work goes, and the secret and context to sign the result with.
pub struct WorkOrder<'a> {
    pub subscription: Value,
    pub secret: &'a WebhookSecret,
    pub pipeline: &'a str,
    pub tier: Option<&'a str>,
    pub isolation: &'a str,
}

impl WorkOrder<'_> {
    pub fn fields(self) -> Map<String, Value> {
        let mut fields = Map::new();
        fields.insert("subscription".into(), self.subscription);
        fields.insert("secret".into(), json!(self.secret.secret));
        fields.insert("context".into(), json!(self.secret.context));
        fields.insert("pipeline".into(), json!(self.pipeline));
        fields.insert("tier".into(), json!(self.tier));
        fields.insert("isolation".into(), json!(self.isolation));
        fields
    }
}
