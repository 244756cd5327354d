//! The tenant's first admin user (`docs/identity.md`): `POST /manage/users`, signed by
//! the provisioning pipeline with the tenant's secret (raw body ‖ timestamp, no context), creates
//! the user in the tenant's identity provider and returns its id. The request names the tenant,
//! the provider and the tier; who the admin is, and the tenant's key, name and domains, come from
//! the database. Settings come from the environment, overridden by the tenant's `keycloak` or
//! `auth0` tenant config.

use secrecy::SecretString;
use serde_json::{Map, Value, json};
use uuid::Uuid;

use super::provisioning::{isolation_of, tenant_with_relations};
use super::tenant::TenantStatus;
use super::validation::{ValidationDetail, missing_property, not_an_object, unknown_property};
use super::webhook::{self, Signed, WebhookError};
use crate::config::Config;
use crate::idp::{self, Admin, IdentityProviders, IdpError, Provider, TenantInfo};
use crate::kv::Kv;
use crate::mail::{SmtpSettings, SmtpTls};
use crate::model::{TENANT_CONFIGS, TENANTS};
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

impl From<WriteError> for AdminUserError {
    fn from(err: WriteError) -> Self {
        match err {
            WriteError::Db(err) => Self::Database(err),
            other => Self::Write(other),
        }
    }
}

/// The identity providers tms can create users in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProviderKind {
    Keycloak,
    Auth0,
}

