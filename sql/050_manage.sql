-- Managing vectorizers: drop, schedule on/off, queue depth, status and errors.

CREATE FUNCTION ai._vectorizer_by_name(vectorizer_name text) RETURNS int4
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    vid int4;
BEGIN
    SELECT id INTO vid FROM ai.vectorizer WHERE name = vectorizer_name;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'vectorizer "%" does not exist', vectorizer_name USING ERRCODE = 'undefined_object';
    END IF;
    RETURN vid;
END $$;

CREATE FUNCTION ai._vectorizer_get(vectorizer_id int4, for_update bool DEFAULT false) RETURNS ai.vectorizer
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v ai.vectorizer;
BEGIN
    IF for_update THEN
        SELECT * INTO v FROM ai.vectorizer WHERE id = vectorizer_id FOR UPDATE;
    ELSE
        SELECT * INTO v FROM ai.vectorizer WHERE id = vectorizer_id;
    END IF;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'vectorizer % does not exist', vectorizer_id USING ERRCODE = 'undefined_object';
    END IF;
    RETURN v;
END $$;

-- Drops what a vectorizer made, quietly skipping what is already gone (a dropped source, say).
-- It runs with a definer's rights, so it drops only objects owned by the vectorizer's owner,
-- and triggers only when they call this vectorizer's own function.
CREATE FUNCTION ai._vectorizer_drop_objects(v ai.vectorizer, drop_all bool) RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    dest      jsonb := v.config->'destination';
    owner_oid oid := (SELECT oid FROM pg_roles WHERE rolname = v.owner);
    source    regclass := to_regclass(format('%I.%I', v.source_schema, v.source_table));
    func      regprocedure := to_regprocedure(format('%I.%I()', v.queue_schema, v.trigger_name));
    trg       record;
    rel       regclass;
BEGIN
    PERFORM ai._vectorizer_unschedule(v.id);
    IF func IS NOT NULL AND (SELECT proowner FROM pg_proc WHERE oid = func) = owner_oid THEN
        -- Clones on partitions go with their parent's trigger.
        FOR trg IN SELECT tgrelid::regclass AS rel, tgname FROM pg_trigger WHERE tgfoid = func AND tgparentid = 0 LOOP
            EXECUTE format('DROP TRIGGER %I ON %s', trg.tgname, trg.rel);
        END LOOP;
        EXECUTE format('DROP FUNCTION %s', func);
    END IF;
    func := to_regprocedure(ai._vectorizer_ops_name(v) || '(pg_catalog.text, pg_catalog.jsonb)');
    IF func IS NOT NULL AND (SELECT proowner FROM pg_proc WHERE oid = func) = owner_oid THEN
        EXECUTE format('DROP FUNCTION %s', func);
    END IF;
    FOR rel IN SELECT r FROM unnest(ARRAY[
            to_regclass(format('%I.%I', v.queue_schema, v.queue_table)),
            to_regclass(format('%I.%I', v.queue_schema, v.queue_failed_table)),
            CASE WHEN drop_all AND dest->>'implementation' = 'table'
                 THEN to_regclass(format('%I.%I', dest->>'view_schema', dest->>'view_name')) END,
            CASE WHEN drop_all AND dest->>'implementation' = 'table'
                 THEN to_regclass(format('%I.%I', dest->>'target_schema', dest->>'target_table')) END]) AS r
        WHERE r IS NOT NULL AND (SELECT relowner FROM pg_class WHERE oid = r) = owner_oid
    LOOP
        EXECUTE format(CASE WHEN (SELECT relkind FROM pg_class WHERE oid = rel) = 'v' THEN 'DROP VIEW %s' ELSE 'DROP TABLE %s' END, rel);
    END LOOP;
    IF drop_all AND dest->>'implementation' = 'column' AND source IS NOT NULL
       AND (SELECT relowner FROM pg_class WHERE oid = source) = owner_oid
       AND EXISTS (SELECT 1 FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid
                    WHERE a.attrelid = source AND a.attname = dest->>'embedding_column'
                      AND NOT a.attisdropped AND t.typname = 'vector') THEN
        EXECUTE format('ALTER TABLE %s DROP COLUMN %I', source, dest->>'embedding_column');
    END IF;
