//! The OpenAPI 3 document, generated from the resource descriptors in `model` and the route
//! table in `http`, so that it cannot drift from what the service serves.

use serde_json::{Map, Value, json};

use crate::model::{self, Field, FieldType, Resource};

/// The whole document served at `/openapi.json` and printed by `tms openapi`.
pub fn document() -> Value {
    let mut paths = Map::new();
    paths.insert(
        "/".into(),
        json!({"get": {
            "operationId": "HomePageController.homePage", "tags": ["HomePageController"],
            "responses": {"200": {"description": "Home Page",
                "content": {"text/html": {"schema": {"type": "string"}}}}}
        }}),
    );
    paths.insert(
        "/ping".into(),
        json!({"get": {
            "operationId": "PingController.ping", "tags": ["PingController"],
            "responses": {"200": {"description": "Ping Response",
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/PingResponse"}}}}}
        }}),
    );
    paths.insert(
        "/health/ready".into(),
        json!({"get": {
            "operationId": "HealthController.ready", "tags": ["HealthController"],
            "description": "Ready when the database answers; 503 otherwise.",
            "responses": {
                "200": {"description": "Ready"},
                "503": error_response("Not ready")
            }
        }}),
    );
    paths.insert(
        "/health/live".into(),
        json!({"get": {
            "operationId": "HealthController.live", "tags": ["HealthController"],
            "responses": {"200": {"description": "The process is up"}}
        }}),
    );
    for route in super::documented_routes() {
        let entry = paths
            .entry(route.path.to_string())
            .or_insert_with(|| json!({}));
        entry[route.method] = route.operation;
    }
    for entry in paths.values_mut() {
        if let Some(post) = entry.get_mut("post") {
            take_idempotency_key(post);
        }
    }

    let mut schemas = Map::new();
    schemas.insert(
        "PingResponse".into(),
        json!({"type": "object", "title": "PingResponse", "properties": {
            "greeting": {"type": "string"}, "date": {"type": "string"}, "url": {"type": "string"},
            "headers": {"type": "object", "additionalProperties": true}
        }}),
    );
    schemas.insert(
        "loopback.Count".into(),
        json!({"type": "object", "title": "loopback.Count", "properties": {"count": {"type": "number"}}}),
    );
    schemas.insert("Error".into(), error_schema());
    schemas.extend(funnel_schemas());
    schemas.insert(
        model::AUDIT_LOGS.title.into(),
        model_schema(&model::AUDIT_LOGS, Variant::Full),
    );
    for resource in model::ALL {
        schemas.insert(resource.title.into(), model_schema(resource, Variant::Full));
        schemas.insert(
            format!("New{}", resource.title),
            model_schema(resource, Variant::New),
        );
        schemas.insert(
            format!("{}Partial", resource.title),
            model_schema(resource, Variant::Partial),
        );
    }

    json!({
        "openapi": "3.0.0",
        "info": {
            "title": "Tenant Management Service",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Tenant management for a SaaS control plane (wire-compatible with the ARC SaaS tenant-management-service)",
        },
        "servers": [{"url": "/"}],
        "paths": paths,
        "components": {
            "securitySchemes": {"HTTPBearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}},
            "parameters": {"IdempotencyKey": idempotency_key_parameter()},
            "headers": {"IdempotencyReplayed": {
                "description": "`true` on an answer sent again for its Idempotency-Key",
                "schema": {"type": "string", "enum": ["true"]}
            }},
            "schemas": schemas,
        },
    })
}

/// The request and response bodies of the lead funnel and onboarding, from the model fields.
fn funnel_schemas() -> Map<String, Value> {
    let props = |resource: &Resource, names: &[&str]| -> Map<String, Value> {
        names
            .iter()
            .filter_map(|n| resource.field(n))
            .map(|f| (f.name.to_string(), field_schema(f)))
            .collect()
    };
    let address = props(
        &model::ADDRESSES,
        &["address", "city", "state", "zip", "country"],
    );
    let mut domains = field_schema(model::fields::tenant_domains());
    domains["uniqueItems"] = json!(true);
    domains["items"]["format"] = json!("hostname");
    let tenant = |names: &[&str]| {
        let mut p = props(&model::TENANTS, names);
        p.insert("domains".into(), domains.clone());
        p.extend(address.clone());
        p
    };
    let mut contact = props(
        &model::CONTACTS,
        &["firstName", "lastName", "email", "isPrimary", "type"],
    );
    contact.insert(
        "email".into(),
        json!({"type": "string", "format": "email", "maxLength": 100}),
    );
    let mut new_onboarding = tenant(&["name", "key"]);
    new_onboarding.insert(
        "contact".into(),
        json!({"type": "object", "properties": contact, "additionalProperties": false,
            "required": ["firstName", "lastName", "email", "isPrimary"]}),
    );
    let mut create_lead = props(
        &model::LEADS,
        &["firstName", "lastName", "email", "companyName"],
    );
    create_lead.insert(
        "address".into(),
        json!({"type": "object", "properties": address, "additionalProperties": false, "required": ["country"]}),
    );
    let mut with_relations = model_schema(&model::TENANTS, Variant::Full);
    with_relations["title"] = json!("TenantWithRelations");
    let relations = json!({
        "contacts": {"type": "array", "items": {"$ref": "#/components/schemas/Contact"}},
        "resources": {"type": "array", "items": {"$ref": "#/components/schemas/Resource"}},
        "lead": {"$ref": "#/components/schemas/Lead"},
        "address": {"$ref": "#/components/schemas/Address"},
    });
    for (k, v) in relations.as_object().expect("an object") {
        with_relations["properties"][k] = v.clone();
    }
    [
        ("NewTenantOnboarding", json!({"title": "NewTenantOnboarding", "type": "object",
            "properties": new_onboarding, "additionalProperties": false,
            "required": ["name", "key", "domains", "contact"]})),
        ("TenantOnboardDto", json!({"title": "TenantOnboardDto", "type": "object",
            "properties": tenant(&["name", "key"]), "additionalProperties": false,
            "required": ["key", "domains"]})),
        ("CreateLeadDTO", json!({"title": "CreateLeadDTO", "type": "object", "properties": create_lead,
            "additionalProperties": false, "required": ["firstName", "lastName", "email", "companyName"]})),
        ("CreateLeadResponse", json!({"title": "CreateLeadResponse", "type": "object", "properties": {
            "id": {"type": "string", "format": "uuid"},
            "key": {"type": "string", "description": "only with LEAD_KEY_IN_RESPONSE=true"}}})),
        ("VerifyLeadResponseDTO", json!({"title": "VerifyLeadResponseDTO", "type": "object", "properties": {
            "id": {"type": "string"}, "token": {"type": "string"}}, "required": ["id", "token"]})),
        ("TenantWithRelations", with_relations),
        ("SubscriptionDTO", json!({"title": "SubscriptionDTO", "type": "object",
            "description": "The subscription a tenant is provisioned with; `id` and `plan.tier` are required. `plan.metaData.pipelineName` picks the pipeline.",
            "properties": {
                "id": {"type": "string"}, "subscriberId": {"type": "string"},
                "startDate": {"type": "string"}, "endDate": {"type": "string"},
                "status": {"type": "number"}, "planId": {"type": "string"},
                "invoiceId": {"type": "string"},
                "plan": {"type": "object", "required": ["tier"], "properties": {
                    "tier": {"type": "string"},
                    "metaData": {"type": "object", "properties": {
                        "pipelineName": {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,64}$"}}}}},
                "deleted": {"type": "boolean"}, "deletedOn": {"type": "string"},
                "deletedBy": {"type": "string"}, "createdOn": {"type": "string"},
                "modifiedOn": {"type": "string"}, "createdBy": {"type": "string"},
                "modifiedBy": {"type": "string"}},
            "required": ["id", "plan"], "additionalProperties": false})),
        ("WebhookDTO", json!({"title": "WebhookDTO", "type": "object", "properties": {
                "initiatorId": {"type": "string", "format": "uuid"},
                "type": {"type": "number", "enum": [0], "description": "0 RESOURCES_PROVISIONED"},
                "data": {"type": "object", "required": ["status"], "properties": {
                    "status": {"type": "number", "enum": [0, 1], "description": "0 FAILURE, 1 SUCCESS"},
                    "resources": {"type": "array", "items": {"type": "object", "required": ["metadata"],
                        "properties": {"type": {"type": "string"}, "externalIdentifier": {"type": "string"},
                            "metadata": {"type": "object"}}}},
                    "appPlaneUrl": {"type": "string"},
                    "error": {"type": "string", "description": "why it failed"}}}},
            "required": ["initiatorId", "data", "type"], "additionalProperties": false})),
        ("IdpDetailsDTO", json!({"title": "IdpDetailsDTO", "type": "object",
            "description": "What POST /manage/users is to do: `tenant.id` and `tenant.identityProvider` (keycloak or auth0) are required, `plan.tier` defaults to the tier the tenant is being provisioned with. A pipeline may send its event's tenant and plan as they are.",
            "properties": {
                "tenant": {"type": "object", "required": ["id", "identityProvider"], "properties": {
                    "id": {"type": "string", "format": "uuid"},
                    "identityProvider": {"type": "string", "enum": ["keycloak", "auth0"]}}},
                "plan": {"type": "object", "properties": {"tier": {"type": "string"}}}},
            "required": ["tenant"], "additionalProperties": false})),
        ("ProvisioningState", json!({"title": "ProvisioningState", "type": "object", "properties": {
                "tenantId": {"type": "string", "format": "uuid"},
                "status": {"type": "number"}, "statusName": {"type": "string"},
                "operation": {"type": "string", "enum": ["provision", "deprovision"], "nullable": true},
                "subscription": {"type": "object", "nullable": true},
                "tier": {"type": "string", "nullable": true},
                "isolation": {"type": "string", "enum": ["silo", "pooled"], "nullable": true},
                "pipeline": {"type": "string", "nullable": true},
                "attempts": {"type": "number", "nullable": true},
                "reason": {"type": "string", "nullable": true, "description": "why the last operation failed"},
                "startedAt": {"type": "string", "format": "date-time", "nullable": true},
                "deadlineAt": {"type": "string", "format": "date-time", "nullable": true},
                "finishedAt": {"type": "string", "format": "date-time", "nullable": true}}})),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

/// Which shape of a model schema to describe.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Variant {
    /// The stored model as returned.
    Full,
    /// A create body: no server-set fields.
    New,
    /// A PATCH body: like `New`, nothing required.
    Partial,
}

/// The JSON schema of one resource in one variant.
pub fn model_schema(resource: &Resource, variant: Variant) -> Value {
    let fields = resource
        .fields
        .iter()
        .filter(|f| variant == Variant::Full || !f.server_only);
    let properties: Map<String, Value> = fields
        .clone()
        .map(|f| (f.name.to_string(), field_schema(f)))
        .collect();
    let required: Vec<&str> = if variant == Variant::Partial {
        vec![]
    } else {
        fields.filter(|f| f.required).map(|f| f.name).collect()
    };
    let title = match variant {
        Variant::Full => resource.title.to_string(),
        Variant::New => format!("New{}", resource.title),
        Variant::Partial => format!("{}Partial", resource.title),
    };
    let mut schema = json!({
        "title": title,
        "type": "object",
        "description": resource.description,
        "properties": properties,
        "additionalProperties": false,
    });
    if !required.is_empty() {
        schema["required"] = json!(required);
    }
    schema
}

fn field_schema(field: &Field) -> Value {
    let mut schema = match field.ty {
        FieldType::Uuid => json!({"type": "string", "format": "uuid"}),
        FieldType::Text => json!({"type": "string"}),
        FieldType::Bool => json!({"type": "boolean"}),
        FieldType::Enum(names) => {
            let mut values: Vec<Value> = (0..names.len()).map(Value::from).collect();
            if std::ptr::eq(names, model::INVOICE_STATUS) {
                values.extend(names.iter().map(|n| Value::from(*n)));
            }
            json!({"type": "number", "enum": values})
        }
        FieldType::Timestamp => json!({"type": "string", "format": "date-time"}),
        FieldType::Money => json!({"type": "number"}),
        FieldType::Json => json!({"type": "object"}),
        FieldType::TextArray => json!({"type": "array", "items": {"type": "string"}}),
    };
    if let Some(max) = field.max_len {
        schema["maxLength"] = json!(max);
    }
    if field.name == "key" && field.ty == FieldType::Text {
        schema["pattern"] = json!("^[a-z0-9]+$");
    }
    if field.name.starts_with("deleted") && field.name != "deleted" {
        schema["nullable"] = json!(true);
    }
    if !field.description.is_empty() {
        schema["description"] = json!(field.description);
    }
    schema
}

fn error_schema() -> Value {
    json!({"type": "object", "title": "Error", "properties": {"error": {"type": "object", "properties": {
        "statusCode": {"type": "number"}, "name": {"type": "string"}, "message": {"type": "string"},
        "code": {"type": "string"}, "details": {"type": "array", "items": {"type": "object"}}
    }}}})
}

/// The `Idempotency-Key` request header every POST takes (`docs/idempotency.md`).
fn idempotency_key_parameter() -> Value {
    json!({
        "name": "Idempotency-Key",
        "in": "header",
        "required": false,
        "description": "Makes the POST safe to retry: the same key with the same body (and \
            query string) within IDEMPOTENCY_TTL (24 h) gets the first answer again, status \
            and body, with `Idempotency-Replayed: true`, and the work is done once. The same \
            key with another body is 422; while the first request runs, 409 with \
            `Retry-After`. Keys belong to the caller (the token's caller id; on public routes \
            the credentials, client address and body) and the method and path. 5xx, 401, \
            403, 408, 413, 415 and 429 answers are not kept: send the request again with the \
            same key.",
        "schema": {"type": "string", "minLength": 1, "maxLength": 255, "pattern": "^[ -~]+$"},
    })
}

/// Adds the `Idempotency-Key` header and the answers it brings to a POST operation.
fn take_idempotency_key(operation: &mut Value) {
    let Some(operation) = operation.as_object_mut() else {
        return;
    };
    let parameter = json!({"$ref": "#/components/parameters/IdempotencyKey"});
    match operation
        .get_mut("parameters")
        .and_then(Value::as_array_mut)
    {
        Some(parameters) => parameters.push(parameter),
        None => {
            operation.insert("parameters".into(), json!([parameter]));
        }
    }
    let Some(responses) = operation
        .get_mut("responses")
        .and_then(Value::as_object_mut)
    else {
        return;
    };
    for (status, response) in responses.iter_mut() {
        if status.starts_with('2') {
            response["headers"] = json!({"Idempotency-Replayed":
                {"$ref": "#/components/headers/IdempotencyReplayed"}});
        }
    }
    for (status, why) in [
        ("400", "A malformed Idempotency-Key"),
        (
            "409",
            "A request with the same Idempotency-Key is in progress (see Retry-After)",
        ),
        (
            "422",
            "The Idempotency-Key was used for another request body or query string",
        ),
    ] {
        match responses.get_mut(status) {
            Some(response) => {
                let described = match response["description"].as_str() {
                    Some(first) if !first.is_empty() => format!("{first}; or: {why}"),
                    _ => why.to_string(),
                };
                response["description"] = json!(described);
            }
            None => {
                responses.insert(status.into(), error_response(why));
            }
        }
    }
}

/// A response entry with the LoopBack error body.
pub fn error_response(description: &str) -> Value {
    json!({"description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}})
}

/// One route's entry in the document, contributed by its HTTP module.
pub struct DocumentedRoute {
    pub path: String,
    pub method: &'static str,
    pub operation: Value,
}

/// `{"$ref": "#/components/schemas/<name>"}`.
pub fn schema_ref(name: &str) -> Value {
    json!({"$ref": format!("#/components/schemas/{name}")})
}

/// The `{id}` path parameter.
pub fn id_parameter() -> Value {
    json!({"name": "id", "in": "path", "required": true, "schema": {"type": "string", "format": "uuid"}})
}

/// One operation in the original's style: controller tag, operation id, bearer security, the
/// permission table in the description, and the LoopBack error responses. An empty `permission`
/// makes a public operation.
pub fn operation(
    controller: &str,
    name: &str,
    permission: &str,
    parameters: Vec<Value>,
    body: Option<Value>,
    (status, description, schema): (&str, &str, Option<Value>),
) -> Value {
    let mut success = json!({"description": description});
    if let Some(schema) = schema {
        success["content"] = json!({"application/json": {"schema": schema}});
    }
    let mut op = json!({
        "x-controller-name": controller,
        "x-operation-name": name,
        "tags": [controller],
        "operationId": format!("{controller}.{name}"),
        "security": [{"HTTPBearer": []}],
        "description": format!("\n\n| Permissions |\n| ------- |\n| {permission}   |\n"),
        "responses": {
            status: success,
            "400": error_response("Malformed request or filter"),
            "401": error_response("Missing or invalid bearer token"),
            "403": error_response("The token lacks the permission"),
        },
    });
    if permission.is_empty() {
        let map = op.as_object_mut().expect("an operation is an object");
        map.remove("security");
        map.remove("description");
        map["responses"]
            .as_object_mut()
            .expect("responses are an object")
            .remove("403");
    }
    if !parameters.is_empty() {
        op["parameters"] = Value::Array(parameters);
    }
    if let Some(schema) = body {
        op["requestBody"] = json!({"content": {"application/json": {"schema": schema}}});
        op["responses"]["422"] = error_response("The request body is invalid");
    }
    if name != "create" && name != "find" && name != "count" && name != "updateAll" {
        op["responses"]["404"] = error_response("No such entity");
    }
    op
}
