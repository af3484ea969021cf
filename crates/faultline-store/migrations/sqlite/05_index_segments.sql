-- The trigram index gets one row per batch and chunk instead of one per chunk (rowid = the
-- first entry of the row, no longer entry id / 256), so a batch never rebuilds a chunk that
-- earlier batches began. Rows of the old form are rebuilt in the new one.
INSERT INTO entries_fts (entries_fts) VALUES ('delete-all');
INSERT INTO entries_fts (rowid, body)
    SELECT min(id), group_concat(message || ' ' || coalesce(traceback, ''), ' ')
    FROM entries GROUP BY id / 256;
