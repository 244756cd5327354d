//! The lead funnel (`docs/funnel.md`): sign-up, verification of the mailed key, a fresh link for a lead
//! that lost or never used its link, and the onboarding of a verified lead's tenant. Each step is
//! a function over the database, the key store and the mailer with a typed error; the HTTP edge
//! (`http/funnel.rs`) maps the errors to LoopBack answers.

use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::audit::Who;
use super::onboarding::{self, OnboardingError};
use super::system_actor;
use super::validation::{ValidationDetail, check_fields, not_an_object};
use crate::auth::JwtKeys;
use crate::config::Config;
use crate::kv::original::{self, EntryFormat};
use crate::kv::{Kv, KvError};
use crate::mail::{Mailer, Template};
use crate::model::{ADDRESSES, LEADS, fields};
use crate::store::crud::{self, Actor, Scope, Target, WriteError};
use crate::store::filter::Filter;
use crate::store::{Conn, Db, Object, leads};

/// What the funnel works with.
#[derive(Clone, Copy)]
pub struct Funnel<'a> {
    pub db: &'a Db,
    pub kv: &'a Kv,
    pub mailer: &'a Mailer,
    pub jwt: &'a JwtKeys,
    pub config: &'a Config,
}

/// Why a funnel step was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum FunnelError {
    #[error("the request body is invalid")]
    Invalid(Vec<ValidationDetail>),
    /// A validated lead with this email exists (sign-up and verification: 409).
    #[error("A validated lead with this email already exists")]
    EmailTaken,
    /// A key that does not exist, expired, was used, or belongs to another lead; a lead token
    /// for another lead; a lead that is not validated or already has a tenant (401, as the
    /// original answers all of these).
    #[error("Unauthorized")]
    Unauthorized,
    #[error("Address mismatch with Lead")]
    AddressMismatch,
    #[error(transparent)]
    Onboarding(#[from] OnboardingError),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
    #[error(transparent)]
    Write(WriteError),
    #[error(transparent)]
    Keys(#[from] KvError),
    #[error("cannot mint the lead token")]
    Token(#[source] anyhow::Error),
}

impl From<WriteError> for FunnelError {
    fn from(err: WriteError) -> Self {
        match err {
            WriteError::Db(err) => Self::Database(err),
            other => Self::Write(other),
        }
    }
}

/// A lead that signed up: its id, and the key of its verification link (shown to the caller
/// only with `LEAD_KEY_IN_RESPONSE=true`).
#[derive(Debug)]
pub struct SignedUp {
    pub id: Uuid,
    pub key: String,
}

/// A verified lead and the token it acts with.
#[derive(Debug)]
pub struct Verified {
    pub id: Uuid,
    pub token: String,
}

/// How many new verification links one address gets per [`RESEND_WINDOW`], however many
/// clients ask: a mailbox cannot be flooded from many addresses.
pub const RESENDS_PER_ADDRESS: u64 = 3;
pub const RESEND_WINDOW: std::time::Duration = std::time::Duration::from_secs(3600);

/// Where a verification key was found.
enum KeyEntry {
    /// tms's own key.
    Tms,
    /// The original's entry, as read (consumed only if it is still the same).
    Original(Vec<u8>),
}

/// Where the verification key of a lead is kept.
fn lead_key(key: &str) -> String {
    format!("lead-key:{key}")
}

/// A random verification key of `len` hex characters.
fn new_lead_key(len: usize) -> String {
    let bytes: Vec<u8> = (0..len.div_ceil(2)).map(|_| rand::random::<u8>()).collect();
    let mut key = hex::encode(bytes);
    key.truncate(len);
    key
}

/// `APP_VALIDATE_URL?code=<key>&leadId=<id>`.
fn validation_link(base: &str, key: &str, lead: &str) -> String {
    let sep = if base.contains('?') { '&' } else { '?' };
    format!("{base}{sep}code={key}&leadId={lead}")
}

/// Validates `CreateLeadDTO`: the person and company, and an optional address object.
fn lead_body(body: &Value) -> Result<(Object, Object), Vec<ValidationDetail>> {
    let Value::Object(props) = body else {
        return Err(vec![not_an_object("")]);
    };
    let mut problems = Vec::new();
    let mut person = props.clone();
    let address = person.remove("address");
    let lead = check_fields(
        &LEADS,
        &person,
        &[
            ("firstName", true),
            ("lastName", true),
            ("email", true),
            ("companyName", true),
        ],
        "",
        &mut problems,
    );
    let address = match address {
        None | Some(Value::Null) => Object::new(),
        Some(Value::Object(a)) => onboarding::address_parts(&a, "/address", true, &mut problems),
        Some(_) => {
            problems.push(not_an_object("/address"));
            Object::new()
        }
    };
    if problems.is_empty() {
        Ok((lead, address))
    } else {
        Err(problems)
    }
}

impl Funnel<'_> {
    /// `POST /leads`: records the lead (and its address) and mails its verification link.
    pub async fn sign_up(&self, body: &Value) -> Result<SignedUp, FunnelError> {
        let (mut lead, address) = lead_body(body).map_err(FunnelError::Invalid)?;
        let email = lead["email"].as_str().unwrap_or_default().to_string();
        if leads::validated_email_exists(&mut self.db.conn(), &email).await? {
            return Err(FunnelError::EmailTaken);
        }
        let id = Uuid::new_v4();
        // Recorded as the lead's own write, stamped with SYSTEM_USER_ID as the original does.
        let system = Actor {
            who: Who::lead(id),
            ..system_actor(self.config)
        };
        // The key is stored before the lead commits (and outside its transaction, which on
        // SQLite holds the write lock): a key whose lead never committed verifies nothing, while
        // a committed lead always has its key.
        let key = self.store_new_key(id, &email).await?;
        let mut tx = self.db.begin().await?;
        if !address.is_empty() {
            let created = crud::create(&mut tx.conn(), &ADDRESSES, &address, &system).await?;
            lead.insert("addressId".into(), created["id"].clone());
        }
        lead.insert("isValidated".into(), json!(false));
        crud::create_with_id(&mut tx.conn(), &LEADS, id, &lead, &system).await?;
        self.mail_link(&mut tx.conn(), id, &lead, &key).await?;
        tx.commit().await?;
        Ok(SignedUp { id, key })
    }

    /// A fresh verification key for lead `id` (of `email`), stored with its expiry: under
    /// tms's key with the lead's id, or (`REDIS_ENTRY_FORMAT=original`) as the original's entry
    /// holding the lead's token, which the ARC facade reads.
    async fn store_new_key(&self, id: Uuid, email: &str) -> Result<String, FunnelError> {
        let key = new_lead_key(self.config.lead_key_length);
        let ttl = self.config.validation_token_expiry;
        match self.config.redis_entry_format {
            EntryFormat::Tms => self.kv.put(&lead_key(&key), &id.to_string(), ttl).await?,
            EntryFormat::Original => {
                let token = self
                    .jwt
                    .mint_lead(id, email, self.config.lead_token_expiry.as_secs())
                    .map_err(FunnelError::Token)?;
                let entry = original::encode(&original::LeadEntry { token });
                self.kv.original_put(&key, &entry, ttl).await?
            }
        }
        Ok(key)
    }

    /// The lead whose verification key is `key`, in either format, and how to consume it.
    async fn key_holder(&self, key: &str) -> Result<Option<(Uuid, KeyEntry)>, FunnelError> {
        if let Some(id) = self.kv.get(&lead_key(key)).await? {
            return Ok(Uuid::parse_str(&id).ok().map(|id| (id, KeyEntry::Tms)));
        }
        let Some(bytes) = self.kv.original_get(key).await? else {
            return Ok(None);
        };
        // The token the original minted for the lead, signed with the same JWT_SECRET.
        let lead = original::decode::<original::LeadEntry>(&bytes)
            .and_then(|entry| self.jwt.verify(&entry.token).ok())
            .and_then(|principal| Uuid::parse_str(&principal.user_id).ok());
        Ok(lead.map(|id| (id, KeyEntry::Original(bytes))))
    }

    /// Queues the `validate_lead` mail with the link for `key` to `lead` (its wire object).
    async fn mail_link(
        &self,
        conn: &mut Conn<'_>,
        id: Uuid,
        lead: &Object,
        key: &str,
    ) -> Result<(), FunnelError> {
        let config = self.config;
        let email = lead["email"].as_str().unwrap_or_default();
        let link = validation_link(&config.app_validate_url, key, &id.to_string());
        self.mailer
            .queue(
                conn,
                email,
                Template::ValidateLead,
                json!({
                    "appName": config.app_name,
                    "firstName": lead["firstName"],
                    "lastName": lead["lastName"],
                    "companyName": lead["companyName"],
                    "email": email,
                    "link": link,
                    "expiresInMinutes": config.validation_token_expiry.as_secs() / 60,
                }),
            )
            .await?;
        Ok(())
    }

    /// `POST /leads/{id}/verify` with the mailed key: the key must exist, be unexpired and
    /// belong to lead `id`. Consuming the key and marking the lead validated succeed or fail
    /// together (see [`Kv::claim`]): a failure in between leaves the link usable.
    pub async fn verify(&self, id: &str, key: &str) -> Result<Verified, FunnelError> {
        let lead_id = Uuid::parse_str(id).map_err(|_| FunnelError::Unauthorized)?;
        let stored = lead_key(key);
        // A cheap read first: unknown keys never take the write lock.
        let Some((holder, entry)) = self.key_holder(key).await? else {
            return Err(FunnelError::Unauthorized);
        };
        if holder != lead_id {
            return Err(FunnelError::Unauthorized);
        }
        let mut tx = self.db.begin().await?;
        let claim = match &entry {
            KeyEntry::Tms => Some(
                self.kv
                    .claim(&mut tx, &stored)
                    .await?
                    .filter(|claim| claim.value() == id)
                    .ok_or(FunnelError::Unauthorized)?,
            ),
            // Only on Redis: consumed after the commit, as tms's own keys there.
            KeyEntry::Original(_) => None,
        };
        let lead = crud::find_by_id(
            &mut tx.conn(),
            &LEADS,
            lead_id,
            &Filter::default(),
            Scope::All,
        )
        .await?
        .ok_or(FunnelError::Unauthorized)?;
        let mut validated = Object::new();
        validated.insert("isValidated".into(), json!(true));
        let actor = Actor {
            id: id.to_string(),
            scope: Scope::Lead(lead_id),
            who: Who::lead(lead_id),
        };
        crud::update_as(
            &mut tx.conn(),
            &LEADS,
            Target::Id(lead_id),
            &validated,
            &actor,
            "verify",
        )
        .await
        .map_err(|err| match err {
            // Another lead with this email was verified first.
            WriteError::Conflict(_) => FunnelError::EmailTaken,
            other => other.into(),
        })?;
        tx.commit().await?;
        let consumed = match (claim, entry) {
            (Some(claim), _) => self.kv.settle(claim).await?,
            (None, KeyEntry::Original(bytes)) => {
                self.kv.original_take(key).await?.as_deref() == Some(bytes.as_slice())
            }
            (None, KeyEntry::Tms) => false,
        };
        if !consumed {
            // A concurrent verification consumed the key first; it answers with the token.
            return Err(FunnelError::Unauthorized);
        }
        let email = lead["email"].as_str().unwrap_or_default();
        let token = self
            .jwt
            .mint_lead(lead_id, email, self.config.lead_token_expiry.as_secs())
            .map_err(FunnelError::Token)?;
        Ok(Verified { id: lead_id, token })
    }

    /// A new verification link for the lead signed up with `email` that still needs one: the
    /// validated lead of that address when it has no tenant yet (its lead token lost), else,
    /// when none is validated, the newest unvalidated one. It gets a fresh key (earlier keys
    /// stay valid until they expire) and the `validate_lead` mail. At most
    /// [`RESENDS_PER_ADDRESS`] links an hour go to one address, whoever asks. Returns whether a
    /// link was sent; callers answer the same either way, so that the endpoint does not tell
    /// which addresses are known.
    pub async fn resend_link(&self, email: &str) -> Result<bool, FunnelError> {
        let mut conn = self.db.conn();
        let leads = leads::by_email(&mut conn, email).await?;
        let validated = leads.iter().find(|l| l["isValidated"] == json!(true));
        let candidate = match validated {
            // Unvalidated leads of a validated address could never be verified (409).
            Some(lead) => Some(lead),
            None => leads.first(),
        };
        let Some((id, lead)) = candidate.and_then(|lead| {
            let id = lead.get("id").and_then(Value::as_str)?;
            Some((Uuid::parse_str(id).ok()?, lead))
        }) else {
            return Ok(false);
        };
        if validated.is_some() && leads::has_tenant(&mut conn, id).await? {
            return Ok(false);
        }
        let counter = format!(
            "resend:{}",
            hex::encode(Sha256::digest(email.to_ascii_lowercase()))
        );
        if self.kv.hit(&counter, RESEND_WINDOW).await?.count > RESENDS_PER_ADDRESS {
            tracing::info!(lead = %id, "verification link not resent: the address had its share this hour");
            return Ok(false);
        }
        let key = self.store_new_key(id, email).await?;
        let mut tx = self.db.begin().await?;
        self.mail_link(&mut tx.conn(), id, lead, &key).await?;
        tx.commit().await?;
        Ok(true)
    }

    /// `POST /leads/{id}/tenants` by the lead's own token (`token_lead`, `caller`): onboards the
    /// tenant of a validated lead that has none yet, with the lead's person as primary admin
    /// contact, the lead's company name as default name and the lead's address.
    pub async fn onboard(
        &self,
        id: &str,
        token_lead: Option<Uuid>,
        caller: &str,
        body: &Value,
    ) -> Result<Object, FunnelError> {
        let lead_id = lead_token_for(id, token_lead, caller)?;
        let mut conn = self.db.conn();
        let with_address = Filter::including(&[fields::lead_address()]);
        let lead = crud::find_by_id(&mut conn, &LEADS, lead_id, &with_address, Scope::All)
            .await?
            .ok_or(FunnelError::Unauthorized)?;
        if lead["isValidated"] != json!(true) || leads::has_tenant(&mut conn, lead_id).await? {
            return Err(FunnelError::Unauthorized);
        }
        let mut contact = Object::new();
        for field in ["firstName", "lastName", "email"] {
            contact.insert(field.into(), lead[field].clone());
        }
        contact.insert("isPrimary".into(), json!(true));
        contact.insert("type".into(), json!("admin"));
        let lead_address = lead.get("address").and_then(Value::as_object);
        let mut onboarding = onboarding::lead_body(body, contact, lead_address.is_some())
            .map_err(FunnelError::Invalid)?;
        if onboarding.name.is_none() {
            onboarding.name = lead["companyName"].as_str().map(str::to_string);
        }
        if let Some(lead_address) = lead_address {
            if !same_address(&onboarding.address, lead_address) {
                return Err(FunnelError::AddressMismatch);
            }
            onboarding.address = Object::new();
            onboarding.address_id = lead_address
                .get("id")
                .and_then(Value::as_str)
                .and_then(|a| Uuid::parse_str(a).ok());
        }
        onboarding.lead_id = Some(lead_id);
        let actor = Actor {
            id: id.to_string(),
            ..super::lead_actor(lead_id)
        };
        Ok(onboarding::onboard(self.db, &onboarding, &actor).await?)
    }
}

/// The lead `id` when the caller (`token_lead`, `caller`) holds that lead's own token; else
/// `Unauthorized`, as the original answers any other token.
pub fn lead_token_for(
    id: &str,
    token_lead: Option<Uuid>,
    caller: &str,
) -> Result<Uuid, FunnelError> {
    let lead_id = Uuid::parse_str(id).map_err(|_| FunnelError::Unauthorized)?;
    if token_lead != Some(lead_id) || caller != id {
        return Err(FunnelError::Unauthorized);
    }
    Ok(lead_id)
}

/// Whether the address parts given in an onboarding body agree with the lead's address
/// (parts not given are not compared; comparison ignores case and surrounding spaces).
fn same_address(given: &Object, lead: &Object) -> bool {
    let norm = |v: Option<&Value>| {
        v.and_then(Value::as_str)
            .map(|s| s.trim().to_lowercase())
            .unwrap_or_default()
    };
    given
        .iter()
        .all(|(part, value)| norm(Some(value)) == norm(lead.get(part)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_have_the_configured_length_and_are_hex() {
        for len in [16, 35, 36, 128] {
            let key = new_lead_key(len);
            assert_eq!(key.len(), len);
            assert!(key.bytes().all(|b| b.is_ascii_hexdigit()));
        }
        assert_ne!(new_lead_key(36), new_lead_key(36));
    }

    #[test]
    fn links_append_to_existing_queries() {
        assert_eq!(
            validation_link("https://app/verify", "k", "l"),
            "https://app/verify?code=k&leadId=l"
        );
        assert_eq!(
            validation_link("https://app/v?x=1", "k", "l"),
            "https://app/v?x=1&code=k&leadId=l"
        );
    }

    #[test]
    fn address_comparison_ignores_case_and_absent_parts() {
        let lead: Object =
            serde_json::from_value(json!({"city": "Pune", "country": "India", "zip": null}))
                .unwrap();
        let same: Object = serde_json::from_value(json!({"country": " india "})).unwrap();
        let other: Object = serde_json::from_value(json!({"country": "Nepal"})).unwrap();
        assert!(same_address(&same, &lead));
        assert!(same_address(&Object::new(), &lead));
        assert!(!same_address(&other, &lead));
    }
}
