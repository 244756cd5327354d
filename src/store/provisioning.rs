//! The `tenant_provisioning` table: one row per tenant describing its last provisioning or
//! offboarding operation (see `domain::provisioning`).

use chrono::{DateTime, Utc};
use serde_json::Value;
use uuid::Uuid;

use super::{Conn, Param, RawRow};

/// Which lifecycle operation a record describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    Provision,
    Deprovision,
}

impl Operation {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Provision => "provision",
            Self::Deprovision => "deprovision",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        match s {
            "provision" => Some(Self::Provision),
            "deprovision" => Some(Self::Deprovision),
            _ => None,
        }
    }
}

/// A tenant's provisioning record.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    pub tenant_id: Uuid,
    pub operation: Operation,
    pub subscription: Option<Value>,
    pub tier: Option<String>,
    pub isolation: Option<String>,
    pub pipeline: Option<String>,
    pub attempts: i64,
    pub reason: Option<String>,
    /// Where a failed offboarding takes the tenant back to (a status code).
    pub resume_status: Option<i64>,
    pub started_at: DateTime<Utc>,
    pub deadline_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    /// The trace context of the request that started the operation (traces on).
    pub traceparent: Option<String>,
}

/// The start of an operation.
#[derive(Debug, Clone)]
pub struct Start<'a> {
    pub tenant_id: Uuid,
    pub operation: Operation,
    /// `None` keeps the subscription already recorded (offboarding).
    pub subscription: Option<&'a Value>,
    pub tier: Option<&'a str>,
    pub isolation: Option<&'a str>,
    pub pipeline: Option<&'a str>,
    pub resume_status: Option<i64>,
    pub deadline_at: DateTime<Utc>,
    /// The trace context of the request starting it, `None` when traces are off.
    pub traceparent: Option<&'a str>,
}

/// Records that an operation started now (a first one, or a retry: `attempts` counts them; the
/// previous reason and end are cleared).
pub async fn start(conn: &mut Conn<'_>, start: &Start<'_>) -> Result<(), sqlx::Error> {
    let now = conn.now();
    conn.raw_execute(
        "INSERT INTO tenant_provisioning (tenant_id, operation, subscription, tier, isolation, \
         pipeline, attempts, reason, resume_status, started_at, deadline_at, finished_at, \
         modified_on, traceparent) VALUES ($1, $2, $3, $4, $5, $6, 1, NULL, $7, $8, $9, NULL, $8, \
         $10) \
         ON CONFLICT (tenant_id) DO UPDATE SET operation = excluded.operation, \
           subscription = COALESCE(excluded.subscription, tenant_provisioning.subscription), \
           tier = COALESCE(excluded.tier, tenant_provisioning.tier), \
           isolation = COALESCE(excluded.isolation, tenant_provisioning.isolation), \
           pipeline = COALESCE(excluded.pipeline, tenant_provisioning.pipeline), \
           attempts = CASE WHEN tenant_provisioning.operation = excluded.operation \
                           THEN tenant_provisioning.attempts + 1 ELSE 1 END, \
           reason = NULL, resume_status = excluded.resume_status, \
           started_at = excluded.started_at, deadline_at = excluded.deadline_at, \
           finished_at = NULL, modified_on = excluded.modified_on, \
           traceparent = excluded.traceparent",
        &[
            Param::Uuid(start.tenant_id),
            Param::Text(start.operation.as_str()),
            Param::OptJson(start.subscription),
            Param::OptText(start.tier),
            Param::OptText(start.isolation),
            Param::OptText(start.pipeline),
            Param::OptInt(start.resume_status),
            Param::Instant(now),
            Param::Instant(start.deadline_at),
            Param::OptText(start.traceparent),
        ],
    )
    .await?;
    Ok(())
}

