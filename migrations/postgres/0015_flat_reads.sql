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
-- A tenant by one of its domains: `{"where":{"domains":"…"}}` is rendered
-- `CAST(domains AS text[]) @> $1`. On tms's `text[]` the cast is no cast at all (the index is on
-- the column); on the `varchar[]` of a schema taken over from the original the index is on the
-- same cast, so the query matches it on both. Without the pending list (`fastupdate`): entries
-- waiting in it are read by every lookup until a vacuum merges them, and no vacuum may run.
CREATE INDEX tenants_domains_idx ON tenants USING gin ((domains::text[]))
    WITH (fastupdate = off) WHERE NOT deleted;
