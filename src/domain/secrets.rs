//! The secret and context a pipeline signs its result with (`docs/provisioning.md`): a fresh
//! one per operation, kept in the key store for `WEBHOOK_SECRET_EXPIRY` under tms's key — or,
//! with `REDIS_ENTRY_FORMAT=original`, as the original's entry — and deleted with the result.

use rand::Rng;
use uuid::Uuid;

use crate::kv::original::{self, EntryFormat};
use crate::kv::{Kv, KvError};
use crate::store::Tx;

/// Where the key-value store keeps a tenant's webhook secret and context.
pub fn secret_key(tenant: Uuid) -> String {
    format!("webhook-secret:{tenant}")
}

/// Stores the webhook secret of `tenant` for `ttl`: under tms's key with the work of `tx`, or
/// (`REDIS_ENTRY_FORMAT=original`) as the original's entry `_kvModel:<tenant>`.
pub async fn store_secret(
    kv: &Kv,
    tx: &mut Tx,
    format: EntryFormat,
    tenant: Uuid,
    secret: &WebhookSecret,
    ttl: std::time::Duration,
) -> Result<(), KvError> {
    match format {
        EntryFormat::Tms => {
            let stored = serde_json::to_string(secret).unwrap_or_default();
            kv.put_in(tx, &secret_key(tenant), &stored, ttl).await
        }
        EntryFormat::Original => {
            kv.original_put(&tenant.to_string(), &original::encode(secret), ttl)
                .await
        }
    }
}

/// The webhook secret of `tenant`, in either format.
pub async fn stored_secret(kv: &Kv, tenant: Uuid) -> Result<Option<WebhookSecret>, KvError> {
    if let Some(text) = kv.get(&secret_key(tenant)).await? {
        return Ok(serde_json::from_str(&text).ok());
    }
    Ok(kv
        .original_get(&tenant.to_string())
        .await?
        .and_then(|bytes| original::decode(&bytes)))
}

/// Deletes the webhook secret of `tenant` in both formats (tms's with the work of `tx`).
pub async fn forget_secret(kv: &Kv, tx: &mut Tx, tenant: Uuid) -> Result<(), KvError> {
    kv.delete_in(tx, &secret_key(tenant)).await?;
    kv.original_delete(&tenant.to_string()).await
}

/// The secret and context a provisioning pipeline signs its result with.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct WebhookSecret {
    pub secret: String,
    pub context: String,
}

impl WebhookSecret {
    /// A fresh one: 32 hex characters of secret, a random UUID as context (as the original).
    pub fn generate() -> Self {
        let bytes: [u8; 16] = rand::rng().random();
        Self {
            secret: hex::encode(bytes),
            context: Uuid::new_v4().to_string(),
        }
    }
}
