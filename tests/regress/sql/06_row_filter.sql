-- A row filter: only matching rows get embeddings; a row that stops matching loses them.
\set VERBOSITY terse
CREATE TABLE blog (id int PRIMARY KEY, title text, contents text, category text, published_time timestamptz);
INSERT INTO blog VALUES (1, 'live', 'a', 'news', '2024-01-01'), (2, 'draft', 'b', 'news', NULL);
SELECT ai.create_vectorizer('blog', loading => ai.loading_column('contents'),
    embedding => ai.embedding_openai('text-embedding-3-small'),
    row_filter => 'published_time IS NOT NULL') AS vid \gset
SELECT queue_table AS q FROM ai.vectorizer WHERE id = :vid \gset
SELECT config->>'row_filter' AS row_filter, config->'filter_columns' AS filter_columns FROM ai.vectorizer WHERE id = :vid;
-- Only the published row was backfilled.
SELECT array_agg(id) AS backfilled FROM ai.:q;
TRUNCATE ai.:q;
-- A draft inserted or edited: nothing. Published: queued.
INSERT INTO blog VALUES (3, 'draft', 'c', 'news', NULL);
UPDATE blog SET contents = 'b2' WHERE id = 2;
SELECT count(*) AS drafts_queued FROM ai.:q;
UPDATE blog SET published_time = '2024-02-02' WHERE id = 2;
SELECT array_agg(id) AS published FROM ai.:q;
TRUNCATE ai.:q;
-- Unpublishing queues the row so its chunks are dropped; deleting a draft queues nothing.
UPDATE blog SET published_time = NULL WHERE id = 1;
DELETE FROM blog WHERE id = 3;
SELECT array_agg(id) AS unpublished FROM ai.:q;
TRUNCATE ai.:q;
-- The filter reads category only if it names it: a category change is not watched here.
UPDATE blog SET category = 'tech';
SELECT count(*) AS category_changes FROM ai.:q;
-- The view shows only matching rows that still exist, even before a worker catches up.
INSERT INTO blog_embedding_store (id, chunk_seq, chunk, embedding)
SELECT i, 0, 'chunk', array_fill(0.1, ARRAY[1536])::vector FROM generate_series(1, 3) AS i;
SELECT id, chunk_seq, title FROM blog_embedding ORDER BY id;
SELECT ai.drop_vectorizer(:vid, drop_all => true);
-- A filter over two columns and an immutable function; both columns are watched.
SELECT ai.create_vectorizer('blog', loading => ai.loading_column('contents'),
    embedding => ai.embedding_openai('text-embedding-3-small'), destination => ai.destination_table('news'),
    row_filter => 'lower(category) = ''tech'' AND published_time IS NOT NULL', enqueue_existing => false) AS vid \gset
SELECT queue_table AS q FROM ai.vectorizer WHERE id = :vid \gset
SELECT config->'filter_columns' AS filter_columns FROM ai.vectorizer WHERE id = :vid;
UPDATE blog SET category = 'TECH' WHERE id = 2;
UPDATE blog SET category = 'sport' WHERE id = 1;
SELECT array_agg(id) AS queued FROM ai.:q;
SELECT ai.drop_vectorizer(:vid, drop_all => true);
-- A filter that raises on a row never fails the write: that side counts as not matching.
SELECT ai.create_vectorizer('blog', loading => ai.loading_column('contents'),
    embedding => ai.embedding_openai('text-embedding-3-small'), destination => ai.destination_table('ratio'),
    row_filter => '100 / length(title) > 10', enqueue_existing => false) AS vid \gset
SELECT queue_table AS q FROM ai.vectorizer WHERE id = :vid \gset
INSERT INTO blog VALUES (10, '', 'empty title', 'news', NULL), (11, 'ok', 'short title', 'news', NULL);
UPDATE blog SET title = '' WHERE id = 11;
DELETE FROM blog WHERE id IN (10, 11);
SELECT array_agg(id ORDER BY id) AS queued FROM ai.:q;
SELECT count(*) AS recorded FROM ai.vectorizer_errors WHERE id = :vid;
SELECT ai.drop_vectorizer(:vid, drop_all => true);
DROP TABLE blog;
