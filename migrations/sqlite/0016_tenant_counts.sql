-- Live tenants counted by status, so that `GET /tenants/count` of all tenants or of one status
-- (the console's tabs) reads a row or a few however many tenants there are
-- (store/crud.rs, count_statement). Kept by triggers in the statement that writes the tenant.
-- One writer at a time here: one shard per status (0), the column kept for the same table on
-- both databases.
CREATE TABLE tenant_status_counts (
    status INTEGER NOT NULL,
    shard  INTEGER NOT NULL,
    n      INTEGER NOT NULL,
    PRIMARY KEY (status, shard)
) STRICT, WITHOUT ROWID;

CREATE TRIGGER tenant_status_counts_on_insert AFTER INSERT ON tenants WHEN NOT NEW.deleted
BEGIN
    INSERT INTO tenant_status_counts (status, shard, n) VALUES (NEW.status, 0, 1)
        ON CONFLICT (status, shard) DO UPDATE SET n = n + 1;
END;

CREATE TRIGGER tenant_status_counts_on_update_old AFTER UPDATE OF status, deleted ON tenants
    WHEN NOT OLD.deleted
BEGIN
    UPDATE tenant_status_counts SET n = n - 1 WHERE status = OLD.status AND shard = 0;
END;

CREATE TRIGGER tenant_status_counts_on_update_new AFTER UPDATE OF status, deleted ON tenants
    WHEN NOT NEW.deleted
BEGIN
    INSERT INTO tenant_status_counts (status, shard, n) VALUES (NEW.status, 0, 1)
        ON CONFLICT (status, shard) DO UPDATE SET n = n + 1;
END;

CREATE TRIGGER tenant_status_counts_on_delete AFTER DELETE ON tenants WHEN NOT OLD.deleted
BEGIN
    UPDATE tenant_status_counts SET n = n - 1 WHERE status = OLD.status AND shard = 0;
END;

INSERT INTO tenant_status_counts (status, shard, n)
    SELECT status, 0, count(*) FROM tenants WHERE NOT deleted GROUP BY status;
