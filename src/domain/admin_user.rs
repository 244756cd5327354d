//! The tenant's first admin user (`docs/identity.md`): `POST /manage/users`, signed by
//! the provisioning pipeline with the tenant's secret (raw body ‖ timestamp, no context), creates
//! the user in the tenant's identity provider and returns its id. The request names the tenant,
//! the provider and the tier; who the admin is, and the tenant's key, name and domains, come from
//! the database. Settings come from the environment, overridden by the tenant's `keycloak` or
//! `auth0` tenant config.

use serde_json::{Value, json};
use uuid::Uuid;

pub use super::idp_settings::ProviderKind;
use super::idp_settings::{self, Author, SettingsError, TenantFacts, TenantSettings};
use super::tenant::{TenantStatus, tenant_with_relations};
use super::validation::{ValidationDetail, missing_property, not_an_object, unknown_property};
use super::webhook::{self, Signed, WebhookError};
use crate::config::{Config, Isolation};
use crate::idp::{Admin, IdentityProviders, IdpError, Provider, TenantInfo};
use crate::kv::Kv;
use crate::model::{TENANT_CONFIGS, TENANTS, fields};
use crate::store::crud::{self, Actor, Scope, Target, WriteError};
use crate::store::filter::{Filter, Op, Order, Where};
use crate::store::provisioning as record;
use crate::store::{Conn, Db, Object};

