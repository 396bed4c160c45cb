-- pgvectorizer 0.1.0 -> @EXTVERSION@ (ALTER EXTENSION ai UPDATE, or pgvectorizer install).
-- Written by hand; each `-- @replace`/`-- @create` line is the current sql/ definition of that
-- object (pgvectorizer/install/build.py). One transaction, and no lock on a source table:
-- writers keep writing, and nothing queued is touched.
\echo Use "ALTER EXTENSION ai UPDATE" to load this file. \quit

-- The version and the mode, for clients and for ai.vectorizer_status.
-- @create ai.version
-- @create ai.install_mode
-- @replace ai.vectorizer_status

-- No Python paths in the script any more (pgvectorizer.pth), and ai.embed made statically.
-- @replace ai._python_setup
-- @replace ai.embed

-- A plain install: no regex check or pg_cron run without PL/Python, and a non-superuser
-- install owner that hands objects over (ai._vectorizer_give).
-- @replace ai._vectorizer_resolve_config
-- @create ai._vectorizer_give
-- @create ai._vectorizer_create_trigger_function
-- @replace ai._vectorizer_create_queue
DROP FUNCTION ai._vectorizer_create_ops(ai.vectorizer);
-- @create ai._vectorizer_create_ops
REVOKE ALL ON FUNCTION ai._vectorizer_create_ops(ai.vectorizer, bool) FROM PUBLIC;
-- @replace ai.grant_vectorizer_usage

-- A vanished source (no event triggers in a plain install) is named at the claim.
-- @replace ai._vectorizer_op

-- Documents, loading: ai.loading_uri, and a bytea loading_column (read as base64).
-- @replace ai.loading_column
-- @create ai.loading_uri
-- @replace ai._vq_read

-- Parsing: the pgai parsers (pymupdf, docling) beside auto and none, in 024_config_parsing.sql.
-- @replace ai.parsing_auto
-- @replace ai.parsing_none
-- @create ai.parsing_pymupdf
-- @create ai.parsing_docling

-- Voyage AI and LiteLLM embedding providers (and Voyage's models' sizes).
-- @replace ai._known_model_dimensions
-- @create ai.embedding_voyageai
-- @create ai.embedding_litellm

-- pgai's names: queue_pending by name; ai.grant_to_default; a missing grant_to role warns.
-- @replace ai.vectorizer_queue_pending
-- @replace ai.grant_to
-- @replace ai.create_vectorizer

-- pgvectorscale's DiskANN index, where the vectorscale extension is installed.
-- @create ai.indexing_diskann
-- @create ai._index_statement
-- @replace ai._vectorizer_index_plan

-- pgai's one-call embedding functions, for admins (they run the server's Python with its keys).
-- @create ai._refuse_api_key
-- @create ai._require_known_model
-- @create ai.openai_embed
-- @create ai.ollama_embed
-- @create ai.voyageai_embed
-- @create ai.cohere_embed
-- @create ai.litellm_embed
REVOKE ALL ON FUNCTION ai.openai_embed(text, text, text, text, int4, text, jsonb, jsonb, bool, jsonb) FROM PUBLIC;
REVOKE ALL ON FUNCTION ai.ollama_embed(text, text, text, text, jsonb, bool) FROM PUBLIC;
REVOKE ALL ON FUNCTION ai.voyageai_embed(text, text, text, text, text, bool) FROM PUBLIC;
REVOKE ALL ON FUNCTION ai.cohere_embed(text, text, text, text, text, text, bool) FROM PUBLIC;
REVOKE ALL ON FUNCTION ai.litellm_embed(text, text, text, text, jsonb, bool) FROM PUBLIC;

-- pgai's scheduling_timescaledb, run on the nearest pg_cron schedule.
-- @create ai.scheduling_timescaledb
-- @create ai._cron_schedule

-- pgai's argument name, vectorizer_name, for execute_vectorizer by name: a new function, so
-- the roles that could run the old one are granted the new one.
SELECT set_config('ai.upgrade_execute_grantees', coalesce(jsonb_agg(jsonb_build_object(
           'grantee', a.grantee::regrole::text, 'grantable', a.is_grantable))::text, '[]'), true)
  FROM pg_proc p CROSS JOIN LATERAL aclexplode(p.proacl) AS a
 WHERE p.oid = 'ai.execute_vectorizer(text, int8, float8)'::regprocedure
   AND a.privilege_type = 'EXECUTE' AND a.grantee <> 0 AND a.grantee <> p.proowner;
DROP FUNCTION ai.execute_vectorizer(text, int8, float8);
-- @replace ai.execute_vectorizer
REVOKE ALL ON FUNCTION ai.execute_vectorizer(text, int8, float8) FROM PUBLIC;
DO $regrant$
DECLARE
    g jsonb;
BEGIN
    FOR g IN SELECT jsonb_array_elements(current_setting('ai.upgrade_execute_grantees')::jsonb) LOOP
        EXECUTE format('GRANT EXECUTE ON FUNCTION ai.execute_vectorizer(text, int8, float8) TO %s%s',
                       g->>'grantee', CASE WHEN (g->>'grantable')::bool THEN ' WITH GRANT OPTION' ELSE '' END);
    END LOOP;
END $regrant$;

