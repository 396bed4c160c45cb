-- pgai's names: ai.vectorizer_queue_pending by name, ai.grant_to_default, a grant_to role
-- that does not exist (warned about and skipped), and indexing_diskann.
CREATE TABLE names_doc (id int PRIMARY KEY, body text);
SELECT ai.create_vectorizer('names_doc', name => 'names_vec', loading => ai.loading_column('body'),
    embedding => ai.embedding_openai('text-embedding-3-small', 4), scheduling => ai.scheduling_none(),
    indexing => ai.indexing_none(), grant_to => ai.grant_to('no_such_role_for_names')) > 0 AS created;
SELECT config->'grant_to' AS grant_to FROM ai.vectorizer WHERE name = 'names_vec';
INSERT INTO names_doc VALUES (1, 'one'), (2, 'two');
UPDATE names_doc SET body = 'uno' WHERE id = 1;
SELECT ai.vectorizer_queue_pending('names_vec') AS quick, ai.vectorizer_queue_pending('names_vec', exact_count => true) AS exact;
SELECT ai.vectorizer_queue_pending('no_such_vec');
BEGIN;
SET LOCAL ai.grant_to_default = ' zeta , alpha';
SELECT ai.grant_to() AS defaults, ai.grant_to('beta', 'alpha') AS with_named;
ROLLBACK;
SELECT ai.grant_to() AS no_setting;
SELECT ai.drop_vectorizer('names_vec', drop_all => true);
DROP TABLE names_doc;
-- indexing_diskann: pgai's arguments, checked; the statement it builds; refused at creation
-- without pgvectorscale's vectorscale extension.
\set VERBOSITY terse
SELECT ai.indexing_diskann();
SELECT ai.indexing_diskann(min_rows => 10, storage_layout => 'plain', num_neighbors => 50, search_list_size => 100,
    max_alpha => 1.2, num_dimensions => 256, num_bits_per_dimension => 2, create_when_queue_empty => false);
SELECT ai.indexing_diskann(storage_layout => 'compact');
SELECT ai.indexing_diskann(min_rows => -1);
SELECT ai.indexing_diskann(num_neighbors => 0);
SELECT ai.indexing_diskann(max_alpha => 0.5);
SELECT ai.indexing_diskann(max_alpha => 'NaN');
SELECT ai.indexing_diskann(num_dimensions => -3);
SELECT ai.indexing_diskann(num_bits_per_dimension => 0);
CREATE TABLE disk_doc (id int PRIMARY KEY, body text);
SELECT ai._index_statement(ai.indexing_diskann(storage_layout => 'memory_optimized', num_neighbors => 50, max_alpha => 1.2),
    'disk_idx', 'disk_doc'::regclass, 'body');
SELECT ai._index_statement(ai.indexing_diskann(), 'disk_idx', 'disk_doc'::regclass, 'body');
SELECT ai.create_vectorizer('disk_doc', loading => ai.loading_column('body'),
    embedding => ai.embedding_openai('text-embedding-3-small', 4), scheduling => ai.scheduling_none(),
    indexing => ai.indexing_diskann());
SELECT count(*) AS vectorizers FROM ai.vectorizer;
DROP TABLE disk_doc;
-- pgai's one-call embedding functions refuse a key in SQL and what they would not forward.
SELECT ai.openai_embed('text-embedding-3-small', 'q', api_key => 'sk-1');
SELECT ai.voyageai_embed('voyage-3.5', 'q', api_key => 'pa-1');
SELECT ai.cohere_embed('embed-english-v3.0', 'q', api_key => 'co-1');
SELECT ai.litellm_embed('cohere/embed-english-v3.0', 'q', api_key => 'co-1');
SELECT ai.openai_embed('text-embedding-3-small', 'q', extra_headers => '{"a": "b"}');
SELECT ai.openai_embed('text-embedding-3-small', 'q', client_config => '{"timeout": 3}');
SELECT ai.ollama_embed('some-unknown-model', 'q');
SELECT ai._known_model_dimensions(m) FROM unnest(ARRAY['embed-english-v3.0', 'mistral-embed',
    'amazon.titan-embed-text-v2:0', 'text-embedding-005']) AS m;
