-- The trigram index may hold more than one row per chunk of 256 entries: a batch that extends a
-- chunk of large entries indexes its own entries in a row of their own instead of rebuilding
-- the chunk. A row's rowid now says which entries it covers: (first id << 8) | (last - first),
-- instead of entry id / 256. Rows of the old form are rebuilt in the new one.
INSERT INTO entries_fts (entries_fts) VALUES ('delete-all');
INSERT INTO entries_fts (rowid, body)
    SELECT (min(id) << 8) | (max(id) - min(id)), group_concat(message || ' ' || coalesce(traceback, ''), ' ')
    FROM entries GROUP BY id / 256;
