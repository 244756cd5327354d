//! Auth0's Management API v2 (`docs/identity.md`, "What happens at the vendor"): a
//! machine-to-machine token, the tenant's organization (made when missing), the user on a
//! database connection, and its membership.

use rand::Rng;
use rand::seq::SliceRandom;
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};

use super::{Admin, Call, IdentityProviders, IdpError, TenantInfo, url};

const VENDOR: &str = "Auth0";

/// The connection users are created on unless a tenant config names another.
pub const DEFAULT_CONNECTION: &str = "Username-Password-Authentication";

/// Where and how to create the user.
#[derive(Debug, Clone)]
pub struct Settings {
    /// `https://<domain>` (or the base URL given as the domain).
    pub base: String,
    pub client_id: String,
    pub client_secret: SecretString,
    pub audience: String,
    pub organization: String,
    pub connection: String,
    /// `enabled_connections` of a new organization, as given.
    pub enabled_connections: Option<Value>,
}

impl Settings {
    /// The base URL of `domain`: itself when it is a URL, else `https://<domain>`.
    pub fn base_of(domain: &str) -> String {
        let domain = domain.trim().trim_end_matches('/');
        if domain.contains("://") {
            domain.to_string()
        } else {
            format!("https://{domain}")
        }
    }
}

fn call(name: &'static str) -> Call {
    Call {
        vendor: VENDOR,
        name,
    }
}

/// A password for a user who will set their own: 32 characters with upper- and lower-case
/// letters, digits and symbols and no character three times in a row, so that any Auth0
/// password policy takes it.
fn random_password() -> String {
    const UPPER: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZ";
    const LOWER: &[u8] = b"abcdefghijkmnopqrstuvwxyz";
    const DIGITS: &[u8] = b"23456789";
    const SYMBOLS: &[u8] = b"!#$%&*+-.=?@^_~";
    let mut rng = rand::rng();
    let mut pick = |set: &[u8]| set[rng.random_range(0..set.len())];
    let all: Vec<u8> = [UPPER, LOWER, DIGITS, SYMBOLS].concat();
    loop {
        let mut chars: Vec<u8> = vec![pick(UPPER), pick(LOWER), pick(DIGITS), pick(SYMBOLS)];
        chars.extend((0..28).map(|_| pick(&all)));
        chars.shuffle(&mut rand::rng());
        // The strictest policy refuses three identical characters in a row.
        if !chars.windows(3).any(|w| w[0] == w[1] && w[1] == w[2]) {
            return chars.into_iter().map(char::from).collect();
        }
    }
}

impl Settings {
    /// Creates (or finds) the admin user; its `user_id`.
    pub(super) async fn create_admin(
        &self,
        idp: &IdentityProviders,
        tenant: &TenantInfo<'_>,
        admin: &Admin<'_>,
    ) -> Result<String, IdpError> {
        let token = self.token(idp).await?;
        let organization = self.ensure_organization(idp, &token, tenant).await?;
        let user = self.ensure_user(idp, &token, admin).await?;
        let step = call("the membership");
        let request = idp
            .http()
            .post(url(
                &self.base,
                &["api", "v2", "organizations", &organization, "members"],
            )?)
            .bearer_auth(&token)
            .json(&json!({"members": [user]}));
        step.expect_success(request).await?;
        Ok(user)
    }

    fn cache_key(&self) -> String {
        format!("auth0 {} {} {}", self.base, self.client_id, self.audience)
    }

    /// A Management API token: cached, or by the client-credentials grant.
    async fn token(&self, idp: &IdentityProviders) -> Result<String, IdpError> {
        let form = [
            ("grant_type", "client_credentials"),
            ("client_id", self.client_id.as_str()),
            ("client_secret", self.client_secret.expose_secret()),
            ("audience", self.audience.as_str()),
        ];
        let endpoint = url(&self.base, &["oauth", "token"])?;
        idp.token(self.cache_key(), call("the token request"), endpoint, &form)
            .await
    }

    /// The organization's id: found by name, or created.
    async fn ensure_organization(
        &self,
        idp: &IdentityProviders,
        token: &str,
        tenant: &TenantInfo<'_>,
    ) -> Result<String, IdpError> {
        if let Some(id) = self.organization_id(idp, token).await? {
            return Ok(id);
        }
        let display = if self.organization == tenant.key {
            tenant.name
        } else {
            &self.organization
        };
        let mut body = json!({"name": self.organization, "display_name": display});
        if let Some(connections) = &self.enabled_connections {
            body["enabled_connections"] = connections.clone();
        }
        let step = call("the organization creation");
        let request = idp
            .http()
            .post(url(&self.base, &["api", "v2", "organizations"])?)
            .bearer_auth(token)
            .json(&body);
        let response = step.send(request).await?;
        match response.status().as_u16() {
            200 | 201 => id_of(step, &step.json(response).await?, "id"),
            // Made by another call meanwhile.
            409 => self
                .organization_id(idp, token)
                .await?
                .ok_or_else(|| IdpError::Refused {
                    vendor: VENDOR,
                    call: step.name,
                    status: 409,
                    message: format!(
                        "organization {} conflicts but cannot be found",
                        self.organization
                    ),
                }),
            _ => Err(step.refused(response).await),
        }
    }

