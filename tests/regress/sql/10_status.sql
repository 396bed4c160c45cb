-- Status: exact pending keys, failed items, last success and error; schedule on/off.
\set VERBOSITY terse
CREATE TABLE s1 (id int PRIMARY KEY, t text);
INSERT INTO s1 SELECT i, 'row ' || i FROM generate_series(1, 5) AS i;
SELECT ai.create_vectorizer('s1', loading => ai.loading_column('t'), embedding => ai.embedding_sentence_transformers()) AS vid \gset
SELECT queue_table AS q, queue_failed_table AS qf FROM ai.vectorizer WHERE id = :vid \gset
-- Duplicates count once in the exact figure.
UPDATE s1 SET t = t || '!' WHERE id <= 2;
SELECT ai.vectorizer_queue_pending(:vid) AS quick, ai.vectorizer_queue_pending(:vid, exact_count => true) AS exact;
SELECT (SELECT count(*) FROM ai.:q) AS queue_rows;
INSERT INTO ai.:qf (id, attempts, failure_step, error) VALUES (3, 6, 'embedding', 'HTTP 400: input too long');
SELECT name, source_table, target_table, view, embedding_column, pending_items, failed_items,
       last_success_at IS NOT NULL AS ever_succeeded, last_error, disabled, scheduling
  FROM ai.vectorizer_status WHERE id = :vid;
-- What workers report.
SELECT ai._vectorizer_record_success(:vid, 4);
SELECT ai._vectorizer_record_error(:vid, 'OPENAI_API_KEY is not set', '{"step": "embedding"}');
SELECT ai._vectorizer_record_success(:vid, 1);
SELECT success_count, error_count, last_error_message FROM ai._vectorizer_worker_progress WHERE vectorizer_id = :vid;
SELECT last_success_at >= last_error_at AS success_after_error, last_error FROM ai.vectorizer_status WHERE id = :vid;
SELECT name, message, details FROM ai.vectorizer_errors WHERE id = :vid;
-- Large queues: the quick count stops early; the exact one does not.
INSERT INTO ai.:q (id) SELECT 1 FROM generate_series(1, 10100);
ANALYZE ai.:q;
SELECT ai.vectorizer_queue_pending(:vid) > 10000 AS quick_is_large, ai.vectorizer_queue_pending(:vid, true) AS exact;
-- Schedule on and off, by id and by name; triggers keep queueing meanwhile.
SELECT ai.disable_vectorizer_schedule(:vid);
SELECT disabled FROM ai.vectorizer_status WHERE id = :vid;
UPDATE s1 SET t = 'while disabled' WHERE id = 5;
SELECT count(*) AS queued_while_disabled FROM ai.:q WHERE id = 5;
SELECT ai.enable_vectorizer_schedule('public_s1_embedding_store');
SELECT disabled FROM ai.vectorizer_status WHERE id = :vid;
SELECT ai.disable_vectorizer_schedule('nope');
-- Errors and progress go with the vectorizer.
SELECT ai.drop_vectorizer(:vid, true);
SELECT count(*) AS errors, (SELECT count(*) FROM ai._vectorizer_worker_progress) AS progress FROM ai._vectorizer_errors;
DROP TABLE s1;
