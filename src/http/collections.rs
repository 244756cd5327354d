//! The generic REST surface (`docs/API.md`), written once and instantiated per collection: create,
//! list with `filter`, count with `where`, get/patch/put/delete by id, bulk patch with `where`.
//! Each route requires its collection's permission; leads are read-only here (405).

use axum::Router;
use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::routing::get;
use serde_json::value::RawValue;
use serde_json::{Value, json};
use uuid::Uuid;

use super::AppState;
use super::auth::Require;
use super::{Json, Path, money_text};
use crate::audit::Who;
use crate::auth::{self, Permission, Principal};
use crate::domain::contacts::{self, ContactError};
use crate::domain::idp_settings::{Author, SettingsError};
use crate::domain::invoices::Change;
use crate::domain::tenant_configs;
use crate::domain::validation::{self, Mode};
use crate::http::error::{AppError, AppResult};
use crate::http::openapi::{DocumentedRoute, id_parameter, operation, schema_ref};
use crate::model::{self, Resource};
use crate::store::crud::{self, Actor, Scope, Target, WriteError};
use crate::store::filter::{self, Filter};

/// Rules of a collection that need the database to check a write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rules {
    None,
    /// A contact's email is at one of its tenant's domains (`domain::contacts`).
    ContactEmailDomain,
    /// Invoices: money in an ISO 4217 currency, numbers and the PENDING → PAID | CANCELLED
    /// lifecycle; written by `domain::invoices` in one transaction each.
    Invoice,
    /// A `keycloak` or `auth0` config keeps the trust rules of identity-provider settings
    /// (`domain::idp_settings`): none of them from a lead token, a tenant's own provider only
    /// with its credentials and on an allowed host.
    IdpSettings,
}

/// One collection of the REST surface and the permissions guarding it.
pub trait Collection: Send + Sync + 'static {
    const RESOURCE: &'static Resource;
    /// Controller name used for operation ids and tags, as in the original.
    const CONTROLLER: &'static str;
    /// Fields covered by a unique index, named in the 409 message.
    const UNIQUE: &'static [&'static str] = &[];
    /// Writes other than create answer 405 (leads change only through the funnel).
    const READ_ONLY: bool = false;
    /// Create has its own handler (the funnel's `POST /leads`, onboarding's `POST /tenants`).
    const CUSTOM_CREATE: bool = false;
    /// The rules a write must keep beyond the fields' own checks.
    const RULES: Rules = Rules::None;
    type View: Permission;
    type Create: Permission;
    type Update: Permission;
    type Delete: Permission;
}

macro_rules! collection {
    ($name:ident, $resource:expr, $controller:literal, [$($unique:literal),*], $read_only:literal,
     $custom_create:literal, $view:ident, $create:ident, $update:ident, $delete:ident
     $(, $rules:expr)?) => {
        pub struct $name;
        impl Collection for $name {
            const RESOURCE: &'static Resource = &$resource;
            const CONTROLLER: &'static str = $controller;
            const UNIQUE: &'static [&'static str] = &[$($unique),*];
            const READ_ONLY: bool = $read_only;
            const CUSTOM_CREATE: bool = $custom_create;
            $(const RULES: Rules = $rules;)?
            type View = auth::$view;
            type Create = auth::$create;
            type Update = auth::$update;
            type Delete = auth::$delete;
        }
    };
}

collection!(
    Leads,
    model::LEADS,
    "LeadController",
    [],
    true,
    true,
    ViewLead,
    CreateLead,
    UpdateLead,
    DeleteLead
);
collection!(
    Tenants,
    model::TENANTS,
    "TenantController",
    ["key"],
    false,
    true,
    ViewTenant,
    CreateTenant,
    UpdateTenant,
    DeleteTenant
);
collection!(
    Contacts,
    model::CONTACTS,
    "ContactController",
    [],
    false,
    false,
    ViewContact,
    CreateContact,
    UpdateContact,
    DeleteContact,
    Rules::ContactEmailDomain
);
collection!(
    Invoices,
    model::INVOICES,
    "InvoiceController",
    [],
    false,
    false,
    ViewInvoice,
    CreateInvoice,
    UpdateInvoice,
    DeleteInvoice,
    Rules::Invoice
);
collection!(
    TenantConfigs,
    model::TENANT_CONFIGS,
    "TenantMgmtConfigController",
    [],
    false,
    false,
    ViewTenantConfig,
    CreateTenantConfig,
    UpdateTenantConfig,
    DeleteTenantConfig,
    Rules::IdpSettings
);

