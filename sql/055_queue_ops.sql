-- The statements that workers and in-database runs send to a vectorizer's own tables (queue,
-- failed items, store, source), run with the rights of the vectorizer's owner.
--
-- Why: those tables belong to the owner, who may put triggers, rules, policies, defaults or
-- functions on them, and may name functions of their own in the row filter. Run by a worker
-- connected as a superuser, any of those would run as the superuser. PostgreSQL's own
-- maintenance commands switch to the table owner inside a security-restricted operation for
-- this reason. From SQL the same guarantee comes from a SECURITY DEFINER function: inside one,
-- code runs as its owner and can never SET ROLE or SET SESSION AUTHORIZATION back to the caller
-- (PostgreSQL refuses both within a security-definer function, nested calls and triggers
-- included). So every vectorizer gets one small SECURITY DEFINER function, owned by its owner,
-- `<queue_schema>._vectorizer_ops_<id>(op, args)`, and workers reach the tables only through
-- ai._vectorizer_ops_call, which checks that function before each call.
--
-- The owner owns that function, so they could redefine it as SECURITY INVOKER. The check
-- refuses to call it then, and a superuser's call holds a SHARE lock on pg_proc from the check
-- to the end of the call, so the function cannot change in between.
--
-- Keys travel in their text form (a jsonb array of text per key) and PostgreSQL converts them
-- back with the key columns' own types: every type a primary key accepts works the same way
-- (NaN, infinity, jsonb, enums, domains, char(n), BC dates), whatever the client's driver knows.

-- `(expr->>0)::type1 AS a, (expr->>1)::type2 AS b`: a key from a jsonb array of its text form.
CREATE FUNCTION ai._pk_from_json(pk jsonb, expr text) RETURNS text
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    RETURN (SELECT string_agg(format('(%s->>%s)::%s AS %I', expr, (p->>'pknum')::int4 - 1, p->>'typname', p->>'attname'),
                              ', ' ORDER BY (p->>'pknum')::int4)
              FROM jsonb_array_elements(pk) AS p);
END $$;

-- `jsonb_build_array(t.a::text, t.b::text)`: a key's text form, of the relation aliased t.
CREATE FUNCTION ai._pk_to_json(pk jsonb, alias text) RETURNS text
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    RETURN format('pg_catalog.jsonb_build_array(%s)', ai._pk_list(pk, alias || '.%1$I::pg_catalog.text'));
END $$;

-- `($1->>0)::type1, ($1->>1)::type2`: a key's values from a jsonb array of its text form.
CREATE FUNCTION ai._vq_key_values(v ai.vectorizer, expr text) RETURNS text
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    RETURN (SELECT string_agg(format('(%s->>%s)::%s', expr, (p->>'pknum')::int4 - 1, p->>'typname'),
                              ', ' ORDER BY (p->>'pknum')::int4)
              FROM jsonb_array_elements(v.source_pk) AS p);
END $$;

CREATE FUNCTION ai._vectorizer_ops_name(v ai.vectorizer) RETURNS text
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    RETURN format('%I.%I', v.queue_schema, '_vectorizer_ops_' || v.id);
END $$;

-- Made with the queue (ai._vectorizer_create_queue), as the extension's owner, then handed to
-- the vectorizer's owner. Its SQL-standard body is bound to ai._vectorizer_op when created.
-- With replace (an upgrade), an existing one is given this version's body, keeping its owner.
CREATE FUNCTION ai._vectorizer_create_ops(v ai.vectorizer, replace bool) RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    func text := ai._vectorizer_ops_name(v);
BEGIN
    EXECUTE format('CREATE %sFUNCTION %s(op text, args jsonb) RETURNS SETOF jsonb LANGUAGE sql VOLATILE '
                   'SECURITY DEFINER SET search_path = pg_catalog, pg_temp '
                   'BEGIN ATOMIC SELECT ai._vectorizer_op(%s, op, args); END',
                   CASE WHEN replace THEN 'OR REPLACE ' ELSE '' END, func, v.id);
    EXECUTE format('REVOKE ALL ON FUNCTION %s(text, jsonb) FROM PUBLIC', func);
    EXECUTE format('COMMENT ON FUNCTION %s(text, jsonb) IS %L', func,
                   format('Runs the statements of vectorizer %s on its tables with its owner''s rights', v.name));
    IF NOT replace THEN
        PERFORM ai._vectorizer_give(format('FUNCTION %s(text, jsonb)', func), v);
    END IF;
    EXECUTE format('GRANT EXECUTE ON FUNCTION ai._vectorizer_op(int4, text, jsonb) TO %I', v.owner);
END $$;

