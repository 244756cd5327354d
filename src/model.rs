//! The domain tables described once: wire names, columns, types, constraints and relations.
//! The same descriptors drive storage (row decoding, value binding), the filter engine (field
//! resolution), request validation and the generated OpenAPI document.

/// How a field is stored and shown on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldType {
    /// UUID: `uuid` on PostgreSQL, canonical text on SQLite; a string on the wire.
    Uuid,
    Text,
    Bool,
    /// Small integer enum with its names (`names[i]` is value `i`); a number on the wire.
    Enum(&'static [&'static str]),
    /// UTC instant: `timestamptz` / ISO text with milliseconds; ISO 8601 with `Z` on the wire.
    Timestamp,
    /// Decimal money: `numeric(19,4)` / integer ten-thousandths on SQLite.
    Money,
    /// Any JSON object: `jsonb` / JSON text.
    Json,
    /// A list of strings: `text[]` / JSON array text.
    TextArray,
}

/// One property of a resource.
#[derive(Debug)]
pub struct Field {
    /// camelCase wire name.
    pub name: &'static str,
    /// snake_case column name.
    pub column: &'static str,
    pub ty: FieldType,
    /// Must be present on create and replace.
    pub required: bool,
    /// Set by the service only (id, audit columns): rejected in request bodies.
    pub server_only: bool,
    pub max_len: Option<usize>,
    pub description: &'static str,
    /// Text on the wire that the original's schema keeps in a `uuid` column (who wrote a row,
    /// the tenant's contact user): written as a UUID when it is one, compared as text.
    pub uuid_text: bool,
}

const fn field(name: &'static str, column: &'static str, ty: FieldType) -> Field {
    Field {
        name,
        column,
        ty,
        required: false,
        server_only: false,
        max_len: None,
        description: "",
        uuid_text: false,
    }
}

const fn required(mut f: Field) -> Field {
    f.required = true;
    f
}

const fn max(mut f: Field, len: usize) -> Field {
    f.max_len = Some(len);
    f
}

const fn server(mut f: Field) -> Field {
    f.server_only = true;
    f
}

const fn uuid_text(mut f: Field) -> Field {
    f.uuid_text = true;
    f
}

const fn doc(mut f: Field, description: &'static str) -> Field {
    f.description = description;
    f
}

/// Whether a relation yields one row or many.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cardinality {
    One,
    Many,
}

/// A relation usable in `include`.
#[derive(Debug)]
pub struct Relation {
    pub name: &'static str,
    pub cardinality: Cardinality,
    pub target: fn() -> &'static Resource,
    /// Column on this resource's side whose value is matched…
    pub local_column: &'static str,
    /// …against this column of the target.
    pub target_column: &'static str,
}

/// A table and its wire model.
#[derive(Debug)]
pub struct Resource {
    /// Path segment and collection name (`tenants`, `tenant-configs`).
    pub path: &'static str,
    pub table: &'static str,
    /// Model title in the OpenAPI document (`Tenant`).
    pub title: &'static str,
    pub description: &'static str,
    /// Model fields, audit fields first as the original serialises them.
    pub fields: &'static [Field],
    pub relations: &'static [Relation],
}

impl Resource {
    pub fn field(&self, name: &str) -> Option<&'static Field> {
        self.fields.iter().find(|f| f.name == name)
    }

    pub fn relation(&self, name: &str) -> Option<&'static Relation> {
        self.relations.iter().find(|r| r.name == name)
    }

    pub fn id_field(&'static self) -> &'static Field {
        // Every resource's fields begin with the audit fields and `id` (`audited!`).
        &self.fields[const { ADDRESSES.field_index("id") }]
    }

    /// The position of field `name`, found when the crate compiles (in a `const` block): a name
    /// the model lacks stops the build. The functions of [`fields`] use it.
    pub const fn field_index(&'static self, name: &str) -> usize {
        let mut i = 0;
        while i < self.fields.len() {
            if same(self.fields[i].name, name) {
                return i;
            }
            i += 1;
        }
        panic!("the model has no field of that name")
    }

    /// The position of relation `name`, found when the crate compiles (see
    /// [`Resource::field_index`]).
    pub const fn relation_index(&'static self, name: &str) -> usize {
        let mut i = 0;
        while i < self.relations.len() {
            if same(self.relations[i].name, name) {
                return i;
            }
            i += 1;
        }
        panic!("the model has no relation of that name")
    }
}

