-- The transactional outbox (SPEC §6, docs/outbox.md), SQLite flavour: id as lowercase UUID text,
-- payload as JSON text, timestamps as ISO 8601 text with milliseconds and `Z` (so text order is
-- time order and the relay's `<=` comparisons are chronological).

CREATE TABLE outbox (
    id              TEXT PRIMARY KEY NOT NULL,
    topic           TEXT NOT NULL,
    payload         TEXT NOT NULL CHECK (json_valid(payload)),
    attempts        INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    next_attempt_at TEXT NOT NULL,
    locked_until    TEXT,
    last_error      TEXT,
    delivered_at    TEXT,
    created_on      TEXT NOT NULL
) STRICT;
-- The relay's claim: undelivered rows that are due, oldest due first.
CREATE INDEX outbox_due_idx ON outbox (delivered_at, next_attempt_at);
