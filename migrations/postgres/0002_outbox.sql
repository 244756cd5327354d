-- The transactional outbox (SPEC §6, docs/outbox.md): messages written in the same transaction
-- as the business change they announce, delivered afterwards by a relay, at least once.
-- `topic` names the relay that delivers the row (`mail`; `event` for provisioning events).

CREATE TABLE outbox (
    id              uuid PRIMARY KEY,
    topic           text COLLATE "C" NOT NULL,
    payload         jsonb NOT NULL,
    attempts        integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    next_attempt_at timestamptz NOT NULL,
    locked_until    timestamptz,
    last_error      text COLLATE "C",
    delivered_at    timestamptz,
    created_on      timestamptz NOT NULL
);
-- The relay's claim: undelivered rows that are due, oldest due first.
CREATE INDEX outbox_due_idx ON outbox (delivered_at, next_attempt_at);
