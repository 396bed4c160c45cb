-- destination_column: one embedding per row, in a new column of the source table.
\set VERBOSITY terse
CREATE TABLE notes (id int PRIMARY KEY, note text);
INSERT INTO notes VALUES (1, 'buy milk');
SELECT ai.create_vectorizer('notes', destination => ai.destination_column('note_embedding'),
    loading => ai.loading_column('note'), embedding => ai.embedding_sentence_transformers()) AS vid \gset
SELECT name, queue_table AS q FROM ai.vectorizer WHERE id = :vid \gset
SELECT :'name' AS name;
SELECT config->'chunking'->>'implementation' AS chunking, config->'destination' AS destination FROM ai.vectorizer WHERE id = :vid;
\d notes
SELECT array_agg(id) AS queued FROM ai.:q;
TRUNCATE ai.:q;
-- A worker writing the embedding does not queue the row again.
UPDATE notes SET note_embedding = array_fill(0.1, ARRAY[384])::vector WHERE id = 1;
SELECT count(*) AS requeued FROM ai.:q;
UPDATE notes SET note = 'buy oat milk';
SELECT array_agg(id) AS queued FROM ai.:q;
-- Chunking is refused for a column destination.
SELECT ai.create_vectorizer('notes', destination => ai.destination_column('other_embedding'),
    loading => ai.loading_column('note'), embedding => ai.embedding_sentence_transformers(),
    chunking => ai.chunking_recursive_character_text_splitter());
-- drop_all drops the column too.
SELECT ai.drop_vectorizer(:vid, drop_all => true);
\d notes
DROP TABLE notes;
