-- The first and the latest occurrence inside each minute, for the sustained rule (NULL in
-- minutes counted before: taken as the whole minute).
ALTER TABLE minute_counts ADD COLUMN first_ms INTEGER;
ALTER TABLE minute_counts ADD COLUMN last_ms INTEGER;

-- What ingest committed, for the alert rules, whichever process wrote it: one row per pattern
-- per batch, written in the batch's transaction. An evaluator claims rows until
-- claimed_until_ms (a crashed evaluator's rows are taken over after it), evaluates them and
-- deletes them.
CREATE TABLE alert_feed (
    seq              INTEGER PRIMARY KEY AUTOINCREMENT,
    pattern_id       INTEGER NOT NULL,
    new              INTEGER NOT NULL,
    regressed        INTEGER NOT NULL,
    level            TEXT    NOT NULL,
    status           TEXT    NOT NULL,
    committed_ms     INTEGER NOT NULL,
    claimed_by       TEXT,
    claimed_until_ms INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX alert_feed_claim ON alert_feed (claimed_until_ms, seq);

-- Scheduled jobs shared by the instances on one database: who runs a job now (and until when
-- the claim holds if it dies), and when the job is next due.
CREATE TABLE job_leases (
    job        TEXT    PRIMARY KEY,
    holder     TEXT,
    expires_ms INTEGER NOT NULL DEFAULT 0,
    due_ms     INTEGER NOT NULL DEFAULT 0
);
ALTER TABLE job_runs ADD COLUMN instance TEXT;

-- An alert past the flood limits is recorded with its task, its notifications held back
-- (held = 1) until a digest alert (digest_id) sums them up.
ALTER TABLE alerts ADD COLUMN held INTEGER NOT NULL DEFAULT 0;
ALTER TABLE alerts ADD COLUMN digest_id INTEGER;
CREATE INDEX alerts_held ON alerts (digest_id) WHERE held = 1;
CREATE INDEX alerts_subject ON alerts (subject, fired_ms);