END $$;

CREATE FUNCTION ai.drop_vectorizer(vectorizer_id int4, drop_all bool DEFAULT false) RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    PERFORM ai._vectorizer_require_admin('drop_vectorizer');
    PERFORM ai._vectorizer_unregister(vectorizer_id, coalesce(drop_all, false));
END $$;
COMMENT ON FUNCTION ai.drop_vectorizer(int4, bool) IS 'Drop a vectorizer''s triggers and queue; with drop_all, its store and view (or column) too';

CREATE FUNCTION ai.drop_vectorizer(name text, drop_all bool DEFAULT false) RETURNS void
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
BEGIN ATOMIC
    SELECT ai.drop_vectorizer(ai._vectorizer_by_name(name), drop_all);
END;
COMMENT ON FUNCTION ai.drop_vectorizer(text, bool) IS 'Drop a vectorizer by name; with drop_all, its store and view (or column) too';

-- Workers and schedules skip a disabled vectorizer; its triggers keep queueing, so nothing is
-- lost while it is off.
CREATE FUNCTION ai._vectorizer_disable(vectorizer_id int4, disabled bool) RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    PERFORM ai._vectorizer_require_admin(CASE WHEN disabled THEN 'disable_vectorizer_schedule' ELSE 'enable_vectorizer_schedule' END);
    PERFORM ai._vectorizer_set_disabled(vectorizer_id, disabled);
END $$;

CREATE FUNCTION ai.enable_vectorizer_schedule(vectorizer_id int4) RETURNS void
LANGUAGE sql VOLATILE SET search_path = pg_catalog, pg_temp
BEGIN ATOMIC SELECT ai._vectorizer_disable(vectorizer_id, false); END;
COMMENT ON FUNCTION ai.enable_vectorizer_schedule(int4) IS 'Let workers and the schedule process this vectorizer again';

CREATE FUNCTION ai.enable_vectorizer_schedule(name text) RETURNS void
LANGUAGE sql VOLATILE SET search_path = pg_catalog, pg_temp
BEGIN ATOMIC SELECT ai._vectorizer_disable(ai._vectorizer_by_name(name), false); END;
COMMENT ON FUNCTION ai.enable_vectorizer_schedule(text) IS 'Let workers and the schedule process this vectorizer again, by name';

CREATE FUNCTION ai.disable_vectorizer_schedule(vectorizer_id int4) RETURNS void
LANGUAGE sql VOLATILE SET search_path = pg_catalog, pg_temp
BEGIN ATOMIC SELECT ai._vectorizer_disable(vectorizer_id, true); END;
COMMENT ON FUNCTION ai.disable_vectorizer_schedule(int4) IS 'Pause processing of this vectorizer; changes keep being queued';

CREATE FUNCTION ai.disable_vectorizer_schedule(name text) RETURNS void
LANGUAGE sql VOLATILE SET search_path = pg_catalog, pg_temp
BEGIN ATOMIC SELECT ai._vectorizer_disable(ai._vectorizer_by_name(name), true); END;
COMMENT ON FUNCTION ai.disable_vectorizer_schedule(text) IS 'Pause processing of this vectorizer by name; changes keep being queued';

-- Whether reading a relation of a vectorizer's owner can run none of the owner's code: a plain
-- table (no view, whose functions would run as the reader) without row-level security (whose
-- policies would). Status counts read such tables directly, and nothing else.
CREATE FUNCTION ai._vectorizer_plain_table(rel regclass) RETURNS bool
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
RETURN coalesce((SELECT c.relkind IN ('r', 'p') AND NOT c.relrowsecurity FROM pg_class c WHERE c.oid = rel), false);