const fn same(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}

macro_rules! audited {
    ($($f:expr),* $(,)?) => {
        &[
            server(field("deleted", "deleted", FieldType::Bool)),
            server(field("deletedOn", "deleted_on", FieldType::Timestamp)),
            server(uuid_text(field("deletedBy", "deleted_by", FieldType::Text))),
            server(field("createdOn", "created_on", FieldType::Timestamp)),
            server(field("modifiedOn", "modified_on", FieldType::Timestamp)),
            server(uuid_text(field("createdBy", "created_by", FieldType::Text))),
            server(uuid_text(field("modifiedBy", "modified_by", FieldType::Text))),
            server(field("id", "id", FieldType::Uuid)),
            $($f),*
        ]
    };
}

pub const TENANT_STATUS: &[&str] = &[
    "ACTIVE",
    "PENDINGPROVISION",
    "PROVISIONING",
    "PROVISIONFAILED",
    "DEPROVISIONING",
    "INACTIVE",
    "SUSPENDED",
];
pub const INVOICE_STATUS: &[&str] = &["PENDING", "PAID", "CANCELLED"];

pub static ADDRESSES: Resource = Resource {
    path: "addresses",
    table: "addresses",
    title: "Address",
    description: "this model represents the address of a company or lead",
    fields: audited![
        max(field("address", "address", FieldType::Text), 500),
        max(field("city", "city", FieldType::Text), 100),
        max(field("state", "state", FieldType::Text), 100),
        max(field("zip", "zip", FieldType::Text), 20),
        required(max(field("country", "country", FieldType::Text), 100)),
    ],
    relations: &[],
};

pub static LEADS: Resource = Resource {
    path: "leads",
    table: "leads",
    title: "Lead",
    description: "this model represents a lead that could eventually be a tenant in the system",
    fields: audited![
        required(max(field("firstName", "first_name", FieldType::Text), 100)),
        required(max(field("lastName", "last_name", FieldType::Text), 100)),
        required(max(
            field("companyName", "company_name", FieldType::Text),
            100
        )),
        required(max(field("email", "email", FieldType::Text), 100)),
        required(field("isValidated", "is_validated", FieldType::Bool)),
        field("addressId", "address_id", FieldType::Uuid),
    ],
    relations: &[
        Relation {
            name: "tenant",
            cardinality: Cardinality::One,
            target: || &TENANTS,
            local_column: "id",
            target_column: "lead_id",
        },
        Relation {
            name: "address",
            cardinality: Cardinality::One,
            target: || &ADDRESSES,
            local_column: "address_id",
            target_column: "id",
        },
    ],
};

pub static TENANTS: Resource = Resource {
    path: "tenants",
    table: "tenants",
    title: "Tenant",
    description: "main model of the service that represents a tenant in the system, either pooled or siloed",
    fields: audited![
        required(max(
            doc(field("name", "name", FieldType::Text), "name of the tenant"),
            100
        )),
        required(doc(
            field("status", "status", FieldType::Enum(TENANT_STATUS)),
            "status of a tenant: 0 ACTIVE, 1 PENDINGPROVISION, 2 PROVISIONING, 3 PROVISIONFAILED, 4 DEPROVISIONING, 5 INACTIVE, 6 SUSPENDED",
        )),
        required(max(
            doc(
                field("key", "key", FieldType::Text),
                "a short string used to identify a tenant, also its namespace and subdomain",
            ),
            10
        )),
        max(
            doc(
                uuid_text(field("spocUserId", "spoc_user_id", FieldType::Text)),
                "user id of the admin user who acts as a spoc for this tenant"
            ),
            100
        ),
        required(doc(
            field("domains", "domains", FieldType::TextArray),
            "domains that are allowed for this tenant"
        )),
        doc(
            field("leadId", "lead_id", FieldType::Uuid),
            "id of the lead this tenant was onboarded from"
        ),
        doc(
            field("addressId", "address_id", FieldType::Uuid),
            "id of the address of the tenant"
        ),
    ],
    relations: &[
        Relation {
            name: "contacts",
            cardinality: Cardinality::Many,
            target: || &CONTACTS,
            local_column: "id",
            target_column: "tenant_id",
        },
        Relation {
            name: "resources",
            cardinality: Cardinality::Many,
            target: || &RESOURCES,
            local_column: "id",
            target_column: "tenant_id",
        },
        Relation {
            name: "lead",
            cardinality: Cardinality::One,
            target: || &LEADS,
            local_column: "lead_id",
            target_column: "id",
        },
        Relation {
            name: "address",
            cardinality: Cardinality::One,
            target: || &ADDRESSES,
            local_column: "address_id",
            target_column: "id",
        },
    ],
};

