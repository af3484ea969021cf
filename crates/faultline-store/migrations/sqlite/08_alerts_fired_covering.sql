-- The flood limits count the notifications of the last hour at every alert (NOTIFIED_SINCE):
-- with the index on fired_ms alone, each counted alert was read from the table, payload and
-- all, so a storm of new patterns cost quadratic reads. The columns the count needs are now in
-- the index.
DROP INDEX alerts_fired;
CREATE INDEX alerts_fired ON alerts (fired_ms, held, rule_type, pattern_id);