-- Pending rows. Exact: distinct keys (a key queued twice is one row of work). Otherwise a
-- cheap count that stops at 10001 and then trusts the planner's estimate. A source still being
-- queued in steps adds its rows past the backfill's last key (those the caller may read; an
-- estimate otherwise).
CREATE FUNCTION ai.vectorizer_queue_pending(vectorizer_id int4, exact_count bool DEFAULT false) RETURNS int8
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v      ai.vectorizer := ai._vectorizer_get(vectorizer_id);
    queue  text := format('%I.%I', v.queue_schema, v.queue_table);
    source regclass := to_regclass(format('%I.%I', v.source_schema, v.source_table));
    after  jsonb := CASE WHEN has_function_privilege('ai._vectorizer_backfill_after(int4, bool)', 'EXECUTE')
                         THEN ai._vectorizer_backfill_after(vectorizer_id) END;
    pk     text := ai._pk_list(v.source_pk, '%I');
    rest   text;
    n      int8;
    more   int8;
BEGIN
    IF NOT ai._vectorizer_plain_table(to_regclass(queue)) THEN
        RETURN NULL;  -- not a table the owner's code cannot hook into: not counted
    END IF;
    IF after IS NOT NULL AND source IS NOT NULL AND ai._vectorizer_plain_table(source)
       AND has_table_privilege(source, 'SELECT') THEN
        PERFORM set_config('search_path', ai._vq_path(v), true);  -- the key types' operators
        rest := format('SELECT %s FROM %s WHERE (%s) > (%s)', pk, source, pk, ai._vq_key_values(v, '$1'));
        IF v.config->>'row_filter' IS NOT NULL THEN
            BEGIN
                -- The filter runs with the caller's rights; where it fails, rows count unfiltered.
                EXECUTE format('SELECT count(*) FROM (%s AND (%s)) AS r', rest, v.config->>'row_filter') INTO more USING after;
                rest := format('%s AND (%s)', rest, v.config->>'row_filter');
            EXCEPTION WHEN others THEN
                NULL;
            END;
        END IF;
        IF exact_count THEN
            EXECUTE format('SELECT count(*) FROM (SELECT %s FROM %s UNION %s) AS k', pk, queue, rest) INTO n USING after;
            RETURN n;
        ELSIF more IS NULL THEN  -- not counted with the filter above
            EXECUTE format('SELECT count(*) FROM (%s) AS r', rest) INTO more USING after;
        END IF;
    ELSIF after IS NOT NULL AND source IS NOT NULL THEN
        -- Not readable with the caller's rights: at most the whole source, by the planner.
        more := greatest((SELECT reltuples::int8 FROM pg_class WHERE oid = source), 0);
    END IF;
    IF exact_count THEN
        EXECUTE format('SELECT count(*) FROM (SELECT DISTINCT %s FROM %s) AS k', pk, queue)
            INTO n;
    ELSE
        EXECUTE format('SELECT count(*) FROM (SELECT 1 FROM %s LIMIT 10001) AS q', queue) INTO n;
        IF n > 10000 THEN
            n := greatest(n, (SELECT reltuples::int8 FROM pg_class WHERE oid = queue::regclass));
        END IF;
    END IF;
    RETURN n + coalesce(more, 0);
END $$;
COMMENT ON FUNCTION ai.vectorizer_queue_pending(int4, bool) IS 'Rows waiting in a vectorizer''s queue: exact distinct keys, or a quick estimate';

-- By name, as pgai's documentation recommends; an unknown name is an error, not NULL.
CREATE FUNCTION ai.vectorizer_queue_pending(name text, exact_count bool DEFAULT false) RETURNS int8
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
RETURN ai.vectorizer_queue_pending(ai._vectorizer_by_name(name), exact_count);
COMMENT ON FUNCTION ai.vectorizer_queue_pending(text, bool) IS 'Rows waiting in a vectorizer''s queue, by the vectorizer''s name: exact distinct keys, or a quick estimate';

