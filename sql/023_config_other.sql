-- Config helpers: indexing, scheduling, processing, destination and grants.

CREATE FUNCTION ai.indexing_none() RETURNS jsonb LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
RETURN jsonb_build_object('implementation', 'none', 'config_type', 'indexing');
COMMENT ON FUNCTION ai.indexing_none() IS 'Never create a vector index on the store';

CREATE FUNCTION ai.indexing_default() RETURNS jsonb LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
RETURN jsonb_build_object('implementation', 'default', 'config_type', 'indexing');
COMMENT ON FUNCTION ai.indexing_default() IS 'The default index: HNSW with cosine distance once the store has 100000 rows';

CREATE FUNCTION ai.indexing_hnsw
( min_rows int4 DEFAULT 100000
, opclass text DEFAULT 'vector_cosine_ops'
, m int4 DEFAULT NULL
, ef_construction int4 DEFAULT NULL
, create_when_queue_empty bool DEFAULT false
) RETURNS jsonb LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF min_rows IS NULL OR min_rows < 0 THEN
        RAISE EXCEPTION 'indexing_hnsw: min_rows must be 0 or more, got %', min_rows USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF opclass IS NULL OR opclass NOT IN ('vector_cosine_ops', 'vector_ip_ops', 'vector_l2_ops', 'vector_l1_ops') THEN
        RAISE EXCEPTION 'indexing_hnsw: opclass must be one of vector_cosine_ops, vector_ip_ops, vector_l2_ops, vector_l1_ops, got %', quote_nullable(opclass)
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    -- pgvector's own limits, checked here so a bad value fails at creation, not at index time.
    IF m IS NOT NULL AND (m < 2 OR m > 100) THEN
        RAISE EXCEPTION 'indexing_hnsw: m must be between 2 and 100, got %', m USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF ef_construction IS NOT NULL AND (ef_construction < 4 OR ef_construction > 1000
            OR ef_construction < 2 * coalesce(m, 16)) THEN
        RAISE EXCEPTION 'indexing_hnsw: ef_construction must be between 4 and 1000 and at least 2 * m (%), got %', 2 * coalesce(m, 16), ef_construction
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    RETURN jsonb_strip_nulls(jsonb_build_object('implementation', 'hnsw', 'config_type', 'indexing',
        'min_rows', min_rows, 'opclass', opclass, 'm', m, 'ef_construction', ef_construction,
        'create_when_queue_empty', coalesce(create_when_queue_empty, false)));
END $$;
COMMENT ON FUNCTION ai.indexing_hnsw(int4, text, int4, int4, bool) IS 'An HNSW index on the store, created once it has min_rows rows';

-- pgvectorscale's StreamingDiskANN index (pgai's signature). Built only where the vectorscale
-- extension is installed: create_vectorizer says so otherwise. Unset options are left to
-- pgvectorscale's defaults.
CREATE FUNCTION ai.indexing_diskann
( min_rows int4 DEFAULT 100000
, storage_layout text DEFAULT NULL
, num_neighbors int4 DEFAULT NULL
, search_list_size int4 DEFAULT NULL
, max_alpha float8 DEFAULT NULL
, num_dimensions int4 DEFAULT NULL
, num_bits_per_dimension int4 DEFAULT NULL
, create_when_queue_empty bool DEFAULT true
) RETURNS jsonb LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF min_rows IS NULL OR min_rows < 0 THEN
        RAISE EXCEPTION 'indexing_diskann: min_rows must be 0 or more, got %', min_rows USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF storage_layout IS NOT NULL AND storage_layout NOT IN ('memory_optimized', 'plain') THEN
        RAISE EXCEPTION 'indexing_diskann: storage_layout must be memory_optimized or plain, got %', quote_literal(storage_layout)
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF num_neighbors < 1 OR search_list_size < 1 THEN
        RAISE EXCEPTION 'indexing_diskann: num_neighbors and search_list_size must be positive, got % and %', num_neighbors, search_list_size
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    -- Alpha below 1 would prune the graph to nothing useful; NaN and infinity are no numbers.
    IF max_alpha < 1 OR max_alpha = 'NaN'::float8 OR max_alpha = 'Infinity'::float8 THEN
        RAISE EXCEPTION 'indexing_diskann: max_alpha must be a number of 1 or more, got %', max_alpha
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF num_dimensions < 0 THEN
        RAISE EXCEPTION 'indexing_diskann: num_dimensions must be 0 (all) or more, got %', num_dimensions
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF num_bits_per_dimension < 1 OR num_bits_per_dimension > 32 THEN
        RAISE EXCEPTION 'indexing_diskann: num_bits_per_dimension must be between 1 and 32, got %', num_bits_per_dimension
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    RETURN jsonb_strip_nulls(jsonb_build_object('implementation', 'diskann', 'config_type', 'indexing',
        'min_rows', min_rows, 'storage_layout', storage_layout, 'num_neighbors', num_neighbors,
        'search_list_size', search_list_size, 'max_alpha', max_alpha, 'num_dimensions', num_dimensions,
        'num_bits_per_dimension', num_bits_per_dimension,
        'create_when_queue_empty', coalesce(create_when_queue_empty, true)));
