-- ai.create_vectorizer: pgai's signature, plus row_filter. Everything happens in the caller's
-- transaction, so an error leaves nothing half-made, and with the caller's rights, except the
-- catalog row and the queue, which ai._vectorizer_register makes after checking the caller.
--
-- It runs in steps, each a function of its own:
--   ai._vectorizer_check_source      the source is a permanent table (before it is locked);
--   ai._vectorizer_resolve_config    the user's configs checked against each other and the
--                                    source, defaults filled in: the config the catalog stores;
--   ai._vectorizer_check_targets     nothing stands where the new objects go;
--   ai._vectorizer_register          the catalog row, the queue, the ops function and the
--                                    schedule, after checking the caller (035_register.sql);
--   ai._vectorizer_create_objects    the store and view (or vector column), the triggers on the
--                                    source and the grants, from the catalog row alone.
-- So the objects of an existing vectorizer can be made again from its row alone, without the
-- checks of user input: its queue, failed-items table, trigger function and ops function by
-- ai._vectorizer_create_queue(v) and its schedule by ai._vectorizer_schedule(v), as the
-- extension's owner (as ai._vectorizer_register does), then the rest by
-- ai._vectorizer_create_objects(v), as the vectorizer's owner.

-- NULL when Python's re compiles the pattern, else its message. Standard library only (no
-- package import): create_vectorizer needs no pgvectorizer package on the server.
CREATE FUNCTION ai._check_python_regex(pattern text) RETURNS text
LANGUAGE plpython3u IMMUTABLE STRICT
SET search_path = pg_catalog, pg_temp AS $$
import re
try:
    re.compile(pattern)
except (re.error, OverflowError, RecursionError, ValueError) as exc:
    return str(exc)
return None
$$;
COMMENT ON FUNCTION ai._check_python_regex(text) IS 'NULL when Python''s re accepts a regular expression, else its error';


-- The source must be a permanent table. Before the lock: a view or a sequence is refused here,
-- not by LOCK TABLE.
CREATE FUNCTION ai._vectorizer_check_source(source regclass) RETURNS void
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    src_kind    "char";
    src_persist "char";
BEGIN
    SELECT c.relkind, c.relpersistence INTO src_kind, src_persist FROM pg_class c WHERE c.oid = source;
    IF src_kind NOT IN ('r', 'p') THEN
        RAISE EXCEPTION 'create_vectorizer: source % is not a table', source USING ERRCODE = 'wrong_object_type';
    END IF;
    -- A temporary table vanishes with its session, and other sessions (workers, schedules) can
    -- never read it: its vectorizer would break every later run over the whole database.
    IF src_persist = 't' THEN
        RAISE EXCEPTION 'create_vectorizer: source % is a temporary table', source
            USING ERRCODE = 'wrong_object_type',
                  HINT = 'Workers read the source from sessions of their own, which cannot see another session''s temporary tables; use a regular (or unlogged) table.';
    END IF;
END $$;
COMMENT ON FUNCTION ai._vectorizer_check_source(regclass) IS 'Refuse a vectorizer source that is not a permanent table';

-- The config a new vectorizer stores (ai.vectorizer.config), from create_vectorizer's
-- arguments: each checked to be the right kind of config, defaults that depend on the other
-- choices filled in, the choices checked against each other and against the source (its key,
-- the loading, template and row-filter columns), and the destination's names resolved. Raises
-- on the first problem, in the order create_vectorizer has always reported them.
CREATE FUNCTION ai._vectorizer_resolve_config
( source regclass
, destination jsonb
, loading jsonb
, parsing jsonb
, embedding jsonb
, chunking jsonb
, indexing jsonb
, formatting jsonb
, scheduling jsonb
, processing jsonb
, grant_to name[]
, row_filter text
) RETURNS jsonb
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    src_schema   name;
    src_table    name;
    separator    text;
    problem      text;
    load_att     pg_attribute;
    tmpl_cols    name[];
    filter_cols  name[];
    col          name;
    dims         int4;
    cron         text;
    -- A pg_cron job runs the vectorizer's Python in the server: the extension's alone, and only
    -- for vectorizer admins (ai._vectorizer_is_admin).
    cron_runs    bool := EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'pg_cron')
                         AND ai.install_mode() = 'extension' AND ai._vectorizer_is_admin(current_user);
