-- Dropping a vectorizer, by id or name, and dropping its source table.
\set VERBOSITY terse
CREATE TABLE a (id int PRIMARY KEY, t text);
SELECT ai.create_vectorizer('a', loading => ai.loading_column('t'), embedding => ai.embedding_sentence_transformers()) AS vid \gset
SELECT queue_table AS q, trigger_name AS trg FROM ai.vectorizer WHERE id = :vid \gset
-- Without drop_all the store and view stay; triggers, function and queue go.
SELECT ai.drop_vectorizer(:vid);
SELECT to_regclass('ai.' || :'q') AS queue, to_regprocedure('ai.' || :'trg' || '()') AS func,
       to_regclass('a_embedding_store') AS store, to_regclass('a_embedding') AS view,
       (SELECT count(*) FROM pg_trigger WHERE tgrelid = 'a'::regclass AND NOT tgisinternal) AS triggers;
INSERT INTO a VALUES (1, 'still writable');
DROP VIEW a_embedding;
DROP TABLE a_embedding_store;
-- By name, and an unknown name or id.
SELECT ai.create_vectorizer('a', name => 'a_vec', loading => ai.loading_column('t'), embedding => ai.embedding_sentence_transformers()) > 0 AS created;
SELECT ai.drop_vectorizer('a_vec', true);
SELECT to_regclass('a_embedding_store') AS store, count(*) AS vectorizers FROM ai.vectorizer;
SELECT ai.drop_vectorizer('no_such_vectorizer');
SELECT ai.drop_vectorizer(999999);
-- DROP TABLE of a source drops its vectorizer, without CASCADE (the view is set aside first,
-- as in pgai) and with it.
SELECT ai.create_vectorizer('a', loading => ai.loading_column('t'), embedding => ai.embedding_sentence_transformers()) AS vid \gset
SELECT queue_table AS q, trigger_name AS trg FROM ai.vectorizer WHERE id = :vid \gset
DROP TABLE a;
SELECT count(*) AS vectorizers, to_regclass('ai.' || :'q') AS queue, to_regprocedure('ai.' || :'trg' || '()') AS func,
       to_regclass('a_embedding_store') AS store, to_regclass('a_embedding') AS view FROM ai.vectorizer;
CREATE TABLE a (id int PRIMARY KEY, t text);
SELECT ai.create_vectorizer('a', loading => ai.loading_column('t'), embedding => ai.embedding_sentence_transformers()) AS vid \gset
SELECT queue_table AS q FROM ai.vectorizer WHERE id = :vid \gset
DROP TABLE a CASCADE;
SELECT count(*) AS vectorizers, to_regclass('ai.' || :'q') AS queue, to_regclass('a_embedding_store') AS store FROM ai.vectorizer;
-- Likewise for a whole schema.
CREATE SCHEMA s;
CREATE TABLE s.b (id int PRIMARY KEY, t text);
SELECT ai.create_vectorizer('s.b', loading => ai.loading_column('t'), embedding => ai.embedding_sentence_transformers()) AS vid \gset
SELECT queue_table AS q FROM ai.vectorizer WHERE id = :vid \gset
DROP SCHEMA s CASCADE;
SELECT count(*) AS vectorizers, to_regclass('ai.' || :'q') AS queue FROM ai.vectorizer;
