//! Provisioning (`docs/provisioning.md`): starting it (`POST /tenants/{id}/provision`),
//! accepting its signed result (`POST /webhook`), and failing operations that pass their
//! deadline. Starting is one transaction: the tenant moves to PROVISIONING, a fresh webhook
//! secret is stored, the subscription is kept, and the `TENANT_PROVISIONING` event is written to
//! the outbox — all of it or none.

use serde_json::{Value, json};
use tracing::Instrument;
use uuid::Uuid;

use super::contacts::primary_contact;
use super::events::{EventType, WorkOrder, write_event};
use super::secrets::{WebhookSecret, forget_secret, store_secret};
use super::system_actor;
use super::tenant::{self, LifecycleError, Move, TenantStatus, tenant_with_relations};
use super::validation::{ValidationDetail, missing_property, not_an_object, unknown_property};
use crate::config::{Config, Isolation};
use crate::kv::{Kv, KvError};
use crate::mail::{Mailer, Template};
use crate::metrics::{Metrics, OperationOutcome};
use crate::model::{RESOURCES, TENANTS, fields};
use crate::store::crud::{self, Actor, Scope, Target, WriteError};
use crate::store::filter::{Filter, Op, Where};
use crate::store::provisioning::{self as record, Operation};
use crate::store::{Conn, Db, Object, Tx};

/// A validated `SubscriptionDTO`.
#[derive(Debug, Clone, PartialEq)]
pub struct Subscription {
    /// The body as given.
    pub value: Value,
    pub id: String,
    pub tier: String,
    /// `plan.metaData.pipelineName`, when given.
    pub pipeline_name: Option<String>,
}