-- pgai's default vectorizer name (<target_schema>_<target_table>) and its check of names.
-- @replace ai._vectorizer_default_name
-- @create ai._vectorizer_check_name

-- As pgai: grant_vectorizer_usage(role) lets a role create vectorizers on its own tables.
-- @create ai._vectorizer_is_admin
-- @create ai._vectorizer_check_owner
-- @replace ai._vectorizer_require_admin
-- @replace ai._vectorizer_register

-- DROP TABLE of a source without CASCADE drops its vectorizers (the views are set aside first).
-- @replace ai._vectorizer_handle_ddl_start
-- @create ai._vectorizer_detach_views
-- @create ai._vectorizer_handle_drop_end
REVOKE ALL ON FUNCTION ai._vectorizer_handle_drop_end() FROM PUBLIC;
REVOKE ALL ON FUNCTION ai._vectorizer_detach_views(text) FROM PUBLIC;
DROP EVENT TRIGGER _vectorizer_handle_ddl_start;
CREATE EVENT TRIGGER _vectorizer_handle_ddl_start ON ddl_command_start
    WHEN TAG IN ('ALTER TABLE', 'ALTER SCHEMA', 'DROP EXTENSION', 'DROP SCHEMA', 'DROP TABLE')
    EXECUTE FUNCTION ai._vectorizer_handle_ddl_start();
CREATE EVENT TRIGGER _vectorizer_handle_drop_end ON ddl_command_end
    WHEN TAG IN ('DROP TABLE')
    EXECUTE FUNCTION ai._vectorizer_handle_drop_end();

-- Issue 16: a large source's existing rows are queued in steps by the claims after
-- create_vectorizer's first, so writers wait for that step only (ai._vectorizer_backfill).
CREATE TABLE ai._vectorizer_backfill
( vectorizer_id  int4 NOT NULL PRIMARY KEY REFERENCES ai.vectorizer (id) ON DELETE CASCADE
, after          jsonb NOT NULL
, started_at     timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE ai._vectorizer_backfill IS 'Where queueing a large source''s existing rows has got to, per vectorizer';
SELECT pg_catalog.pg_extension_config_dump('ai._vectorizer_backfill', '');
-- @create ai._vectorizer_backfill_after
-- @create ai._vectorizer_backfill_set
REVOKE ALL ON FUNCTION ai._vectorizer_backfill_set(int4, jsonb) FROM PUBLIC;
REVOKE ALL ON FUNCTION ai._vectorizer_backfill_after(int4, bool) FROM PUBLIC;
-- @create ai._vq_key_values
-- @create ai._vq_backfill_step
-- @create ai._vq_backfill
-- @create ai._vq_backfill_next
-- @replace ai._vq_claim
-- @replace ai._vq_probe

-- The roles given usage under 0.1.0 (direct SELECT on ai.vectorizer; grant_to roles have none)
-- get what this version's grant_vectorizer_usage gives: users may now create vectorizers on
-- their own tables, admins run the new embedding functions. Admins had _vectorizer_register.
SELECT ai.grant_vectorizer_usage(u.grantee::regrole::text::name,
           EXISTS (SELECT 1 FROM pg_proc p CROSS JOIN LATERAL aclexplode(p.proacl) AS a
                    WHERE p.oid = 'ai._vectorizer_register(name, regclass, text, jsonb, name, name)'::regprocedure
                      AND a.grantee = u.grantee AND a.privilege_type = 'EXECUTE'))
  FROM (SELECT DISTINCT a.grantee FROM pg_class c CROSS JOIN LATERAL aclexplode(c.relacl) AS a
         WHERE c.oid = 'ai.vectorizer'::regclass AND a.privilege_type = 'SELECT'
           AND a.grantee <> 0 AND a.grantee <> c.relowner) AS u
 ORDER BY u.grantee;

-- Stores keep their rows whole in the heap (ai._vectorizer_store_storage); new rows only, and
-- a moment's lock on each store, none on a source.
-- @create ai._vectorizer_store_storage
-- @replace ai._vectorizer_create_destination
SELECT ai._vectorizer_store_storage(to_regclass(format('%I.%I', v.config->'destination'->>'target_schema',
                                                       v.config->'destination'->>'target_table')))
  FROM ai.vectorizer AS v
 WHERE v.config->'destination'->>'implementation' = 'table'
   AND to_regclass(format('%I.%I', v.config->'destination'->>'target_schema', v.config->'destination'->>'target_table')) IS NOT NULL
 ORDER BY v.id;

-- Issue 16: the helpers a batch calls several times are PL/pgSQL (their plans kept per
-- session; a SQL function with a SET clause is planned at every call).
-- @replace ai._pk_list
-- @replace ai._vector_schema
-- @replace ai._vector_type
-- @replace ai._pk_from_json
-- @replace ai._pk_to_json
-- @replace ai._vectorizer_ops_name
-- @replace ai._vq_path
-- @replace ai._vectorizer_may_use

-- Every existing vectorizer's functions, as this version makes them.
-- @create ai._vectorizer_rebuild
SELECT ai._vectorizer_rebuild(v) FROM ai.vectorizer AS v ORDER BY v.id;
UPDATE ai.vectorizer SET config = jsonb_set(config, '{version}', to_jsonb(ai.version()));

