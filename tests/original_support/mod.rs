//! The original service's PostgreSQL schema, built from the documented facts
//! (`original-schema.md`: the database its two published migrations create), filled with rows
//! the way the original writes them, and a catalog dump to show that adopting such a schema
//! alters none of the original's objects.
//!
//! ```ignore
//! mod common;
//! mod original_support;
//! use original_support::*;
//!
//! create_original_schema(&mut conn, schema).await;
//! let seeded = seed_as_the_original(&mut conn, schema).await;
//! let before = schema_dump(&mut conn, schema).await;
//! // … start tms on the schema, exercise it …
//! before.assert_kept_in(&schema_dump(&mut conn, schema).await);
//! ```
//!
//! The rows use fixed ids and values (the constants below) so that tests can assert exact wire
//! answers. Ids have the shape the original's column default gives them
//! (`md5(random()::text || clock_timestamp()::text)::uuid`): 32 hex digits without an RFC 4122
//! version or variant. Audit ids are what the original stores: `created_by`/`modified_by` come
//! from the caller's token (`userTenantId`), `deleted_by` from its `id`.
//!
//! Timestamps: the original writes JavaScript dates (millisecond precision) but some values come
//! from the database itself (`CURRENT_TIMESTAMP` defaults, the `moddatetime` trigger) with
//! microseconds. Every timestamp is a [`Ts`]: the stored value and the ISO form the original
//! answers with, truncated (never rounded) to milliseconds, as node-postgres does.
#![allow(dead_code)]

mod ddl;
mod dump;
mod seed;

// Each test binary uses a different part of this module: `#![allow(dead_code)]` covers the
// items one leaves unused, and these re-exports need `unused_imports` allowed the same way.
#[allow(unused_imports)]
pub use ddl::create_original_schema;
#[allow(unused_imports)]
pub use dump::{SchemaDump, row_counts, schema_dump};
#[allow(unused_imports)]
pub use seed::{Seeded, seed_as_the_original};

use serde_json::{Value, json};

/// The original's tables, sorted.
pub const ORIGINAL_TABLES: [&str; 8] = [
    "addresses",
    "branding_metadata",
    "contacts",
    "invoices",
    "leads",
    "resources",
    "tenant_mgmt_configs",
    "tenants",
];

/// The original's constraints as [`SchemaDump::constraints`] lists them (sorted; references
/// unqualified).
pub const ORIGINAL_CONSTRAINTS: [&str; 17] = [
    "addresses.pk_address_id PRIMARY KEY (id)",
    "branding_metadata.fk_branding_metadata_tenants FOREIGN KEY (tenant_id) REFERENCES tenants(id)",
    "branding_metadata.pk_branding_metadata PRIMARY KEY (id)",
    "contacts.fk_tenant_contacts_leads FOREIGN KEY (tenant_id) REFERENCES tenants(id)",
    "contacts.pk_tenant_contacts PRIMARY KEY (id)",
    "invoices.fk_invoices_tenants FOREIGN KEY (tenant_id) REFERENCES tenants(id)",
    "invoices.pk_invoices PRIMARY KEY (id)",
    "leads.fk_leads_address FOREIGN KEY (address_id) REFERENCES addresses(id)",
    "leads.pk_leads_id PRIMARY KEY (id)",
    "resources.fk_resources_tenants FOREIGN KEY (tenant_id) REFERENCES tenants(id)",
    "resources.idx_resource_ext_id UNIQUE (external_identifier, tenant_id)",
    "resources.pk_resources_id_1 PRIMARY KEY (id)",
    "tenant_mgmt_configs.fk_tenant_configs_tenants FOREIGN KEY (tenant_id) REFERENCES tenants(id)",
    "tenant_mgmt_configs.pk_tenant_configs_id PRIMARY KEY (id)",
    "tenants.fk_tenants_address FOREIGN KEY (address_id) REFERENCES addresses(id)",
    "tenants.idx_tenant_key UNIQUE (key)",
    "tenants.pk_tenants_id PRIMARY KEY (id)",
];

/// The original's trigger as [`SchemaDump::triggers`] lists it.
pub const ORIGINAL_TRIGGER: &str = "tenant_mgmt_configs.mdt_tenant_configs CREATE TRIGGER \
     mdt_tenant_configs BEFORE UPDATE ON tenant_mgmt_configs FOR EACH ROW EXECUTE FUNCTION \
     moddatetime('modified_on')";

/// How many rows [`seed_as_the_original`] writes per table (soft-deleted rows included), in the
/// order of [`ORIGINAL_TABLES`] — what [`row_counts`] answers right after seeding.
pub const SEEDED_ROW_COUNTS: [(&str, i64); 8] = [
    ("addresses", 2),
    ("branding_metadata", 1),
    ("contacts", 4),
    ("invoices", 3),
    ("leads", 3),
    ("resources", 2),
    ("tenant_mgmt_configs", 2),
    ("tenants", 3),
];