/// The routes of every collection.
pub fn router() -> Router<AppState> {
    Router::new()
        .merge(routes::<Leads>())
        .merge(routes::<Tenants>())
        .merge(routes::<Contacts>())
        .merge(routes::<Invoices>())
        .merge(routes::<TenantConfigs>())
        .route(
            "/tenant-configs/{id}/tenant",
            get(tenant_of_config).fallback(super::authenticated_method_not_allowed),
        )
}

fn routes<C: Collection>() -> Router<AppState> {
    let base = format!("/{}", C::RESOURCE.path);
    let collection = if C::CUSTOM_CREATE {
        get(find::<C>)
    } else {
        get(find::<C>).post(create::<C>)
    };
    let item = get(find_by_id::<C>);
    let (collection, item) = if C::READ_ONLY {
        // Answered 405, but only to a caller who could otherwise make the change: the
        // credentials are checked first, as the original does.
        (
            collection.patch(refused::<C::Update>),
            item.patch(refused::<C::Update>)
                .put(refused::<C::Update>)
                .delete(refused::<C::Delete>),
        )
    } else {
        (
            collection.patch(update_all::<C>),
            item.patch(update_by_id::<C>)
                .put(replace_by_id::<C>)
                .delete(delete_by_id::<C>),
        )
    };
    Router::new()
        .route(
            &base,
            collection.fallback(super::authenticated_method_not_allowed),
        )
        .route(
            &format!("{base}/count"),
            get(count::<C>).fallback(super::authenticated_method_not_allowed),
        )
        .route(
            &format!("{base}/{{id}}"),
            item.fallback(super::authenticated_method_not_allowed),
        )
}

/// A write to a read-only collection by a caller holding `P`: 405.
async fn refused<P: Permission>(_: Require<P>) -> AppError {
    AppError::MethodNotAllowed
}

/// An id from the path; ids are UUIDs, so anything else names no entity.
pub fn parse_id(raw: &str) -> AppResult<Uuid> {
    Uuid::parse_str(raw).map_err(|_| AppError::entity_not_found())
}

/// The 400 answer for a bad query parameter `param` (`filter` or `where`).
fn invalid(param: &'static str) -> impl Fn(filter::FilterError) -> AppError {
    move |err| AppError::invalid_parameter(param, err)
}

/// The `filter` of a read, capped at `MAX_LIST_LIMIT` rows (and related rows per row).
pub(super) fn parse_filter(
    state: &AppState,
    resource: &'static Resource,
    query: Option<&str>,
) -> AppResult<Filter> {
    let filter = match filter::query_param(query, "filter").map_err(invalid("filter"))? {
        Some(value) => filter::parse_filter(resource, &value).map_err(invalid("filter"))?,
        None => Filter::default(),
    };
    Ok(filter.capped(state.config.max_list_limit))
}

pub(super) fn parse_where(
    resource: &'static Resource,
    query: Option<&str>,
) -> AppResult<Option<filter::Where>> {
    filter::query_param(query, "where")
        .map_err(invalid("where"))?
        .map(|value| filter::parse_where(resource, &value).map_err(invalid("where")))
        .transpose()
}

fn write_error<C: Collection>(err: WriteError, body: &Value) -> AppError {
    match err {
        WriteError::Conflict(_) => {
            let taken: Vec<String> = C::UNIQUE
                .iter()
                .filter_map(|f| body.get(*f).map(|v| format!("{f} {v}")))
                .collect();
            AppError::Conflict(if taken.is_empty() {
                format!("{} violates a unique constraint", C::RESOURCE.title)
            } else {
                format!(
                    "Unique constraint violation: a {} with {} already exists",
                    C::RESOURCE.title,
                    taken.join(", ")
                )
            })
        }
        other => other.into(),
    }
}

