#!/usr/bin/env bash
# Worker memory as the table grows: peak RSS of `pgvectorizer worker --once -c 2` draining a
# queue of BENCH_SMALL rows and one of BENCH_LARGE rows (10x), against a fake OpenAI-compatible
# server on loopback (0 ms), and their ratio. A worker that streams its queue stays flat; one
# that holds keys, rows or vectors for the whole queue grows with it.
#
#   bench/worker_memory.sh                          # 20,000 and 200,000 rows
#   BENCH_SMALL=2000 BENCH_LARGE=20000 bench/worker_memory.sh   # a quick look
#
# Drops and recreates the database $BENCH_DB (bench_memory).
set -euo pipefail

OUT=$(cd "$(dirname "$0")" && pwd)/out/worker_memory
# shellcheck source=bench/lib.sh
. "$(dirname "$0")/lib.sh"
DB=${BENCH_DB:-bench_memory}
SMALL=${BENCH_SMALL:-20000}
LARGE=${BENCH_LARGE:-200000}
DIMS=${BENCH_DIMS:-768}
LIMIT=${BENCH_TIMEOUT:-480}   # s per worker run
CONCURRENCY=2

bench_begin
export OPENAI_API_KEY=fake

# One database, two tables: doc_small holds the first SMALL rows of the large one's documents.
CSV=$(docs_csv "$LARGE")
"${PSQL[@]}" -d postgres -c "DROP DATABASE IF EXISTS $DB" -c "CREATE DATABASE $DB"
"${PSQL[@]}" -d "$DB" -c "CREATE EXTENSION ai CASCADE" >/dev/null
"${PSQL[@]}" -d "$DB" <<SQL
CREATE TABLE doc_large (id int PRIMARY KEY, title text, body text);
\\copy doc_large FROM '$CSV' (FORMAT csv)
CREATE TABLE doc_small AS SELECT * FROM doc_large WHERE id <= $SMALL;
ALTER TABLE doc_small ADD PRIMARY KEY (id);
VACUUM (ANALYZE) doc_small, doc_large;
SQL
start_fake 0 "$DIMS"

vectorizer() {
    "${PSQL[@]}" -d "$DB" <<SQL
SELECT ai.create_vectorizer('$1'::regclass,
    loading    => ai.loading_column('body'),
    embedding  => ai.embedding_openai('text-embedding-3-small', $DIMS, base_url => 'http://127.0.0.1:$FAKE_PORT/v1'),
    scheduling => ai.scheduling_none(),
    indexing   => ai.indexing_none());
CHECKPOINT;
SQL
}

# Samples the resident set of the processes under $1 (time, then timeout, then the worker) every
# second while they run: "seconds kB", the sum over them. For the timeline; the peak is time's.
sample_rss() {
    local pids
    while kill -0 "$1" 2>/dev/null; do
        pids=$(descendants "$1" | sed 's|.*|/proc/&/status|')
        # shellcheck disable=SC2086
        [ -z "$pids" ] || awk -v t="$SECONDS" '/^VmRSS/ { s += $2 } END { if (s) print t "\t" s }' $pids 2>/dev/null || true
        sleep 1
    done
}

echo "load average: $(cut -d' ' -f1-3 /proc/loadavg) (other work on these cores skews rates)"
echo "client: $(nproc) cores, $(python3 --version), $("$PGVECTORIZER" --version 2>/dev/null || echo pgvectorizer)"
echo "worker_memory: $SMALL and $LARGE rows, -c $CONCURRENCY, $DIMS dimensions, fake server 0 ms, limit ${LIMIT}s per run"
for t in small large; do
    id=$(vectorizer "doc_$t")
    rows=$("${PSQL[@]}" -d "$DB" -c "SELECT ai.vectorizer_queue_pending($id, true)")
    rc=0
    SECONDS=0
    # time(1) outside timeout(1): it reports the worker's peak even when the limit kills it.
    /usr/bin/time -v -o "$OUT/$t.time" timeout -k 10 "$LIMIT" \
        "$PGVECTORIZER" worker -d "$(db_url "$DB")" -i "$id" --once -c "$CONCURRENCY" > "$OUT/$t.log" 2>&1 &
    tpid=$!
    sample_rss "$tpid" > "$OUT/$t.rss" &
    spid=$!
    wait "$tpid" || rc=$?
    wait "$spid" || true
    wall=$(sed -n 's/^\tElapsed (wall clock) time (h:mm:ss or m:ss): //p' "$OUT/$t.time")
    rss=$(sed -n 's/^\tMaximum resident set size (kbytes): //p' "$OUT/$t.time")
    cpu=$(awk -F': ' '/User time|System time/ { s += $2 } END { print s }' "$OUT/$t.time")
    pending=$("${PSQL[@]}" -d "$DB" -c "SELECT ai.vectorizer_queue_pending($id, true)")
    chunks=$("${PSQL[@]}" -d "$DB" -c "SELECT count(*) FROM doc_${t}_embedding_store")
    errors=$("${PSQL[@]}" -d "$DB" -c "SELECT count(*) FROM ai._vectorizer_errors WHERE id = $id")
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$t" "$rows" "$wall" "$cpu" "$rss" "$rc" "$pending" "$chunks" "$errors" >> "$OUT/results.tsv"
    printf '  %-5s %7d rows  %8s wall  %7.1f s CPU  %7d chunks  peak RSS %6.1f MiB  pending %s  errors %s  rc %s\n' \
        "$t" "$rows" "$wall" "$cpu" "$chunks" "$(awk -v k="$rss" 'BEGIN { print k / 1024 }')" "$pending" "$errors" "$rc"
    if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then echo "    TIMEOUT: killed after ${LIMIT}s (log: $OUT/$t.log)"; fi
    if [ "$rc" -ne 0 ] || [ "$pending" -ne 0 ]; then echo "    FAILED: see $OUT/$t.log:"; tail -n 5 "$OUT/$t.log" | sed 's/^/      /'; fi
done

echo
printf '%-8s %9s %9s %10s %14s %14s\n' table rows chunks "rows/s" "peak RSS MiB" "RSS at 1/2 MiB"
awk -F'\t' -v out="$OUT" '{
    split($3, hms, ":"); s = 0; for (i = 1; i in hms; i++) s = s * 60 + hms[i]
    # The sampled RSS halfway through the run, to tell a plateau from a climb.
    half = "-"; n = 0
    while ((getline line < (out "/" $1 ".rss")) > 0) { split(line, f, "\t"); r[++n] = f[2] }
    close(out "/" $1 ".rss")
    if (n > 0) half = sprintf("%.1f", r[int((n + 1) / 2)] / 1024)
    printf "%-8s %9d %9d %10.0f %14.1f %14s\n", $1, $2, $8, $2 / s, $5 / 1024, half
    peak[NR] = $5; bad += ($6 != 0 || $7 != 0)
} END {
    printf "\npeak RSS ratio large/small: %.2f (target < 1.2)\n", peak[2] / peak[1]
    getline load < "/proc/loadavg"; split(load, l, " ")
    printf "load average at the end: %s %s %s\n", l[1], l[2], l[3]
    if (bad) { print "some runs failed or left rows queued: see the logs in " out; exit 1 }
}' "$OUT/results.tsv"