// ---------------------------------------------------------------------------------------------
// Who wrote the rows
// ---------------------------------------------------------------------------------------------

/// `userTenantId` of the administrator whose token created and modified rows: the original's
/// `created_by`/`modified_by`.
pub const ADMIN_USER_TENANT_ID: &str = "4feef33d-b943-02d7-41b7-ca0b1ae1d6a2";
/// `id` of that administrator: the original's `deleted_by`.
pub const ADMIN_USER_ID: &str = "129fe060-db73-a0f0-607b-a939580c6464";
/// `created_by` of leads signed up through the public `POST /leads` (and of their addresses),
/// as observed on the original.
pub const SIGNUP_USER_ID: &str = "00000000-0000-0000-0000-000000000001";
/// `spoc_user_id` of the active tenant.
pub const SPOC_USER_ID: &str = "d086c79c-c28f-d3a8-a901-4f3b274afc27";

// ---------------------------------------------------------------------------------------------
// Ids
// ---------------------------------------------------------------------------------------------

pub const ADDRESS_FULL: &str = "78de3d81-bec7-0cc7-60b5-d7a46b62c54d";
pub const ADDRESS_MINIMAL: &str = "fb9bf87a-bcf4-f8cd-4e22-eeffbeace7e7";
pub const LEAD_VALIDATED: &str = "45b11a1e-34ff-c1ef-9011-1e8934543653";
pub const LEAD_UNVALIDATED: &str = "09031fe9-fbd4-149b-14e6-a4b9f5bbdf7c";
pub const LEAD_DELETED: &str = "09fbec0b-c1ce-84dd-6102-2bd674dcdfac";
pub const TENANT_ACTIVE: &str = "27525d57-de6b-cb14-f042-f8729511ceaf";
pub const TENANT_PENDING: &str = "2d9351e3-cfcd-58b2-09ea-e61c57c0ffba";
pub const TENANT_DELETED: &str = "556fb7bb-ae43-627e-8849-9214afb1a0d6";
pub const CONTACT_PRIMARY: &str = "e32e32b1-b610-2a60-3a4e-8a807e4bb9b7";
pub const CONTACT_BILLING: &str = "8bcfb2d2-ed78-a583-d363-92ffe3266140";
pub const CONTACT_PENDING_PRIMARY: &str = "38ac3c06-73a5-6324-cfbc-f599d1a767ed";
pub const CONTACT_DELETED: &str = "706b851a-016a-3043-5fe8-56d091986bc7";
pub const RESOURCE_BUCKET: &str = "e036c9aa-1c9b-8357-5091-cbe23226eda1";
pub const RESOURCE_DATABASE: &str = "634304b6-d5e8-ebcd-0f1a-1596b2f9413b";
pub const INVOICE_PAID: &str = "a51f63bd-c04f-1480-fdc7-c1e44bec423d";
pub const INVOICE_UNDATED: &str = "d8ff7310-3f98-f192-318c-57b0f69376f4";
pub const INVOICE_DELETED: &str = "0aca2a8e-65e1-19c3-1804-350dcc267bda";
pub const CONFIG_KEYCLOAK: &str = "a2f951f9-d730-c3d9-0ee4-a80e2dba1e04";
pub const CONFIG_AUTH0: &str = "fe17dd4f-9da8-0f40-ee96-f28ac683ebf9";
pub const BRANDING: &str = "9532a043-1fea-f01e-2f83-82b5e5216d39";

// ---------------------------------------------------------------------------------------------
// Notable values
// ---------------------------------------------------------------------------------------------

pub const TENANT_ACTIVE_KEY: &str = "acme";
pub const TENANT_ACTIVE_DOMAINS: [&str; 2] = ["acme.example.com", "acme.example.org"];
pub const TENANT_PENDING_KEY: &str = "globex";
pub const TENANT_DELETED_KEY: &str = "initech";
pub const TENANT_DELETED_DOMAINS: [&str; 1] = ["initech.example.net"];

/// Tenant status codes of the original: 0 ACTIVE, 1 PENDINGPROVISION, 2 PROVISIONING,
/// 3 PROVISIONFAILED, 4 DEPROVISIONING, 5 INACTIVE, 6 SUSPENDED.
pub const STATUS_ACTIVE: i16 = 0;
pub const STATUS_PENDINGPROVISION: i16 = 1;
pub const STATUS_INACTIVE: i16 = 5;

/// Invoice status codes of the original: 0 PENDING, 1 PAID, 2 CANCELLED.
pub const INVOICE_PENDING: i16 = 0;
pub const INVOICE_PAID_STATUS: i16 = 1;
pub const INVOICE_CANCELLED: i16 = 2;