BEGIN
    SELECT n.nspname, c.relname INTO src_schema, src_table
      FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = source;

    PERFORM ai._check_config(destination, 'destination', 'destination');
    PERFORM ai._check_config(loading, 'loading', 'loading');
    PERFORM ai._check_config(parsing, 'parsing', 'parsing', false);
    PERFORM ai._check_config(embedding, 'embedding', 'embedding');
    PERFORM ai._check_config(chunking, 'chunking', 'chunking', false);
    PERFORM ai._check_config(indexing, 'indexing', 'indexing', false);
    PERFORM ai._check_config(formatting, 'formatting', 'formatting', false);
    PERFORM ai._check_config(scheduling, 'scheduling', 'scheduling', false);
    PERFORM ai._check_config(processing, 'processing', 'processing', false);

    -- Defaults that depend on the other choices.
    IF chunking IS NULL THEN
        chunking := CASE WHEN destination->>'implementation' = 'column' THEN ai.chunking_none()
                         ELSE ai.chunking_recursive_character_text_splitter() END;
    END IF;
    parsing    := coalesce(parsing, ai.parsing_auto());
    formatting := coalesce(formatting, ai.formatting_python_template());
    processing := coalesce(processing, ai.processing_default());
    indexing   := coalesce(indexing, ai.indexing_default());
    IF indexing->>'implementation' = 'default' THEN
        indexing := ai.indexing_hnsw();
    END IF;
    scheduling := coalesce(scheduling, ai.scheduling_default());
    IF scheduling->>'implementation' = 'default' THEN
        scheduling := CASE WHEN cron_runs THEN ai.scheduling_pg_cron() ELSE ai.scheduling_none() END;
    ELSIF scheduling->>'implementation' = 'timescaledb' THEN
        -- pgai's TimescaleDB job: the same rules, on the nearest cron schedule.
        cron := ai._cron_schedule((scheduling->>'schedule_interval')::interval,
                                  (scheduling->>'initial_start')::timestamptz);
        IF cron IS NULL THEN
            RAISE EXCEPTION 'create_vectorizer: scheduling_timescaledb every % has no cron schedule', scheduling->>'schedule_interval'
                USING ERRCODE = 'invalid_parameter_value',
                      HINT = 'Use seconds under a minute, minutes that divide an hour, hours that divide a day, a day or a week; or pass ai.scheduling_pg_cron(''...'').';
        ELSIF cron_runs THEN
            RAISE NOTICE 'create_vectorizer: scheduling_timescaledb runs as pg_cron schedule ''%'' (cron.timezone)', cron;
            scheduling := ai.scheduling_pg_cron(cron, least(240, greatest(1, extract(epoch FROM (scheduling->>'schedule_interval')::interval)::int4 - 10)));
        ELSE
            RAISE NOTICE 'create_vectorizer: scheduling_timescaledb has no job here; run pgvectorizer worker to process this vectorizer';
            scheduling := ai.scheduling_none();
        END IF;
    END IF;

    IF loading->>'implementation' IS NULL OR loading->>'implementation' NOT IN ('column', 'uri') THEN
        RAISE EXCEPTION 'create_vectorizer: unknown loading implementation %', quote_nullable(loading->>'implementation')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF embedding->>'implementation' IS NULL
       OR embedding->>'implementation' NOT IN ('openai', 'ollama', 'sentence_transformers', 'voyageai', 'litellm') THEN
        RAISE EXCEPTION 'create_vectorizer: unknown embedding provider %', quote_nullable(embedding->>'implementation')
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Use ai.embedding_openai, ai.embedding_ollama, ai.embedding_sentence_transformers, ai.embedding_voyageai or ai.embedding_litellm.';
    END IF;
    -- The LiteLLM providers the worker has a client for (pgvectorizer.embedders.litellm.PROVIDERS).
    IF embedding->>'implementation' = 'litellm'
       AND split_part(embedding->>'model', '/', 1) NOT IN ('cohere', 'mistral', 'azure', 'bedrock', 'vertex_ai', 'huggingface') THEN
        RAISE EXCEPTION 'create_vectorizer: embedding_litellm provider % is not supported', quote_literal(split_part(embedding->>'model', '/', 1))
            USING ERRCODE = 'feature_not_supported',
                  HINT = 'Supported: cohere/, mistral/, azure/, bedrock/, vertex_ai/, huggingface/. For an OpenAI-compatible server (a LiteLLM proxy, vLLM, TEI) use ai.embedding_openai with base_url.';
    END IF;
    dims := (embedding->>'dimensions')::int4;
    IF dims IS NULL OR dims < 1 OR dims > 16000 THEN
        RAISE EXCEPTION 'create_vectorizer: embedding dimensions must be between 1 and 16000, got %', quote_nullable(embedding->>'dimensions')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF chunking->>'implementation' NOT IN ('none', 'character_text_splitter', 'recursive_character_text_splitter') THEN
        RAISE EXCEPTION 'create_vectorizer: unknown chunking implementation %', quote_nullable(chunking->>'implementation')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    -- Regex separators are compiled by the worker's Python (re), so Python says whether they are
    -- valid now, not at the first batch. The recursive splitter skips an empty separator. A
    -- plain install has no Python in the server, and only admins may run the server's Python:
    -- otherwise the worker's first batch says it instead.
    IF coalesce((chunking->>'is_separator_regex')::bool, false) AND ai.install_mode() = 'extension'
       AND has_function_privilege('ai._check_python_regex(text)', 'EXECUTE') THEN
        FOR separator IN
            SELECT chunking->>'separator' WHERE chunking->>'implementation' = 'character_text_splitter'
            UNION ALL
            SELECT s FROM jsonb_array_elements_text(CASE WHEN chunking->>'implementation' = 'recursive_character_text_splitter'
                                                         THEN chunking->'separators' ELSE '[]' END) AS s
             WHERE s <> ''
        LOOP
            problem := ai._check_python_regex(separator);
            IF problem IS NOT NULL THEN
                RAISE EXCEPTION 'create_vectorizer: chunking separator % is not a valid Python regular expression: %',
                    quote_literal(separator), problem
                    USING ERRCODE = 'invalid_regular_expression',
                          HINT = 'Escape it, or pass is_separator_regex => false to split on the text as written.';
            END IF;
        END LOOP;
    END IF;
    IF indexing->>'implementation' NOT IN ('none', 'hnsw', 'diskann') THEN
        RAISE EXCEPTION 'create_vectorizer: unknown indexing implementation %', quote_nullable(indexing->>'implementation')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF indexing->>'implementation' = 'hnsw' AND dims > 2000 THEN
        RAISE EXCEPTION 'create_vectorizer: an HNSW index on vector supports at most 2000 dimensions, the model has %', dims
            USING ERRCODE = 'invalid_parameter_value', HINT = 'Pass indexing => ai.indexing_none().';
    END IF;
    IF indexing->>'implementation' = 'diskann' THEN
        IF NOT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'vectorscale') THEN
            RAISE EXCEPTION 'create_vectorizer: indexing_diskann needs the vectorscale extension (pgvectorscale) in this database'
                USING ERRCODE = 'feature_not_supported',
                      HINT = 'CREATE EXTENSION vectorscale where pgvectorscale is installed, or pass indexing => ai.indexing_hnsw().';
        END IF;
        IF (indexing->>'num_dimensions')::int4 > dims THEN
            RAISE EXCEPTION 'create_vectorizer: indexing_diskann num_dimensions % exceeds the model''s % dimensions', indexing->>'num_dimensions', dims
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
    END IF;
    IF scheduling->>'implementation' = 'pg_cron' AND ai.install_mode() = 'plain' THEN
        RAISE EXCEPTION 'create_vectorizer: scheduling_pg_cron runs the vectorizer with PL/Python, which a plain install (pgvectorizer install) does not have'
            USING ERRCODE = 'feature_not_supported',
                  HINT = 'Pass scheduling => ai.scheduling_none() and run pgvectorizer worker.';
    END IF;
    IF scheduling->>'implementation' = 'pg_cron' AND NOT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'pg_cron') THEN
        RAISE EXCEPTION 'create_vectorizer: scheduling_pg_cron needs the pg_cron extension in this database'
            USING ERRCODE = 'feature_not_supported', HINT = 'CREATE EXTENSION pg_cron, or pass scheduling => ai.scheduling_none().';
    END IF;

    -- A source without a primary key is refused here, before its columns are looked at.
    PERFORM ai._source_pk(source);

    -- The loading column: text of some kind (a URI for loading_uri), or bytea (a document
    -- stored in the table) for loading_column.
    load_att := ai._source_column(source, (loading->>'column_name')::name, 'loading');
    IF (SELECT t.typcategory FROM pg_type t
         WHERE t.oid = CASE WHEN (SELECT typtype FROM pg_type WHERE oid = load_att.atttypid) = 'd'
                            THEN (SELECT typbasetype FROM pg_type WHERE oid = load_att.atttypid)
                            ELSE load_att.atttypid END) IS DISTINCT FROM 'S'
       AND (loading->>'implementation' = 'uri' OR load_att.atttypid <> 'bytea'::regtype
            AND (SELECT typbasetype FROM pg_type WHERE oid = load_att.atttypid) IS DISTINCT FROM 'bytea'::regtype) THEN
        IF loading->>'implementation' = 'uri' THEN
            RAISE EXCEPTION 'create_vectorizer: loading column "%" of table % has type %; loading_uri needs a text type (text, varchar, char) holding URIs',
                load_att.attname, source, format_type(load_att.atttypid, load_att.atttypmod)
                USING ERRCODE = 'datatype_mismatch';
        END IF;
        RAISE EXCEPTION 'create_vectorizer: loading column "%" of table % has type %; it must be a text type (text, varchar, char) or bytea',
            load_att.attname, source, format_type(load_att.atttypid, load_att.atttypmod)
            USING ERRCODE = 'datatype_mismatch';
    END IF;

    -- Parsing: one of the four parsers; pymupdf and docling read documents, so loading_column
    -- needs a bytea column for them (a text column is embedded as it is).
    IF parsing->>'implementation' IS NULL OR parsing->>'implementation' NOT IN ('auto', 'none', 'pymupdf', 'docling') THEN
        RAISE EXCEPTION 'create_vectorizer: unknown parsing implementation %', quote_nullable(parsing->>'implementation')
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Use ai.parsing_auto, ai.parsing_none, ai.parsing_pymupdf or ai.parsing_docling.';
    END IF;
    IF parsing->>'implementation' IN ('pymupdf', 'docling') AND loading->>'implementation' = 'column'
       AND load_att.atttypid <> 'bytea'::regtype
       AND (SELECT typbasetype FROM pg_type WHERE oid = load_att.atttypid) IS DISTINCT FROM 'bytea'::regtype THEN
        RAISE EXCEPTION 'create_vectorizer: parsing_% reads documents, but loading column "%" of table % has type %',
            parsing->>'implementation', load_att.attname, source, format_type(load_att.atttypid, load_att.atttypmod)
            USING ERRCODE = 'datatype_mismatch',
                  HINT = 'Use a bytea column or ai.loading_uri, or ai.parsing_auto() for a text column.';
    END IF;

    -- Template columns, other than $chunk, must be columns of the source.
    IF formatting->>'implementation' IS DISTINCT FROM 'python_template' THEN
        RAISE EXCEPTION 'create_vectorizer: unknown formatting implementation %', quote_nullable(formatting->>'implementation')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    tmpl_cols := ARRAY(SELECT n FROM unnest(ai._template_names(formatting->>'template')) AS n WHERE n <> 'chunk');
    IF NOT 'chunk' = ANY (ai._template_names(formatting->>'template')) THEN
        RAISE EXCEPTION 'create_vectorizer: the formatting template must contain $chunk' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    FOREACH col IN ARRAY tmpl_cols LOOP
        PERFORM ai._source_column(source, col, 'template');
    END LOOP;

    filter_cols := ai._row_filter_columns(source, row_filter);

    -- Destination names, defaults as pgai's.
    IF destination->>'implementation' = 'table' THEN
        destination := jsonb_build_object('implementation', 'table', 'config_type', 'destination',
            'target_schema', coalesce(destination->>'target_schema', src_schema),
            'target_table', ai._check_identifier(coalesce(destination->>'target_table',
                destination->>'destination' || '_store', src_table || '_embedding_store'), 'target table'),
            'view_schema', coalesce(destination->>'view_schema', destination->>'target_schema', src_schema),
            'view_name', ai._check_identifier(coalesce(destination->>'view_name',
                destination->>'destination', src_table || '_embedding'), 'view'));
    ELSIF destination->>'implementation' = 'column' THEN
        IF chunking->>'implementation' <> 'none' THEN
            RAISE EXCEPTION 'create_vectorizer: destination_column stores one embedding per row, so chunking must be ai.chunking_none()'
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
    ELSE
        RAISE EXCEPTION 'create_vectorizer: unknown destination implementation %', quote_nullable(destination->>'implementation')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;

    RETURN jsonb_build_object(
        'version', '@EXTVERSION@',
        'loading', loading, 'parsing', parsing, 'embedding', embedding, 'chunking', chunking,
        'formatting', formatting, 'indexing', indexing, 'scheduling', scheduling,
        'processing', processing, 'destination', destination,
        'row_filter', row_filter,
        'filter_columns', to_jsonb(filter_cols),
        'template_columns', to_jsonb(tmpl_cols),
        'grant_to', to_jsonb(coalesce(grant_to, '{}')));