/// Why no admin user was made.
#[derive(Debug, thiserror::Error)]
pub enum AdminUserError {
    /// A problem with the signature or the tenant (401), or a body that is not JSON (400).
    #[error(transparent)]
    Signed(#[from] WebhookError),
    /// The body does not say what to do, or the tenant has no one to make admin (422).
    #[error("the request is invalid")]
    Invalid(Vec<ValidationDetail>),
    /// The provider's settings are missing or unusable (422).
    #[error("{0}")]
    Settings(String),
    /// The tenant is not being provisioned (409).
    #[error("Tenant is {0}; its admin user is created while it is PROVISIONING (2)")]
    NotProvisioning(TenantStatus),
    #[error(transparent)]
    Provider(#[from] IdpError),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
    #[error(transparent)]
    Write(WriteError),
}

impl From<SettingsError> for AdminUserError {
    fn from(err: SettingsError) -> Self {
        Self::Settings(err.to_string())
    }
}

impl From<WriteError> for AdminUserError {
    fn from(err: WriteError) -> Self {
        match err {
            WriteError::Db(err) => Self::Database(err),
            other => Self::Write(other),
        }
    }
}

/// What a valid request asks for.
#[derive(Debug, Clone, PartialEq)]
pub struct AdminRequest {
    pub provider: ProviderKind,
    /// `plan.tier`, when given.
    pub tier: Option<String>,
}

/// Checks the body (`IdpDetailsDTO`): `tenant` and `plan` objects and nothing else, with
/// `tenant.identityProvider` one of `keycloak` and `auth0` and `plan.tier`, when given, text.
pub fn parse_request(body: &Value) -> Result<AdminRequest, Vec<ValidationDetail>> {
    let Value::Object(props) = body else {
        return Err(vec![not_an_object("")]);
    };
    let mut problems: Vec<ValidationDetail> = props
        .keys()
        .filter(|k| !["tenant", "plan"].contains(&k.as_str()))
        .map(|k| unknown_property("", k))
        .collect();
    let provider = match props.get("tenant") {
        Some(Value::Object(tenant)) => match tenant.get("identityProvider") {
            Some(Value::String(name)) if name == "keycloak" => Some(ProviderKind::Keycloak),
            Some(Value::String(name)) if name == "auth0" => Some(ProviderKind::Auth0),
            None | Some(Value::Null) => {
                problems.push(missing_property("/tenant", "identityProvider"));
                None
            }
            Some(_) => {
                problems.push(ValidationDetail::new(
                    "/tenant/identityProvider",
                    "enum",
                    "must be one of the supported identity providers: keycloak, auth0",
                    json!({"allowedValues": ["keycloak", "auth0"]}),
                ));
                None
            }
        },
        Some(_) => {
            problems.push(not_an_object("/tenant"));
            None
        }
        None => {
            problems.push(missing_property("", "tenant"));
            None
        }
    };
    let tier = match props.get("plan") {
        None | Some(Value::Null) => None,
        Some(Value::Object(plan)) => match plan.get("tier") {
            None | Some(Value::Null) => None,
            Some(Value::String(tier)) if !tier.trim().is_empty() => Some(tier.trim().to_string()),
            Some(_) => {
                problems.push(ValidationDetail::new(
                    "/plan/tier",
                    "type",
                    "must be a non-empty string",
                    json!({"type": "string"}),
                ));
                None
            }
        },
        Some(_) => {
            problems.push(not_an_object("/plan"));
            None
        }
    };
    match provider {
        Some(provider) if problems.is_empty() => Ok(AdminRequest { provider, tier }),
        _ => Err(problems),
    }
}

/// What creating an admin user works with.
#[derive(Clone, Copy)]
pub struct AdminUsers<'a> {
    pub db: &'a Db,
    pub kv: &'a Kv,
    pub idp: &'a IdentityProviders,
    pub config: &'a Config,
}

impl AdminUsers<'_> {
    /// Verifies the signed request and creates (or finds) the admin user of its tenant in the
    /// provider it names; returns the user's id there, also kept as the tenant's `spocUserId`.
    pub async fn create(&self, signed: &Signed<'_>) -> Result<String, AdminUserError> {
        let now_ms = self.db.clock().now().timestamp_millis();
        let (body, tenant_id) =
            webhook::verify(self.kv, now_ms, signed, &["tenant", "id"], false).await?;
        let request = parse_request(&body).map_err(AdminUserError::Invalid)?;
        let mut conn = self.db.conn();
        let tenant = tenant_with_relations(&mut conn, tenant_id, Scope::All)
            .await?
            .ok_or(WebhookError::Unauthorized("an unknown initiator"))?;
        let status = tenant
            .get("status")
            .and_then(Value::as_i64)
            .and_then(TenantStatus::from_code)
            .ok_or(WebhookError::Unauthorized("an unknown initiator"))?;
        if status != TenantStatus::Provisioning {
            return Err(AdminUserError::NotProvisioning(status));
        }
        let tier = tier_of(&mut conn, self.config, tenant_id, request.tier.as_deref()).await?;
        let (email, first_name, last_name) = admin_contact(&tenant)?;
        let facts = facts_of(&tenant, self.config, tier)?;
        let settings = tenant_settings(&mut conn, self.config, tenant_id, request.provider).await?;
        if !settings.is_own() && facts.isolation == Isolation::Pooled {
            check_shared_realm(
                &mut conn,
                tenant_id,
                &idp_settings::home_name(self.config, &facts)?,
            )
            .await?;
        }
        let provider = match request.provider {
            ProviderKind::Keycloak => Provider::Keycloak(settings.keycloak(self.config, &facts)?),
            ProviderKind::Auth0 => Provider::Auth0(settings.auth0(self.config, &facts)?),
        };
        let info = TenantInfo {
            key: &facts.key,
            name: &facts.name,
        };
        let admin = Admin {
            email: &email,
            first_name: &first_name,
            last_name: &last_name,
        };
        let auth_id = self.idp.create_admin(&provider, &info, &admin).await?;
        // A pipeline's signed request: its write is recorded as the pipeline's.
        let pipeline = super::pipeline_actor(self.config);
        record_spoc(&mut self.db.conn(), &pipeline, tenant_id, &auth_id).await?;
        tracing::info!(tenant = %tenant_id, provider = request.provider.key(),
            "tenant admin user created");
        Ok(auth_id)
    }
}

