//! Offboarding and suspension (`docs/provisioning.md`): `deprovision` hands an ACTIVE,
//! SUSPENDED or PROVISIONFAILED tenant to its pipeline to be torn down (DEPROVISIONING, then
//! INACTIVE on the pipeline's signed success, or back where it was with the reason on failure);
//! `suspend` and `reactivate` move it between ACTIVE and SUSPENDED. Each is one transaction with
//! its event, and a call whose outcome already holds (a retry) answers the same and writes
//! nothing.

use serde_json::{Map, Value, json};
use uuid::Uuid;

use super::events::{EventType, WorkOrder, write_event};
use super::provisioning::{
    ProvisioningError, deadline_of, default_pipeline, isolation_of, open_operation,
};
use super::tenant::{self, LifecycleError, Move, TenantStatus, tenant_with_relations};
use super::validation::{ValidationDetail, not_an_object, unknown_property};
use crate::config::Config;
use crate::kv::Kv;
use crate::store::crud::{Actor, Scope};
use crate::store::provisioning::{self as record, Operation};
use crate::store::{Db, Object, Tx};

/// What a lifecycle call came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Moved {
    /// The tenant moved and the event was written.
    Now,
    /// The outcome already held (a retry, or a concurrent call won): nothing was written.
    Already,
}

/// The most characters a suspension reason keeps.
const REASON_MAX: usize = 500;

/// Checks the optional body of a suspension: nothing, or `{"reason": "<text>"}`.
pub fn parse_suspension(body: Option<&Value>) -> Result<Option<String>, ProvisioningError> {
    let Some(body) = body else {
        return Ok(None);
    };
    let Value::Object(props) = body else {
        return Err(ProvisioningError::Invalid(vec![not_an_object("")]));
    };
    let mut problems: Vec<ValidationDetail> = props
        .keys()
        .filter(|k| k.as_str() != "reason")
        .map(|k| unknown_property("", k))
        .collect();
    let reason = match props.get("reason") {
        None | Some(Value::Null) => None,
        Some(Value::String(r)) if r.chars().count() <= REASON_MAX => {
            Some(r.trim().to_string()).filter(|r| !r.is_empty())
        }
        Some(_) => {
            problems.push(ValidationDetail::new(
                "/reason",
                "maxLength",
                format!("must be a string of at most {REASON_MAX} characters"),
                json!({"limit": REASON_MAX}),
            ));
            None
        }
    };
    if problems.is_empty() {
        Ok(reason)
    } else {
        Err(ProvisioningError::Invalid(problems))
    }
}

/// What offboarding, suspension and reactivation work with.
#[derive(Clone, Copy)]
pub struct Offboarding<'a> {
    pub db: &'a Db,
    pub kv: &'a Kv,
    pub config: &'a Config,
}

