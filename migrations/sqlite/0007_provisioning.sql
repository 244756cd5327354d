-- What tms knows about a tenant's provisioning (docs/provisioning.md): the operation in progress
-- or last run (provision or deprovision), the subscription it was provisioned with (billing
-- needs its plan), where it runs (tier, isolation, pipeline), why it failed, and its deadline.
-- One row per tenant, updated by each operation.

CREATE TABLE tenant_provisioning (
    tenant_id     TEXT PRIMARY KEY NOT NULL REFERENCES tenants (id),
    operation     TEXT NOT NULL CHECK (operation IN ('provision', 'deprovision')),
    subscription  TEXT CHECK (subscription IS NULL OR json_valid(subscription)),
    tier          TEXT,
    isolation     TEXT CHECK (isolation IN ('silo', 'pooled')),
    pipeline      TEXT,
    attempts      INTEGER NOT NULL DEFAULT 1 CHECK (attempts >= 0),
    reason        TEXT,
    -- Where a failed offboarding takes the tenant back to (its status before it started).
    resume_status INTEGER CHECK (resume_status BETWEEN 0 AND 6),
    started_at    TEXT NOT NULL,
    deadline_at   TEXT NOT NULL,
    finished_at   TEXT,
    modified_on   TEXT NOT NULL
) STRICT;
-- The deadline sweeper: operations still running, by deadline.
CREATE INDEX tenant_provisioning_deadline_idx ON tenant_provisioning (deadline_at)
    WHERE finished_at IS NULL;
