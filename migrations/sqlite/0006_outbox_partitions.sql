-- The outbox grows into the event log of docs/events.md: each row belongs to a partition (a
-- tenant's events share one) whose rows are delivered one at a time in the order they were
-- written (`seq`), and says where it is in its delivery (`state`). Rows written before this
-- migration each get a partition of their own. On SQLite `seq` is set by the insert (one writer
-- at a time): the largest so far plus one.

ALTER TABLE outbox ADD COLUMN partition_key TEXT NOT NULL DEFAULT '';
UPDATE outbox SET partition_key = id;

ALTER TABLE outbox ADD COLUMN state TEXT NOT NULL DEFAULT 'pending'
    CHECK (state IN ('pending', 'delivered', 'failed'));
UPDATE outbox SET state = CASE WHEN delivered_at IS NOT NULL THEN 'delivered'
                               WHEN attempts > 0 THEN 'failed'
                               ELSE 'pending' END;

ALTER TABLE outbox ADD COLUMN seq INTEGER NOT NULL DEFAULT 0;
UPDATE outbox SET seq = rowid;

-- The claim's "no earlier undelivered row in this partition".
CREATE INDEX outbox_partition_idx ON outbox (topic, partition_key, seq) WHERE delivered_at IS NULL;
