-- The database backend of the expiring key-value store (src/kv.rs), used when no Redis is
-- configured: single-use lead keys, webhook secrets and rate-limit counters. A row holds either a
-- `value` or a `count`; `expires_at` is ISO 8601 text with milliseconds and `Z`, compared as
-- text against the application's clock. Expired rows are invisible and removed by the store's
-- janitor.

CREATE TABLE kv_entries (
    key        TEXT PRIMARY KEY NOT NULL,
    value      TEXT,
    count      INTEGER,
    expires_at TEXT NOT NULL
) STRICT;
CREATE INDEX kv_entries_expires_at_idx ON kv_entries (expires_at);
