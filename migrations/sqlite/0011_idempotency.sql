-- Idempotency-Key records (docs/idempotency.md, src/store/idempotency.rs): one row per key of a
-- caller on a route, holding the first answer (status, headers, body) once it is known; while
-- the request runs, `status` is NULL and `owner` names the request that holds it until
-- `locked_until`. `id` is a SHA-256 of the caller, method, path and key (never the key or a
-- credential itself); `fingerprint` a SHA-256 of the query string and body. Times are ISO 8601
-- text with milliseconds and `Z`, compared as text against the application's clock; expired
-- rows are invisible and removed by a janitor.

CREATE TABLE idempotency_keys (
    id           TEXT PRIMARY KEY NOT NULL,
    fingerprint  TEXT NOT NULL,
    owner        TEXT NOT NULL,
    status       INTEGER CHECK (status BETWEEN 100 AND 599),
    headers      TEXT CHECK (headers IS NULL OR json_valid(headers)),
    body         BLOB,
    locked_until TEXT NOT NULL,
    expires_at   TEXT NOT NULL
) STRICT;
CREATE INDEX idempotency_keys_expires_at_idx ON idempotency_keys (expires_at);
