-- A plain install (pgvectorizer install's form of the script), as a role that is no superuser
-- would have it: no PL/Python, no event triggers. pg_regress loaded only pgvector here.
CREATE ROLE regress_plain_owner CREATEROLE;
GRANT CREATE ON DATABASE contrib_regression_plain TO regress_plain_owner;
SET ROLE regress_plain_owner;
SET search_path = ai, public, pg_temp;
\set ECHO none
BEGIN;
\i build/ai-plain.sql
COMMIT;
\set ECHO all
RESET search_path;
SELECT ai.version() = default_version AS same_version FROM pg_available_extensions
 WHERE name = 'ai';
SELECT ai.install_mode();
SELECT count(*) AS event_triggers FROM pg_event_trigger;
SELECT nspowner::regrole FROM pg_namespace WHERE nspname = 'ai';
-- Its PL/Python entry points are there, and say what to use instead.
\set VERBOSITY default
\set SHOW_CONTEXT never
SELECT ai.execute_vectorizer(1);
CALL ai._vectorizer_job(1);
SELECT ai.embed('{"implementation": "openai"}'::jsonb, 'hello');

-- Vectorizers: created by the install's owner, queued by the triggers.
CREATE SCHEMA app;
CREATE TABLE app.doc (id int PRIMARY KEY, body text);
INSERT INTO app.doc VALUES (1, 'one'), (2, 'two');
SELECT ai.create_vectorizer('app.doc'::regclass, loading => ai.loading_column('body'),
    embedding => ai.embedding_openai('text-embedding-3-small', 768),
    chunking => ai.chunking_character_text_splitter(separator => '\s+', is_separator_regex => true)) AS vid \gset
SELECT config->'scheduling'->>'implementation' AS scheduling FROM ai.vectorizer WHERE id = :vid;
UPDATE app.doc SET body = 'uno' WHERE id = 1;
SELECT name, pending_items, install_mode FROM ai.vectorizer_status;
SELECT pg_get_userbyid(relowner) FROM pg_class WHERE oid = 'ai._vectorizer_q_1'::regclass;
-- pg_cron schedules a run in PL/Python: refused here, with the way out.
SELECT ai.create_vectorizer('app.doc'::regclass, name => 'cron', loading => ai.loading_column('body'),
    embedding => ai.embedding_openai('text-embedding-3-small', 768),
    destination => ai.destination_table(target_table => 'doc_cron'),
    scheduling => ai.scheduling_pg_cron());

-- No event triggers: a source dropped with CASCADE leaves its vectorizer, which
-- drop_vectorizer then removes whole.
DROP TABLE app.doc CASCADE;
SELECT name, source_table, pending_items FROM ai.vectorizer_status;
SELECT ai.drop_vectorizer(:vid, drop_all => true);
SELECT count(*) AS vectorizers FROM ai.vectorizer;
SELECT count(*) AS leftovers FROM pg_class WHERE relname LIKE '%vectorizer_q_%' OR relname LIKE 'doc_embedding%';

-- The extension cannot be created beside it.
RESET ROLE;
CREATE EXTENSION ai CASCADE;
SET client_min_messages = warning;
DROP SCHEMA ai CASCADE;
DROP OWNED BY regress_plain_owner;
DROP ROLE regress_plain_owner;