/// Records the end of the running operation of `tenant_id`: `reason` is why it failed (`None`
/// when it succeeded).
pub async fn finish(
    conn: &mut Conn<'_>,
    tenant_id: Uuid,
    reason: Option<&str>,
) -> Result<(), sqlx::Error> {
    let now = conn.now();
    conn.raw_execute(
        "UPDATE tenant_provisioning SET reason = $2, finished_at = $3, modified_on = $3 \
         WHERE tenant_id = $1",
        &[
            Param::Uuid(tenant_id),
            Param::OptText(reason),
            Param::Instant(now),
        ],
    )
    .await?;
    Ok(())
}

/// The record of `tenant_id`, if it was ever provisioned.
pub async fn get(conn: &mut Conn<'_>, tenant_id: Uuid) -> Result<Option<Record>, sqlx::Error> {
    conn.raw_fetch_optional(
        "SELECT tenant_id, operation, subscription, tier, isolation, pipeline, attempts, reason, \
         resume_status, started_at, deadline_at, finished_at, traceparent \
         FROM tenant_provisioning WHERE tenant_id = $1",
        &[Param::Uuid(tenant_id)],
        false,
    )
    .await?
    .map(|row| record(&row))
    .transpose()
}

/// Tenants whose running operation passed its deadline before `now` (at most `limit`).
pub async fn overdue(
    conn: &mut Conn<'_>,
    now: DateTime<Utc>,
    limit: i64,
) -> Result<Vec<Record>, sqlx::Error> {
    conn.raw_fetch(
        "SELECT tenant_id, operation, subscription, tier, isolation, pipeline, attempts, reason, \
         resume_status, started_at, deadline_at, finished_at, traceparent \
         FROM tenant_provisioning WHERE finished_at IS NULL AND deadline_at < $1 \
         ORDER BY deadline_at LIMIT $2",
        &[Param::Instant(now), Param::Int(limit)],
        false,
    )
    .await?
    .iter()
    .map(record)
    .collect()
}

/// Live tenants in PROVISIONING without a record (at most `limit`): put there by the original
/// before tms took its database over.
pub async fn unrecorded_provisioning(
    conn: &mut Conn<'_>,
    limit: i64,
) -> Result<Vec<Uuid>, sqlx::Error> {
    conn.raw_fetch(
        "SELECT t.id AS tenant_id FROM tenants t \
         WHERE t.status = 2 AND NOT t.deleted \
           AND NOT EXISTS (SELECT 1 FROM tenant_provisioning p WHERE p.tenant_id = t.id) \
         LIMIT $1",
        &[Param::Int(limit)],
        false,
    )
    .await?
    .iter()
    .map(|row| row.uuid("tenant_id"))
    .collect()
}

/// Records a provisioning of `tenant_id` that tms did not start (the original did), running
/// from now until `deadline_at`. Nothing happens when the tenant has a record already.
pub async fn adopt(
    conn: &mut Conn<'_>,
    tenant_id: Uuid,
    deadline_at: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    let now = conn.now();
    conn.raw_execute(
        "INSERT INTO tenant_provisioning (tenant_id, operation, attempts, started_at, \
         deadline_at, modified_on) VALUES ($1, 'provision', 1, $2, $3, $2) \
         ON CONFLICT (tenant_id) DO NOTHING",
        &[
            Param::Uuid(tenant_id),
            Param::Instant(now),
            Param::Instant(deadline_at),
        ],
    )
    .await?;
    Ok(())
}

fn record(row: &RawRow) -> Result<Record, sqlx::Error> {
    let operation = row.text("operation")?.unwrap_or_default();
    Ok(Record {
        tenant_id: row.uuid("tenant_id")?,
        operation: Operation::parse(&operation).ok_or_else(|| sqlx::Error::ColumnDecode {
            index: "operation".into(),
            source: format!("unknown operation {operation:?}").into(),
        })?,
        subscription: row.opt_json("subscription")?,
        tier: row.text("tier")?,
        isolation: row.text("isolation")?,
        pipeline: row.text("pipeline")?,
        attempts: row.int("attempts")?,
        reason: row.text("reason")?,
        resume_status: row.opt_int("resume_status")?,
        started_at: row.required_instant("started_at")?,
        deadline_at: row.required_instant("deadline_at")?,
        finished_at: row.instant("finished_at")?,
        traceparent: row.text("traceparent")?,
    })
}
