-- Event triggers that keep vectorizers consistent with DDL on their sources. Both run with the
-- definer's rights: they fire for every role's DDL, and most roles cannot read schema ai.

-- Dropping a source table (with or without CASCADE: see _vectorizer_detach_views) or its schema
-- drops the table's vectorizers; dropping a partition of a source queues its rows' keys (see below). The catalog is written only through checked functions, and
-- _vectorizer_drop_objects drops only what the vectorizer's owner owns.
CREATE FUNCTION ai._vectorizer_handle_drops() RETURNS event_trigger
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v ai.vectorizer;
BEGIN
    FOR v IN
        SELECT z.* FROM ai.vectorizer AS z
         WHERE EXISTS (SELECT 1 FROM pg_event_trigger_dropped_objects() AS d
                        WHERE d.object_type = 'table' AND NOT d.is_temporary
                          AND d.schema_name = z.source_schema AND d.object_name = z.source_table)
           AND to_regclass(format('%I.%I', z.source_schema, z.source_table)) IS NULL
         ORDER BY z.id
    LOOP
        PERFORM ai._vectorizer_drop_objects(v, true);
        DELETE FROM ai.vectorizer WHERE id = v.id;
        RAISE NOTICE 'dropped vectorizer "%" along with its source table', v.name;
    END LOOP;
    -- A partition dropped from a source that stays: its clone of the vectorizer's trigger went
    -- with it. The chunks of its rows are to go too.
    FOR v IN
        SELECT z.* FROM ai.vectorizer AS z
         WHERE EXISTS (SELECT 1 FROM pg_event_trigger_dropped_objects() AS d
                        WHERE d.object_type = 'trigger'
                          AND starts_with(d.object_identity, quote_ident(z.trigger_name) || ' on '))
           AND to_regclass(format('%I.%I', z.source_schema, z.source_table)) IS NOT NULL
         ORDER BY z.id
    LOOP
        PERFORM ai._vectorizer_queue_missing_as_owner(v);
    END LOOP;
END $$;

CREATE EVENT TRIGGER _vectorizer_handle_drops ON sql_drop
    WHEN TAG IN ('DROP TABLE', 'DROP SCHEMA', 'DROP OWNED')
    EXECUTE FUNCTION ai._vectorizer_handle_drops();

-- What an ALTER would break in a vectorizer: the trigger function, the worker and the view name
-- the source, its key and the columns read. NULL when all is well.
CREATE FUNCTION ai._vectorizer_source_problem(v ai.vectorizer) RETURNS text
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    source regclass := to_regclass(format('%I.%I', v.source_schema, v.source_table));
    col    text;
BEGIN
    IF source IS NULL THEN
        RETURN format('its source table %I.%I was renamed or moved', v.source_schema, v.source_table);
    END IF;
    IF (SELECT jsonb_agg(jsonb_build_array(a.attname, format_type(a.atttypid, a.atttypmod)) ORDER BY k.pknum)
          FROM pg_index i
          CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, pknum)
          JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
         WHERE i.indrelid = source AND i.indisprimary)
       IS DISTINCT FROM
       (SELECT jsonb_agg(jsonb_build_array(p->>'attname', p->>'typname') ORDER BY (p->>'pknum')::int)
          FROM jsonb_array_elements(v.source_pk) AS p) THEN
        RETURN format('the primary key of %s changed', source);
    END IF;
    FOR col IN SELECT c FROM unnest(ARRAY[v.config->'loading'->>'column_name']
                   || ARRAY(SELECT jsonb_array_elements_text(v.config->'template_columns'))
                   || ARRAY(SELECT jsonb_array_elements_text(v.config->'filter_columns'))) AS c
    LOOP
        IF NOT EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = source AND attname = col
                          AND attnum > 0 AND NOT attisdropped) THEN
            RETURN format('column %I of %s, which it reads, was renamed or dropped', col, source);
        END IF;
    END LOOP;
    RETURN NULL;
END $$;

