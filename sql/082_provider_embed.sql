-- pgai's one-call embedding functions (ai.openai_embed, ai.ollama_embed, ai.voyageai_embed,
-- ai.cohere_embed, ai.litellm_embed), as its quick starts use them in queries:
--   ORDER BY embedding <=> ai.ollama_embed('nomic-embed-text', 'a question')
-- Each builds the embedding config of its provider and calls ai.embed with it, so the same
-- keys, endpoints and allow-lists apply as to vectorizers. Two differences from pgai, on
-- purpose: a key is never passed in SQL (api_key is refused: it would land in logs and
-- pg_stat_statements; the server's environment holds it, named by api_key_name), and the
-- model's vector size must be known (listed in ai._known_model_dimensions, or passed).

-- The refusal shared by all of them when a key is passed as an argument.
CREATE FUNCTION ai._refuse_api_key(what text, api_key text, default_name text) RETURNS void
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF api_key IS NOT NULL THEN
        RAISE EXCEPTION '%: api_key is not accepted: a key in SQL ends up in logs and pg_stat_statements', what
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = format('Set %s in the PostgreSQL server''s environment, or pass api_key_name => the variable that holds it.', default_name);
    END IF;
END $$;

-- These functions have no dimensions argument (but openai_embed): the model's size must be known.
CREATE FUNCTION ai._require_known_model(what text, model text, config_helper text) RETURNS void
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF model IS NOT NULL AND ai._known_model_dimensions(model) IS NULL THEN
        RAISE EXCEPTION '%: the size of the vectors of model % is not known here', what, quote_literal(model)
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = format('Pass it in a config: ai.embed(ai.%s(%L, dimensions => N, ...), input_text).', config_helper, model);
    END IF;
END $$;

CREATE FUNCTION ai.openai_embed
( model text
, input_text text
, api_key text DEFAULT NULL
, api_key_name text DEFAULT NULL
, dimensions int4 DEFAULT NULL
, openai_user text DEFAULT NULL
, extra_headers jsonb DEFAULT NULL
, extra_query jsonb DEFAULT NULL
, verbose bool DEFAULT false
, client_config jsonb DEFAULT NULL
) RETURNS vector LANGUAGE plpgsql IMMUTABLE PARALLEL RESTRICTED
SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    PERFORM ai._refuse_api_key('openai_embed', api_key, 'OPENAI_API_KEY');
    IF extra_headers IS NOT NULL OR extra_query IS NOT NULL THEN
        RAISE EXCEPTION 'openai_embed: extra_headers and extra_query are not supported'
            USING ERRCODE = 'feature_not_supported',
                  HINT = 'Requests carry only the key named by api_key_name; put a proxy at client_config''s base_url for anything else.';
    END IF;
    IF client_config IS NOT NULL AND (jsonb_typeof(client_config) <> 'object'
       OR EXISTS (SELECT 1 FROM jsonb_object_keys(client_config) AS k WHERE k <> 'base_url')) THEN
        RAISE EXCEPTION 'openai_embed: client_config may hold base_url only, got %', client_config
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    RETURN ai.embed(ai.embedding_openai(model, dimensions, openai_user, coalesce(api_key_name, 'OPENAI_API_KEY'),
                                        client_config->>'base_url'), input_text);
END $$;
COMMENT ON FUNCTION ai.openai_embed(text, text, text, text, int4, text, jsonb, jsonb, bool, jsonb) IS 'The vector of a text from an OpenAI model (pgai''s name); the key comes from the server''s environment';

CREATE FUNCTION ai.ollama_embed
( model text
, input_text text
, host text DEFAULT NULL
, keep_alive text DEFAULT NULL
, embedding_options jsonb DEFAULT NULL
, verbose bool DEFAULT false
) RETURNS vector LANGUAGE plpgsql IMMUTABLE PARALLEL RESTRICTED
SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    PERFORM ai._require_known_model('ollama_embed', model, 'embedding_ollama');
    RETURN ai.embed(ai.embedding_ollama(model, NULL, host, embedding_options, keep_alive), input_text);
END $$;
COMMENT ON FUNCTION ai.ollama_embed(text, text, text, text, jsonb, bool) IS 'The vector of a text from an Ollama model (pgai''s name); host defaults to the server''s OLLAMA_HOST';

CREATE FUNCTION ai.voyageai_embed
( model text
, input_text text
, input_type text DEFAULT NULL
, api_key text DEFAULT NULL
, api_key_name text DEFAULT NULL
, verbose bool DEFAULT false
) RETURNS vector LANGUAGE plpgsql IMMUTABLE PARALLEL RESTRICTED
SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    PERFORM ai._refuse_api_key('voyageai_embed', api_key, 'VOYAGE_API_KEY');
    PERFORM ai._require_known_model('voyageai_embed', model, 'embedding_voyageai');
    RETURN ai.embed(ai.embedding_voyageai(model, NULL, input_type, coalesce(api_key_name, 'VOYAGE_API_KEY')), input_text);
END $$;
COMMENT ON FUNCTION ai.voyageai_embed(text, text, text, text, text, bool) IS 'The vector of a text from a Voyage AI model (pgai''s name); the key comes from the server''s environment';

CREATE FUNCTION ai.cohere_embed
( model text
, input_text text
, api_key text DEFAULT NULL
, api_key_name text DEFAULT NULL
, input_type text DEFAULT NULL
, truncate_long_inputs text DEFAULT NULL
, verbose bool DEFAULT false
) RETURNS vector LANGUAGE plpgsql IMMUTABLE PARALLEL RESTRICTED
SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    PERFORM ai._refuse_api_key('cohere_embed', api_key, 'COHERE_API_KEY');
    PERFORM ai._require_known_model('cohere_embed', model, 'embedding_litellm');
    RETURN ai.embed(ai.embedding_litellm('cohere/' || model, NULL, api_key_name,
                        jsonb_strip_nulls(jsonb_build_object('input_type', input_type, 'truncate', truncate_long_inputs))),
                    input_text);
END $$;
COMMENT ON FUNCTION ai.cohere_embed(text, text, text, text, text, text, bool) IS 'The vector of a text from a Cohere model (pgai''s name); the key comes from the server''s environment';

CREATE FUNCTION ai.litellm_embed
( model text
, input_text text
, api_key text DEFAULT NULL
, api_key_name text DEFAULT NULL
, extra_options jsonb DEFAULT NULL
, verbose bool DEFAULT false
) RETURNS vector LANGUAGE plpgsql IMMUTABLE PARALLEL RESTRICTED
SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    PERFORM ai._refuse_api_key('litellm_embed', api_key, 'the provider''s key variable');
    PERFORM ai._require_known_model('litellm_embed', model, 'embedding_litellm');
    RETURN ai.embed(ai.embedding_litellm(model, NULL, api_key_name, extra_options), input_text);
END $$;
COMMENT ON FUNCTION ai.litellm_embed(text, text, text, text, jsonb, bool) IS 'The vector of a text through LiteLLM''s provider/model names (pgai''s name); the key comes from the server''s environment';
