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

use serde_json::{Value, json};
use sqlx::postgres::{PgArguments, Postgres};
use sqlx::query::Query;
use sqlx::{AssertSqlSafe, Connection, PgConnection, Row};
use uuid::Uuid;

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
// The schema
// ---------------------------------------------------------------------------------------------

/// `name` as a PostgreSQL identifier (always quoted).
fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// The DDL of the original's schema inside `schema` (which must exist).
///
/// `moddatetime`: the original's trigger calls the `moddatetime` function of PostgreSQL's
/// contrib extension of that name, installed in its schema. Here it is a plpgsql function of
/// the same name, signature and calling convention (the column to stamp is the trigger's
/// argument; it gets the transaction time, as the C function does), defined in `schema` itself,
/// and not the extension, because:
/// - `CREATE EXTENSION moddatetime` needs a superuser (the extension is not marked trusted), so
///   it fails for an ordinary database owner;
/// - an extension exists once per database, in one schema: tests running in parallel, each in
///   its own `t_<uuid>` schema, would race to create it (one fails on the unique catalog index),
///   and the others' triggers would depend on the function in the first test's schema — whose
///   `DROP SCHEMA … CASCADE` at teardown drops the extension and, with it, every other test's
///   `mdt_tenant_configs` trigger;
/// - a function per schema leaves `Functions in the schema: moddatetime` true, as in the
///   original, and `DROP SCHEMA … CASCADE` removes exactly what the test created.
fn original_ddl(schema: &str) -> String {
    let s = quote_ident(schema);
    format!(
        r#"
CREATE FUNCTION {s}.moddatetime() RETURNS trigger LANGUAGE plpgsql AS $moddatetime$
DECLARE
    stamp_type regtype;
BEGIN
    IF TG_WHEN <> 'BEFORE' OR TG_LEVEL <> 'ROW' OR TG_OP <> 'UPDATE' THEN
        RAISE EXCEPTION 'moddatetime: must be fired BEFORE UPDATE FOR EACH ROW (trigger %)', TG_NAME;
    END IF;
    IF TG_NARGS <> 1 THEN
        RAISE EXCEPTION 'moddatetime: a single argument, the column to stamp, is expected (trigger %)', TG_NAME;
    END IF;
    SELECT a.atttypid::regtype INTO stamp_type
      FROM pg_catalog.pg_attribute a
     WHERE a.attrelid = TG_RELID AND a.attname = TG_ARGV[0] AND a.attnum > 0 AND NOT a.attisdropped;
    IF stamp_type IS NULL THEN
        RAISE EXCEPTION 'moddatetime: column "%" not found in "%"', TG_ARGV[0], TG_TABLE_NAME;
    ELSIF stamp_type = 'timestamp with time zone'::regtype THEN
        NEW := pg_catalog.jsonb_populate_record(NEW, pg_catalog.jsonb_build_object(TG_ARGV[0], pg_catalog.now()));
    ELSIF stamp_type = 'timestamp without time zone'::regtype THEN
        NEW := pg_catalog.jsonb_populate_record(NEW, pg_catalog.jsonb_build_object(TG_ARGV[0], LOCALTIMESTAMP));
    ELSE
        RAISE EXCEPTION 'moddatetime: column "%" of "%" is not a timestamp', TG_ARGV[0], TG_TABLE_NAME;
    END IF;
    RETURN NEW;
END
$moddatetime$;

CREATE TABLE {s}.addresses (
    id uuid NOT NULL DEFAULT md5(random()::text || clock_timestamp()::text)::uuid,
    address varchar(500),
    city varchar(100),
    state varchar(100),
    zip varchar(25),
    country varchar(25),
    created_on timestamptz NOT NULL DEFAULT CURRENT_TIMESTAMP,
    modified_on timestamptz NOT NULL DEFAULT CURRENT_TIMESTAMP,
    deleted boolean NOT NULL DEFAULT false,
    deleted_on timestamptz,
    deleted_by uuid,
    created_by uuid,
    modified_by uuid,
    CONSTRAINT pk_address_id PRIMARY KEY (id)
);

CREATE TABLE {s}.leads (
    id uuid NOT NULL DEFAULT md5(random()::text || clock_timestamp()::text)::uuid,
    first_name varchar(100) NOT NULL,
    last_name varchar(100) NOT NULL,
    created_on timestamptz NOT NULL DEFAULT CURRENT_TIMESTAMP,
    modified_on timestamptz NOT NULL DEFAULT CURRENT_TIMESTAMP,
    deleted boolean NOT NULL DEFAULT false,
    deleted_on timestamptz,
    deleted_by uuid,
    email varchar(100) NOT NULL,
    created_by uuid,
    modified_by uuid,
    is_validated boolean NOT NULL DEFAULT false,
    company_name varchar(100),
    address_id uuid,
    CONSTRAINT pk_leads_id PRIMARY KEY (id),
    CONSTRAINT fk_leads_address FOREIGN KEY (address_id) REFERENCES {s}.addresses (id)
);

CREATE TABLE {s}.tenants (
    id uuid NOT NULL DEFAULT md5(random()::text || clock_timestamp()::text)::uuid,
    name varchar(100) NOT NULL,
    status smallint NOT NULL DEFAULT 0,
    created_on timestamptz NOT NULL DEFAULT CURRENT_TIMESTAMP,
    modified_on timestamptz NOT NULL DEFAULT CURRENT_TIMESTAMP,
    created_by uuid,
    modified_by uuid,
    deleted boolean NOT NULL DEFAULT false,
    key varchar(20) NOT NULL,
    deleted_on timestamptz,
    deleted_by uuid,
    spoc_user_id uuid,
    lead_id uuid,
    domains varchar[] NOT NULL DEFAULT '{{}}'::varchar[],
    address_id uuid,
    CONSTRAINT pk_tenants_id PRIMARY KEY (id),
    CONSTRAINT idx_tenant_key UNIQUE (key),
    CONSTRAINT fk_tenants_address FOREIGN KEY (address_id) REFERENCES {s}.addresses (id)
);

CREATE TABLE {s}.contacts (
    id uuid NOT NULL DEFAULT md5(random()::text || clock_timestamp()::text)::uuid,
    first_name varchar(100) NOT NULL,
    last_name varchar(100) NOT NULL,
    email varchar(100) NOT NULL,
    contact_type varchar(100),
    is_primary boolean NOT NULL DEFAULT false,
    created_on timestamptz NOT NULL DEFAULT CURRENT_TIMESTAMP,
    modified_on timestamptz,
    created_by uuid,
    modified_by uuid,
    deleted boolean NOT NULL DEFAULT false,
    deleted_by uuid,
    deleted_on timestamptz,
    tenant_id uuid NOT NULL,
    CONSTRAINT pk_tenant_contacts PRIMARY KEY (id),
    CONSTRAINT fk_tenant_contacts_leads FOREIGN KEY (tenant_id) REFERENCES {s}.tenants (id)
);

CREATE TABLE {s}.resources (
    id uuid NOT NULL DEFAULT md5(random()::text || clock_timestamp()::text)::uuid,
    type varchar(100) NOT NULL,
    metadata jsonb NOT NULL,
    external_identifier varchar(200) NOT NULL,
    tenant_id uuid NOT NULL,
    created_on timestamptz NOT NULL DEFAULT CURRENT_TIMESTAMP,
    modified_on timestamptz NOT NULL DEFAULT CURRENT_TIMESTAMP,
    created_by uuid,
    modified_by uuid,
    deleted boolean NOT NULL DEFAULT false,
    deleted_on timestamptz,
    deleted_by uuid,
    CONSTRAINT pk_resources_id_1 PRIMARY KEY (id),
    CONSTRAINT idx_resource_ext_id UNIQUE (external_identifier, tenant_id),
    CONSTRAINT fk_resources_tenants FOREIGN KEY (tenant_id) REFERENCES {s}.tenants (id)
);

CREATE TABLE {s}.invoices (
    id uuid NOT NULL DEFAULT md5(random()::text || clock_timestamp()::text)::uuid,
    start_date timestamptz,
    end_date timestamptz,
    amount numeric NOT NULL,
    currency_code char(3),
    invoice_file varchar(100),
    due_date timestamptz,
    status smallint NOT NULL DEFAULT 0,
    tenant_id uuid NOT NULL,
    created_on timestamptz DEFAULT CURRENT_TIMESTAMP,
    modified_on timestamptz,
    created_by uuid,
    modified_by uuid,
    deleted boolean NOT NULL DEFAULT false,
    deleted_by uuid,
    deleted_on timestamptz,
    CONSTRAINT pk_invoices PRIMARY KEY (id),
    CONSTRAINT fk_invoices_tenants FOREIGN KEY (tenant_id) REFERENCES {s}.tenants (id)
);

CREATE TABLE {s}.tenant_mgmt_configs (
    id uuid NOT NULL DEFAULT md5(random()::text || clock_timestamp()::text)::uuid,
    config_key varchar(100) NOT NULL,
    config_value jsonb NOT NULL,
    created_on timestamptz NOT NULL DEFAULT CURRENT_TIMESTAMP,
    modified_on timestamptz NOT NULL DEFAULT CURRENT_TIMESTAMP,
    created_by uuid,
    modified_by uuid,
    deleted boolean NOT NULL DEFAULT false,
    deleted_by uuid,
    deleted_on timestamptz,
    tenant_id uuid NOT NULL,
    CONSTRAINT pk_tenant_configs_id PRIMARY KEY (id),
    CONSTRAINT fk_tenant_configs_tenants FOREIGN KEY (tenant_id) REFERENCES {s}.tenants (id)
);

CREATE TRIGGER mdt_tenant_configs
    BEFORE UPDATE ON {s}.tenant_mgmt_configs
    FOR EACH ROW EXECUTE FUNCTION {s}.moddatetime(modified_on);

CREATE TABLE {s}.branding_metadata (
    id uuid NOT NULL DEFAULT md5(random()::text || clock_timestamp()::text)::uuid,
    theme_metadata jsonb,
    description varchar(500),
    logo varchar(500),
    website varchar(500),
    tenant_id uuid NOT NULL,
    CONSTRAINT pk_branding_metadata PRIMARY KEY (id),
    CONSTRAINT fk_branding_metadata_tenants FOREIGN KEY (tenant_id) REFERENCES {s}.tenants (id)
);
"#
    )
}