-- An upgrade's step for each existing vectorizer: its trigger function made again from its
-- catalog row when this version makes it differently; replaced in place, so the source's
-- triggers stay and writers wait for nothing. (Its ops function needs none: its body only
-- calls ai._vectorizer_op, which the upgrade itself replaces.) Returns whether it changed.
-- Inside ALTER EXTENSION, PostgreSQL lets a script replace only the extension's own members,
-- which these functions are not: a release that changes the body must then do it outside the
-- extension's script (the worker's start, say), and this says so rather than fail.
CREATE FUNCTION ai._vectorizer_rebuild(v ai.vectorizer) RETURNS bool
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    func regprocedure := to_regprocedure(format('%I.%I()', v.queue_schema, v.trigger_name));
BEGIN
    IF func IS NULL THEN
        RAISE WARNING 'vectorizer "%" (id %) has no trigger function %.%(): left as it is', v.name, v.id,
            quote_ident(v.queue_schema), quote_ident(v.trigger_name);
        RETURN false;
    END IF;
    IF EXISTS (SELECT FROM pg_proc p WHERE p.oid = func AND p.prosrc = ai._vectorizer_trigger_body(v)
                 AND p.proconfig IS NOT DISTINCT FROM CASE WHEN v.config->>'row_filter' IS NOT NULL
                                                           THEN ARRAY['search_path=pg_catalog, pg_temp'] END) THEN
        RETURN false;
    END IF;
    PERFORM ai._vectorizer_create_trigger_function(v, true);
    RETURN true;
END $$;
COMMENT ON FUNCTION ai._vectorizer_rebuild(ai.vectorizer) IS 'Give an existing vectorizer''s trigger function the definition this version makes, if it differs';

-- The one way in: checks the vectorizer's function, then calls it. See the file's head.
CREATE FUNCTION ai._vectorizer_ops_call(vectorizer_id int4, op text, args jsonb DEFAULT '{}') RETURNS SETOF jsonb
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v    ai.vectorizer := ai._vectorizer_get(vectorizer_id);
    func text := ai._vectorizer_ops_name(v);
    f    regprocedure;
BEGIN
    IF (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) THEN
        LOCK TABLE pg_catalog.pg_proc IN SHARE MODE;
    END IF;
    f := to_regprocedure(func || '(pg_catalog.text, pg_catalog.jsonb)');
    IF f IS NULL OR NOT EXISTS (SELECT 1 FROM pg_proc p JOIN pg_roles r ON r.oid = p.proowner
                                  WHERE p.oid = f AND p.prosecdef AND r.rolname = v.owner) THEN
        RAISE EXCEPTION 'vectorizer "%": its function %(text, jsonb) is missing, or no longer SECURITY DEFINER and owned by %',
            v.name, func, v.owner
            USING ERRCODE = 'insufficient_privilege',
                  DETAIL = 'Its statements must run with the rights of the vectorizer''s owner, never with this session''s.',
                  HINT = 'Drop the vectorizer and create it again.';
    END IF;
    RETURN QUERY EXECUTE format('SELECT * FROM %s($1, $2)', func) USING op, args;
END $$;
COMMENT ON FUNCTION ai._vectorizer_ops_call(int4, text, jsonb)
    IS 'Worker-facing: run one of a vectorizer''s statements (claim, read, existing, write, release, probe) with its owner''s rights';

-- The search_path of a vectorizer's statements: pg_catalog, then the schemas of its key types,
-- so that key comparisons find their equality operators (citext's, say). These statements run
-- with the owner's rights only; each function below sets it for itself (its SET clause
-- restores the pinned path when it returns).
CREATE FUNCTION ai._vq_path(v ai.vectorizer) RETURNS text
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    RETURN concat_ws(', ', 'pg_catalog', (
        SELECT string_agg(DISTINCT quote_ident(n.nspname), ', ')
          FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid JOIN pg_namespace n ON n.oid = t.typnamespace
         WHERE a.attrelid = to_regclass(format('%I.%I', v.queue_schema, v.queue_table)) AND a.attnum > 0
           AND n.nspname NOT IN ('pg_catalog', 'pg_toast') AND n.nspname NOT LIKE 'pg\_temp%'), 'pg_temp');
END $$;

-- Runs as the vectorizer's owner (called by its ops function only).
CREATE FUNCTION ai._vectorizer_op(vectorizer_id int4, op text, args jsonb) RETURNS SETOF jsonb
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v ai.vectorizer := ai._vectorizer_get(vectorizer_id);
BEGIN
    IF current_user IS DISTINCT FROM v.owner THEN
        RAISE EXCEPTION 'ai._vectorizer_op runs as the owner of vectorizer "%" only, through ai._vectorizer_ops_call', v.name
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    -- A source dropped where no event trigger cleans up (a plain install, or DROP ... CASCADE):
    -- said before anything is claimed (once per batch), so the queue stays as it is.
    IF op = 'claim' AND to_regclass(format('%I.%I', v.source_schema, v.source_table)) IS NULL THEN
        RAISE EXCEPTION 'vectorizer "%": its source table %.% does not exist any more', v.name,
            quote_ident(v.source_schema), quote_ident(v.source_table)
            USING ERRCODE = 'undefined_table',
                  HINT = format('If it was dropped, SELECT ai.drop_vectorizer(%s, drop_all => true) removes the vectorizer and its store.', v.id);
    END IF;
    CASE op
        WHEN 'claim' THEN RETURN QUERY SELECT * FROM ai._vq_claim(v, args);
        WHEN 'read' THEN RETURN QUERY SELECT * FROM ai._vq_read(v, args);
        WHEN 'existing' THEN RETURN QUERY SELECT * FROM ai._vq_existing(v, args);
        WHEN 'write' THEN RETURN NEXT ai._vq_write(v, args);
        WHEN 'release' THEN RETURN NEXT ai._vq_release(v, args);
        WHEN 'probe' THEN RETURN NEXT ai._vq_probe(v);
        WHEN 'retry_failed' THEN RETURN NEXT ai._vq_retry_failed(v);
        ELSE RAISE EXCEPTION 'unknown vectorizer operation %', quote_literal(op) USING ERRCODE = 'invalid_parameter_value';
    END CASE;
