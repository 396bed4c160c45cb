#!/usr/bin/env bash
# In-database execution against the worker on the same data: rows per second of
# ai.execute_vectorizer (PL/Python inside a backend, one transaction) and of
# `pgvectorizer worker --once`, and their ratio, for two providers:
#
#   local  ai.embedding_sentence_transformers('all-MiniLM-L6-v2', device => 'cpu'), 384
#          dimensions, BENCH_LOCAL_ROWS rows: the model's time dominates. In-database: the
#          first call in a fresh backend (imports and model load included) and a second call
#          in the same session; the worker: whole runs and runs less its start-up.
#   fake   ai.embedding_openai(768 dimensions) against tests/helpers/fake_openai.py on 127.0.0.1,
#          BENCH_ROWS rows: no model time, so what shows is the pipeline and the database
#          path (SPI and an unnest INSERT, one thread; against async, binary COPY and -c).
#          Also the pg_cron job's procedure, ai._vectorizer_job (a commit per batch).
#
# Start-up of each side is measured apart and subtracted for the "net" rates: a fresh backend's
# first ai.embed (imports and model load; a call on an empty queue loads no model) and a worker
# run on an empty queue (process start, imports, model load, catalog). Every run starts from
# the same state: the store emptied (so no chunk is reused by its hash), every source row
# queued, vacuumed, checkpointed. Sides alternate in each round (the order reverses every
# round); medians of BENCH_ROUNDS. The worker runs a copy of the server's package, so both
# sides run the same code. Finally one profiled in-database run per provider shows where its
# time goes (bench/indb_run.py profile).
#
#   bench/indb_vs_worker.sh                                        # 9-10 minutes on 2 busy cores
#   BENCH_ROWS=2000 BENCH_LOCAL_ROWS=130 BENCH_ROUNDS=1 bench/indb_vs_worker.sh   # a quick look
#
# Drops and recreates the database $BENCH_DB (bench_indb). The server's PL/Python needs the
# package and its model installed (make setup); it reads the fake server's API key from the
# server's environment (PGVECTORIZER_TEST_API_KEY, scripts/cluster.sh sets it).
set -euo pipefail

OUT=$(cd "$(dirname "$0")" && pwd)/out/indb_vs_worker
# shellcheck source=bench/lib.sh
. "$(dirname "$0")/lib.sh"
ROWS=${BENCH_ROWS:-5000}              # rows for the fake server
LOCAL_ROWS=${BENCH_LOCAL_ROWS:-300}   # rows for the local model (about 2.5 chunks a row)
ROUNDS=${BENCH_ROUNDS:-3}
CASES=${BENCH_CASES:-local fake}
LIMIT=${BENCH_TIMEOUT:-300}           # s; a worker run past this is killed and reported
DB=${BENCH_DB:-bench_indb}
DIMS=768                              # the fake server's
HELPER=(python3 "$BENCH_DIR/indb_run.py")
# The worker gets what scripts/cluster.sh gives the server's environment: the same API key
# variable, no hub downloads, and no tokenizer threads competing with torch's.
export PGVECTORIZER_TEST_API_KEY=test-key-not-a-secret HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false

[ "$LOCAL_ROWS" -le "$ROWS" ] || die "BENCH_LOCAL_ROWS ($LOCAL_ROWS) must not exceed BENCH_ROWS ($ROWS)"
bench_begin

# --- data, vectorizers, fake server -----------------------------------------------------------
fresh_db "$DB" "$(docs_csv "$ROWS")" "CREATE EXTENSION ai CASCADE"
start_fake 0 "$DIMS"
FAKE_URL=http://127.0.0.1:$FAKE_PORT
# Vectorizers queue nothing at creation: every run queues its rows itself (indb_run.py reset).
"${PSQL[@]}" -d "$DB" >/dev/null <<SQL
CREATE TABLE doc_local AS SELECT * FROM doc WHERE id <= $LOCAL_ROWS;
ALTER TABLE doc_local ADD PRIMARY KEY (id);
VACUUM (ANALYZE) doc_local;
SELECT ai.create_vectorizer('doc_local'::regclass, name => 'local',
    loading    => ai.loading_column('body'),
    embedding  => ai.embedding_sentence_transformers('all-MiniLM-L6-v2', device => 'cpu'),
    scheduling => ai.scheduling_none(),
    indexing   => ai.indexing_none(),
    enqueue_existing => false);
