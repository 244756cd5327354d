-- The domain tables of SPEC §3. Tables are created in the schema that is first on the
-- connection's search_path (DB_SCHEMA). Text columns use the "C" collation so that ordering and
-- comparisons match SQLite's binary collation byte for byte.

CREATE TABLE addresses (
    id          uuid PRIMARY KEY,
    address     text COLLATE "C",
    city        text COLLATE "C",
    state       text COLLATE "C",
    zip         text COLLATE "C",
    country     text COLLATE "C" NOT NULL,
    deleted     boolean NOT NULL DEFAULT false,
    deleted_on  timestamptz,
    deleted_by  text COLLATE "C",
    created_on  timestamptz NOT NULL,
    modified_on timestamptz NOT NULL,
    created_by  text COLLATE "C",
    modified_by text COLLATE "C"
);

CREATE TABLE leads (
    id           uuid PRIMARY KEY,
    first_name   text COLLATE "C" NOT NULL,
    last_name    text COLLATE "C" NOT NULL,
    company_name text COLLATE "C" NOT NULL,
    email        text COLLATE "C" NOT NULL,
    is_validated boolean NOT NULL DEFAULT false,
    address_id   uuid REFERENCES addresses (id),
    deleted      boolean NOT NULL DEFAULT false,
    deleted_on   timestamptz,
    deleted_by   text COLLATE "C",
    created_on   timestamptz NOT NULL,
    modified_on  timestamptz NOT NULL,
    created_by   text COLLATE "C",
    modified_by  text COLLATE "C"
);
CREATE INDEX leads_email_idx ON leads (lower(email)) WHERE NOT deleted;

CREATE TABLE tenants (
    id           uuid PRIMARY KEY,
    name         text COLLATE "C" NOT NULL,
    status       smallint NOT NULL CHECK (status BETWEEN 0 AND 6),
    key          text COLLATE "C" NOT NULL CHECK (key ~ '^[a-z0-9]+$' AND length(key) <= 10),
    spoc_user_id text COLLATE "C",
    domains      text[] COLLATE "C" NOT NULL DEFAULT '{}',
    lead_id      uuid REFERENCES leads (id),
    address_id   uuid REFERENCES addresses (id),
    deleted      boolean NOT NULL DEFAULT false,
    deleted_on   timestamptz,
    deleted_by   text COLLATE "C",
    created_on   timestamptz NOT NULL,
    modified_on  timestamptz NOT NULL,
    created_by   text COLLATE "C",
    modified_by  text COLLATE "C"
);
CREATE UNIQUE INDEX tenants_key_unique ON tenants (key) WHERE NOT deleted;
CREATE INDEX tenants_lead_id_idx ON tenants (lead_id) WHERE NOT deleted;
CREATE INDEX tenants_status_idx ON tenants (status) WHERE NOT deleted;

CREATE TABLE contacts (
    id          uuid PRIMARY KEY,
    first_name  text COLLATE "C" NOT NULL,
    last_name   text COLLATE "C" NOT NULL,
    email       text COLLATE "C" NOT NULL,
    is_primary  boolean NOT NULL,
    type        text COLLATE "C",
    tenant_id   uuid NOT NULL REFERENCES tenants (id),
    deleted     boolean NOT NULL DEFAULT false,
    deleted_on  timestamptz,
    deleted_by  text COLLATE "C",
    created_on  timestamptz NOT NULL,
    modified_on timestamptz NOT NULL,
    created_by  text COLLATE "C",
    modified_by text COLLATE "C"
);
CREATE INDEX contacts_tenant_id_idx ON contacts (tenant_id) WHERE NOT deleted;

CREATE TABLE resources (
    id                  uuid PRIMARY KEY,
    external_identifier text COLLATE "C" NOT NULL,
    type                text COLLATE "C" NOT NULL,
    metadata            jsonb NOT NULL,
    tenant_id           uuid REFERENCES tenants (id),
    deleted             boolean NOT NULL DEFAULT false,
    deleted_on          timestamptz,
    deleted_by          text COLLATE "C",
    created_on          timestamptz NOT NULL,
    modified_on         timestamptz NOT NULL,
    created_by          text COLLATE "C",
    modified_by         text COLLATE "C"
);
CREATE UNIQUE INDEX resources_external_identifier_unique
    ON resources (external_identifier, tenant_id) WHERE NOT deleted;
CREATE INDEX resources_tenant_id_idx ON resources (tenant_id) WHERE NOT deleted;

CREATE TABLE invoices (
    id            uuid PRIMARY KEY,
    start_date    timestamptz NOT NULL,
    end_date      timestamptz NOT NULL,
    amount        numeric(19, 4) NOT NULL,
    currency_code text COLLATE "C" NOT NULL CHECK (length(currency_code) = 3),
    invoice_file  text COLLATE "C",
    due_date      timestamptz NOT NULL,
    status        smallint NOT NULL CHECK (status BETWEEN 0 AND 2),
    tenant_id     uuid NOT NULL REFERENCES tenants (id),
    deleted       boolean NOT NULL DEFAULT false,
    deleted_on    timestamptz,
    deleted_by    text COLLATE "C",
    created_on    timestamptz NOT NULL,
    modified_on   timestamptz NOT NULL,
    created_by    text COLLATE "C",
    modified_by   text COLLATE "C"
);
CREATE INDEX invoices_tenant_id_idx ON invoices (tenant_id) WHERE NOT deleted;

CREATE TABLE tenant_mgmt_configs (
    id           uuid PRIMARY KEY,
    config_key   text COLLATE "C" NOT NULL,
    config_value jsonb NOT NULL,
    tenant_id    uuid NOT NULL REFERENCES tenants (id),
    deleted      boolean NOT NULL DEFAULT false,
    deleted_on   timestamptz,
    deleted_by   text COLLATE "C",
    created_on   timestamptz NOT NULL,
    modified_on  timestamptz NOT NULL,
    created_by   text COLLATE "C",
    modified_by  text COLLATE "C"
);
CREATE INDEX tenant_mgmt_configs_tenant_id_idx ON tenant_mgmt_configs (tenant_id) WHERE NOT deleted;
