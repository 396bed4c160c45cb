#!/usr/bin/env bash
# Our worker against Timescale pgai 0.12.1's worker: rows per second to drain a queue of
# BENCH_ROWS rows through the same vectorizer (OpenAI embedding, 768 dimensions, default
# recursive chunking) against a fake OpenAI-compatible server on loopback, at 0 ms and 50 ms of
# latency per request. Both workers run `--once -c 2`, alternately, BENCH_ROUNDS times each;
# the median counts. Also records each worker's CPU seconds and the server backends' CPU.
#
#   bench/worker_vs_pgai.sh                      # 20,000 rows, 3 rounds, 0 and 50 ms: ~5 minutes
#   BENCH_ROWS=5000 BENCH_ROUNDS=1 bench/worker_vs_pgai.sh   # a quick look
#
# Makes a virtualenv for pgai in bench/out/venv-pgai (once), and drops and recreates the
# databases bench_pgai (pgai's catalog, installed by its Python installer) and bench_ours
# (CREATE EXTENSION ai): both own a schema `ai`, so they cannot share a database.
set -euo pipefail

OUT=$(cd "$(dirname "$0")" && pwd)/out/worker_vs_pgai
# shellcheck source=bench/lib.sh
. "$(dirname "$0")/lib.sh"
ROWS=${BENCH_ROWS:-20000}
ROUNDS=${BENCH_ROUNDS:-3}
LATENCIES=${BENCH_LATENCIES:-0 50}   # ms per request at the fake server
LIMIT=${BENCH_TIMEOUT:-300}          # s; a worker run past this is killed and reported
CONCURRENCY=2
DIMS=768
VENV=${PGAI_VENV:-$BENCH_DIR/out/venv-pgai}
PGAI_VERSION=0.12.1

bench_begin

# --- pgai's worker in its own virtualenv -------------------------------------------------------
# pgai itself without dependencies, then its base requirements and those of its
# `vectorizer-worker` extra as its wheel's metadata lists them, except docling (PDF parsing,
# which pulls in a CUDA build of torch and is not used for a text column).
if ! "$VENV/bin/pgai" --version 2>/dev/null | grep -q "$PGAI_VERSION"; then
    echo "installing pgai $PGAI_VERSION into $VENV"
    rm -rf "$VENV"
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q --upgrade pip packaging > "$OUT/pip.log" 2>&1
    "$VENV/bin/pip" install -q --no-deps "pgai==$PGAI_VERSION" >> "$OUT/pip.log" 2>&1
    "$VENV/bin/python" - > "$VENV/pgai-requirements.txt" <<'PY'
from importlib.metadata import requires
from packaging.requirements import Requirement
for spec in requires("pgai") or []:
    req = Requirement(spec)
    if req.name == "docling":
        continue
    if req.marker is None or req.marker.evaluate({"extra": "vectorizer-worker"}):
        req.marker = None
        print(req)
PY
    "$VENV/bin/pip" install -q -r "$VENV/pgai-requirements.txt" >> "$OUT/pip.log" 2>&1 \
        || { tail -n 20 "$OUT/pip.log" >&2; die "pip install of pgai's requirements failed"; }
    "$VENV/bin/pip" freeze > "$VENV/pip-freeze.txt"
fi
PGAI_PKG=$("$VENV/bin/python" -c 'import os, pgai; print(os.path.dirname(pgai.__file__))')
# pgai ships tiktoken's encodings; without this tiktoken would download them.
export TIKTOKEN_CACHE_DIR=$PGAI_PKG/vectorizer/tiktoken_cache
"$VENV/bin/pgai" vectorizer worker --help >/dev/null || die "pgai's worker does not start"
export OPENAI_API_KEY=fake

# --- data and databases ---------------------------------------------------------------------
CSV=$(docs_csv "$ROWS")
fresh_db bench_ours "$CSV" "CREATE EXTENSION ai CASCADE"
fresh_db bench_pgai "$CSV"
"$VENV/bin/pgai" install -d "$(db_url bench_pgai)" > "$OUT/pgai-install.log" 2>&1 \
    || { cat "$OUT/pgai-install.log" >&2; die "pgai install failed"; }

declare -A PORT FAKE
for lat in $LATENCIES; do
    start_fake "$lat" "$DIMS"
    PORT[$lat]=$FAKE_PORT FAKE[$lat]=$FAKE_PID
done