SELECT ai.create_vectorizer('doc'::regclass, name => 'fake',
    loading    => ai.loading_column('body'),
    embedding  => ai.embedding_openai('text-embedding-3-small', $DIMS, base_url => '$FAKE_URL/v1',
                                      api_key_name => 'PGVECTORIZER_TEST_API_KEY'),
    scheduling => ai.scheduling_none(),
    indexing   => ai.indexing_none(),
    enqueue_existing => false);
SQL
declare -A VID CASE_ROWS
VID[local]=$("${PSQL[@]}" -d "$DB" -c "SELECT id FROM ai.vectorizer WHERE name = 'local'")
VID[fake]=$("${PSQL[@]}" -d "$DB" -c "SELECT id FROM ai.vectorizer WHERE name = 'fake'")
CASE_ROWS[local]=$LOCAL_ROWS CASE_ROWS[fake]=$ROWS

# Texts the fake server has embedded so far (its /stats).
fake_texts() {
    python3 -c 'import json, sys, urllib.request; print(json.load(urllib.request.urlopen(sys.argv[1] + "/stats"))["texts"])' "$FAKE_URL"
}

# --- one run ----------------------------------------------------------------------------------
# Each appends lines to $RESULTS: case side round wall_s cpu_s proc_cpu_s backend_cpu_s fake_cpu_s
# rows chunks embedded fake_texts queued stored errors. cpu_s is all the CPU the run cost
# outside the fake server: for in-database runs the backend's (proc_cpu_s; backend_cpu_s 0),
# for the worker its process's (proc_cpu_s) plus its backends' (backend_cpu_s). fake_texts:
# texts the fake server embedded during the run.
RESULTS=$OUT/runs.tsv
: > "$RESULTS"

# The in-database side: SIDE is indb (the function; for the local model a second call follows
# in the same session), job (the procedure) or indb-startup (a fresh backend's first ai.embed:
# a call on an empty queue loads no model, so it would not show the load).
run_indb() {
    local case=$1 side=$2 round=$3 id=${VID[$1]} fk0 ft0 args=()
    if [ "$side" = indb-startup ]; then "${HELPER[@]}" reset "$DB" "$id" --empty; else "${HELPER[@]}" reset "$DB" "$id"; fi
    [ "$side" = job ] && args+=(--job)
    [ "$side" = indb-startup ] && args+=(--startup)
    [ "$case" = local ] && [ "$side" = indb ] && args+=(--warm)
    server_unchanged "$case $side round $round"
    fk0=$(cpu_self "$FAKE_PID") ft0=$(fake_texts)
    # With --warm (the local model only) two lines come back; the fake server's counters,
    # read around the whole call, matter only for the fake case, which has one.
    "${HELPER[@]}" call "$DB" "$id" "$side" "${args[@]}" > "$OUT/$case.$side.$round.out" 2>&1 \
        || { cat "$OUT/$case.$side.$round.out" >&2; die "$case $side round $round failed"; }
    server_unchanged "$case $side round $round"
    while IFS=$'\t' read -r tag mode wall cpu rows chunks embedded reused _ stopped queued stored errors; do
        [ "$mode" = warm ] && tag=indb-warm
        printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%.2f\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$case" "$tag" "$round" "$wall" "$cpu" \
            "$cpu" 0 "$(awk "BEGIN { print $(cpu_self "$FAKE_PID") - $fk0 }")" "$rows" "$chunks" "$embedded" \
            "$(($(fake_texts) - ft0))" "$queued" "$stored" "$errors" >> "$RESULTS"
        printf '  %-6s round %s  %-15s %7.2f s wall  %6.2f s CPU  %5d rows  %6d chunks  reused %s  %s  queued %s  errors %s\n' \
            "$case" "$round" "$tag" "$wall" "$cpu" "$rows" "$chunks" "$reused" "$stopped" "$queued" "$errors"
        [ "$reused" = 0 ] || die "$case $tag round $round reused $reused chunks: the store was not empty"
    done < "$OUT/$case.$side.$round.out"
}

