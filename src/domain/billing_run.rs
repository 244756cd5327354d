//! The billing run (`docs/billing.md`): invoices for every period that has started, then the
//! announcement of invoices that became overdue (event and mail, once), then — with
//! `BILLING_SUSPEND_AFTER_DAYS` — the suspension of tenants whose invoices stay unpaid. Run by
//! every server every `BILLING_INTERVAL`, or by `tms billing run`; safe with several at once.

use chrono::{DateTime, Duration, Utc};
use serde_json::{Value, json};
use tracing::Instrument;
use uuid::Uuid;

use super::audit::{self, Who};
use super::billing::{BillingError, bill_due_periods, pause};
use super::contacts::primary_contact;
use super::events::EventType;
use super::invoices;
use super::offboarding::Offboarding;
use super::provisioning::ProvisioningError;
use super::system_actor;
use super::tenant::{self, TenantStatus};
use crate::config::{BillingConfig, Config};
use crate::kv::Kv;
use crate::mail::{Mailer, Template};
use crate::model::{INVOICES, TENANTS};
use crate::store::crud::{self, Scope};
use crate::store::filter::Filter;
use crate::store::invoices as store;
use crate::store::{Db, Object, Tx};

/// Why a billing run stopped short (a tenant's or an invoice's own failure does not stop it).
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Billing(#[from] BillingError),
    #[error(transparent)]
    Lifecycle(#[from] ProvisioningError),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// What a billing run works with.
#[derive(Clone, Copy)]
pub struct BillingRun<'a> {
    pub db: &'a Db,
    pub kv: &'a Kv,
    pub mailer: &'a Mailer,
    pub config: &'a Config,
}

/// What one billing run did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RunReport {
    pub issued: usize,
    pub overdue: usize,
    pub suspended: usize,
}

/// Tenants looked at per batch of a run.
const BATCH: i64 = 200;

impl BillingRun<'_> {
    /// One billing run at the clock's now: invoices for every period that has started, then the
    /// announcement of invoices that became overdue, then (with `BILLING_SUSPEND_AFTER_DAYS`)
    /// the suspension of tenants with an invoice overdue that long. Safe with several replicas
    /// and runs at once: each tenant's periods are billed under its account's lock, and a
    /// unique index refuses a second invoice for a period whatever happens.
    pub async fn run(&self) -> Result<RunReport, RunError> {
        let mut report = RunReport::default();
        let now = self.db.clock().now();
        let config = self.config;
        loop {
            let due = store::due_accounts(&mut self.db.conn(), now, BATCH).await?;
            let mut progressed = false;
            for tenant in &due {
                // Each tenant's billing is a trace of its own (with traces on): its events
                // carry it.
                let span = crate::telemetry::job_span("bill tenant", *tenant, None);
                match self.bill_tenant(*tenant, now).instrument(span).await {
                    Ok(Some(issued)) => {
                        report.issued += issued;
                        progressed |= issued > 0;
                    }
                    // Paused: it left the due set.
                    Ok(None) => progressed = true,
                    // One tenant's failure does not hold up the others; the next run retries.
                    Err(err) => {
                        tracing::warn!(%tenant, error = %err, "billing the tenant failed");
                    }
                }
            }
            if (due.len() as i64) < BATCH || !progressed {
                break;
            }
        }
        report.overdue = announce_overdue(
            self.db,
            self.mailer,
            (&config.billing, &Who::system(&config.system_user_id)),
            now,
        )
        .await?;
        if let Some(days) = config.billing.suspend_after_days {
            report.suspended = self.suspend_overdue(now, days).await?;
        }
        if report != RunReport::default() {
            tracing::info!(
                issued = report.issued,
                overdue = report.overdue,
                suspended = report.suspended,
                "billing run"
            );
        }
        Ok(report)
    }

    /// Bills the due periods of `tenant` in one transaction: how many invoices were issued, or
    /// `None` when the tenant is not ACTIVE — deleted, or set to another status by an
    /// operator's PATCH (which bypasses the lifecycle) — and its billing was paused like a
    /// suspension, so that it leaves the due set.
    async fn bill_tenant(
        &self,
        tenant: Uuid,
        now: DateTime<Utc>,
    ) -> Result<Option<usize>, BillingError> {
        let mut tx = self.db.begin().await?;
        // The account first: a lifecycle move holds it while it changes the status, so the
        // status read after it is the one that move left.
        store::lock_account(&mut tx.conn(), tenant).await?;
        if tenant::status_of(&mut tx.conn(), tenant).await? != Some(TenantStatus::Active) {
            pause(&mut tx, tenant, now).await?;
            tx.commit().await?;
            tracing::info!(%tenant, "billing paused: the tenant is not ACTIVE");
            return Ok(None);
        }
        let issued = bill_due_periods(&mut tx, self.config, tenant, now).await?;
        tx.commit().await?;
        Ok(Some(issued))
    }

    /// Suspends the ACTIVE tenants with a pending invoice due more than `days` days before
    /// `now`. Returns how many were suspended.
    async fn suspend_overdue(&self, now: DateTime<Utc>, days: u32) -> Result<usize, RunError> {
        let before = now - Duration::days(i64::from(days));
        let mut suspended = 0;
        for (tenant, number) in
            store::tenants_overdue_since(&mut self.db.conn(), before, BATCH).await?
        {
            let reason = format!(
                "invoice {} overdue for more than {days} days",
                number.as_deref().unwrap_or("without a number")
            );
            let offboarding = Offboarding {
                db: self.db,
                kv: self.kv,
                config: self.config,
            };
            match offboarding
                .suspend(tenant, Some(&reason), &system_actor(self.config))
                .instrument(crate::telemetry::job_span(
                    "suspend for an unpaid invoice",
                    tenant,
                    None,
                ))
                .await
            {
                Ok(_) => {
                    tracing::warn!(%tenant, %reason, "tenant suspended for an unpaid invoice");
                    suspended += 1;
                }
                // Moved meanwhile by someone else: nothing to do.
                Err(ProvisioningError::Lifecycle(_)) => {}
                Err(err) => return Err(err.into()),
            }
        }
        Ok(suspended)
    }
}

