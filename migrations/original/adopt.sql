-- Taking over a schema created by the original service (docs/switch-over.md): what tms's first
-- migration (postgres/0001_domain.sql) would have given its tables, and nothing else. The
-- original's tables, columns, constraints and triggers stay exactly as they are; tms adds the
-- indexes its queries use (partial, on live rows, as in its own schema). The later migrations
-- (0002 onwards) then run as on any tms schema: new tables, new columns with defaults, indexes.

CREATE INDEX IF NOT EXISTS leads_email_idx ON leads (lower(email)) WHERE NOT deleted;
CREATE UNIQUE INDEX IF NOT EXISTS tenants_key_unique ON tenants (key) WHERE NOT deleted;
-- Replaced by a unique index in 0004.
CREATE INDEX IF NOT EXISTS tenants_lead_id_idx ON tenants (lead_id) WHERE NOT deleted;
CREATE INDEX IF NOT EXISTS tenants_status_idx ON tenants (status) WHERE NOT deleted;
CREATE INDEX IF NOT EXISTS contacts_tenant_id_idx ON contacts (tenant_id) WHERE NOT deleted;
CREATE UNIQUE INDEX IF NOT EXISTS resources_external_identifier_unique
    ON resources (external_identifier, tenant_id) WHERE NOT deleted;
CREATE INDEX IF NOT EXISTS resources_tenant_id_idx ON resources (tenant_id) WHERE NOT deleted;
CREATE INDEX IF NOT EXISTS invoices_tenant_id_idx ON invoices (tenant_id) WHERE NOT deleted;
CREATE INDEX IF NOT EXISTS tenant_mgmt_configs_tenant_id_idx ON tenant_mgmt_configs (tenant_id)
    WHERE NOT deleted;