/// The scope of a caller: a lead token reaches only its lead and that lead's tenant.
pub fn scope_of(principal: &Principal) -> Scope {
    principal.lead.map_or(Scope::All, Scope::Lead)
}

pub(super) fn actor(principal: &Principal) -> Actor {
    let who = match principal.lead {
        Some(lead) => Who::lead(lead),
        None => Who::user(&principal.user_id, &principal.id),
    };
    Actor {
        id: principal.id.clone(),
        scope: scope_of(principal),
        who,
    }
}

/// For a scoped caller, a `tenantId` written (on create or update) must be its own tenant:
/// another tenant is answered as one that does not exist (404), as every id outside a lead
/// token's reach is, so the answer tells nothing of what others have.
pub(super) async fn check_tenant_in_scope(
    state: &AppState,
    principal: &Principal,
    values: &crate::store::Object,
) -> AppResult<()> {
    let scope = scope_of(principal);
    if scope == Scope::All {
        return Ok(());
    }
    let Some(tenant) = values.get("tenantId") else {
        return Ok(());
    };
    let allowed = match tenant.as_str().map(Uuid::parse_str) {
        Some(Ok(id)) => {
            let this_tenant = filter::Where::uuid_is(model::TENANTS.id_field(), id);
            crud::count(
                &mut state.db.conn(),
                &model::TENANTS,
                Some(&this_tenant),
                scope,
            )
            .await?
                > 0
        }
        _ => false,
    };
    if allowed {
        Ok(())
    } else {
        Err(WriteError::MissingReference {
            field: "tenantId",
            id: tenant.as_str().unwrap_or_default().to_string(),
        }
        .into())
    }
}

/// Checks the collection's rules for writing `values` to `target` (`None`: a create).
async fn check_rules<C: Collection>(
    state: &AppState,
    principal: &Principal,
    values: &crate::store::Object,
    target: Option<Target<'_>>,
) -> AppResult<()> {
    match C::RULES {
        Rules::None | Rules::Invoice => Ok(()),
        Rules::IdpSettings => {
            let existing = match target {
                Some(target) => {
                    let scope = scope_of(principal);
                    tenant_configs::affected(&mut state.db.conn(), target, scope).await?
                }
                None => Vec::new(),
            };
            let author = if principal.lead.is_some() {
                Author::Lead
            } else {
                Author::Admin
            };
            tenant_configs::check_write(&state.config, author, values, &existing).map_err(|err| {
                match err {
                    SettingsError::NotForLeads { .. } | SettingsError::KeyChange => {
                        AppError::Forbidden(err.to_string())
                    }
                    SettingsError::Invalid(message) => AppError::Unprocessable(message),
                }
            })
        }
        Rules::ContactEmailDomain => {
            let mut conn = state.db.conn();
            let existing = match target {
                Some(target) => contacts::affected(&mut conn, target, scope_of(principal)).await?,
                None => Vec::new(),
            };
            contacts::check_email_domains(&mut conn, values, &existing)
                .await
                .map_err(|err| match err {
                    ContactError::DomainMismatch => AppError::BadRequest(err.to_string()),
                    ContactError::Database(err) => err.into(),
                })
        }
    }
}

fn valid(resource: &'static Resource, body: &Value, mode: Mode) -> AppResult<crate::store::Object> {
    validation::validate(resource, body, mode).map_err(AppError::Validation)
}

async fn create<C: Collection>(
    State(state): State<AppState>,
    auth: Require<C::Create>,
    Json(raw): Json<Box<RawValue>>,
) -> AppResult<Json<Value>> {
    let body = money_text::resource_body(C::RESOURCE, &raw)?;
    let values = valid(C::RESOURCE, &body, Mode::Create)?;
    check_tenant_in_scope(&state, &auth.principal, &values).await?;
    check_rules::<C>(&state, &auth.principal, &values, None).await?;
    if C::RULES == Rules::Invoice {
        let row = super::invoices::create(&state, &auth.principal, values).await?;
        return Ok(Json(Value::Object(row)));
    }
    let row = crud::create(
        &mut state.db.conn(),
        C::RESOURCE,
        &values,
        &actor(&auth.principal),
    )
    .await
    .map_err(|e| write_error::<C>(e, &body))?;
    Ok(Json(Value::Object(row)))
}

