-- Triggers queue exactly the keys whose embeddings may be stale.
\set VERBOSITY terse
CREATE TABLE posts (id int PRIMARY KEY, title text, body text, meta json, views int DEFAULT 0);
SELECT ai.create_vectorizer('posts', loading => ai.loading_column('body'),
    embedding => ai.embedding_openai('text-embedding-3-small'),
    formatting => ai.formatting_python_template('$title ($meta): $chunk')) AS vid \gset
SELECT queue_table AS q, queue_failed_table AS qf FROM ai.vectorizer WHERE id = :vid \gset
-- INSERT queues the new key.
INSERT INTO posts (id, title, body, meta) VALUES (1, 'a', 'x', '{"k": 1}'), (2, 'b', 'y', '{"k": 2}');
SELECT array_agg(id ORDER BY id) AS queued FROM ai.:q;
TRUNCATE ai.:q;
-- A column the vectorizer does not read: nothing.
UPDATE posts SET views = views + 1;
SELECT count(*) AS after_views FROM ai.:q;
-- Same value written again: nothing.
UPDATE posts SET body = body, title = title;
SELECT count(*) AS after_noop FROM ai.:q;
-- The loading column, a template column, a json template column (compared as text).
UPDATE posts SET body = 'x2' WHERE id = 1;
UPDATE posts SET title = 'b2' WHERE id = 2;
UPDATE posts SET meta = '{"k": 3}' WHERE id = 1;
SELECT array_agg(id ORDER BY id) AS queued FROM ai.:q;
TRUNCATE ai.:q;
-- A new primary key: the old key (to drop its chunks) and the new one.
UPDATE posts SET id = 10 WHERE id = 1;
SELECT array_agg(id ORDER BY id) AS queued FROM ai.:q;
TRUNCATE ai.:q;
-- DELETE queues the old key.
DELETE FROM posts WHERE id = 2;
SELECT array_agg(id ORDER BY id) AS queued FROM ai.:q;
-- INSERT ... ON CONFLICT DO UPDATE queues once through the update.
TRUNCATE ai.:q;
INSERT INTO posts (id, title, body) VALUES (10, 'a', 'x3') ON CONFLICT (id) DO UPDATE SET body = excluded.body;
SELECT array_agg(id ORDER BY id) AS queued FROM ai.:q;
-- A user's BEFORE trigger that rewrites the loading column is seen: ours fire AFTER.
CREATE FUNCTION posts_stamp() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN NEW.body := NEW.body || ' (edited)'; RETURN NEW; END $$;
CREATE TRIGGER a_stamp BEFORE UPDATE ON posts FOR EACH ROW WHEN (NEW.views > 100) EXECUTE FUNCTION posts_stamp();
TRUNCATE ai.:q;
UPDATE posts SET views = 1000 WHERE id = 10;
SELECT array_agg(id ORDER BY id) AS queued, (SELECT body FROM posts WHERE id = 10) AS body FROM ai.:q;
-- A writer's hostile search_path changes nothing: the trigger function has no SET clause (it
-- costs every write), so it must not depend on name resolution at run time.
CREATE SCHEMA evil;
CREATE FUNCTION evil.texteq(text, text) RETURNS bool LANGUAGE plpgsql AS $$
BEGIN RAISE EXCEPTION 'hijacked text =' USING ERRCODE = 'P0001'; END $$;
CREATE OPERATOR evil.= (LEFTARG = text, RIGHTARG = text, FUNCTION = evil.texteq);
CREATE FUNCTION evil.int4gt(int4, int4) RETURNS bool LANGUAGE plpgsql AS $$
BEGIN RAISE EXCEPTION 'hijacked int >' USING ERRCODE = 'P0001'; END $$;
CREATE OPERATOR evil.> (LEFTARG = int4, RIGHTARG = int4, FUNCTION = evil.int4gt);
SELECT proconfig FROM pg_proc WHERE oid = ('ai._vectorizer_src_trg_' || :vid)::regproc;
TRUNCATE ai.:q;
SET search_path = evil, pg_catalog, public;
INSERT INTO posts (id, title, body) VALUES (20, 'e', 'evil');
UPDATE posts SET body = 'evil2' WHERE id = 20;
UPDATE posts SET id = 21 WHERE id = 20;
DELETE FROM posts WHERE id = 21;
RESET search_path;
SELECT array_agg(id ORDER BY id) AS queued FROM ai.:q;
DROP SCHEMA evil CASCADE;
-- A rolled-back write leaves no queue row.
TRUNCATE ai.:q;
BEGIN; UPDATE posts SET body = 'gone' WHERE id = 10; ROLLBACK;
SELECT count(*) AS after_rollback FROM ai.:q;
-- TRUNCATE of the source empties the queue, failed items and the store.
INSERT INTO ai.:qf (id, error) VALUES (10, 'boom');
INSERT INTO posts_embedding_store (id, chunk_seq, chunk, embedding)
    SELECT 10, 0, 'x3', array_fill(0.5, ARRAY[1536])::vector;
TRUNCATE posts;
SELECT (SELECT count(*) FROM ai.:q) AS queue, (SELECT count(*) FROM ai.:qf) AS failed,
       (SELECT count(*) FROM posts_embedding_store) AS store;
SELECT ai.drop_vectorizer(:vid, drop_all => true);
DROP TABLE posts;
DROP FUNCTION posts_stamp();
