-- ALTER EXTENSION ai UPDATE from the frozen 0.1.0: a vectorizer made under 0.1.0, with rows
-- queued, comes through with its queue and gets this version's functions.
DROP EXTENSION ai CASCADE;
CREATE EXTENSION ai VERSION '0.1.0';
SELECT extversion FROM pg_extension WHERE extname = 'ai';
CREATE TABLE up_doc (id int, part text, body text, PRIMARY KEY (id, part));
INSERT INTO up_doc VALUES (1, 'a', 'one'), (2, 'b', 'two');
SELECT ai.create_vectorizer('up_doc'::regclass, loading => ai.loading_column('body'),
    embedding => ai.embedding_openai('text-embedding-3-small', 768), scheduling => ai.scheduling_none(),
    row_filter => 'id > 0') AS vid \gset
ALTER EXTENSION ai UPDATE;
SELECT extversion, ai.version() FROM pg_extension WHERE extname = 'ai';
SELECT name, pending_items, install_mode FROM ai.vectorizer_status;
SELECT config->>'version' AS config_version FROM ai.vectorizer;
UPDATE up_doc SET body = 'uno' WHERE id = 1;
SELECT count(*) AS queued FROM ai._vectorizer_q_1;
SELECT ai.drop_vectorizer(:vid, drop_all => true);
DROP TABLE up_doc;
-- A fresh install again, for the tests after this one.
DROP EXTENSION ai;
CREATE EXTENSION ai;
SELECT extversion FROM pg_extension WHERE extname = 'ai';
