//! The lead funnel and onboarding (SPEC §5): `POST /leads` (public), `POST /leads/{id}/verify`
//! (lead key), `POST /leads/{id}/tenants` (lead token) and the administrator's `POST /tenants`.

use axum::Router;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::routing::post;
use serde_json::{Value, json};
use uuid::Uuid;

use super::{Json, Path};
use crate::AppState;
use crate::auth::{Principal, bearer_token};
use crate::domain::onboarding;
use crate::domain::validation::{check_fields, not_an_object};
use crate::error::{AppError, AppResult, ValidationDetail};
use crate::mail::Template;
use crate::model::{ADDRESSES, LEADS};
use crate::store::crud::{self, Actor, Scope, Target};
use crate::store::filter::Filter;
use crate::store::{Object, leads};

/// The public funnel routes (rate limited by the caller).
pub fn public_router() -> Router<AppState> {
    Router::new()
        .route("/leads", post(create_lead))
        .route("/leads/{id}/verify", post(verify_lead))
        .route("/leads/{id}/tenants", post(tenant_from_lead))
}

/// Where the verification key of a lead is kept.
fn lead_key(key: &str) -> String {
    format!("lead-key:{key}")
}

fn unauthorized() -> AppError {
    AppError::Unauthorized("Unauthorized".into())
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

/// `POST /leads`: records the lead (and its address), mails the verification link, answers
/// `{id}` (plus `key` only with `LEAD_KEY_IN_RESPONSE=true`).
async fn create_lead(
    State(state): State<AppState>,
    Json(body): Json<Value>,
) -> AppResult<Json<Value>> {
    let (mut lead, address) = lead_body(&body).map_err(AppError::Validation)?;
    let email = lead["email"].as_str().unwrap_or_default().to_string();
    if leads::validated_email_exists(&mut state.db.conn(), &email).await? {
        return Err(AppError::Conflict(
            "A validated lead with this email already exists".into(),
        ));
    }
    let config = &state.config;
    let system = config.system_user_id.as_str();
    let key = new_lead_key(config.lead_key_length);
    let lead_id = Uuid::new_v4();
    let id = lead_id.to_string();
    // The key is stored before the lead commits (and outside its transaction, which on SQLite
    // holds the write lock): a key whose lead never committed verifies nothing, while a
    // committed lead always has its key.
    state
        .kv
        .put(&lead_key(&key), &id, config.validation_token_expiry)
        .await
        .map_err(AppError::Internal)?;

    let mut tx = state.db.begin().await?;
    if !address.is_empty() {
        let created = crud::create(&mut tx.conn(), &ADDRESSES, &address, system).await?;
        lead.insert("addressId".into(), created["id"].clone());
    }
    lead.insert("isValidated".into(), json!(false));
    crud::create_with_id(&mut tx.conn(), &LEADS, lead_id, &lead, system).await?;
    let link = validation_link(&config.app_validate_url, &key, &id);
    state
        .mailer
        .queue(
            &mut tx.conn(),
            &email,
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
    tx.commit().await?;

    let mut answer = json!({ "id": id });
    if config.lead_key_in_response {
        answer["key"] = json!(key);
    }
    Ok(Json(answer))
}

/// `POST /leads/{id}/verify` with `Authorization: Bearer <key>`: the key must exist, be
/// unexpired and belong to this lead; it is consumed. Answers `{id, token}`.
async fn verify_lead(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> AppResult<Json<Value>> {
    let key = bearer_token(&headers)?;
    let stored_key = lead_key(key);
    let owner = state
        .kv
        .get(&stored_key)
        .await
        .map_err(AppError::Internal)?;
    if owner.as_deref() != Some(id.as_str()) {
        return Err(unauthorized());
    }
    // Single use: of two concurrent verifications only one takes the key.
    if state
        .kv
        .take(&stored_key)
        .await
        .map_err(AppError::Internal)?
        .is_none()
    {
        return Err(unauthorized());
    }
    let lead_id = Uuid::parse_str(&id).map_err(|_| unauthorized())?;
    let lead = crud::find_by_id(
        &mut state.db.conn(),
        &LEADS,
        lead_id,
        &Filter::default(),
        Scope::All,
    )
    .await?
    .ok_or_else(unauthorized)?;
    let mut validated = Object::new();
    validated.insert("isValidated".into(), json!(true));
    let actor = Actor {
        id: id.clone(),
        scope: Scope::Lead(lead_id),
    };
    crud::update(
        &mut state.db.conn(),
        &LEADS,
        Target::Id(lead_id),
        &validated,
        &actor,
    )
    .await?;
    let email = lead["email"].as_str().unwrap_or_default();
    let token = state
        .jwt
        .mint_lead(lead_id, email, state.config.lead_token_expiry.as_secs())
        .map_err(AppError::Internal)?;
    Ok(Json(json!({ "id": id, "token": token })))
}

/// `POST /leads/{id}/tenants` with the lead's token: onboards the tenant of a validated lead
/// that has none yet, with the lead's person as primary admin contact.
async fn tenant_from_lead(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
    Json(body): Json<Value>,
) -> AppResult<Json<Value>> {
    let lead_id = Uuid::parse_str(&id).map_err(|_| unauthorized())?;
    if principal.lead != Some(lead_id) || principal.id != id {
        return Err(unauthorized());
    }
    let mut conn = state.db.conn();
    let address_relation = Filter {
        include: vec![crate::store::filter::Include {
            relation: LEADS.relation("address").expect("leads have an address"),
            scope: Filter::default(),
        }],
        ..Filter::default()
    };
    let lead = crud::find_by_id(&mut conn, &LEADS, lead_id, &address_relation, Scope::All)
        .await?
        .ok_or_else(unauthorized)?;
    if lead["isValidated"] != json!(true) || leads::has_tenant(&mut conn, lead_id).await? {
        return Err(unauthorized());
    }
    let mut contact = Object::new();
    for field in ["firstName", "lastName", "email"] {
        contact.insert(field.into(), lead[field].clone());
    }
    contact.insert("isPrimary".into(), json!(true));
    contact.insert("type".into(), json!("admin"));
    let lead_address = lead.get("address").and_then(Value::as_object);
    let mut onboarding = onboarding::lead_body(&body, contact, lead_address.is_some())
        .map_err(AppError::Validation)?;
    if onboarding.name.is_none() {
        onboarding.name = lead["companyName"].as_str().map(str::to_string);
    }
    if let Some(lead_address) = lead_address {
        if !same_address(&onboarding.address, lead_address) {
            return Err(AppError::BadRequest("Address mismatch with Lead".into()));
        }
        onboarding.address = Object::new();
        onboarding.address_id = lead_address
            .get("id")
            .and_then(Value::as_str)
            .and_then(|a| Uuid::parse_str(a).ok());
    }
    onboarding.lead_id = Some(lead_id);
    let tenant = onboarding::onboard(&state.db, &onboarding, &id).await?;
    Ok(Json(Value::Object(tenant)))
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

/// The OpenAPI entries of the funnel routes.
pub fn documented_routes() -> Vec<crate::openapi::DocumentedRoute> {
    use crate::openapi::{DocumentedRoute, error_response, id_parameter, operation, schema_ref};
    let mut create = operation(
        "LeadController",
        "create",
        "",
        vec![],
        Some(schema_ref("CreateLeadDTO")),
        (
            "200",
            "The lead's id; the verification link is mailed",
            Some(schema_ref("CreateLeadResponse")),
        ),
    );
    create["responses"]["409"] = error_response("A validated lead with this email exists");
    create["responses"]["429"] = error_response("Too many requests from this client");
    let mut verify = operation(
        "LeadController",
        "validateLead",
        "",
        vec![id_parameter()],
        None,
        (
            "200",
            "The lead token",
            Some(schema_ref("VerifyLeadResponseDTO")),
        ),
    );
    verify["description"] =
        json!("Authorization: Bearer <key from the verification mail>. The key is single-use.");
    verify["security"] = json!([{"HTTPBearer": []}]);
    let mut onboard = operation(
        "LeadController",
        "tenantFromLead",
        "",
        vec![id_parameter()],
        Some(schema_ref("TenantOnboardDto")),
        (
            "200",
            "The onboarded tenant",
            Some(schema_ref("TenantWithRelations")),
        ),
    );
    onboard["description"] = json!("Authorization: Bearer <lead token from /verify>.");
    onboard["security"] = json!([{"HTTPBearer": []}]);
    onboard["responses"]["409"] = error_response("A tenant with this key exists");
    [
        ("/leads", create),
        ("/leads/{id}/verify", verify),
        ("/leads/{id}/tenants", onboard),
    ]
    .into_iter()
    .map(|(path, operation)| DocumentedRoute {
        path: path.into(),
        method: "post",
        operation,
    })
    .collect()
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