async fn find<C: Collection>(
    State(state): State<AppState>,
    auth: Require<C::View>,
    RawQuery(query): RawQuery,
) -> AppResult<Json<Value>> {
    let filter = parse_filter(&state, C::RESOURCE, query.as_deref())?;
    let scope = scope_of(&auth.principal);
    let rows = crud::find(&mut state.db.conn(), C::RESOURCE, &filter, scope).await?;
    Ok(Json(Value::Array(
        rows.into_iter().map(Value::Object).collect(),
    )))
}

async fn count<C: Collection>(
    State(state): State<AppState>,
    auth: Require<C::View>,
    RawQuery(query): RawQuery,
) -> AppResult<Json<Value>> {
    let where_ = parse_where(C::RESOURCE, query.as_deref())?;
    let scope = scope_of(&auth.principal);
    let count = crud::count(&mut state.db.conn(), C::RESOURCE, where_.as_ref(), scope).await?;
    Ok(Json(json!({ "count": count })))
}

async fn find_by_id<C: Collection>(
    State(state): State<AppState>,
    auth: Require<C::View>,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
) -> AppResult<Json<Value>> {
    let filter = parse_filter(&state, C::RESOURCE, query.as_deref())?;
    if filter.where_.is_some() {
        return Err(AppError::invalid_parameter(
            "filter",
            "\"where\" is not allowed when reading by id",
        ));
    }
    let id = parse_id(&id)?;
    let scope = scope_of(&auth.principal);
    crud::find_by_id(&mut state.db.conn(), C::RESOURCE, id, &filter, scope)
        .await?
        .map(|row| Json(Value::Object(row)))
        .ok_or_else(AppError::entity_not_found)
}

async fn update_by_id<C: Collection>(
    State(state): State<AppState>,
    auth: Require<C::Update>,
    Path(id): Path<String>,
    Json(raw): Json<Box<RawValue>>,
) -> AppResult<StatusCode> {
    let body = money_text::resource_body(C::RESOURCE, &raw)?;
    write_by_id::<C>(&state, &auth.principal, &id, &body, Change::Patch).await
}

async fn replace_by_id<C: Collection>(
    State(state): State<AppState>,
    auth: Require<C::Update>,
    Path(id): Path<String>,
    Json(raw): Json<Box<RawValue>>,
) -> AppResult<StatusCode> {
    let body = money_text::resource_body(C::RESOURCE, &raw)?;
    write_by_id::<C>(&state, &auth.principal, &id, &body, Change::Replace).await
}

/// `PATCH` or `PUT /X/{id}`: 204, or 404 when there is no such row in the caller's scope.
async fn write_by_id<C: Collection>(
    state: &AppState,
    principal: &Principal,
    id: &str,
    body: &Value,
    change: Change,
) -> AppResult<StatusCode> {
    let id = parse_id(id)?;
    let body =
        validation::without_managed_fields(C::RESOURCE, body, id).map_err(AppError::Validation)?;
    let mode = match change {
        Change::Patch => Mode::Patch,
        Change::Replace => Mode::Replace,
    };
    let values = valid(C::RESOURCE, &body, mode)?;
    check_tenant_in_scope(state, principal, &values).await?;
    check_rules::<C>(state, principal, &values, Some(Target::Id(id))).await?;
    if C::RULES == Rules::Invoice {
        let changed =
            super::invoices::update(state, principal, Target::Id(id), values, change).await?;
        return found(changed);
    }
    let mut conn = state.db.conn();
    let actor = actor(principal);
    let changed = match change {
        Change::Patch => {
            crud::update(&mut conn, C::RESOURCE, Target::Id(id), &values, &actor).await
        }
        Change::Replace => crud::replace(&mut conn, C::RESOURCE, id, &values, &actor).await,
    }
    .map_err(|e| write_error::<C>(e, &body))?;
    found(changed)
}