/// Creates `schema` if needed and the original's tables, constraints, `moddatetime` function
/// and trigger inside it, in one transaction. Panics on failure (e.g. when the tables exist).
pub async fn create_original_schema(conn: &mut PgConnection, schema: &str) {
    let mut tx = conn.begin().await.expect("cannot begin a transaction");
    sqlx::raw_sql(AssertSqlSafe(format!(
        "CREATE SCHEMA IF NOT EXISTS {}",
        quote_ident(schema)
    )))
    .execute(&mut *tx)
    .await
    .unwrap_or_else(|err| panic!("cannot create schema {schema}: {err}"));
    sqlx::raw_sql(AssertSqlSafe(original_ddl(schema)))
        .execute(&mut *tx)
        .await
        .unwrap_or_else(|err| panic!("the original's DDL failed in {schema}: {err}"));
    tx.commit().await.expect("cannot commit the original's DDL");
}

// ---------------------------------------------------------------------------------------------
// The rows
// ---------------------------------------------------------------------------------------------

/// The ids of the rows [`seed_as_the_original`] wrote (the constants above, as `Uuid`s).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seeded {
    /// Every optional column filled; the address of the validated lead and the active tenant.
    pub address_full: Uuid,
    /// Only `country` (the one property the original requires); the pending tenant's address.
    pub address_minimal: Uuid,
    /// Validated lead with an address, from which the active tenant was onboarded.
    pub lead_validated: Uuid,
    /// Signed up, never validated, no address.
    pub lead_unvalidated: Uuid,
    /// Validated, onboarded (the deleted tenant), then soft-deleted.
    pub lead_deleted: Uuid,
    /// ACTIVE, two domains, lead and address, a SPOC user; owns the contacts, resources,
    /// invoices, the Keycloak config and the branding.
    pub tenant_active: Uuid,
    /// PENDINGPROVISION, `domains = '{}'`, no lead; created by the administrator.
    pub tenant_pending: Uuid,
    /// INACTIVE and soft-deleted; from the deleted lead, no address.
    pub tenant_deleted: Uuid,
    /// The active tenant's primary contact (`contact_type` `admin`).
    pub contact_primary: Uuid,
    /// The active tenant's second contact: not primary, `contact_type` and `modified_on` NULL.
    pub contact_billing: Uuid,
    /// The pending tenant's primary contact.
    pub contact_pending_primary: Uuid,
    /// A soft-deleted contact of the active tenant.
    pub contact_deleted: Uuid,
    /// An S3 bucket of the active tenant, nested `metadata`.
    pub resource_bucket: Uuid,
    /// A database of the active tenant.
    pub resource_database: Uuid,
    /// PAID, amount `1499.99` USD, every date set.
    pub invoice_paid: Uuid,
    /// PENDING, amount `12.3456` EUR, start/end/due dates, file and `modified_on` NULL.
    pub invoice_undated: Uuid,
    /// CANCELLED and soft-deleted, amount `99.5` INR.
    pub invoice_deleted: Uuid,
    /// The active tenant's `keycloak` config; `modified_on` written by the trigger.
    pub config_keycloak: Uuid,
    /// The pending tenant's `auth0` config.
    pub config_auth0: Uuid,
    /// The active tenant's branding.
    pub branding: Uuid,
}

