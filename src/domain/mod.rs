//! The rules of the service, free of HTTP and SQL (the store runs the statements): request
//! validation, the lead funnel, onboarding, contacts, the tenant lifecycle; provisioning and
//! billing as they arrive. Each returns a typed error that the HTTP edge maps to an answer.

pub mod contacts;
pub mod funnel;
pub mod onboarding;
pub mod provisioning;
pub mod signature;
pub mod tenant;
pub mod validation;
pub mod webhook;