# The worker: SIDE is worker-c1, worker-c2 (its -c) or worker-startup (-c 1, an empty queue).
run_worker() {
    local case=$1 side=$2 round=$3 id=${VID[$1]} c=1 tag=$1.$2.$3 rc=0 sampler fk0 ft0 wall user sys chk
    case $side in worker-c*) c=${side#worker-c} ;; esac
    if [ "$side" = worker-startup ]; then "${HELPER[@]}" reset "$DB" "$id" --empty; else "${HELPER[@]}" reset "$DB" "$id"; fi
    fk0=$(cpu_self "$FAKE_PID") ft0=$(fake_texts)
    sample_backends "$DB" > "$OUT/$tag.backends" &
    sampler=$!
    /usr/bin/time -f '%e %U %S' -o "$OUT/$tag.time" \
        timeout -k 10 "$LIMIT" "$PGVECTORIZER" worker -d "$(db_url "$DB")" -i "$id" --once -c "$c" > "$OUT/$tag.log" 2>&1 || rc=$?
    kill "$sampler"; wait "$sampler" 2>/dev/null || true
    read -r wall user sys < <(tail -n1 "$OUT/$tag.time")
    chk=$("${HELPER[@]}" check "$DB" "$id")
    local queued stored errors backends
    read -r queued stored errors <<< "$chk"
    backends=$(backend_cpu "$OUT/$tag.backends")
    printf '%s\t%s\t%s\t%s\t%.2f\t%.2f\t%s\t%.2f\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$case" "$side" "$round" "$wall" \
        "$(awk "BEGIN { print $user + $sys + $backends }")" "$(awk "BEGIN { print $user + $sys }")" "$backends" \
        "$(awk "BEGIN { print $(cpu_self "$FAKE_PID") - $fk0 }")" "$([ "$side" = worker-startup ] && echo 0 || echo "${CASE_ROWS[$case]}")" \
        "$stored" "" "$(($(fake_texts) - ft0))" "$queued" "$stored" "$errors" >> "$RESULTS"
    printf '  %-6s round %s  %-15s %7.2f s wall  %6.2f s CPU  %5s rows  %6d chunks  queued %s  errors %s  rc %s\n' \
        "$case" "$round" "$side" "$wall" "$(awk "BEGIN { print $user + $sys + $backends }")" \
        "$([ "$side" = worker-startup ] && echo 0 || echo "${CASE_ROWS[$case]}")" "$stored" "$queued" "$errors" "$rc"
    if [ "$rc" -ne 0 ] || [ "$queued" -ne 0 ] || [ "$errors" -ne 0 ]; then
        tail -n 5 "$OUT/$tag.log" | sed 's/^/      /' >&2
        die "$case $side round $round failed (log: $OUT/$tag.log)"
    fi
}

# Notes RUN in DRIFTED when the server's package is no longer the one the run began with
# (another `make install-python` on a shared machine); the summary names such runs.
DRIFTED=()
server_unchanged() {
    [ "$(pkg_hash "$SERVER_PKG")" != "$SERVER_HASH" ] || return 0
    [ "${#DRIFTED[@]}" -gt 0 ] && [ "${DRIFTED[-1]}" = "$1" ] || DRIFTED+=("$1")
}

run_side() {
    case $2 in
        worker*) run_worker "$@" ;;
        *) run_indb "$@" ;;
    esac
}

