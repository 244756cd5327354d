//! The rules of the audit trail (`docs/audit.md`): who a change is by, what is recorded of it,
//! and what is never recorded. Every state change writes one record per row it touches, in the
//! transaction of the change (the store writes them: `store::crud` for every generic write,
//! `store::audit` for the rest); this module decides their content and depends on nothing but
//! the model (and `config`'s URL masking), so the store can use it.
//!
//! A record holds the row before and after the change: the full row for a create (after) and a
//! delete (before), only the fields that changed for an update (both sides). Values that look
//! like secrets are replaced by [`MASK`] before they are written.

use serde_json::{Map, Value};
use uuid::Uuid;

use crate::config::mask_url_password;
use crate::model::{self, Resource};

/// What a masked value is recorded as.
pub const MASK: &str = "***";

/// Who a change is by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActorKind {
    /// A caller with a token of the service's users.
    User,
    /// A lead, with the token it got by verifying its e-mail address (or before it has one:
    /// its sign-up and verification).
    Lead,
    /// A provisioning or offboarding pipeline, through its signed result.
    Pipeline,
    /// tms itself: deadline sweeps, billing runs, the take-over of the original's rows.
    System,
}

impl ActorKind {
    /// Its name in records (`actorKind`).
    pub fn name(self) -> &'static str {
        match self {
            Self::User => "user",
            Self::Lead => "lead",
            Self::Pipeline => "pipeline",
            Self::System => "system",
        }
    }
}

/// The actor of a record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Who {
    pub kind: ActorKind,
    /// The token's `id` (a user), the lead's id, or `SYSTEM_USER_ID` (the pipeline, the system).
    pub id: String,
    /// A user token's `userTenantId` (else its `id`).
    pub tenant: Option<String>,
}

impl Who {
    pub fn user(id: &str, user_tenant: &str) -> Self {
        Self {
            kind: ActorKind::User,
            id: id.to_string(),
            tenant: Some(user_tenant.to_string()),
        }
    }

    pub fn lead(lead: Uuid) -> Self {
        Self {
            kind: ActorKind::Lead,
            id: lead.to_string(),
            tenant: None,
        }
    }

    pub fn pipeline(system_user_id: &str) -> Self {
        Self {
            kind: ActorKind::Pipeline,
            id: system_user_id.to_string(),
            tenant: None,
        }
    }

    pub fn system(system_user_id: &str) -> Self {
        Self {
            kind: ActorKind::System,
            id: system_user_id.to_string(),
            tenant: None,
        }
    }
}

/// What happened to a row: `create`, `update`, `delete`, or a move of the domain (`suspend`,
/// `provisioned`, `pay`, …) named by the rules that make it.
pub type Action = &'static str;

pub const CREATE: Action = "create";
pub const UPDATE: Action = "update";
pub const DELETE: Action = "delete";

/// One audit record, ready to be written.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub who: Who,
    /// The model name (`Tenant`, `TenantConfig`, …).
    pub entity: &'static str,
    pub entity_id: String,
    pub action: Action,
    /// The tenant the row concerns, when it concerns one.
    pub tenant_id: Option<Uuid>,
    pub before: Option<Value>,
    pub after: Option<Value>,
}

/// The record of a change of one row of `resource` by `who`: `before` absent for a create,
/// `after` absent for a delete; with both, only the fields that differ are kept (an update that
/// changes nothing but the audit columns keeps those). `None` when nothing at all changed.
pub fn entry(
    resource: &'static Resource,
    who: &Who,
    action: Action,
    before: Option<&Map<String, Value>>,
    after: Option<&Map<String, Value>>,
) -> Option<Entry> {
    let row = after.or(before)?;
    let entity_id = row.get("id").and_then(Value::as_str)?.to_string();
    let tenant_id = tenant_of(resource, row)
        .or_else(|| before.and_then(|b| tenant_of(resource, b)))
        .and_then(|t| Uuid::parse_str(&t).ok());
    let (before, after) = match (before, after) {
        (Some(b), Some(a)) => {
            let changed: Vec<&String> = a
                .keys()
                .filter(|k| b.get(*k) != a.get(*k))
                .chain(b.keys().filter(|k| !a.contains_key(*k)))
                .collect();
            if changed.is_empty() {
                return None;
            }
            let pick = |row: &Map<String, Value>| {
                changed
                    .iter()
                    .map(|k| ((*k).clone(), row.get(*k).cloned().unwrap_or(Value::Null)))
                    .collect::<Map<String, Value>>()
            };
            (Some(masked_row(pick(b))), Some(masked_row(pick(a))))
        }
        (b, a) => (b.cloned().map(masked_row), a.cloned().map(masked_row)),
    };
    Some(Entry {
        who: who.clone(),
        entity: resource.title,
        entity_id,
        action,
        tenant_id,
        before,
        after,
    })
}