END $$;

-- Source rows queued by create_vectorizer at once, and per step of a large source's backfill by
-- the claims that find the queue short: 50,000 unless ai.enqueue_step says otherwise (a
-- positive integer).
CREATE FUNCTION ai._vq_backfill_step() RETURNS int4
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    given text := current_setting('ai.enqueue_step', true);
BEGIN
    IF given ~ '^\s*[0-9]{1,9}\s*$' AND given::int4 > 0 THEN
        RETURN given::int4;
    END IF;
    RETURN 50000;
END $$;

-- Queues the source's next `step` keys after `after` (NULL: from the first key), in key order,
-- the row filter applied unless use_filter is false. Returns {queued, last}: last is the last
-- key queued when a whole step was (more may follow), else null. Runs with its caller's rights:
-- create_vectorizer's, or the owner's in a claim.
CREATE FUNCTION ai._vq_backfill(v ai.vectorizer, after jsonb, step int4, use_filter bool) RETURNS jsonb
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    pk     text := ai._pk_list(v.source_pk, '%I');
    n      int8;
    last   jsonb;
BEGIN
    PERFORM set_config('search_path', ai._vq_path(v), true);  -- the key types' operators
    -- Unaliased, as at creation: a row filter may name the table.
    EXECUTE format($q$
WITH k AS MATERIALIZED (
    SELECT %1$s FROM %2$I.%3$I WHERE %4$s AND %5$s ORDER BY %1$s LIMIT $2
), ins AS (
    INSERT INTO %6$I.%7$I (%1$s) SELECT %1$s FROM k
)
SELECT count(*), (SELECT %8$s FROM k ORDER BY %9$s LIMIT 1) FROM k
$q$, pk, v.source_schema, v.source_table,
     CASE WHEN after IS NULL THEN 'true' ELSE format('(%s) > (%s)', pk, ai._vq_key_values(v, '$1')) END,
     CASE WHEN use_filter AND v.config->>'row_filter' IS NOT NULL THEN format('(%s)', v.config->>'row_filter') ELSE 'true' END,
     v.queue_schema, v.queue_table, ai._pk_to_json(v.source_pk, 'k'),
     ai._pk_list(v.source_pk, 'k.%1$I DESC', ', '))
        INTO n, last USING after, step;
    RETURN jsonb_build_object('queued', n, 'last', CASE WHEN n >= step THEN last END);
END $$;

