-- The search index holds each distinct trigram of a chunk's words once, as a token of its own
-- (the hex of its UTF-8 bytes, ASCII letters in lower case) read by FTS5's `ascii` tokenizer,
-- instead of the chunk's distinct words read by the trigram tokenizer (which cut every word
-- into trigrams, and the text across the spaces between words too). The table is made again
-- in the new form, and the store fills it from the entries (SqliteStore's `reindex_all`).
DROP TABLE entries_fts;
CREATE VIRTUAL TABLE entries_fts USING fts5 (
    body, content = '', contentless_delete = 1, tokenize = 'ascii', detail = none
);
INSERT INTO entries_fts (entries_fts, rank) VALUES ('automerge', 16);