const BELONGS_TO_TENANT: &[Relation] = &[Relation {
    name: "tenant",
    cardinality: Cardinality::One,
    target: || &TENANTS,
    local_column: "tenant_id",
    target_column: "id",
}];

pub static CONTACTS: Resource = Resource {
    path: "contacts",
    table: "contacts",
    title: "Contact",
    description: "contacts belonging to a tenant",
    fields: audited![
        required(max(field("firstName", "first_name", FieldType::Text), 100)),
        required(max(field("lastName", "last_name", FieldType::Text), 100)),
        required(max(field("email", "email", FieldType::Text), 100)),
        required(field("isPrimary", "is_primary", FieldType::Bool)),
        max(field("type", "contact_type", FieldType::Text), 100),
        required(field("tenantId", "tenant_id", FieldType::Uuid)),
    ],
    relations: BELONGS_TO_TENANT,
};

pub static RESOURCES: Resource = Resource {
    path: "resources",
    table: "resources",
    title: "Resource",
    description: "model for resources that are provisioned for a tenant",
    fields: audited![
        required(max(
            field("externalIdentifier", "external_identifier", FieldType::Text),
            255
        )),
        required(max(field("type", "type", FieldType::Text), 100)),
        required(field("metadata", "metadata", FieldType::Json)),
        field("tenantId", "tenant_id", FieldType::Uuid),
    ],
    relations: BELONGS_TO_TENANT,
};

pub static INVOICES: Resource = Resource {
    path: "invoices",
    table: "invoices",
    title: "Invoice",
    description: "an invoice with the amount and period generated for a tenant",
    fields: audited![
        required(field("startDate", "start_date", FieldType::Timestamp)),
        required(field("endDate", "end_date", FieldType::Timestamp)),
        required(field("amount", "amount", FieldType::Money)),
        required(max(
            field("currencyCode", "currency_code", FieldType::Text),
            3
        )),
        max(field("invoiceFile", "invoice_file", FieldType::Text), 500),
        required(field("dueDate", "due_date", FieldType::Timestamp)),
        required(field("status", "status", FieldType::Enum(INVOICE_STATUS))),
        required(field("tenantId", "tenant_id", FieldType::Uuid)),
        server(doc(
            field("seller", "seller", FieldType::Text),
            "who issued the invoice (BILLING_SELLER_NAME then); numbers count per seller"
        )),
        server(doc(
            field("invoiceNumber", "invoice_number", FieldType::Text),
            "sequential number per seller, given by tms when the invoice is written"
        )),
        server(doc(
            field("overdueAt", "overdue_at", FieldType::Timestamp),
            "when tms found the invoice past its due date and still pending, and announced it"
        )),
    ],
    relations: BELONGS_TO_TENANT,
};

pub static TENANT_CONFIGS: Resource = Resource {
    path: "tenant-configs",
    table: "tenant_mgmt_configs",
    title: "TenantMgmtConfig",
    description: "tenant specific settings, for example of its identity provider",
    fields: audited![
        required(max(field("configKey", "config_key", FieldType::Text), 100)),
        required(field("configValue", "config_value", FieldType::Json)),
        required(field("tenantId", "tenant_id", FieldType::Uuid)),
    ],
    relations: BELONGS_TO_TENANT,
};

