//! Where tms connects for a tenant's identity provider, with which credentials, and under which
//! names (`docs/identity.md`, "Who sets what"). Three sources, from most to least trusted:
//!
//! - **the operator** (the environment): the deployment's Keycloak and Auth0 and their
//!   credentials, tms's mail server given to realms it creates, the plan tiers realm and
//!   organisation names derive from, and the hosts a tenant's own provider may be on
//!   (`IDP_ALLOWED_HOSTS`);
//! - **an administrator** (a `keycloak` or `auth0` tenant config written with an admin token): a
//!   tenant's own provider — its host together with its own credentials, on an allowed host,
//!   https outside development — and the names within it; the tenant's client and user settings;
//! - **a lead** (a tenant config written with a lead token): none of the settings tms reads.
//!
//! A host and its credentials always come from the same source: the environment's credentials
//! go only to the environment's host. On the deployment's provider the realm, client and
//! organisation are named after the tenant's key (silo) or its tier (pooled), never `master` nor
//! another tenant's.

use secrecy::{ExposeSecret, SecretString};
use serde_json::{Map, Value, json};

use crate::config::{ADMIN_REALM, Config, Environment, Isolation};
use crate::idp;
use crate::mail::{SmtpSettings, SmtpTls};

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

    fn title(self) -> &'static str {
        match self {
            Self::Keycloak => "Keycloak",
            Self::Auth0 => "Auth0",
        }
    }

    /// The provider whose tenant config has `config_key` (any case, as a client may write it).
    pub fn of_config_key(config_key: &str) -> Option<Self> {
        [Self::Keycloak, Self::Auth0]
            .into_iter()
            .find(|p| p.key().eq_ignore_ascii_case(config_key.trim()))
    }

    fn settings(self) -> &'static [(&'static str, Role)] {
        match self {
            Self::Keycloak => KEYCLOAK,
            Self::Auth0 => AUTH0,
        }
    }
}

/// Who wrote a tenant config.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Author {
    /// A lead token: anyone who signed up.
    Lead,
    /// An administrator's token.
    Admin,
}

/// What a setting decides, and so who may set it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    /// Where tms connects: only with the credentials, from the same source.
    Endpoint,
    /// The credentials tms uses there.
    Credential,
    /// A name or setting of the provider itself (realm, client id, organisation, audience, the
    /// realm's mail server): only on the tenant's own provider.
    OwnProvider,
    /// A setting of the tenant's client or user.
    Client,
}

/// Every setting tms reads from a `keycloak` tenant config.
const KEYCLOAK: &[(&str, Role)] = &[
    ("host", Role::Endpoint),
    ("adminUsername", Role::Credential),
    ("adminPassword", Role::Credential),
    ("realm", Role::OwnProvider),
    ("clientId", Role::OwnProvider),
    ("smtpServer", Role::OwnProvider),
    ("clientSecret", Role::Client),
    ("redirectUris", Role::Client),
    ("actionsEmail", Role::Client),
];

/// Every setting tms reads from an `auth0` tenant config.
const AUTH0: &[(&str, Role)] = &[
    ("domain", Role::Endpoint),
    ("clientId", Role::Credential),
    ("clientSecret", Role::Credential),
    ("audience", Role::OwnProvider),
    ("organization", Role::OwnProvider),
    ("connection", Role::Client),
    ("enabledConnections", Role::Client),
];

/// Why a tenant's identity-provider settings cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SettingsError {
    /// A lead token set settings only an operator or an administrator may set (403).
    #[error(
        "a lead token cannot set {provider} {}: where tms connects, with which credentials and \
         under which names come from the operator or an administrator",
        names.join(", ")
    )]
    NotForLeads {
        provider: &'static str,
        names: Vec<&'static str>,
    },
    /// A lead token changing the key of an existing config (403).
    #[error("a lead token cannot change a config's configKey")]
    KeyChange,
    /// Settings that are missing, of the wrong type or not allowed (422).
    #[error("{0}")]
    Invalid(String),
}

