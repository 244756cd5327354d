//! Tenant onboarding (`docs/funnel.md`): address, tenant (PENDINGPROVISION) and primary contact in one
//! transaction, for an administrator's `POST /tenants` and for a verified lead's
//! `POST /leads/{id}/tenants`. The answer is the tenant with its contacts, resources, lead and
//! address.

use serde_json::{Value, json};
use uuid::Uuid;

use super::validation::ValidationDetail;
use super::validation::{self, check_fields, not_an_object};
use crate::model::{ADDRESSES, CONTACTS, TENANTS, fields};
use crate::store::crud::{self, Actor, Scope, WriteError};
use crate::store::filter::Filter;
use crate::store::{Db, Object};

/// The address parts of an onboarding body (`address`, `city`, `state`, `zip`, `country`).
pub const ADDRESS_PARTS: [&str; 5] = ["address", "city", "state", "zip", "country"];

/// A validated onboarding.
#[derive(Debug, Clone)]
pub struct Onboarding {
    pub name: Option<String>,
    pub key: String,
    pub domains: Vec<String>,
    /// Address parts given in the body (empty when none).
    pub address: Object,
    /// The primary contact: firstName, lastName, email, isPrimary, type.
    pub contact: Object,
    pub lead_id: Option<Uuid>,
    /// An existing address to link instead of creating one (the lead's).
    pub address_id: Option<Uuid>,
}

/// Validates the body of an admin `POST /tenants` (`NewTenantOnboarding`): tenant name, key and
/// domains, optional address parts, and the required `contact`.
pub fn admin_body(body: &Value) -> Result<Onboarding, Vec<ValidationDetail>> {
    let Value::Object(props) = body else {
        return Err(vec![not_an_object("")]);
    };
    let mut problems = Vec::new();
    let mut top = props.clone();
    let contact = top.remove("contact");
    let (tenant, address) = tenant_and_address(&top, true, true, &mut problems);
    let contact = match contact {
        None => {
            problems.push(validation::missing_property("", "contact"));
            Object::new()
        }
        Some(Value::Object(c)) => check_fields(
            &CONTACTS,
            &c,
            &[
                ("firstName", true),
                ("lastName", true),
                ("email", true),
                ("isPrimary", true),
                ("type", false),
            ],
            "/contact",
            &mut problems,
        ),
        Some(_) => {
            problems.push(not_an_object("/contact"));
            Object::new()
        }
    };
    finish(tenant, address, contact, problems)
}

/// Validates the body of `POST /leads/{id}/tenants` (`TenantOnboardDto`): key, domains, optional
/// name and address parts. The contact comes from the lead. `lead_has_address`: the parts are
/// only compared with the lead's address, so they may be partial; otherwise they make a new
/// address and need a country.
pub fn lead_body(
    body: &Value,
    contact: Object,
    lead_has_address: bool,
) -> Result<Onboarding, Vec<ValidationDetail>> {
    let Value::Object(props) = body else {
        return Err(vec![not_an_object("")]);
    };
    let mut problems = Vec::new();
    let (tenant, address) = tenant_and_address(props, false, !lead_has_address, &mut problems);
    finish(tenant, address, contact, problems)
}

/// Validates address parts (`address`, `city`, `state`, `zip`, `country`) and drops nulls. When
/// the parts make a new address (`creates`), `country` is required as soon as any part is given;
/// a lead's parts may be partial when they are only compared with its address.
pub fn address_parts(
    props: &serde_json::Map<String, Value>,
    prefix: &str,
    creates: bool,
    problems: &mut Vec<ValidationDetail>,
) -> Object {
    let mut out = check_fields(
        &ADDRESSES,
        props,
        &ADDRESS_PARTS.map(|p| (p, false)),
        prefix,
        problems,
    );
    out.retain(|_, v| !v.is_null());
    if creates && !out.is_empty() && !out.contains_key("country") {
        problems.push(validation::missing_property(prefix, "country"));
    }
    out
}

fn tenant_and_address(
    props: &serde_json::Map<String, Value>,
    name_required: bool,
    creates_address: bool,
    problems: &mut Vec<ValidationDetail>,
) -> (Object, Object) {
    let (address_props, tenant_props): (serde_json::Map<_, _>, serde_json::Map<_, _>) = props
        .clone()
        .into_iter()
        .partition(|(k, _)| ADDRESS_PARTS.contains(&k.as_str()));
    let tenant = check_fields(
        &TENANTS,
        &tenant_props,
        &[("name", name_required), ("key", true), ("domains", true)],
        "",
        problems,
    );
    let address = address_parts(&address_props, "", creates_address, problems);
    (tenant, address)
}