-- scheduling_timescaledb: pgai's arguments; the cron schedule it becomes (in GMT here); without
-- pg_cron the worker runs the vectorizer.
SET TIME ZONE 'UTC';
SELECT ai.scheduling_timescaledb();
SELECT ai.scheduling_timescaledb(interval '10 minutes', initial_start => '2050-01-06 10:23+00', fixed_schedule => true, timezone => 'America/Chicago');
SELECT ai.scheduling_timescaledb(interval '0');
SELECT ai.scheduling_timescaledb(timezone => 'Mars/Olympus');
SELECT i, ai._cron_schedule(i::interval, '2050-01-06 10:23+00') AS schedule
  FROM unnest(ARRAY['30 seconds', '1 minute', '5m', '10 minutes', '7 minutes', '1 hour', '6 hours', '5 hours',
                    '1 day', '7 days', '2 days', '1.5 seconds']) AS i;
SELECT ai._cron_schedule('15 minutes', NULL) AS no_start;
CREATE TABLE tsdb_doc (id int PRIMARY KEY, body text);
SELECT ai.create_vectorizer('tsdb_doc', loading => ai.loading_column('body'),
    embedding => ai.embedding_openai('text-embedding-3-small', 4), indexing => ai.indexing_none(),
    scheduling => ai.scheduling_timescaledb('1 minute')) > 0 AS created;
SELECT config->'scheduling' AS scheduling FROM ai.vectorizer WHERE source_table = 'tsdb_doc';
SELECT ai.create_vectorizer('tsdb_doc', name => 'tsdb_odd', loading => ai.loading_column('body'),
    embedding => ai.embedding_openai('text-embedding-3-small', 4), scheduling => ai.scheduling_timescaledb('7 minutes'));
DROP TABLE tsdb_doc;
RESET TIME ZONE;
-- pgai's default names (<target_schema>_<target_table>; <schema>_<table>_<column>) and its rule
-- for names given: lower-case letters, digits and _, from a letter.
CREATE TABLE named_doc (id int PRIMARY KEY, body text);
SELECT ai.create_vectorizer('named_doc', loading => ai.loading_column('body'),
    embedding => ai.embedding_openai('text-embedding-3-small', 4), scheduling => ai.scheduling_none(),
    indexing => ai.indexing_none(), destination => ai.destination_table('named_chunks')) > 0 AS created;
SELECT ai.create_vectorizer('named_doc', loading => ai.loading_column('body'),
    embedding => ai.embedding_openai('text-embedding-3-small', 4), scheduling => ai.scheduling_none(),
    indexing => ai.indexing_none(), destination => ai.destination_column('emb')) > 0 AS created;
SELECT name FROM ai.vectorizer WHERE source_table = 'named_doc' ORDER BY id;
SELECT n AS name, ai._vectorizer_check_name(n) FROM unnest(ARRAY['ok_name_2']) AS n;
SELECT ai._vectorizer_check_name('1st');
SELECT ai._vectorizer_check_name('a-b');
SELECT ai._vectorizer_check_name('');
SELECT ai.create_vectorizer('named_doc', name => 'My Vectorizer', loading => ai.loading_column('body'),
    embedding => ai.embedding_openai('text-embedding-3-small', 4), scheduling => ai.scheduling_none());
SELECT ai.create_vectorizer('named_doc', name => repeat('x', 64), loading => ai.loading_column('body'),
    embedding => ai.embedding_openai('text-embedding-3-small', 4), scheduling => ai.scheduling_none());
SELECT count(*) AS vectorizers FROM ai.vectorizer WHERE source_table = 'named_doc';
DROP TABLE named_doc CASCADE;