/// A tenant's own provider: where, and the credentials it has there.
#[derive(Debug, Clone)]
struct OwnProvider {
    base: String,
    user: String,
    secret: SecretString,
}

/// The checked settings of a tenant config (none when it has none).
#[derive(Debug, Clone, Default)]
pub struct TenantSettings {
    own: Option<OwnProvider>,
    values: Map<String, Value>,
}

/// Checks the `configValue` of a tenant config of `provider` written by `author`: a lead may set
/// none of the settings tms reads; a tenant's own provider comes with its credentials, on a host
/// of `IDP_ALLOWED_HOSTS`, https outside development; names within it are never `master`; every
/// setting has its type. Settings tms does not read are left alone.
pub fn check(
    config: &Config,
    provider: ProviderKind,
    value: &Value,
    author: Author,
) -> Result<TenantSettings, SettingsError> {
    let title = provider.title();
    let values = match value {
        Value::Null => return Ok(TenantSettings::default()),
        Value::Object(values) => values,
        _ => {
            return Err(SettingsError::Invalid(format!(
                "the tenant's {} config must be a JSON object",
                provider.key()
            )));
        }
    };
    let set = |role: Role| -> Vec<&'static str> {
        provider
            .settings()
            .iter()
            .filter(|(name, r)| *r == role && !values.get(*name).is_none_or(Value::is_null))
            .map(|(name, _)| *name)
            .collect()
    };
    if author == Author::Lead {
        let names: Vec<&'static str> = provider
            .settings()
            .iter()
            .map(|(name, _)| *name)
            .filter(|name| !values.get(*name).is_none_or(Value::is_null))
            .collect();
        if !names.is_empty() {
            return Err(SettingsError::NotForLeads {
                provider: title,
                names,
            });
        }
    }
    let own = Overrides { provider, values };
    let endpoint = set(Role::Endpoint);
    let credentials = set(Role::Credential);
    let all_credentials = provider
        .settings()
        .iter()
        .filter(|(_, r)| *r == Role::Credential)
        .count();
    let own_provider = match (endpoint.first(), credentials.len()) {
        (None, 0) => None,
        (Some(name), n) if n == all_credentials => {
            let raw = own.text(name)?.unwrap_or_default();
            let base = match provider {
                ProviderKind::Keycloak => raw,
                ProviderKind::Auth0 => idp::auth0::Settings::base_of(&raw),
            };
            check_endpoint(config, provider, name, &base)?;
            let [user, secret] = match provider {
                ProviderKind::Keycloak => ["adminUsername", "adminPassword"],
                ProviderKind::Auth0 => ["clientId", "clientSecret"],
            };
            Some(OwnProvider {
                base,
                user: own.text(user)?.unwrap_or_default(),
                secret: own
                    .secret(secret)?
                    .unwrap_or_else(|| SecretString::from("")),
            })
        }
        _ => {
            let together: Vec<&str> = provider
                .settings()
                .iter()
                .filter(|(_, r)| matches!(r, Role::Endpoint | Role::Credential))
                .map(|(name, _)| *name)
                .collect();
            return Err(SettingsError::Invalid(format!(
                "the tenant's {} config: {} come together (a provider of the tenant's own, with \
                 its own credentials) or not at all (the deployment's, from the environment)",
                provider.key(),
                together.join(", ")
            )));
        }
    };
    let own_only = set(Role::OwnProvider);
    if own_provider.is_none() && !own_only.is_empty() {
        return Err(SettingsError::Invalid(format!(
            "the tenant's {} config: {} can only be set for a provider of the tenant's own \
             (with its {}): on the deployment's {title}, tms names them after the tenant's key \
             or tier",
            provider.key(),
            own_only.join(", "),
            endpoint_name(provider)
        )));
    }
    for name in ["realm", "organization"] {
        if provider.settings().iter().any(|(n, _)| *n == name)
            && let Some(text) = own.text(name)?
            && text.eq_ignore_ascii_case(ADMIN_REALM)
        {
            return Err(own.bad(name, "a name other than master"));
        }
    }
    // The types of the rest.
    match provider {
        ProviderKind::Keycloak => {
            own.secret("clientSecret")?;
            own.boolean("actionsEmail")?;
            own.object("smtpServer")?;
            own.text("clientId")?;
            if let Some(uris) = own.list("redirectUris")? {
                for uri in uris {
                    check_redirect(config, &own, &uri)?;
                }
            }
        }
        ProviderKind::Auth0 => {
            own.text("audience")?;
            own.text("connection")?;
            own.any_list("enabledConnections")?;
        }
    }
    Ok(TenantSettings {
        own: own_provider,
        values: values.clone(),
    })
}