CREATE FUNCTION ai._vectorizer_failed_count(vectorizer_id int4) RETURNS int8
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v ai.vectorizer := ai._vectorizer_get(vectorizer_id);
    n int8;
BEGIN
    IF NOT ai._vectorizer_plain_table(to_regclass(format('%I.%I', v.queue_schema, v.queue_failed_table))) THEN
        RETURN NULL;
    END IF;
    EXECUTE format('SELECT count(*) FROM %I.%I', v.queue_schema, v.queue_failed_table) INTO n;
    RETURN n;
END $$;

-- Who may use a vectorizer (embed with its model, report its progress and errors): a member of
-- its owner or of one of its grant_to roles, or a superuser. The role is the caller's own
-- (current_user) by default; definer functions pass session_user, the login role, which no
-- definer changes.
CREATE FUNCTION ai._vectorizer_may_use(vectorizer_id int4, role_name name DEFAULT current_user) RETURNS bool
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    RETURN coalesce((SELECT r.rolsuper FROM pg_roles r WHERE r.rolname = role_name), false)
        OR EXISTS (SELECT 1 FROM ai.vectorizer v
                     JOIN pg_roles g ON g.rolname = v.owner
                                     OR g.rolname IN (SELECT jsonb_array_elements_text(coalesce(v.config->'grant_to', '[]')))
                    WHERE v.id = vectorizer_id AND pg_has_role(role_name, g.oid, 'MEMBER'));
END $$;
COMMENT ON FUNCTION ai._vectorizer_may_use(int4, name)
    IS 'Whether a role (by default the current one) may use a vectorizer: a member of its owner or of a grant_to role, or a superuser';

-- Raises unless the login role may use the vectorizer: the check of the worker-facing reports.
CREATE FUNCTION ai._vectorizer_require_use(vectorizer_id int4, what text) RETURNS void
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF NOT ai._vectorizer_may_use(vectorizer_id, session_user) THEN
        RAISE EXCEPTION '%: role % may not use vectorizer %', what, session_user, vectorizer_id
            USING ERRCODE = 'insufficient_privilege',
                  HINT = 'Only members of the vectorizer''s owner or of its grant_to roles may.';
    END IF;
END $$;

-- Why ai.embed may not use a vectorizer's model for the current role, or NULL: it may, or no
-- such vectorizer exists (ai.embed then says so itself). By id, or by name.
CREATE FUNCTION ai._vectorizer_embed_refusal(vectorizer_id int4, vectorizer_name text) RETURNS text
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
RETURN (SELECT format('ai.embed: role %s may not use vectorizer "%s" (id %s)', current_user, v.name, v.id)
          FROM ai.vectorizer v
         WHERE (v.id = vectorizer_id OR v.name = vectorizer_name) AND NOT ai._vectorizer_may_use(v.id)
         LIMIT 1);

