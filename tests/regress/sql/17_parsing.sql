-- Parsing helpers (pgai's names, no arguments) and create_vectorizer's checks of the parsing config.
\set VERBOSITY terse
SELECT ai.parsing_auto(), ai.parsing_none(), ai.parsing_pymupdf(), ai.parsing_docling();
SELECT p.proname, pg_get_function_arguments(p.oid) AS args, p.provolatile, p.proconfig
  FROM pg_proc p WHERE p.pronamespace = 'ai'::regnamespace AND p.proname LIKE 'parsing\_%' ORDER BY 1;
SELECT p.proname, obj_description(p.oid, 'pg_proc') IS NOT NULL AS commented
  FROM pg_proc p WHERE p.pronamespace = 'ai'::regnamespace AND p.proname LIKE 'parsing\_%' ORDER BY 1;
-- They take no arguments, as pgai's do.
SELECT ai.parsing_pymupdf('x');
CREATE TABLE parse_docs (id int PRIMARY KEY, body text, file bytea);
-- Refusals: not a parsing config, an unknown parser, a document parser on a text column.
SELECT ai.create_vectorizer('parse_docs', loading => ai.loading_column('file'),
    embedding => ai.embedding_openai('text-embedding-3-small'), parsing => ai.chunking_none());
SELECT ai.create_vectorizer('parse_docs', loading => ai.loading_column('file'),
    embedding => ai.embedding_openai('text-embedding-3-small'), parsing => '{"config_type": "parsing", "implementation": "ocr"}');
SELECT ai.create_vectorizer('parse_docs', loading => ai.loading_column('file'),
    embedding => ai.embedding_openai('text-embedding-3-small'), parsing => '{"config_type": "parsing"}');
SELECT ai.create_vectorizer('parse_docs', loading => ai.loading_column('body'),
    embedding => ai.embedding_openai('text-embedding-3-small'), parsing => ai.parsing_pymupdf());
SELECT ai.create_vectorizer('parse_docs', loading => ai.loading_column('body'),
    embedding => ai.embedding_openai('text-embedding-3-small'), parsing => ai.parsing_docling());
SELECT count(*) AS vectorizers FROM ai.vectorizer WHERE source_table = 'parse_docs';
-- Accepted: each parser on the bytea column, auto (the default) on the text column.
SELECT ai.create_vectorizer('parse_docs', name => 'parse_' || p, loading => ai.loading_column('file'),
           embedding => ai.embedding_openai('text-embedding-3-small'), destination => ai.destination_table('parse_' || p),
           parsing => CASE p WHEN 'auto' THEN ai.parsing_auto() WHEN 'none' THEN ai.parsing_none()
                             WHEN 'pymupdf' THEN ai.parsing_pymupdf() ELSE ai.parsing_docling() END) > 0 AS created
  FROM unnest(ARRAY['auto', 'none', 'pymupdf', 'docling']) AS p;
SELECT ai.create_vectorizer('parse_docs', name => 'parse_text', loading => ai.loading_column('body'),
           embedding => ai.embedding_openai('text-embedding-3-small'), destination => ai.destination_table('parse_text')) > 0 AS created;
SELECT name, config->'parsing' AS parsing FROM ai.vectorizer WHERE source_table = 'parse_docs' ORDER BY name;
SELECT ai.drop_vectorizer(name, drop_all => true) FROM ai.vectorizer WHERE source_table = 'parse_docs' ORDER BY name;
DROP TABLE parse_docs;
