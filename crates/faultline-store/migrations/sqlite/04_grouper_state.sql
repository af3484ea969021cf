-- The template miner's state (faultline_core::GrouperState as JSON), one row per fingerprint
-- version: restored when the store opens, so the same input after a restart maps to the same
-- patterns.
CREATE TABLE grouper_state (
    version    INTEGER PRIMARY KEY,
    state      TEXT    NOT NULL,
    updated_ms INTEGER NOT NULL
);