-- Refuses an ALTER TABLE or ALTER SCHEMA that would leave a vectorizer pointing at names that
-- no longer exist: its trigger would then fail every write to the source. After a partition is
-- detached from a source, queues the keys that left with it.
CREATE FUNCTION ai._vectorizer_handle_alters() RETURNS event_trigger
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v       ai.vectorizer;
    problem text;
    before  jsonb := nullif(current_setting('ai.vectorizer_partitions', true), '')::jsonb;
    now_in  jsonb;
BEGIN
    FOR v IN
        SELECT z.* FROM ai.vectorizer AS z
         WHERE z.id IN (
            SELECT substring(t.tgname FROM '^_vectorizer_src_trg_([0-9]+)$')::int4
              FROM pg_event_trigger_ddl_commands() AS c
              JOIN pg_class r ON (c.classid = 'pg_class'::regclass AND r.oid = c.objid)
                              OR (c.classid = 'pg_namespace'::regclass AND r.relnamespace = c.objid)
              JOIN pg_trigger t ON t.tgrelid = r.oid
             WHERE t.tgname ~ '^_vectorizer_src_trg_[0-9]+$')
         ORDER BY z.id
    LOOP
        problem := ai._vectorizer_source_problem(v);
        IF problem IS NOT NULL THEN
            RAISE EXCEPTION 'this change would break vectorizer "%": %', v.name, problem
                USING ERRCODE = 'dependent_objects_still_exist',
                      HINT = 'Drop the vectorizer first (ai.drop_vectorizer), make the change, then create it again.';
        END IF;
        -- A partition that was in the source when the command started and is gone now was
        -- detached. Without a snapshot (a nested command, say) the keys are checked anyway.
        now_in := coalesce(ai._vectorizer_partitions()->v.id::text, '[]');
        IF (SELECT relkind FROM pg_class WHERE oid = to_regclass(format('%I.%I', v.source_schema, v.source_table))) = 'p'
           AND (before IS NULL OR NOT before ? v.id::text
                OR EXISTS (SELECT 1 FROM jsonb_array_elements(before->v.id::text) AS b(oid) WHERE NOT now_in @> jsonb_build_array(b.oid))) THEN
            PERFORM ai._vectorizer_queue_missing_as_owner(v);
        END IF;
    END LOOP;
    PERFORM set_config('ai.vectorizer_partitions', '', false);
END $$;

CREATE EVENT TRIGGER _vectorizer_handle_alters ON ddl_command_end
    WHEN TAG IN ('ALTER TABLE', 'ALTER SCHEMA')
    EXECUTE FUNCTION ai._vectorizer_handle_alters();

-- --- partitions that leave a partitioned source ----------------------------------------------
-- A partition detached from the source (ALTER TABLE ... DETACH PARTITION, CONCURRENTLY too) or
-- dropped takes its rows out of the source without firing a row trigger, so their chunks
-- would stay in the store. When that happens the vectorizer's stored keys that are no longer
-- in the source are queued, and a worker removes their chunks. A destination_column needs
-- nothing: its vectors left the source with the rows.

-- Queues every key in the store that the source no longer has. With the rights of the caller,
-- who must be the vectorizer's owner: the tables are the owner's, and so is any code on them
-- (triggers on the queue, a key type's operators), which must never run as anyone else.
CREATE FUNCTION ai._vectorizer_queue_missing(vectorizer_id int4) RETURNS int8
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v    ai.vectorizer := ai._vectorizer_get(vectorizer_id);
    dest jsonb := v.config->'destination';
    n    int8;
BEGIN
    IF current_user IS DISTINCT FROM v.owner THEN
        RAISE EXCEPTION 'ai._vectorizer_queue_missing runs as the owner of vectorizer "%" only', v.name
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF dest->>'implementation' IS DISTINCT FROM 'table' THEN
        RETURN 0;
    END IF;
    -- The key types' schemas, so that key comparisons find their operators (citext's, say).
    PERFORM set_config('search_path', ai._vq_path(v), true);
    EXECUTE format('INSERT INTO %I.%I (%s) SELECT DISTINCT %s FROM %I.%I AS s '
                   'WHERE NOT EXISTS (SELECT FROM %I.%I AS t WHERE %s)',
                   v.queue_schema, v.queue_table, ai._pk_list(v.source_pk, '%I'), ai._pk_list(v.source_pk, 's.%I'),
                   dest->>'target_schema', dest->>'target_table', v.source_schema, v.source_table,
                   ai._pk_list(v.source_pk, 't.%1$I OPERATOR(pg_catalog.=) s.%1$I', ' AND '));
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END $$;

