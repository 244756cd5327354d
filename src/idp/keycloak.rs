//! Keycloak's Admin REST API (`docs/identity.md`, "What happens at the vendor"): an admin token
//! from the `master` realm, the tenant's realm (made when missing), its client, and the admin
//! user with the action to set a password.

use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};

use super::{Admin, Call, IdentityProviders, IdpError, TenantInfo, created_id, url};

const VENDOR: &str = "Keycloak";

/// Where and how to create the user.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Base URL, with any path prefix (`/auth`).
    pub host: String,
    pub admin_username: String,
    pub admin_password: SecretString,
    pub realm: String,
    pub client_id: String,
    pub client_secret: Option<SecretString>,
    pub redirect_uris: Vec<String>,
    /// Whether Keycloak mails the user a link to set a password.
    pub actions_email: bool,
    /// The `smtpServer` of a realm tms creates (how Keycloak sends that mail).
    pub smtp_server: Option<Value>,
}

fn call(name: &'static str) -> Call {
    Call {
        vendor: VENDOR,
        name,
    }
}

impl Settings {
    /// Creates (or finds) the admin user; its id.
    pub(super) async fn create_admin(
        &self,
        idp: &IdentityProviders,
        tenant: &TenantInfo<'_>,
        admin: &Admin<'_>,
    ) -> Result<String, IdpError> {
        let token = self.token(idp).await?;
        self.ensure_realm(idp, &token, tenant).await?;
        self.ensure_client(idp, &token, tenant).await?;
        let (user, created) = self.ensure_user(idp, &token, admin).await?;
        if self.actions_email && created {
            self.send_password_mail(idp, &token, &user).await;
        }
        Ok(user)
    }

    fn cache_key(&self) -> String {
        format!("keycloak {} {}", self.host, self.admin_username)
    }

    /// Asks Keycloak to mail the new user a link to set a password. The user exists whatever
    /// comes of it, and a realm without mail settings would refuse every retry, so a failure is
    /// logged for the operator (who can send it from the console) and does not fail the call.
    async fn send_password_mail(&self, idp: &IdentityProviders, token: &str, user: &str) {
        let step = call("the password e-mail");
        let segments = [
            "admin",
            "realms",
            &self.realm,
            "users",
            user,
            "execute-actions-email",
        ];
        let sent = match url(&self.host, &segments) {
            Ok(target) => {
                let request = idp
                    .http()
                    .put(target)
                    .bearer_auth(token)
                    .json(&json!(["UPDATE_PASSWORD"]));
                step.expect_success(request).await.map(drop)
            }
            Err(err) => Err(err),
        };
        if let Err(err) = sent {
            tracing::warn!(realm = %self.realm, %user, error = %err,
                "the new admin user was not mailed a link to set a password; send it from the \
                 Keycloak console (Users → Credentials → Reset actions) or fix the realm's mail \
                 settings");
        }
    }

    /// An admin token: cached, or by the password grant of `admin-cli` on the master realm.
    async fn token(&self, idp: &IdentityProviders) -> Result<String, IdpError> {
        let form = [
            ("grant_type", "password"),
            ("client_id", "admin-cli"),
            ("username", self.admin_username.as_str()),
            ("password", self.admin_password.expose_secret()),
        ];
        let path = ["realms", "master", "protocol", "openid-connect", "token"];
        let endpoint = url(&self.host, &path)?;
        idp.token(
            self.cache_key(),
            call("the admin token request"),
            endpoint,
            &form,
        )
        .await
    }