-- What a worker reports: a batch done, or an error (kept in full in ai.vectorizer_errors).
-- A report goes into the vectorizer's totals row when it is free, and otherwise into the log,
-- which the next report that gets the row adds in: a batch's write never waits on the row,
-- even while an in-database run keeps it locked for a whole call. The three reporting
-- functions run with the extension owner's rights, for those who may use the vectorizer only:
-- nobody else writes the progress tables, so no one forges another vectorizer's status.
CREATE FUNCTION ai._vectorizer_report(vectorizer_id int4, successes int8, error_message text) RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    at timestamptz := clock_timestamp();
BEGIN
    PERFORM ai._vectorizer_require_use(vectorizer_id, 'record_progress');
    PERFORM FROM ai._vectorizer_worker_progress p WHERE p.vectorizer_id = _vectorizer_report.vectorizer_id
        FOR UPDATE SKIP LOCKED;
    IF NOT FOUND THEN
        INSERT INTO ai._vectorizer_progress_log (vectorizer_id, success_count, error_count, last_success_at,
                                                last_error_at, last_error_message)
        VALUES (vectorizer_id, successes, (error_message IS NOT NULL)::int, CASE WHEN successes > 0 THEN at END,
                CASE WHEN error_message IS NOT NULL THEN at END, error_message);
        RETURN;
    END IF;
    WITH logged AS (
        DELETE FROM ai._vectorizer_progress_log l WHERE l.vectorizer_id = _vectorizer_report.vectorizer_id RETURNING l.*
    ), reports AS (
        SELECT success_count, error_count, last_success_at, last_error_at, last_error_message FROM logged
        UNION ALL
        SELECT successes, (error_message IS NOT NULL)::int, CASE WHEN successes > 0 THEN at END,
               CASE WHEN error_message IS NOT NULL THEN at END, error_message
    ), summed AS (
        SELECT sum(success_count) AS successes, sum(error_count) AS errors, max(last_success_at) AS success_at,
               max(last_error_at) AS error_at,
               (array_agg(last_error_message ORDER BY last_error_at DESC) FILTER (WHERE last_error_at IS NOT NULL))[1] AS message
          FROM reports
    )
    UPDATE ai._vectorizer_worker_progress p
       SET success_count = p.success_count + r.successes,
           error_count = p.error_count + r.errors,
           last_success_at = greatest(p.last_success_at, r.success_at),
           last_error_at = greatest(p.last_error_at, r.error_at),
           last_error_message = CASE WHEN r.error_at > p.last_error_at OR p.last_error_at IS NULL
                                     THEN coalesce(r.message, p.last_error_message) ELSE p.last_error_message END
      FROM summed r
     WHERE p.vectorizer_id = _vectorizer_report.vectorizer_id;
END $$;

-- A large source's backfill (ai._vectorizer_backfill): where it has got to, for those who may use
-- the vectorizer (NULL for others, and when every row is queued). With lock, the row is locked
-- to the caller's transaction end, so that claims step one at a time; NULL when another holds
-- it for over 2 s (an in-database run keeps it to its end). Its owner's claims move it with
-- _vectorizer_backfill_set.
CREATE FUNCTION ai._vectorizer_backfill_after(vectorizer_id int4, lock bool DEFAULT false) RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET lock_timeout = '2s' AS $$
DECLARE
    after jsonb;
BEGIN
    IF NOT ai._vectorizer_may_use(vectorizer_id, session_user) THEN
        RETURN NULL;
    END IF;
    IF lock THEN
        BEGIN
            SELECT b.after INTO after FROM ai._vectorizer_backfill b
             WHERE b.vectorizer_id = _vectorizer_backfill_after.vectorizer_id FOR UPDATE;
        EXCEPTION WHEN lock_not_available THEN
            RETURN NULL;
        END;
    ELSE
        SELECT b.after INTO after FROM ai._vectorizer_backfill b
         WHERE b.vectorizer_id = _vectorizer_backfill_after.vectorizer_id;
    END IF;
    RETURN after;
END $$;
COMMENT ON FUNCTION ai._vectorizer_backfill_after(int4, bool) IS 'The last key queued of a source whose existing rows are still being queued in steps, or NULL';

-- Records the last key queued of a backfill, or with NULL that it is done.
CREATE FUNCTION ai._vectorizer_backfill_set(vectorizer_id int4, after jsonb) RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    PERFORM ai._vectorizer_require_use(vectorizer_id, 'backfill');
    IF after IS NULL THEN
        DELETE FROM ai._vectorizer_backfill b WHERE b.vectorizer_id = _vectorizer_backfill_set.vectorizer_id;
    ELSE
        INSERT INTO ai._vectorizer_backfill AS b (vectorizer_id, after) VALUES (vectorizer_id, after)
        ON CONFLICT ON CONSTRAINT _vectorizer_backfill_pkey DO UPDATE SET after = EXCLUDED.after;
    END IF;
END $$;
COMMENT ON FUNCTION ai._vectorizer_backfill_set(int4, jsonb) IS 'Worker-facing (through a vectorizer''s claim): move a backfill on, or end it';