END $$;
COMMENT ON FUNCTION ai._vectorizer_resolve_config(regclass, jsonb, jsonb, jsonb, jsonb, jsonb, jsonb, jsonb, jsonb, jsonb, name[], text)
    IS 'Check create_vectorizer''s configs against each other and the source, and return the config a new vectorizer stores';

-- A vectorizer's name when create_vectorizer is given none, as pgai's: the view's schema and
-- name, or the source's schema, table and vector column.
-- pgai's default: <target_schema>_<target_table> of the store, or <schema>_<table>_<column>
-- for a vector column. pgai then refuses names that are not lower-case snake case, so a quoted
-- table name ("Blog Posts") fails there; here such a default is made to fit (lower case, runs
-- of other characters as one _, a leading v_ where it would not start with a letter, 63 bytes).
CREATE FUNCTION ai._vectorizer_default_name(source regclass, config jsonb) RETURNS text
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
RETURN (SELECT left(CASE WHEN raw ~ '^[a-z]' THEN raw ELSE 'v_' || raw END, 63)
          FROM (SELECT lower(regexp_replace(CASE config->'destination'->>'implementation'
                   WHEN 'table' THEN format('%s_%s', config->'destination'->>'target_schema', config->'destination'->>'target_table')
                   WHEN 'column' THEN format('%s_%s_%s', n.nspname, c.relname, config->'destination'->>'embedding_column')
               END, '[^A-Za-z0-9_]+', '_', 'g')) AS raw
          FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = source) AS d);
