-- loading_uri and a bytea loading_column: the config they make, and what they refuse.
\set VERBOSITY terse
SELECT ai.loading_uri('uri');
SELECT ai.loading_uri('uri', retries => 2, aws_role_arn => 'arn:aws:iam::123456789012:role/reader');
SELECT ai.loading_uri(NULL);
SELECT ai.loading_uri('');
SELECT ai.loading_uri('uri', retries => -1);
SELECT ai.loading_uri('uri', aws_role_arn => 'reader');
SELECT ai.loading_column('doc');
CREATE TABLE ld_docs (id int PRIMARY KEY, uri text, doc bytea, n int);
CREATE DOMAIN ld_blob AS bytea;
CREATE TABLE ld_blobs (id int PRIMARY KEY, doc ld_blob);
-- loading_uri needs text; loading_column takes text or bytea (or a domain over bytea).
SELECT ai.create_vectorizer('ld_docs', loading => ai.loading_uri('doc'), embedding => ai.embedding_openai('text-embedding-3-small'));
SELECT ai.create_vectorizer('ld_docs', loading => ai.loading_uri('n'), embedding => ai.embedding_openai('text-embedding-3-small'));
SELECT ai.create_vectorizer('ld_docs', loading => ai.loading_column('n'), embedding => ai.embedding_openai('text-embedding-3-small'));
SELECT ai.create_vectorizer('ld_docs', loading => '{"config_type": "loading", "implementation": "ftp", "column_name": "uri"}',
    embedding => ai.embedding_openai('text-embedding-3-small'));
SELECT ai.create_vectorizer('ld_docs', name => 'ld_uri', loading => ai.loading_uri('uri'),
    embedding => ai.embedding_openai('text-embedding-3-small'), destination => ai.destination_table('ld_uri_store')) > 0 AS created;
SELECT ai.create_vectorizer('ld_docs', name => 'ld_bytea', loading => ai.loading_column('doc'),
    embedding => ai.embedding_openai('text-embedding-3-small'), destination => ai.destination_table('ld_bytea_store')) > 0 AS created;
SELECT ai.create_vectorizer('ld_blobs', name => 'ld_domain', loading => ai.loading_column('doc'),
    embedding => ai.embedding_openai('text-embedding-3-small'), destination => ai.destination_table('ld_domain_store')) > 0 AS created;
SELECT name, config->'loading' FROM ai.vectorizer WHERE name LIKE 'ld\_%' ORDER BY name;
SELECT ai.drop_vectorizer(id, drop_all => true) FROM ai.vectorizer WHERE name LIKE 'ld\_%' ORDER BY id;
DROP TABLE ld_docs, ld_blobs;
DROP DOMAIN ld_blob;
