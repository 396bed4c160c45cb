-- Config helpers: loading. Each returns the jsonb stored in ai.vectorizer.config.

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
COMMENT ON FUNCTION ai.loading_column(name, int4) IS 'Embed one column of the source table: its text, or the document stored in it (bytea)';

CREATE FUNCTION ai.loading_uri(column_name name, retries int4 DEFAULT 6, aws_role_arn text DEFAULT NULL)
RETURNS jsonb LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF column_name IS NULL OR column_name = '' THEN
        RAISE EXCEPTION 'loading_uri: column_name is required' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF retries IS NULL OR retries < 0 THEN
        RAISE EXCEPTION 'loading_uri: retries must be 0 or more, got %', retries USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF aws_role_arn IS NOT NULL AND aws_role_arn !~ '^arn:[a-z0-9-]+:iam::[0-9]{12}:role/.+$' THEN
        RAISE EXCEPTION 'loading_uri: aws_role_arn must be an IAM role ARN (arn:aws:iam::<account>:role/<name>), got %',
            quote_literal(aws_role_arn) USING ERRCODE = 'invalid_parameter_value';
    END IF;
    RETURN jsonb_strip_nulls(jsonb_build_object('implementation', 'uri', 'config_type', 'loading',
                             'column_name', column_name, 'retries', retries, 'aws_role_arn', aws_role_arn));
END $$;
COMMENT ON FUNCTION ai.loading_uri(name, int4, text) IS 'Embed the document at the URI (s3://, https://, http://, file://) that a column of the source table holds; the worker fetches it';