fn endpoint_name(provider: ProviderKind) -> &'static str {
    match provider {
        ProviderKind::Keycloak => "host, adminUsername and adminPassword",
        ProviderKind::Auth0 => "domain, clientId and clientSecret",
    }
}

/// A tenant's own provider at `base`: an http(s) URL without credentials, query or fragment,
/// https outside development, on a host the operator allowed.
fn check_endpoint(
    config: &Config,
    provider: ProviderKind,
    name: &str,
    base: &str,
) -> Result<(), SettingsError> {
    let bad = |why: String| {
        SettingsError::Invalid(format!(
            "the tenant's {} config: {name} {why}",
            provider.key()
        ))
    };
    let url = url::Url::parse(base).map_err(|_| bad("must be a URL".into()))?;
    let https_only = config.env == Environment::Prod;
    match url.scheme() {
        "https" => {}
        "http" if !https_only => {}
        _ => return Err(bad("must be an https:// URL".into())),
    }
    if !url.username().is_empty()
        || url.password().is_some()
        || url.query().is_some()
        || url.fragment().is_some()
    {
        return Err(bad(
            "must be a base URL without credentials, query or fragment".into(),
        ));
    }
    if !config.idp_allowed_hosts.allows(&url) {
        let host = url.host_str().unwrap_or_default();
        let port = url.port_or_known_default().unwrap_or_default();
        return Err(bad(format!(
            "{host}:{port} is not on IDP_ALLOWED_HOSTS, the hosts the operator allows a \
             tenant's own identity provider on"
        )));
    }
    Ok(())
}

/// A redirect URI an administrator gives a tenant's client: an absolute https URL (http in
/// development), with Keycloak's trailing `*` wildcard allowed.
fn check_redirect(config: &Config, own: &Overrides<'_>, uri: &str) -> Result<(), SettingsError> {
    let parsed = url::Url::parse(uri.trim_end_matches('*')).ok();
    let https_only = config.env == Environment::Prod;
    let fine = parsed.is_some_and(|u| {
        u.host_str().is_some() && (u.scheme() == "https" || (!https_only && u.scheme() == "http"))
    });
    if fine {
        Ok(())
    } else {
        Err(own.bad("redirectUris", "a list of absolute https:// URLs"))
    }
}

/// The tenant a provider's settings are made for.
#[derive(Debug, Clone)]
pub struct TenantFacts {
    pub key: String,
    pub name: String,
    pub domains: Vec<String>,
    pub isolation: Isolation,
    /// A configured tier.
    pub tier: String,
}

/// The realm (Keycloak) or organisation (Auth0) of the tenant on the deployment's provider: a
/// silo tenant's own, named after its key, or its pooled tier's shared one. Never Keycloak's
/// admin realm nor a pooled tier's realm for a silo tenant.
pub fn home_name(config: &Config, facts: &TenantFacts) -> Result<String, SettingsError> {
    match facts.isolation {
        Isolation::Silo => {
            if config.tiers.is_reserved_realm(&facts.key) {
                return Err(SettingsError::Invalid(format!(
                    "a silo tenant's realm is named after its key, and {:?} names Keycloak's \
                     admin realm or a pooled tier's shared realm",
                    facts.key
                )));
            }
            Ok(facts.key.clone())
        }
        Isolation::Pooled => config.tiers.shared_realm(&facts.tier).ok_or_else(|| {
            SettingsError::Invalid(format!(
                "{:?} is not one of the configured pooled tiers",
                facts.tier
            ))
        }),
    }
}

