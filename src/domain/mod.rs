//! The rules of the service, free of HTTP and SQL (the store runs the statements): request
//! validation, the lead funnel, onboarding, contacts, the tenant lifecycle, provisioning and
//! offboarding, the event contract, billing and its run, identity providers, the replay of
//! answers to requests with an `Idempotency-Key`. Each returns a typed error that the HTTP edge
//! maps to an answer; [`Services`] is the context they share, built once.

pub mod admin_user;
pub mod audit_trail;
pub mod billing;
pub mod billing_run;
pub mod contacts;
pub mod events;
pub mod funnel;
pub mod idempotency;
pub mod idp_settings;
pub mod invoices;
pub mod money;
pub mod offboarding;
pub mod onboarding;
pub mod provisioning;
pub mod secrets;
pub mod services;
pub mod signature;
pub mod tenant;
pub mod tenant_configs;
pub mod validation;
pub mod webhook;

pub use services::Services;

use crate::audit;
use crate::config::Config;
use crate::store::crud::{Actor, Scope};

/// The actor of tms's own moves (a pipeline's result, a deadline, a billing run):
/// `SYSTEM_USER_ID`, a UUID as the original's audit columns need.
pub fn system_actor(config: &Config) -> Actor {
    Actor {
        id: config.system_user_id.clone(),
        scope: Scope::All,
        who: audit::Who::system(&config.system_user_id),
    }
}

/// The actor of a pipeline's signed result: stamped as tms's own moves, recorded as the
/// pipeline's.
pub fn pipeline_actor(config: &Config) -> Actor {
    Actor {
        who: audit::Who::pipeline(&config.system_user_id),
        ..system_actor(config)
    }
}

/// The actor of a lead's own writes (its verification, its tenant's onboarding), stamped with
/// the lead's id.
pub fn lead_actor(lead: uuid::Uuid) -> Actor {
    Actor {
        id: lead.to_string(),
        scope: Scope::Lead(lead),
        who: audit::Who::lead(lead),
    }
}
