-- The domain tables of SPEC §3, SQLite flavour (STRICT tables). Representation choices, mirrored
-- by src/store/values.rs: UUIDs as canonical lowercase text; booleans as 0/1; timestamps as
-- ISO 8601 text with milliseconds and `Z` (sorts chronologically); money as INTEGER
-- ten-thousandths (exact); JSON and the `domains` list as JSON text.

CREATE TABLE addresses (
    id          TEXT PRIMARY KEY NOT NULL,
    address     TEXT,
    city        TEXT,
    state       TEXT,
    zip         TEXT,
    country     TEXT NOT NULL,
    deleted     INTEGER NOT NULL DEFAULT 0 CHECK (deleted IN (0, 1)),
    deleted_on  TEXT,
    deleted_by  TEXT,
    created_on  TEXT NOT NULL,
    modified_on TEXT NOT NULL,
    created_by  TEXT,
    modified_by TEXT
) STRICT;

CREATE TABLE leads (
    id           TEXT PRIMARY KEY NOT NULL,
    first_name   TEXT NOT NULL,
    last_name    TEXT NOT NULL,
    company_name TEXT NOT NULL,
    email        TEXT NOT NULL,
    is_validated INTEGER NOT NULL DEFAULT 0 CHECK (is_validated IN (0, 1)),
    address_id   TEXT REFERENCES addresses (id),
    deleted      INTEGER NOT NULL DEFAULT 0 CHECK (deleted IN (0, 1)),
    deleted_on   TEXT,
    deleted_by   TEXT,
    created_on   TEXT NOT NULL,
    modified_on  TEXT NOT NULL,
    created_by   TEXT,
    modified_by  TEXT
) STRICT;
CREATE INDEX leads_email_idx ON leads (lower(email)) WHERE NOT deleted;

CREATE TABLE tenants (
    id           TEXT PRIMARY KEY NOT NULL,
    name         TEXT NOT NULL,
    status       INTEGER NOT NULL CHECK (status BETWEEN 0 AND 6),
    key          TEXT NOT NULL CHECK (key NOT GLOB '*[^a-z0-9]*' AND length(key) BETWEEN 1 AND 10),
    spoc_user_id TEXT,
    domains      TEXT NOT NULL DEFAULT '[]' CHECK (json_valid(domains)),
    lead_id      TEXT REFERENCES leads (id),
    address_id   TEXT REFERENCES addresses (id),
    deleted      INTEGER NOT NULL DEFAULT 0 CHECK (deleted IN (0, 1)),
    deleted_on   TEXT,
    deleted_by   TEXT,
    created_on   TEXT NOT NULL,
    modified_on  TEXT NOT NULL,
    created_by   TEXT,
    modified_by  TEXT
) STRICT;
CREATE UNIQUE INDEX tenants_key_unique ON tenants (key) WHERE NOT deleted;
CREATE INDEX tenants_lead_id_idx ON tenants (lead_id) WHERE NOT deleted;
CREATE INDEX tenants_status_idx ON tenants (status) WHERE NOT deleted;

CREATE TABLE contacts (
    id          TEXT PRIMARY KEY NOT NULL,
    first_name  TEXT NOT NULL,
    last_name   TEXT NOT NULL,
    email       TEXT NOT NULL,
    is_primary  INTEGER NOT NULL CHECK (is_primary IN (0, 1)),
    type        TEXT,
    tenant_id   TEXT NOT NULL REFERENCES tenants (id),
    deleted     INTEGER NOT NULL DEFAULT 0 CHECK (deleted IN (0, 1)),
    deleted_on  TEXT,
    deleted_by  TEXT,
    created_on  TEXT NOT NULL,
    modified_on TEXT NOT NULL,
    created_by  TEXT,
    modified_by TEXT
) STRICT;
CREATE INDEX contacts_tenant_id_idx ON contacts (tenant_id) WHERE NOT deleted;

CREATE TABLE resources (
    id                  TEXT PRIMARY KEY NOT NULL,
    external_identifier TEXT NOT NULL,
    type                TEXT NOT NULL,
    metadata            TEXT NOT NULL CHECK (json_valid(metadata)),
    tenant_id           TEXT REFERENCES tenants (id),
    deleted             INTEGER NOT NULL DEFAULT 0 CHECK (deleted IN (0, 1)),
    deleted_on          TEXT,
    deleted_by          TEXT,
    created_on          TEXT NOT NULL,
    modified_on         TEXT NOT NULL,
    created_by          TEXT,
    modified_by         TEXT
) STRICT;
CREATE UNIQUE INDEX resources_external_identifier_unique
    ON resources (external_identifier, tenant_id) WHERE NOT deleted;
CREATE INDEX resources_tenant_id_idx ON resources (tenant_id) WHERE NOT deleted;

CREATE TABLE invoices (
    id            TEXT PRIMARY KEY NOT NULL,
    start_date    TEXT NOT NULL,
    end_date      TEXT NOT NULL,
    amount        INTEGER NOT NULL,
    currency_code TEXT NOT NULL CHECK (length(currency_code) = 3),
    invoice_file  TEXT,
    due_date      TEXT NOT NULL,
    status        INTEGER NOT NULL CHECK (status BETWEEN 0 AND 2),
    tenant_id     TEXT NOT NULL REFERENCES tenants (id),
    deleted       INTEGER NOT NULL DEFAULT 0 CHECK (deleted IN (0, 1)),
    deleted_on    TEXT,
    deleted_by    TEXT,
    created_on    TEXT NOT NULL,
    modified_on   TEXT NOT NULL,
    created_by    TEXT,
    modified_by   TEXT
) STRICT;
CREATE INDEX invoices_tenant_id_idx ON invoices (tenant_id) WHERE NOT deleted;

CREATE TABLE tenant_mgmt_configs (
    id           TEXT PRIMARY KEY NOT NULL,
    config_key   TEXT NOT NULL,
    config_value TEXT NOT NULL CHECK (json_valid(config_value)),
    tenant_id    TEXT NOT NULL REFERENCES tenants (id),
    deleted      INTEGER NOT NULL DEFAULT 0 CHECK (deleted IN (0, 1)),
    deleted_on   TEXT,
    deleted_by   TEXT,
    created_on   TEXT NOT NULL,
    modified_on  TEXT NOT NULL,
    created_by   TEXT,
    modified_by  TEXT
) STRICT;
CREATE INDEX tenant_mgmt_configs_tenant_id_idx ON tenant_mgmt_configs (tenant_id) WHERE NOT deleted;
