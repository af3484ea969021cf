-- The template miner's state shared by the instances on this database, one row per bucket of
-- lines (faultline_core::BucketState as JSON; a bucket is a token count and a leading token, and
-- a line is only ever compared with its bucket's families). An instance reads a bucket when its
-- revision moved on since it last did, mines, and writes the buckets its lines changed with the
-- batch, each only if its revision is still the one it read (optimistic concurrency): two
-- instances never both create a group for one template. `grouper_state` keeps whole states for
-- SQLite; a PostgreSQL database's saved state is split into buckets when an instance first finds
-- this table empty.
CREATE TABLE miner_buckets (
    bucket     TEXT    PRIMARY KEY,
    rev        BIGINT  NOT NULL,
    version    INTEGER NOT NULL,
    state      TEXT    NOT NULL,
    updated_ms BIGINT  NOT NULL
);
