-- Dropping a source table (with CASCADE, since the view depends on it) drops its vectorizers.
-- Runs with the dropping role's rights: names in ai.vectorizer are never trusted with more.

CREATE FUNCTION ai._vectorizer_handle_drops() RETURNS event_trigger
LANGUAGE plpgsql VOLATILE
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