-- The event triggers run as the extension's owner, and a definer function cannot SET ROLE. So
-- the owner's rights come from a SECURITY DEFINER function of the owner's, made for the call
-- in this session's temporary schema (no other session can see or change it) and dropped again.
CREATE FUNCTION ai._vectorizer_queue_missing_as_owner(v ai.vectorizer) RETURNS int8
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    func text := format('pg_temp.%I', '_ai_queue_missing_' || v.id);
    n    int8;
BEGIN
    IF v.config->'destination'->>'implementation' IS DISTINCT FROM 'table' THEN
        RETURN 0;
    END IF;
    EXECUTE format('CREATE FUNCTION %s() RETURNS int8 LANGUAGE sql VOLATILE SECURITY DEFINER '
                   'SET search_path = pg_catalog, pg_temp BEGIN ATOMIC SELECT ai._vectorizer_queue_missing(%s); END',
                   func, v.id);
    EXECUTE format('ALTER FUNCTION %s() OWNER TO %I', func, v.owner);
    EXECUTE format('SELECT %s()', func) INTO n;
    EXECUTE format('DROP FUNCTION %s()', func);
    IF n > 0 THEN
        RAISE NOTICE 'vectorizer "%": queued % key(s) that left its source with a partition', v.name, n;
    END IF;
    RETURN n;
END $$;

-- The partitions (all levels) of each partitioned source with a store, by vectorizer id.
CREATE FUNCTION ai._vectorizer_partitions() RETURNS jsonb
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
RETURN (SELECT coalesce(jsonb_object_agg(z.id, ARRAY(SELECT t.relid::oid::int8 FROM pg_partition_tree(c.oid) AS t
                                                      WHERE t.relid <> c.oid)), '{}')
          FROM ai.vectorizer AS z
          JOIN pg_class c ON c.oid = to_regclass(format('%I.%I', z.source_schema, z.source_table))
         WHERE c.relkind = 'p' AND z.config->'destination'->>'implementation' = 'table');

-- --- before DDL: the drop guard and the partitions' snapshot ---------------------------------
-- DROP EXTENSION ai, or a drop that cascades to it, would leave each source's triggers writing
-- into queue tables nobody reads (and pg_cron jobs calling functions that are gone), and a new
-- CREATE EXTENSION ai would collide with the old queue names. So it is refused while
-- vectorizers exist. At ddl_command_start the objects are not known yet, only the statement:
-- this reads DROP EXTENSION / DROP SCHEMA statements from current_query() (comments removed)
-- and refuses those that name ai, or, with CASCADE, an extension ai requires
-- or the schema of one. Once the last vectorizer is dropped, DROP EXTENSION ai works as usual.
CREATE FUNCTION ai._vectorizer_drop_refused(tag text, query text) RETURNS bool
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    kind    text := lower(substring(tag FROM 6));  -- 'extension' or 'schema'
    ai_oid  oid := (SELECT oid FROM pg_extension WHERE extname = 'ai');
    stmt    text[];
    names   text[];
    cascade bool;
    targets text[];