"${PSQL[@]}" -d "$DB" -F ' ' -c "SELECT 'server: PostgreSQL', current_setting('server_version'),
    '| vector', (SELECT extversion FROM pg_extension WHERE extname = 'vector'),
    '| ai', (SELECT extversion FROM pg_extension WHERE extname = 'ai'),
    '| server Python', ai.python_info()->>'python_version'"
# Both sides run the same pgvectorizer: the worker runs a copy, made now, of the server's
# (make install-python), unless BENCH_WORKER_OWN_PACKAGE=1 (then its own install, and the
# script says whether the two differ). A short hash of the sources, now and at the end.
pkg_hash() { [ -d "$1" ] && find "$1" -name '*.py' -print0 | sort -z | xargs -0 cat | sha256sum | cut -c1-12 || echo '?'; }
SERVER_PKG=$(dirname "$("${PSQL[@]}" -d "$DB" -c "SELECT ai.python_info()->>'package_path'")")
SERVER_HASH=$(pkg_hash "$SERVER_PKG")
if [ "${BENCH_WORKER_OWN_PACKAGE:-0}" != 1 ]; then
    [ -d "$SERVER_PKG" ] || die "cannot read the server's package at $SERVER_PKG (set BENCH_WORKER_OWN_PACKAGE=1)"
    rm -rf "$OUT/pkg" && mkdir -p "$OUT/pkg"
    cp -r "$SERVER_PKG" "$OUT/pkg/" && find "$OUT/pkg" -name __pycache__ -prune -exec rm -rf {} +
    export PYTHONPATH=$OUT/pkg${PYTHONPATH:+:$PYTHONPATH}
fi
WORKER_PKG=$(python3 -c 'import os, pgvectorizer; print(os.path.dirname(pgvectorizer.__file__))')
WORKER_HASH=$(pkg_hash "$WORKER_PKG")
same=same; [ "$SERVER_HASH" = "$WORKER_HASH" ] && [ "$SERVER_HASH" != '?' ] || same=DIFFERENT
echo "package: server $SERVER_PKG ($SERVER_HASH), worker $WORKER_PKG ($WORKER_HASH): $same"
commit=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')
[ -z "$(git -C "$ROOT" status --porcelain -- python_pkg sql 2>/dev/null)" ] || commit="$commit + uncommitted changes in python_pkg/ or sql/"
echo "client: $(nproc) cores, $(python3 --version), commit $commit"
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg) (other work on these cores skews rates)"
echo "indb_vs_worker: cases $CASES; local $LOCAL_ROWS rows, fake $ROWS rows ($DIMS dimensions, 0 ms); $ROUNDS rounds"

declare -A SIDES=(
    [local]="indb-startup indb worker-startup worker-c1"
    [fake]="indb-startup indb job worker-startup worker-c1 worker-c2"
)
for case in $CASES; do
    [ -n "${SIDES[$case]:-}" ] || die "unknown case $case (local, fake)"
    echo "$case:"
    for round in $(seq 1 "$ROUNDS"); do
        # The order reverses every round, so no side always runs on a warmer machine.
        order=${SIDES[$case]}
        [ $((round % 2)) -eq 1 ] || order=$(echo "$order" | tr ' ' '\n' | tac | tr '\n' ' ')
        for side in $order; do run_side "$case" "$side" "$round"; done
    done
done