impl ProviderKind {
    /// Its name in requests and the `configKey` of its tenant config.
    pub fn key(self) -> &'static str {
        match self {
            Self::Keycloak => "keycloak",
            Self::Auth0 => "auth0",
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

/// The tenant as the provider settings need it.
struct TenantFacts {
    key: String,
    name: String,
    domains: Vec<String>,
    isolation: &'static str,
    tier: String,
}

impl TenantFacts {
    fn of(tenant: &Object, isolation: &'static str, tier: String) -> Self {
        let text = |name: &str| {
            tenant
                .get(name)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string()
        };
        let domains = tenant.get("domains").and_then(Value::as_array);
        Self {
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
        }
    }
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
        let recorded_tier = record::get(&mut conn, tenant_id)
            .await?
            .and_then(|r| r.tier);
        let tier = request
            .tier
            .or(recorded_tier)
            .ok_or_else(|| AdminUserError::Invalid(vec![missing_property("/plan", "tier")]))?;
        let (email, first_name, last_name) = admin_contact(&tenant)?;
        let facts = TenantFacts::of(&tenant, isolation_of(self.config, &tier), tier);
        let overrides = tenant_config(&mut conn, tenant_id, request.provider).await?;
        let provider = match request.provider {
            ProviderKind::Keycloak => {
                Provider::Keycloak(keycloak_settings(self.config, &overrides, &facts)?)
            }
            ProviderKind::Auth0 => {
                Provider::Auth0(auth0_settings(self.config, &overrides, &facts)?)
            }
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
        let system = super::provisioning::system_actor(self.config);
        record_spoc(&mut self.db.conn(), &system, tenant_id, &auth_id).await?;
        tracing::info!(tenant = %tenant_id, provider = request.provider.key(),
            "tenant admin user created");
        Ok(auth_id)
    }
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

/// The newest live tenant config of `provider` for the tenant (its `configValue`), or empty.
async fn tenant_config(
    conn: &mut Conn<'_>,
    tenant_id: Uuid,
    provider: ProviderKind,
) -> Result<Map<String, Value>, AdminUserError> {
    let field = |name: &str| TENANT_CONFIGS.field(name).expect("tenant configs have it");
    let this = Where::And(vec![
        Where::cmp(field("tenantId"), Op::Eq, &json!(tenant_id.to_string()))
            .expect("a UUID is a valid tenantId"),
        Where::cmp(field("configKey"), Op::Eq, &json!(provider.key()))
            .expect("a key is a valid configKey"),
    ]);
    let filter = Filter {
        where_: Some(this),
        order: vec![Order {
            field: field("modifiedOn"),
            descending: true,
        }],
        limit: Some(1),
        ..Filter::default()
    };
    let rows = crud::find(conn, &TENANT_CONFIGS, &filter, Scope::All).await?;
    match rows
        .into_iter()
        .next()
        .and_then(|mut r| r.remove("configValue"))
    {
        None | Some(Value::Null) => Ok(Map::new()),
        Some(Value::Object(value)) => Ok(value),
        Some(_) => Err(AdminUserError::Settings(format!(
            "the tenant's {} config must be a JSON object",
            provider.key()
        ))),
    }
}

/// Settings of one provider: the tenant config's values over the environment's.
struct Overrides<'a> {
    provider: &'static str,
    values: &'a Map<String, Value>,
}

impl Overrides<'_> {
    fn bad(&self, name: &str, expected: &str) -> AdminUserError {
        AdminUserError::Settings(format!(
            "the tenant's {} config: {name} must be {expected}",
            self.provider
        ))
    }

    fn text(&self, name: &str, env: Option<&str>) -> Result<Option<String>, AdminUserError> {
        match self.values.get(name) {
            None | Some(Value::Null) => Ok(env.map(str::to_string).filter(|v| !v.is_empty())),
            Some(Value::String(v)) if !v.trim().is_empty() => Ok(Some(v.trim().to_string())),
            Some(_) => Err(self.bad(name, "a non-empty string")),
        }
    }

    fn secret(
        &self,
        name: &str,
        env: Option<&SecretString>,
    ) -> Result<Option<SecretString>, AdminUserError> {
        match self.values.get(name) {
            None | Some(Value::Null) => Ok(env.cloned()),
            Some(Value::String(v)) if !v.is_empty() => Ok(Some(SecretString::from(v.clone()))),
            Some(_) => Err(self.bad(name, "a non-empty string")),
        }
    }

    /// A missing setting: what to set, in the environment or the tenant config.
    fn missing(&self, missing: &[(&str, &str)]) -> AdminUserError {
        let env: Vec<&str> = missing.iter().map(|(env, _)| *env).collect();
        let own: Vec<&str> = missing.iter().map(|(_, own)| *own).collect();
        AdminUserError::Settings(format!(
            "{} is not configured: set {} or {} in the tenant's {} config",
            self.provider,
            env.join(", "),
            own.join(", "),
            self.provider
        ))
    }
}

/// A realm or organization name from a tier: lower case, letters, digits, `-` and `_`.
fn tier_name(tier: &str) -> String {
    tier.trim()
        .to_ascii_lowercase()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .collect()
}

/// The silo tenant's own realm or organization, or its tier's shared one.
fn home_name(facts: &TenantFacts) -> String {
    if facts.isolation == "silo" {
        facts.key.clone()
    } else {
        tier_name(&facts.tier)
    }
}

fn keycloak_settings(
    config: &Config,
    values: &Map<String, Value>,
    facts: &TenantFacts,
) -> Result<idp::keycloak::Settings, AdminUserError> {
    let own = Overrides {
        provider: "Keycloak",
        values,
    };
    let host = own.text("host", config.keycloak_host.as_deref())?;
    let username = own.text("adminUsername", config.keycloak_admin_username.as_deref())?;
    let password = own.secret("adminPassword", config.keycloak_admin_password.as_ref())?;
    let (Some(host), Some(admin_username), Some(admin_password)) = (host, username, password)
    else {
        return Err(own.missing(&[
            ("KEYCLOAK_HOST", "host"),
            ("KEYCLOAK_ADMIN_USERNAME", "adminUsername"),
            ("KEYCLOAK_ADMIN_PASSWORD", "adminPassword"),
        ]));
    };
    let redirect_uris = match values.get("redirectUris") {
        None | Some(Value::Null) => facts
            .domains
            .iter()
            .map(|d| format!("https://{d}/*"))
            .collect(),
        Some(Value::Array(uris)) if uris.iter().all(Value::is_string) => uris
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_string)
            .collect(),
        Some(_) => return Err(own.bad("redirectUris", "a list of strings")),
    };
    let actions_email = match values.get("actionsEmail") {
        None | Some(Value::Null) => true,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err(own.bad("actionsEmail", "true or false")),
    };
    let smtp_server = match values.get("smtpServer") {
        None | Some(Value::Null) => realm_smtp(config),
        Some(server @ Value::Object(_)) => Some(server.clone()),
        Some(_) => return Err(own.bad("smtpServer", "an object")),
    };
    Ok(idp::keycloak::Settings {
        host,
        admin_username,
        admin_password,
        realm: own.text("realm", None)?.unwrap_or_else(|| home_name(facts)),
        client_id: own
            .text("clientId", None)?
            .unwrap_or_else(|| facts.key.clone()),
        client_secret: own.secret("clientSecret", None)?,
        redirect_uris,
        actions_email,
        smtp_server,
    })
}

