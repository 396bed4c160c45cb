-- Config helpers: loading and parsing. Each returns the jsonb stored in ai.vectorizer.config.

CREATE FUNCTION ai.loading_column(column_name name, retries int4 DEFAULT 6)
RETURNS jsonb LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF column_name IS NULL OR column_name = '' THEN
        RAISE EXCEPTION 'loading_column: column_name is required' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF retries IS NULL OR retries < 0 THEN
        RAISE EXCEPTION 'loading_column: retries must be 0 or more, got %', retries USING ERRCODE = 'invalid_parameter_value';
    END IF;
    RETURN jsonb_build_object('implementation', 'column', 'config_type', 'loading',
                              'column_name', column_name, 'retries', retries);
END $$;
COMMENT ON FUNCTION ai.loading_column(name, int4) IS 'Embed the text of one column of the source table';

CREATE FUNCTION ai.parsing_auto() RETURNS jsonb LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
RETURN jsonb_build_object('implementation', 'auto', 'config_type', 'parsing');
COMMENT ON FUNCTION ai.parsing_auto() IS 'Parse loaded documents by their type (a no-op for text columns)';

CREATE FUNCTION ai.parsing_none() RETURNS jsonb LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
RETURN jsonb_build_object('implementation', 'none', 'config_type', 'parsing');
COMMENT ON FUNCTION ai.parsing_none() IS 'Embed loaded text as it is';
