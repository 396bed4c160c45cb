-- Config helpers: embedding providers. Dimensions are needed up front because the store's
-- column is vector(dimensions); for well-known models they are filled in.

CREATE FUNCTION ai._known_model_dimensions(model text) RETURNS int4
LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, pg_temp
-- A path or hub name ("sentence-transformers/all-MiniLM-L6-v2") and an Ollama tag
-- ("nomic-embed-text:latest") resolve by their last component.
RETURN (SELECT d FROM (VALUES
      ('all-minilm-l6-v2', 384), ('all-minilm-l12-v2', 384), ('all-minilm', 384)
    , ('all-mpnet-base-v2', 768), ('multi-qa-minilm-l6-cos-v1', 384)
    , ('paraphrase-multilingual-minilm-l12-v2', 384)
    , ('bge-small-en-v1.5', 384), ('bge-base-en-v1.5', 768), ('bge-large-en-v1.5', 1024)
    , ('nomic-embed-text', 768), ('nomic-embed-text-v1.5', 768), ('mxbai-embed-large', 1024)
    , ('text-embedding-3-small', 1536), ('text-embedding-3-large', 3072)
    , ('text-embedding-ada-002', 1536)
    , ('voyage-3.5', 1024), ('voyage-3.5-lite', 1024), ('voyage-3-large', 1024)
    , ('voyage-3', 1024), ('voyage-3-lite', 512), ('voyage-code-3', 1024)
    , ('voyage-finance-2', 1024), ('voyage-law-2', 1024), ('voyage-multilingual-2', 1024)
    , ('voyage-2', 1024), ('voyage-large-2', 1536), ('voyage-code-2', 1536)
    , ('embed-english-v3.0', 1024), ('embed-multilingual-v3.0', 1024), ('embed-v4.0', 1536)
    , ('embed-english-light-v3.0', 384), ('embed-multilingual-light-v3.0', 384)
    , ('mistral-embed', 1024), ('amazon.titan-embed-text-v2', 1024), ('amazon.titan-embed-text-v1', 1536)
    , ('text-embedding-004', 768), ('text-embedding-005', 768), ('gemini-embedding-001', 3072)
    ) AS k(m, d)
    WHERE k.m = lower(split_part(regexp_replace(rtrim(model, '/'), '^.*/', ''), ':', 1)));
COMMENT ON FUNCTION ai._known_model_dimensions(text) IS 'Output size of well-known embedding models, or NULL';

CREATE FUNCTION ai._embedding_config(implementation text, model text, dimensions int4, extra jsonb)
RETURNS jsonb LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    dims int4 := coalesce(dimensions, ai._known_model_dimensions(model));
BEGIN
    IF model IS NULL OR btrim(model) = '' THEN
        RAISE EXCEPTION 'embedding_%: model is required', implementation USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF dims IS NULL THEN
        RAISE EXCEPTION 'embedding_%: dimensions is required for model "%"', implementation, model
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Pass the size of the model''s vectors, e.g. dimensions => 768.';
    END IF;
    IF dims < 1 OR dims > 16000 THEN
        RAISE EXCEPTION 'embedding_%: dimensions must be between 1 and 16000, got %', implementation, dims
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    RETURN jsonb_strip_nulls(jsonb_build_object('implementation', implementation,
        'config_type', 'embedding', 'model', model, 'dimensions', dims) || extra);
END $$;

CREATE FUNCTION ai.embedding_openai
( model text
, dimensions int4 DEFAULT NULL
, chat_user text DEFAULT NULL
, api_key_name text DEFAULT 'OPENAI_API_KEY'
, base_url text DEFAULT NULL
) RETURNS jsonb LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF api_key_name IS NULL OR api_key_name !~ '^[A-Za-z_][A-Za-z0-9_]*$' THEN
        RAISE EXCEPTION 'embedding_openai: api_key_name must name an environment variable, got %', quote_nullable(api_key_name)
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'The key itself is never stored in the database; the worker reads it from its environment.';
    END IF;
    IF base_url IS NOT NULL AND base_url !~* '^https?://' THEN
        RAISE EXCEPTION 'embedding_openai: base_url must start with http:// or https://, got %', quote_literal(base_url)
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    RETURN ai._embedding_config('openai', model, dimensions, jsonb_build_object(
        'user', chat_user, 'api_key_name', api_key_name, 'base_url', base_url));
END $$;
COMMENT ON FUNCTION ai.embedding_openai(text, int4, text, text, text) IS 'Embed with OpenAI or any OpenAI-compatible server; the API key is read from the worker''s environment';

CREATE FUNCTION ai.embedding_ollama
( model text
, dimensions int4 DEFAULT NULL
, base_url text DEFAULT NULL
, options jsonb DEFAULT NULL
, keep_alive text DEFAULT NULL
) RETURNS jsonb LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF options IS NOT NULL AND jsonb_typeof(options) <> 'object' THEN
        RAISE EXCEPTION 'embedding_ollama: options must be a json object, got %', jsonb_typeof(options)
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF base_url IS NOT NULL AND base_url !~* '^https?://' THEN
        RAISE EXCEPTION 'embedding_ollama: base_url must start with http:// or https://, got %', quote_literal(base_url)
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    RETURN ai._embedding_config('ollama', model, dimensions, jsonb_build_object(
        'base_url', base_url, 'options', options, 'keep_alive', keep_alive));
END $$;
COMMENT ON FUNCTION ai.embedding_ollama(text, int4, text, jsonb, text) IS 'Embed with an Ollama server (OLLAMA_HOST or base_url)';

