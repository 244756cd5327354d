//! Rules of tenant configs beyond their fields: a `keycloak` or `auth0` config decides where tms
//! connects for the tenant's identity provider, so every write of one — a new config, or a
//! change of an existing one's key or value — keeps the rules of `domain::idp_settings`.

use serde_json::Value;

use super::idp_settings::{self, Author, ProviderKind, SettingsError};
use crate::config::Config;
use crate::model::{TENANT_CONFIGS, fields};
use crate::store::crud::{self, Scope, Target};
use crate::store::filter::Filter;
use crate::store::{Conn, Object};

/// The key and value of the live configs an update of `target` reaches within `scope`.
pub async fn affected(
    conn: &mut Conn<'_>,
    target: Target<'_>,
    scope: Scope,
) -> Result<Vec<Object>, sqlx::Error> {
    let filter = Filter {
        fields: Some(vec![fields::config_key(), fields::config_value()]),
        ..Filter::default()
    };
    match target {
        Target::Id(id) => Ok(crud::find_by_id(conn, &TENANT_CONFIGS, id, &filter, scope)
            .await?
            .into_iter()
            .collect()),
        Target::Matching(where_) => {
            let filter = Filter {
                where_: where_.cloned(),
                ..filter
            };
            crud::find(conn, &TENANT_CONFIGS, &filter, scope).await
        }
    }
}

/// Checks a write of `values` by `author`, as a new config (`existing` empty) or over each of
/// `existing`: the config each ends up as must keep the identity-provider rules when its key
/// names a provider. A lead's token (one with more than the codes tms gives it, since the one it
/// gives cannot change configs) keeps a config's key: two of its writes at once, one of the key
/// and one of the value, could otherwise each pass and together make a provider's config.
pub fn check_write(
    config: &Config,
    author: Author,
    values: &Object,
    existing: &[Object],
) -> Result<(), SettingsError> {
    if author == Author::Lead
        && let Some(key) = values.get("configKey")
        && existing.iter().any(|row| row.get("configKey") != Some(key))
    {
        return Err(SettingsError::KeyChange);
    }
    let outcome = |row: Option<&Object>| {
        let pick = |name: &str| {
            values
                .get(name)
                .or_else(|| row.and_then(|r| r.get(name)))
                .cloned()
                .unwrap_or(Value::Null)
        };
        (pick("configKey"), pick("configValue"))
    };
    let outcomes: Vec<(Value, Value)> = if existing.is_empty() {
        vec![outcome(None)]
    } else {
        existing.iter().map(|row| outcome(Some(row))).collect()
    };
    for (key, value) in outcomes {
        if let Some(provider) = key.as_str().and_then(ProviderKind::of_config_key) {
            idp_settings::check(config, provider, &value, author)?;
        }
    }
    Ok(())
}