/// `numeric` amounts, as stored (scale kept): two decimals, four decimals, one decimal.
pub const INVOICE_PAID_AMOUNT: &str = "1499.99";
pub const INVOICE_UNDATED_AMOUNT: &str = "12.3456";
pub const INVOICE_DELETED_AMOUNT: &str = "99.5";

pub const RESOURCE_BUCKET_EXTERNAL_ID: &str = "arn:aws:s3:::acme-tenant-assets";
pub const RESOURCE_DATABASE_EXTERNAL_ID: &str = "acme-db-1";

/// The `config_value` of [`CONFIG_KEYCLOAK`]: nested objects, nested arrays (one empty), null.
pub fn keycloak_config_value() -> Value {
    json!({
        "realm": "acme",
        "clients": [
            {"clientId": "acme-web", "redirectUris": ["https://acme.example.com/*"], "public": true}
        ],
        "roles": [["admin", "user"], []],
        "theme": null,
        "smtp": {"host": "smtp.acme.example.com", "port": 587}
    })
}

/// The `metadata` of [`RESOURCE_BUCKET`]: nested objects and arrays, a boolean, a null.
pub fn bucket_metadata() -> Value {
    json!({
        "bucket": "acme-tenant-assets",
        "region": "us-east-1",
        "versioning": true,
        "kmsKeyId": null,
        "tags": {"tier": "premium", "owners": ["ops", "billing"]},
        "lifecycle": [{"days": 30, "storageClass": "GLACIER"}, {"days": 365, "expire": true}]
    })
}

// ---------------------------------------------------------------------------------------------
// Timestamps
// ---------------------------------------------------------------------------------------------

/// An instant as stored (`timestamptz` literal, UTC) and as the original answers it
/// (`toISOString()`: milliseconds, truncated, and `Z`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ts {
    pub db: &'static str,
    pub wire: &'static str,
}