/// Announces every pending invoice past its due date once: marks it (`overdueAt`), queues
/// `INVOICE_OVERDUE` and mails the tenant's primary contact, in one transaction per invoice.
async fn announce_overdue(
    db: &Db,
    mailer: &Mailer,
    (config, who): (&BillingConfig, &Who),
    now: DateTime<Utc>,
) -> Result<usize, BillingError> {
    let mut announced = 0;
    loop {
        let batch = store::newly_overdue(&mut db.conn(), now, BATCH).await?;
        let mut progressed = false;
        for overdue in &batch {
            let span =
                crate::telemetry::job_span("announce an overdue invoice", overdue.tenant_id, None);
            match announce_one(db, mailer, (config, who), overdue, now)
                .instrument(span)
                .await
            {
                Ok(marked) => {
                    progressed = true;
                    announced += usize::from(marked);
                }
                // One invoice's failure does not hold up the others; the next run retries it.
                Err(err) => {
                    tracing::warn!(invoice = %overdue.id, error = %err, "announcing an overdue invoice failed");
                }
            }
        }
        if (batch.len() as i64) < BATCH || !progressed {
            return Ok(announced);
        }
    }
}

/// Marks `overdue` announced, queues its event and mail, in one transaction; whether this call
/// marked it (of several runs, one does).
async fn announce_one(
    db: &Db,
    mailer: &Mailer,
    (config, who): (&BillingConfig, &Who),
    overdue: &store::Overdue,
    now: DateTime<Utc>,
) -> Result<bool, BillingError> {
    let mut tx = db.begin().await?;
    if !store::mark_overdue(&mut tx.conn(), overdue.id, now).await? {
        return Ok(false);
    }
    let at = Value::from(crate::store::values::format_timestamp(&now));
    let marked = audit::change(
        &INVOICES,
        who,
        "overdue",
        (overdue.id, Some(overdue.tenant_id)),
        Object::from_iter([("overdueAt".to_string(), Value::Null)]),
        Object::from_iter([("overdueAt".to_string(), at)]),
    );
    crate::store::audit::record(&mut tx.conn(), &[marked]).await?;
    let Some(row) = crud::find_by_id(
        &mut tx.conn(),
        &INVOICES,
        overdue.id,
        &Filter::default(),
        Scope::All,
    )
    .await?
    else {
        return Ok(false);
    };
    invoices::announce(&mut tx, EventType::InvoiceOverdue, &row).await?;
    mail_overdue(&mut tx, mailer, config, overdue.tenant_id, &row).await?;
    tx.commit().await?;
    Ok(true)
}

/// Queues the `invoice_overdue` mail about `invoice` to the primary contact of `tenant`.
async fn mail_overdue(
    tx: &mut Tx,
    mailer: &Mailer,
    config: &BillingConfig,
    tenant: Uuid,
    invoice: &Object,
) -> Result<(), BillingError> {
    let Some(tenant_row) = crud::find_by_id(
        &mut tx.conn(),
        &TENANTS,
        tenant,
        &Filter::default(),
        Scope::All,
    )
    .await?
    else {
        return Ok(());
    };
    let Some(contact) = primary_contact(&mut tx.conn(), tenant).await? else {
        tracing::warn!(%tenant, "no primary contact to tell about an overdue invoice");
        return Ok(());
    };
    let shown = invoices::Readable::of(invoice);
    mailer
        .queue(
            &mut tx.conn(),
            contact
                .get("email")
                .and_then(Value::as_str)
                .unwrap_or_default(),
            Template::InvoiceOverdue,
            json!({
                "sellerName": config.seller_name,
                "firstName": contact.get("firstName"),
                "lastName": contact.get("lastName"),
                "tenantName": tenant_row.get("name"),
                "invoiceNumber": invoice
                    .get("invoiceNumber")
                    .and_then(Value::as_str)
                    .unwrap_or_default(),
                "amount": shown.amount,
                "currencyCode": shown.currency,
                "dueDate": shown.due,
                "periodStart": shown.first_day.unwrap_or_default(),
                "periodEnd": shown.last_day.unwrap_or_default(),
            }),
        )
        .await?;
    Ok(())
}
