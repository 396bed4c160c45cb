-- DDL that would leave a vectorizer's trigger naming things that no longer exist is refused
-- (the trigger would otherwise fail every write to the source); other DDL goes through.
\set VERBOSITY terse
CREATE SCHEMA guarded;
CREATE TABLE guarded.posts (id int PRIMARY KEY, title text, body text, published bool, views int);
SELECT ai.create_vectorizer('guarded.posts', destination => ai.destination_column('emb'),
    loading => ai.loading_column('body'), embedding => ai.embedding_sentence_transformers(),
    formatting => ai.formatting_python_template('$title: $chunk'), row_filter => 'published') AS vid \gset
ALTER TABLE guarded.posts RENAME TO articles;
ALTER TABLE guarded.posts RENAME COLUMN body TO text;
ALTER TABLE guarded.posts RENAME COLUMN title TO headline;
ALTER TABLE guarded.posts DROP COLUMN published;
ALTER TABLE guarded.posts RENAME COLUMN id TO post_id;
ALTER TABLE guarded.posts ALTER COLUMN id TYPE bigint;
ALTER SCHEMA guarded RENAME TO fenced;
-- Columns the vectorizer does not read are free to change.
ALTER TABLE guarded.posts RENAME COLUMN views TO view_count;
ALTER TABLE guarded.posts ADD COLUMN author text;
INSERT INTO guarded.posts (id, title, body, published) VALUES (1, 't', 'b', true);
SELECT ai.vectorizer_queue_pending(:vid) AS queued;
-- Without the vectorizer, anything goes.
SELECT ai.drop_vectorizer(:vid, drop_all => true);
ALTER TABLE guarded.posts RENAME COLUMN body TO text;
ALTER SCHEMA guarded RENAME TO fenced;
DROP SCHEMA fenced CASCADE;
