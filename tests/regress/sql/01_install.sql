-- The extension installs its catalog, helpers and API, each documented.
\set VERBOSITY terse
SELECT extname, extversion, extnamespace::regnamespace FROM pg_extension WHERE extname = 'ai';
SELECT 'ai.vectorizer'::regclass, 'ai.vectorizer_status'::regclass, 'ai.vectorizer_errors'::regclass;
-- Every public function carries a comment and a pinned search_path.
SELECT p.oid::regprocedure AS undocumented FROM pg_proc p
 WHERE p.pronamespace = 'ai'::regnamespace AND p.proname !~ '^_' AND obj_description(p.oid, 'pg_proc') IS NULL;
-- (The pg_cron job's procedure commits, which a SET clause forbids; it pins the path itself.)
SELECT p.oid::regprocedure AS unpinned FROM pg_proc p
 WHERE p.pronamespace = 'ai'::regnamespace
   AND NOT coalesce(p.proconfig @> ARRAY['search_path=pg_catalog, pg_temp'], false)
   AND p.oid <> 'ai._vectorizer_job(int4)'::regprocedure;
SELECT count(*) > 30 AS has_api FROM pg_proc WHERE pronamespace = 'ai'::regnamespace;
SELECT evtname, evtevent FROM pg_event_trigger WHERE evtname = '_vectorizer_handle_drops';