/// Why a provisioning call was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum ProvisioningError {
    #[error("the subscription is invalid")]
    Invalid(Vec<ValidationDetail>),
    /// The original's answer to a subscription without an id (400).
    #[error("Subscription ID is required")]
    MissingSubscriptionId,
    #[error("EntityNotFound")]
    NotFound,
    #[error(transparent)]
    Lifecycle(#[from] LifecycleError),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
    #[error(transparent)]
    Write(WriteError),
    #[error(transparent)]
    Keys(#[from] KvError),
    #[error(transparent)]
    Billing(Box<super::billing::BillingError>),
}

impl From<super::billing::BillingError> for ProvisioningError {
    fn from(err: super::billing::BillingError) -> Self {
        match err {
            super::billing::BillingError::Database(err) => Self::Database(err),
            other => Self::Billing(Box::new(other)),
        }
    }
}

impl From<WriteError> for ProvisioningError {
    fn from(err: WriteError) -> Self {
        match err {
            WriteError::Db(err) => Self::Database(err),
            other => Self::Write(other),
        }
    }
}

/// The properties of the original's `SubscriptionDTO`.
const SUBSCRIPTION_FIELDS: [&str; 15] = [
    "deleted",
    "deletedOn",
    "deletedBy",
    "createdOn",
    "modifiedOn",
    "createdBy",
    "modifiedBy",
    "id",
    "subscriberId",
    "startDate",
    "endDate",
    "status",
    "planId",
    "invoiceId",
    "plan",
];

/// Checks a `SubscriptionDTO`: an object of its properties with an `id` (else the original's
/// 400) and a `plan` object with a `tier` (else 422); `plan.metaData.pipelineName`, when given,
/// names a pipeline (letters, digits, `-`, `_`).
pub fn parse_subscription(body: &Value) -> Result<Subscription, ProvisioningError> {
    let Value::Object(props) = body else {
        return Err(ProvisioningError::Invalid(vec![not_an_object("")]));
    };
    let mut problems: Vec<ValidationDetail> = props
        .keys()
        .filter(|k| !SUBSCRIPTION_FIELDS.contains(&k.as_str()))
        .map(|k| unknown_property("", k))
        .collect();
    let id = match props.get("id") {
        Some(Value::String(id)) if !id.trim().is_empty() => id.clone(),
        Some(Value::String(_)) | Some(Value::Null) | None => {
            return Err(ProvisioningError::MissingSubscriptionId);
        }
        Some(_) => {
            problems.push(type_problem("/id", "string"));
            String::new()
        }
    };
    let text = |v: Option<&Value>| v.and_then(Value::as_str).map(str::to_string);
    let (tier, pipeline_name) = match props.get("plan") {
        None => {
            problems.push(missing_property("", "plan"));
            (String::new(), None)
        }
        Some(Value::Object(plan)) => {
            let tier = match plan.get("tier") {
                None => {
                    problems.push(missing_property("/plan", "tier"));
                    String::new()
                }
                Some(Value::String(tier)) if !tier.trim().is_empty() => tier.trim().to_string(),
                Some(_) => {
                    problems.push(type_problem("/plan/tier", "non-empty string"));
                    String::new()
                }
            };
            if let Err(billing) = super::billing::parse_terms(plan) {
                problems.extend(billing);
            }
            let meta = plan.get("metaData").and_then(Value::as_object);
            let pipeline = meta.and_then(|m| m.get("pipelineName"));
            let pipeline_name = match pipeline {
                None | Some(Value::Null) => None,
                Some(name) => match text(Some(name)) {
                    Some(name) if crate::events::sinks::is_pipeline_name(&name) => Some(name),
                    _ => {
                        problems.push(ValidationDetail::new(
                            "/plan/metaData/pipelineName",
                            "pattern",
                            "must be 1 to 64 letters, digits, '-' or '_'",
                            json!({"pattern": "^[A-Za-z0-9_-]{1,64}$"}),
                        ));
                        None
                    }
                },
            };
            (tier, pipeline_name)
        }
        Some(_) => {
            problems.push(not_an_object("/plan"));
            (String::new(), None)
        }
    };
    if !problems.is_empty() {
        return Err(ProvisioningError::Invalid(problems));
    }
    Ok(Subscription {
        value: body.clone(),
        id,
        tier,
        pipeline_name,
    })
}

fn type_problem(path: &str, expected: &str) -> ValidationDetail {
    ValidationDetail::new(
        path,
        "type",
        format!("must be {expected}"),
        json!({"type": expected}),
    )
}

/// Silo or pooled, from the plan tier (any case). Provisioning refuses a tier outside the
/// configured ones, so only a record the original wrote can hold one: it counts as pooled.
pub fn isolation_of(config: &Config, tier: &str) -> &'static str {
    config
        .tiers
        .isolation(tier)
        .unwrap_or(Isolation::Pooled)
        .as_str()
}

/// The isolation of a subscription's tier: refused (422) unless the operator configured the
/// tier, so that what a caller sends cannot name a realm or organisation of its choosing.
fn configured_isolation(config: &Config, tier: &str) -> Result<Isolation, ProvisioningError> {
    config.tiers.isolation(tier).ok_or_else(|| {
        let tiers = config.tiers.names();
        ProvisioningError::Invalid(vec![ValidationDetail::new(
            "/plan/tier",
            "enum",
            format!("must be one of the configured tiers: {}", tiers.join(", ")),
            json!({"allowedValues": tiers}),
        )])
    })
}

/// A silo tenant's realm and organisation are named after its key: a key that names Keycloak's
/// admin realm or a pooled tier's shared one cannot be a silo tenant's (422).
pub fn check_silo_key(config: &Config, key: &str) -> Result<(), ValidationDetail> {
    if config.tiers.is_reserved_realm(key) {
        return Err(ValidationDetail::new(
            "/plan/tier",
            "reservedKey",
            format!(
                "a silo tenant's realm is named after its key, and {key:?} names Keycloak's \
                 admin realm or a pooled tier's shared realm: provision it on a pooled tier, or \
                 onboard it with another key"
            ),
            json!({"key": key}),
        ));
    }
    Ok(())
}

/// What provisioning works with.
#[derive(Clone, Copy)]
pub struct Provisioning<'a> {
    pub db: &'a Db,
    pub kv: &'a Kv,
    pub mailer: &'a Mailer,
    pub config: &'a Config,
    pub metrics: &'a Metrics,
}