END $$;
COMMENT ON FUNCTION ai.indexing_diskann(int4, text, int4, int4, float8, int4, int4, bool) IS 'A pgvectorscale StreamingDiskANN index on the store, created once it has min_rows rows (needs the vectorscale extension)';

CREATE FUNCTION ai.scheduling_none() RETURNS jsonb LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
RETURN jsonb_build_object('implementation', 'none', 'config_type', 'scheduling');
COMMENT ON FUNCTION ai.scheduling_none() IS 'No in-database schedule: an external worker processes the queue';

CREATE FUNCTION ai.scheduling_default() RETURNS jsonb LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
RETURN jsonb_build_object('implementation', 'default', 'config_type', 'scheduling');
COMMENT ON FUNCTION ai.scheduling_default() IS 'pg_cron every 5 minutes when pg_cron is installed, otherwise none';

CREATE FUNCTION ai.scheduling_pg_cron(schedule text DEFAULT '*/5 * * * *', max_seconds int4 DEFAULT 240)
RETURNS jsonb LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    -- The shapes pg_cron accepts: five cron fields, a @macro, or "N seconds" (pg_cron 1.5+).
    IF schedule IS NULL OR btrim(schedule) !~* '^(@(yearly|annually|monthly|weekly|daily|hourly)|[0-9]+ seconds?|(\S+\s+){4}\S+)$' THEN
        RAISE EXCEPTION 'scheduling_pg_cron: % is not a cron schedule', quote_nullable(schedule)
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Use five cron fields such as ''*/5 * * * *'', a macro such as ''@hourly'', or ''30 seconds''.';
    END IF;
    -- A run stops claiming when its time is up; pg_cron starts no second run of a job that
    -- is still running, so a bound longer than the schedule only delays the next run.
    IF max_seconds IS NULL OR max_seconds < 1 THEN
        RAISE EXCEPTION 'scheduling_pg_cron: max_seconds must be 1 or more, got %', quote_nullable(max_seconds)
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    RETURN jsonb_build_object('implementation', 'pg_cron', 'config_type', 'scheduling', 'schedule', btrim(schedule),
                              'max_seconds', max_seconds);
END $$;
COMMENT ON FUNCTION ai.scheduling_pg_cron(text, int4) IS 'Run the vectorizer inside the database on a pg_cron schedule, each run at most max_seconds';

-- pgai's TimescaleDB job schedule. There is no TimescaleDB job here: create_vectorizer runs the
-- vectorizer on the pg_cron schedule that comes nearest (_cron_schedule), or leaves it to the
-- worker where pg_cron cannot run it, and says which.
CREATE FUNCTION ai.scheduling_timescaledb
( schedule_interval interval DEFAULT interval '5m'
, initial_start timestamptz DEFAULT NULL
, fixed_schedule bool DEFAULT NULL
, timezone text DEFAULT NULL
) RETURNS jsonb LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF schedule_interval IS NULL OR schedule_interval <= interval '0' THEN
        RAISE EXCEPTION 'scheduling_timescaledb: schedule_interval must be positive, got %', quote_nullable(schedule_interval)
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF timezone IS NOT NULL AND NOT EXISTS (SELECT 1 FROM pg_timezone_names WHERE name = timezone) THEN
        RAISE EXCEPTION 'scheduling_timescaledb: unknown time zone %', quote_literal(timezone)
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    RETURN jsonb_strip_nulls(jsonb_build_object('implementation', 'timescaledb', 'config_type', 'scheduling',
        'schedule_interval', schedule_interval::text, 'initial_start', initial_start,
        'fixed_schedule', fixed_schedule, 'timezone', timezone));
END $$;
COMMENT ON FUNCTION ai.scheduling_timescaledb(interval, timestamptz, bool, text) IS 'pgai''s TimescaleDB schedule: run on the nearest pg_cron schedule where pg_cron is installed, else by the worker';

