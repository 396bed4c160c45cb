-- Running vectorizers inside the database: ai.execute_vectorizer (PL/Python, the same pipeline
-- as the worker), the pg_cron jobs that call it, ai.embed for queries, and the vector index.
-- The PL/Python bodies only import the package and call it (pgvectorizer/indb/api.py).

CREATE FUNCTION ai.execute_vectorizer(vectorizer_id int4, max_rows int8 DEFAULT NULL, max_seconds float8 DEFAULT 60)
RETURNS jsonb
LANGUAGE plpython3u VOLATILE
SET search_path = pg_catalog, pg_temp AS $$
import sys
if "pgvectorizer.indb.api" not in sys.modules:
    plpy.execute("SELECT ai._python_setup()")
from pgvectorizer.indb import api
return api.execute_vectorizer(plpy, vectorizer_id, max_rows, max_seconds)
$$;
COMMENT ON FUNCTION ai.execute_vectorizer(int4, int8, float8)
    IS 'Process a vectorizer''s queue in this transaction until it is empty or a bound (rows, seconds) is reached; returns what it did';

CREATE FUNCTION ai.execute_vectorizer(vectorizer_name text, max_rows int8 DEFAULT NULL, max_seconds float8 DEFAULT 60)
RETURNS jsonb
LANGUAGE sql VOLATILE SET search_path = pg_catalog, pg_temp
BEGIN ATOMIC
    SELECT ai.execute_vectorizer(ai._vectorizer_by_name(vectorizer_name), max_rows, max_seconds);
END;
COMMENT ON FUNCTION ai.execute_vectorizer(text, int8, float8) IS 'ai.execute_vectorizer by vectorizer name';

-- What a vectorizer's pg_cron job calls: a procedure, so that it can commit after each batch.
-- A procedure with a SET clause may not commit, so it pins search_path itself, in each
-- transaction (api.run_job).
CREATE PROCEDURE ai._vectorizer_job(vectorizer_id int4)
LANGUAGE plpython3u AS $$
import sys
if "pgvectorizer.indb.api" not in sys.modules:
    plpy.execute("SELECT ai._python_setup()")
from pgvectorizer.indb import api
api.run_job(plpy, vectorizer_id)
$$;
COMMENT ON PROCEDURE ai._vectorizer_job(int4) IS 'pg_cron''s entry: run a vectorizer for its scheduling''s max_seconds, committing each batch';

-- ai.embed returns pgvector's type: `vector` is found through the script's search_path (the
-- schema of the vector extension, as CREATE EXTENSION and pgvectorizer install set it).
--
-- By id or name it spends the vectorizer's provider key (the server's): only for those who may
-- use that vectorizer (ai._vectorizer_may_use), checked before the answers cached per backend.
-- A few lines of Python with one prepared statement, once per query. IMMUTABLE, as pgai's
-- embedding functions: the planner then computes the query vector once, not once per row of a
-- sequential scan. A vectorizer's model never changes after creation; answers are also cached
-- per backend.
CREATE FUNCTION ai.embed(vectorizer_id int4, input text) RETURNS vector
LANGUAGE plpython3u IMMUTABLE STRICT PARALLEL RESTRICTED SET search_path = pg_catalog, pg_temp AS $$
if "refusal" not in SD:
    SD["refusal"] = plpy.prepare("SELECT ai._vectorizer_embed_refusal($1, $2) AS r", ["int4", "text"])
refusal = SD["refusal"].execute([vectorizer_id, None])[0]["r"]
if refusal is not None:
    plpy.error(refusal, hint="Only members of the vectorizer's owner or of its grant_to roles may.", sqlstate="42501")
import sys
if "pgvectorizer.indb.api" not in sys.modules:
    plpy.execute("SELECT ai._python_setup()")
