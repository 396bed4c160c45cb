-- A partitioned source: row triggers reach every partition, and a row that moves between
-- partitions is queued under its old and its new key.
\set VERBOSITY terse
CREATE TABLE ev (id int, region text, body text, ok bool, PRIMARY KEY (id, region)) PARTITION BY LIST (region);
CREATE TABLE ev_eu PARTITION OF ev FOR VALUES IN ('eu');
CREATE TABLE ev_us PARTITION OF ev FOR VALUES IN ('us');
INSERT INTO ev VALUES (1, 'eu', 'a', true), (2, 'us', 'b', false);
SELECT ai.create_vectorizer('ev', loading => ai.loading_column('body'),
    embedding => ai.embedding_sentence_transformers(), row_filter => 'ok') AS vid \gset
SELECT queue_table AS q FROM ai.vectorizer WHERE id = :vid \gset
SELECT id, region FROM ai.:q;
TRUNCATE ai.:q;
-- Written straight into a partition.
INSERT INTO ev_us VALUES (3, 'us', 'into a partition', true);
UPDATE ev_us SET body = 'not matching' WHERE id = 2;
SELECT id, region FROM ai.:q ORDER BY id, region;
TRUNCATE ai.:q;
-- Moved to another partition.
UPDATE ev SET region = 'us' WHERE id = 1;
SELECT id, region FROM ai.:q ORDER BY id, region;
TRUNCATE ev;
SELECT count(*) AS after_truncate FROM ai.:q;
SELECT ai.drop_vectorizer(:vid, drop_all => true);
DROP TABLE ev;
