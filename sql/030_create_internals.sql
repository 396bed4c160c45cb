-- Internals of create_vectorizer: checks that name the problem, and the DDL it runs.

CREATE FUNCTION ai._check_config(config jsonb, parameter text, expected text, required bool DEFAULT true)
RETURNS void LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF config IS NULL THEN
        IF required THEN
            RAISE EXCEPTION 'create_vectorizer: % is required', parameter USING ERRCODE = 'invalid_parameter_value',
                HINT = format('Pass %s => ai.%s_...(...).', parameter, expected);
        END IF;
        RETURN;
    END IF;
    IF jsonb_typeof(config) <> 'object' OR config->>'config_type' IS DISTINCT FROM expected THEN
        RAISE EXCEPTION 'create_vectorizer: % must be a % config from ai.%_*(), got %', parameter, expected, expected,
            coalesce(config->>'config_type', left(config::text, 60)) USING ERRCODE = 'invalid_parameter_value';
    END IF;
END $$;

-- The primary key as [{attnum, attname, typname, pknum}], in key order.
CREATE FUNCTION ai._source_pk(source regclass) RETURNS jsonb
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    pk jsonb;
BEGIN
    SELECT jsonb_agg(jsonb_build_object('attnum', a.attnum, 'attname', a.attname,
                     'typname', format_type(a.atttypid, a.atttypmod), 'pknum', k.pknum) ORDER BY k.pknum)
      INTO pk
      FROM pg_index i
      CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, pknum)
      JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
     WHERE i.indrelid = source AND i.indisprimary;
    IF pk IS NULL THEN
        RAISE EXCEPTION 'create_vectorizer: source table % has no primary key', source
            USING ERRCODE = 'invalid_table_definition',
                  HINT = 'A vectorizer tracks rows by primary key; add one with ALTER TABLE ... ADD PRIMARY KEY.';
    END IF;
    RETURN pk;
END $$;

