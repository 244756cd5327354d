//! The rules of the service, free of HTTP and SQL: request validation now; onboarding, the
//! tenant lifecycle, provisioning and billing as they arrive.

pub mod contacts;
pub mod funnel;
pub mod onboarding;
pub mod validation;