-- The cron schedule that runs every `every`, in pg_cron's time zone (cron.timezone): seconds
-- (pg_cron 1.5's "N seconds"; every minute, its shortest, before that), minutes that divide an hour, hours that divide a day, a day or a
-- week, at the minute, hour and weekday of `start` when one is given. NULL when cron cannot
-- say it (every 7 minutes, say).
CREATE FUNCTION ai._cron_schedule(every interval, start timestamptz) RETURNS text
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    secs  float8 := extract(epoch FROM every);
    local timestamp := start AT TIME ZONE coalesce(current_setting('cron.timezone', true), 'GMT');
    m     int := coalesce(extract(minute FROM local)::int, 0);
    h     int := coalesce(extract(hour FROM local)::int, 0);
BEGIN
    IF secs <> trunc(secs) OR secs < 1 THEN
        RETURN NULL;
    ELSIF secs < 60 THEN
        RETURN CASE WHEN (SELECT (regexp_match(extversion, '^(\d+)\.(\d+)'))::int[] >= ARRAY[1, 5]
                            FROM pg_extension WHERE extname = 'pg_cron') IS NOT FALSE
                    THEN format('%s seconds', secs::int) ELSE '* * * * *' END;
    ELSIF secs::int8 % 60 = 0 AND secs < 3600 AND 60 % (secs::int / 60) = 0 THEN
        RETURN CASE WHEN secs = 60 THEN '* * * * *'
                    ELSE format('%s-59/%s * * * *', m % (secs::int / 60), secs::int / 60) END;
    ELSIF secs::int8 % 3600 = 0 AND secs < 86400 AND 24 % (secs::int / 3600) = 0 THEN
        RETURN CASE WHEN secs = 3600 THEN format('%s * * * *', m)
                    ELSE format('%s %s-23/%s * * *', m, h % (secs::int / 3600), secs::int / 3600) END;
    ELSIF secs = 86400 THEN
        RETURN format('%s %s * * *', m, h);
    ELSIF secs = 604800 THEN
        RETURN format('%s %s * * %s', m, h, coalesce(extract(dow FROM local)::int, 0));
    END IF;
    RETURN NULL;
END $$;

CREATE FUNCTION ai.processing_default(batch_size int4 DEFAULT NULL, concurrency int4 DEFAULT NULL)
RETURNS jsonb LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF batch_size IS NOT NULL AND (batch_size < 1 OR batch_size > 2048) THEN
        RAISE EXCEPTION 'processing_default: batch_size must be between 1 and 2048, got %', batch_size USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF concurrency IS NOT NULL AND (concurrency < 1 OR concurrency > 50) THEN
        RAISE EXCEPTION 'processing_default: concurrency must be between 1 and 50, got %', concurrency USING ERRCODE = 'invalid_parameter_value';
    END IF;
    RETURN jsonb_strip_nulls(jsonb_build_object('implementation', 'default', 'config_type', 'processing',
        'batch_size', batch_size, 'concurrency', concurrency));
END $$;
COMMENT ON FUNCTION ai.processing_default(int4, int4) IS 'How many rows a worker claims at once and how many batches it runs in parallel';

CREATE FUNCTION ai.destination_table
( destination name DEFAULT NULL
, target_schema name DEFAULT NULL
, target_table name DEFAULT NULL
, view_schema name DEFAULT NULL
, view_name name DEFAULT NULL
) RETURNS jsonb LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF destination IS NOT NULL AND (target_table IS NOT NULL OR view_name IS NOT NULL) THEN
        RAISE EXCEPTION 'destination_table: pass either destination or target_table/view_name, not both'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    RETURN jsonb_strip_nulls(jsonb_build_object('implementation', 'table', 'config_type', 'destination',
        'destination', destination, 'target_schema', target_schema, 'target_table', target_table,
        'view_schema', view_schema, 'view_name', view_name));
END $$;
COMMENT ON FUNCTION ai.destination_table(name, name, name, name, name) IS 'Store chunks and embeddings in a table of their own, joined to the source by a view';

CREATE FUNCTION ai.destination_column(embedding_column name)
RETURNS jsonb LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF embedding_column IS NULL OR embedding_column = '' THEN
        RAISE EXCEPTION 'destination_column: embedding_column is required' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    RETURN jsonb_build_object('implementation', 'column', 'config_type', 'destination', 'embedding_column', embedding_column);
END $$;
COMMENT ON FUNCTION ai.destination_column(name) IS 'Store one embedding per row in a new vector column of the source table (needs chunking_none)';

-- The roles named, and (as pgai's) those of the setting ai.grant_to_default, a comma-separated
-- list of roles (SET ai.grant_to_default = 'a, b'; or ALTER DATABASE/ROLE ... SET).
CREATE FUNCTION ai.grant_to(VARIADIC grantees name[] DEFAULT '{}')
RETURNS name[] LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
RETURN ARRAY(SELECT DISTINCT g FROM (
                 SELECT unnest(grantees) AS g
                 UNION ALL
                 SELECT btrim(d)::name FROM regexp_split_to_table(current_setting('ai.grant_to_default', true), ',') AS d
             ) AS a WHERE g IS NOT NULL AND g <> '' ORDER BY g);
COMMENT ON FUNCTION ai.grant_to(name[]) IS 'Roles that get access to a vectorizer''s queue, store and view: those named and those of ai.grant_to_default';