COMMENT ON FUNCTION ai._vectorizer_default_name(regclass, jsonb) IS 'The name create_vectorizer gives a vectorizer it is given no name for (pgai''s)';

-- pgai's rule for a vectorizer's name: lower-case letters, digits and _, from a letter; at most
-- 63 bytes (a name).
CREATE FUNCTION ai._vectorizer_check_name(name text) RETURNS void
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF name IS NULL OR name !~ '^[a-z][a-z_0-9]*$' OR octet_length(name) > 63 THEN
        RAISE EXCEPTION 'create_vectorizer: vectorizer name % must be lower-case letters, digits and _, start with a letter and be at most 63 bytes', quote_nullable(name)
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'pgai checks names the same way; for example blog_embeddings.';
    END IF;
END $$;

-- Nothing may stand where a new vectorizer's objects go (its queue tables are checked
-- by ai._vectorizer_register, which names them): the store, the view or the vector column, the
-- view's own columns, and the queue's bookkeeping columns beside the key.
CREATE FUNCTION ai._vectorizer_check_targets(source regclass, config jsonb) RETURNS void
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    destination jsonb := config->'destination';
    reserved    text[];
    col         name;
BEGIN
    IF destination->>'implementation' = 'table' THEN
        reserved := ARRAY['embedding_uuid', 'chunk_seq', 'chunk', 'embedding'];
        SELECT attname INTO col FROM pg_attribute
         WHERE attrelid = source AND attnum > 0 AND NOT attisdropped AND attname = ANY (reserved) LIMIT 1;
        IF FOUND THEN
            RAISE EXCEPTION 'create_vectorizer: source table % has a column "%", which the view % would repeat',
                source, col, format('%I.%I', destination->>'view_schema', destination->>'view_name')
                USING ERRCODE = 'duplicate_column', HINT = 'The view adds embedding_uuid, chunk_seq, chunk and embedding; use destination_column, or rename the column.';
        END IF;
        IF to_regclass(format('%I.%I', destination->>'target_schema', destination->>'target_table')) IS NOT NULL THEN
            RAISE EXCEPTION 'create_vectorizer: destination table %.% already exists', quote_ident(destination->>'target_schema'),
                quote_ident(destination->>'target_table') USING ERRCODE = 'duplicate_table';
        END IF;
        IF to_regclass(format('%I.%I', destination->>'view_schema', destination->>'view_name')) IS NOT NULL THEN
            RAISE EXCEPTION 'create_vectorizer: view %.% already exists', quote_ident(destination->>'view_schema'),
                quote_ident(destination->>'view_name') USING ERRCODE = 'duplicate_table';
        END IF;
    ELSE
        IF EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = source AND attname = destination->>'embedding_column'
                     AND attnum > 0 AND NOT attisdropped) THEN
            RAISE EXCEPTION 'create_vectorizer: column "%" already exists in table %', destination->>'embedding_column', source
                USING ERRCODE = 'duplicate_column';
        END IF;
    END IF;

    -- The queue repeats the primary key beside its own bookkeeping columns.
    col := (SELECT p->>'attname' FROM jsonb_array_elements(ai._source_pk(source)) AS p
             WHERE p->>'attname' = ANY (ARRAY['queued_at', 'attempts', 'retry_after', 'claimed_by', 'failed_at', 'failure_step', 'error',
                                              'embedding_uuid', 'chunk_seq', 'chunk', 'embedding', 'chunk_hash']) LIMIT 1);
    IF col IS NOT NULL THEN
        RAISE EXCEPTION 'create_vectorizer: primary-key column "%" of % has a name the vectorizer reserves', col, source
            USING ERRCODE = 'duplicate_column';
    END IF;