/// The record of a change the rules make outside the generic writes (a field of the model's
/// table that the model does not serve, say): `before` and `after` as given, masked.
pub fn change(
    resource: &'static Resource,
    who: &Who,
    action: Action,
    (entity_id, tenant_id): (Uuid, Option<Uuid>),
    before: Map<String, Value>,
    after: Map<String, Value>,
) -> Entry {
    Entry {
        who: who.clone(),
        entity: resource.title,
        entity_id: entity_id.to_string(),
        action,
        tenant_id,
        before: Some(masked_row(before)),
        after: Some(masked_row(after)),
    }
}

/// The tenant a row of `resource` concerns: a tenant itself, or the `tenantId` of a row.
fn tenant_of(resource: &'static Resource, row: &Map<String, Value>) -> Option<String> {
    let key = if std::ptr::eq(resource, &model::TENANTS) {
        "id"
    } else {
        "tenantId"
    };
    row.get(key).and_then(Value::as_str).map(str::to_string)
}

fn masked_row(mut row: Map<String, Value>) -> Value {
    for value in row.values_mut() {
        mask_nested(value);
    }
    Value::Object(row)
}

/// Whether a key inside a JSON value (a tenant config's value, a resource's metadata, …) names
/// secret material: passwords, secrets, tokens, credentials and keys that are not names
/// (`apiKey`, `privateKey`, `accessKey`, …, not `configKey`). A row's own columns are never
/// secrets (lead keys, tokens and webhook secrets are kept in the key store, never in rows).
pub fn is_secret_key(key: &str) -> bool {
    let key: String = key
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .collect::<String>()
        .to_ascii_lowercase();
    const WORDS: &[&str] = &[
        "password",
        "passwd",
        "passphrase",
        "secret",
        "token",
        "credential",
        "apikey",
        "privatekey",
        "accesskey",
        "signingkey",
        "authorization",
        "cookie",
    ];
    WORDS.iter().any(|w| key.contains(w)) || key == "key" || key == "pwd"
}

/// Masks, inside a column's value, every value under a secret-looking key, and the password
/// of any URL (`smtp://user:password@host`).
fn mask_nested(value: &mut Value) {
    match value {
        Value::Object(map) => {
            for (key, inner) in map.iter_mut() {
                if is_secret_key(key) && !inner.is_null() {
                    *inner = Value::from(MASK);
                } else {
                    mask_nested(inner);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(mask_nested),
        Value::String(text) if text.contains("://") => {
            *text = mask_url_password(text);
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap()
    }

    #[test]
    fn secret_looking_keys_are_masked_at_any_depth() {
        let who = Who::system("s");
        let row = obj(json!({
            "id": "7f000000-0000-4000-8000-000000000001",
            "tenantId": "7f000000-0000-4000-8000-000000000002",
            "configKey": "keycloak",
            "configValue": {"host": "https://kc", "adminPassword": "p4ss", "clientSecret": "s3",
                "nested": [{"api_key": "k", "name": "n"}],
                "smtpServer": {"host": "mail", "password": "pw"},
                "url": "smtp://me:hunter2@mail.example:587"}
        }));
        let e = entry(&model::TENANT_CONFIGS, &who, CREATE, None, Some(&row)).unwrap();
        let text = e.after.unwrap().to_string();
        for secret in ["p4ss", "s3\"", "\"k\"", "pw", "hunter2"] {
            assert!(!text.contains(secret), "{secret} in {text}");
        }
        assert!(text.contains("\"configKey\":\"keycloak\""), "{text}");
        assert!(text.contains("https://kc"), "{text}");
        assert_eq!(
            e.tenant_id.unwrap().to_string(),
            "7f000000-0000-4000-8000-000000000002"
        );
        assert_eq!(e.entity, "TenantMgmtConfig");
    }

    #[test]
    fn updates_keep_only_the_changed_fields_and_nothing_changed_is_no_record() {
        let who = Who::user("u", "t");
        let before = obj(json!({"id": "a", "name": "x", "status": 0}));
        let after = obj(json!({"id": "a", "name": "x", "status": 6}));
        let e = entry(
            &model::TENANTS,
            &who,
            "suspend",
            Some(&before),
            Some(&after),
        )
        .unwrap();
        assert_eq!(e.before, Some(json!({"status": 0})));
        assert_eq!(e.after, Some(json!({"status": 6})));
        assert!(entry(&model::TENANTS, &who, UPDATE, Some(&before), Some(&before)).is_none());
    }

    #[test]
    fn only_key_names_of_secret_material_are_masked() {
        for name in ["configKey", "key", "apiKey", "client_secret", "accessToken"] {
            assert_eq!(is_secret_key(name), name != "configKey", "{name}");
        }
    }
}
