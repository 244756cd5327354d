//! The context of the rules, built once when the service starts (`App::build`, `tms billing
//! run`): the database, the key store, the mailer, the identity providers' clients, the token
//! keys, the configuration and the clock — and the views each part of the rules works through,
//! so no caller assembles them itself.

use std::sync::Arc;

use super::admin_user::AdminUsers;
use super::audit_trail::AuditTrail;
use super::billing_run::BillingRun;
use super::funnel::Funnel;
use super::idempotency::Idempotency;
use super::offboarding::Offboarding;
use super::provisioning::Provisioning;
use super::webhook::Webhook;
use crate::auth::JwtKeys;
use crate::clock::Clock;
use crate::config::Config;
use crate::idp::IdentityProviders;
use crate::kv::Kv;
use crate::mail::Mailer;
use crate::metrics::Metrics;
use crate::store::Db;

/// What the rules work with; cheap to clone (every part is shared).
#[derive(Clone)]
pub struct Services {
    pub db: Db,
    /// Expiring keys (lead verification keys, webhook secrets) and rate-limit counters.
    pub kv: Kv,
    pub mailer: Mailer,
    /// The admin APIs of Keycloak and Auth0 (tenant admin users).
    pub idp: IdentityProviders,
    pub jwt: JwtKeys,
    pub config: Arc<Config>,
    /// The one clock of the service (a manual one in tests).
    pub clock: Clock,
    /// What is counted for `GET /metrics`.
    pub metrics: Metrics,
}

impl Services {
    /// Sign-up, verification and a lead's onboarding.
    pub fn funnel(&self) -> Funnel<'_> {
        Funnel {
            db: &self.db,
            kv: &self.kv,
            mailer: &self.mailer,
            jwt: &self.jwt,
            config: &self.config,
        }
    }

    /// Provisioning and the deadlines of running operations.
    pub fn provisioning(&self) -> Provisioning<'_> {
        Provisioning {
            db: &self.db,
            kv: &self.kv,
            mailer: &self.mailer,
            config: &self.config,
            metrics: &self.metrics,
        }
    }

    /// Offboarding, suspension and reactivation.
    pub fn offboarding(&self) -> Offboarding<'_> {
        Offboarding {
            db: &self.db,
            kv: &self.kv,
            config: &self.config,
        }
    }

    /// A pipeline's signed result.
    pub fn webhook(&self) -> Webhook<'_> {
        Webhook {
            db: &self.db,
            kv: &self.kv,
            mailer: &self.mailer,
            config: &self.config,
            metrics: &self.metrics,
        }
    }

    /// The tenant's admin user in its identity provider.
    pub fn admin_users(&self) -> AdminUsers<'_> {
        AdminUsers {
            db: &self.db,
            kv: &self.kv,
            idp: &self.idp,
            config: &self.config,
        }
    }

    /// The `Idempotency-Key` records of POST requests.
    pub fn idempotency(&self) -> Idempotency<'_> {
        Idempotency {
            db: &self.db,
            config: &self.config,
        }
    }

    /// The audit trail: who reads it, how long it is kept.
    pub fn audit_trail(&self) -> AuditTrail<'_> {
        AuditTrail {
            db: &self.db,
            config: &self.config.audit,
        }
    }

    /// The billing run.
    pub fn billing_run(&self) -> BillingRun<'_> {
        BillingRun {
            db: &self.db,
            kv: &self.kv,
            mailer: &self.mailer,
            config: &self.config,
        }
    }
}
