-- Entries partitioned by the UTC day of their time: retention drops whole days (constant time,
-- the space returned at once), and a query over a time range reads only its days. Days are
-- created ahead by `entries_partition_for` (called when a store opens and by the retention
-- job); an entry whose day has no partition yet (far in the past or the future) waits in
-- `entries_default` and moves to its day's partition when that is created.
--
-- No foreign key to patterns: making a day's partition would then lock `patterns` against the
-- batches being stored, which take it after `entries` (a deadlock), and every row would pay for
-- the check. Ingest takes each pattern id from `patterns` in the batch's own transaction.
--
-- A unique index on a partitioned table must hold the partition key, but an event's key must
-- stay unique whatever time it carries (a record sent again without its time is stamped on
-- arrival again). So keys move out, to `entry_keys`: one narrow row per stored entry.

DROP VIEW occurrences;
ALTER TABLE entries RENAME TO entries_unpartitioned;
ALTER INDEX entries_pkey RENAME TO entries_unpartitioned_pkey;
ALTER INDEX entries_origin RENAME TO entries_unpartitioned_origin;
ALTER INDEX entries_ts RENAME TO entries_unpartitioned_ts;
ALTER INDEX entries_pattern_ts RENAME TO entries_unpartitioned_pattern_ts;

CREATE TABLE entries (
    id             BIGINT NOT NULL DEFAULT nextval('entries_id_seq'),
    source_id      TEXT   NOT NULL,
    external_id    TEXT   NOT NULL,
    timestamp_ms   BIGINT NOT NULL,
    level          TEXT   NOT NULL,
    source         TEXT   NOT NULL,
    message        TEXT   NOT NULL,
    traceback      TEXT,
    request_path   TEXT,
    request_method TEXT,
    metadata       JSONB,
    pattern_id     BIGINT NOT NULL,
    raw            TEXT   NOT NULL
) PARTITION BY RANGE (timestamp_ms);
ALTER SEQUENCE entries_id_seq OWNED BY entries.id;
CREATE INDEX entries_id ON entries (id);
CREATE INDEX entries_ts ON entries (timestamp_ms);
CREATE INDEX entries_pattern_ts ON entries (pattern_id, timestamp_ms);
CREATE TABLE entries_default PARTITION OF entries DEFAULT;

CREATE TABLE entry_keys (
    source_id    TEXT   NOT NULL,
    external_id  TEXT   NOT NULL,
    timestamp_ms BIGINT NOT NULL,
    PRIMARY KEY (source_id, external_id)
);

-- The name of the partition of the UTC day holding `at_ms`: entries_YYYY_MM_DD.
CREATE FUNCTION entries_partition_name(at_ms BIGINT) RETURNS TEXT LANGUAGE sql STABLE AS $$
    SELECT 'entries_' || to_char(to_timestamp((at_ms - at_ms % 86400000) / 1000) AT TIME ZONE 'UTC', 'YYYY_MM_DD')
$$;

-- The partition of the day holding `at_ms` (milliseconds, UTC), named entries_YYYY_MM_DD, unless
-- it exists; entries of that day waiting in the default partition move into it. Returns whether
-- it was created. It locks `entries` (and its default partition) and nothing else, so it waits
-- for the batches being stored and never deadlocks with them; the lock holds until the caller
-- commits.
CREATE FUNCTION entries_partition_for(at_ms BIGINT) RETURNS BOOLEAN LANGUAGE plpgsql AS $$
DECLARE
    day_ms BIGINT := at_ms - at_ms % 86400000;
    upto   BIGINT := day_ms + 86400000;
    name   TEXT := entries_partition_name(at_ms);
BEGIN
    IF at_ms < 0 OR to_regclass(name) IS NOT NULL THEN
        RETURN FALSE;
    END IF;
    LOCK TABLE entries IN ACCESS EXCLUSIVE MODE;
    IF to_regclass(name) IS NOT NULL THEN
        RETURN FALSE;
    END IF;
    IF EXISTS (SELECT 1 FROM entries_default WHERE timestamp_ms >= day_ms AND timestamp_ms < upto) THEN
        EXECUTE format('CREATE TABLE %I (LIKE entries INCLUDING DEFAULTS)', name);
        EXECUTE format('WITH moved AS (DELETE FROM entries_default WHERE timestamp_ms >= %s AND timestamp_ms < %s
                        RETURNING *) INSERT INTO %I SELECT * FROM moved', day_ms, upto, name);
        EXECUTE format('ALTER TABLE entries ATTACH PARTITION %I FOR VALUES FROM (%s) TO (%s)', name, day_ms, upto);
    ELSE
        EXECUTE format('CREATE TABLE %I PARTITION OF entries FOR VALUES FROM (%s) TO (%s)', name, day_ms, upto);
    END IF;
    RETURN TRUE;
END $$;

-- Drops the day partitions that end at or before `before_ms`; returns how many entries they held
-- and the bytes given back (tables, indexes and TOAST).
CREATE FUNCTION drop_entries_partitions_before(before_ms BIGINT, OUT entries BIGINT, OUT bytes BIGINT)
LANGUAGE plpgsql AS $$
DECLARE
    part RECORD;
    held BIGINT;
BEGIN
    entries := 0;
    bytes := 0;
    FOR part IN
        SELECT c.oid, c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
        WHERE i.inhparent = 'entries'::regclass AND c.relname ~ '^entries_\d{4}_\d{2}_\d{2}$'
            AND extract(epoch FROM to_date(substr(c.relname, 9), 'YYYY_MM_DD'))::bigint * 1000 + 86400000
                <= before_ms
    LOOP
        EXECUTE format('SELECT count(*) FROM %I', part.relname) INTO held;
        bytes := bytes + pg_total_relation_size(part.oid);
        EXECUTE format('DROP TABLE %I', part.relname);
        entries := entries + held;
    END LOOP;
END $$;

-- Existing entries: a partition for each day they fall on within a year back and a week ahead;
-- the rest wait in the default partition.
SELECT entries_partition_for(day_ms)
FROM (SELECT DISTINCT timestamp_ms - timestamp_ms % 86400000 AS day_ms FROM entries_unpartitioned
      WHERE timestamp_ms >= (extract(epoch FROM now())::bigint - 366 * 86400) * 1000
        AND timestamp_ms < (extract(epoch FROM now())::bigint + 8 * 86400) * 1000) days
ORDER BY day_ms;

INSERT INTO entries (id, source_id, external_id, timestamp_ms, level, source, message, traceback, request_path,
    request_method, metadata, pattern_id, raw)
SELECT id, source_id, external_id, timestamp_ms, level, source, message, traceback, request_path,
    request_method, metadata, pattern_id, raw
FROM entries_unpartitioned;
INSERT INTO entry_keys (source_id, external_id, timestamp_ms)
SELECT source_id, external_id, timestamp_ms FROM entries_unpartitioned;
DROP TABLE entries_unpartitioned;

CREATE VIEW occurrences AS
    SELECT id AS entry_id, pattern_id, timestamp_ms AS occurred_at_ms FROM entries;