# --- where the in-database time goes ----------------------------------------------------------
# One profiled run per case in a fresh backend (model load included, and shown apart). For the
# fake server also one with the faster vector text, whose stored vectors must equal the first's.
profile() {
    local case=$1 tag=$2 id=${VID[$1]}
    shift 2
    "${HELPER[@]}" reset "$DB" "$id"
    "${HELPER[@]}" profile "$DB" "$id" "$@" > "$OUT/profile.$tag.json"
    server_unchanged "profile $tag"
}
PROFILES=()
for case in $CASES; do
    profile "$case" "$case"
    PROFILES+=("$case")
    if [ "$case" = fake ]; then
        "${PSQL[@]}" -d "$DB" -c "DROP TABLE IF EXISTS bench_ref" \
            -c "CREATE TABLE bench_ref AS SELECT id, chunk_seq, embedding FROM doc_embedding_store"
        profile fake fake-fast-text --fast-text
        PROFILES+=(fake-fast-text)
        SAME_VECTORS=$("${PSQL[@]}" -d "$DB" -c "SELECT count(*) FILTER (WHERE r.embedding = s.embedding) || ' of ' || count(*)
            FROM bench_ref r FULL JOIN doc_embedding_store s USING (id, chunk_seq)")
    fi
done

# --- summary ----------------------------------------------------------------------------------
med() { awk -F'\t' -v c="$1" -v s="$2" -v k="$3" '$1 == c && $2 == s { print $k }' "$RESULTS" | median; }
LABEL_local_indb="in-DB, 1st call, fresh backend"
LABEL_local_indb_warm="in-DB, 2nd call, same session"
LABEL_fake_indb="in-DB function, fresh backend"
LABEL_job="in-DB job (CALL, commit/batch)"
LABEL_worker_c1="worker --once -c 1"
LABEL_worker_c2="worker --once -c 2"
label() {
    case $1.$2 in
        local.indb) echo "$LABEL_local_indb" ;;
        local.indb-warm) echo "$LABEL_local_indb_warm" ;;
        fake.indb) echo "$LABEL_fake_indb" ;;
        *.job) echo "$LABEL_job" ;;
        *.worker-c1) echo "$LABEL_worker_c1" ;;
        *.worker-c2) echo "$LABEL_worker_c2" ;;
    esac
}
echo
for case in $CASES; do
    rows=${CASE_ROWS[$case]}
    s_indb=$(med "$case" indb-startup 4) s_worker=$(med "$case" worker-startup 4)
    chunks=$(med "$case" indb 10)
    echo "$case: $rows rows, $chunks chunks; start-up: in-DB ${s_indb} s (a fresh backend's ai.embed), worker ${s_worker} s (--once, empty queue)"
    printf '  %-32s %8s %8s %9s %8s %9s %10s\n' "" "wall s" "rows/s" "chunks/s" "net/s" "CPU s" "CPU ms/ch"
    sides="indb job worker-c1 worker-c2"
    [ "$case" = local ] && sides="indb indb-warm worker-c1"
    declare -A RATE=() NET=()
    for side in $sides; do
        wall=$(med "$case" "$side" 4)
        [ "$wall" != nan ] || continue
        cpu=$(med "$case" "$side" 5)
        # Net of start-up: a warm second call has none to subtract.
        st=$s_indb
        case $side in worker*) st=$s_worker ;; indb-warm) st=0 ;; esac
        RATE[$side]=$(awk -v r="$rows" -v w="$wall" 'BEGIN { print r / w }')
        NET[$side]=$(awk -v r="$rows" -v w="$wall" -v s="$st" 'BEGIN { print r / (w - s) }')
        awk -v l="$(label "$case" "$side")" -v w="$wall" -v r="$rows" -v ch="$chunks" -v s="$st" -v cpu="$cpu" 'BEGIN {
            printf "  %-32s %8.2f %8.1f %9.1f %8.1f %9.2f %10.2f\n", l, w, r / w, ch / w, r / (w - s), cpu, 1000 * cpu / ch }'
    done
    worker="worker-c2"
    [ "$case" = local ] && worker="worker-c1"
    printf '  in-DB / worker rows/s:'
    for side in $sides; do
        case $side in worker*) continue ;; esac
        [ -n "${RATE[$side]:-}" ] || continue
        awk -v s="$side" -v a="${RATE[$side]}" -v b="${RATE[$worker]}" -v na="${NET[$side]}" -v nb="${NET[$worker]}" \
            -v w="$worker" 'BEGIN { printf "  %s/%s %.2f (net %.2f)", s, w, a / b, na / nb }'
    done
    echo
    # The same ratio within each round: how much of it is the machine's drift.
    awk -F'\t' -v c="$case" -v w="$worker" '$1 == c { wall[$2, $3] = $4; if ($3 > n) n = $3 }
        END { printf "  per round, indb/%s:", w; for (r = 1; r <= n; r++) printf " %.2f", wall[w, r] / wall["indb", r]
              if (c == "local") { printf ";  indb-warm/%s net:", w
                  for (r = 1; r <= n; r++) printf " %.2f", (wall[w, r] - wall["worker-startup", r]) / wall["indb-warm", r] }
              print "" }' "$RESULTS"
    unset RATE NET
