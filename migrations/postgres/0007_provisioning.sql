-- What tms knows about a tenant's provisioning (docs/provisioning.md): the operation in progress
-- or last run (provision or deprovision), the subscription it was provisioned with (billing
-- needs its plan), where it runs (tier, isolation, pipeline), why it failed, and its deadline.
-- One row per tenant, updated by each operation.

CREATE TABLE tenant_provisioning (
    tenant_id     uuid PRIMARY KEY REFERENCES tenants (id),
    operation     text COLLATE "C" NOT NULL CHECK (operation IN ('provision', 'deprovision')),
    subscription  jsonb,
    tier          text COLLATE "C",
    isolation     text COLLATE "C" CHECK (isolation IN ('silo', 'pooled')),
    pipeline      text COLLATE "C",
    attempts      integer NOT NULL DEFAULT 1 CHECK (attempts >= 0),
    reason        text COLLATE "C",
    -- Where a failed offboarding takes the tenant back to (its status before it started).
    resume_status smallint CHECK (resume_status BETWEEN 0 AND 6),
    started_at    timestamptz NOT NULL,
    deadline_at   timestamptz NOT NULL,
    finished_at   timestamptz,
    modified_on   timestamptz NOT NULL
);
-- The deadline sweeper: operations still running, by deadline.
CREATE INDEX tenant_provisioning_deadline_idx ON tenant_provisioning (deadline_at)
    WHERE finished_at IS NULL;