-- The next step of a large source's backfill, for a claim that found fewer rows than it asked
-- for (writers' rows count too, so a trickle of changes does not keep the backfill waiting);
-- whether the queue may hold new rows. One claim steps at a time: the others wait for it (up
-- to 2 s, or go on without), see that the backfill moved, and queue no more. A row filter that
-- fails on a row queues that step unfiltered: the read checks the filter key by key, so nothing
-- is stored that should not be, and no row stalls the backfill.
CREATE FUNCTION ai._vq_backfill_next(v ai.vectorizer) RETURNS bool
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    seen  jsonb := ai._vectorizer_backfill_after(v.id);
    after jsonb;
    step  int4 := ai._vq_backfill_step();
    done  jsonb;
BEGIN
    IF seen IS NULL THEN
        RETURN false;  -- the usual case: no backfill, and no lock taken
    END IF;
    after := ai._vectorizer_backfill_after(v.id, true);
    IF after IS NULL THEN
        RETURN true;  -- done meanwhile (or held by another for over 2 s): its rows are queued
    ELSIF after IS DISTINCT FROM seen THEN
        RETURN true;  -- another claim's step, waited for
    END IF;
    BEGIN
        done := ai._vq_backfill(v, after, step, true);
    EXCEPTION WHEN others THEN
        IF v.config->>'row_filter' IS NULL THEN
            RAISE;
        END IF;
        done := ai._vq_backfill(v, after, step, false);
    END;
    PERFORM ai._vectorizer_backfill_set(v.id, CASE WHEN jsonb_typeof(done->'last') = 'array' THEN done->'last' END);
    RETURN (done->>'queued')::int8 > 0;
END $$;

-- The claim. args: limit, token (uuid), lease (seconds), lock_space (int4), xact (bool: take
-- transaction locks, for in-database runs). Returns {key, lock, attempts} per locked key;
-- attempts is null where no queue row could be marked.
--
-- First, failed items whose retry time has come go back to the queue, and rows claimed as
-- often as the vectorizer allows that never came back (a worker that died, or a write that
-- failed every time) go to the failed items, so no row is claimed forever.
--
-- The claim itself, in one statement: pick queue rows that are free (no lease, or the lease or
-- backoff has run out) with FOR UPDATE SKIP LOCKED, take an advisory lock per distinct key
-- (try-lock: a key some other session holds is left alone), and mark every queue row of the
-- locked keys with the batch's token and a lease. A session lock outlives the statement and
-- dies with the connection, so a killed worker frees its keys at once, while a live one keeps
-- them however slow its provider is. Only the lock holder reads and writes a key, so an older
-- text can never overwrite a newer one; a change committed after the claim adds a queue row the
-- token does not mark, processed after the lock is released.
CREATE FUNCTION ai._vq_claim(v ai.vectorizer, args jsonb) RETURNS SETOF jsonb
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    queue     text := format('%I.%I', v.queue_schema, v.queue_table);
    failed    text := format('%I.%I', v.queue_schema, v.queue_failed_table);
    pk        text := ai._pk_list(v.source_pk, '%I');
    xact      bool := coalesce((args->>'xact')::bool, false);
    max_tries int4 := 1 + coalesce((v.config->'loading'->>'retries')::int4, 6);
    pick      text;
    picked    int8;
BEGIN
    PERFORM set_config('search_path', ai._vq_path(v), true);
    -- SKIP LOCKED here and below: rows another claim (or an open in-database call) is moving
    -- are its business, and a claim never waits on them.
    PERFORM ai._vq_requeue_failed(v, 'retry_at <= pg_catalog.clock_timestamp()');
    EXECUTE format($q$
WITH candidates AS MATERIALIZED (
    SELECT ctid AS _ai_ctid, pg_catalog.hashtext(ROW(%3$s)::pg_catalog.text) AS _ai_lock FROM %1$s
     WHERE claimed_by IS NOT NULL AND attempts >= $1 AND retry_after <= pg_catalog.clock_timestamp()
       FOR UPDATE SKIP LOCKED
), free AS MATERIALIZED (
    -- Only the candidates' keys are tried (a live worker's slow batch keeps its key's lock and
    -- is left alone); a lock taken here lasts to the end of the transaction, so no other.
    SELECT _ai_ctid FROM (SELECT * FROM candidates OFFSET 0) AS c
     WHERE pg_catalog.pg_try_advisory_xact_lock($2, _ai_lock)
), lost AS (
    DELETE FROM %1$s AS q WHERE q.ctid = ANY (ARRAY(SELECT _ai_ctid FROM free))
    RETURNING %4$s, q.attempts
), old AS (
    DELETE FROM %2$s AS f WHERE (%5$s) IN (SELECT %3$s FROM lost)
)
INSERT INTO %2$s (%3$s, attempts, failure_step, error)
SELECT %3$s, max(attempts), 'lost',
       pg_catalog.format('claimed %%s times without a result: the worker died or could not write its result', max(attempts))
  FROM lost GROUP BY %3$s
$q$, queue, failed, pk, ai._pk_list(v.source_pk, 'q.%I'), ai._pk_list(v.source_pk, 'f.%I'))
    USING max_tries, (args->>'lock_space')::int4;

    -- Keys another batch has in hand should not use up the limit: those marked by a committed
    -- claim (lease running) are not picked, and the worker's pick takes 4 times the limit,
    -- locking keys only until the limit is reached, so newer queue rows of keys held by an open
    -- transaction are stepped over. Inside PostgreSQL the pick's row locks last until the
    -- caller's transaction ends, so it picks no more than it may take.
    pick := format($q$
WITH picked AS (
    SELECT %2$s FROM %1$s
     WHERE (retry_after IS NULL OR retry_after <= pg_catalog.clock_timestamp())
       AND (%2$s) NOT IN (SELECT %2$s FROM %1$s WHERE claimed_by IS NOT NULL
                             AND retry_after > pg_catalog.clock_timestamp())
     LIMIT $1 OPERATOR(pg_catalog.*) %3$s
       FOR UPDATE SKIP LOCKED
), keys AS MATERIALIZED (
    SELECT %2$s, pg_catalog.hashtext(ROW(%2$s)::pg_catalog.text) AS _ai_lock, min(_ai_n) AS _ai_n
      FROM (SELECT *, pg_catalog.row_number() OVER () AS _ai_n FROM picked) AS p GROUP BY %2$s
), locked AS MATERIALIZED (
    -- Oldest first. OFFSET 0 keeps the sort below the try-lock (the planner would otherwise
    -- merge it into the outer query and lock every key before sorting), so locking stops at
    -- the limit.
    SELECT * FROM (SELECT * FROM keys ORDER BY _ai_n OFFSET 0) AS k
     WHERE pg_catalog.%4$s($2, _ai_lock) LIMIT $1
), marked AS (
    UPDATE %1$s AS q
       SET claimed_by = $3,
           retry_after = pg_catalog.clock_timestamp() OPERATOR(pg_catalog.+) pg_catalog.make_interval(secs => $4),
           attempts = q.attempts OPERATOR(pg_catalog.+) 1
     WHERE q.ctid = ANY (ARRAY(SELECT q2.ctid FROM %1$s AS q2 JOIN locked AS l ON %5$s FOR UPDATE OF q2 SKIP LOCKED))
    RETURNING %6$s, q.attempts
)
SELECT pg_catalog.jsonb_build_object('key', %7$s, 'lock', l._ai_lock, 'attempts', a._ai_attempts)
  FROM locked AS l
  LEFT JOIN (SELECT %2$s, max(attempts) AS _ai_attempts FROM marked GROUP BY %2$s) AS a ON %8$s
$q$, queue, pk, CASE WHEN xact THEN 1 ELSE 4 END,
     CASE WHEN xact THEN 'pg_try_advisory_xact_lock' ELSE 'pg_try_advisory_lock' END,
     ai._pk_list(v.source_pk, 'q2.%1$I = l.%1$I', ' AND '), ai._pk_list(v.source_pk, 'q.%I'),
     ai._pk_to_json(v.source_pk, 'l'), ai._pk_list(v.source_pk, 'a.%1$I = l.%1$I', ' AND '));
    RETURN QUERY EXECUTE pick
        USING (args->>'limit')::int4, (args->>'lock_space')::int4, (args->>'token')::uuid, (args->>'lease')::float8;
    GET DIAGNOSTICS picked = ROW_COUNT;
    -- Fewer rows than asked for, and a large source's rows still to queue: the next step of them
    -- (ai._vq_backfill_next), so the queue holds about a step at a time. A claim that got none
    -- picks again; one that got some leaves the new rows to the next claim, as a second pick
    -- could take a key this one holds already.
    IF picked < (args->>'limit')::int4 AND ai._vq_backfill_next(v) AND picked = 0 THEN
        RETURN QUERY EXECUTE pick
            USING (args->>'limit')::int4, (args->>'lock_space')::int4, (args->>'token')::uuid, (args->>'lease')::float8;
    END IF;
