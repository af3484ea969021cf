-- Counts per 15 minutes × pattern × source × level, kept with minute_counts in the same
-- transaction: the 24-hour views read whole quarters here and only the edges from minute_counts.
CREATE TABLE quarter_counts (
    quarter_ms BIGINT NOT NULL,
    pattern_id BIGINT NOT NULL,
    source     TEXT   NOT NULL,
    level      TEXT   NOT NULL,
    count      BIGINT NOT NULL,
    PRIMARY KEY (quarter_ms, pattern_id, source, level)
);

INSERT INTO quarter_counts (quarter_ms, pattern_id, source, level, count)
SELECT minute_ms - minute_ms % 900000, pattern_id, source, level, sum(count)
FROM minute_counts GROUP BY 1, 2, 3, 4;
