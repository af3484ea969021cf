-- faultline schema, PostgreSQL. Same tables and meaning as migrations/sqlite; timestamps are
-- BIGINT milliseconds since the epoch, UTC.
CREATE EXTENSION IF NOT EXISTS pg_trgm;

CREATE TABLE patterns (
    id                  BIGSERIAL PRIMARY KEY,
    fingerprint         TEXT    NOT NULL UNIQUE,
    fingerprint_version INTEGER NOT NULL,
    tier                TEXT    NOT NULL,
    normalized_message  TEXT    NOT NULL,
    error_type          TEXT,
    frames              JSONB   NOT NULL DEFAULT '[]',
    first_seen_ms       BIGINT  NOT NULL,
    last_seen_ms        BIGINT  NOT NULL,
    occurrence_count    BIGINT  NOT NULL DEFAULT 0,
    sample_entry_id     BIGINT,
    sample_message      TEXT,
    stack_trace         TEXT,
    source              TEXT    NOT NULL,
    severity            TEXT    NOT NULL,
    status              TEXT    NOT NULL DEFAULT 'new'
                        CHECK (status IN ('new', 'known', 'resolved', 'ignored')),
    created_ms          BIGINT  NOT NULL,
    updated_ms          BIGINT  NOT NULL
);
CREATE INDEX patterns_count ON patterns (occurrence_count DESC);
CREATE INDEX patterns_first_seen ON patterns (first_seen_ms);
CREATE INDEX patterns_last_seen ON patterns (last_seen_ms);

CREATE TABLE entries (
    id             BIGSERIAL PRIMARY KEY,
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
    pattern_id     BIGINT NOT NULL REFERENCES patterns (id),
    raw            TEXT   NOT NULL
);
CREATE UNIQUE INDEX entries_origin ON entries (source_id, external_id);
CREATE INDEX entries_ts ON entries (timestamp_ms);
CREATE INDEX entries_pattern_ts ON entries (pattern_id, timestamp_ms);
-- Substring search: trigram GIN index over the same text SQLite indexes.
CREATE INDEX entries_search ON entries
    USING gin ((message || E'\n' || coalesce(traceback, '')) gin_trgm_ops);

CREATE VIEW occurrences AS
    SELECT id AS entry_id, pattern_id, timestamp_ms AS occurred_at_ms FROM entries;

CREATE TABLE minute_counts (
    minute_ms  BIGINT NOT NULL,
    pattern_id BIGINT NOT NULL,
    source     TEXT   NOT NULL,
    level      TEXT   NOT NULL,
    count      BIGINT NOT NULL,
    stored     BIGINT NOT NULL,
    PRIMARY KEY (minute_ms, pattern_id, source, level)
);

CREATE TABLE line_counts (
    minute_ms BIGINT NOT NULL,
    source_id TEXT   NOT NULL,
    level     TEXT   NOT NULL,
    count     BIGINT NOT NULL,
    PRIMARY KEY (minute_ms, source_id, level)
);

CREATE TABLE source_cursors (
    source_id  TEXT PRIMARY KEY,
    cursor     TEXT   NOT NULL,
    updated_ms BIGINT NOT NULL
);

CREATE TABLE job_runs (
    id          BIGSERIAL PRIMARY KEY,
    job         TEXT   NOT NULL,
    started_ms  BIGINT NOT NULL,
    finished_ms BIGINT,
    outcome     TEXT,
    detail      JSONB
);
CREATE INDEX job_runs_job ON job_runs (job, started_ms);

CREATE TABLE alert_rules (
    id                BIGSERIAL PRIMARY KEY,
    name              TEXT    NOT NULL UNIQUE,
    rule_type         TEXT    NOT NULL,
    condition         JSONB   NOT NULL DEFAULT '{}',
    enabled           BOOLEAN NOT NULL DEFAULT TRUE,
    cooldown_minutes  INTEGER NOT NULL DEFAULT 30,
    last_triggered_ms BIGINT,
    trigger_count     INTEGER NOT NULL DEFAULT 0,
    created_ms        BIGINT  NOT NULL
);

CREATE TABLE alerts (
    id         BIGSERIAL PRIMARY KEY,
    rule_id    BIGINT REFERENCES alert_rules (id),
    pattern_id BIGINT REFERENCES patterns (id),
    fired_ms   BIGINT NOT NULL,
    summary    TEXT   NOT NULL,
    payload    JSONB  NOT NULL DEFAULT '{}'
);

CREATE TABLE tasks (
    id         BIGSERIAL PRIMARY KEY,
    alert_id   BIGINT REFERENCES alerts (id),
    pattern_id BIGINT REFERENCES patterns (id),
    dedupe_key TEXT   NOT NULL UNIQUE,
    title      TEXT   NOT NULL,
    body       TEXT   NOT NULL,
    status     TEXT   NOT NULL DEFAULT 'open',
    created_ms BIGINT NOT NULL,
    updated_ms BIGINT NOT NULL
);
