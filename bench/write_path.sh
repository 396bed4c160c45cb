#!/usr/bin/env bash
# Write-path cost of the vectorizer's queue triggers: pgbench throughput of single-row
# statements on a table with a vectorizer, as a ratio of the same statements on an identical
# table without one. Plain and trigger runs alternate, and each case keeps the median of
# BENCH_ROUNDS runs, so drift in the machine does not favour one side.
#
#   bench/write_path.sh            # about 5 minutes with the defaults
#   BENCH_SECONDS=5 BENCH_ROUNDS=1 bench/write_path.sh    # a quick look
#   BENCH_MODE=prepared bench/write_path.sh              # statements planned once
#
# Drops and recreates the database $BENCH_DB. Needs a superuser connection (PGHOST/PGPORT),
# and the extensions ai, vector and plpython3u installed on the server.
set -euo pipefail

export PGHOST=${PGHOST:-/var/run/postgresql} PGPORT=${PGPORT:-5488}
export PGOPTIONS="${PGOPTIONS:-} -c client_min_messages=warning"
DB=${BENCH_DB:-pgv_bench}
RUN_SECONDS=${BENCH_SECONDS:-15}   # per pgbench run
ROUNDS=${BENCH_ROUNDS:-3}
ROWS=${BENCH_ROWS:-20000}          # rows in each table before every run
MODE=${BENCH_MODE:-simple}         # pgbench -M: simple (its default) or prepared (plan once)
CLIENTS=2
PGBENCH=${PGBENCH:-$(command -v /usr/lib/postgresql/15/bin/pgbench pgbench | head -n1 || true)}
OUT=$(cd "$(dirname "$0")" && pwd)/out/write_path
PSQL=(psql -X -q -At -v ON_ERROR_STOP=1)

