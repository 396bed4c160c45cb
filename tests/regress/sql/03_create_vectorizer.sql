-- create_vectorizer makes a queue, a failed-items table, a store, a view and triggers, and
-- queues the existing rows.
\set VERBOSITY terse
CREATE TABLE blog (id int PRIMARY KEY, title text NOT NULL, body text NOT NULL, author text);
INSERT INTO blog VALUES (1, 'one', 'first post', 'ann'), (2, 'two', 'second post', 'bob');
SELECT ai.create_vectorizer('blog', loading => ai.loading_column('body'),
    embedding => ai.embedding_openai('text-embedding-3-small')) > 0 AS created;
SELECT id AS vid, queue_table AS q, queue_failed_table AS qf, trigger_name AS trg
  FROM ai.vectorizer WHERE name = 'public_blog_embedding_store' \gset
SELECT name, source_schema, source_table, source_pk, queue_schema, disabled, owner = current_user AS mine
  FROM ai.vectorizer WHERE id = :vid;
-- Defaults resolved and stored.
SELECT config->'destination' AS destination, config->'chunking'->>'implementation' AS chunking,
       config->'indexing' AS indexing, config->'scheduling'->>'implementation' AS scheduling,
       config->'formatting'->>'template' AS template, config->>'version' AS version
  FROM ai.vectorizer WHERE id = :vid;
\d blog_embedding_store
\d+ blog_embedding
SELECT id FROM ai.:q ORDER BY id;
SELECT count(*) AS failed FROM ai.:qf;
SELECT tgname, tgtype FROM pg_trigger WHERE tgrelid = 'blog'::regclass AND NOT tgisinternal ORDER BY tgname;
SELECT prosecdef, proconfig FROM pg_proc WHERE oid = ('ai.' || :'trg')::regproc;
-- if_not_exists returns the existing id.
SELECT ai.create_vectorizer('blog', loading => ai.loading_column('body'),
    embedding => ai.embedding_openai('text-embedding-3-small'), if_not_exists => true) = :vid AS same_id;
-- A second vectorizer on the same table, with its own names and no backfill.
SELECT ai.create_vectorizer('blog', name => 'blog_titles', destination => ai.destination_table('blog_titles'),
    loading => ai.loading_column('title'), embedding => ai.embedding_ollama('nomic-embed-text'),
    chunking => ai.chunking_none(), queue_table => 'blog_titles_q', enqueue_existing => false) > :vid AS created;
SELECT count(*) FROM ai.blog_titles_q;
SELECT to_regclass('ai.blog_titles_q_failed') IS NOT NULL AS failed_table, to_regclass('blog_titles_store') IS NOT NULL AS store;
INSERT INTO blog VALUES (3, 'three', 'third', 'cy');
SELECT (SELECT array_agg(id ORDER BY id) FROM ai.:q) AS first, (SELECT array_agg(id) FROM ai.blog_titles_q) AS second;
SELECT ai.drop_vectorizer('blog_titles', drop_all => true);
SELECT ai.drop_vectorizer(:vid, drop_all => true);
DROP TABLE blog;
