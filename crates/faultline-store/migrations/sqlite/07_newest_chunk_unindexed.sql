-- The chunk of 256 ids holding the newest entry is no longer in the trigram index: searches
-- read it directly, and it is indexed once, whole, when an entry of the next chunk is stored.
-- Rows an earlier version wrote for it go.
DELETE FROM entries_fts WHERE rowid >= ((SELECT max(id) FROM entries) / 256 * 256) << 8;