# A fresh vectorizer (the previous one dropped with its store): every row queued, an empty store.
# Prints the new vectorizer's id.
new_vectorizer() {
    local db=$1 port=$2 enqueue=$3
    "${PSQL[@]}" -d "$db" <<SQL
SELECT ai.drop_vectorizer(id, drop_all => true) FROM ai.vectorizer;
SELECT ai.create_vectorizer('doc'::regclass,
    loading    => ai.loading_column('body'),
    embedding  => ai.embedding_openai('text-embedding-3-small', $DIMS, base_url => 'http://127.0.0.1:$port/v1'),
    scheduling => ai.scheduling_none(),
    indexing   => ai.indexing_none(),
    enqueue_existing => $enqueue);
CHECKPOINT;
SQL
}

# Sets CMD to the worker's command line.
worker_cmd() {
    local who=$1 db=$2 id=$3
    if [ "$who" = pgai ]; then CMD=("$VENV/bin/pgai" vectorizer worker); else CMD=("$PGVECTORIZER" worker); fi
    CMD+=(-d "$(db_url "$db")" -i "$id" --once -c "$CONCURRENCY")
}

# Runs one worker to the end; appends a line to $RESULTS:
# who latency round wall_s user_s sys_s maxrss_kb rc pending chunks errors server_cpu_s fake_cpu_s
run() {
    local who=$1 lat=$2 round=$3 enqueue=${4:-true} db id tag rc=0 pending chunks errors
    local sampler fk0 fk1 wall user sys rss
    db=bench_$who
    id=$(new_vectorizer "$db" "${PORT[$lat]}" "$enqueue")
    tag="$who.${lat}ms.$round"
    [ "$enqueue" = true ] || tag="$who.startup.$round"
    fk0=$(cpu_self "${FAKE[$lat]}")
    sample_backends "$db" > "$OUT/$tag.backends" &
    sampler=$!
    worker_cmd "$who" "$db" "$id"
    # time(1) outside timeout(1): it reports the worker's usage even when the limit kills it.
    /usr/bin/time -f '%e %U %S %M' -o "$OUT/$tag.time" \
        timeout -k 10 "$LIMIT" "${CMD[@]}" > "$OUT/$tag.log" 2>&1 || rc=$?
    kill "$sampler"; wait "$sampler" 2>/dev/null || true
    fk1=$(cpu_self "${FAKE[$lat]}")
    read -r wall user sys rss < <(tail -n1 "$OUT/$tag.time")
    pending=$("${PSQL[@]}" -d "$db" -c "SELECT ai.vectorizer_queue_pending($id, true)")
    chunks=$("${PSQL[@]}" -d "$db" -c "SELECT count(*) FROM doc_embedding_store")
    errors=$("${PSQL[@]}" -d "$db" -c "SELECT count(*) FROM ai._vectorizer_errors WHERE id = $id")
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%.2f\t%.2f\n' "$who" "$lat" "$round" "$wall" "$user" "$sys" "$rss" \
        "$rc" "$pending" "$chunks" "$errors" "$(backend_cpu "$OUT/$tag.backends")" "$(awk "BEGIN { print $fk1 - $fk0 }")" >> "$RESULTS"
    printf '  %-6s round %s  %7.2f s wall  %6.2f s CPU  %6d chunks  pending %s  errors %s  rc %s\n' \
        "$who" "$round" "$wall" "$(awk "BEGIN { print $user + $sys }")" "$chunks" "$pending" "$errors" "$rc"
    if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then echo "    TIMEOUT: killed after ${LIMIT}s (log: $OUT/$tag.log)"; fi
    if [ "$rc" -ne 0 ] || [ "$pending" -ne 0 ] || [ "$errors" -ne 0 ]; then echo "    FAILED: see $OUT/$tag.log:"; tail -n 5 "$OUT/$tag.log" | sed 's/^/      /'; fi
    return 0
}

"${PSQL[@]}" -d bench_ours -F ' ' -c "SELECT 'server: PostgreSQL', current_setting('server_version'),
    '| vector', (SELECT extversion FROM pg_extension WHERE extname = 'vector'),
    '| ai', (SELECT extversion FROM pg_extension WHERE extname = 'ai')"
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg) (other work on these cores skews rates)"
echo "client: $(nproc) cores, pgai $("$VENV/bin/pgai" --version | awk '{print $NF}'), $(python3 --version), pgai's $("$VENV/bin/python" --version)"
echo "worker_vs_pgai: $ROWS rows, $ROUNDS rounds, latencies ${LATENCIES// /, } ms, -c $CONCURRENCY, $DIMS dimensions, limit ${LIMIT}s per run"