    /// The realm, created when missing (a silo tenant's own, or the tier's shared one).
    async fn ensure_realm(
        &self,
        idp: &IdentityProviders,
        token: &str,
        tenant: &TenantInfo<'_>,
    ) -> Result<(), IdpError> {
        let step = call("the realm lookup");
        let request = idp
            .http()
            .get(url(&self.host, &["admin", "realms", &self.realm])?)
            .bearer_auth(token);
        let response = step.send(request).await?;
        match response.status().as_u16() {
            200 => return Ok(()),
            401 => {
                idp.drop_token(&self.cache_key());
                return Err(step.refused(response).await);
            }
            404 => {}
            _ => return Err(step.refused(response).await),
        }
        let display = if self.realm == tenant.key {
            tenant.name
        } else {
            &self.realm
        };
        let mut realm = json!({"realm": self.realm, "enabled": true, "displayName": display});
        if let Some(smtp) = &self.smtp_server {
            realm["smtpServer"] = smtp.clone();
        }
        let step = call("the realm creation");
        let request = idp
            .http()
            .post(url(&self.host, &["admin", "realms"])?)
            .bearer_auth(token)
            .json(&realm);
        let response = step.send(request).await?;
        match response.status().as_u16() {
            // 409: another call made it meanwhile.
            201 | 409 => Ok(()),
            _ => Err(step.refused(response).await),
        }
    }

    /// The tenant's client in the realm; one that exists is kept as it is.
    async fn ensure_client(
        &self,
        idp: &IdentityProviders,
        token: &str,
        tenant: &TenantInfo<'_>,
    ) -> Result<(), IdpError> {
        let mut client = json!({
            "clientId": self.client_id,
            "name": tenant.name,
            "enabled": true,
            "protocol": "openid-connect",
            "publicClient": false,
            "standardFlowEnabled": true,
            "redirectUris": self.redirect_uris,
            "webOrigins": ["+"],
        });
        if let Some(secret) = &self.client_secret {
            client["secret"] = Value::from(secret.expose_secret());
        }
        let step = call("the client creation");
        let request = idp
            .http()
            .post(url(
                &self.host,
                &["admin", "realms", &self.realm, "clients"],
            )?)
            .bearer_auth(token)
            .json(&client);
        let response = step.send(request).await?;
        match response.status().as_u16() {
            201 | 409 => Ok(()),
            _ => Err(step.refused(response).await),
        }
    }

    /// The user's id, and whether this call created it: created, or the existing user with that
    /// username (the email), or else with that email.
    async fn ensure_user(
        &self,
        idp: &IdentityProviders,
        token: &str,
        admin: &Admin<'_>,
    ) -> Result<(String, bool), IdpError> {
        let users = url(&self.host, &["admin", "realms", &self.realm, "users"])?;
        let step = call("the user creation");
        let request = idp
            .http()
            .post(users.clone())
            .bearer_auth(token)
            .json(&json!({
                "username": admin.email,
                "email": admin.email,
                "firstName": admin.first_name,
                "lastName": admin.last_name,
                "enabled": true,
                "emailVerified": true,
                "requiredActions": ["UPDATE_PASSWORD"],
            }));
        let response = step.send(request).await?;
        match response.status().as_u16() {
            201 => {
                let id = created_id(&response).ok_or_else(|| IdpError::Refused {
                    vendor: VENDOR,
                    call: step.name,
                    status: 201,
                    message: "the answer has no Location of the user".into(),
                })?;
                return Ok((id, true));
            }
            409 => {}
            _ => return Err(step.refused(response).await),
        }
        for by in ["username", "email"] {
            if let Some(id) = self.find_user(idp, token, &users, by, admin.email).await? {
                return Ok((id, false));
            }
        }
        Err(IdpError::Refused {
            vendor: VENDOR,
            call: step.name,
            status: 409,
            message: format!(
                "a user conflicts with {} but none has it as username or email",
                admin.email
            ),
        })
    }

    /// The id of the user whose `by` (username or email) is `value`, if any.
    async fn find_user(
        &self,
        idp: &IdentityProviders,
        token: &str,
        users: &url::Url,
        by: &str,
        value: &str,
    ) -> Result<Option<String>, IdpError> {
        let step = call("the user lookup");
        let request = idp
            .http()
            .get(users.clone())
            .query(&[(by, value), ("exact", "true")])
            .bearer_auth(token);
        let found = step.json(step.expect_success(request).await?).await?;
        Ok(found
            .as_array()
            .into_iter()
            .flatten()
            .find(|u| {
                u.get(by)
                    .and_then(Value::as_str)
                    .is_none_or(|v| v.eq_ignore_ascii_case(value))
            })
            .and_then(|u| u.get("id").and_then(Value::as_str))
            .map(str::to_string))
    }
}