impl Seeded {
    fn from_constants() -> Self {
        let id = |s: &str| Uuid::parse_str(s).expect("a fixture id is a uuid");
        Seeded {
            address_full: id(ADDRESS_FULL),
            address_minimal: id(ADDRESS_MINIMAL),
            lead_validated: id(LEAD_VALIDATED),
            lead_unvalidated: id(LEAD_UNVALIDATED),
            lead_deleted: id(LEAD_DELETED),
            tenant_active: id(TENANT_ACTIVE),
            tenant_pending: id(TENANT_PENDING),
            tenant_deleted: id(TENANT_DELETED),
            contact_primary: id(CONTACT_PRIMARY),
            contact_billing: id(CONTACT_BILLING),
            contact_pending_primary: id(CONTACT_PENDING_PRIMARY),
            contact_deleted: id(CONTACT_DELETED),
            resource_bucket: id(RESOURCE_BUCKET),
            resource_database: id(RESOURCE_DATABASE),
            invoice_paid: id(INVOICE_PAID),
            invoice_undated: id(INVOICE_UNDATED),
            invoice_deleted: id(INVOICE_DELETED),
            config_keycloak: id(CONFIG_KEYCLOAK),
            config_auth0: id(CONFIG_AUTH0),
            branding: id(BRANDING),
        }
    }
}

/// The audit columns every original table but `branding_metadata` has.
struct Audit {
    created_on: Ts,
    /// `None`: NULL (only `contacts` and `invoices` allow it).
    modified_on: Option<Ts>,
    created_by: Option<&'static str>,
    modified_by: Option<&'static str>,
    /// `Some`: a soft delete (`deleted = true`, `deleted_on`, `deleted_by`).
    deleted: Option<(Ts, &'static str)>,
}

impl Audit {
    /// Created and last modified by `by` at `on`; not deleted.
    fn by(by: &'static str, on: Ts) -> Self {
        Audit {
            created_on: on,
            modified_on: Some(on),
            created_by: Some(by),
            modified_by: Some(by),
            deleted: None,
        }
    }

    /// Soft-deleted at `on` by the administrator (modified then, too).
    fn deleted_at(mut self, on: Ts) -> Self {
        self.modified_on = Some(on);
        self.modified_by = Some(ADMIN_USER_TENANT_ID);
        self.deleted = Some((on, ADMIN_USER_ID));
        self
    }
}

/// The audit columns, in the order their placeholders follow a table's own columns.
const AUDIT_COLUMNS: &str =
    "created_on, modified_on, created_by, modified_by, deleted, deleted_on, deleted_by";

/// `INSERT INTO table (columns…, audit columns) VALUES (casts…, audit placeholders)`.
fn insert_sql(table: &str, columns: &str, casts: &[&str]) -> String {
    let mut values: Vec<String> = casts
        .iter()
        .enumerate()
        .map(|(i, cast)| format!("${}::{cast}", i + 1))
        .collect();
    let n = casts.len();
    values.extend([
        format!("${}::timestamptz", n + 1),
        format!("${}::timestamptz", n + 2),
        format!("${}::uuid", n + 3),
        format!("${}::uuid", n + 4),
        format!("${}::boolean", n + 5),
        format!("${}::timestamptz", n + 6),
        format!("${}::uuid", n + 7),
    ]);
    format!(
        "INSERT INTO {table} ({columns}, {AUDIT_COLUMNS}) VALUES ({})",
        values.join(", ")
    )
}

fn bind_audit<'q>(
    query: Query<'q, Postgres, PgArguments>,
    audit: &Audit,
) -> Query<'q, Postgres, PgArguments> {
    query
        .bind(audit.created_on.db)
        .bind(audit.modified_on.map(|t| t.db))
        .bind(audit.created_by)
        .bind(audit.modified_by)
        .bind(audit.deleted.is_some())
        .bind(audit.deleted.map(|(on, _)| on.db))
        .bind(audit.deleted.map(|(_, by)| by))
}