from pgvectorizer.indb import api
return api.embed(plpy, input, vectorizer_id=vectorizer_id)
$$;
CREATE FUNCTION ai.embed(vectorizer_name text, input text) RETURNS vector
LANGUAGE plpython3u IMMUTABLE STRICT PARALLEL RESTRICTED SET search_path = pg_catalog, pg_temp AS $$
if "refusal" not in SD:
    SD["refusal"] = plpy.prepare("SELECT ai._vectorizer_embed_refusal($1, $2) AS r", ["int4", "text"])
refusal = SD["refusal"].execute([None, vectorizer_name])[0]["r"]
if refusal is not None:
    plpy.error(refusal, hint="Only members of the vectorizer's owner or of its grant_to roles may.", sqlstate="42501")
import sys
if "pgvectorizer.indb.api" not in sys.modules:
    plpy.execute("SELECT ai._python_setup()")
from pgvectorizer.indb import api
return api.embed(plpy, input, name=vectorizer_name)
$$;
CREATE FUNCTION ai.embed(embedding jsonb, input text) RETURNS vector
LANGUAGE plpython3u IMMUTABLE STRICT PARALLEL RESTRICTED SET search_path = pg_catalog, pg_temp AS $$
import sys
if "pgvectorizer.indb.api" not in sys.modules:
    plpy.execute("SELECT ai._python_setup()")
from pgvectorizer.indb import api
return api.embed(plpy, input, config=embedding)
$$;
COMMENT ON FUNCTION ai.embed(int4, text) IS 'The vector of a text from the model of a vectorizer (by id), for a query';
COMMENT ON FUNCTION ai.embed(text, text) IS 'The vector of a text from the model of a vectorizer (by name), for a query';
COMMENT ON FUNCTION ai.embed(jsonb, text) IS 'The vector of a text from the model of an embedding config (ai.embedding_*)';

