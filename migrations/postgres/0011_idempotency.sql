-- Idempotency-Key records (docs/idempotency.md, src/store/idempotency.rs): one row per key of a
-- caller on a route, holding the first answer (status, headers, body) once it is known; while
-- the request runs, `status` is NULL and `owner` names the request that holds it until
-- `locked_until`. `id` is a SHA-256 of the caller, method, path and key (never the key or a
-- credential itself); `fingerprint` a SHA-256 of the query string and body. Times are compared
-- against the application's clock, never now(); expired rows are invisible and removed by a
-- janitor.

CREATE TABLE idempotency_keys (
    id           text COLLATE "C" PRIMARY KEY,
    fingerprint  text COLLATE "C" NOT NULL,
    owner        uuid NOT NULL,
    status       integer CHECK (status BETWEEN 100 AND 599),
    headers      jsonb,
    body         bytea,
    locked_until timestamptz NOT NULL,
    expires_at   timestamptz NOT NULL
);
CREATE INDEX idempotency_keys_expires_at_idx ON idempotency_keys (expires_at);