impl TenantSettings {
    /// Whether the tenant has a provider of its own.
    pub fn is_own(&self) -> bool {
        self.own.is_some()
    }

    fn overrides(&self, provider: ProviderKind) -> Overrides<'_> {
        Overrides {
            provider,
            values: &self.values,
        }
    }

    /// The Keycloak settings for the tenant: its own Keycloak with the names it gives, or the
    /// deployment's with names tms derives and tms's mail server for new realms.
    pub fn keycloak(
        &self,
        config: &Config,
        facts: &TenantFacts,
    ) -> Result<idp::keycloak::Settings, SettingsError> {
        let own = self.overrides(ProviderKind::Keycloak);
        let (host, admin_username, admin_password, realm, client_id, smtp_server) = match &self.own
        {
            Some(mine) => (
                mine.base.clone(),
                mine.user.clone(),
                mine.secret.clone(),
                match own.text("realm")? {
                    Some(realm) => realm,
                    None => own_home_name(facts)?,
                },
                own.text("clientId")?.unwrap_or_else(|| facts.key.clone()),
                own.object("smtpServer")?,
            ),
            None => {
                let (Some(host), Some(user), Some(password)) = (
                    config.keycloak_host.clone(),
                    config.keycloak_admin_username.clone(),
                    config.keycloak_admin_password.clone(),
                ) else {
                    return Err(not_configured(
                        ProviderKind::Keycloak,
                        &[
                            "KEYCLOAK_HOST",
                            "KEYCLOAK_ADMIN_USERNAME",
                            "KEYCLOAK_ADMIN_PASSWORD",
                        ],
                    ));
                };
                (
                    host,
                    user,
                    password,
                    home_name(config, facts)?,
                    facts.key.clone(),
                    realm_smtp(config),
                )
            }
        };
        let redirect_uris = match own.list("redirectUris")? {
            Some(uris) => uris,
            None => facts
                .domains
                .iter()
                .map(|d| format!("https://{d}/*"))
                .collect(),
        };
        Ok(idp::keycloak::Settings {
            host,
            admin_username,
            admin_password,
            realm,
            client_id,
            client_secret: own.secret("clientSecret")?,
            redirect_uris,
            actions_email: own.boolean("actionsEmail")?.unwrap_or(true),
            smtp_server,
        })
    }

    /// The Auth0 settings for the tenant: its own tenant of Auth0 with the organisation it
    /// names, or the deployment's with the organisation tms derives.
    pub fn auth0(
        &self,
        config: &Config,
        facts: &TenantFacts,
    ) -> Result<idp::auth0::Settings, SettingsError> {
        let own = self.overrides(ProviderKind::Auth0);
        let (base, client_id, client_secret, audience, organization) = match &self.own {
            Some(mine) => (
                mine.base.clone(),
                mine.user.clone(),
                mine.secret.clone(),
                own.text("audience")?
                    .unwrap_or_else(|| format!("{}/api/v2/", mine.base)),
                match own.text("organization")? {
                    Some(organization) => organization,
                    None => own_home_name(facts)?,
                },
            ),
            None => {
                let (Some(domain), Some(client_id), Some(client_secret)) = (
                    config.auth0_domain.as_deref(),
                    config.auth0_client_id.clone(),
                    config.auth0_client_secret.clone(),
                ) else {
                    return Err(not_configured(
                        ProviderKind::Auth0,
                        &["AUTH0_DOMAIN", "AUTH0_CLIENT_ID", "AUTH0_CLIENT_SECRET"],
                    ));
                };
                let base = idp::auth0::Settings::base_of(domain);
                let audience = config
                    .auth0_audience
                    .clone()
                    .unwrap_or_else(|| format!("{base}/api/v2/"));
                (
                    base,
                    client_id,
                    client_secret,
                    audience,
                    home_name(config, facts)?,
                )
            }
        };
        Ok(idp::auth0::Settings {
            base,
            client_id,
            client_secret,
            audience,
            organization,
            connection: own
                .text("connection")?
                .unwrap_or_else(|| idp::auth0::DEFAULT_CONNECTION.to_string()),
            enabled_connections: own.any_list("enabledConnections")?,
        })
    }
}