impl Provisioning<'_> {
    /// Starts provisioning `tenant` (seen through `actor`'s scope) with `subscription`: one
    /// transaction moves it to PROVISIONING (from PENDINGPROVISION, or PROVISIONFAILED for a
    /// retry), keeps the subscription, stores a fresh webhook secret and context for
    /// `WEBHOOK_SECRET_EXPIRY`, and writes the `TENANT_PROVISIONING` event.
    pub async fn provision(
        &self,
        tenant_id: Uuid,
        subscription: &Subscription,
        actor: &Actor,
    ) -> Result<(), ProvisioningError> {
        if let Some(plan) = subscription.value.get("plan").and_then(Value::as_object) {
            super::billing::check_price(plan, &self.config.billing)
                .map_err(ProvisioningError::Invalid)?;
        }
        let isolation = configured_isolation(self.config, &subscription.tier)?;
        let pipeline = subscription
            .pipeline_name
            .clone()
            .unwrap_or_else(|| default_pipeline(self.config, isolation.as_str()).to_string());
        let mut tx = self.db.begin().await?;
        let tenant = tenant_with_relations(&mut tx.conn(), tenant_id, actor.scope)
            .await?
            .ok_or(ProvisioningError::NotFound)?;
        if isolation == Isolation::Silo {
            let key = tenant
                .get("key")
                .and_then(Value::as_str)
                .unwrap_or_default();
            check_silo_key(self.config, key).map_err(|d| ProvisioningError::Invalid(vec![d]))?;
        }
        tenant::make_move(
            &mut tx.conn(),
            tenant_id,
            Move::Provision,
            &Object::new(),
            actor,
        )
        .await?;
        let deadline_at = deadline_of(self.config, &mut tx);
        let trace = crate::telemetry::current_traceparent();
        let start = record::Start {
            tenant_id,
            operation: Operation::Provision,
            subscription: Some(&subscription.value),
            tier: Some(&subscription.tier),
            isolation: Some(isolation.as_str()),
            pipeline: Some(&pipeline),
            resume_status: None,
            deadline_at,
            traceparent: trace.as_ref().map(|t| t.traceparent.as_str()),
        };
        let secret = open_operation(self.kv, self.config, &mut tx, start).await?;
        let tenant = tenant_with_relations(&mut tx.conn(), tenant_id, Scope::All)
            .await?
            .ok_or(ProvisioningError::NotFound)?;
        let order = WorkOrder {
            subscription: subscription.value.clone(),
            secret: &secret,
            pipeline: &pipeline,
            tier: Some(&subscription.tier),
            isolation: isolation.as_str(),
        };
        write_event(
            &mut tx,
            EventType::TenantProvisioning,
            &tenant,
            order.fields(),
        )
        .await?;
        tx.commit().await?;
        tracing::info!(tenant = %tenant_id, %pipeline, isolation = isolation.as_str(),
            "provisioning started");
        Ok(())
    }

    /// Gives every tenant the original left in PROVISIONING (it has no record of tms's) the
    /// deadline of tms's own provisionings, counted from now: its pipeline's result is taken
    /// until then (`domain::webhook`), and then it fails as "timed out" and can be retried.
    /// Returns how many were adopted.
    pub async fn adopt_unrecorded(&self) -> Result<usize, ProvisioningError> {
        let orphans = record::unrecorded_provisioning(&mut self.db.conn(), 100).await?;
        for tenant in &orphans {
            let mut tx = self.db.begin().await?;
            let deadline_at = deadline_of(self.config, &mut tx);
            record::adopt(&mut tx.conn(), *tenant, deadline_at).await?;
            tx.commit().await?;
            tracing::info!(%tenant, "a provisioning the original started is followed, with a deadline");
        }
        Ok(orphans.len())
    }

    /// Fails every operation (provisioning or offboarding) that passed its deadline by `now`:
    /// the tenant moves to PROVISIONFAILED (or back from DEPROVISIONING) with the reason "timed
    /// out". Returns how many were failed. Provisionings the original started are adopted first
    /// ([`Self::adopt_unrecorded`]).
    pub async fn fail_overdue(&self) -> Result<usize, ProvisioningError> {
        self.adopt_unrecorded().await?;
        let now = self.db.clock().now();
        let overdue = record::overdue(&mut self.db.conn(), now, 100).await?;
        let mut failed = 0;
        for rec in &overdue {
            // The failure joins the trace of the request that started the operation.
            let span = crate::telemetry::job_span(
                "operation timed out",
                rec.tenant_id,
                rec.traceparent.as_deref(),
            );
            self.time_out(rec, now).instrument(span).await?;
            failed += 1;
            tracing::warn!(tenant = %rec.tenant_id, operation = rec.operation.as_str(),
                "operation passed its deadline: failed as timed out");
        }
        Ok(failed)
    }

    /// Fails the operation `rec` (past its deadline at `now`) as timed out — or just ends its
    /// record when an operator moved the tenant meanwhile — and forgets its webhook secret.
    async fn time_out(
        &self,
        rec: &record::Record,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<(), ProvisioningError> {
        let mut tx = self.db.begin().await?;
        let moved = finish_operation(
            &mut tx,
            self.config,
            rec,
            Outcome::Failed("timed out"),
            &system_actor(self.config),
        )
        .await;
        match moved {
            Ok(()) => {}
            // Moved by an operator meanwhile: the record just ends.
            Err(ProvisioningError::Lifecycle(
                LifecycleError::Illegal { .. } | LifecycleError::NotFound,
            )) => {
                record::finish(&mut tx.conn(), rec.tenant_id, Some("timed out")).await?;
            }
            Err(other) => return Err(other),
        }
        forget_secret(self.kv, &mut tx, rec.tenant_id).await?;
        tx.commit().await?;
        self.metrics.operation_finished(
            rec.operation.as_str(),
            OperationOutcome::TimedOut,
            (now - rec.started_at).to_std().unwrap_or_default(),
        );
        Ok(())
    }
}

