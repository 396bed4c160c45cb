# shellcheck shell=bash
# Helpers shared by the worker benchmarks (sourced, not run). The caller sets OUT (its output
# folder) and uses `set -euo pipefail`.

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(dirname "$BENCH_DIR")
export PGHOST=${PGHOST:-/var/run/postgresql} PGPORT=${PGPORT:-5488}
export PGOPTIONS="${PGOPTIONS:-} -c client_min_messages=warning"
PSQL=(psql -X -q -At -v ON_ERROR_STOP=1)
FAKE_OPENAI=${FAKE_OPENAI:-$ROOT/tests/helpers/fake_openai.py}
# The console script beside python3's real interpreter, not a pyenv shim that would add its own
# start-up to every run.
PGVECTORIZER=${PGVECTORIZER:-$(python3 -c 'import os, sys; p = os.path.join(os.path.dirname(sys.executable), "pgvectorizer"); print(p if os.path.exists(p) else "pgvectorizer")')}
FAKE_PIDS=()
# The benchmarks' fake servers take the worker's OPENAI_API_KEY on loopback, any port (keys go
# only to endpoints listed for them).
export PGVECTORIZER_KEY_ENDPOINTS=${PGVECTORIZER_KEY_ENDPOINTS:-OPENAI_API_KEY=http://127.0.0.1:* PGVECTORIZER_TEST_API_KEY=http://127.0.0.1:*}

die() { echo "$(basename "$0"): $*" >&2; exit 1; }

# libpq URL for a database on the same server as psql, over the same socket or host.
db_url() { echo "postgresql:///$1?host=$PGHOST&port=$PGPORT"; }

# The server must answer; the project's own cluster is started if it is the one asked for.
need_server() {
    if ! "${PSQL[@]}" -d postgres -c 'SELECT 1' >/dev/null 2>&1; then
        if [ "$PGPORT" = 5488 ] && [ -x "$ROOT/scripts/cluster.sh" ]; then
            "$ROOT/scripts/cluster.sh" start >/dev/null
        fi
        "${PSQL[@]}" -d postgres -c 'SELECT 1' >/dev/null || die "cannot connect (PGHOST=$PGHOST PGPORT=$PGPORT)"
    fi
}

need_time() {
    [ -x /usr/bin/time ] && return
    command -v apt-get >/dev/null || die "/usr/bin/time is missing (Debian package 'time')"
    apt-get install -y -q time >/dev/null || { apt-get update -q >/dev/null && apt-get install -y -q time >/dev/null; } \
        || die "could not install the 'time' package"
}

need_worker() {
    command -v "$PGVECTORIZER" >/dev/null || die "'$PGVECTORIZER' not found: install python_pkg (pip install -e python_pkg) or set PGVECTORIZER"
    "$PGVECTORIZER" worker --help >/dev/null 2>&1 || die "'$PGVECTORIZER worker --help' fails: $("$PGVECTORIZER" worker --help 2>&1 | tail -n 3)"
}

# What every worker benchmark does first: an empty output folder (OUT), fake servers stopped on
# exit, and a server, /usr/bin/time and the worker that answer.
bench_begin() {
    mkdir -p "$OUT"
    find "$OUT" -maxdepth 1 -type f -delete
    trap stop_fakes EXIT
    trap "exit 130" INT TERM   # so that the EXIT trap runs when the script is stopped
    need_server
    need_time
    need_worker
}

# Deterministic documents, generated once per row count: prints the CSV's path.
docs_csv() {
    local rows=$1 file="$BENCH_DIR/out/data/docs-$1.csv"
    if [ ! -s "$file" ]; then
        mkdir -p "$BENCH_DIR/out/data"
        python3 "$BENCH_DIR/gen_docs.py" "$rows" > "$file.tmp"
        mv "$file.tmp" "$file"
    fi
    echo "$file"
}

# Drops and recreates database $1 with table doc filled from CSV $2 (after running SQL $3 first,
# e.g. CREATE EXTENSION).
fresh_db() {
    local db=$1 csv=$2 init=${3:-}
    "${PSQL[@]}" -d postgres -c "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db"
    [ -z "$init" ] || "${PSQL[@]}" -d "$db" -c "$init" >/dev/null
    "${PSQL[@]}" -d "$db" -c "CREATE TABLE doc (id int PRIMARY KEY, title text, body text)" \
        -c "\\copy doc FROM '$csv' (FORMAT csv)" -c "VACUUM (ANALYZE) doc"
}

# Starts the fake OpenAI server with latency $1 ms; sets FAKE_PORT and FAKE_PID (for the
# caller). stop_fakes, run on exit, kills it.
start_fake() {
    local latency=$1 dims=$2 portfile="$OUT/fake-$1ms.port"
    [ -f "$FAKE_OPENAI" ] || die "fake OpenAI server $FAKE_OPENAI not found (set FAKE_OPENAI)"
    rm -f "$portfile"
    python3 "$FAKE_OPENAI" --port 0 --port-file "$portfile" --dimensions "$dims" --latency-ms "$latency" \
        > "$OUT/fake-${latency}ms.log" 2>&1 &
    FAKE_PID=$!
    FAKE_PIDS+=("$FAKE_PID")
    for _ in $(seq 1 100); do
        [ -s "$portfile" ] && break
        kill -0 "$FAKE_PID" 2>/dev/null || { cat "$OUT/fake-${latency}ms.log" >&2; die "fake server exited"; }
        sleep 0.1
    done
    [ -s "$portfile" ] || die "fake server wrote no port file in 10 s"
    # shellcheck disable=SC2034
    FAKE_PORT=$(cat "$portfile")
}

stop_fakes() {
    local pid
    for pid in "${FAKE_PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${FAKE_PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    FAKE_PIDS=()
}

# CPU seconds (user + system) a process has used so far.
cpu_self() { awk -v hz="$(getconf CLK_TCK)" '{ sub(/^.*\) /, ""); printf "%.2f\n", ($12 + $13) / hz }' "/proc/$1/stat"; }

# Until killed, records every 0.25 s the CPU ticks of each client backend connected to
# database $1 (found by process title, so no connection of its own): lines "pid ticks".
# The server is shared, so its total would count other databases' work too.
sample_backends() {
    local pids
    while true; do
        pids=$(pgrep -f "^postgres: [^ ]+: [^ ]+ $1 " | sed 's|.*|/proc/&/stat|' || true)
        # shellcheck disable=SC2086
        [ -z "$pids" ] || awk '{ pid = $1; sub(/^.*\) /, ""); print pid, $12 + $13 }' $pids 2>/dev/null || true
        sleep 0.25
    done
}
# CPU seconds in a sample_backends file: the last sample of each backend, summed.
backend_cpu() {
    awk -v hz="$(getconf CLK_TCK)" '{ last[$1] = $2 } END { for (p in last) s += last[p]; printf "%.2f\n", s / hz }' "$1"
}

# The process ids below $1, depth first.
descendants() {
    local child
    for child in $(pgrep -P "$1" 2>/dev/null); do echo "$child"; descendants "$child"; done
}

median() { sort -g | awk '{ v[NR] = $1 } END { if (NR == 0) print "nan"; else print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
