-- The outbox grows into the event log of docs/events.md: each row belongs to a partition (a
-- tenant's events share one) whose rows are delivered one at a time in the order they were
-- written (`seq`), and says where it is in its delivery (`state`). Rows written before this
-- migration each get a partition of their own.

ALTER TABLE outbox ADD COLUMN partition_key text COLLATE "C";
UPDATE outbox SET partition_key = id::text;
ALTER TABLE outbox ALTER COLUMN partition_key SET NOT NULL;

ALTER TABLE outbox ADD COLUMN state text COLLATE "C" NOT NULL DEFAULT 'pending'
    CHECK (state IN ('pending', 'delivered', 'failed'));
UPDATE outbox SET state = CASE WHEN delivered_at IS NOT NULL THEN 'delivered'
                               WHEN attempts > 0 THEN 'failed'
                               ELSE 'pending' END;

ALTER TABLE outbox ADD COLUMN seq bigint GENERATED ALWAYS AS IDENTITY;

-- The claim's "no earlier undelivered row in this partition".
CREATE INDEX outbox_partition_idx ON outbox (topic, partition_key, seq) WHERE delivered_at IS NULL;
