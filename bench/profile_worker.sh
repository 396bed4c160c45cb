#!/usr/bin/env bash
# Where a drain's CPU goes (issue 16): one `pgvectorizer worker --once -c 2` over BENCH_ROWS rows of
# generated prose (768 dimensions, default chunking, the fake OpenAI server at 0 ms), as
# worker_vs_pgai.sh runs ours, with the CPU seconds of the worker, of its PostgreSQL backends
# and of the fake server, and the time each of the vectorizer's SQL functions took
# (track_functions), then, unless BENCH_SPY=0, the same drain under py-spy (--gil: the samples
# where the worker's Python holds the GIL) with the functions that hold it most.
#
#   bench/profile_worker.sh                    # 20,000 rows: about a minute
#   BENCH_ROWS=5000 BENCH_SPY=0 bench/profile_worker.sh
#
# Needs py-spy for the second part (pip install py-spy). Drops and recreates $BENCH_DB
# (bench_profile); sets track_functions = 'all' for that database only.
set -euo pipefail

OUT=$(cd "$(dirname "$0")" && pwd)/out/profile_worker
# shellcheck source=bench/lib.sh
. "$(dirname "$0")/lib.sh"
ROWS=${BENCH_ROWS:-20000}
SPY=${BENCH_SPY:-1}
DB=${BENCH_DB:-bench_profile}

bench_begin
export OPENAI_API_KEY=fake
CSV=$(docs_csv "$ROWS")
fresh_db "$DB" "$CSV" "CREATE EXTENSION ai CASCADE"
"${PSQL[@]}" -d "$DB" -c "ALTER DATABASE $DB SET track_functions = 'all'" >/dev/null
start_fake 0 768

# A fresh vectorizer, every row queued: prints its id.
fresh_vectorizer() {
    "${PSQL[@]}" -d "$DB" <<SQL
SELECT ai.drop_vectorizer(id, drop_all => true) FROM ai.vectorizer;
SELECT ai.create_vectorizer('doc'::regclass,
    loading    => ai.loading_column('body'),
    embedding  => ai.embedding_openai('text-embedding-3-small', 768, base_url => 'http://127.0.0.1:$FAKE_PORT/v1'),
    scheduling => ai.scheduling_none(), indexing => ai.indexing_none());
CHECKPOINT;
SQL
}

id=$(fresh_vectorizer | tail -n 1)
"${PSQL[@]}" -d "$DB" -c "SELECT pg_stat_reset()" >/dev/null
fk0=$(cpu_self "$FAKE_PID")
sample_backends "$DB" > "$OUT/backends" &
sampler=$!
/usr/bin/time -f '%e %U %S %M' -o "$OUT/time" \
    "$PGVECTORIZER" worker -d "$(db_url "$DB")" -i "$id" --once -c 2 > "$OUT/worker.log" 2>&1
kill "$sampler"; wait "$sampler" 2>/dev/null || true
fk1=$(cpu_self "$FAKE_PID")
read -r wall user sys rss < "$OUT/time"
chunks=$("${PSQL[@]}" -d "$DB" -c "SELECT count(*) FROM doc_embedding_store")
echo "profile_worker: $ROWS rows, $chunks chunks, -c 2, fake server 0 ms; load average $(cut -d' ' -f1-3 /proc/loadavg)"
awk -v w="$wall" -v u="$user" -v s="$sys" -v b="$(backend_cpu "$OUT/backends")" -v f="$(awk "BEGIN { print $fk1 - $fk0 }")" \
    -v r="$ROWS" -v c="$chunks" -v m="$rss" 'BEGIN {
    printf "wall %.2f s (%.0f rows/s); CPU s: worker %.2f (user %.2f, system %.2f; %.3f ms a chunk), backends %.2f, fake server %.2f; peak RSS %.0f MiB\n",
        w, r / w, u + s, u, s, 1000 * (u + s) / c, b, f, m / 1024 }'
sleep 1  # the statistics collector's last report
echo "the vectorizer's SQL functions (calls, total ms, ms a call; self excludes the functions it calls):"
"${PSQL[@]}" -d "$DB" -F $'\t' -c "SELECT funcname, calls, round(total_time::numeric), round(self_time::numeric),
        round((total_time / calls)::numeric, 3) FROM pg_stat_user_functions
  WHERE schemaname = 'ai' AND calls > 0 AND funcname LIKE ANY (ARRAY['\\_vq%', '\\_vectorizer\\_op%', '\\_vectorizer\\_record%', '\\_vectorizer\\_backfill%'])
  ORDER BY total_time DESC" | awk -F'\t' '{ printf "  %-28s %6d calls  total %6d ms  self %6d ms  %8.3f ms/call\n", $1, $2, $3, $4, $5 }'

if [ "$SPY" = 1 ]; then
    command -v py-spy >/dev/null || die "py-spy not found (pip install py-spy), or BENCH_SPY=0"
    id=$(fresh_vectorizer | tail -n 1)
    py-spy record -r 97 --gil --nonblocking -f raw -o "$OUT/spy.txt" -- \
        "$PGVECTORIZER" worker -d "$(db_url "$DB")" -i "$id" --once -c 2 > "$OUT/worker-spy.log" 2>&1
    echo "py-spy --gil: the worker's functions by share of the samples holding the GIL (self, then with callees):"
    python3 - "$OUT/spy.txt" <<'PY'
import collections, sys
own, total, n = collections.Counter(), collections.Counter(), 0
for line in open(sys.argv[1]):
    stack, count = line.rsplit(" ", 1)
    frames = [f.split(" (")[0] + " (" + f.split(" (")[-1].split(":")[0].split("/")[-1] + ")" for f in stack.split(";")]
    n += int(count)
    own[frames[-1]] += int(count)
    for f in set(frames):
        total[f] += int(count)
print(f"  {n} samples")
for f, c in own.most_common(15):
    print(f"  self {100 * c / n:5.1f}%  {f}")
for f, c in total.most_common(40):
    if "pgvectorizer" in f or any(k in f for k in ("embed", "copy", "decode", "loads", "run_batch")):
        print(f"  with callees {100 * c / n:5.1f}%  {f}")
PY
fi
