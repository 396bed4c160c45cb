-- Config helpers: chunking and formatting.

CREATE FUNCTION ai._check_chunk_sizes(helper text, chunk_size int4, chunk_overlap int4)
RETURNS void LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF chunk_size IS NULL OR chunk_size < 1 THEN
        RAISE EXCEPTION '%: chunk_size must be 1 or more, got %', helper, chunk_size USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF chunk_overlap IS NULL OR chunk_overlap < 0 OR chunk_overlap >= chunk_size THEN
        RAISE EXCEPTION '%: chunk_overlap must be at least 0 and less than chunk_size (%), got %', helper, chunk_size, chunk_overlap
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
END $$;

CREATE FUNCTION ai.chunking_none() RETURNS jsonb LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
RETURN jsonb_build_object('implementation', 'none', 'config_type', 'chunking');
COMMENT ON FUNCTION ai.chunking_none() IS 'Embed each row''s text whole, as one chunk';

CREATE FUNCTION ai.chunking_character_text_splitter
( chunk_size int4 DEFAULT 800
, chunk_overlap int4 DEFAULT 400
, separator text DEFAULT E'\n\n'
, is_separator_regex bool DEFAULT false
) RETURNS jsonb LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    PERFORM ai._check_chunk_sizes('chunking_character_text_splitter', chunk_size, chunk_overlap);
    IF separator IS NULL THEN
        RAISE EXCEPTION 'chunking_character_text_splitter: separator must not be null' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    RETURN jsonb_build_object('implementation', 'character_text_splitter', 'config_type', 'chunking',
        'chunk_size', chunk_size, 'chunk_overlap', chunk_overlap, 'separator', separator,
        'is_separator_regex', coalesce(is_separator_regex, false));
END $$;
COMMENT ON FUNCTION ai.chunking_character_text_splitter(int4, int4, text, bool) IS 'Split text on one separator into chunks of at most chunk_size characters';

CREATE FUNCTION ai.chunking_recursive_character_text_splitter
( chunk_size int4 DEFAULT 800
, chunk_overlap int4 DEFAULT 400
, separators text[] DEFAULT ARRAY[E'\n\n', E'\n', '.', '?', '!', ' ', '']
, is_separator_regex bool DEFAULT false
) RETURNS jsonb LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    PERFORM ai._check_chunk_sizes('chunking_recursive_character_text_splitter', chunk_size, chunk_overlap);
    IF separators IS NULL OR cardinality(separators) = 0 OR array_position(separators, NULL) IS NOT NULL THEN
        RAISE EXCEPTION 'chunking_recursive_character_text_splitter: separators must be a non-empty array without nulls'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    RETURN jsonb_build_object('implementation', 'recursive_character_text_splitter', 'config_type', 'chunking',
        'chunk_size', chunk_size, 'chunk_overlap', chunk_overlap, 'separators', to_jsonb(separators),
        'is_separator_regex', coalesce(is_separator_regex, false));
END $$;
COMMENT ON FUNCTION ai.chunking_recursive_character_text_splitter(int4, int4, text[], bool) IS 'Split text on the first separator that yields small enough chunks, then the next';

-- The names a template refers to: $name or ${name} with Python identifiers; $$ is a literal $.
CREATE FUNCTION ai._template_names(template text) RETURNS text[]
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    token constant text := '\$(\$|\{([_A-Za-z][_A-Za-z0-9]*)\}|([_A-Za-z][_A-Za-z0-9]*))';
    rest text := regexp_replace(template, token, '', 'g');
BEGIN
    IF strpos(rest, '$') > 0 THEN
        RAISE EXCEPTION 'formatting_python_template: invalid placeholder near "%" in template %',
            substr(rest, strpos(rest, '$'), 12), quote_literal(template)
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Placeholders are $name or ${name}; write two dollar signs for a literal one.';
    END IF;
    RETURN ARRAY(SELECT DISTINCT coalesce(m[2], m[3]) FROM regexp_matches(template, token, 'g') AS m
                 WHERE m[1] <> '$' ORDER BY 1);
END $$;

CREATE FUNCTION ai.formatting_python_template(template text DEFAULT '$chunk')
RETURNS jsonb LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF template IS NULL OR NOT 'chunk' = ANY (ai._template_names(template)) THEN
        RAISE EXCEPTION 'formatting_python_template: the template must contain $chunk, got %', quote_nullable(template)
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    RETURN jsonb_build_object('implementation', 'python_template', 'config_type', 'formatting', 'template', template);
END $$;
COMMENT ON FUNCTION ai.formatting_python_template(text) IS 'Format each chunk before embedding: $chunk plus any source column as $column';
