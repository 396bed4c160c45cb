-- Bad input is refused at creation with an error naming the problem, and nothing is left.
\set VERBOSITY terse
CREATE TABLE docs (id int PRIMARY KEY, body text, n int, embedding text);
CREATE TABLE nokey (id int, body text);
-- The view would repeat a column named like one of the store's.
SELECT ai.create_vectorizer('docs', loading => ai.loading_column('body'), embedding => ai.embedding_openai('text-embedding-3-small'));
ALTER TABLE docs DROP COLUMN embedding;
CREATE VIEW docs_view AS SELECT * FROM docs;
CREATE TEMP TABLE before AS
SELECT (SELECT count(*) FROM pg_class) AS rels, (SELECT count(*) FROM pg_proc) AS procs,
       (SELECT count(*) FROM pg_trigger) AS trgs, (SELECT count(*) FROM ai.vectorizer) AS vectorizers;
SELECT ai.create_vectorizer('nokey', loading => ai.loading_column('body'), embedding => ai.embedding_openai('text-embedding-3-small'));
SELECT ai.create_vectorizer('docs_view', loading => ai.loading_column('body'), embedding => ai.embedding_openai('text-embedding-3-small'));
SELECT ai.create_vectorizer('no_such_table', loading => ai.loading_column('body'), embedding => ai.embedding_openai('text-embedding-3-small'));
SELECT ai.create_vectorizer('docs', loading => ai.loading_column('bodyy'), embedding => ai.embedding_openai('text-embedding-3-small'));
SELECT ai.create_vectorizer('docs', loading => ai.loading_column('n'), embedding => ai.embedding_openai('text-embedding-3-small'));
SELECT ai.create_vectorizer('docs', loading => ai.loading_column('body'), embedding => ai.embedding_openai('my-own-model'));
SELECT ai.create_vectorizer('docs', loading => ai.loading_column('body'), embedding => '{"config_type": "embedding", "implementation": "openai", "model": "m"}');
SELECT ai.create_vectorizer('docs', loading => ai.loading_column('body'), embedding => '{"config_type": "embedding", "implementation": "cohere_direct", "dimensions": 3}');
SELECT ai.create_vectorizer('docs', loading => ai.loading_column('body'));
SELECT ai.create_vectorizer('docs', embedding => ai.embedding_openai('text-embedding-3-small'));
SELECT ai.create_vectorizer('docs', loading => ai.chunking_none(), embedding => ai.embedding_openai('text-embedding-3-small'));
SELECT ai.create_vectorizer('docs', loading => ai.loading_column('body'), embedding => ai.embedding_openai('text-embedding-3-small'),
    formatting => '{"config_type": "formatting", "implementation": "python_template", "template": "no chunk"}');
SELECT ai.create_vectorizer('docs', loading => ai.loading_column('body'), embedding => ai.embedding_openai('text-embedding-3-small'),
    formatting => ai.formatting_python_template('$missing: $chunk'));
SELECT ai.create_vectorizer('docs', loading => ai.loading_column('body'), embedding => ai.embedding_openai('text-embedding-3-small'),
    row_filter => 'n > 0 AND no_such_column');
SELECT ai.create_vectorizer('docs', loading => ai.loading_column('body'), embedding => ai.embedding_openai('text-embedding-3-small'),
    row_filter => 'n + 1');
SELECT ai.create_vectorizer('docs', loading => ai.loading_column('body'), embedding => ai.embedding_openai('text-embedding-3-small'),
    row_filter => 'n > (SELECT 1)');
SELECT ai.create_vectorizer('docs', loading => ai.loading_column('body'), embedding => ai.embedding_openai('text-embedding-3-small'),
    row_filter => 'n > 0; DROP TABLE docs');
SELECT ai.create_vectorizer('docs', loading => ai.loading_column('body'), embedding => ai.embedding_openai('text-embedding-3-large'),
    destination => ai.destination_table('d'));
SELECT ai.create_vectorizer('docs', loading => ai.loading_column('body'), embedding => ai.embedding_openai('text-embedding-3-small'),
    destination => ai.destination_column('body'));
SELECT ai.create_vectorizer('docs', loading => ai.loading_column('body'), embedding => ai.embedding_openai('text-embedding-3-small'),
    destination => ai.destination_table(repeat('x', 60)));
SELECT ai.create_vectorizer('docs', loading => ai.loading_column('body'), embedding => ai.embedding_openai('text-embedding-3-small'),
    grant_to => ai.grant_to('no_such_role_for_ai'), queue_schema => 'no_such_schema');
SELECT ai.create_vectorizer('docs', loading => ai.loading_column('body'), embedding => ai.embedding_openai('text-embedding-3-small'),
    queue_schema => 'no_such_schema');
SELECT ai.create_vectorizer('docs', loading => ai.loading_column('body'), embedding => ai.embedding_openai('text-embedding-3-small'),
    scheduling => ai.scheduling_pg_cron());
-- An existing relation in the way, and a duplicate name.
CREATE TABLE docs_embedding_store (x int);
SELECT ai.create_vectorizer('docs', loading => ai.loading_column('body'), embedding => ai.embedding_openai('text-embedding-3-small'));
DROP TABLE docs_embedding_store;
SELECT ai.create_vectorizer('docs', name => 'dup', loading => ai.loading_column('body'), embedding => ai.embedding_openai('text-embedding-3-small')) > 0 AS created;
SELECT ai.create_vectorizer('docs', name => 'dup', destination => ai.destination_table('other'),
    loading => ai.loading_column('body'), embedding => ai.embedding_openai('text-embedding-3-small'));
SELECT ai.drop_vectorizer('dup', drop_all => true);
-- A row filter must be one complete expression: no parenthesis closed that it did not open,
-- no trailing comment (which once swallowed the check's own closing parenthesis).
SELECT ai.create_vectorizer('docs', loading => ai.loading_column('body'),
    embedding => ai.embedding_openai('text-embedding-3-small'), row_filter => 'true) --');
SELECT ai.create_vectorizer('docs', loading => ai.loading_column('body'),
    embedding => ai.embedding_openai('text-embedding-3-small'), row_filter => 'id > 1) OR (id < 0');
SELECT ai.create_vectorizer('docs', loading => ai.loading_column('body'),
    embedding => ai.embedding_openai('text-embedding-3-small'), row_filter => 'id > 1 -- big ones');
-- A regex separator that Python's re does not compile; a temporary source.
SELECT ai.create_vectorizer('docs', loading => ai.loading_column('body'),
    embedding => ai.embedding_openai('text-embedding-3-small'),
    chunking => ai.chunking_recursive_character_text_splitter(separators => ARRAY['\n', '(unclosed'], is_separator_regex => true));
CREATE TEMP TABLE scratch (id int PRIMARY KEY, body text);
SELECT ai.create_vectorizer('scratch', loading => ai.loading_column('body'),
    embedding => ai.embedding_openai('text-embedding-3-small'));
DROP TABLE scratch;
-- Nothing half-made is left by any of the failures above.
SELECT (SELECT count(*) FROM pg_class) - rels AS rels, (SELECT count(*) FROM pg_proc) - procs AS procs,
       (SELECT count(*) FROM pg_trigger) - trgs AS trgs, (SELECT count(*) FROM ai.vectorizer) - vectorizers AS vectorizers
  FROM before;
DROP VIEW docs_view;
DROP TABLE docs, nokey;
