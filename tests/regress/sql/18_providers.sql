-- Voyage AI and LiteLLM config helpers: pgai's arguments, our defaults, and their refusals.
\set VERBOSITY terse
SELECT ai.embedding_voyageai('voyage-3.5-lite');
SELECT ai.embedding_voyageai('voyage-3-lite');
SELECT ai.embedding_voyageai('voyage-3-large', 1024, 'query', 'MY_VOYAGE_API_KEY');
SELECT ai.embedding_voyageai('voyage-3.5', output_dimension => 256, output_dtype => 'int8');
SELECT ai.embedding_voyageai('voyage-3.5', 256, input_type => NULL, output_dtype => 'uint8', output_dimension => 256);
SELECT ai.embedding_voyageai('my-voyage-model');
SELECT ai.embedding_voyageai('voyage-3.5', input_type => 'passage');
SELECT ai.embedding_voyageai('voyage-3.5', api_key_name => 'pa-not a name');
SELECT ai.embedding_voyageai('voyage-3.5', output_dimension => 300);
SELECT ai.embedding_voyageai('voyage-3.5', 1024, output_dimension => 256);
\set VERBOSITY default
\set SHOW_CONTEXT never
SELECT ai.embedding_voyageai('voyage-3.5', output_dtype => 'binary');
\set VERBOSITY terse
SELECT ai.embedding_voyageai('voyage-3.5', output_dtype => 'float16');
SELECT ai.embedding_litellm('cohere/embed-english-v3.0', 1024);
SELECT ai.embedding_litellm('huggingface/microsoft/codebert-base', 768, api_key_name => 'HUGGINGFACE_API_KEY', extra_options => '{"wait_for_model": true}');
SELECT ai.embedding_litellm('azure/my-deployment', 1536, 'AZURE_API_KEY', '{"api_base": "https://x.openai.azure.com", "api_version": "2024-02-01"}');
SELECT ai.embedding_litellm('embed-english-v3.0', 1024);
SELECT ai.embedding_litellm('cohere/embed-english-v3.0');
SELECT ai.embedding_litellm('cohere/some-future-model');
SELECT ai.embedding_litellm('cohere/embed-english-v3.0', 1024, api_key_name => 'not a name');
SELECT ai.embedding_litellm('cohere/embed-english-v3.0', 1024, extra_options => '[]');
SELECT ai.embedding_litellm('cohere/embed-english-v3.0', 1024, extra_options => '{"api_key": "sk-secret"}');
-- Voyage and LiteLLM vectorizers are made with their models' sizes.
CREATE TABLE prov_doc (id int PRIMARY KEY, body text);
SELECT ai.create_vectorizer('prov_doc'::regclass, loading => ai.loading_column('body'),
    embedding => ai.embedding_voyageai('voyage-3-lite'), destination => ai.destination_table('prov_doc_voyage'),
    scheduling => ai.scheduling_none()) > 0 AS created;
SELECT format_type(atttypid, atttypmod) FROM pg_attribute
WHERE attrelid = 'prov_doc_voyage_store'::regclass AND attname = 'embedding';
SELECT ai.create_vectorizer('prov_doc'::regclass, loading => ai.loading_column('body'),
    embedding => ai.embedding_litellm('cohere/embed-english-v3.0', 1024), destination => ai.destination_table('prov_doc_litellm'),
    scheduling => ai.scheduling_none()) > 0 AS created;
SELECT format_type(atttypid, atttypmod) FROM pg_attribute
WHERE attrelid = 'prov_doc_litellm_store'::regclass AND attname = 'embedding';
SELECT ai.create_vectorizer('prov_doc'::regclass, loading => ai.loading_column('body'),
    embedding => ai.embedding_litellm('groq/some-embed', 768), destination => ai.destination_table('prov_doc_groq'),
    scheduling => ai.scheduling_none());
SELECT ai.drop_vectorizer(id, drop_all => true) FROM ai.vectorizer WHERE source_table = 'prov_doc';
DROP TABLE prov_doc;