-- --- the vector index ------------------------------------------------------------------------
-- CREATE INDEX CONCURRENTLY cannot run inside a function, so this only says what to run next:
-- the worker runs it on its own connection, and in-database runs give it to a pg_cron job.
-- NULL when nothing is to be done: no HNSW configured, a vector index already there (ours or
-- the user's) or being built, the store still under min_rows, or (create_when_queue_empty)
-- the queue not yet empty. A build that failed leaves an invalid index, dropped first.
-- Where a vectorizer's index goes: the table, the vector column, and our name for the index.
CREATE FUNCTION ai._vectorizer_index_target(v ai.vectorizer, OUT tbl regclass, OUT col name, OUT idx_name name)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    dest jsonb := v.config->'destination';
BEGIN
    IF dest->>'implementation' = 'table' THEN
        tbl := to_regclass(format('%I.%I', dest->>'target_schema', dest->>'target_table'));
        col := 'embedding';
        idx_name := left(dest->>'target_table', 49) || '_embedding_idx';
    ELSE
        tbl := to_regclass(format('%I.%I', v.source_schema, v.source_table));
        col := dest->>'embedding_column';
        idx_name := left(v.source_table || '_' || col, 59) || '_idx';
    END IF;
END $$;

-- The CREATE INDEX of an indexing config, for a store's column: HNSW (pgvector's operator
-- classes, schema-qualified) or DiskANN (pgvectorscale's default, cosine, operator class).
CREATE FUNCTION ai._index_statement(ix jsonb, idx_name name, tbl regclass, col name) RETURNS text
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    opts text;
BEGIN
    IF ix->>'implementation' = 'hnsw' THEN
        opts := nullif(concat_ws(', ', 'm = ' || (ix->>'m')::int4, 'ef_construction = ' || (ix->>'ef_construction')::int4), '');
        RETURN format('CREATE INDEX CONCURRENTLY IF NOT EXISTS %I ON %s USING hnsw (%I %I.%I)%s',
                      idx_name, tbl, col, ai._vector_schema(), ix->>'opclass', ' WITH (' || opts || ')');
    END IF;
    IF ix->>'implementation' = 'diskann' THEN
        opts := nullif(concat_ws(', ', 'storage_layout = ' || quote_literal(ix->>'storage_layout'),
                                 'num_neighbors = ' || (ix->>'num_neighbors')::int4,
                                 'search_list_size = ' || (ix->>'search_list_size')::int4,
                                 'max_alpha = ' || (ix->>'max_alpha')::float8,
                                 'num_dimensions = ' || (ix->>'num_dimensions')::int4,
                                 'num_bits_per_dimension = ' || (ix->>'num_bits_per_dimension')::int4), '');
        RETURN format('CREATE INDEX CONCURRENTLY IF NOT EXISTS %I ON %s USING diskann (%I)%s',
                      idx_name, tbl, col, ' WITH (' || opts || ')');
    END IF;
    RETURN NULL;
END $$;

CREATE FUNCTION ai._vectorizer_index_plan(vectorizer_id int4) RETURNS text
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v        ai.vectorizer := ai._vectorizer_get(vectorizer_id);
    ix       jsonb := v.config->'indexing';
    tbl      regclass;
    col      name;
    idx_name name;
    idx      regclass;
    n        int8;
    queued   bool;
    opts     text;
BEGIN
    IF ix->>'implementation' IS NULL OR ix->>'implementation' NOT IN ('hnsw', 'diskann') THEN
        RETURN NULL;
    END IF;
    SELECT * INTO tbl, col, idx_name FROM ai._vectorizer_index_target(v);
    -- The count below reads the owner's table with the caller's rights: only a plain table.
    IF tbl IS NULL OR NOT ai._vectorizer_plain_table(tbl) THEN
        RETURN NULL;
    END IF;
    SELECT i.indexrelid INTO idx FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
     WHERE i.indrelid = tbl AND c.relname = idx_name;
    IF idx IS NOT NULL THEN
        IF (SELECT indisvalid FROM pg_index WHERE indexrelid = idx)
           OR EXISTS (SELECT 1 FROM pg_stat_progress_create_index WHERE index_relid = idx) THEN
            RETURN NULL;
        END IF;
        RETURN format('DROP INDEX CONCURRENTLY IF EXISTS %s', idx);
    END IF;
    IF EXISTS (SELECT 1 FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
                 JOIN pg_am am ON am.oid = c.relam
                 JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attname = col
                WHERE i.indrelid = tbl AND am.amname IN ('hnsw', 'ivfflat', 'diskann') AND a.attnum = ANY (i.indkey)) THEN
        RETURN NULL;
    END IF;
    IF coalesce((ix->>'create_when_queue_empty')::bool, false) THEN
        EXECUTE format('SELECT EXISTS (SELECT FROM %I.%I)', v.queue_schema, v.queue_table) INTO STRICT queued;
        IF queued THEN
            RETURN NULL;
        END IF;
    END IF;
    -- Counting stops at min_rows, so a check on a big store stays cheap.
    EXECUTE format('SELECT count(*) FROM (SELECT FROM %s WHERE %I IS NOT NULL LIMIT %s) AS s',
                   tbl, col, (ix->>'min_rows')::int8) INTO n;
    IF n < (ix->>'min_rows')::int8 THEN
        RETURN NULL;
    END IF;
    RETURN ai._index_statement(ix, idx_name, tbl, col);
END $$;
COMMENT ON FUNCTION ai._vectorizer_index_plan(int4) IS 'The statement that builds (or clears the way for) a vectorizer''s HNSW index now, or NULL';

-- Keeps a vectorizer's one-off index job in pg_cron in step with _vectorizer_index_plan: due
-- once, at the next minute, with the statement to run next; removed once the index is there.
-- It runs as the vectorizer's owner, who owns the store. A job with a run under way, or one
-- that ended seconds ago, is left alone: pg_cron stops the worker of a job removed mid-run
-- (leaving an invalid index behind), and it records a run's end a moment before its worker
-- exits (so the run would be reported cancelled).
CREATE FUNCTION ai._vectorizer_index_job(vectorizer_id int4) RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v        ai.vectorizer;
    plan     text;
    job      int8;
    next     timestamp;
    schedule text;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'pg_cron') THEN
        RETURN;
    END IF;
    v := ai._vectorizer_get(vectorizer_id);
    PERFORM ai._vectorizer_check_caller(v.owner, 'execute_vectorizer');
    SELECT j.jobid INTO job FROM cron.job j
     WHERE j.jobname = ai._vectorizer_job_name(v.id, 'index') AND j.database = current_database();
    IF EXISTS (SELECT 1 FROM pg_stat_progress_create_index p
                WHERE p.relid = (SELECT tbl FROM ai._vectorizer_index_target(v)))
       OR job IS NOT NULL AND EXISTS (SELECT 1 FROM cron.job_run_details d WHERE d.jobid = job
                     AND (d.end_time IS NULL OR d.end_time > now() - interval '10 seconds')) THEN
        RETURN;
    END IF;
    plan := ai._vectorizer_index_plan(vectorizer_id);
    IF plan IS NULL THEN
        IF job IS NOT NULL THEN
            PERFORM cron.unschedule(job);
        END IF;
        RETURN;
    END IF;
    -- Minute, hour, day and month of the next minute in pg_cron's time zone: a job due once.
    next := now() AT TIME ZONE coalesce(current_setting('cron.timezone', true), 'GMT') + interval '1 minute';
    schedule := format('%s %s %s %s *', extract(minute FROM next)::int, extract(hour FROM next)::int,
                       extract(day FROM next)::int, extract(month FROM next)::int);
    IF job IS NULL THEN
        PERFORM cron.schedule_in_database(ai._vectorizer_job_name(v.id, 'index'), schedule, plan,
                                          current_database(), v.owner, true);
    ELSE
        PERFORM cron.alter_job(job, schedule => schedule, command => plan);
    END IF;
