-- A lead is onboarded at most once: two concurrent onboardings of the same lead cannot both
-- commit.
DROP INDEX tenants_lead_id_idx;
CREATE UNIQUE INDEX tenants_lead_id_unique ON tenants (lead_id) WHERE NOT deleted AND lead_id IS NOT NULL;
