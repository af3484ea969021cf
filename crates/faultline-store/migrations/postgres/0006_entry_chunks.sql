-- Substring search indexes chunks of entries instead of each entry: one row per run of up to
-- 256 consecutive entries, holding the distinct lines of their text, under the trigram index.
-- A trigram index costs per distinct trigram of each row; within a chunk, lines and words that
-- repeat (stack frames, the fixed words of a message) are indexed once. Search finds candidate
-- chunks through it and re-checks each of their entries (see postgres.rs).
CREATE TABLE entry_chunks (
    first_id BIGINT PRIMARY KEY,
    last_id  BIGINT NOT NULL,
    doc      TEXT   NOT NULL
);

INSERT INTO entry_chunks (first_id, last_id, doc)
SELECT min(id), max(id), string_agg(DISTINCT line, E'\n')
FROM (SELECT id, regexp_split_to_table(message || E'\n' || coalesce(traceback, ''), E'\n') AS line
      FROM entries) lines
GROUP BY id / 256;

CREATE INDEX entry_chunks_doc ON entry_chunks USING gin (doc gin_trgm_ops);
DROP INDEX entries_search;
