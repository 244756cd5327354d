//! Rules of a tenant's contacts: a contact's email address is at one of its tenant's domains, on
//! every write (onboarding, `POST /contacts`, `PUT`, `PATCH`, bulk `PATCH`), as the original
//! checks it at onboarding; and the primary contact that mail about a tenant goes to.

use serde_json::Value;
use uuid::Uuid;

use crate::model::{CONTACTS, TENANTS, fields};
use crate::store::crud::{self, Scope};
use crate::store::filter::{Filter, Order, Where};
use crate::store::{Conn, Object};

/// Why a contact write was refused.
#[derive(Debug, thiserror::Error)]
pub enum ContactError {
    #[error("Contact email domain does not match tenant domains")]
    DomainMismatch,
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// Whether `email` is an address at one of `domains` (compared ignoring ASCII case; stored
/// domains are lower-case).
pub fn email_in_domains(email: &str, domains: &[String]) -> bool {
    email
        .rsplit_once('@')
        .is_some_and(|(_, domain)| domains.iter().any(|d| d.eq_ignore_ascii_case(domain)))
}

/// Checks a contact write: `values` are the validated fields being written, `existing` the
/// contacts they apply to (none for a create, the row for an update by id, every matched row
/// for a bulk update). Each contact as it will be — its new email and tenant where given, its
/// old ones otherwise — must have an email at one of its tenant's domains. A tenant that does
/// not exist is left to the reference check of the write (404).
pub async fn check_email_domains(
    conn: &mut Conn<'_>,
    values: &Object,
    existing: &[Object],
) -> Result<(), ContactError> {
    if !values.contains_key("email") && !values.contains_key("tenantId") {
        return Ok(());
    }
    let text = |o: &Object, k: &str| o.get(k).and_then(Value::as_str).map(str::to_string);
    let pairs: Vec<(String, String)> = if existing.is_empty() {
        text(values, "email")
            .zip(text(values, "tenantId"))
            .into_iter()
            .collect()
    } else {
        existing
            .iter()
            .filter_map(|row| {
                let email = text(values, "email").or_else(|| text(row, "email"))?;
                let tenant = text(values, "tenantId").or_else(|| text(row, "tenantId"))?;
                Some((email, tenant))
            })
            .collect()
    };
    let mut domains_of: std::collections::HashMap<String, Option<Vec<String>>> =
        std::collections::HashMap::new();
    for (email, tenant) in pairs {
        if !domains_of.contains_key(&tenant) {
            let domains = tenant_domains(conn, &tenant).await?;
            domains_of.insert(tenant.clone(), domains);
        }
        if let Some(Some(domains)) = domains_of.get(&tenant)
            && !email_in_domains(&email, domains)
        {
            return Err(ContactError::DomainMismatch);
        }
    }
    Ok(())
}

/// The domains of the live tenant `id`; `None` when there is none.
async fn tenant_domains(conn: &mut Conn<'_>, id: &str) -> Result<Option<Vec<String>>, sqlx::Error> {
    let Ok(id) = Uuid::parse_str(id) else {
        return Ok(None);
    };
    let tenant = crud::find_by_id(conn, &TENANTS, id, &Filter::default(), Scope::All).await?;
    Ok(tenant.map(|t| {
        t.get("domains")
            .and_then(Value::as_array)
            .map(|ds| {
                ds.iter()
                    .filter_map(|d| d.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    }))
}

/// The email and tenant of the live contacts an update of `target` reaches within `scope`.
pub async fn affected(
    conn: &mut Conn<'_>,
    target: crud::Target<'_>,
    scope: Scope,
) -> Result<Vec<Object>, sqlx::Error> {
    let filter = Filter {
        fields: Some(vec![fields::contact_email(), fields::contact_tenant_id()]),
        ..Filter::default()
    };
    match target {
        crud::Target::Id(id) => Ok(crud::find_by_id(conn, &CONTACTS, id, &filter, scope)
            .await?
            .into_iter()
            .collect()),
        crud::Target::Matching(where_) => {
            let filter = Filter {
                where_: where_.cloned(),
                ..filter
            };
            crud::find(conn, &CONTACTS, &filter, scope).await
        }
    }
}

/// The primary contact of `tenant` that mail goes to: the oldest primary one, if any.
pub async fn primary_contact(
    conn: &mut Conn<'_>,
    tenant: Uuid,
) -> Result<Option<Object>, sqlx::Error> {
    let primary = Filter {
        where_: Some(Where::And(vec![
            Where::uuid_is(fields::contact_tenant_id(), tenant),
            Where::bool_is(fields::contact_is_primary(), true),
        ])),
        order: vec![Order {
            field: fields::contact_created_on(),
            descending: false,
        }],
        limit: Some(1),
        ..Filter::default()
    };
    Ok(crud::find(conn, &CONTACTS, &primary, Scope::All)
        .await?
        .into_iter()
        .next())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_matched_to_domains_ignoring_case() {
        let domains = vec!["acme.com".to_string(), "www.acme.com".to_string()];
        assert!(email_in_domains("ada@acme.com", &domains));
        assert!(email_in_domains("ada@ACME.com", &domains));
        assert!(email_in_domains("cid@www.acme.com", &domains));
        assert!(!email_in_domains("ada@mail.acme.com", &domains));
        assert!(!email_in_domains("ada@acme.co", &domains));
        assert!(!email_in_domains("no-at-sign", &domains));
    }
}
