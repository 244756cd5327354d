-- The database backend of the expiring key-value store (src/kv.rs), used when no Redis is
-- configured: single-use lead keys, webhook secrets and rate-limit counters. A row holds either a
-- `value` or a `count`. Expiry is compared against the application's clock, never now(); expired
-- rows are invisible and removed by the store's janitor.

CREATE TABLE kv_entries (
    key        text COLLATE "C" PRIMARY KEY,
    value      text,
    count      bigint,
    expires_at timestamptz NOT NULL
);
CREATE INDEX kv_entries_expires_at_idx ON kv_entries (expires_at);