/// The realm or organisation on a tenant's own provider when its config names none: its key
/// (silo) or its tier's (pooled) — never `master`.
fn own_home_name(facts: &TenantFacts) -> Result<String, SettingsError> {
    let name = match facts.isolation {
        Isolation::Silo => facts.key.clone(),
        Isolation::Pooled => crate::config::realm_of_tier(&facts.tier),
    };
    if name.eq_ignore_ascii_case(ADMIN_REALM) {
        return Err(SettingsError::Invalid(format!(
            "the tenant's realm would be Keycloak's admin realm {ADMIN_REALM:?}: name another in \
             its config"
        )));
    }
    Ok(name)
}

fn not_configured(provider: ProviderKind, env: &[&str]) -> SettingsError {
    SettingsError::Invalid(format!(
        "{} is not configured: set {} (or an administrator gives the tenant a provider of its \
         own in its {} config: {})",
        provider.title(),
        env.join(", "),
        provider.key(),
        endpoint_name(provider)
    ))
}

/// The `smtpServer` of a realm tms creates on the deployment's Keycloak: tms's own mail server
/// (`SMTP_URL`), sender `FROM_EMAIL` and `APP_NAME`, in Keycloak's shape (every value a
/// string). `None` without one. Never given to a tenant's own Keycloak.
fn realm_smtp(config: &Config) -> Option<Value> {
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

/// Typed reads of a config's settings; a value of the wrong type is 422 naming it.
struct Overrides<'a> {
    provider: ProviderKind,
    values: &'a Map<String, Value>,
}

impl Overrides<'_> {
    fn bad(&self, name: &str, expected: &str) -> SettingsError {
        SettingsError::Invalid(format!(
            "the tenant's {} config: {name} must be {expected}",
            self.provider.key()
        ))
    }

    fn get(&self, name: &str) -> Option<&Value> {
        self.values.get(name).filter(|v| !v.is_null())
    }

    fn text(&self, name: &str) -> Result<Option<String>, SettingsError> {
        match self.get(name) {
            None => Ok(None),
            Some(Value::String(v)) if !v.trim().is_empty() => Ok(Some(v.trim().to_string())),
            Some(_) => Err(self.bad(name, "a non-empty string")),
        }
    }

    fn secret(&self, name: &str) -> Result<Option<SecretString>, SettingsError> {
        match self.get(name) {
            None => Ok(None),
            Some(Value::String(v)) if !v.is_empty() => Ok(Some(SecretString::from(v.clone()))),
            Some(_) => Err(self.bad(name, "a non-empty string")),
        }
    }

    fn boolean(&self, name: &str) -> Result<Option<bool>, SettingsError> {
        match self.get(name) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(_) => Err(self.bad(name, "true or false")),
        }
    }

    fn list(&self, name: &str) -> Result<Option<Vec<String>>, SettingsError> {
        match self.get(name) {
            None => Ok(None),
            Some(Value::Array(items)) if items.iter().all(Value::is_string) => Ok(Some(
                items
                    .iter()
                    .filter_map(Value::as_str)
                    .map(str::to_string)
                    .collect(),
            )),
            Some(_) => Err(self.bad(name, "a list of strings")),
        }
    }

    fn any_list(&self, name: &str) -> Result<Option<Value>, SettingsError> {
        match self.get(name) {
            None => Ok(None),
            Some(list @ Value::Array(_)) => Ok(Some(list.clone())),
            Some(_) => Err(self.bad(name, "a list")),
        }
    }

    fn object(&self, name: &str) -> Result<Option<Value>, SettingsError> {
        match self.get(name) {
            None => Ok(None),
            Some(object @ Value::Object(_)) => Ok(Some(object.clone())),
            Some(_) => Err(self.bad(name, "an object")),
        }
    }
}

#[cfg(test)]
mod tests;
