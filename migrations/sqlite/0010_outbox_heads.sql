-- The relay's claim reads the heads of the partitions directly: `head` marks the oldest
-- undelivered row of each partition (the only one that may be claimed), kept so by the outbox's
-- writes (a row written into a partition with no undelivered row is its head; delivering a head
-- passes the mark to the next row), and the heads that are due are read, oldest first, from an
-- index of their own, so the claim never reads the backlog behind them.

ALTER TABLE outbox ADD COLUMN head INTEGER NOT NULL DEFAULT 0 CHECK (head IN (0, 1));

UPDATE outbox SET head = 1
 WHERE delivered_at IS NULL
   AND NOT EXISTS (SELECT 1 FROM outbox e
                    WHERE e.topic = outbox.topic AND e.partition_key = outbox.partition_key
                      AND e.delivered_at IS NULL AND e.seq < outbox.seq);

CREATE INDEX outbox_head_idx ON outbox (topic, next_attempt_at, seq)
    WHERE head AND delivered_at IS NULL;

-- The former claim's index: the claim no longer reads it. The pruner reads delivered rows by
-- time.
DROP INDEX outbox_due_idx;
CREATE INDEX outbox_delivered_idx ON outbox (delivered_at) WHERE delivered_at IS NOT NULL;
