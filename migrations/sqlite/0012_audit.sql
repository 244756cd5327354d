-- The audit trail (docs/audit.md, src/store/audit.rs): one row per row changed, written in the
-- transaction of the change. `before`/`after` hold the changed fields (an update) or the whole
-- row (after a create, before a delete), secrets masked. Rows are never updated; the janitor
-- deletes those older than AUDIT_RETENTION_DAYS. Times are ISO 8601 text with milliseconds and
-- `Z`. `tenant_id` is the tenant the change concerns (no foreign key: the trail outlives what it
-- describes).

CREATE TABLE audit_logs (
    id              TEXT PRIMARY KEY NOT NULL,
    occurred_on     TEXT NOT NULL,
    actor_kind      TEXT NOT NULL CHECK (actor_kind IN ('user', 'lead', 'pipeline', 'system')),
    actor_id        TEXT NOT NULL,
    actor_tenant_id TEXT,
    entity          TEXT NOT NULL,
    entity_id       TEXT NOT NULL,
    action          TEXT NOT NULL,
    tenant_id       TEXT,
    before          TEXT CHECK (before IS NULL OR json_valid(before)),
    after           TEXT CHECK (after IS NULL OR json_valid(after))
) STRICT;
CREATE INDEX audit_logs_occurred_on_idx ON audit_logs (occurred_on, id);
CREATE INDEX audit_logs_entity_idx ON audit_logs (entity, entity_id, occurred_on);
CREATE INDEX audit_logs_tenant_idx ON audit_logs (tenant_id, occurred_on) WHERE tenant_id IS NOT NULL;