/// The tier the tenant is being provisioned on: the one recorded when its provisioning started.
/// A tier in the request must be that one. Only a tenant the original put into PROVISIONING has
/// none recorded: then the request's, which must be a configured tier.
async fn tier_of(
    conn: &mut Conn<'_>,
    config: &Config,
    tenant_id: Uuid,
    asked: Option<&str>,
) -> Result<String, AdminUserError> {
    let recorded = record::get(conn, tenant_id).await?.and_then(|r| r.tier);
    let tier = match (recorded, asked) {
        (Some(recorded), Some(asked)) if !recorded.eq_ignore_ascii_case(asked) => {
            return Err(AdminUserError::Invalid(vec![ValidationDetail::new(
                "/plan/tier",
                "const",
                format!("must be the tier the tenant is being provisioned on ({recorded})"),
                json!({"allowedValue": recorded}),
            )]));
        }
        (Some(recorded), _) => recorded,
        (None, Some(asked)) => asked.to_string(),
        (None, None) => {
            return Err(AdminUserError::Invalid(vec![missing_property(
                "/plan", "tier",
            )]));
        }
    };
    if config.tiers.isolation(&tier).is_none() {
        let tiers = config.tiers.names();
        return Err(AdminUserError::Invalid(vec![ValidationDetail::new(
            "/plan/tier",
            "enum",
            format!("must be one of the configured tiers: {}", tiers.join(", ")),
            json!({"allowedValues": tiers}),
        )]));
    }
    Ok(tier)
}

