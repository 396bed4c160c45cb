-- Least privilege: an admin role creates a vectorizer on its own table, a writer with no rights
-- on the queue still queues its changes, and grant_to roles can read what a worker needs.
\set VERBOSITY terse
CREATE ROLE regress_ai_admin LOGIN;
CREATE ROLE regress_ai_writer LOGIN;
CREATE ROLE regress_ai_worker LOGIN;
CREATE ROLE regress_ai_nobody LOGIN;
CREATE SCHEMA regress_ai_app AUTHORIZATION regress_ai_admin;
SELECT ai.grant_vectorizer_usage('regress_ai_admin', admin => true);
SELECT ai.grant_vectorizer_usage('regress_ai_worker');
SELECT ai.grant_vectorizer_usage('regress_ai_ghost');
SET ROLE regress_ai_admin;
CREATE TABLE regress_ai_app.docs (id int PRIMARY KEY, body text);
INSERT INTO regress_ai_app.docs VALUES (1, 'one');
GRANT USAGE ON SCHEMA regress_ai_app TO regress_ai_writer;
GRANT INSERT, UPDATE, DELETE, SELECT ON regress_ai_app.docs TO regress_ai_writer;
SELECT ai.create_vectorizer('regress_ai_app.docs', loading => ai.loading_column('body'),
    embedding => ai.embedding_openai('text-embedding-3-small'), grant_to => ai.grant_to('regress_ai_worker')) AS vid \gset
SELECT queue_table AS q FROM ai.vectorizer WHERE id = :vid \gset
SELECT owner FROM ai.vectorizer WHERE id = :vid;
SELECT tableowner FROM pg_tables WHERE schemaname = 'ai' AND tablename = :'q';
-- The writer has no rights on the queue, yet its changes are queued.
SET ROLE regress_ai_writer;
INSERT INTO regress_ai_app.docs VALUES (2, 'two');
UPDATE regress_ai_app.docs SET body = 'one!' WHERE id = 1;
SELECT count(*) FROM ai.:q;
-- The worker role reads the queue, the source and the store, and writes the store.
SET ROLE regress_ai_worker;
SELECT array_agg(id ORDER BY id) AS queued FROM ai.:q;
SELECT count(*) AS sources FROM regress_ai_app.docs;
INSERT INTO regress_ai_app.docs_embedding_store (id, chunk_seq, chunk, embedding)
    VALUES (1, 0, 'one!', array_fill(0.1, ARRAY[1536])::vector);
SELECT id, chunk, body FROM regress_ai_app.docs_embedding;
SELECT pending_items FROM ai.vectorizer_status WHERE id = :vid;
-- Nobody else does.
SET ROLE regress_ai_nobody;
SELECT count(*) FROM ai.:q;
SELECT ai.create_vectorizer('regress_ai_app.docs', loading => ai.loading_column('body'),
    embedding => ai.embedding_openai('text-embedding-3-small'));
-- A worker may use a vectorizer but not manage one it does not own, and is told so (logged in
-- as itself: a superuser's session may act as any role).
RESET ROLE;
SET SESSION AUTHORIZATION regress_ai_worker;
SELECT ai.disable_vectorizer_schedule(:vid);
SELECT ai.drop_vectorizer(:vid);
RESET SESSION AUTHORIZATION;
-- Admins change the catalog only through the checked functions, and create nothing in ai:
-- a planted overload there would run with the rights of whoever calls it next.
SET ROLE regress_ai_admin;
UPDATE ai.vectorizer SET queue_table = 'elsewhere' WHERE id = :vid;
INSERT INTO ai.vectorizer (name, source_schema, source_table, source_pk, queue_schema, queue_table,
    queue_failed_table, trigger_name, config) VALUES ('forged', 'public', 't', '[]', 'public', 'q', 'f', 'x', '{}');
CREATE FUNCTION ai.loading_column(column_name text) RETURNS jsonb LANGUAGE sql RETURN '{}';
SELECT ai._vectorizer_drop_objects(v, true) FROM ai.vectorizer AS v WHERE id = :vid;
-- Another admin may not drop it.
RESET ROLE;
CREATE ROLE regress_ai_admin2 LOGIN;
SELECT ai.grant_vectorizer_usage('regress_ai_admin2', admin => true);
SET SESSION AUTHORIZATION regress_ai_admin2;
SELECT ai.drop_vectorizer(:vid);
RESET SESSION AUTHORIZATION;
-- Not even an admin may run the server's Python.
SET ROLE regress_ai_admin;
SELECT ai.python_info();
SELECT ai.drop_vectorizer(:vid, drop_all => true);
RESET ROLE;
DROP SCHEMA regress_ai_app CASCADE;
DROP OWNED BY regress_ai_admin, regress_ai_admin2, regress_ai_writer, regress_ai_worker, regress_ai_nobody;
DROP ROLE regress_ai_admin, regress_ai_admin2, regress_ai_writer, regress_ai_worker, regress_ai_nobody;