async fn run(conn: &mut PgConnection, what: &str, query: Query<'_, Postgres, PgArguments>) {
    query
        .execute(conn)
        .await
        .unwrap_or_else(|err| panic!("cannot seed {what}: {err}"));
}

struct AddressRow {
    id: &'static str,
    address: Option<&'static str>,
    city: Option<&'static str>,
    state: Option<&'static str>,
    zip: Option<&'static str>,
    country: Option<&'static str>,
    audit: Audit,
}

async fn insert_address(conn: &mut PgConnection, row: AddressRow) {
    let sql = insert_sql(
        "addresses",
        "id, address, city, state, zip, country",
        &[
            "uuid", "varchar", "varchar", "varchar", "varchar", "varchar",
        ],
    );
    let query = sqlx::query(AssertSqlSafe(sql))
        .bind(row.id)
        .bind(row.address)
        .bind(row.city)
        .bind(row.state)
        .bind(row.zip)
        .bind(row.country);
    run(conn, row.id, bind_audit(query, &row.audit)).await;
}

struct LeadRow {
    id: &'static str,
    first_name: &'static str,
    last_name: &'static str,
    email: &'static str,
    is_validated: bool,
    company_name: Option<&'static str>,
    address_id: Option<&'static str>,
    audit: Audit,
}

async fn insert_lead(conn: &mut PgConnection, row: LeadRow) {
    let sql = insert_sql(
        "leads",
        "id, first_name, last_name, email, is_validated, company_name, address_id",
        &[
            "uuid", "varchar", "varchar", "varchar", "boolean", "varchar", "uuid",
        ],
    );
    let query = sqlx::query(AssertSqlSafe(sql))
        .bind(row.id)
        .bind(row.first_name)
        .bind(row.last_name)
        .bind(row.email)
        .bind(row.is_validated)
        .bind(row.company_name)
        .bind(row.address_id);
    run(conn, row.id, bind_audit(query, &row.audit)).await;
}

struct TenantRow {
    id: &'static str,
    name: &'static str,
    status: i16,
    key: &'static str,
    spoc_user_id: Option<&'static str>,
    lead_id: Option<&'static str>,
    domains: &'static [&'static str],
    address_id: Option<&'static str>,
    audit: Audit,
}

async fn insert_tenant(conn: &mut PgConnection, row: TenantRow) {
    let sql = insert_sql(
        "tenants",
        "id, name, status, key, spoc_user_id, lead_id, domains, address_id",
        &[
            "uuid",
            "varchar",
            "smallint",
            "varchar",
            "uuid",
            "uuid",
            "varchar[]",
            "uuid",
        ],
    );
    let query = sqlx::query(AssertSqlSafe(sql))
        .bind(row.id)
        .bind(row.name)
        .bind(row.status)
        .bind(row.key)
        .bind(row.spoc_user_id)
        .bind(row.lead_id)
        .bind(row.domains.to_vec())
        .bind(row.address_id);
    run(conn, row.id, bind_audit(query, &row.audit)).await;
}

struct ContactRow {
    id: &'static str,
    first_name: &'static str,
    last_name: &'static str,
    email: &'static str,
    contact_type: Option<&'static str>,
    is_primary: bool,
    tenant_id: &'static str,
    audit: Audit,
}

async fn insert_contact(conn: &mut PgConnection, row: ContactRow) {
    let sql = insert_sql(
        "contacts",
        "id, first_name, last_name, email, contact_type, is_primary, tenant_id",
        &[
            "uuid", "varchar", "varchar", "varchar", "varchar", "boolean", "uuid",
        ],
    );
    let query = sqlx::query(AssertSqlSafe(sql))
        .bind(row.id)
        .bind(row.first_name)
        .bind(row.last_name)
        .bind(row.email)
        .bind(row.contact_type)
        .bind(row.is_primary)
        .bind(row.tenant_id);
    run(conn, row.id, bind_audit(query, &row.audit)).await;
}

struct ResourceRow {
    id: &'static str,
    kind: &'static str,
    metadata: Value,
    external_identifier: &'static str,
    tenant_id: &'static str,
    audit: Audit,
}

async fn insert_resource(conn: &mut PgConnection, row: ResourceRow) {
    let sql = insert_sql(
        "resources",
        "id, type, metadata, external_identifier, tenant_id",
        &["uuid", "varchar", "jsonb", "varchar", "uuid"],
    );
    let query = sqlx::query(AssertSqlSafe(sql))
        .bind(row.id)
        .bind(row.kind)
        .bind(row.metadata)
        .bind(row.external_identifier)
        .bind(row.tenant_id);
    run(conn, row.id, bind_audit(query, &row.audit)).await;
}

struct InvoiceRow {
    id: &'static str,
    start_date: Option<Ts>,
    end_date: Option<Ts>,
    /// Text, cast to `numeric`: the scale is kept as written.
    amount: &'static str,
    currency_code: Option<&'static str>,
    invoice_file: Option<&'static str>,
    due_date: Option<Ts>,
    status: i16,
    tenant_id: &'static str,
    audit: Audit,
}