-- One SQL fragment per primary-key column, in key order, joined by sep: item is a format()
-- string given the column's name (%1$I) and type (%2$s), e.g. 'OLD.%I' or '%I %s NOT NULL'.
-- PL/pgSQL, like the other small helpers a batch calls (key lists, pgvector's schema, a
-- queue's search_path, the use check): a SQL function with a SET clause is never inlined and is
-- planned again at every call, where PL/pgSQL keeps its plan for the session. The queue's
-- search_path alone cost 0.66 ms a call, five calls a batch (issue 16's profile).
CREATE FUNCTION ai._pk_list(pk jsonb, item text, sep text DEFAULT ', ') RETURNS text
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    RETURN (SELECT string_agg(format(item, p->>'attname', p->>'typname'), sep ORDER BY (p->>'pknum')::int)
              FROM jsonb_array_elements(pk) AS p);
END $$;

CREATE FUNCTION ai._source_column(source regclass, column_name name, purpose text) RETURNS pg_attribute
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    att pg_attribute;
BEGIN
    SELECT * INTO att FROM pg_attribute
     WHERE attrelid = source AND attname = column_name AND attnum > 0 AND NOT attisdropped;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'create_vectorizer: % column "%" does not exist in table %', purpose, column_name, source
            USING ERRCODE = 'undefined_column';
    END IF;
    RETURN att;
END $$;

-- Checks a row filter the way Postgres checks a partial index's predicate (boolean, immutable
-- functions, no subqueries, only the row's own columns) on an empty copy of the source, and
-- returns the columns it reads, so their changes can be watched.
--
-- The filter is pasted into SQL text wherever it is used (the trigger body, the view, the
-- backfill, the worker's read), so it must be one complete expression on its own. Its syntax
-- is tried in three wrappings: in parentheses on one line, between newlines, and in brackets.
-- A filter that closes a parenthesis it did not open ('a) OR (b') fails in brackets; one that
-- ends in a -- comment fails on one line (the comment swallows the closing parenthesis), and
-- 'true) --' passes only there, which is how it slipped through when only that was tried.
CREATE FUNCTION ai._row_filter_columns(source regclass, row_filter text) RETURNS name[]
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    cols   name[];
    wrap   text;
    parses bool[] := '{}';
    syntax text;
BEGIN
    IF row_filter IS NULL THEN
        RETURN '{}';
    END IF;
    IF btrim(row_filter) = '' OR strpos(row_filter, ';') > 0 THEN
        RAISE EXCEPTION 'create_vectorizer: row_filter must be one boolean expression, got %', quote_literal(row_filter)
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF to_regclass('pg_temp._ai_row_filter_check') IS NOT NULL THEN
        DROP TABLE pg_temp._ai_row_filter_check;
    END IF;
    EXECUTE format('CREATE TEMP TABLE _ai_row_filter_check (LIKE %s)', source);
    -- Syntax only: any other error (an unknown column, say) is the index check's to report.
    FOREACH wrap IN ARRAY ARRAY['(%s)', E'(\n%s\n)', E'ARRAY[\n%s\n]'] LOOP
        BEGIN
            EXECUTE format('SELECT %s FROM pg_temp._ai_row_filter_check', format(wrap, row_filter));
            parses := parses || true;
        EXCEPTION
            WHEN syntax_error THEN
                parses := parses || false;
                syntax := coalesce(syntax, SQLERRM);
            WHEN others THEN
                parses := parses || true;
        END;
    END LOOP;
    IF false = ANY (parses) THEN
        RAISE EXCEPTION 'create_vectorizer: row_filter % is not one complete expression: %', quote_literal(row_filter),
            CASE WHEN NOT parses[3] AND parses[1] AND NOT parses[2]
                     THEN 'it closes a parenthesis it did not open, and a -- comment hides what follows'
                 WHEN NOT parses[3] AND (parses[1] OR parses[2]) THEN 'it closes a parenthesis it did not open'
                 WHEN NOT parses[1] AND parses[2] AND parses[3]
                     THEN 'it ends in a -- comment, which would swallow what follows it'
                 ELSE syntax END
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Pass the condition alone, with balanced parentheses and no trailing -- comment.';
    END IF;
    BEGIN
        EXECUTE format(E'CREATE INDEX _ai_row_filter_check_idx ON pg_temp._ai_row_filter_check ((1)) WHERE (\n%s\n)', row_filter);
    EXCEPTION WHEN others THEN
        RAISE EXCEPTION 'create_vectorizer: row_filter % is invalid: %', quote_literal(row_filter), SQLERRM
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'A row filter is a WHERE condition on the source row''s own columns, with immutable functions only, like a partial index''s.';
    END;
    SELECT coalesce(array_agg(DISTINCT a.attname ORDER BY a.attname), '{}') INTO cols
      FROM pg_depend d
      JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
     WHERE d.classid = 'pg_class'::regclass
       AND d.objid = 'pg_temp._ai_row_filter_check_idx'::regclass
       AND d.refobjid = 'pg_temp._ai_row_filter_check'::regclass
       AND d.refobjsubid > 0;
    DROP TABLE pg_temp._ai_row_filter_check;
    RETURN cols;
END $$;

-- pgvector's schema: its type and operator classes are named with it, since every function
-- here runs with a pinned search_path.
CREATE FUNCTION ai._vector_schema() RETURNS name
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    RETURN (SELECT n.nspname FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace
             WHERE e.extname = 'vector');
END $$;

CREATE FUNCTION ai._vector_type(dimensions int4) RETURNS text
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    RETURN format('%I.vector(%s)', ai._vector_schema(), dimensions);
END $$;

CREATE FUNCTION ai._check_identifier(ident text, what text) RETURNS name
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF octet_length(ident) > 63 THEN
        RAISE EXCEPTION 'create_vectorizer: % name "%" is longer than 63 bytes', what, ident
            USING ERRCODE = 'name_too_long', HINT = 'Choose a shorter name in the destination or queue_table.';
    END IF;
    RETURN ident::name;
END $$;

-- The trigger function's body: queue the keys whose embeddings may be stale.
--
-- The function is SECURITY DEFINER, and normally that calls for a pinned search_path. But a
-- SET clause costs every write to the source about 10 us (see BENCHMARKS.md), so without a row
-- filter the body is written to need no search_path at all: every relation is qualified, every
-- operator is OPERATOR(pg_catalog.x), and the key comparisons live in the triggers' WHEN
-- clauses, which are bound when the trigger is created. A row filter is the user's own
-- expression, resolved when it runs, so with a filter the search_path stays pinned.
--
-- A filter that raises on a row (100 / n with n = 0) must never fail the writer's statement:
-- each side is evaluated in a block of its own, and an error counts as "does not match" for
-- that side. So a row whose new values raise is still queued when its old ones matched, and
-- the worker removes its chunks. The error is reported once per transaction and vectorizer, as
-- a WARNING and, where the owner may (the trigger runs as the owner), in ai._vectorizer_errors;
-- the report can never fail the writer either. The body without a filter has no such block:
-- a block with an exception handler costs a subtransaction per row (see BENCHMARKS.md).
CREATE FUNCTION ai._vectorizer_trigger_body(v ai.vectorizer) RETURNS text
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    queue     text := format('%I.%I', v.queue_schema, v.queue_table);
    filter    text := v.config->>'row_filter';
    dest      jsonb := v.config->'destination';
    pk_cols   text := ai._pk_list(v.source_pk, '%I');
    old_vals  text := ai._pk_list(v.source_pk, 'OLD.%I');
    new_vals  text := ai._pk_list(v.source_pk, 'NEW.%I');
    guc       text := format('ai.row_filter_failed_%s', v.id);
    trunc_sql text;
    report    text;
BEGIN
    trunc_sql := format('TRUNCATE TABLE %s, %I.%I', queue, v.queue_schema, v.queue_failed_table);
    IF dest->>'implementation' = 'table' THEN
        trunc_sql := trunc_sql || format(', %I.%I', dest->>'target_schema', dest->>'target_table');
    END IF;
    IF filter IS NULL THEN
        RETURN concat_ws(E'\n',
            'BEGIN',
            '    IF TG_OP OPERATOR(pg_catalog.=) ''INSERT'' THEN',
            format('        INSERT INTO %s (%s) VALUES (%s);', queue, pk_cols, new_vals),
            '    ELSIF TG_OP OPERATOR(pg_catalog.=) ''DELETE'' THEN',
            format('        INSERT INTO %s (%s) VALUES (%s);', queue, pk_cols, old_vals),
            '    ELSIF TG_OP OPERATOR(pg_catalog.=) ''TRUNCATE'' THEN',
            format('        %s;', trunc_sql),
            '    ELSIF TG_NARGS OPERATOR(pg_catalog.>) 0 THEN',
            '        -- A new key (the _key trigger): the old key loses its embeddings, the new gets them.',
            format('        INSERT INTO %s (%s) VALUES (%s), (%s);', queue, pk_cols, old_vals, new_vals),
            '    ELSE',
            format('        INSERT INTO %s (%s) VALUES (%s);', queue, pk_cols, new_vals),
            '    END IF;',
            '    RETURN NULL;',
            'END');
    END IF;
    -- What a filter error runs: once per transaction and vectorizer (a setting that holds the
    -- transaction's id), a warning and, where the owner may insert it, a row in the errors table.
    report := concat_ws(E'\n',
        format('            IF coalesce(current_setting(%L, true), '''') IS DISTINCT FROM pg_current_xact_id()::text THEN', guc),
        format('                PERFORM set_config(%L, pg_current_xact_id()::text, true);', guc),
        format('                RAISE WARNING ''vectorizer "%%": row_filter %% failed on a row of %%, which counts as not matching: %%'', %L, %L, TG_TABLE_SCHEMA || ''.'' || TG_TABLE_NAME, SQLERRM',
               v.name, quote_literal(filter)),
        '                    USING DETAIL = ''Further failures of this filter in this transaction are not reported.'';',
        '                BEGIN',
        '                    IF has_table_privilege(''ai._vectorizer_errors'', ''INSERT'') THEN',
        format('                        INSERT INTO ai._vectorizer_errors (id, message, details) VALUES (%s,', v.id),
        '                            format(''row_filter failed on a row of %s.%s, which counts as not matching: %s'', TG_TABLE_SCHEMA, TG_TABLE_NAME, SQLERRM),',
        '                            jsonb_build_object(''step'', ''row_filter'', ''sqlstate'', SQLSTATE, ''operation'', TG_OP));',
        '                    END IF;',
        '                EXCEPTION WHEN others THEN',
        '                    NULL;  -- best effort: the warning was given, and the writer must not fail',
        '                END;',
        '            END IF;');
    RETURN concat_ws(E'\n',
        '#variable_conflict use_column',
        'DECLARE',
        '    _ai_old_ok bool := false;',
        '    _ai_new_ok bool := false;',
        'BEGIN',
        '    IF TG_OP = ''TRUNCATE'' THEN',
        format('        %s;', trunc_sql),
        '        RETURN NULL;',
        '    END IF;',
        '    -- The row filter, on the row before and after the change; an error counts as false.',
        '    IF TG_OP <> ''INSERT'' THEN',
        '        BEGIN',
        format('            _ai_old_ok := coalesce((SELECT (%s) FROM (SELECT OLD.*) AS _ai_row), false);', filter),
        '        EXCEPTION WHEN others THEN',
        report,
        '        END;',
        '    END IF;',
        '    IF TG_OP <> ''DELETE'' THEN',
        '        BEGIN',
        format('            _ai_new_ok := coalesce((SELECT (%s) FROM (SELECT NEW.*) AS _ai_row), false);', filter),
        '        EXCEPTION WHEN others THEN',
        report,
        '        END;',
        '    END IF;',
        '    IF TG_OP = ''INSERT'' THEN',
        format('        IF _ai_new_ok THEN INSERT INTO %s (%s) VALUES (%s); END IF;', queue, pk_cols, new_vals),
        '    ELSIF TG_OP = ''DELETE'' THEN',
        format('        IF _ai_old_ok THEN INSERT INTO %s (%s) VALUES (%s); END IF;', queue, pk_cols, old_vals),
        '    ELSIF TG_NARGS > 0 THEN',
        '        -- A new key (the _key trigger): the old key loses its embeddings, the new gets them.',
        format('        IF _ai_old_ok THEN INSERT INTO %s (%s) VALUES (%s); END IF;', queue, pk_cols, old_vals),
        format('        IF _ai_new_ok THEN INSERT INTO %s (%s) VALUES (%s); END IF;', queue, pk_cols, new_vals),
        '    ELSIF _ai_old_ok OR _ai_new_ok THEN',
        format('        INSERT INTO %s (%s) VALUES (%s);', queue, pk_cols, new_vals),
        '    END IF;',
        '    RETURN NULL;',
        'END');
END $$;

-- The queue, the failed-items table and the trigger function, in the queue schema. Called by
-- ai._vectorizer_register, so that vectorizer admins need no CREATE on schema ai.
CREATE FUNCTION ai._vectorizer_create_queue(v ai.vectorizer) RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    source  text := format('%I.%I', v.source_schema, v.source_table);
    func    text := format('%I.%I', v.queue_schema, v.trigger_name);
    pk_defs text := ai._pk_list(v.source_pk, '%I %s NOT NULL');
    pk_cols text := ai._pk_list(v.source_pk, '%I');
BEGIN

    -- The queue has no unique key on purpose: a unique key would make a writer wait on a
    -- worker's open transaction. Duplicates cost a little extra work and nothing else.
    -- A worker leases the rows it takes: claimed_by is its token and retry_after the lease's
    -- end (or, after a failure, the backoff's). It churns (insert, then delete), so autovacuum
    -- visits it often.
    EXECUTE format('CREATE TABLE %I.%I (%s, queued_at timestamptz NOT NULL DEFAULT now(), '
                   'attempts int4 NOT NULL DEFAULT 0, retry_after timestamptz, claimed_by uuid) '
                   'WITH (autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 1000, '
                   'autovacuum_vacuum_insert_scale_factor = 0, autovacuum_vacuum_insert_threshold = 1000)',
                   v.queue_schema, v.queue_table, pk_defs);
    EXECUTE format('CREATE INDEX ON %I.%I (%s)', v.queue_schema, v.queue_table, pk_cols);
    -- Partial, so the triggers' inserts (claimed_by is null) never touch it.
    EXECUTE format('CREATE INDEX ON %I.%I (claimed_by) WHERE claimed_by IS NOT NULL', v.queue_schema, v.queue_table);
    EXECUTE format('COMMENT ON TABLE %I.%I IS %L', v.queue_schema, v.queue_table,
                   format('Rows of %s waiting for vectorizer %s', source, v.name));
    EXECUTE format('CREATE TABLE %I.%I (%s, failed_at timestamptz NOT NULL DEFAULT now(), '
                   'attempts int4 NOT NULL DEFAULT 0, failure_step text NOT NULL DEFAULT '''', error text NOT NULL DEFAULT '''', '
                   'retry_at timestamptz)',
                   v.queue_schema, v.queue_failed_table, pk_defs);
    EXECUTE format('CREATE INDEX ON %I.%I (%s)', v.queue_schema, v.queue_failed_table, pk_cols);
    -- retry_at: when a row that failed through its provider's fault (an outage, say) goes back
    -- to the queue by itself; NULL for a row's own fault. Claims look for due ones every time.
    EXECUTE format('CREATE INDEX ON %I.%I (retry_at) WHERE retry_at IS NOT NULL', v.queue_schema, v.queue_failed_table);
    EXECUTE format('COMMENT ON TABLE %I.%I IS %L', v.queue_schema, v.queue_failed_table,
                   format('Rows of %s that vectorizer %s gave up on, with the error', source, v.name));

    PERFORM ai._vectorizer_create_trigger_function(v, false);

    PERFORM ai._vectorizer_give(format('TABLE %I.%I', v.queue_schema, v.queue_table), v);
    PERFORM ai._vectorizer_give(format('TABLE %I.%I', v.queue_schema, v.queue_failed_table), v);
    PERFORM ai._vectorizer_give(format('FUNCTION %s()', func), v);
    PERFORM ai._vectorizer_create_ops(v, false);
END $$;

-- SECURITY DEFINER so that writers to the source need no rights on the queue: it runs as the
-- vectorizer's owner, who owns the queue. On search_path, see _vectorizer_trigger_body. With
-- replace, an upgrade gives an existing vectorizer the body this version makes (it keeps its
-- owner and grants, and writers never wait for it: no lock on the source).
CREATE FUNCTION ai._vectorizer_create_trigger_function(v ai.vectorizer, replace bool) RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    func text := format('%I.%I', v.queue_schema, v.trigger_name);
BEGIN
    EXECUTE format('CREATE %sFUNCTION %s() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER%s AS %L',
                   CASE WHEN replace THEN 'OR REPLACE ' ELSE '' END, func,
                   CASE WHEN v.config->>'row_filter' IS NOT NULL THEN ' SET search_path = pg_catalog, pg_temp' ELSE '' END,
                   ai._vectorizer_trigger_body(v));
    EXECUTE format('REVOKE ALL ON FUNCTION %s() FROM PUBLIC', func);
    EXECUTE format('COMMENT ON FUNCTION %s() IS %L', func,
                   format('Queues changed rows of %I.%I for vectorizer %s', v.source_schema, v.source_table, v.name));
END $$;

-- Hands an object made here (by the install's owner) to the vectorizer's owner. The extension's
-- owner is a superuser, who just does. A plain install's owner is not, and PostgreSQL asks two
-- things of it: to be a member of the new owner (ai.grant_vectorizer_usage makes it one), and
-- the new owner to have CREATE on the object's schema: lent for the one statement and taken
-- back in the same transaction, so that no other session ever sees it.
CREATE FUNCTION ai._vectorizer_give(object text, v ai.vectorizer) RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    lend bool := false;
BEGIN
    IF NOT (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) THEN
        IF NOT pg_has_role(current_user, v.owner, 'MEMBER') THEN
            RAISE EXCEPTION 'create_vectorizer: role % (the owner of this plain install) is not a member of role %, so it cannot hand it vectorizer "%"',
                current_user, v.owner, v.name
                USING ERRCODE = 'insufficient_privilege',
                      HINT = format('As %I, run: SELECT ai.grant_vectorizer_usage(%L, admin => true);', current_user, v.owner);
        END IF;
        lend := NOT has_schema_privilege(v.owner, v.queue_schema, 'CREATE');
    END IF;
    IF lend THEN
        EXECUTE format('GRANT CREATE ON SCHEMA %I TO %I', v.queue_schema, v.owner);
    END IF;
    EXECUTE format('ALTER %s OWNER TO %I', object, v.owner);
    IF lend THEN
        EXECUTE format('REVOKE CREATE ON SCHEMA %I FROM %I', v.queue_schema, v.owner);
    END IF;
END $$;

-- The triggers on the source, with the caller's own rights. Only changes of the columns the
-- vectorizer reads wake it; types without an equality operator (json, xml, ...) compare as
-- text, where a false "changed" only costs a re-check. A change of key goes to its own
-- trigger (_key), so the function never compares values itself.
CREATE FUNCTION ai._vectorizer_create_triggers(v ai.vectorizer, read_columns name[]) RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    source     text := format('%I.%I', v.source_schema, v.source_table);
    func       text := format('%I.%I', v.queue_schema, v.trigger_name);
    pk_names   name[] := ARRAY(SELECT p->>'attname' FROM jsonb_array_elements(v.source_pk) AS p);
    key_change text := ai._pk_list(v.source_pk, 'OLD.%1$I IS DISTINCT FROM NEW.%1$I', ' OR ');
    changed    text;
BEGIN
    SELECT string_agg(CASE WHEN EXISTS (SELECT 1 FROM pg_operator o WHERE o.oprname = '='
                                          AND o.oprleft = a.atttypid AND o.oprright = a.atttypid)
                           THEN format('OLD.%1$I IS DISTINCT FROM NEW.%1$I', a.attname)
                           ELSE format('OLD.%1$I::text IS DISTINCT FROM NEW.%1$I::text', a.attname) END,
                      ' OR ' ORDER BY a.attnum)
      INTO changed
      FROM pg_attribute a
     WHERE a.attrelid = source::regclass AND a.attname = ANY (read_columns) AND NOT (a.attname = ANY (pk_names))
       AND NOT a.attisdropped;
    -- AFTER triggers see the final row (after other BEFORE triggers), and an UPDATE whose WHEN
    -- is false is not even queued for firing.
    EXECUTE format('CREATE TRIGGER %I AFTER INSERT OR DELETE ON %s FOR EACH ROW EXECUTE FUNCTION %s()',
                   v.trigger_name, source, func);
    EXECUTE format('CREATE TRIGGER %I AFTER UPDATE ON %s FOR EACH ROW WHEN (NOT (%s) AND (%s)) EXECUTE FUNCTION %s()',
                   v.trigger_name || '_upd', source, key_change, coalesce(changed, 'false'), func);
    EXECUTE format('CREATE TRIGGER %I AFTER UPDATE ON %s FOR EACH ROW WHEN (%s) EXECUTE FUNCTION %s(''key'')',
                   v.trigger_name || '_key', source, key_change, func);
    EXECUTE format('CREATE TRIGGER %I AFTER TRUNCATE ON %s FOR EACH STATEMENT EXECUTE FUNCTION %s()',
                   v.trigger_name || '_truncate', source, func);
END $$;

-- How a store keeps its rows: whole in the heap up to a page, not the 2 kB after which TOAST
-- would move a 768-float vector (3 kB) out of line after trying to compress it, for nothing
-- (floats do not compress). Measured on 20,000 rows of 768 dimensions and 800-character
-- chunks: inserts about 20% faster, scans 20-30% faster, no TOAST table written. A row over a
-- page still moves its vector out of line, uncompressed (EXTERNAL).
CREATE FUNCTION ai._vectorizer_store_storage(store regclass) RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    EXECUTE format('ALTER TABLE %s SET (toast_tuple_target = 8160)', store);
    EXECUTE format('ALTER TABLE %s ALTER COLUMN embedding SET STORAGE EXTERNAL', store);
END $$;

-- The store and its view, or the vector column, with the caller's own rights.
CREATE FUNCTION ai._vectorizer_create_destination(v ai.vectorizer) RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    dest       jsonb := v.config->'destination';
    source     text := format('%I.%I', v.source_schema, v.source_table);
    filter     text := v.config->>'row_filter';
    vec_type   text := ai._vector_type((v.config->'embedding'->>'dimensions')::int4);
    pk_defs    text := ai._pk_list(v.source_pk, '%I %s NOT NULL');
    pk_cols    text := ai._pk_list(v.source_pk, '%I');
    join_cond  text := ai._pk_list(v.source_pk, 't.%1$I = s.%1$I', ' AND ');
BEGIN
    IF dest->>'implementation' = 'column' THEN
        EXECUTE format('ALTER TABLE %s ADD COLUMN %I %s', source, dest->>'embedding_column', vec_type);
        RETURN;
    END IF;
    -- No foreign key to the source on purpose: a key would make the source's deletes wait on
    -- workers. The view joins on the source, so a deleted row vanishes from it at once.
    -- chunk_hash is a hash of the text the model saw (the formatted chunk): a worker keeps the
    -- vector of a chunk whose text did not change instead of embedding it again.
    EXECUTE format('CREATE TABLE %I.%I (embedding_uuid uuid NOT NULL DEFAULT gen_random_uuid() PRIMARY KEY, '
                   '%s, chunk_seq int4 NOT NULL, chunk text NOT NULL, embedding %s NOT NULL, chunk_hash bytea, '
                   'UNIQUE (%s, chunk_seq))',
                   dest->>'target_schema', dest->>'target_table', pk_defs, vec_type, pk_cols);
    PERFORM ai._vectorizer_store_storage(format('%I.%I', dest->>'target_schema', dest->>'target_table')::regclass);
    EXECUTE format('COMMENT ON TABLE %I.%I IS %L', dest->>'target_schema', dest->>'target_table',
                   format('Chunks and embeddings of %s, kept by vectorizer %s', source, v.name));
    -- security_invoker: the reader's own rights (and row-level security) apply to the source.
    EXECUTE format('CREATE VIEW %I.%I WITH (security_invoker = true) AS '
                   'SELECT t.embedding_uuid, t.chunk_seq, t.chunk, t.embedding, s.* '
                   'FROM %I.%I AS t JOIN (SELECT * FROM %s%s) AS s ON %s',
                   dest->>'view_schema', dest->>'view_name', dest->>'target_schema', dest->>'target_table',
                   source, CASE WHEN filter IS NOT NULL THEN format(' WHERE (%s)', filter) ELSE '' END, join_cond);
    EXECUTE format('COMMENT ON VIEW %I.%I IS %L', dest->>'view_schema', dest->>'view_name',
                   format('Rows of %s with their chunks and embeddings (vectorizer %s)', source, v.name));
END $$;

CREATE FUNCTION ai._vectorizer_grant(v ai.vectorizer, grantees name[]) RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    dest    jsonb := v.config->'destination';
    grantee name;
    schema  name;
BEGIN
    FOREACH grantee IN ARRAY coalesce(grantees, '{}') LOOP
        IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = grantee) THEN
            RAISE EXCEPTION 'create_vectorizer: grant_to role "%" does not exist', grantee USING ERRCODE = 'undefined_object';
        END IF;
        FOR schema IN SELECT DISTINCT s FROM unnest(ARRAY[v.source_schema, v.queue_schema,
                (dest->>'target_schema')::name, (dest->>'view_schema')::name]) AS s WHERE s IS NOT NULL LOOP
            EXECUTE format('GRANT USAGE ON SCHEMA %I TO %I', schema, grantee);
        END LOOP;
        EXECUTE format('GRANT SELECT ON %I.%I TO %I', v.source_schema, v.source_table, grantee);
        -- A worker running as this role reaches the tables through the vectorizer's ops function,
        -- so the owner's code on them runs as the owner, never as the worker's role.
        EXECUTE format('GRANT EXECUTE ON FUNCTION %s(text, jsonb) TO %I', ai._vectorizer_ops_name(v), grantee);
        EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON %I.%I, %I.%I TO %I',
                       v.queue_schema, v.queue_table, v.queue_schema, v.queue_failed_table, grantee);
        IF dest->>'implementation' = 'table' THEN
            EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON %I.%I TO %I',
                           dest->>'target_schema', dest->>'target_table', grantee);
            EXECUTE format('GRANT SELECT ON %I.%I TO %I', dest->>'view_schema', dest->>'view_name', grantee);
        ELSE
            EXECUTE format('GRANT UPDATE (%I) ON %I.%I TO %I',
                           dest->>'embedding_column', v.source_schema, v.source_table, grantee);
        END IF;
    END LOOP;
END $$;