/// The `smtpServer` of a realm tms creates: tms's own mail server (`SMTP_URL`), sender
/// `FROM_EMAIL` and `APP_NAME`, in Keycloak's shape (every value a string). `None` without one.
fn realm_smtp(config: &Config) -> Option<Value> {
    use secrecy::ExposeSecret;
    let smtp = SmtpSettings::parse(config.smtp_url.as_ref()?.expose_secret()).ok()?;
    let mut server = json!({
        "host": smtp.host,
        "port": smtp.port.to_string(),
        "from": config.from_email,
        "fromDisplayName": config.app_name,
        "ssl": (smtp.tls == SmtpTls::Implicit).to_string(),
        "starttls": matches!(smtp.tls, SmtpTls::Required | SmtpTls::Opportunistic).to_string(),
        "auth": smtp.credentials.is_some().to_string(),
    });
    if let Some((user, password)) = &smtp.credentials {
        server["user"] = json!(user);
        server["password"] = json!(password.expose_secret());
    }
    Some(server)
}

fn auth0_settings(
    config: &Config,
    values: &Map<String, Value>,
    facts: &TenantFacts,
) -> Result<idp::auth0::Settings, AdminUserError> {
    let own = Overrides {
        provider: "Auth0",
        values,
    };
    let domain = own.text("domain", config.auth0_domain.as_deref())?;
    let client_id = own.text("clientId", config.auth0_client_id.as_deref())?;
    let client_secret = own.secret("clientSecret", config.auth0_client_secret.as_ref())?;
    let (Some(domain), Some(client_id), Some(client_secret)) = (domain, client_id, client_secret)
    else {
        return Err(own.missing(&[
            ("AUTH0_DOMAIN", "domain"),
            ("AUTH0_CLIENT_ID", "clientId"),
            ("AUTH0_CLIENT_SECRET", "clientSecret"),
        ]));
    };
    let base = idp::auth0::Settings::base_of(&domain);
    let audience = own
        .text("audience", config.auth0_audience.as_deref())?
        .unwrap_or_else(|| format!("{base}/api/v2/"));
    let enabled_connections = match values.get("enabledConnections") {
        None | Some(Value::Null) => None,
        Some(list @ Value::Array(_)) => Some(list.clone()),
        Some(_) => return Err(own.bad("enabledConnections", "a list")),
    };
    Ok(idp::auth0::Settings {
        base,
        client_id,
        client_secret,
        audience,
        organization: own
            .text("organization", None)?
            .unwrap_or_else(|| home_name(facts)),
        connection: own
            .text("connection", None)?
            .unwrap_or_else(|| idp::auth0::DEFAULT_CONNECTION.to_string()),
        enabled_connections,
    })
}

/// Keeps the admin user's id as the tenant's `spocUserId` (when it fits the column).
async fn record_spoc(
    conn: &mut Conn<'_>,
    actor: &Actor,
    tenant_id: Uuid,
    auth_id: &str,
) -> Result<(), AdminUserError> {
    let fits = TENANTS
        .field("spocUserId")
        .and_then(|f| f.max_len)
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

    #[test]
    fn tiers_name_shared_realms_safely() {
        assert_eq!(tier_name("STANDARD"), "standard");
        assert_eq!(tier_name(" Gold plan/eu "), "gold-plan-eu");
    }
}