BEGIN
    -- Comments out, so that a name in them does not count. String literals stay: one may be a
    -- statement run by EXECUTE in a DO block.
    query := regexp_replace(query, '/\*.*?\*/', ' ', 'g');
    query := regexp_replace(query, '--[^\n]*', ' ', 'g');
    FOR stmt IN SELECT regexp_matches(query, '\mdrop\s+' || kind || '\s+(?:if\s+exists\s+)?([^;]*)', 'gi') LOOP
        names := ARRAY(SELECT CASE WHEN m[1] LIKE '"%' THEN replace(substr(m[1], 2, length(m[1]) - 2), '""', '"')
                                   ELSE lower(m[1]) END
                         FROM regexp_matches(stmt[1], '("(?:[^"]|"")+"|[^\s,"'';()]+)', 'g') AS m);
        cascade := 'cascade' = ANY (names);
        IF kind = 'extension' THEN
            targets := ARRAY['ai'] || CASE WHEN cascade THEN ARRAY(
                SELECT e.extname::text FROM pg_depend d JOIN pg_extension e ON e.oid = d.refobjid
                 WHERE d.classid = 'pg_extension'::regclass AND d.objid = ai_oid
                   AND d.refclassid = 'pg_extension'::regclass) ELSE '{}' END;
        ELSE
            targets := ARRAY(SELECT n.nspname::text FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace
                              WHERE e.oid = ai_oid
                                 OR cascade AND e.oid IN (SELECT d.refobjid FROM pg_depend d
                                                           WHERE d.classid = 'pg_extension'::regclass AND d.objid = ai_oid
                                                             AND d.refclassid = 'pg_extension'::regclass));
        END IF;
        IF names && targets THEN
            RETURN true;
        END IF;
    END LOOP;
    RETURN false;
END $$;

CREATE FUNCTION ai._vectorizer_handle_ddl_start() RETURNS event_trigger
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    n int8;
BEGIN
    IF tg_tag IN ('ALTER TABLE', 'ALTER SCHEMA') THEN
        -- Session-wide, since DETACH PARTITION CONCURRENTLY ends in a transaction of its own.
        PERFORM set_config('ai.vectorizer_partitions', ai._vectorizer_partitions()::text, false);
        RETURN;
    END IF;
    IF tg_tag = 'DROP TABLE' THEN
        PERFORM ai._vectorizer_detach_views(current_query());
        RETURN;
    END IF;
    n := (SELECT count(*) FROM ai.vectorizer);
    IF n > 0 AND ai._vectorizer_drop_refused(tg_tag, current_query()) THEN
        RAISE EXCEPTION 'cannot drop extension ai while % vectorizer(s) exist; drop the vectorizers first: SELECT ai.drop_vectorizer(id) FROM ai.vectorizer', n
            USING ERRCODE = 'dependent_objects_still_exist',
                  DETAIL = 'Their triggers would keep writing into queue tables that nothing reads, and a new CREATE EXTENSION ai would collide with the queues left behind.';
    END IF;
END $$;

CREATE EVENT TRIGGER _vectorizer_handle_ddl_start ON ddl_command_start
    WHEN TAG IN ('ALTER TABLE', 'ALTER SCHEMA', 'DROP EXTENSION', 'DROP SCHEMA', 'DROP TABLE')
    EXECUTE FUNCTION ai._vectorizer_handle_ddl_start();

-- --- DROP TABLE of a source without CASCADE ---------------------------------------------------
-- A vectorizer's view reads its source, so PostgreSQL refuses a plain DROP TABLE of the source
-- before any sql_drop trigger could drop the vectorizer. pgai users drop sources that way. So,
-- before a DROP TABLE runs, the view of each vectorizer whose source the statement may name
-- (its table name appears in the text: a cheap test that may say yes too often, never no for a
-- literal name) is given a stand-in definition with the same columns and no source: the drop
-- then goes through, _vectorizer_handle_drops drops the vectorizer, and at the statement's end
-- the views whose sources remain get their own definitions back. All in the statement's
-- transaction, so a drop that fails for another reason undoes it all. CREATE OR REPLACE VIEW
-- keeps the view's grants, comment and dependants; its options are restated. With CASCADE the
-- views are left alone: the drop takes them (and views built on them) as PostgreSQL's rules say.
CREATE FUNCTION ai._vectorizer_detach_views(query text) RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    lowered text := lower(regexp_replace(regexp_replace(query, '/\*.*?\*/', ' ', 'g'), '--[^\n]*', ' ', 'g'));
    saved   jsonb := coalesce(nullif(current_setting('ai.vectorizer_detached', true), '')::jsonb, '{}');
    view    regclass;
    source  regclass;
    opts    text;