fn finish(
    tenant: Object,
    address: Object,
    contact: Object,
    problems: Vec<ValidationDetail>,
) -> Result<Onboarding, Vec<ValidationDetail>> {
    if !problems.is_empty() {
        return Err(problems);
    }
    let text = |o: &Object, k: &str| o.get(k).and_then(Value::as_str).map(str::to_string);
    Ok(Onboarding {
        name: text(&tenant, "name"),
        key: text(&tenant, "key").unwrap_or_default(),
        domains: tenant
            .get("domains")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|d| d.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default(),
        address,
        contact,
        lead_id: None,
        address_id: None,
    })
}

/// Why an onboarding was refused.
#[derive(Debug, thiserror::Error)]
pub enum OnboardingError {
    #[error("Contact email domain does not match tenant domains")]
    ContactDomain,
    #[error("a tenant with key {0:?} already exists")]
    KeyTaken(String),
    /// The lead already has a tenant (a concurrent onboarding won).
    #[error("the lead already has a tenant")]
    LeadTaken,
    #[error(transparent)]
    Store(#[from] WriteError),
}

impl From<sqlx::Error> for OnboardingError {
    fn from(err: sqlx::Error) -> Self {
        Self::Store(WriteError::Db(err))
    }
}

/// Creates address, tenant and contact in one transaction and returns the tenant with its
/// relations. `name` must already be decided (the lead's company name when absent).
pub async fn onboard(
    db: &Db,
    onboarding: &Onboarding,
    actor: &Actor,
) -> Result<Object, OnboardingError> {
    let contact_email = onboarding
        .contact
        .get("email")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if !super::contacts::email_in_domains(contact_email, &onboarding.domains) {
        return Err(OnboardingError::ContactDomain);
    }

    let mut tx = db.begin().await?;
    let address_id = match (&onboarding.address_id, onboarding.address.is_empty()) {
        (Some(id), _) => Some(id.to_string()),
        (None, false) => {
            let address =
                crud::create(&mut tx.conn(), &ADDRESSES, &onboarding.address, actor).await?;
            address
                .get("id")
                .and_then(Value::as_str)
                .map(str::to_string)
        }
        (None, true) => None,
    };
    let mut tenant = Object::new();
    tenant.insert(
        "name".into(),
        json!(onboarding.name.clone().unwrap_or_default()),
    );
    tenant.insert(
        "status".into(),
        json!(super::tenant::TenantStatus::PendingProvision.code()),
    );
    tenant.insert("key".into(), json!(onboarding.key));
    tenant.insert("domains".into(), json!(onboarding.domains));
    tenant.insert(
        "leadId".into(),
        json!(onboarding.lead_id.map(|l| l.to_string())),
    );
    tenant.insert("addressId".into(), json!(address_id));
    let tenant_id = Uuid::new_v4();
    crud::create_with_id(&mut tx.conn(), &TENANTS, tenant_id, &tenant, actor)
        .await
        .map_err(|err| match err {
            WriteError::Conflict(index) if index.contains("lead_id") => OnboardingError::LeadTaken,
            WriteError::Conflict(_) => OnboardingError::KeyTaken(onboarding.key.clone()),
            other => OnboardingError::Store(other),
        })?;
    let mut contact = onboarding.contact.clone();
    contact.insert("tenantId".into(), json!(tenant_id.to_string()));
    crud::create(&mut tx.conn(), &CONTACTS, &contact, actor).await?;

    let with_relations = Filter::including(&[
        fields::tenant_contacts(),
        fields::tenant_resources(),
        fields::tenant_lead(),
        fields::tenant_address(),
    ]);
    let full = crud::find_by_id(
        &mut tx.conn(),
        &TENANTS,
        tenant_id,
        &with_relations,
        Scope::All,
    )
    .await?
    // Created in this transaction a moment ago.
    .ok_or(OnboardingError::Store(WriteError::Db(
        sqlx::Error::RowNotFound,
    )))?;
    tx.commit().await?;
    Ok(full)
}