    async fn organization_id(
        &self,
        idp: &IdentityProviders,
        token: &str,
    ) -> Result<Option<String>, IdpError> {
        let step = call("the organization lookup");
        let request = idp
            .http()
            .get(url(
                &self.base,
                &["api", "v2", "organizations", "name", &self.organization],
            )?)
            .bearer_auth(token);
        let response = step.send(request).await?;
        match response.status().as_u16() {
            200 => id_of(step, &step.json(response).await?, "id").map(Some),
            404 => Ok(None),
            401 => {
                idp.drop_token(&self.cache_key());
                Err(step.refused(response).await)
            }
            _ => Err(step.refused(response).await),
        }
    }

    /// The user's `user_id`: created, or the existing user with that email on the connection.
    async fn ensure_user(
        &self,
        idp: &IdentityProviders,
        token: &str,
        admin: &Admin<'_>,
    ) -> Result<String, IdpError> {
        let step = call("the user creation");
        let name = format!("{} {}", admin.first_name, admin.last_name);
        let request = idp
            .http()
            .post(url(&self.base, &["api", "v2", "users"])?)
            .bearer_auth(token)
            .json(&json!({
                "email": admin.email,
                "connection": self.connection,
                "password": random_password(),
                "given_name": admin.first_name,
                "family_name": admin.last_name,
                "name": name.trim(),
                "email_verified": false,
                "verify_email": true,
            }));
        let response = step.send(request).await?;
        match response.status().as_u16() {
            200 | 201 => return id_of(step, &step.json(response).await?, "user_id"),
            409 => {}
            _ => return Err(step.refused(response).await),
        }
        let step = call("the user lookup");
        let request = idp
            .http()
            .get(url(&self.base, &["api", "v2", "users-by-email"])?)
            // Auth0 keeps the emails of database users in lower case, and this search is exact.
            .query(&[("email", admin.email.to_lowercase())])
            .bearer_auth(token);
        let users = step.json(step.expect_success(request).await?).await?;
        let users = users.as_array().cloned().unwrap_or_default();
        let on_connection = |user: &&Value| {
            user.get("identities")
                .and_then(Value::as_array)
                .is_some_and(|ids| {
                    ids.iter().any(|i| {
                        i.get("connection").and_then(Value::as_str) == Some(&self.connection)
                    })
                })
        };
        users
            .iter()
            .find(on_connection)
            .and_then(|u| u.get("user_id").and_then(Value::as_str))
            .map(str::to_string)
            .ok_or_else(|| IdpError::Refused {
                vendor: VENDOR,
                call: step.name,
                status: 409,
                message: format!(
                    "a user conflicts with {} but none is on the connection {}",
                    admin.email, self.connection
                ),
            })
    }
}

/// The string `field` of an answer.
fn id_of(step: Call, body: &Value, field: &str) -> Result<String, IdpError> {
    body.get(field)
        .and_then(Value::as_str)
        .filter(|id| !id.is_empty())
        .map(str::to_string)
        .ok_or_else(|| IdpError::Refused {
            vendor: VENDOR,
            call: step.name,
            status: 200,
            message: format!("the answer has no {field}"),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_have_every_kind_of_character() {
        for _ in 0..200 {
            let password = random_password();
            assert_eq!(password.len(), 32);
            assert!(
                password.bytes().any(|b| b.is_ascii_uppercase()),
                "{password}"
            );
            assert!(
                password.bytes().any(|b| b.is_ascii_lowercase()),
                "{password}"
            );
            assert!(password.bytes().any(|b| b.is_ascii_digit()), "{password}");
            assert!(
                password.bytes().any(|b| !b.is_ascii_alphanumeric()),
                "{password}"
            );
        }
        assert_ne!(random_password(), random_password());
    }

    #[test]
    fn a_domain_is_a_host_or_a_base_url() {
        assert_eq!(
            Settings::base_of("acme.eu.auth0.com"),
            "https://acme.eu.auth0.com"
        );
        assert_eq!(
            Settings::base_of("http://127.0.0.1:9/"),
            "http://127.0.0.1:9"
        );
    }
}