async fn insert_invoice(conn: &mut PgConnection, row: InvoiceRow) {
    let sql = insert_sql(
        "invoices",
        "id, start_date, end_date, amount, currency_code, invoice_file, due_date, status, \
         tenant_id",
        &[
            "uuid",
            "timestamptz",
            "timestamptz",
            "numeric",
            "bpchar",
            "varchar",
            "timestamptz",
            "smallint",
            "uuid",
        ],
    );
    let query = sqlx::query(AssertSqlSafe(sql))
        .bind(row.id)
        .bind(row.start_date.map(|t| t.db))
        .bind(row.end_date.map(|t| t.db))
        .bind(row.amount)
        .bind(row.currency_code)
        .bind(row.invoice_file)
        .bind(row.due_date.map(|t| t.db))
        .bind(row.status)
        .bind(row.tenant_id);
    run(conn, row.id, bind_audit(query, &row.audit)).await;
}

struct ConfigRow {
    id: &'static str,
    config_key: &'static str,
    config_value: Value,
    tenant_id: &'static str,
    audit: Audit,
}

async fn insert_config(conn: &mut PgConnection, row: ConfigRow) {
    let sql = insert_sql(
        "tenant_mgmt_configs",
        "id, config_key, config_value, tenant_id",
        &["uuid", "varchar", "jsonb", "uuid"],
    );
    let query = sqlx::query(AssertSqlSafe(sql))
        .bind(row.id)
        .bind(row.config_key)
        .bind(row.config_value)
        .bind(row.tenant_id);
    run(conn, row.id, bind_audit(query, &row.audit)).await;
}

