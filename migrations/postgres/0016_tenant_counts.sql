-- Live tenants counted by status, so that `GET /tenants/count` of all tenants or of one status
-- (the console's tabs) reads at most 64 rows however many tenants there are
-- (store/crud.rs, count_statement). Kept by a trigger in the statement that writes the tenant,
-- whoever writes it. Each status is spread over 64 shards by the tenant's id, so that concurrent
-- onboardings rarely wait on one another's counter row.
CREATE TABLE tenant_status_counts (
    status smallint NOT NULL,
    shard  smallint NOT NULL,
    n      bigint NOT NULL,
    PRIMARY KEY (status, shard)
);

CREATE FUNCTION tenant_status_counts_keep() RETURNS trigger
LANGUAGE plpgsql
SET search_path FROM CURRENT
AS $$
DECLARE
    gone   smallint;
    come   smallint;
    bucket smallint;
BEGIN
    IF TG_OP <> 'INSERT' AND NOT OLD.deleted THEN
        gone := OLD.status;
    END IF;
    IF TG_OP <> 'DELETE' AND NOT NEW.deleted THEN
        come := NEW.status;
    END IF;
    IF gone IS NOT DISTINCT FROM come THEN
        RETURN NULL;
    END IF;
    IF TG_OP = 'DELETE' THEN
        bucket := get_byte(uuid_send(OLD.id), 15) % 64;
    ELSE
        bucket := get_byte(uuid_send(NEW.id), 15) % 64;
    END IF;
    -- The lower status first: two moves between the same statuses lock their rows in one order.
    IF gone IS NOT NULL AND (come IS NULL OR gone < come) THEN
        UPDATE tenant_status_counts SET n = n - 1 WHERE status = gone AND shard = bucket;
        gone := NULL;
    END IF;
    IF come IS NOT NULL THEN
        INSERT INTO tenant_status_counts AS c (status, shard, n) VALUES (come, bucket, 1)
            ON CONFLICT (status, shard) DO UPDATE SET n = c.n + 1;
    END IF;
    IF gone IS NOT NULL THEN
        UPDATE tenant_status_counts SET n = n - 1 WHERE status = gone AND shard = bucket;
    END IF;
    RETURN NULL;
END;
$$;

CREATE TRIGGER tenant_status_counts_keep
    AFTER INSERT OR DELETE OR UPDATE OF status, deleted ON tenants
    FOR EACH ROW EXECUTE FUNCTION tenant_status_counts_keep();

INSERT INTO tenant_status_counts (status, shard, n)
    SELECT status, get_byte(uuid_send(id), 15) % 64, count(*) FROM tenants
    WHERE NOT deleted GROUP BY 1, 2;