/// The tenant as the provider settings need it, on `tier` (a configured one).
fn facts_of(tenant: &Object, config: &Config, tier: String) -> Result<TenantFacts, AdminUserError> {
    let text = |name: &str| {
        tenant
            .get(name)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    let domains = tenant.get("domains").and_then(Value::as_array);
    let isolation = config
        .tiers
        .isolation(&tier)
        .ok_or_else(|| AdminUserError::Settings(format!("{tier:?} is not a configured tier")))?;
    Ok(TenantFacts {
        key: text("key"),
        name: text("name"),
        domains: domains
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .map(str::to_string)
            .collect(),
        isolation,
        tier,
    })
}

/// The admin's email and names: the tenant's primary contact, else its first.
fn admin_contact(tenant: &Object) -> Result<(String, String, String), AdminUserError> {
    let contacts = tenant
        .get("contacts")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let primary = contacts
        .iter()
        .find(|c| c.get("isPrimary") == Some(&Value::Bool(true)))
        .or_else(|| contacts.first())
        .ok_or_else(|| {
            AdminUserError::Invalid(vec![ValidationDetail::new(
                "/tenant",
                "contact",
                "the tenant has no contact to make its admin user",
                Value::Null,
            )])
        })?;
    let text = |name: &str| {
        primary
            .get(name)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    Ok((text("email"), text("firstName"), text("lastName")))
}

/// The newest live tenant config of `provider` for the tenant, checked (its `configValue`; none
/// when it has none). A config written before the rules of `domain::idp_settings` held is
/// checked again here, so an unsafe one is refused rather than used.
async fn tenant_settings(
    conn: &mut Conn<'_>,
    config: &Config,
    tenant_id: Uuid,
    provider: ProviderKind,
) -> Result<TenantSettings, AdminUserError> {
    let this = Where::And(vec![
        Where::uuid_is(fields::config_tenant_id(), tenant_id),
        Where::cmp(fields::config_key(), Op::Eq, &json!(provider.key()))
            .map_err(|e| AdminUserError::Settings(e.to_string()))?,
    ]);
    let filter = Filter {
        where_: Some(this),
        order: vec![Order {
            field: fields::config_modified_on(),
            descending: true,
        }],
        limit: Some(1),
        ..Filter::default()
    };
    let rows = crud::find(conn, &TENANT_CONFIGS, &filter, Scope::All).await?;
    let value = rows
        .into_iter()
        .next()
        .and_then(|mut r| r.remove("configValue"))
        .unwrap_or(Value::Null);
    Ok(idp_settings::check(
        config,
        provider,
        &value,
        Author::Admin,
    )?)
}

/// On the deployment's provider, a pooled tier's shared realm must not be a silo tenant's own:
/// a tier added after a silo tenant took its name as its key would put every tenant of the tier
/// into that tenant's realm.
async fn check_shared_realm(
    conn: &mut Conn<'_>,
    tenant_id: Uuid,
    realm: &str,
) -> Result<(), AdminUserError> {
    let by_key = Where::cmp(fields::tenant_key(), Op::Eq, &json!(realm))
        .map_err(|_| AdminUserError::Settings(format!("{realm:?} cannot be a realm")))?;
    let filter = Filter {
        where_: Some(by_key),
        ..Filter::default()
    };
    for other in crud::find(conn, &TENANTS, &filter, Scope::All).await? {
        let Some(id) = other
            .get("id")
            .and_then(Value::as_str)
            .and_then(|id| Uuid::parse_str(id).ok())
        else {
            continue;
        };
        let silo = record::get(conn, id)
            .await?
            .and_then(|r| r.isolation)
            .is_some_and(|i| i == Isolation::Silo.as_str());
        if id != tenant_id && silo {
            return Err(AdminUserError::Settings(format!(
                "the shared realm {realm:?} of the tenant's tier is the realm of the silo tenant \
                 with that key: rename the tier"
            )));
        }
    }
    Ok(())
}

/// Keeps the admin user's id as the tenant's `spocUserId` (when it fits the column).
async fn record_spoc(
    conn: &mut Conn<'_>,
    actor: &Actor,
    tenant_id: Uuid,
    auth_id: &str,
) -> Result<(), AdminUserError> {
    let fits = fields::tenant_spoc_user_id()
        .max_len
        .is_none_or(|max| auth_id.chars().count() <= max);
    if !fits {
        return Ok(());
    }
    let mut values = Object::new();
    values.insert("spocUserId".into(), json!(auth_id));
    match crud::update(conn, &TENANTS, Target::Id(tenant_id), &values, actor).await {
        // A column of the original's schema that takes UUIDs only (Keycloak's ids are; Auth0's
        // are not): the user exists either way.
        Err(WriteError::Unfit(why)) => {
            tracing::warn!(tenant = %tenant_id, %why, "the admin user's id is not kept as spocUserId");
            Ok(())
        }
        other => other.map(drop).map_err(Into::into),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_name_a_supported_provider() {
        let ok = parse_request(&json!({"tenant": {"id": "x", "identityProvider": "auth0",
            "key": "acme", "contacts": []}, "plan": {"tier": " PREMIUM ", "name": "Gold"}}))
        .unwrap();
        assert_eq!(ok.provider, ProviderKind::Auth0);
        assert_eq!(ok.tier.as_deref(), Some("PREMIUM"));
        let no_plan = parse_request(&json!({"tenant": {"identityProvider": "keycloak"}})).unwrap();
        assert_eq!(
            (no_plan.provider, no_plan.tier),
            (ProviderKind::Keycloak, None)
        );
        for (body, path) in [
            (
                json!({"tenant": {"identityProvider": "cognito"}}),
                "/tenant/identityProvider",
            ),
            (
                json!({"tenant": {"identityProvider": "Keycloak"}}),
                "/tenant/identityProvider",
            ),
            (json!({"tenant": {}}), "/tenant"),
            (json!({"plan": {"tier": "X"}}), ""),
            (json!({"tenant": [], "plan": {}}), "/tenant"),
            (
                json!({"tenant": {"identityProvider": "auth0"}, "plan": {"tier": 3}}),
                "/plan/tier",
            ),
            (
                json!({"tenant": {"identityProvider": "auth0"}, "extra": 1}),
                "",
            ),
            (json!([]), ""),
        ] {
            let problems = parse_request(&body).unwrap_err();
            assert!(
                problems.iter().any(|p| p.path == path),
                "{body}: {problems:?}"
            );
        }
    }
}