/// Fills the original's tables in `schema` (built by [`create_original_schema`]) with the rows
/// described on [`Seeded`], in one transaction. Panics on failure.
pub async fn seed_as_the_original(conn: &mut PgConnection, schema: &str) -> Seeded {
    let mut tx = conn.begin().await.expect("cannot begin a transaction");
    // Unqualified names below resolve in `schema` only, for this transaction.
    sqlx::query("SELECT pg_catalog.set_config('search_path', pg_catalog.quote_ident($1), true)")
        .bind(schema)
        .execute(&mut *tx)
        .await
        .expect("cannot set the search path");
    let conn = &mut *tx;

    // Addresses. The full one came with the lead's signup; the minimal one with the
    // administrator's onboarding of the pending tenant.
    insert_address(
        conn,
        AddressRow {
            id: ADDRESS_FULL,
            address: Some("221B Baker Street"),
            city: Some("London"),
            state: Some("Greater London"),
            zip: Some("NW1 6XE"),
            country: Some("United Kingdom"),
            audit: Audit::by(SIGNUP_USER_ID, TS_ADDRESS_FULL),
        },
    )
    .await;
    insert_address(
        conn,
        AddressRow {
            id: ADDRESS_MINIMAL,
            address: None,
            city: None,
            state: None,
            zip: None,
            country: Some("India"),
            audit: Audit::by(ADMIN_USER_TENANT_ID, TS_ADDRESS_MINIMAL),
        },
    )
    .await;

    // Leads: signed up through the public endpoint; validation (and deletion) modified them.
    insert_lead(
        conn,
        LeadRow {
            id: LEAD_VALIDATED,
            first_name: "Jane",
            last_name: "Doe",
            email: "jane.doe@acme.example.com",
            is_validated: true,
            company_name: Some("Acme Corp"),
            address_id: Some(ADDRESS_FULL),
            audit: Audit {
                modified_on: Some(TS_LEAD_VALIDATED_MODIFIED),
                ..Audit::by(SIGNUP_USER_ID, TS_LEAD_VALIDATED_CREATED)
            },
        },
    )
    .await;
    insert_lead(
        conn,
        LeadRow {
            id: LEAD_UNVALIDATED,
            first_name: "John",
            last_name: "Smith",
            email: "john.smith@globex.example.com",
            is_validated: false,
            company_name: Some("Globex"),
            address_id: None,
            audit: Audit::by(SIGNUP_USER_ID, TS_LEAD_UNVALIDATED),
        },
    )
    .await;
    insert_lead(
        conn,
        LeadRow {
            id: LEAD_DELETED,
            first_name: "Peter",
            last_name: "Gibbons",
            email: "peter.gibbons@initech.example.net",
            is_validated: true,
            company_name: Some("Initech"),
            address_id: None,
            audit: Audit::by(SIGNUP_USER_ID, TS_LEAD_DELETED_CREATED)
                .deleted_at(TS_LEAD_DELETED_DELETED),
        },
    )
    .await;

    // Tenants. One onboarded from its lead (`created_by` is the lead's id: the lead token's
    // `userTenantId`), then made ACTIVE by the provisioning webhook; one onboarded by the
    // administrator and never provisioned; one INACTIVE and deleted.
    insert_tenant(
        conn,
        TenantRow {
            id: TENANT_ACTIVE,
            name: "Acme Corp",
            status: STATUS_ACTIVE,
            key: TENANT_ACTIVE_KEY,
            spoc_user_id: Some(SPOC_USER_ID),
            lead_id: Some(LEAD_VALIDATED),
            domains: &TENANT_ACTIVE_DOMAINS,
            address_id: Some(ADDRESS_FULL),
            audit: Audit {
                modified_on: Some(TS_TENANT_ACTIVE_PROVISIONED),
                ..Audit::by(LEAD_VALIDATED, TS_TENANT_ACTIVE_CREATED)
            },
        },
    )
    .await;
    insert_tenant(
        conn,
        TenantRow {
            id: TENANT_PENDING,
            name: "Globex Ltd",
            status: STATUS_PENDINGPROVISION,
            key: TENANT_PENDING_KEY,
            spoc_user_id: None,
            lead_id: None,
            domains: &[],
            address_id: Some(ADDRESS_MINIMAL),
            audit: Audit::by(ADMIN_USER_TENANT_ID, TS_TENANT_PENDING),
        },
    )
    .await;
    insert_tenant(
        conn,
        TenantRow {
            id: TENANT_DELETED,
            name: "Initech",
            status: STATUS_INACTIVE,
            key: TENANT_DELETED_KEY,
            spoc_user_id: None,
            lead_id: Some(LEAD_DELETED),
            domains: &TENANT_DELETED_DOMAINS,
            address_id: None,
            audit: Audit::by(LEAD_DELETED, TS_TENANT_DELETED_CREATED)
                .deleted_at(TS_TENANT_DELETED_DELETED),
        },
    )
    .await;

    // Contacts.
    insert_contact(
        conn,
        ContactRow {
            id: CONTACT_PRIMARY,
            first_name: "Jane",
            last_name: "Doe",
            email: "jane.doe@acme.example.com",
            contact_type: Some("admin"),
            is_primary: true,
            tenant_id: TENANT_ACTIVE,
            audit: Audit::by(LEAD_VALIDATED, TS_TENANT_ACTIVE_CREATED),
        },
    )
    .await;
    insert_contact(
        conn,
        ContactRow {
            id: CONTACT_BILLING,
            first_name: "Bob",
            last_name: "Billing",
            email: "bob.billing@acme.example.org",
            contact_type: None,
            is_primary: false,
            tenant_id: TENANT_ACTIVE,
            audit: Audit {
                created_on: TS_CONTACT_BILLING,
                modified_on: None,
                created_by: Some(ADMIN_USER_TENANT_ID),
                modified_by: None,
                deleted: None,
            },
        },
    )
    .await;
    insert_contact(
        conn,
        ContactRow {
            id: CONTACT_PENDING_PRIMARY,
            first_name: "Priya",
            last_name: "Patel",
            email: "priya.patel@globex.example.com",
            contact_type: Some("admin"),
            is_primary: true,
            tenant_id: TENANT_PENDING,
            audit: Audit::by(ADMIN_USER_TENANT_ID, TS_TENANT_PENDING),
        },
    )
    .await;
    insert_contact(
        conn,
        ContactRow {
            id: CONTACT_DELETED,
            first_name: "Former",
            last_name: "Admin",
            email: "former.admin@acme.example.com",
            contact_type: Some("technical"),
            is_primary: false,
            tenant_id: TENANT_ACTIVE,
            audit: Audit::by(LEAD_VALIDATED, TS_TENANT_ACTIVE_CREATED)
                .deleted_at(TS_CONTACT_DELETED_DELETED),
        },
    )
    .await;

    // Resources, stored by the provisioning webhook.
    insert_resource(
        conn,
        ResourceRow {
            id: RESOURCE_BUCKET,
            kind: "bucket",
            metadata: bucket_metadata(),
            external_identifier: RESOURCE_BUCKET_EXTERNAL_ID,
            tenant_id: TENANT_ACTIVE,
            audit: Audit::by(ADMIN_USER_TENANT_ID, TS_TENANT_ACTIVE_PROVISIONED),
        },
    )
    .await;
    insert_resource(
        conn,
        ResourceRow {
            id: RESOURCE_DATABASE,
            kind: "database",
            metadata: json!({
                "engine": "postgres",
                "version": 15,
                "endpoint": {"host": "acme-db-1.internal", "port": 5432}
            }),
            external_identifier: RESOURCE_DATABASE_EXTERNAL_ID,
            tenant_id: TENANT_ACTIVE,
            audit: Audit::by(ADMIN_USER_TENANT_ID, TS_TENANT_ACTIVE_PROVISIONED),
        },
    )
    .await;

    // Invoices of the active tenant.
    insert_invoice(
        conn,
        InvoiceRow {
            id: INVOICE_PAID,
            start_date: Some(TS_INVOICE_PAID_START),
            end_date: Some(TS_INVOICE_PAID_END),
            amount: INVOICE_PAID_AMOUNT,
            currency_code: Some("USD"),
            invoice_file: Some("invoices/acme-2026-01.pdf"),
            due_date: Some(TS_INVOICE_PAID_DUE),
            status: INVOICE_PAID_STATUS,
            tenant_id: TENANT_ACTIVE,
            audit: Audit {
                modified_on: Some(TS_INVOICE_PAID_MODIFIED),
                ..Audit::by(ADMIN_USER_TENANT_ID, TS_INVOICE_PAID_CREATED)
            },
        },
    )
    .await;
    insert_invoice(
        conn,
        InvoiceRow {
            id: INVOICE_UNDATED,
            start_date: None,
            end_date: None,
            amount: INVOICE_UNDATED_AMOUNT,
            currency_code: Some("EUR"),
            invoice_file: None,
            due_date: None,
            status: INVOICE_PENDING,
            tenant_id: TENANT_ACTIVE,
            audit: Audit {
                created_on: TS_INVOICE_UNDATED_CREATED,
                modified_on: None,
                created_by: Some(ADMIN_USER_TENANT_ID),
                modified_by: None,
                deleted: None,
            },
        },
    )
    .await;
    insert_invoice(
        conn,
        InvoiceRow {
            id: INVOICE_DELETED,
            start_date: Some(TS_INVOICE_DELETED_START),
            end_date: Some(TS_INVOICE_DELETED_END),
            amount: INVOICE_DELETED_AMOUNT,
            currency_code: Some("INR"),
            invoice_file: Some("invoices/acme-2025-12.pdf"),
            due_date: Some(TS_INVOICE_DELETED_DUE),
            status: INVOICE_CANCELLED,
            tenant_id: TENANT_ACTIVE,
            audit: Audit::by(ADMIN_USER_TENANT_ID, TS_INVOICE_DELETED_CREATED)
                .deleted_at(TS_INVOICE_DELETED_DELETED),
        },
    )
    .await;

    // Identity-provider configs. The Keycloak one was updated since (the trigger stamped
    // `modified_on`); the Auth0 one has both timestamps from the column defaults.
    insert_config(
        conn,
        ConfigRow {
            id: CONFIG_KEYCLOAK,
            config_key: "keycloak",
            config_value: keycloak_config_value(),
            tenant_id: TENANT_ACTIVE,
            audit: Audit {
                modified_on: Some(TS_CONFIG_KEYCLOAK_MODIFIED),
                ..Audit::by(ADMIN_USER_TENANT_ID, TS_CONFIG_KEYCLOAK_CREATED)
            },
        },
    )
    .await;
    insert_config(
        conn,
        ConfigRow {
            id: CONFIG_AUTH0,
            config_key: "auth0",
            config_value: json!({
                "organizationId": "org_globex",
                "connections": ["Username-Password-Authentication"],
                "metadata": null,
                "flags": {}
            }),
            tenant_id: TENANT_PENDING,
            audit: Audit::by(ADMIN_USER_TENANT_ID, TS_CONFIG_AUTH0),
        },
    )
    .await;

    // Branding: no audit columns in this table.
    run(
        conn,
        BRANDING,
        sqlx::query(
            "INSERT INTO branding_metadata \
             (id, theme_metadata, description, logo, website, tenant_id) \
             VALUES ($1::uuid, $2::jsonb, $3, $4, $5, $6::uuid)",
        )
        .bind(BRANDING)
        .bind(json!({
            "primaryColor": "#0052cc",
            "secondaryColor": null,
            "fonts": ["Inter", "system-ui"]
        }))
        .bind("Acme Corp tenant portal")
        .bind("https://cdn.acme.example.com/logo.svg")
        .bind("https://acme.example.com")
        .bind(TENANT_ACTIVE),
    )
    .await;

    tx.commit().await.expect("cannot commit the seed");
    Seeded::from_constants()
}

