#!/usr/bin/env bash
# This checkout's worker against the worker of an earlier commit (BENCH_REF), on the same
# database, extension and fake OpenAI server: rows per second to drain a queue of BENCH_ROWS
# rows (768 dimensions, default recursive chunking), `--once -c 2`, the two sides alternating
# BENCH_ROUNDS times, the first side swapping each round; medians and their ratio.
#
#   BENCH_REF=09a6aef bench/worker_vs_ref.sh     # 10,000 rows, 3 rounds: ~2 minutes
#
# The earlier worker runs from a git worktree of BENCH_REF in bench/out/ref (its Python package
# on PYTHONPATH) against this checkout's installed extension: a worker that reads the
# vectorizer's tables directly still finds them as it knew them.
set -euo pipefail

OUT=$(cd "$(dirname "$0")" && pwd)/out/worker_vs_ref
# shellcheck source=bench/lib.sh
. "$(dirname "$0")/lib.sh"
REF=${BENCH_REF:?set BENCH_REF to the commit to compare with}
ROWS=${BENCH_ROWS:-10000}
ROUNDS=${BENCH_ROUNDS:-3}
DIMS=768

bench_begin
export OPENAI_API_KEY=fake
REFDIR=$BENCH_DIR/out/ref
rm -rf "$REFDIR"; git -C "$ROOT" worktree prune
git -C "$ROOT" worktree add --detach -f "$REFDIR" "$REF" >/dev/null 2>&1
trap 'stop_fakes; git -C "$ROOT" worktree remove --force "$REFDIR" 2>/dev/null || true' EXIT

CSV=$(docs_csv "$ROWS")
fresh_db bench_ref "$CSV" "CREATE EXTENSION ai CASCADE"
start_fake 0 "$DIMS"

run() {  # who round -> appends "who round seconds rows_per_s" to results
    local who=$1 round=$2 id t0 t1 pending
    id=$("${PSQL[@]}" -d bench_ref <<SQL
SELECT ai.drop_vectorizer(id, drop_all => true) FROM ai.vectorizer;
SELECT ai.create_vectorizer('doc'::regclass, loading => ai.loading_column('body'),
    embedding => ai.embedding_openai('text-embedding-3-small', $DIMS, base_url => 'http://127.0.0.1:$FAKE_PORT/v1'),
    scheduling => ai.scheduling_none(), indexing => ai.indexing_none());
CHECKPOINT;
SQL
)
    id=$(echo "$id" | tail -n1)
    t0=$(date +%s.%N)
    if [ "$who" = ref ]; then
        PYTHONPATH=$REFDIR/python_pkg python3 -m pgvectorizer worker -d "$(db_url bench_ref)" -i "$id" --once -c 2 \
            > "$OUT/$who.$round.log" 2>&1
    else
        "$PGVECTORIZER" worker -d "$(db_url bench_ref)" -i "$id" --once -c 2 > "$OUT/$who.$round.log" 2>&1
    fi
    t1=$(date +%s.%N)
    pending=$("${PSQL[@]}" -d bench_ref -c "SELECT ai.vectorizer_queue_pending($id, true)")
    [ "$pending" = 0 ] || die "$who left $pending rows pending (see $OUT/$who.$round.log)"
    awk -v w="$who" -v r="$round" -v a="$t0" -v b="$t1" -v n="$ROWS" \
        'BEGIN { printf "%s %s %.2f %.0f\n", w, r, b - a, n / (b - a) }' | tee -a "$OUT/results"
}

for round in $(seq 1 "$ROUNDS"); do
    if [ $((round % 2)) -eq 1 ]; then run ref "$round"; run ours "$round"; else run ours "$round"; run ref "$round"; fi
done
ref=$(awk '$1 == "ref" { print $4 }' "$OUT/results" | median)
ours=$(awk '$1 == "ours" { print $4 }' "$OUT/results" | median)
echo "median rows/s: ref ($REF) $ref, ours $ours; ours/ref $(awk -v a="$ours" -v b="$ref" 'BEGIN { printf "%.2f", a / b }')"