# Start-up cost: each worker once on an empty queue (imports, connecting, reading the catalog).
echo "start-up (empty queue):"
RESULTS=$OUT/startup.tsv
FIRST_LAT=${LATENCIES%% *}
for round in 1 2; do
    for who in pgai ours; do run "$who" "$FIRST_LAT" "$round" false; done
done
RESULTS=$OUT/runs.tsv
for lat in $LATENCIES; do
    echo "latency $lat ms:"
    for round in $(seq 1 "$ROUNDS"); do
        # Alternate which worker goes first, so neither always runs on a warmer machine.
        if [ $((round % 2)) -eq 1 ]; then order="pgai ours"; else order="ours pgai"; fi
        for who in $order; do run "$who" "$lat" "$round"; done
    done
done

# --- summary ---------------------------------------------------------------------------------
med() { awk -F'\t' -v w="$1" -v l="$2" -v c="$3" '$1 == w && ($2 == l || l == "*") { print $c }' "$4" | median; }
echo
printf '%-9s %-6s %8s %9s %8s %9s %8s %9s %9s %7s %5s\n' latency worker "wall s" "rows/s" "net/s" "chunks" "CPU s" "CPU ms/ch" "server s" "fake s" ok
fails=0
declare -A WALL CPU START
for who in pgai ours; do START[$who]=$(med "$who" "*" 4 "$OUT/startup.tsv"); done
for lat in $LATENCIES; do
    for who in pgai ours; do
        wall=$(med "$who" "$lat" 4 "$OUT/runs.tsv")
        cpu=$(awk -F'\t' -v w="$who" -v l="$lat" '$1 == w && $2 == l { print $5 + $6 }' "$OUT/runs.tsv" | median)
        chunks=$(med "$who" "$lat" 10 "$OUT/runs.tsv")
        srv=$(med "$who" "$lat" 12 "$OUT/runs.tsv")
        fk=$(med "$who" "$lat" 13 "$OUT/runs.tsv")
        bad=$(awk -F'\t' -v w="$who" -v l="$lat" '$1 == w && $2 == l && ($8 != 0 || $9 != 0 || $11 != 0) { n++ } END { print n + 0 }' "$OUT/runs.tsv")
        fails=$((fails + bad))
        awk -v l="$lat ms" -v w="$who" -v wall="$wall" -v rows="$ROWS" -v st="${START[$who]}" -v ch="$chunks" -v cpu="$cpu" \
            -v srv="$srv" -v fk="$fk" -v bad="$bad" 'BEGIN {
            printf "%-9s %-6s %8.2f %9.0f %8.0f %9d %8.2f %9.3f %9.2f %7.2f %5s\n", l, w, wall, rows / wall,
                rows / (wall - st), ch, cpu, 1000 * cpu / ch, srv, fk, bad ? "NO" : "yes" }'
        WALL[$who.$lat]=$wall CPU[$who.$lat]=$cpu
    done
done
echo
printf '%-9s %18s %18s %18s\n' latency "ours/pgai rows/s" "net of start-up" "pgai/ours CPU s"
for lat in $LATENCIES; do
    awk -v l="$lat ms" -v wp="${WALL[pgai.$lat]}" -v wo="${WALL[ours.$lat]}" -v sp="${START[pgai]}" -v so="${START[ours]}" \
        -v cp="${CPU[pgai.$lat]}" -v co="${CPU[ours.$lat]}" \
        'BEGIN { printf "%-9s %18.2f %18.2f %18.2f\n", l, wp / wo, (wp - sp) / (wo - so), cp / co }'
done
echo
echo "start-up on an empty queue, median: pgai ${START[pgai]}s, ours ${START[ours]}s (net/s subtracts it)."
echo "CPU s: the worker process (user + system, /usr/bin/time); server s: the worker's PostgreSQL"
echo "backends (sampled every 0.25 s, so up to that much is missed); fake s: the fake server's CPU."
echo "Medians of $ROUNDS rounds. Raw: $OUT/runs.tsv, startup.tsv"
echo "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
[ "$fails" -eq 0 ] || die "$fails runs failed, left rows queued or recorded errors (see the logs in $OUT)"