CREATE FUNCTION ai.embedding_sentence_transformers
( model text DEFAULT 'all-MiniLM-L6-v2'
, dimensions int4 DEFAULT NULL
, device text DEFAULT 'auto'
, normalize_embeddings bool DEFAULT true
, batch_size int4 DEFAULT 64
) RETURNS jsonb LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF device IS NULL OR device !~ '^(auto|cpu|cuda(:[0-9]+)?)$' THEN
        RAISE EXCEPTION 'embedding_sentence_transformers: device must be auto, cpu, cuda or cuda:N, got %', quote_nullable(device)
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF batch_size IS NULL OR batch_size < 1 OR batch_size > 4096 THEN
        RAISE EXCEPTION 'embedding_sentence_transformers: batch_size must be between 1 and 4096, got %', batch_size
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    RETURN ai._embedding_config('sentence_transformers', model, dimensions, jsonb_build_object(
        'device', device, 'normalize', coalesce(normalize_embeddings, true), 'batch_size', batch_size));
END $$;
COMMENT ON FUNCTION ai.embedding_sentence_transformers(text, int4, text, bool, int4) IS 'Embed with a local sentence-transformers model, by name or path, on CPU or CUDA';

CREATE FUNCTION ai.embedding_voyageai
( model text
, dimensions int4 DEFAULT NULL
, input_type text DEFAULT 'document'
, api_key_name text DEFAULT 'VOYAGE_API_KEY'
, output_dimension int4 DEFAULT NULL
, output_dtype text DEFAULT 'float'
) RETURNS jsonb LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF input_type IS NOT NULL AND input_type NOT IN ('query', 'document') THEN
        RAISE EXCEPTION 'embedding_voyageai: input_type must be query, document or NULL, got %', quote_literal(input_type)
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF api_key_name IS NULL OR api_key_name !~ '^[A-Za-z_][A-Za-z0-9_]*$' THEN
        RAISE EXCEPTION 'embedding_voyageai: api_key_name must name an environment variable, got %', quote_nullable(api_key_name)
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'The key itself is never stored in the database; the worker reads it from its environment.';
    END IF;
    IF output_dimension IS NOT NULL AND output_dimension NOT IN (256, 512, 1024, 2048) THEN
        RAISE EXCEPTION 'embedding_voyageai: output_dimension must be 256, 512, 1024 or 2048, got %', output_dimension
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    -- The vectors Voyage returns are output_dimension long, so that is the store's size. pgai's
    -- docs pass the model's own size as dimensions beside it ("schema dimensions"), which a
    -- vector(dimensions) column could not hold: the asked size wins, and a NOTICE says so.
    IF output_dimension IS NOT NULL AND dimensions IS NOT NULL AND dimensions <> output_dimension THEN
        RAISE NOTICE 'embedding_voyageai: the vectors are output_dimension (%) long, so the store holds vector(%), not vector(%)',
            output_dimension, output_dimension, dimensions;
        dimensions := output_dimension;
    END IF;
    IF output_dtype IN ('binary', 'ubinary') THEN
        RAISE EXCEPTION 'embedding_voyageai: output_dtype % cannot be stored in a vector column', quote_literal(output_dtype)
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'binary and ubinary return bit-packed bytes (dimensions / 8 of them); use float, int8 or uint8.';
    END IF;
    IF output_dtype IS NOT NULL AND output_dtype NOT IN ('float', 'int8', 'uint8') THEN
        RAISE EXCEPTION 'embedding_voyageai: output_dtype must be float, int8 or uint8, got %', quote_literal(output_dtype)
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    RETURN ai._embedding_config('voyageai', model, coalesce(dimensions, output_dimension), jsonb_build_object(
        'input_type', input_type, 'api_key_name', api_key_name,
        'output_dimension', output_dimension, 'output_dtype', output_dtype));
END $$;
COMMENT ON FUNCTION ai.embedding_voyageai(text, int4, text, text, int4, text) IS 'Embed with Voyage AI (api.voyageai.com); the API key is read from the worker''s environment';

CREATE FUNCTION ai.embedding_litellm
( model text
, dimensions int4 DEFAULT NULL
, api_key_name text DEFAULT NULL
, extra_options jsonb DEFAULT NULL
) RETURNS jsonb LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF model IS NOT NULL AND model !~ '^[A-Za-z0-9_.-]+/.' THEN
        RAISE EXCEPTION 'embedding_litellm: model must be provider/model, got %', quote_literal(model)
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'For example cohere/embed-english-v3.0 or mistral/mistral-embed.';
    END IF;
    IF api_key_name IS NOT NULL AND api_key_name !~ '^[A-Za-z_][A-Za-z0-9_]*$' THEN
        RAISE EXCEPTION 'embedding_litellm: api_key_name must name an environment variable, got %', quote_literal(api_key_name)
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'The key itself is never stored in the database; the worker reads it from its environment.';
    END IF;
    IF extra_options IS NOT NULL AND jsonb_typeof(extra_options) <> 'object' THEN
        RAISE EXCEPTION 'embedding_litellm: extra_options must be a json object, got %', jsonb_typeof(extra_options)
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF extra_options ?| ARRAY['api_key', 'token', 'aws_secret_access_key', 'azure_ad_token'] THEN
        RAISE EXCEPTION 'embedding_litellm: extra_options may not hold a secret (api_key and the like)'
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Name the environment variable that holds it in api_key_name; keys are never stored in the database.';
    END IF;
    RETURN ai._embedding_config('litellm', model, dimensions, jsonb_build_object(
        'api_key_name', api_key_name, 'extra_options', extra_options));
END $$;
COMMENT ON FUNCTION ai.embedding_litellm(text, int4, text, jsonb) IS 'Embed through LiteLLM''s provider/model names (Cohere, Mistral, Azure OpenAI, ...); the API key is read from the worker''s environment';