/// `SILOED_PIPELINE` or `POOLED_PIPELINE`.
pub(super) fn default_pipeline<'a>(config: &'a Config, isolation: &str) -> &'a str {
    if isolation == Isolation::Silo.as_str() {
        &config.siloed_pipeline
    } else {
        &config.pooled_pipeline
    }
}

/// Records the start of an operation in `tx` and stores a fresh webhook secret and context for
/// the pipeline's result, expiring after `WEBHOOK_SECRET_EXPIRY`. Returns the secret.
pub(super) async fn open_operation(
    kv: &Kv,
    config: &Config,
    tx: &mut Tx,
    start: record::Start<'_>,
) -> Result<WebhookSecret, ProvisioningError> {
    record::start(&mut tx.conn(), &start).await?;
    let secret = WebhookSecret::generate();
    store_secret(
        kv,
        tx,
        config.redis_entry_format,
        start.tenant_id,
        &secret,
        config.webhook_secret_expiry,
    )
    .await?;
    Ok(secret)
}

/// When an operation starting now in `tx` times out (`PROVISIONING_TIMEOUT`).
pub fn deadline_of(config: &Config, tx: &mut Tx) -> chrono::DateTime<chrono::Utc> {
    tx.conn().now()
        + chrono::Duration::from_std(config.provisioning_timeout).unwrap_or(chrono::Duration::MAX)
}

/// How an operation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome<'a> {
    Succeeded,
    Failed(&'a str),
}