END $$;
COMMENT ON FUNCTION ai._vectorizer_check_targets(regclass, jsonb) IS 'Refuse a new vectorizer whose store, view, vector column or queue columns would clash with what exists';

-- The source columns whose changes a vectorizer's triggers watch: the key, the loading column,
-- the template's and the row filter's columns.
CREATE FUNCTION ai._vectorizer_read_columns(v ai.vectorizer) RETURNS name[]
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
RETURN ARRAY(SELECT DISTINCT c::name FROM unnest(
           ARRAY(SELECT p->>'attname' FROM jsonb_array_elements(v.source_pk) AS p)
           || ARRAY[v.config->'loading'->>'column_name']
           || ARRAY(SELECT jsonb_array_elements_text(coalesce(v.config->'template_columns', '[]')))
           || ARRAY(SELECT jsonb_array_elements_text(coalesce(v.config->'filter_columns', '[]')))) AS c);
COMMENT ON FUNCTION ai._vectorizer_read_columns(ai.vectorizer) IS 'The source columns a vectorizer reads, whose changes its triggers watch';

-- A vectorizer's objects outside the queue schema, from its catalog row alone: the store and
-- its view (or the vector column), the triggers on the source, and the grants to its grant_to
-- roles. The queue and its functions must exist (ai._vectorizer_create_queue). With the
-- caller's rights, who must be the vectorizer's owner, so that the owner owns what is made.
CREATE FUNCTION ai._vectorizer_create_objects(v ai.vectorizer) RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF current_user IS DISTINCT FROM v.owner THEN
        RAISE EXCEPTION 'ai._vectorizer_create_objects runs as the owner of vectorizer "%" only', v.name
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    PERFORM ai._vectorizer_create_destination(v);
    PERFORM ai._vectorizer_create_triggers(v, ai._vectorizer_read_columns(v));
    PERFORM ai._vectorizer_grant(v, ARRAY(SELECT jsonb_array_elements_text(coalesce(v.config->'grant_to', '[]')))::name[]);
