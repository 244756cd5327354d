//! The rules of the service, free of HTTP and SQL (the store runs the statements): request
//! validation, the lead funnel, onboarding, contacts, the tenant lifecycle, provisioning and
//! offboarding; billing as it arrives. Each returns a typed error that the HTTP edge maps to an answer.

pub mod admin_user;
pub mod billing;
pub mod contacts;
pub mod funnel;
pub mod idp_settings;
pub mod invoices;
pub mod money;
pub mod offboarding;
pub mod onboarding;
pub mod provisioning;
pub mod signature;
pub mod tenant;
pub mod tenant_configs;
pub mod validation;
pub mod webhook;