END $$;

-- The source rows of the keys a claim marked: {key, found, match, values} with the loading
-- column and the template columns as text, in that order. A statement of its own, after the
-- claim: its snapshot is taken with the keys' locks held, so it sees every change committed
-- before them. A row filter that fails on a row (a division by zero, say) counts as "does not
-- match" for that row, recorded in ai.vectorizer_errors, and never fails the batch.
CREATE FUNCTION ai._vq_read(v ai.vectorizer, args jsonb) RETURNS SETOF jsonb
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    token  uuid := (args->>'token')::uuid;
    queue  text := format('%I.%I', v.queue_schema, v.queue_table);
    pk     text := ai._pk_list(v.source_pk, '%I');
    load   text := v.config->'loading'->>'column_name';
    cols   text[] := ARRAY[load] || ARRAY(
                  SELECT t FROM jsonb_array_elements_text(coalesce(v.config->'template_columns', '[]'))
                                WITH ORDINALITY AS x(t, n)
                   WHERE t <> load GROUP BY t ORDER BY min(n));
    stmt   text;
    out    jsonb[];
    keyrow jsonb;
BEGIN
    PERFORM set_config('search_path', ai._vq_path(v), true);
    -- /*key*/ marks where the one-key fallback below narrows the statement.
    stmt := format($q$
SELECT pg_catalog.jsonb_build_object('key', %1$s, 'found', s._ai_found IS NOT NULL,
                                     'match', coalesce(s._ai_match, false), 'values', pg_catalog.jsonb_build_array(%2$s))
  FROM (SELECT DISTINCT %3$s FROM %4$s WHERE claimed_by = $1 /*key*/) AS k
  LEFT JOIN LATERAL (SELECT true AS _ai_found, coalesce((%5$s
), false) AS _ai_match, %6$s FROM %7$I.%8$I AS src WHERE %9$s) AS s ON true
$q$, ai._pk_to_json(v.source_pk, 'k'),
     -- A bytea loading column (a stored document) travels as {"base64": ...}, never as text.
     (SELECT string_agg(CASE WHEN c = load AND EXISTS (
                 SELECT 1 FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid
                  WHERE a.attrelid = format('%I.%I', v.source_schema, v.source_table)::regclass
                    AND a.attname = c AND 'bytea'::regtype IN (t.oid, t.typbasetype))
                 THEN format('CASE WHEN s.%1$I IS NOT NULL THEN pg_catalog.jsonb_build_object(''base64'', pg_catalog.encode(s.%1$I, ''base64'')) END', c)
                 ELSE format('s.%I::pg_catalog.text', c) END, ', ') FROM unnest(cols) AS c), pk, queue,
     coalesce(v.config->>'row_filter', 'true'),
     (SELECT string_agg(format('src.%I', c), ', ') FROM unnest(cols) AS c), v.source_schema, v.source_table,
     ai._pk_list(v.source_pk, 'src.%1$I = k.%1$I', ' AND '));
    BEGIN
        -- Collected first: rows of a statement that fails half-way must not reach the result.
        EXECUTE format('SELECT pg_catalog.array_agg(r) FROM (%s) AS x(r)', stmt) INTO out USING token;
        RETURN QUERY SELECT unnest(coalesce(out, '{}'));
        RETURN;
    EXCEPTION WHEN others THEN
        IF v.config->>'row_filter' IS NULL THEN
            RAISE;
        END IF;
    END;
    -- The filter failed on some row: one key at a time, each in a subtransaction of its own.
    stmt := replace(stmt, '/*key*/', format('AND (%s) = (SELECT %s)', pk, ai._pk_from_json(v.source_pk, '$2')));
    FOR keyrow IN EXECUTE format('SELECT DISTINCT %s FROM %s AS q WHERE claimed_by = $1',
                                 ai._pk_to_json(v.source_pk, 'q'), queue) USING token LOOP
        BEGIN
            EXECUTE format('SELECT pg_catalog.array_agg(r) FROM (%s) AS x(r)', stmt) INTO out USING token, keyrow;
            RETURN QUERY SELECT unnest(coalesce(out, '{}'));
        EXCEPTION WHEN others THEN
            PERFORM ai._vectorizer_record_error(v.id, format('row_filter failed for key %s: %s', keyrow, SQLERRM),
                                                jsonb_build_object('step', 'row_filter', 'keys', jsonb_build_array(keyrow)));
            RETURN NEXT jsonb_build_object('key', keyrow, 'found', true, 'match', false, 'values', '[]'::jsonb);
        END;
    END LOOP;