done
echo
echo "rows/s: rows over the wall time, start-up included; net/s: without it (the start-up median"
echo "above subtracted; the warm call has none). CPU s: the backend's for in-DB runs; the worker"
echo "process's plus its backends' (sampled every 0.25 s) for the worker; the fake server's apart."
echo "Fake server: texts embedded per run = chunks stored in every run (no reuse):" \
    "$(awk -F'\t' '$1 == "fake" && $12 != $10 && $2 !~ /startup/ { n++ } END { print n ? n " runs DIFFER" : "yes" }' "$RESULTS")"

echo
echo "Where an in-database run's time goes (one profiled run in a fresh backend; seconds):"
python3 - "$OUT" "${PROFILES[@]}" <<'PY'
import json, sys
out, tags = sys.argv[1], sys.argv[2:]
profiles = {t: json.load(open(f"{out}/profile.{t}.json")) for t in tags}
def s(p, k):
    return p["spent"].get(k, 0.0)
def rows(p):
    vt, ins = s(p, "vector to text"), s(p, "SPI insert_chunks")
    other_writes = s(p, "write") - ins
    setup = p["imports"] + s(p, "make embedder (model load)") + s(p, "queue set-up (plans)")
    steps = [
        ("imports, model load, set-up", setup),
        ("claim (SPI)", s(p, "claim")),
        ("existing chunks (SPI)", s(p, "existing chunks")),
        ("chunk, format, hash", s(p, "pipeline") - s(p, "embed")),
        ("embed (model or HTTP)", s(p, "embed")),
        ("vectors to text (Python)", vt),
        ("INSERT ... unnest (SPI)", ins - vt),
        ("other writes (SPI)", other_writes),
    ]
    steps.append(("rest", p["total"] - sum(v for _, v in steps)))
    return steps
names = [n for n, _ in rows(next(iter(profiles.values())))]
print(f"  {'':30}" + "".join(f"{t:>22}" for t in tags))
for i, n in enumerate(names):
    line = f"  {n:30}"
    for p in profiles.values():
        v = rows(p)[i][1]
        line += f"{v:13.2f} s {100 * v / p['total']:5.1f}%"
    print(line)
print(f"  {'total':30}" + "".join(f"{p['total']:13.2f} s {'':6}" for p in profiles.values()))
for t, p in profiles.items():
    c = p["claim_first"] + p["claim_last"]
    print(f"  {t}: {p['outcome']['batches']} batches, claim ms first/last three: "
          + " ".join(f"{1000 * x:.1f}" for x in c))
PY
[ -z "${SAME_VECTORS:-}" ] || echo "  fake-fast-text stores the same vectors as the shipped vector text: $SAME_VECTORS chunks equal"
echo
echo "Medians of $ROUNDS rounds. Raw: $RESULTS, profile.*.json, logs in $OUT"
echo "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
if [ "${#DRIFTED[@]}" -gt 0 ] || [ "$(pkg_hash "$WORKER_PKG")" != "$WORKER_HASH" ]; then
    echo "WARNING: the server's package changed before or during: $(IFS=,; echo "${DRIFTED[*]:-no in-DB run}");" \
        "the worker's is now $(pkg_hash "$WORKER_PKG") (was $WORKER_HASH): run again"
else
    echo "Every in-DB run and profile ran the server's package $SERVER_HASH; the worker ran $WORKER_HASH."
fi