CREATE FUNCTION ai._vectorizer_record_success(vectorizer_id int4, items int8) RETURNS void
LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
BEGIN ATOMIC
    SELECT ai._vectorizer_report(vectorizer_id, items, NULL);
END;
COMMENT ON FUNCTION ai._vectorizer_record_success(int4, int8) IS 'Worker-facing: count processed rows and stamp the last success';

CREATE FUNCTION ai._vectorizer_record_error(vectorizer_id int4, message text, details jsonb DEFAULT '{}') RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    PERFORM ai._vectorizer_require_use(vectorizer_id, 'record_error');
    INSERT INTO ai._vectorizer_errors (id, message, details, recorded)
    VALUES (vectorizer_id, message, coalesce(details, '{}'), clock_timestamp());
    PERFORM ai._vectorizer_report(vectorizer_id, 0, message);
END $$;
COMMENT ON FUNCTION ai._vectorizer_record_error(int4, text, jsonb) IS 'Worker-facing: record an error for the errors view and the status';

-- The totals with the reports still in the log.
CREATE VIEW ai._vectorizer_progress AS
SELECT v.id AS vectorizer_id
     , coalesce(p.success_count, 0) + coalesce(l.successes, 0) AS success_count
     , coalesce(p.error_count, 0) + coalesce(l.errors, 0) AS error_count
     , greatest(p.last_success_at, l.success_at) AS last_success_at
     , greatest(p.last_error_at, l.error_at) AS last_error_at
     , CASE WHEN l.error_at > p.last_error_at OR p.last_error_at IS NULL THEN coalesce(l.message, p.last_error_message)
            ELSE p.last_error_message END AS last_error_message
  FROM ai.vectorizer AS v
  LEFT JOIN ai._vectorizer_worker_progress AS p ON p.vectorizer_id = v.id
  LEFT JOIN (SELECT vectorizer_id, sum(success_count) AS successes, sum(error_count) AS errors,
                    max(last_success_at) AS success_at, max(last_error_at) AS error_at,
                    (array_agg(last_error_message ORDER BY last_error_at DESC) FILTER (WHERE last_error_at IS NOT NULL))[1] AS message
               FROM ai._vectorizer_progress_log GROUP BY vectorizer_id) AS l ON l.vectorizer_id = v.id;
COMMENT ON VIEW ai._vectorizer_progress IS 'Per vectorizer: rows processed, errors, and the latest success and error';

CREATE VIEW ai.vectorizer_errors AS
SELECT e.id, v.name, e.message, e.details, e.recorded
  FROM ai._vectorizer_errors AS e JOIN ai.vectorizer AS v ON v.id = e.id;
COMMENT ON VIEW ai.vectorizer_errors IS 'Every error workers met, by vectorizer';

CREATE VIEW ai.vectorizer_status AS
SELECT v.id
     , v.name
     , format('%I.%I', v.source_schema, v.source_table) AS source_table
     , CASE WHEN v.config->'destination'->>'implementation' = 'table'
            THEN format('%I.%I', v.config->'destination'->>'target_schema', v.config->'destination'->>'target_table') END AS target_table
     , CASE WHEN v.config->'destination'->>'implementation' = 'table'
            THEN format('%I.%I', v.config->'destination'->>'view_schema', v.config->'destination'->>'view_name') END AS "view"
     , v.config->'destination'->>'embedding_column' AS embedding_column
     , ai.vectorizer_queue_pending(v.id, true) AS pending_items
     , ai._vectorizer_failed_count(v.id) AS failed_items
     , p.last_success_at
     , p.last_error_at
     , p.last_error_message AS last_error
     , v.disabled
     , v.config->'scheduling'->>'implementation' AS scheduling
     , ai.install_mode() AS install_mode
  FROM ai.vectorizer AS v
  LEFT JOIN ai._vectorizer_progress AS p ON p.vectorizer_id = v.id;
COMMENT ON VIEW ai.vectorizer_status IS 'Each vectorizer with its exact pending and failed rows and its last success and error';
