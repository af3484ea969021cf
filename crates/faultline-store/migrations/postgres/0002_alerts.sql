-- Alerts, investigation tasks and the notification outbox. The 01 alerts and tasks tables
-- were never written to; they are replaced.
DROP TABLE tasks;
DROP TABLE alerts;

-- What a rule does when it fires: create or update the task, notify, or both.
ALTER TABLE alert_rules ADD COLUMN action TEXT NOT NULL DEFAULT 'task_and_notify'
    CHECK (action IN ('task_and_notify', 'task', 'notify'));

-- One row per alert sent. subject: 'pattern:<id>', 'error_rate:<health>' or 'flood_guard'.
CREATE TABLE alerts (
    id         BIGSERIAL PRIMARY KEY,
    rule_id    BIGINT REFERENCES alert_rules (id),
    rule_type  TEXT    NOT NULL,
    subject    TEXT    NOT NULL,
    pattern_id BIGINT REFERENCES patterns (id),
    fired_ms   BIGINT NOT NULL,
    priority   TEXT    NOT NULL,
    summary    TEXT    NOT NULL,
    reason     TEXT    NOT NULL,
    payload    TEXT    NOT NULL DEFAULT '{}', -- JSON: what notifiers send
    task_id    BIGINT
);
CREATE INDEX alerts_rule_subject ON alerts (rule_id, subject, fired_ms);
CREATE INDEX alerts_fired ON alerts (fired_ms);

-- Investigation tasks. At most one open (or in-progress) task per subject: later alerts
-- update it and add an event.
CREATE TABLE tasks (
    id          BIGSERIAL PRIMARY KEY,
    subject     TEXT    NOT NULL,
    pattern_id  BIGINT REFERENCES patterns (id),
    task_type   TEXT    NOT NULL DEFAULT 'investigate_error',
    title       TEXT    NOT NULL,
    description TEXT    NOT NULL,
    priority    TEXT    NOT NULL CHECK (priority IN ('low', 'medium', 'high')),
    status      TEXT    NOT NULL DEFAULT 'open'
                CHECK (status IN ('open', 'in_progress', 'done', 'dismissed')),
    metadata    TEXT    NOT NULL DEFAULT '{}', -- JSON: fingerprint, counts, rules that fired
    alert_count INTEGER NOT NULL DEFAULT 0,
    created_ms  BIGINT NOT NULL,
    updated_ms  BIGINT NOT NULL
);
CREATE UNIQUE INDEX tasks_one_open ON tasks (subject) WHERE status IN ('open', 'in_progress');
CREATE INDEX tasks_pattern ON tasks (pattern_id);

CREATE TABLE task_events (
    id      BIGSERIAL PRIMARY KEY,
    task_id BIGINT NOT NULL REFERENCES tasks (id),
    at_ms   BIGINT NOT NULL,
    kind    TEXT    NOT NULL,
    detail  TEXT    NOT NULL
);
CREATE INDEX task_events_task ON task_events (task_id, at_ms);

-- The notification outbox: one delivery per alert and notifier, retried until sent or given up.
CREATE TABLE deliveries (
    id              BIGSERIAL PRIMARY KEY,
    alert_id        BIGINT NOT NULL REFERENCES alerts (id),
    notifier        TEXT    NOT NULL,
    idempotency_key TEXT    NOT NULL,
    status          TEXT    NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'sent', 'failed')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_ms BIGINT NOT NULL,
    lease_until_ms  BIGINT NOT NULL DEFAULT 0,
    last_error      TEXT,
    created_ms      BIGINT NOT NULL,
    updated_ms      BIGINT NOT NULL,
    UNIQUE (alert_id, notifier)
);
CREATE INDEX deliveries_due ON deliveries (status, next_attempt_ms);

CREATE TABLE delivery_attempts (
    id          BIGSERIAL PRIMARY KEY,
    delivery_id BIGINT NOT NULL REFERENCES deliveries (id),
    at_ms       BIGINT NOT NULL,
    outcome     TEXT    NOT NULL, -- sent, retry, failed
    detail      TEXT
);
CREATE INDEX delivery_attempts_delivery ON delivery_attempts (delivery_id);

-- What a notifier created for a subject (a GitHub issue number), so a recurrence comments on it.
CREATE TABLE notifier_refs (
    notifier  TEXT NOT NULL,
    subject   TEXT NOT NULL,
    reference TEXT NOT NULL,
    PRIMARY KEY (notifier, subject)
);