END $$;
COMMENT ON FUNCTION ai._vectorizer_create_objects(ai.vectorizer) IS 'Make a vectorizer''s store and view (or vector column), source triggers and grants from its catalog row';

CREATE FUNCTION ai.create_vectorizer
( source regclass
, name text DEFAULT NULL
, destination jsonb DEFAULT ai.destination_table()
, loading jsonb DEFAULT NULL
, parsing jsonb DEFAULT ai.parsing_auto()
, embedding jsonb DEFAULT NULL
, chunking jsonb DEFAULT NULL
, indexing jsonb DEFAULT ai.indexing_default()
, formatting jsonb DEFAULT ai.formatting_python_template()
, scheduling jsonb DEFAULT ai.scheduling_default()
, processing jsonb DEFAULT ai.processing_default()
, queue_schema name DEFAULT NULL
, queue_table name DEFAULT NULL
, grant_to name[] DEFAULT ai.grant_to()
, enqueue_existing bool DEFAULT true
, if_not_exists bool DEFAULT false
, row_filter text DEFAULT NULL
) RETURNS int4
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    config   jsonb;
    v        ai.vectorizer;
    existing int4;
    queued   int8;
    step     int4;
    backfill jsonb;
BEGIN
    IF source IS NULL THEN
        RAISE EXCEPTION 'create_vectorizer: source is required' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    PERFORM ai._vectorizer_require_admin('create_vectorizer');
    PERFORM ai._vectorizer_check_owner(current_user, source, scheduling);
    PERFORM ai._vectorizer_check_source(source);
    -- As pgai: a grant_to role that does not exist is skipped with a warning.
    IF EXISTS (SELECT 1 FROM unnest(grant_to) AS g WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = g)) THEN
        RAISE WARNING 'create_vectorizer: grant_to roles % do not exist; skipped',
            ARRAY(SELECT g FROM unnest(grant_to) AS g WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = g));
        grant_to := ARRAY(SELECT g FROM unnest(grant_to) AS g WHERE EXISTS (SELECT 1 FROM pg_roles WHERE rolname = g));
    END IF;
    -- Writers wait from here to commit, so no row changes between the trigger and the backfill.
    EXECUTE format('LOCK TABLE %s IN SHARE ROW EXCLUSIVE MODE', source);

    config := ai._vectorizer_resolve_config(source, destination, loading, parsing, embedding, chunking, indexing,
                                            formatting, scheduling, processing, grant_to, row_filter);
    IF name IS NULL THEN
        name := ai._vectorizer_default_name(source, config);
    ELSE
        PERFORM ai._vectorizer_check_name(name);
    END IF;

    SELECT id INTO existing FROM ai.vectorizer WHERE vectorizer.name = create_vectorizer.name;
    IF FOUND THEN
        IF if_not_exists THEN
            RAISE NOTICE 'vectorizer "%" already exists, skipping', name;
            RETURN existing;
        END IF;
        RAISE EXCEPTION 'create_vectorizer: a vectorizer named "%" already exists (id %)', name, existing
            USING ERRCODE = 'duplicate_object', HINT = 'Pass another name, or if_not_exists => true.';
    END IF;

    PERFORM ai._vectorizer_check_targets(source, config);

    v := ai._vectorizer_register(current_user, source, name, config, coalesce(queue_schema, 'ai'), queue_table);
    PERFORM ai._vectorizer_create_objects(v);

    IF enqueue_existing THEN
        -- The first step of existing rows (in key order) now; a larger source's rest is queued
        -- a step at a time by the claims that find the queue short (ai._vq_backfill_next),
        -- after this transaction has committed the triggers: writers wait for this first step only, and every row is
        -- queued either by a step (it existed when the step looked) or by the triggers.
        step := ai._vq_backfill_step();
        backfill := ai._vq_backfill(v, NULL, step, true);
        queued := (backfill->>'queued')::int8;
        IF jsonb_typeof(backfill->'last') = 'array' THEN
            PERFORM ai._vectorizer_backfill_set(v.id, backfill->'last');
            RAISE NOTICE 'create_vectorizer: queued the first % rows of %; the rest are queued % at a time by the claims of workers and runs that follow',
                queued, source, step;
        END IF;
        -- A fresh queue has no statistics until autovacuum first analyzes it, a minute or more
        -- in: until then the claim plans seq scans of the whole backlog (295 ms a claim on a
        -- million rows, 13 ms once analyzed). A sample of the queue now costs a fraction of the
        -- backfill.
        IF queued > 0 THEN
            EXECUTE format('ANALYZE %I.%I', v.queue_schema, v.queue_table);
        END IF;
    END IF;
    RETURN v.id;
END $$;
COMMENT ON FUNCTION ai.create_vectorizer(regclass, text, jsonb, jsonb, jsonb, jsonb, jsonb, jsonb, jsonb, jsonb, jsonb, name, name, name[], bool, bool, text)
    IS 'Create a vectorizer: a queue fed by triggers on the source, a store of chunks and embeddings, and a view';
