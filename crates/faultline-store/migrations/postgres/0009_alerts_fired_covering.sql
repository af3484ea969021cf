-- The flood limits count the notifications of the last hour at every alert (NOTIFIED_SINCE):
-- the columns that count needs are in the index, so it does not read each alert's row.
DROP INDEX alerts_fired;
CREATE INDEX alerts_fired ON alerts (fired_ms, held, rule_type, pattern_id);
