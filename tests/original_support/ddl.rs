//! The original's schema: its DDL (tables, constraints, the `moddatetime` function and
//! trigger) and [`create_original_schema`], which builds it inside a schema.

use sqlx::{AssertSqlSafe, Connection, PgConnection};

use super::quote_ident;

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