async fn delete_by_id<C: Collection>(
    State(state): State<AppState>,
    auth: Require<C::Delete>,
    Path(id): Path<String>,
) -> AppResult<StatusCode> {
    let id = parse_id(&id)?;
    let deleted = crud::soft_delete(
        &mut state.db.conn(),
        C::RESOURCE,
        Target::Id(id),
        &actor(&auth.principal),
        &auth.principal.user_id,
    )
    .await?;
    found(deleted)
}

async fn update_all<C: Collection>(
    State(state): State<AppState>,
    auth: Require<C::Update>,
    RawQuery(query): RawQuery,
    Json(raw): Json<Box<RawValue>>,
) -> AppResult<Json<Value>> {
    let body = money_text::resource_body(C::RESOURCE, &raw)?;
    let where_ = parse_where(C::RESOURCE, query.as_deref())?;
    let values = valid(C::RESOURCE, &body, Mode::Patch)?;
    check_tenant_in_scope(&state, &auth.principal, &values).await?;
    check_rules::<C>(
        &state,
        &auth.principal,
        &values,
        Some(Target::Matching(where_.as_ref())),
    )
    .await?;
    if C::RULES == Rules::Invoice {
        let count = super::invoices::update(
            &state,
            &auth.principal,
            Target::Matching(where_.as_ref()),
            values,
            Change::Patch,
        )
        .await?;
        return Ok(Json(json!({ "count": count })));
    }
    let count = crud::update(
        &mut state.db.conn(),
        C::RESOURCE,
        Target::Matching(where_.as_ref()),
        &values,
        &actor(&auth.principal),
    )
    .await
    .map_err(|e| write_error::<C>(e, &body))?;
    Ok(Json(json!({ "count": count })))
}

fn found(changed: u64) -> AppResult<StatusCode> {
    if changed == 0 {
        Err(AppError::entity_not_found())
    } else {
        Ok(StatusCode::NO_CONTENT)
    }
}

/// `GET /tenant-configs/{id}/tenant`: the tenant a configuration belongs to.
async fn tenant_of_config(
    State(state): State<AppState>,
    auth: Require<auth::ViewTenantConfig>,
    Path(id): Path<String>,
) -> AppResult<Json<Value>> {
    let id = parse_id(&id)?;
    let include = Filter::including(&[model::fields::config_tenant()]);
    let scope = scope_of(&auth.principal);
    let config = crud::find_by_id(
        &mut state.db.conn(),
        &model::TENANT_CONFIGS,
        id,
        &include,
        scope,
    )
    .await?
    .ok_or_else(AppError::entity_not_found)?;
    config
        .get("tenant")
        .cloned()
        .map(Json)
        .ok_or_else(AppError::entity_not_found)
}

/// OpenAPI entries for every collection route.
pub fn documented_routes() -> Vec<DocumentedRoute> {
    let mut routes = Vec::new();
    document::<Leads>(&mut routes);
    document::<Tenants>(&mut routes);
    document::<Contacts>(&mut routes);
    document::<Invoices>(&mut routes);
    document::<TenantConfigs>(&mut routes);
    routes.push(DocumentedRoute {
        path: "/tenant-configs/{id}/tenant".into(),
        method: "get",
        operation: operation(
            "TenantMgmtConfigTenantController",
            "getTenant",
            auth::ViewTenantConfig::CODE,
            vec![id_parameter()],
            None,
            (
                "200",
                "Tenant belonging to TenantConfig",
                Some(schema_ref("Tenant")),
            ),
        ),
    });
    routes
}

