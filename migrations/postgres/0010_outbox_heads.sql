-- The relay's claim reads the heads of the partitions directly: `head` marks the oldest
-- undelivered row of each partition (the only one that may be claimed), kept so by the outbox's
-- writes (a row written into a partition with no undelivered row is its head; delivering a head
-- passes the mark to the next row), and the heads that are due are read, oldest first, from an
-- index of their own. The claim's plan then cannot depend on statistics: it walks that index
-- and stops at the first free head, whatever the backlog or the history behind it.

ALTER TABLE outbox ADD COLUMN head boolean NOT NULL DEFAULT false;

UPDATE outbox o SET head = true
 WHERE o.delivered_at IS NULL
   AND NOT EXISTS (SELECT 1 FROM outbox e
                    WHERE e.topic = o.topic AND e.partition_key = o.partition_key
                      AND e.delivered_at IS NULL AND e.seq < o.seq);

CREATE INDEX outbox_head_idx ON outbox (topic, next_attempt_at, seq)
    WHERE head AND delivered_at IS NULL;

-- The former claim's index: the claim no longer reads it, and it offered the planner a way to
-- read every undelivered row. The pruner reads delivered rows by time.
DROP INDEX outbox_due_idx;
CREATE INDEX outbox_delivered_idx ON outbox (delivered_at) WHERE delivered_at IS NOT NULL;
