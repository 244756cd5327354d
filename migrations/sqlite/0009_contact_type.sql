-- A contact's type is `contact_type`, as in the original's schema (and in tms's PostgreSQL
-- schemas, which may be taken over from it): one column name on every database.

ALTER TABLE contacts RENAME COLUMN type TO contact_type;