/// Ends the running operation of `rec` in `tx`: provisioning moves the tenant to ACTIVE or
/// PROVISIONFAILED; offboarding to INACTIVE or back to where it started; the record keeps the
/// reason of a failure, and billing follows the move (`domain::billing::on_move`). `actor` is
/// who ended it: the pipeline (its result) or the system (a passed deadline).
pub async fn finish_operation(
    tx: &mut Tx,
    config: &Config,
    rec: &record::Record,
    outcome: Outcome<'_>,
    actor: &Actor,
) -> Result<(), ProvisioningError> {
    let step = match (rec.operation, outcome) {
        (Operation::Provision, Outcome::Succeeded) => Move::Provisioned,
        (Operation::Provision, Outcome::Failed(_)) => Move::ProvisioningFailed,
        (Operation::Deprovision, Outcome::Succeeded) => Move::Offboarded,
        (Operation::Deprovision, Outcome::Failed(_)) => Move::OffboardingFailed(
            rec.resume_status
                .and_then(TenantStatus::from_code)
                .unwrap_or(TenantStatus::Active),
        ),
    };
    let to = step.target();
    let from =
        tenant::make_move(&mut tx.conn(), rec.tenant_id, step, &Object::new(), actor).await?;
    super::billing::on_move(tx, config, rec.tenant_id, from, to).await?;
    let reason = match outcome {
        Outcome::Succeeded => None,
        Outcome::Failed(reason) => Some(reason),
    };
    record::finish(&mut tx.conn(), rec.tenant_id, reason).await?;
    Ok(())
}

/// A resource reported by a pipeline.
#[derive(Debug, Clone, PartialEq)]
pub struct ProvisionedResource {
    pub external_identifier: String,
    pub kind: String,
    pub metadata: Value,
}

/// Stores `resources` of `tenant` in `conn`: a resource with an external identifier the tenant
/// already has replaces that one's type and metadata (a retried provisioning reports the same
/// resources again), any other is created.
pub async fn store_resources(
    conn: &mut Conn<'_>,
    actor: &Actor,
    tenant: Uuid,
    resources: &[ProvisionedResource],
) -> Result<(), ProvisioningError> {
    let (tenant_field, ext_field) = (fields::resource_tenant_id(), fields::resource_external_id());
    for resource in resources {
        let this = Where::And(vec![
            Where::uuid_is(tenant_field, tenant),
            Where::cmp(ext_field, Op::Eq, &json!(resource.external_identifier))
                .map_err(|e| ProvisioningError::Invalid(vec![resource_problem(&e.0)]))?,
        ]);
        let mut values = Object::new();
        values.insert("type".into(), json!(resource.kind));
        values.insert("metadata".into(), resource.metadata.clone());
        let updated = crud::update(
            conn,
            &RESOURCES,
            Target::Matching(Some(&this)),
            &values,
            actor,
        )
        .await?;
        if updated == 0 {
            values.insert(
                "externalIdentifier".into(),
                json!(resource.external_identifier),
            );
            values.insert("tenantId".into(), json!(tenant.to_string()));
            crud::create(conn, &RESOURCES, &values, actor).await?;
        }
    }
    Ok(())
}

fn resource_problem(message: &str) -> ValidationDetail {
    ValidationDetail::new("/data/resources", "type", message, Value::Null)
}

/// Marks every resource of `tenant` deleted (soft, so the record of what it had stays): its
/// offboarding tore them down.
pub async fn retire_resources(
    conn: &mut Conn<'_>,
    actor: &Actor,
    tenant: Uuid,
) -> Result<u64, ProvisioningError> {
    let of_tenant = Where::uuid_is(fields::resource_tenant_id(), tenant);
    crud::soft_delete(
        conn,
        &RESOURCES,
        Target::Matching(Some(&of_tenant)),
        actor,
        &actor.id,
    )
    .await
    .map_err(Into::into)
}