/// Sub-millisecond: `.123956` answers `.123` (truncation; rounding would give `.124`).
pub const TS_ADDRESS_FULL: Ts = Ts {
    db: "2026-01-02 03:04:05.123956+00",
    wire: "2026-01-02T03:04:05.123Z",
};
pub const TS_LEAD_VALIDATED_CREATED: Ts = Ts {
    db: "2026-01-02 03:04:05.200+00",
    wire: "2026-01-02T03:04:05.200Z",
};
pub const TS_LEAD_VALIDATED_MODIFIED: Ts = Ts {
    db: "2026-01-02 03:10:00+00",
    wire: "2026-01-02T03:10:00.000Z",
};
/// A whole second: answers `.000`.
pub const TS_LEAD_UNVALIDATED: Ts = Ts {
    db: "2026-01-08 12:00:00+00",
    wire: "2026-01-08T12:00:00.000Z",
};
pub const TS_LEAD_DELETED_CREATED: Ts = Ts {
    db: "2026-01-04 10:00:00.100+00",
    wire: "2026-01-04T10:00:00.100Z",
};
pub const TS_LEAD_DELETED_DELETED: Ts = Ts {
    db: "2026-01-09 08:00:00.654321+00",
    wire: "2026-01-09T08:00:00.654Z",
};
pub const TS_ADDRESS_MINIMAL: Ts = Ts {
    db: "2026-01-10 09:30:00.500+00",
    wire: "2026-01-10T09:30:00.500Z",
};
pub const TS_TENANT_ACTIVE_CREATED: Ts = Ts {
    db: "2026-01-02 03:15:00.250+00",
    wire: "2026-01-02T03:15:00.250Z",
};
/// When the provisioning webhook made the tenant ACTIVE and stored its resources.
pub const TS_TENANT_ACTIVE_PROVISIONED: Ts = Ts {
    db: "2026-01-02 03:20:41.987654+00",
    wire: "2026-01-02T03:20:41.987Z",
};
pub const TS_TENANT_PENDING: Ts = Ts {
    db: "2026-01-10 09:30:00.512+00",
    wire: "2026-01-10T09:30:00.512Z",
};
pub const TS_TENANT_DELETED_CREATED: Ts = Ts {
    db: "2026-01-04 10:05:00+00",
    wire: "2026-01-04T10:05:00.000Z",
};
pub const TS_TENANT_DELETED_DELETED: Ts = Ts {
    db: "2026-01-20 17:45:12.345678+00",
    wire: "2026-01-20T17:45:12.345Z",
};
/// One microsecond past the second: answers `.000`.
pub const TS_CONTACT_BILLING: Ts = Ts {
    db: "2026-01-03 14:00:00.000001+00",
    wire: "2026-01-03T14:00:00.000Z",
};
/// `.999999` answers `.999` of the same second (rounding would carry into the next one).
pub const TS_CONTACT_DELETED_DELETED: Ts = Ts {
    db: "2026-01-06 07:08:09.999999+00",
    wire: "2026-01-06T07:08:09.999Z",
};
pub const TS_INVOICE_PAID_START: Ts = Ts {
    db: "2026-01-01 00:00:00+00",
    wire: "2026-01-01T00:00:00.000Z",
};
/// The last microsecond of January: answers January 31st, not February 1st.
pub const TS_INVOICE_PAID_END: Ts = Ts {
    db: "2026-01-31 23:59:59.999999+00",
    wire: "2026-01-31T23:59:59.999Z",
};
pub const TS_INVOICE_PAID_DUE: Ts = Ts {
    db: "2026-02-15 00:00:00+00",
    wire: "2026-02-15T00:00:00.000Z",
};
pub const TS_INVOICE_PAID_CREATED: Ts = Ts {
    db: "2026-02-01 00:00:05.432+00",
    wire: "2026-02-01T00:00:05.432Z",
};
pub const TS_INVOICE_PAID_MODIFIED: Ts = Ts {
    db: "2026-02-10 11:22:33.445566+00",
    wire: "2026-02-10T11:22:33.445Z",
};
pub const TS_INVOICE_UNDATED_CREATED: Ts = Ts {
    db: "2026-02-02 08:00:00+00",
    wire: "2026-02-02T08:00:00.000Z",
};
pub const TS_INVOICE_DELETED_START: Ts = Ts {
    db: "2025-12-01 00:00:00+00",
    wire: "2025-12-01T00:00:00.000Z",
};
pub const TS_INVOICE_DELETED_END: Ts = Ts {
    db: "2025-12-31 23:59:59+00",
    wire: "2025-12-31T23:59:59.000Z",
};
pub const TS_INVOICE_DELETED_DUE: Ts = Ts {
    db: "2026-01-15 00:00:00+00",
    wire: "2026-01-15T00:00:00.000Z",
};
pub const TS_INVOICE_DELETED_CREATED: Ts = Ts {
    db: "2026-01-01 00:00:01.001+00",
    wire: "2026-01-01T00:00:01.001Z",
};
pub const TS_INVOICE_DELETED_DELETED: Ts = Ts {
    db: "2026-01-12 13:14:15.161718+00",
    wire: "2026-01-12T13:14:15.161Z",
};
pub const TS_CONFIG_KEYCLOAK_CREATED: Ts = Ts {
    db: "2026-01-02 03:16:00.100+00",
    wire: "2026-01-02T03:16:00.100Z",
};
/// Written by the `mdt_tenant_configs` trigger (transaction time, microseconds).
pub const TS_CONFIG_KEYCLOAK_MODIFIED: Ts = Ts {
    db: "2026-01-05 06:07:08.765432+00",
    wire: "2026-01-05T06:07:08.765Z",
};
/// Both columns from the `CURRENT_TIMESTAMP` defaults.
pub const TS_CONFIG_AUTH0: Ts = Ts {
    db: "2026-01-10 09:31:00.123456+00",
    wire: "2026-01-10T09:31:00.123Z",
};

/// Every [`Ts`] the seed uses, for checking the `wire` forms against the database.
pub const ALL_TIMESTAMPS: [Ts; 27] = [
    TS_ADDRESS_FULL,
    TS_LEAD_VALIDATED_CREATED,
    TS_LEAD_VALIDATED_MODIFIED,
    TS_LEAD_UNVALIDATED,
    TS_LEAD_DELETED_CREATED,
    TS_LEAD_DELETED_DELETED,
    TS_ADDRESS_MINIMAL,
    TS_TENANT_ACTIVE_CREATED,
    TS_TENANT_ACTIVE_PROVISIONED,
    TS_TENANT_PENDING,
    TS_TENANT_DELETED_CREATED,
    TS_TENANT_DELETED_DELETED,
    TS_CONTACT_BILLING,
    TS_CONTACT_DELETED_DELETED,
    TS_INVOICE_PAID_START,
    TS_INVOICE_PAID_END,
    TS_INVOICE_PAID_DUE,
    TS_INVOICE_PAID_CREATED,
    TS_INVOICE_PAID_MODIFIED,
    TS_INVOICE_UNDATED_CREATED,
    TS_INVOICE_DELETED_START,
    TS_INVOICE_DELETED_END,
    TS_INVOICE_DELETED_DUE,
    TS_INVOICE_DELETED_CREATED,
    TS_INVOICE_DELETED_DELETED,
    TS_CONFIG_KEYCLOAK_CREATED,
    TS_CONFIG_KEYCLOAK_MODIFIED,
];

// ---------------------------------------------------------------------------------------------
// Shared helpers
// ---------------------------------------------------------------------------------------------

/// `name` as a PostgreSQL identifier (always quoted).
fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}
