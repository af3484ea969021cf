-- The first and the latest occurrence inside each minute, for the sustained rule (NULL in
-- minutes counted before: taken as the whole minute).
ALTER TABLE minute_counts ADD COLUMN first_ms BIGINT, ADD COLUMN last_ms BIGINT;

-- What ingest committed, for the alert rules, whichever process wrote it: one row per pattern
-- per batch, written in the batch's transaction. An evaluator claims rows until
-- claimed_until_ms (a crashed evaluator's rows are taken over after it), evaluates them and
-- deletes them.
CREATE TABLE alert_feed (
    seq              BIGSERIAL PRIMARY KEY,
    pattern_id       BIGINT  NOT NULL,
    new              BOOLEAN NOT NULL,
    regressed        BOOLEAN NOT NULL,
    level            TEXT    NOT NULL,
    status           TEXT    NOT NULL,
    committed_ms     BIGINT  NOT NULL,
    claimed_by       TEXT,
    claimed_until_ms BIGINT  NOT NULL DEFAULT 0
);
CREATE INDEX alert_feed_claim ON alert_feed (claimed_until_ms, seq);

-- Scheduled jobs shared by the instances on one database: who runs a job now (and until when
-- the claim holds if it dies), and when the job is next due.
CREATE TABLE job_leases (
    job        TEXT   PRIMARY KEY,
    holder     TEXT,
    expires_ms BIGINT NOT NULL DEFAULT 0,
    due_ms     BIGINT NOT NULL DEFAULT 0
);
ALTER TABLE job_runs ADD COLUMN instance TEXT;

-- An alert past the flood limits is recorded with its task, its notifications held back
-- (held) until a digest alert (digest_id) sums them up.
ALTER TABLE alerts ADD COLUMN held BOOLEAN NOT NULL DEFAULT FALSE, ADD COLUMN digest_id BIGINT;
CREATE INDEX alerts_held ON alerts (digest_id) WHERE held;
CREATE INDEX alerts_subject ON alerts (subject, fired_ms);