/// The audit trail (`GET /audit-logs`, `docs/audit.md`): read-only, its rows written by the
/// store with every change. Not one of [`ALL`]: no audit columns, no soft delete, no write routes.
pub static AUDIT_LOGS: Resource = Resource {
    path: "audit-logs",
    table: "audit_logs",
    title: "AuditLog",
    description: "one change of one row: who made it, what it changed, when",
    fields: &[
        server(field("id", "id", FieldType::Uuid)),
        doc(
            field("occurredOn", "occurred_on", FieldType::Timestamp),
            "when the change was made (its transaction)",
        ),
        doc(
            field("actorKind", "actor_kind", FieldType::Text),
            "user, lead, pipeline or system",
        ),
        doc(
            field("actorId", "actor_id", FieldType::Text),
            "the token's id, the lead's id, or SYSTEM_USER_ID",
        ),
        doc(
            field("actorTenantId", "actor_tenant_id", FieldType::Text),
            "a user token's userTenantId (else its id)",
        ),
        doc(
            field("entity", "entity", FieldType::Text),
            "the model name of the row (Tenant, Contact, Invoice, …)",
        ),
        doc(
            field("entityId", "entity_id", FieldType::Text),
            "the row's id",
        ),
        doc(
            field("action", "action", FieldType::Text),
            "create, update, delete, or the move made (suspend, provisioned, pay, …)",
        ),
        doc(
            field("tenantId", "tenant_id", FieldType::Uuid),
            "the tenant the row concerns, if any",
        ),
        doc(
            field("before", "before", FieldType::Json),
            "the changed fields before (the whole row for a delete), secrets masked",
        ),
        doc(
            field("after", "after", FieldType::Json),
            "the changed fields after (the whole row for a create), secrets masked",
        ),
    ],
    relations: &[],
};

/// Every table, in creation order.
pub static ALL: [&Resource; 7] = [
    &ADDRESSES,
    &LEADS,
    &TENANTS,
    &CONTACTS,
    &RESOURCES,
    &INVOICES,
    &TENANT_CONFIGS,
];

/// The fields and relations the rules name, resolved when the crate compiles: the rules read a
/// row's field through these, never by a string that could only fail at run time. Each is the
/// model's own (the same reference a lookup by name gives), so filters built from them compare
/// equal to parsed ones.
pub mod fields {
    use super::*;

    macro_rules! named {
        ($($(#[$doc:meta])* $fn:ident: $kind:ident $resource:ident . $name:literal;)*) => {$(
            $(#[$doc])*
            pub fn $fn() -> &'static named!(@type $kind) {
                named!(@get $kind $resource $name)
            }
        )*};
        (@type field) => { Field };
        (@type relation) => { Relation };
        (@get field $resource:ident $name:literal) => {
            &$resource.fields[const { $resource.field_index($name) }]
        };
        (@get relation $resource:ident $name:literal) => {
            &$resource.relations[const { $resource.relation_index($name) }]
        };
    }

    named! {
        tenant_status: field TENANTS."status";
        tenant_key: field TENANTS."key";
        tenant_lead_id: field TENANTS."leadId";
        tenant_domains: field TENANTS."domains";
        tenant_spoc_user_id: field TENANTS."spocUserId";
        contact_tenant_id: field CONTACTS."tenantId";
        contact_email: field CONTACTS."email";
        contact_is_primary: field CONTACTS."isPrimary";
        contact_created_on: field CONTACTS."createdOn";
        resource_tenant_id: field RESOURCES."tenantId";
        resource_external_id: field RESOURCES."externalIdentifier";
        config_tenant_id: field TENANT_CONFIGS."tenantId";
        config_key: field TENANT_CONFIGS."configKey";
        config_value: field TENANT_CONFIGS."configValue";
        config_modified_on: field TENANT_CONFIGS."modifiedOn";
        tenant_contacts: relation TENANTS."contacts";
        tenant_address: relation TENANTS."address";
        tenant_lead: relation TENANTS."lead";
        tenant_resources: relation TENANTS."resources";
        lead_address: relation LEADS."address";
        config_tenant: relation TENANT_CONFIGS."tenant";
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn named_fields_are_the_models_own() {
        assert!(std::ptr::eq(
            fields::tenant_status(),
            TENANTS.field("status").unwrap()
        ));
        assert!(std::ptr::eq(
            fields::config_tenant(),
            TENANT_CONFIGS.relation("tenant").unwrap()
        ));
        assert_eq!(INVOICES.id_field().column, "id");
    }

    #[test]
    fn relations_point_at_real_columns() {
        for resource in ALL {
            for rel in resource.relations {
                let target = (rel.target)();
                assert!(
                    resource.fields.iter().any(|f| f.column == rel.local_column),
                    "{}.{}",
                    resource.table,
                    rel.local_column
                );
                assert!(
                    target.fields.iter().any(|f| f.column == rel.target_column),
                    "{}.{}",
                    target.table,
                    rel.target_column
                );
            }
        }
    }

    #[test]
    fn field_names_are_unique() {
        for resource in ALL {
            let mut names: Vec<_> = resource.fields.iter().map(|f| f.name).collect();
            names.sort();
            names.dedup();
            assert_eq!(names.len(), resource.fields.len(), "{}", resource.table);
        }
    }
}
