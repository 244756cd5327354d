-- The audit trail (docs/audit.md, src/store/audit.rs): one row per row changed, written in the
-- transaction of the change. `before`/`after` hold the changed fields (an update) or the whole
-- row (after a create, before a delete), secrets masked. Rows are never updated; the janitor
-- deletes those older than AUDIT_RETENTION_DAYS. `tenant_id` is the tenant the change concerns
-- (no foreign key: the trail outlives what it describes).

CREATE TABLE audit_logs (
    id              uuid PRIMARY KEY,
    occurred_on     timestamptz NOT NULL,
    actor_kind      text NOT NULL CHECK (actor_kind IN ('user', 'lead', 'pipeline', 'system')),
    actor_id        text NOT NULL,
    actor_tenant_id text,
    entity          text NOT NULL,
    entity_id       text NOT NULL,
    action          text NOT NULL,
    tenant_id       uuid,
    before          jsonb,
    after           jsonb
);
CREATE INDEX audit_logs_occurred_on_idx ON audit_logs (occurred_on, id);
CREATE INDEX audit_logs_entity_idx ON audit_logs (entity, entity_id, occurred_on);
CREATE INDEX audit_logs_tenant_idx ON audit_logs (tenant_id, occurred_on) WHERE tenant_id IS NOT NULL;