END $$;

-- --- pg_cron jobs ----------------------------------------------------------------------------
CREATE FUNCTION ai._vectorizer_job_name(vectorizer_id int4, kind text) RETURNS text
LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, pg_temp
RETURN format('ai_vectorizer_%s_%s', vectorizer_id, kind);

-- The job that runs a vectorizer (scheduling_pg_cron), as its owner, never as the superuser
-- who owns this function. Its id goes into the config for all to see.
CREATE FUNCTION ai._vectorizer_schedule(v ai.vectorizer) RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    sched jsonb := v.config->'scheduling';
    job   int8;
BEGIN
    IF sched->>'implementation' IS DISTINCT FROM 'pg_cron' THEN
        RETURN;
    END IF;
    job := cron.schedule_in_database(ai._vectorizer_job_name(v.id, 'run'), sched->>'schedule',
                                     format('CALL ai._vectorizer_job(%s)', v.id),
                                     current_database(), v.owner, NOT v.disabled);
    UPDATE ai.vectorizer SET config = jsonb_set(config, '{scheduling,job_id}', to_jsonb(job)) WHERE id = v.id;
END $$;

CREATE FUNCTION ai._vectorizer_unschedule(vectorizer_id int4) RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'pg_cron') THEN
        PERFORM cron.unschedule(j.jobid) FROM cron.job j
          WHERE j.database = current_database()
            AND j.jobname IN (ai._vectorizer_job_name(vectorizer_id, 'run'), ai._vectorizer_job_name(vectorizer_id, 'index'));
    END IF;
END $$;

CREATE FUNCTION ai._vectorizer_set_job_active(vectorizer_id int4, make_active bool) RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'pg_cron') THEN
        PERFORM cron.alter_job(j.jobid, active => make_active) FROM cron.job j
          WHERE j.database = current_database() AND j.jobname = ai._vectorizer_job_name(vectorizer_id, 'run');
    END IF;
END $$;