die() { echo "write_path: $*" >&2; exit 1; }
[ -x "$PGBENCH" ] || die "pgbench not found; set PGBENCH"
"${PSQL[@]}" -d postgres -c 'SELECT 1' >/dev/null || die "cannot connect (PGHOST=$PGHOST PGPORT=$PGPORT)"
mkdir -p "$OUT"
rm -f "$OUT"/*

# --- the database: two identical blog tables, one with a vectorizer -------------------------
"${PSQL[@]}" -d postgres -c "DROP DATABASE IF EXISTS $DB" -c "CREATE DATABASE $DB"
# No WAL flush at commit, so the trigger's own work is what shows, not the disk.
"${PSQL[@]}" -d postgres -c "ALTER DATABASE $DB SET synchronous_commit = off"
for t in blog_plain blog_vec; do
    "${PSQL[@]}" -d "$DB" <<SQL
CREATE TABLE $t (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    title        text NOT NULL,
    body         text NOT NULL,
    author       text NOT NULL,
    published_at timestamptz NOT NULL DEFAULT now()
);
-- The same 1 KB body as the benchmark's statements: 32 copies of an md5.
INSERT INTO $t (title, body, author)
SELECT 'Post ' || i, repeat(md5(i::text), 32), 'author ' || i % 100
  FROM generate_series(1, $ROWS) AS i;
SQL
done
"${PSQL[@]}" -d "$DB" <<'SQL' >/dev/null
CREATE EXTENSION ai CASCADE;
SELECT ai.create_vectorizer('blog_vec'::regclass,
    loading => ai.loading_column('body'),
    embedding => ai.embedding_openai('text-embedding-3-small', 1536),
    scheduling => ai.scheduling_none());
SQL
QUEUE=$("${PSQL[@]}" -d "$DB" -c "SELECT format('%I.%I', queue_schema, queue_table) FROM ai.vectorizer")

# --- the statements ----------------------------------------------------------------------------
# One file per statement and table; the text is built on the server from one random number,
# the same way for both tables.
for t in blog_plain blog_vec; do
    cat > "$OUT/insert.$t.sql" <<SQL
\set r random(1, 1000000000)
INSERT INTO $t (title, body, author) VALUES ('Post ' || :r::text, repeat(md5(:r::text), 32), 'author ' || (:r::int % 100)::text);
SQL
    cat > "$OUT/update_body.$t.sql" <<SQL
\set id random(1, $ROWS)
\set r random(1, 1000000000)
UPDATE $t SET body = repeat(md5(:r::text), 32) WHERE id = :id;
SQL
    cat > "$OUT/update_author.$t.sql" <<SQL
\set id random(1, $ROWS)
\set r random(1, 1000000000)
UPDATE $t SET author = 'author ' || :r::text WHERE id = :id;
SQL
done

# Every run starts from the same state: $ROWS rows, an empty queue, no dead rows, a fresh
# checkpoint. The reset skips triggers (replica role) so that it queues nothing.
reset() {
    local truncate=""
    if [ "$1" = blog_vec ]; then truncate="TRUNCATE $QUEUE;"; fi
    "${PSQL[@]}" -d "$DB" <<SQL
SET session_replication_role = replica;
DELETE FROM $1 WHERE id > $ROWS;
$truncate
VACUUM (ANALYZE) $1;
CHECKPOINT;
SQL
}

queued() { "${PSQL[@]}" -d "$DB" -c "SELECT count(*) FROM $QUEUE"; }

# Runs one case; appends "statement table round tps queued" to results.tsv.
run() {
    local stmt=$1 table=$2 round=$3 log tps txns q=- want
    reset "$table"
    log="$OUT/$stmt.$table.$round.log"
    "$PGBENCH" -n -M "$MODE" -c "$CLIENTS" -j "$CLIENTS" -T "$RUN_SECONDS" \
        -f "$OUT/$stmt.$table.sql" "$DB" > "$log" 2>&1 || { cat "$log" >&2; die "pgbench failed: $stmt on $table"; }
    tps=$(sed -n 's/^tps = \([0-9.]*\) (without initial connection time)$/\1/p' "$log")
    [ -n "$tps" ] || { cat "$log" >&2; die "no tps in $log"; }
    grep -q '^number of failed transactions: 0 ' "$log" || { cat "$log" >&2; die "failed transactions in $log"; }
    txns=$(sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p' "$log")
    # The trigger did its job: one queue row per INSERT or body UPDATE, none for author UPDATEs.
    if [ "$table" = blog_vec ]; then
        q=$(queued)
        if [ "$stmt" = update_author ]; then want=0; else want=$txns; fi
        [ "$q" -eq "$want" ] || die "$stmt round $round: $q rows queued, expected $want"
    fi
    printf '%s\t%s\t%s\t%s\t%s\n' "$stmt" "$table" "$round" "$tps" "$q" >> "$OUT/results.tsv"
    printf '  round %s  %-13s %-10s %9.0f tps  queued %s\n' "$round" "$stmt" "$table" "$tps" "$q"
}

"${PSQL[@]}" -d "$DB" -F ' ' -c "SELECT 'server: PostgreSQL', current_setting('server_version'),
    '| vector', (SELECT extversion FROM pg_extension WHERE extname = 'vector'),
    '| ai', (SELECT extversion FROM pg_extension WHERE extname = 'ai'),
    '| shared_buffers', current_setting('shared_buffers'), '| synchronous_commit', current_setting('synchronous_commit')"
echo "client: $(nproc) cores, $("$PGBENCH" --version)"
echo "write_path: $ROUNDS rounds x 3 statements x 2 tables, ${RUN_SECONDS}s each, -c $CLIENTS -j $CLIENTS -M $MODE"
for round in $(seq 1 "$ROUNDS"); do
    for stmt in insert update_body update_author; do
        # Alternate which table goes first, so neither always runs on a warmer machine.
        if [ $((round % 2)) -eq 1 ]; then order="blog_plain blog_vec"; else order="blog_vec blog_plain"; fi
        for table in $order; do run "$stmt" "$table" "$round"; done
    done
done

median() { sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
echo
printf '%-22s %12s %12s %7s\n' statement "tps plain" "tps trigger" ratio
for stmt in insert update_body update_author; do
    plain=$(awk -F'\t' -v s="$stmt" '$1 == s && $2 == "blog_plain" { print $4 }' "$OUT/results.tsv" | median)
    vec=$(awk -F'\t' -v s="$stmt" '$1 == s && $2 == "blog_vec" { print $4 }' "$OUT/results.tsv" | median)
    case $stmt in
        insert) label="INSERT" ;; update_body) label="UPDATE body (read)" ;; update_author) label="UPDATE author (unread)" ;;
    esac
    awk -v l="$label" -v p="$plain" -v v="$vec" 'BEGIN { printf "%-22s %12.0f %12.0f %7.2f\n", l, p, v, v / p }'
done