/// The number of rows (soft-deleted ones included) of each original table in `schema`, in the
/// order of [`ORIGINAL_TABLES`].
pub async fn row_counts(conn: &mut PgConnection, schema: &str) -> Vec<(String, i64)> {
    let mut counts = Vec::new();
    for table in ORIGINAL_TABLES {
        let sql = format!("SELECT count(*) FROM {}.{table}", quote_ident(schema));
        let count: i64 = sqlx::query_scalar(AssertSqlSafe(sql))
            .fetch_one(&mut *conn)
            .await
            .unwrap_or_else(|err| panic!("cannot count {schema}.{table}: {err}"));
        counts.push((table.to_string(), count));
    }
    counts
}

// ---------------------------------------------------------------------------------------------
// The dump
// ---------------------------------------------------------------------------------------------

/// What the catalog says about the original's tables in a schema, one line per object, sorted,
/// with the schema's own name removed from qualified names (dumps of different schemas compare
/// equal). Only objects on the 8 original tables: tms's own tables never appear.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemaDump {
    /// `table.NN column type[ NOT NULL][ DEFAULT expr]…`, `NN` the column's position.
    pub columns: Vec<String>,
    /// `table.name definition` (`pg_get_constraintdef`): primary, unique, foreign keys, checks.
    pub constraints: Vec<String>,
    /// `table.name definition` (`pg_get_indexdef`), those behind constraints included.
    pub indexes: Vec<String>,
    /// `table.name definition` (`pg_get_triggerdef`), user triggers only.
    pub triggers: Vec<String>,
    /// The functions those triggers call: signature, language and a digest of the source.
    pub functions: Vec<String>,
}

impl SchemaDump {
    /// Asserts that `after` (a dump of the same schema later on) still has everything of `self`
    /// unchanged: every column, constraint and index (`after` may have more: what tms adds),
    /// and the same triggers and trigger functions.
    #[track_caller]
    pub fn assert_kept_in(&self, after: &SchemaDump) {
        let kept = |what: &str, before: &[String], now: &[String]| {
            let missing: Vec<&String> = before.iter().filter(|l| !now.contains(l)).collect();
            assert!(
                missing.is_empty(),
                "the original's {what} missing or changed: {missing:#?}\nnow: {now:#?}"
            );
        };
        kept("columns", &self.columns, &after.columns);
        kept("constraints", &self.constraints, &after.constraints);
        kept("indexes", &self.indexes, &after.indexes);
        assert_eq!(
            self.triggers, after.triggers,
            "the original's triggers changed"
        );
        assert_eq!(
            self.functions, after.functions,
            "the original's trigger functions changed"
        );
    }

    /// The columns `after` has that `self` has not (what was added since).
    pub fn added_columns(&self, after: &SchemaDump) -> Vec<String> {
        after
            .columns
            .iter()
            .filter(|c| !self.columns.contains(c))
            .cloned()
            .collect()
    }

    /// The dump as text, one section per kind.
    pub fn text(&self) -> String {
        let mut out = String::new();
        for (title, lines) in [
            ("columns", &self.columns),
            ("constraints", &self.constraints),
            ("indexes", &self.indexes),
            ("triggers", &self.triggers),
            ("functions", &self.functions),
        ] {
            out.push_str(&format!("-- {title}\n"));
            for line in lines {
                out.push_str(line);
                out.push('\n');
            }
        }
        out
    }
}