/// Queues the `tenant_welcome` mail to the primary contact of `tenant` (the oldest primary one),
/// with `app_plane_url` as where to sign in. A tenant without one is logged, not refused.
pub async fn mail_welcome(
    conn: &mut Conn<'_>,
    mailer: &Mailer,
    config: &Config,
    tenant: Uuid,
    app_plane_url: Option<&str>,
) -> Result<(), ProvisioningError> {
    let Some(row) =
        crud::find_by_id(conn, &TENANTS, tenant, &Filter::default(), Scope::All).await?
    else {
        return Err(ProvisioningError::NotFound);
    };
    let Some(contact) = primary_contact(conn, tenant).await? else {
        tracing::warn!(%tenant, "no primary contact to welcome");
        return Ok(());
    };
    let login = app_plane_url.unwrap_or(&config.app_login_url);
    mailer
        .queue(
            conn,
            contact["email"].as_str().unwrap_or_default(),
            Template::TenantWelcome,
            json!({
                "appName": config.app_name,
                "firstName": contact["firstName"],
                "lastName": contact["lastName"],
                "tenantName": row["name"],
                "tenantKey": row["key"],
                "loginUrl": login,
                "appPlaneUrl": app_plane_url,
            }),
        )
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(silo: &str) -> Config {
        let vars = [
            ("TMS_ENV", "test"),
            ("JWT_SECRET", "x".repeat(32).as_str()),
            ("SILO_TIERS", silo),
            ("POOLED_TIERS", "STANDARD"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        Config::from_map(&vars).unwrap()
    }

    #[test]
    fn tiers_map_to_isolation_case_insensitively() {
        let c = config("PREMIUM, enterprise");
        assert_eq!(isolation_of(&c, "premium"), "silo");
        assert_eq!(isolation_of(&c, "Enterprise"), "silo");
        assert_eq!(isolation_of(&c, "STANDARD"), "pooled");
        assert_eq!(
            isolation_of(&c, "gold"),
            "pooled",
            "only in the original's records"
        );
        assert!(configured_isolation(&c, "gold").is_err());
        assert!(configured_isolation(&c, "master").is_err());
        assert_eq!(
            configured_isolation(&c, "standard").unwrap(),
            Isolation::Pooled
        );
        assert!(check_silo_key(&c, "master").is_err());
        assert!(check_silo_key(&c, "standard").is_err());
        assert!(check_silo_key(&c, "acme").is_ok());
    }

    #[test]
    fn subscriptions_need_an_id_and_a_tier() {
        let ok = parse_subscription(&json!({"id": "s1", "plan": {"tier": "premium",
            "metaData": {"pipelineName": "silo-eu"}}}))
        .unwrap();
        assert_eq!(
            (
                ok.id.as_str(),
                ok.tier.as_str(),
                ok.pipeline_name.as_deref()
            ),
            ("s1", "premium", Some("silo-eu"))
        );
        assert!(matches!(
            parse_subscription(&json!({"plan": {"tier": "BASIC"}})),
            Err(ProvisioningError::MissingSubscriptionId)
        ));
        assert!(matches!(
            parse_subscription(&json!({"id": " ", "plan": {"tier": "BASIC"}})),
            Err(ProvisioningError::MissingSubscriptionId)
        ));
        let paths = |v: Value| -> Vec<String> {
            match parse_subscription(&v) {
                Err(ProvisioningError::Invalid(d)) => d.into_iter().map(|d| d.path).collect(),
                other => panic!("{other:?}"),
            }
        };
        assert_eq!(paths(json!({"id": "s", "plan": {}})), vec!["/plan"]);
        assert_eq!(paths(json!({"id": "s"})), vec![""]);
        assert_eq!(
            paths(json!({"id": "s", "plan": {"tier": 3}})),
            vec!["/plan/tier"]
        );
        assert_eq!(
            paths(json!({"id": "s", "plan": {"tier": "x", "metaData": {"pipelineName": "../x"}}})),
            vec!["/plan/metaData/pipelineName"]
        );
        assert_eq!(
            paths(json!({"id": "s", "plan": {"tier": "x"}, "extra": 1})),
            vec![""]
        );
        assert!(matches!(
            parse_subscription(&json!([])),
            Err(ProvisioningError::Invalid(_))
        ));
    }

    #[test]
    fn secrets_are_32_hex_characters_with_a_uuid_context() {
        let s = WebhookSecret::generate();
        assert_eq!(s.secret.len(), 32);
        assert!(s.secret.bytes().all(|b| b.is_ascii_hexdigit()));
        assert!(Uuid::parse_str(&s.context).is_ok());
        assert_ne!(s, WebhookSecret::generate());
    }
}