fn document<C: Collection>(routes: &mut Vec<DocumentedRoute>) {
    let title = C::RESOURCE.title;
    let base = format!("/{}", C::RESOURCE.path);
    let item = format!("{base}/{{id}}");
    let count = format!("{base}/count");
    let filter_param = |name: &str| {
        json!({"name": name, "in": "query",
            "description": "LoopBack filter, as JSON or in bracket form (filter[where][field]=value)",
            "content": {"application/json": {"schema": {"type": "object", "additionalProperties": true}}}})
    };
    let new_body = Some(schema_ref(&format!("New{title}")));
    let partial_body = Some(schema_ref(&format!("{title}Partial")));
    let one = Some(schema_ref(title));
    let many = Some(json!({"type": "array", "items": schema_ref(title)}));
    let counted = Some(schema_ref("loopback.Count"));
    // (path, method, operation, permission, parameters, body, (status, description, schema))
    let mut table = vec![
        (
            &base,
            "get",
            "find",
            C::View::CODE,
            vec![filter_param("filter")],
            None,
            ("200", format!("Array of {title} model instances"), many),
        ),
        (
            &count,
            "get",
            "count",
            C::View::CODE,
            vec![filter_param("where")],
            None,
            ("200", format!("{title} model count"), counted.clone()),
        ),
        (
            &item,
            "get",
            "findById",
            C::View::CODE,
            vec![id_parameter(), filter_param("filter")],
            None,
            ("200", format!("{title} model instance"), one.clone()),
        ),
    ];
    if !C::CUSTOM_CREATE {
        table.push((
            &base,
            "post",
            "create",
            C::Create::CODE,
            vec![],
            new_body.clone(),
            ("200", format!("{title} model instance"), one),
        ));
    }
    if !C::READ_ONLY {
        table.extend([
            (
                &base,
                "patch",
                "updateAll",
                C::Update::CODE,
                vec![filter_param("where")],
                partial_body.clone(),
                ("200", format!("{title} PATCH success count"), counted),
            ),
            (
                &item,
                "patch",
                "updateById",
                C::Update::CODE,
                vec![id_parameter()],
                partial_body,
                ("204", format!("{title} PATCH success"), None),
            ),
            (
                &item,
                "put",
                "replaceById",
                C::Update::CODE,
                vec![id_parameter()],
                new_body,
                ("204", format!("{title} PUT success"), None),
            ),
            (
                &item,
                "delete",
                "deleteById",
                C::Delete::CODE,
                vec![id_parameter()],
                None,
                ("204", format!("{title} DELETE success"), None),
            ),
        ]);
    }
    for (path, method, name, permission, parameters, body, (status, description, schema)) in table {
        routes.push(DocumentedRoute {
            path: path.clone(),
            method,
            operation: operation(
                C::CONTROLLER,
                name,
                permission,
                parameters,
                body,
                (status, &description, schema),
            ),
        });
    }
    if C::READ_ONLY {
        // Listed so clients generated from the original still find them: they answer 405 to a
        // caller with the permission (401/403 otherwise).
        for (path, method, name, code, parameters) in [
            (
                &base,
                "patch",
                "updateAll",
                C::Update::CODE,
                vec![filter_param("where")],
            ),
            (
                &item,
                "patch",
                "updateById",
                C::Update::CODE,
                vec![id_parameter()],
            ),
            (
                &item,
                "put",
                "replaceById",
                C::Update::CODE,
                vec![id_parameter()],
            ),
            (
                &item,
                "delete",
                "deleteById",
                C::Delete::CODE,
                vec![id_parameter()],
            ),
        ] {
            routes.push(DocumentedRoute {
                path: path.clone(),
                method,
                operation: json!({
                    "x-controller-name": C::CONTROLLER,
                    "x-operation-name": name,
                    "tags": [C::CONTROLLER],
                    "operationId": format!("{}.{name}", C::CONTROLLER),
                    "description": format!(
                        "{title}s change only through the funnel: 405 to a caller with \
                         permission {code}."
                    ),
                    "security": [{"HTTPBearer": []}],
                    "parameters": parameters,
                    "responses": {
                        "401": crate::http::openapi::error_response("No or invalid bearer token"),
                        "403": crate::http::openapi::error_response("The token lacks the permission"),
                        "405": crate::http::openapi::error_response("Method Not Allowed"),
                    },
                }),
            });
        }
    }
}
