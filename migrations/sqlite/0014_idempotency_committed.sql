-- When the work of the request holding an Idempotency-Key committed (docs/idempotency.md): set
-- inside that work's own transaction, so a key whose answer was lost after its work was saved
-- (the server died, the request was cancelled) is never run a second time.
ALTER TABLE idempotency_keys ADD COLUMN committed_at TEXT;