const DUMP_COLUMNS: &str = r#"
SELECT pg_catalog.format('%s.%s %s %s', c.relname,
           lpad((row_number() OVER (PARTITION BY c.oid ORDER BY a.attnum))::text, 2, '0'),
           quote_ident(a.attname), format_type(a.atttypid, a.atttypmod))
       || CASE WHEN a.attcollation <> t.typcollation
               THEN ' COLLATE ' || quote_ident(co.collname) ELSE '' END
       || CASE WHEN a.attnotnull THEN ' NOT NULL' ELSE '' END
       || CASE a.attidentity WHEN 'a' THEN ' GENERATED ALWAYS AS IDENTITY'
                             WHEN 'd' THEN ' GENERATED BY DEFAULT AS IDENTITY' ELSE '' END
       || CASE WHEN a.attgenerated = 's'
               THEN ' GENERATED ALWAYS AS (' || pg_get_expr(d.adbin, d.adrelid) || ') STORED'
               WHEN d.adbin IS NOT NULL THEN ' DEFAULT ' || pg_get_expr(d.adbin, d.adrelid)
               ELSE '' END
  FROM pg_class c
  JOIN pg_namespace n ON n.oid = c.relnamespace
  JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
  JOIN pg_type t ON t.oid = a.atttypid
  LEFT JOIN pg_collation co ON co.oid = a.attcollation
  LEFT JOIN pg_attrdef d ON d.adrelid = c.oid AND d.adnum = a.attnum
 WHERE n.nspname = $1 AND c.relname = ANY($2) AND c.relkind IN ('r', 'p')
"#;

const DUMP_CONSTRAINTS: &str = r#"
SELECT pg_catalog.format('%s.%s %s', c.relname, quote_ident(con.conname),
                         pg_get_constraintdef(con.oid))
  FROM pg_constraint con
  JOIN pg_class c ON c.oid = con.conrelid
  JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname = $1 AND c.relname = ANY($2)
"#;

const DUMP_INDEXES: &str = r#"
SELECT pg_catalog.format('%s.%s %s', c.relname, quote_ident(ic.relname),
                         pg_get_indexdef(i.indexrelid))
       || CASE WHEN i.indisvalid THEN '' ELSE ' [INVALID]' END
  FROM pg_index i
  JOIN pg_class ic ON ic.oid = i.indexrelid
  JOIN pg_class c ON c.oid = i.indrelid
  JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname = $1 AND c.relname = ANY($2)
"#;

const DUMP_TRIGGERS: &str = r#"
SELECT pg_catalog.format('%s.%s %s', c.relname, quote_ident(t.tgname), pg_get_triggerdef(t.oid))
       || CASE t.tgenabled WHEN 'O' THEN '' WHEN 'D' THEN ' [DISABLED]'
                           WHEN 'R' THEN ' [ENABLE REPLICA]' WHEN 'A' THEN ' [ENABLE ALWAYS]' END
  FROM pg_trigger t
  JOIN pg_class c ON c.oid = t.tgrelid
  JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname = $1 AND c.relname = ANY($2) AND NOT t.tgisinternal
"#;

const DUMP_FUNCTIONS: &str = r#"
SELECT DISTINCT pg_catalog.format('%s%s(%s) RETURNS %s LANGUAGE %s SOURCE md5:%s',
           CASE WHEN pn.nspname = $1 THEN '' ELSE quote_ident(pn.nspname) || '.' END,
           quote_ident(p.proname), pg_get_function_identity_arguments(p.oid),
           pg_get_function_result(p.oid), l.lanname, md5(p.prosrc))
  FROM pg_trigger t
  JOIN pg_class c ON c.oid = t.tgrelid
  JOIN pg_namespace n ON n.oid = c.relnamespace
  JOIN pg_proc p ON p.oid = t.tgfoid
  JOIN pg_namespace pn ON pn.oid = p.pronamespace
  JOIN pg_language l ON l.oid = p.prolang
 WHERE n.nspname = $1 AND c.relname = ANY($2) AND NOT t.tgisinternal
"#;

/// Removes the qualification `schema.` (quoted or not) from `text` wherever it starts a name.
fn unqualify(text: &str, schema: &str) -> String {
    let mut out = text.to_string();
    for prefix in [format!("{}.", quote_ident(schema)), format!("{schema}.")] {
        let mut result = String::with_capacity(out.len());
        let mut rest = out.as_str();
        while let Some(at) = rest.find(&prefix) {
            let starts_a_name = result
                .chars()
                .chain(rest[..at].chars())
                .last()
                .is_none_or(|c| !(c.is_alphanumeric() || c == '_' || c == '$' || c == '"'));
            result.push_str(&rest[..at]);
            if !starts_a_name {
                result.push_str(&prefix);
            }
            rest = &rest[at + prefix.len()..];
        }
        result.push_str(rest);
        out = result;
    }
    out
}

/// The catalog's description of the original's tables in `schema`: see [`SchemaDump`].
pub async fn schema_dump(conn: &mut PgConnection, schema: &str) -> SchemaDump {
    let mut tx = conn.begin().await.expect("cannot begin a transaction");
    // With the schema alone on the search path, the deparse functions leave its names
    // unqualified where they can; `unqualify` handles those that always qualify (indexes,
    // triggers).
    sqlx::query("SELECT pg_catalog.set_config('search_path', pg_catalog.quote_ident($1), true)")
        .bind(schema)
        .execute(&mut *tx)
        .await
        .expect("cannot set the search path");
    let tables: Vec<String> = ORIGINAL_TABLES.iter().map(|t| t.to_string()).collect();
    let mut sections = Vec::new();
    for sql in [
        DUMP_COLUMNS,
        DUMP_CONSTRAINTS,
        DUMP_INDEXES,
        DUMP_TRIGGERS,
        DUMP_FUNCTIONS,
    ] {
        let rows = sqlx::query(sql)
            .bind(schema)
            .bind(&tables)
            .fetch_all(&mut *tx)
            .await
            .unwrap_or_else(|err| panic!("cannot read the catalog of {schema}: {err}"));
        let mut lines: Vec<String> = rows
            .iter()
            .map(|row| unqualify(&row.get::<String, _>(0), schema))
            .collect();
        lines.sort();
        sections.push(lines);
    }
    tx.rollback().await.expect("cannot end the transaction");
    let [columns, constraints, indexes, triggers, functions] =
        <[Vec<String>; 5]>::try_from(sections).expect("five sections");
    SchemaDump {
        columns,
        constraints,
        indexes,
        triggers,
        functions,
    }
}
