-- Event triggers that keep vectorizers consistent with DDL on their sources. Both run with the
-- definer's rights: they fire for every role's DDL, and most roles cannot read schema ai.

-- Dropping a source table (with CASCADE, since the view depends on it) or its schema drops the
-- table's vectorizers. The catalog is written only through checked functions, and
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
-- no longer exist: its trigger would then fail every write to the source.
CREATE FUNCTION ai._vectorizer_handle_alters() RETURNS event_trigger
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v       ai.vectorizer;
    problem text;
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
    END LOOP;
END $$;

CREATE EVENT TRIGGER _vectorizer_handle_alters ON ddl_command_end
    WHEN TAG IN ('ALTER TABLE', 'ALTER SCHEMA')
    EXECUTE FUNCTION ai._vectorizer_handle_alters();
