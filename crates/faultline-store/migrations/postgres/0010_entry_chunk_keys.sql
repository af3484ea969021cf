-- The search index holds, per chunk of entries, the keys the writer computes (each run of three
-- ASCII letters or digits of their text, folded to lower case, as the three bytes of an int4)
-- under a GIN index on the array, instead of the chunk's distinct lines under pg_trgm's trigram
-- index: the text is not stored twice, and PostgreSQL no longer splits it into trigrams. Those
-- runs are the trigrams of pg_trgm's `show_trgm` made of three ASCII letters or digits, so the
-- existing chunks are converted from their text.
ALTER TABLE entry_chunks ADD COLUMN keys INT4[];
UPDATE entry_chunks SET keys = ARRAY(
    SELECT (ascii(substr(t, 1, 1)) << 16) | (ascii(substr(t, 2, 1)) << 8) | ascii(substr(t, 3, 1))
    FROM unnest(show_trgm(doc)) t
    WHERE t ~ '^[a-z0-9]{3}$');
ALTER TABLE entry_chunks ALTER COLUMN keys SET NOT NULL;
ALTER TABLE entry_chunks DROP COLUMN doc;
CREATE INDEX entry_chunks_keys ON entry_chunks USING gin (keys);
