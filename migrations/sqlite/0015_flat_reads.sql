-- Reads that stay flat as tenants grow (docs/PERFORMANCE.md, "Flat as data grows"); the plans
-- are checked by tests/query_plans.rs.
-- The tenant list by creation date or by name, across all statuses or within one: an index
-- walked forwards (ASC) or backwards (DESC) from the first row of the page. The id completes
-- each key because it breaks ties, in the direction of the last order (store/filter/sql.rs).
CREATE INDEX tenants_created_on_idx ON tenants (created_on, id) WHERE NOT deleted;
CREATE INDEX tenants_status_created_on_idx ON tenants (status, created_on, id) WHERE NOT deleted;
CREATE INDEX tenants_name_idx ON tenants (name, id) WHERE NOT deleted;
-- Serves `status = …` alone too.
DROP INDEX tenants_status_idx;

-- A tenant by one of its domains. `domains` is a JSON array here, which no index can serve, so
-- each domain is also a row of `tenant_domains`, kept by triggers in the statement that writes
-- the tenant; `{"where":{"domains":"…"}}` is rendered `id IN (SELECT tenant_id FROM
-- tenant_domains WHERE domain = …)`.
CREATE TABLE tenant_domains (
    domain    TEXT NOT NULL,
    tenant_id TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    PRIMARY KEY (domain, tenant_id)
) STRICT, WITHOUT ROWID;
CREATE INDEX tenant_domains_tenant_id_idx ON tenant_domains (tenant_id);

CREATE TRIGGER tenant_domains_on_insert AFTER INSERT ON tenants
BEGIN
    INSERT OR IGNORE INTO tenant_domains (domain, tenant_id)
        SELECT value, NEW.id FROM json_each(NEW.domains);
END;

CREATE TRIGGER tenant_domains_on_update AFTER UPDATE OF domains ON tenants
BEGIN
    DELETE FROM tenant_domains WHERE tenant_id = OLD.id;
    INSERT OR IGNORE INTO tenant_domains (domain, tenant_id)
        SELECT value, NEW.id FROM json_each(NEW.domains);
END;

INSERT OR IGNORE INTO tenant_domains (domain, tenant_id)
    SELECT d.value, t.id FROM tenants AS t, json_each(t.domains) AS d;