BEGIN
    IF lowered ~ '\mcascade\M' THEN
        RETURN;
    END IF;
    FOR view, source IN
        SELECT c.oid::regclass, to_regclass(format('%I.%I', z.source_schema, z.source_table)) FROM ai.vectorizer AS z
          JOIN pg_class c ON c.oid = to_regclass(format('%I.%I', z.config->'destination'->>'view_schema',
                                                          z.config->'destination'->>'view_name'))
         WHERE z.config->'destination'->>'implementation' = 'table' AND c.relkind = 'v'
           AND position(lower(z.source_table) IN lowered) > 0
           AND NOT saved ? c.oid::text
         ORDER BY z.id
    LOOP
        opts := (SELECT array_to_string(reloptions, ', ') FROM pg_class WHERE oid = view);
        saved := saved || jsonb_build_object(view::oid::text,
                     jsonb_build_object('definition', pg_get_viewdef(view), 'options', opts,
                                        'source', source::oid));
        EXECUTE format('CREATE OR REPLACE VIEW %s%s AS SELECT %s WHERE false', view,
                       ' WITH (' || opts || ')',
                       (SELECT string_agg(format('NULL::%s%s AS %I', format_type(a.atttypid, a.atttypmod),
                                                 CASE WHEN a.attcollation <> 0 THEN
                                                      (SELECT format(' COLLATE %I.%I', n.nspname, l.collname)
                                                         FROM pg_collation l JOIN pg_namespace n ON n.oid = l.collnamespace
                                                        WHERE l.oid = a.attcollation) ELSE '' END,
                                                 a.attname), ', ' ORDER BY a.attnum)
                          FROM pg_attribute a WHERE a.attrelid = view AND a.attnum > 0 AND NOT a.attisdropped));
    END LOOP;
    PERFORM set_config('ai.vectorizer_detached', saved::text, true);
END $$;

-- At the end of a DROP TABLE: the views set aside by _vectorizer_detach_views whose sources
-- remain get their definitions back (the others go with their vectorizers). This also runs at
-- the end of each DROP inside the statement (those of _vectorizer_drop_objects), so a view is
-- restored only while its source exists, and the others stay listed until the statement ends.
CREATE FUNCTION ai._vectorizer_handle_drop_end() RETURNS event_trigger
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    saved jsonb := nullif(current_setting('ai.vectorizer_detached', true), '')::jsonb;
    entry record;
BEGIN
    IF saved IS NULL THEN
        RETURN;
    END IF;
    FOR entry IN SELECT e.key, e.key::oid::regclass AS view, e.value AS kept FROM jsonb_each(saved) AS e
                  WHERE EXISTS (SELECT 1 FROM pg_class WHERE oid = e.key::oid)
                    AND EXISTS (SELECT 1 FROM pg_class WHERE oid = (e.value->>'source')::oid)
                  ORDER BY e.key::oid
    LOOP
        EXECUTE format('CREATE OR REPLACE VIEW %s%s AS %s', entry.view,
                       ' WITH (' || (entry.kept->>'options') || ')', entry.kept->>'definition');
        saved := saved - entry.key;
    END LOOP;
    PERFORM set_config('ai.vectorizer_detached', saved::text, true);
END $$;

CREATE EVENT TRIGGER _vectorizer_handle_drop_end ON ddl_command_end
    WHEN TAG IN ('DROP TABLE')
    EXECUTE FUNCTION ai._vectorizer_handle_drop_end();
