-- Billing (docs/billing.md): who issued an invoice and its number, from a counter per seller;
-- the billing period an invoice of a billing run covers (never two for one tenant and period);
-- when an overdue invoice was announced; each billed tenant's frozen terms and next period.

ALTER TABLE invoices ADD COLUMN seller text COLLATE "C";
ALTER TABLE invoices ADD COLUMN invoice_number text COLLATE "C";
ALTER TABLE invoices ADD COLUMN billing_period integer CHECK (billing_period >= 0);
ALTER TABLE invoices ADD COLUMN overdue_at timestamptz;
-- Numbers count per seller: a renamed seller starts its own series.
CREATE UNIQUE INDEX invoices_number_unique ON invoices (seller, invoice_number);
-- Deleted invoices count too: a billing period is invoiced once, whatever happens to it later.
CREATE UNIQUE INDEX invoices_tenant_period_unique ON invoices (tenant_id, billing_period)
    WHERE billing_period IS NOT NULL;
-- The overdue scan: pending invoices not yet announced, by due date.
CREATE INDEX invoices_pending_due_idx ON invoices (due_date)
    WHERE status = 0 AND overdue_at IS NULL AND NOT deleted;

-- The last number given per seller; updated in the transaction that writes the invoice, so a
-- rolled-back invoice gives its number back.
CREATE TABLE invoice_counters (
    seller      text COLLATE "C" PRIMARY KEY,
    last_number bigint NOT NULL CHECK (last_number >= 0)
);

-- A tenant's billing terms, frozen from its subscription when it first became ACTIVE, and where
-- its billing stands: period k runs from anchor + k cycles to anchor + (k+1) cycles.
CREATE TABLE tenant_billing (
    tenant_id         uuid PRIMARY KEY REFERENCES tenants (id),
    price             numeric(19, 4) NOT NULL CHECK (price >= 0),
    currency_code     text COLLATE "C" NOT NULL CHECK (length(currency_code) = 3),
    cycle_count       integer NOT NULL CHECK (cycle_count > 0),
    cycle_unit        text COLLATE "C" NOT NULL CHECK (cycle_unit IN ('day', 'week', 'month', 'year')),
    anchor_at         timestamptz NOT NULL,
    next_period       integer NOT NULL CHECK (next_period >= 0),
    next_period_start timestamptz NOT NULL,
    -- Set while the tenant is suspended or being offboarded: no period starting after it is billed.
    paused_at         timestamptz,
    modified_on       timestamptz NOT NULL
);
-- The billing run: tenants with a period due, by its start.
CREATE INDEX tenant_billing_due_idx ON tenant_billing (next_period_start) WHERE paused_at IS NULL;