END $$;

-- Chunks already stored for the claimed keys ({key, hash (hex), embedding (text)}), so that
-- unchanged chunks keep their vectors.
CREATE FUNCTION ai._vq_existing(v ai.vectorizer, args jsonb) RETURNS SETOF jsonb
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    dest jsonb := v.config->'destination';
BEGIN
    PERFORM set_config('search_path', ai._vq_path(v), true);
    IF dest->>'implementation' <> 'table' THEN
        RETURN;
    END IF;
    RETURN QUERY EXECUTE format(
        'SELECT pg_catalog.jsonb_build_object(''key'', %s, ''hash'', pg_catalog.encode(t.chunk_hash, ''hex''), '
        '''embedding'', t.embedding::pg_catalog.text) FROM %I.%I AS t '
        'WHERE t.chunk_hash IS NOT NULL AND (%s) IN (SELECT %s FROM %I.%I WHERE claimed_by = $1)',
        ai._pk_to_json(v.source_pk, 't'), dest->>'target_schema', dest->>'target_table',
        ai._pk_list(v.source_pk, 't.%I'), ai._pk_list(v.source_pk, '%I'), v.queue_schema, v.queue_table)
        USING (args->>'token')::uuid;
END $$;

-- A batch's write, in the caller's transaction. args:
--   token; retry: [[seconds, key]]; give_up: [[key, step, error, retry_seconds or null, keep]];
--   chunks: [[key, seq, chunk, vector text, hash hex]]; columns: [[key, vector text or null]];
--   done: keys done; errors: [[message, details]].
-- Errors go back to the queue after a backoff, or to the failed items (with a time to try
-- again when the provider was at fault; keep: their stored chunks stay, since a provider's
-- outage says nothing against them); then the chunks of every key still marked are replaced,
-- the key stops being a failed item, and its queue rows go. Returns {retry, give_up} counts.
CREATE FUNCTION ai._vq_write(v ai.vectorizer, args jsonb) RETURNS jsonb
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    token    uuid := (args->>'token')::uuid;
    queue    text := format('%I.%I', v.queue_schema, v.queue_table);
    failed   text := format('%I.%I', v.queue_schema, v.queue_failed_table);
    source   text := format('%I.%I', v.source_schema, v.source_table);
    dest     jsonb := v.config->'destination';
    store    text := CASE WHEN dest->>'implementation' = 'table'
                          THEN format('%I.%I', dest->>'target_schema', dest->>'target_table') END;
    vec_type text := ai._vector_type((v.config->'embedding'->>'dimensions')::int4);
    pk       text := ai._pk_list(v.source_pk, '%I');
    to_table bool := dest->>'implementation' = 'table';
    retried  int8 := 0;
    gave_up  int8 := 0;
    e        jsonb;
BEGIN
    PERFORM set_config('search_path', ai._vq_path(v), true);
    IF jsonb_array_length(coalesce(args->'retry', '[]')) > 0 THEN
        EXECUTE format('UPDATE %s AS q SET claimed_by = NULL, retry_after = pg_catalog.clock_timestamp() '
                       'OPERATOR(pg_catalog.+) pg_catalog.make_interval(secs => r._ai_delay) '
                       'FROM (SELECT (e->>0)::pg_catalog.float8 AS _ai_delay, %s FROM pg_catalog.jsonb_array_elements($2) AS e) AS r '
                       'WHERE q.claimed_by = $1 AND %s',
                       queue, ai._pk_from_json(v.source_pk, '(e->1)'), ai._pk_list(v.source_pk, 'q.%1$I = r.%1$I', ' AND '))
            USING token, args->'retry';
        retried := jsonb_array_length(args->'retry');
    END IF;
    IF jsonb_array_length(coalesce(args->'give_up', '[]')) > 0 THEN
        EXECUTE format($q$
WITH g AS (
    SELECT %4$s, e->>1 AS _ai_step, e->>2 AS _ai_error, (e->>3)::pg_catalog.float8 AS _ai_retry
      FROM pg_catalog.jsonb_array_elements($2) AS e
), gone AS (
    DELETE FROM %1$s AS q USING g WHERE q.claimed_by = $1 AND %5$s RETURNING %6$s, q.attempts
), old AS (
    DELETE FROM %2$s AS f USING g WHERE %7$s
)
INSERT INTO %2$s (%3$s, attempts, failure_step, error, retry_at)
SELECT %8$s, max(gone.attempts), g._ai_step, g._ai_error,
       pg_catalog.clock_timestamp() OPERATOR(pg_catalog.+) pg_catalog.make_interval(secs => g._ai_retry)
  FROM g JOIN gone ON %9$s GROUP BY %8$s, g._ai_step, g._ai_error, g._ai_retry
$q$, queue, failed, pk, ai._pk_from_json(v.source_pk, '(e->0)'),
     ai._pk_list(v.source_pk, 'q.%1$I = g.%1$I', ' AND '), ai._pk_list(v.source_pk, 'q.%I'),
     ai._pk_list(v.source_pk, 'f.%1$I = g.%1$I', ' AND '), ai._pk_list(v.source_pk, 'g.%I'),
     ai._pk_list(v.source_pk, 'gone.%1$I = g.%1$I', ' AND '))
            USING token, args->'give_up';
        gave_up := jsonb_array_length(args->'give_up');
        -- A row given up on for its own fault keeps no embedding of an older text.
        IF to_table THEN
            EXECUTE format('DELETE FROM %s AS t USING (SELECT %s FROM pg_catalog.jsonb_array_elements($1) AS e '
                           'WHERE NOT coalesce((e->>4)::pg_catalog.bool, false)) AS g WHERE %s',
                           store, ai._pk_from_json(v.source_pk, '(e->0)'), ai._pk_list(v.source_pk, 't.%1$I = g.%1$I', ' AND '))
                USING args->'give_up';
        ELSE
            EXECUTE format('UPDATE %s AS t SET %I = NULL FROM (SELECT %s FROM pg_catalog.jsonb_array_elements($1) AS e '
                           'WHERE NOT coalesce((e->>4)::pg_catalog.bool, false)) AS g WHERE %s',
                           source, dest->>'embedding_column', ai._pk_from_json(v.source_pk, '(e->0)'),
                           ai._pk_list(v.source_pk, 't.%1$I = g.%1$I', ' AND '))
                USING args->'give_up';
        END IF;
    END IF;
    IF to_table THEN
        EXECUTE format('DELETE FROM %s AS t WHERE (%s) IN (SELECT %s FROM %s WHERE claimed_by = $1)',
                       store, ai._pk_list(v.source_pk, 't.%I'), pk, queue) USING token;
        IF coalesce((args->>'staged')::bool, false) THEN
            -- The worker's COPY target: only a plain temporary table of the calling session
            -- with exactly these columns and no row-level security, so that reading it runs
            -- none of the caller's code with the owner's rights.
            IF NOT EXISTS (SELECT 1 FROM pg_class c
                            WHERE c.oid = to_regclass('pg_temp._ai_staged_chunks') AND c.relkind = 'r'
                              AND c.relnamespace = pg_my_temp_schema() AND NOT c.relrowsecurity
                              AND ARRAY(SELECT a.atttypid FROM pg_attribute a
                                         WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
                                         ORDER BY a.attnum)
                                  = ARRAY['pg_catalog.text[]'::regtype, 'pg_catalog.int4'::regtype, 'pg_catalog.text'::regtype,
                                          to_regtype(format('%I.vector', ai._vector_schema())), 'pg_catalog.bytea'::regtype]::oid[]) THEN
                RAISE EXCEPTION 'vectorizer "%": the staged chunks are not in this session''s own staging table', v.name
                    USING ERRCODE = 'insufficient_privilege';
            END IF;
            EXECUTE format('INSERT INTO %s (%s, chunk_seq, chunk, embedding, chunk_hash) '
                           'SELECT %s, s.chunk_seq, s.chunk, s.embedding, s.chunk_hash FROM pg_temp._ai_staged_chunks AS s',
                           store, pk, (SELECT string_agg(format('(s.key[%s])::%s', (p->>'pknum')::int4, p->>'typname'), ', '
                                                         ORDER BY (p->>'pknum')::int4)
                                         FROM jsonb_array_elements(v.source_pk) AS p));
        ELSIF jsonb_array_length(coalesce(args->'chunks', '[]')) > 0 THEN
            EXECUTE format('INSERT INTO %s (%s, chunk_seq, chunk, embedding, chunk_hash) '
                           'SELECT %s, (e->>1)::pg_catalog.int4, e->>2, (e->>3)::%s, pg_catalog.decode(e->>4, ''hex'') '
                           'FROM pg_catalog.jsonb_array_elements($1) AS e',
                           store, pk, ai._pk_from_json(v.source_pk, '(e->0)'), vec_type)
                USING args->'chunks';
        END IF;
    ELSIF jsonb_array_length(coalesce(args->'columns', '[]')) > 0 THEN
        EXECUTE format('UPDATE %s AS t SET %I = c._ai_vec FROM (SELECT %s, (e->>1)::%s AS _ai_vec '
                       'FROM pg_catalog.jsonb_array_elements($1) AS e) AS c WHERE %s',
                       source, dest->>'embedding_column', ai._pk_from_json(v.source_pk, '(e->0)'), vec_type,
                       ai._pk_list(v.source_pk, 't.%1$I = c.%1$I', ' AND '))
            USING args->'columns';
    END IF;
    EXECUTE format('DELETE FROM %s AS f WHERE (%s) IN (SELECT %s FROM %s WHERE claimed_by = $1)',
                   failed, ai._pk_list(v.source_pk, 'f.%I'), pk, queue) USING token;
    EXECUTE format('DELETE FROM %s WHERE claimed_by = $1', queue) USING token;
    IF coalesce((args->>'done')::int8, 0) > 0 THEN
        PERFORM ai._vectorizer_record_success(v.id, (args->>'done')::int8);
    END IF;
    FOR e IN SELECT x FROM jsonb_array_elements(coalesce(args->'errors', '[]')) AS x LOOP
        PERFORM ai._vectorizer_record_error(v.id, e->>0, coalesce(e->1, '{}'));
    END LOOP;
    RETURN jsonb_build_object('retry', retried, 'give_up', gave_up);
END $$;

-- Leave a batch's rows for another claim without counting an attempt (shutdown, a
-- configuration error, a lost connection).
CREATE FUNCTION ai._vq_release(v ai.vectorizer, args jsonb) RETURNS jsonb
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    n int8;
BEGIN
    PERFORM set_config('search_path', ai._vq_path(v), true);
    EXECUTE format('UPDATE %I.%I SET claimed_by = NULL, retry_after = NULL, '
                   'attempts = GREATEST(attempts OPERATOR(pg_catalog.-) 1, 0) WHERE claimed_by = $1',
                   v.queue_schema, v.queue_table) USING (args->>'token')::uuid;
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN jsonb_build_object('released', n);
END $$;

-- Is there a row to claim now (or a failed item due)? What an idle worker asks every few seconds.
CREATE FUNCTION ai._vq_probe(v ai.vectorizer) RETURNS jsonb
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    found bool;
BEGIN
    PERFORM set_config('search_path', ai._vq_path(v), true);
    EXECUTE format('SELECT EXISTS (SELECT FROM %1$I.%2$I WHERE retry_after IS NULL OR retry_after <= pg_catalog.clock_timestamp()) '
                   'OR EXISTS (SELECT FROM %1$I.%3$I WHERE retry_at <= pg_catalog.clock_timestamp())',
                   v.queue_schema, v.queue_table, v.queue_failed_table) INTO found;
    RETURN jsonb_build_object('work', found OR ai._vectorizer_backfill_after(v.id) IS NOT NULL);
END $$;

-- Failed items that match `condition` (SQL on the failed-items table's own columns, written
-- here, never by a caller) back to the queue, skipping rows another transaction is moving.
-- Returns how many.
CREATE FUNCTION ai._vq_requeue_failed(v ai.vectorizer, condition text) RETURNS int8
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    pk text := ai._pk_list(v.source_pk, '%I');
    n  int8;
BEGIN
    PERFORM set_config('search_path', ai._vq_path(v), true);
    EXECUTE format('WITH f AS (DELETE FROM %1$I.%2$I WHERE ctid = ANY (ARRAY(SELECT ctid FROM %1$I.%2$I '
                   'WHERE %5$s FOR UPDATE SKIP LOCKED)) RETURNING %4$s) '
                   'INSERT INTO %1$I.%3$I (%4$s) SELECT %4$s FROM f',
                   v.queue_schema, v.queue_failed_table, v.queue_table, pk, condition);
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END $$;

CREATE FUNCTION ai._vq_retry_failed(v ai.vectorizer) RETURNS jsonb
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
RETURN jsonb_build_object('requeued', ai._vq_requeue_failed(v, 'true'));

-- Failed items back to the queue, for a member of the vectorizer's owner (or a superuser).
CREATE FUNCTION ai.retry_failed(vectorizer_id int4) RETURNS int8
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v ai.vectorizer := ai._vectorizer_get(vectorizer_id);
BEGIN
    PERFORM ai._vectorizer_check_caller(v.owner, 'retry_failed');
    RETURN (SELECT (r->>'requeued')::int8 FROM ai._vectorizer_ops_call(v.id, 'retry_failed') AS r);
END $$;
COMMENT ON FUNCTION ai.retry_failed(int4) IS 'Queue a vectorizer''s failed items again; returns how many';

CREATE FUNCTION ai.retry_failed(name text) RETURNS int8
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
BEGIN ATOMIC
    SELECT ai.retry_failed(ai._vectorizer_by_name(name));
END;
COMMENT ON FUNCTION ai.retry_failed(text) IS 'Queue a vectorizer''s failed items again, by vectorizer name; returns how many';

REVOKE ALL ON FUNCTION ai._vectorizer_op(int4, text, jsonb) FROM PUBLIC;
REVOKE ALL ON FUNCTION ai._vectorizer_create_ops(ai.vectorizer, bool) FROM PUBLIC;
