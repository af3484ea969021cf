-- faultline schema, SQLite. Timestamps are INTEGER milliseconds since the epoch, UTC.

-- One row per error pattern (fingerprint). Counts are lifetime totals and stay exact even
-- when raw entries are capped or removed by retention.
CREATE TABLE patterns (
    id                  INTEGER PRIMARY KEY,
    fingerprint         TEXT    NOT NULL UNIQUE,
    fingerprint_version INTEGER NOT NULL,
    tier                TEXT    NOT NULL,
    normalized_message  TEXT    NOT NULL,
    error_type          TEXT,
    frames              TEXT    NOT NULL DEFAULT '[]', -- JSON array of "module:function"
    first_seen_ms       INTEGER NOT NULL,
    last_seen_ms        INTEGER NOT NULL,
    occurrence_count    INTEGER NOT NULL DEFAULT 0,
    sample_entry_id     INTEGER,
    sample_message      TEXT,
    stack_trace         TEXT,
    source              TEXT    NOT NULL,
    severity            TEXT    NOT NULL,
    status              TEXT    NOT NULL DEFAULT 'new'
                        CHECK (status IN ('new', 'known', 'resolved', 'ignored')),
    created_ms          INTEGER NOT NULL,
    updated_ms          INTEGER NOT NULL
);
CREATE INDEX patterns_count ON patterns (occurrence_count DESC);
CREATE INDEX patterns_first_seen ON patterns (first_seen_ms);
CREATE INDEX patterns_last_seen ON patterns (last_seen_ms);

-- Stored error entries. (source_id, external_id) makes ingestion idempotent.
CREATE TABLE entries (
    id             INTEGER PRIMARY KEY,
    source_id      TEXT    NOT NULL,
    external_id    TEXT    NOT NULL,
    timestamp_ms   INTEGER NOT NULL,
    level          TEXT    NOT NULL,
    source         TEXT    NOT NULL,
    message        TEXT    NOT NULL,
    traceback      TEXT,
    request_path   TEXT,
    request_method TEXT,
    metadata       TEXT,
    pattern_id     INTEGER NOT NULL REFERENCES patterns (id),
    raw            TEXT    NOT NULL
);
CREATE UNIQUE INDEX entries_origin ON entries (source_id, external_id);
CREATE INDEX entries_ts ON entries (timestamp_ms);
CREATE INDEX entries_pattern_ts ON entries (pattern_id, timestamp_ms);

-- Occurrences of a pattern are its entries; the view gives them the design's name.
CREATE VIEW occurrences AS
    SELECT id AS entry_id, pattern_id, timestamp_ms AS occurred_at_ms FROM entries;

-- Substring search: a trigram index over the words of message + traceback, one FTS row per
-- chunk of 256 consecutive entries (rowid = entry id / 256) holding each distinct word of the
-- chunk once. Entries of a chunk share most of their words, so the index is far smaller and
-- cheaper to build than one row per entry, and a hit costs at most 256 candidate rows, each
-- re-checked with the exact LIKE. It is filled once per batch (never by a
-- per-row trigger, which costs SQLite ~20x on ingest); see SqliteStore::ingest and search.
CREATE VIRTUAL TABLE entries_fts USING fts5 (
    body, content = '', contentless_delete = 1, tokenize = 'trigram', detail = none
);
-- Merge segments less eagerly while ingesting; cleanup runs 'optimize'.
INSERT INTO entries_fts (entries_fts, rank) VALUES ('automerge', 16);

-- Exact counts per minute × pattern × source × level: rates and charts never scan entries.
CREATE TABLE minute_counts (
    minute_ms  INTEGER NOT NULL,
    pattern_id INTEGER NOT NULL,
    source     TEXT    NOT NULL,
    level      TEXT    NOT NULL,
    count      INTEGER NOT NULL,
    stored     INTEGER NOT NULL,
    PRIMARY KEY (minute_ms, pattern_id, source, level)
) WITHOUT ROWID;

-- Lines read but not stored (below the minimum level), per minute × source × level.
CREATE TABLE line_counts (
    minute_ms INTEGER NOT NULL,
    source_id TEXT    NOT NULL,
    level     TEXT    NOT NULL,
    count     INTEGER NOT NULL,
    PRIMARY KEY (minute_ms, source_id, level)
) WITHOUT ROWID;

-- Where each source resumes (file offset, journal cursor, crawler position).
CREATE TABLE source_cursors (
    source_id  TEXT PRIMARY KEY,
    cursor     TEXT    NOT NULL,
    updated_ms INTEGER NOT NULL
);

-- Scheduled and manual job runs (crawls, checks, retention).
CREATE TABLE job_runs (
    id          INTEGER PRIMARY KEY,
    job         TEXT    NOT NULL,
    started_ms  INTEGER NOT NULL,
    finished_ms INTEGER,
    outcome     TEXT,
    detail      TEXT
);
CREATE INDEX job_runs_job ON job_runs (job, started_ms);

CREATE TABLE alert_rules (
    id                INTEGER PRIMARY KEY,
    name              TEXT    NOT NULL UNIQUE,
    rule_type         TEXT    NOT NULL,
    condition         TEXT    NOT NULL DEFAULT '{}',
    enabled           INTEGER NOT NULL DEFAULT 1,
    cooldown_minutes  INTEGER NOT NULL DEFAULT 30,
    last_triggered_ms INTEGER,
    trigger_count     INTEGER NOT NULL DEFAULT 0,
    created_ms        INTEGER NOT NULL
);

CREATE TABLE alerts (
    id         INTEGER PRIMARY KEY,
    rule_id    INTEGER REFERENCES alert_rules (id),
    pattern_id INTEGER REFERENCES patterns (id),
    fired_ms   INTEGER NOT NULL,
    summary    TEXT    NOT NULL,
    payload    TEXT    NOT NULL DEFAULT '{}'
);

CREATE TABLE tasks (
    id         INTEGER PRIMARY KEY,
    alert_id   INTEGER REFERENCES alerts (id),
    pattern_id INTEGER REFERENCES patterns (id),
    dedupe_key TEXT    NOT NULL UNIQUE,
    title      TEXT    NOT NULL,
    body       TEXT    NOT NULL,
    status     TEXT    NOT NULL DEFAULT 'open',
    created_ms INTEGER NOT NULL,
    updated_ms INTEGER NOT NULL
);