impl Offboarding<'_> {
    /// Starts offboarding `tenant_id` (seen through `actor`'s scope): one transaction moves it
    /// from ACTIVE, SUSPENDED or PROVISIONFAILED to DEPROVISIONING, records where it came from
    /// (a failed offboarding goes back there), stores a fresh webhook secret and context, and
    /// writes `TENANT_DEPROVISIONING` with the pipeline, tier and subscription it was provisioned
    /// with. A tenant already DEPROVISIONING or INACTIVE is [`Moved::Already`].
    pub async fn deprovision(
        &self,
        tenant_id: Uuid,
        actor: &Actor,
    ) -> Result<Moved, ProvisioningError> {
        let done = [TenantStatus::Deprovisioning, TenantStatus::Inactive];
        let mut tx = self.db.begin().await?;
        let Some(from) = self
            .move_unless(&mut tx, tenant_id, Move::Deprovision, &done, actor)
            .await?
        else {
            return Ok(Moved::Already);
        };
        let last = record::get(&mut tx.conn(), tenant_id).await?;
        let tier = last.as_ref().and_then(|r| r.tier.clone());
        let isolation = match last.as_ref().and_then(|r| r.isolation.clone()) {
            Some(isolation) => isolation,
            None => isolation_of(self.config, tier.as_deref().unwrap_or_default()).to_string(),
        };
        let pipeline = match last.as_ref().and_then(|r| r.pipeline.clone()) {
            Some(pipeline) => pipeline,
            None => default_pipeline(self.config, &isolation).to_string(),
        };
        let deadline_at = deadline_of(self.config, &mut tx);
        let trace = crate::telemetry::current_traceparent();
        let start = record::Start {
            tenant_id,
            operation: Operation::Deprovision,
            subscription: None,
            tier: tier.as_deref(),
            isolation: Some(&isolation),
            pipeline: Some(&pipeline),
            resume_status: Some(from.code()),
            deadline_at,
            traceparent: trace.as_ref().map(|t| t.traceparent.as_str()),
        };
        let secret = open_operation(self.kv, self.config, &mut tx, start).await?;
        let order = WorkOrder {
            subscription: last.and_then(|r| r.subscription).unwrap_or(Value::Null),
            secret: &secret,
            pipeline: &pipeline,
            tier: tier.as_deref(),
            isolation: &isolation,
        };
        self.announce(
            &mut tx,
            tenant_id,
            EventType::TenantDeprovisioning,
            order.fields(),
        )
        .await?;
        tx.commit().await?;
        tracing::info!(tenant = %tenant_id, %pipeline, from = %from, "offboarding started");
        Ok(Moved::Now)
    }

    /// Suspends the ACTIVE tenant `tenant_id` (for non-payment, abuse, …): SUSPENDED and the
    /// `TENANT_SUSPENDED` event with `reason`, in one transaction. Already SUSPENDED is
    /// [`Moved::Already`].
    pub async fn suspend(
        &self,
        tenant_id: Uuid,
        reason: Option<&str>,
        actor: &Actor,
    ) -> Result<Moved, ProvisioningError> {
        let mut extra = Map::new();
        extra.insert("reason".into(), json!(reason));
        self.switch(
            tenant_id,
            Move::Suspend,
            EventType::TenantSuspended,
            extra,
            actor,
        )
        .await
    }

    /// Reactivates the SUSPENDED tenant `tenant_id`: ACTIVE and the `TENANT_REACTIVATED` event,
    /// in one transaction. Already ACTIVE is [`Moved::Already`].
    pub async fn reactivate(
        &self,
        tenant_id: Uuid,
        actor: &Actor,
    ) -> Result<Moved, ProvisioningError> {
        self.switch(
            tenant_id,
            Move::Reactivate,
            EventType::TenantReactivated,
            Map::new(),
            actor,
        )
        .await
    }

    async fn switch(
        &self,
        tenant_id: Uuid,
        step: Move,
        kind: EventType,
        extra: Map<String, Value>,
        actor: &Actor,
    ) -> Result<Moved, ProvisioningError> {
        let mut tx = self.db.begin().await?;
        let to = step.target();
        let Some(from) = self
            .move_unless(&mut tx, tenant_id, step, &[to], actor)
            .await?
        else {
            return Ok(Moved::Already);
        };
        self.announce(&mut tx, tenant_id, kind, extra).await?;
        tx.commit().await?;
        tracing::info!(tenant = %tenant_id, from = %from, to = %to, "tenant moved");
        Ok(Moved::Now)
    }

    /// Makes `step` on the tenant (404 outside `actor`'s scope) in `tx` and returns the state
    /// it left — or `None` when it already is in one of `done` (before the move, or because a
    /// concurrent call moved it first).
    async fn move_unless(
        &self,
        tx: &mut Tx,
        tenant_id: Uuid,
        step: Move,
        done: &[TenantStatus],
        actor: &Actor,
    ) -> Result<Option<TenantStatus>, ProvisioningError> {
        if tenant_with_relations(&mut tx.conn(), tenant_id, actor.scope)
            .await?
            .is_none()
        {
            return Err(ProvisioningError::NotFound);
        }
        match tenant::make_move(&mut tx.conn(), tenant_id, step, &Object::new(), actor).await {
            Ok(from) => {
                super::billing::on_move(tx, self.config, tenant_id, from, step.target()).await?;
                Ok(Some(from))
            }
            Err(LifecycleError::Illegal { current, .. }) if done.contains(&current) => Ok(None),
            Err(err) => Err(err.into()),
        }
    }

    /// Writes event `kind` of the tenant as it is now in `tx`, with `extra`.
    async fn announce(
        &self,
        tx: &mut Tx,
        tenant_id: Uuid,
        kind: EventType,
        extra: Map<String, Value>,
    ) -> Result<(), ProvisioningError> {
        let tenant = tenant_with_relations(&mut tx.conn(), tenant_id, Scope::All)
            .await?
            .ok_or(ProvisioningError::NotFound)?;
        write_event(tx, kind, &tenant, extra).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_suspension_takes_an_optional_reason() {
        assert_eq!(parse_suspension(None).unwrap(), None);
        assert_eq!(parse_suspension(Some(&json!({}))).unwrap(), None);
        assert_eq!(
            parse_suspension(Some(&json!({"reason": " unpaid invoice "}))).unwrap(),
            Some("unpaid invoice".to_string())
        );
        for bad in [
            json!([]),
            json!({"why": "x"}),
            json!({"reason": 3}),
            json!({"reason": "x".repeat(REASON_MAX + 1)}),
        ] {
            assert!(
                matches!(
                    parse_suspension(Some(&bad)),
                    Err(ProvisioningError::Invalid(_))
                ),
                "{bad}"
            );
        }
    }
}
