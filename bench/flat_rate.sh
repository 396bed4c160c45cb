#!/usr/bin/env bash
# A flat rate as the work grows (issue 16): one `pgvectorizer worker --once -c 2` drains a backlog
# of BENCH_ROWS short rows (one chunk each, chunking_none, 8 dimensions) queued by
# ai.create_vectorizer, against the fake OpenAI server on loopback (0 ms). Reports rows/s in each
# tenth of the backlog and its ratio to the median tenth, the worker's resident set per tenth,
# how long create_vectorizer took and the longest wait of a writer to the source while it ran,
# and the queue's size on disk.
#
#   bench/flat_rate.sh                         # 1,000,000 rows: about 2 minutes on 2 cores
#   BENCH_ROWS=100000 bench/flat_rate.sh       # a quick look
#   BENCH_PRE_ANALYZE=1 bench/flat_rate.sh     # ANALYZE the queue before the drain
#   BENCH_PRE_ANALYZE=forget bench/flat_rate.sh   # drop the queue's statistics first
#   BENCH_UPDATES=1 bench/flat_rate.sh         # writers update 5% of the rows during the drain
#
# Drops and recreates the database $BENCH_DB (bench_flat). Each configuration writes its own
# folder, out/flat_rate/<rows>-analyze<A>-updates<U>/, so runs can be compared afterwards.
set -euo pipefail

BENCH_ROOT_OUT=$(cd "$(dirname "$0")" && pwd)/out/flat_rate
ROWS=${BENCH_ROWS:-1000000}
PRE_ANALYZE=${BENCH_PRE_ANALYZE:-0}   # 0, 1 (ANALYZE the queue) or forget (delete its statistics)
UPDATES=${BENCH_UPDATES:-0}           # 1: update 5% of the rows while the backlog drains
UPDATE_RATE=${BENCH_UPDATE_RATE:-500} # updates/s when BENCH_UPDATES=1
SAMPLE_S=${BENCH_SAMPLE_S:-0.2}      # s between samples of the server's snapshot, queue size and RSS
OUT=$BENCH_ROOT_OUT/$ROWS-analyze$PRE_ANALYZE-updates$UPDATES
# shellcheck source=bench/lib.sh
. "$(dirname "$0")/lib.sh"
DB=${BENCH_DB:-bench_flat}
DIMS=8
LIMIT=${BENCH_TIMEOUT:-1200}          # s per worker run
CONCURRENCY=2
case $PRE_ANALYZE in 0|1|forget) ;; *) die "BENCH_PRE_ANALYZE must be 0, 1 or forget" ;; esac
case $UPDATES in 0|1) ;; *) die "BENCH_UPDATES must be 0 or 1" ;; esac
[ "$ROWS" -ge 1000 ] || die "BENCH_ROWS must be at least 1000"

bench_begin
export OPENAI_API_KEY=fake
URL=$(db_url "$DB")
SIDE_PIDS=()
stop_side() {
    local pid
    for pid in "${SIDE_PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${SIDE_PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    SIDE_PIDS=()
    stop_fakes
}
trap stop_side EXIT

# The side programs, in Python (psycopg, which the worker needs anyway): each keeps one
# connection open, so sampling costs no connection start-up.
read -r -d '' HELPER <<'PY' || true
import json, os, random, statistics, sys, time
import psycopg

def stopped(stopfile):
    return os.path.exists(stopfile)

def writers(url, out, stopfile, rows, limit_s):
    """Single-row UPDATEs of a column the vectorizer does not read (so nothing is queued), one
    every 10 ms, until stopfile exists: 'start_epoch latency_s' per statement."""
    end = time.time() + float(limit_s)
    with psycopg.connect(url, autocommit=True) as conn, open(out, "w") as f:
        conn.execute("SET statement_timeout = '600s'")
        while not stopped(stopfile) and time.time() < end:
            i = random.randint(1, int(rows))
            t0 = time.time()
            conn.execute("UPDATE doc SET n = n + 1 WHERE id = %s", (i,))
            f.write(f"{t0:.6f} {time.time() - t0:.6f}\n")
            time.sleep(0.01)

def updates(url, out, rows, count, rate):
    """count UPDATEs of body, each a distinct row (a stride coprime with rows), at a fixed rate."""
    rows, count, rate = int(rows), int(count), float(rate)
    stride = 7919
    while rows % stride == 0:
        stride += 2
    with psycopg.connect(url, autocommit=True) as conn, open(out, "w") as f:
        conn.execute("SET statement_timeout = '60s'")
        start = time.time()
        for k in range(count):
            due = start + k / rate
            pause = due - time.time()
            if pause > 0:
                time.sleep(pause)
            i = (k * stride) % rows + 1
            t0 = time.time()
            conn.execute("UPDATE doc SET body = format('row %%s of the flat-rate bench, updated', id) WHERE id = %s", (i,))
            f.write(f"{t0:.6f} {time.time() - t0:.6f}\n")

def rss(pid):
    vals = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(("VmRSS:", "VmHWM:")):
                    vals[line.split(":")[0]] = int(line.split()[1])
    except OSError:
        pass
    return vals.get("VmRSS", 0), vals.get("VmHWM", 0)

def sample(url, out, queue, pid, stopfile, limit_s, every_s):
    """Every every_s seconds until stopfile exists, and once after: the time, the server's snapshot (which transactions
    have ended: a store row's transaction is matched to the first sample that sees it ended),
    the queue's size on disk, the worker's VmRSS and VmHWM, the queue's last autovacuum and
    autoanalyze."""
    end = time.time() + float(limit_s)
    with psycopg.connect(url, autocommit=True) as conn, open(out, "w") as f:
        while time.time() < end:
            last = stopped(stopfile)   # one more sample after the worker's end, then stop
            t0 = time.time()
            snap, qbytes, av, aa = conn.execute(
                "SELECT pg_current_snapshot()::text, pg_total_relation_size(%s::regclass),"
                " coalesce(extract(epoch FROM last_autovacuum), 0), coalesce(extract(epoch FROM last_autoanalyze), 0)"
                " FROM pg_stat_user_tables WHERE relid = %s::regclass", (queue, queue)).fetchone()
            t1 = time.time()
            r, h = rss(pid)
            f.write(f"{(t0 + t1) / 2:.6f}\t{snap}\t{qbytes}\t{r}\t{h}\t{av}\t{aa}\n")
            f.flush()
            if last:
                break
            time.sleep(max(0.0, float(every_s) - (time.time() - t0)))

def pct(values, p):
    v = sorted(values)
    return v[min(len(v) - 1, int(round(p / 100 * (len(v) - 1))))] if v else float("nan")

def latency(path, t_from, t_to):
    """max and p99 (ms) and count of the statements that overlapped [t_from, t_to], and of all."""
    lines = [tuple(map(float, l.split())) for l in open(path) if l.strip()]
    inside = [lat for t, lat in lines if t <= t_to and t + lat >= t_from]
    def stats(xs):
        return {"n": len(xs), "max_ms": 1000 * max(xs) if xs else float("nan"), "p99_ms": 1000 * pct(xs, 99)}
    return {"during": stats(inside), "all": stats([lat for _, lat in lines])}

def describe_latency(js):
    r = json.loads(js)
    d, a = r["during"], r["all"]
    print(f"writer probe (an UPDATE of an unread column every 10 ms): {d['n']} statements overlapped"
          f" create_vectorizer, max wait {d['max_ms']:.0f} ms; all {a['n']}: max {a['max_ms']:.0f} ms, p99 {a['p99_ms']:.1f} ms")

def analyze(samples_path, xids_path, rows, meta_path):
    rows = int(rows)
    samples = []
    for line in open(samples_path):
        t, snap, q, r, h, av, aa = line.rstrip("\n").split("\t")
        xmin, xmax, xip = snap.split(":")
        samples.append((float(t), int(xmin), int(xmax), set(map(int, xip.split(","))) if xip else set(), int(q), int(r), int(h),
                        float(av), float(aa)))
    if not samples:
        sys.exit("no samples")
    epoch = samples[0][2] >> 32
    # Store rows per transaction; the xmin of a row is a 32-bit xid, the snapshot's are xid8.
    counts = {}
    for line in open(xids_path):
        x, n = line.split()
        counts[(epoch << 32) | int(x)] = int(n)
    # Each transaction's end: the first sample whose snapshot no longer shows it running. That
    # stays true in every later sample, so a binary search over the samples finds it.
    def ended(j, x):
        _, smin, smax, sxip, *_ = samples[j]
        return x < smin or (x < smax and x not in sxip)
    added = [0] * len(samples)
    unseen = 0
    for x, n in counts.items():
        lo, hi = 0, len(samples)
        while lo < hi:
            mid = (lo + hi) // 2
            if ended(mid, x):
                hi = mid
            else:
                lo = mid + 1
        if lo == len(samples):
            unseen += n
        else:
            added[lo] += n
    cum, c = [], 0
    for a in added:
        c += a
        cum.append(c)
    times = [s[0] for s in samples]
    total = cum[-1]
    first = next(i for i, v in enumerate(cum) if v > 0)

    def at(rows_done):
        """Time the store reached rows_done rows, interpolated between samples."""
        if rows_done <= cum[first]:
            return times[first]
        for i in range(first + 1, len(cum)):
            if cum[i] >= rows_done:
                c0, c1 = cum[i - 1], cum[i]
                return times[i - 1] + (rows_done - c0) / (c1 - c0) * (times[i] - times[i - 1])
        return times[-1]

    tenth = total / 10
    out = []
    for k in range(1, 11):
        lo_rows, hi_rows = max((k - 1) * tenth, cum[first]), k * tenth
        t0, t1 = at(lo_rows), at(hi_rows)
        rate = (hi_rows - lo_rows) / (t1 - t0) if t1 > t0 else float("inf")
        in_window = [s for s in samples if t0 <= s[0] <= t1] or [min(samples, key=lambda s: abs(s[0] - t1))]
        end_sample = min(samples, key=lambda s: abs(s[0] - t1))
        out.append({"tenth": k, "start_s": t0 - times[first], "seconds": t1 - t0, "rows_per_s": rate,
                    "rss_max_mib": max(s[5] for s in in_window) / 1024, "queue_mib_end": end_sample[4] / 2**20})
    med = statistics.median(o["rows_per_s"] for o in out)
    for o in out:
        o["ratio"] = o["rows_per_s"] / med
    ok_each = all(o["ratio"] >= 0.8 for o in out)
    ok_last = out[-1]["rows_per_s"] >= 0.9 * out[0]["rows_per_s"]
    meta = json.load(open(meta_path))
    t_end = at(total)
    qsizes = [s[4] for s in samples]
    # Autovacuum's runs on the queue during the drain, in seconds from the first stored row.
    def runs(col):
        seen = sorted({s[col] for s in samples if s[col] > 0})
        return [round(v - times[first], 1) for v in seen if v >= samples[0][0] - 1]
    result = dict(meta, stored=total, unseen=unseen, median_rows_per_s=med,
                  overall_rows_per_s=(total - cum[first]) / (t_end - times[first]),
                  first_row_after_s=times[first] - meta["worker_start"],
                  peak_rss_mib=max(s[6] for s in samples) / 1024,
                  queue_mib_max=max(qsizes) / 2**20, queue_mib_last=qsizes[-1] / 2**20,
                  rule_each=ok_each, rule_last=ok_last, tenths=out,
                  autovacuum_at_s=runs(7), autoanalyze_at_s=runs(8))
    print(f"{'tenth':>5} {'from s':>7} {'seconds':>8} {'rows/s':>8} {'/median':>8} {'RSS MiB':>8} {'queue MiB':>10}")
    for o in out:
        print(f"{o['tenth']:>5} {o['start_s']:>7.1f} {o['seconds']:>8.1f} {o['rows_per_s']:>8.0f} {o['ratio']:>8.2f}"
              f" {o['rss_max_mib']:>8.1f} {o['queue_mib_end']:>10.1f}")
    print(f"median tenth {med:.0f} rows/s; every tenth >= 0.8 of it: {'yes' if ok_each else 'NO'};"
          f" last/first {out[-1]['rows_per_s'] / out[0]['rows_per_s']:.2f} (>= 0.9: {'yes' if ok_last else 'NO'})")
    json.dump(result, open(os.path.join(os.path.dirname(samples_path), "result.json"), "w"), indent=1)

if __name__ == "__main__":
    cmd, *args = sys.argv[1:]
    if cmd == "latency":
        print(json.dumps(latency(args[0], float(args[1]), float(args[2]))))
    else:
        globals()[cmd](*args)
PY
py() { python3 -c "$HELPER" "$@"; }
now() { date +%s.%N; }

echo "load average: $(cut -d' ' -f1-3 /proc/loadavg) (other work on these cores skews rates)"
echo "client: $(nproc) cores, $(python3 --version), $("$PGVECTORIZER" --version 2>/dev/null || echo pgvectorizer)"
echo "flat_rate: $ROWS rows, -c $CONCURRENCY, $DIMS dimensions, fake server 0 ms, pre-analyze $PRE_ANALYZE, updates $UPDATES, limit ${LIMIT}s"

# --- database, fake server ---------------------------------------------------------------------
"${PSQL[@]}" -d postgres -c "DROP DATABASE IF EXISTS $DB" -c "CREATE DATABASE $DB"
"${PSQL[@]}" -d "$DB" -c "CREATE EXTENSION ai CASCADE" >/dev/null
"${PSQL[@]}" -d "$DB" -F ' ' -c "SELECT 'server: PostgreSQL', current_setting('server_version'),
    '| vector', (SELECT extversion FROM pg_extension WHERE extname = 'vector'),
    '| ai', (SELECT extversion FROM pg_extension WHERE extname = 'ai')"
# n: a column the vectorizer does not read, for the writers' probe during create_vectorizer.
"${PSQL[@]}" -d "$DB" <<SQL
CREATE TABLE doc (id int PRIMARY KEY, n int NOT NULL DEFAULT 0, body text NOT NULL);
INSERT INTO doc (id, body) SELECT i, format('row %s of the flat-rate bench, v0', i) FROM generate_series(1, $ROWS) AS i;
VACUUM (ANALYZE) doc;
CHECKPOINT;
SQL
start_fake 0 "$DIMS"

# --- create_vectorizer, with a writer probing the source --------------------------------------
rm -f "$OUT/writers.stop"
py writers "$URL" "$OUT/writers.tsv" "$OUT/writers.stop" "$ROWS" 900 &
SIDE_PIDS+=($!)
sleep 2
"${PSQL[@]}" -d "$DB" > "$OUT/create.out" <<SQL
SELECT extract(epoch FROM clock_timestamp());
SELECT ai.create_vectorizer('doc'::regclass,
    loading    => ai.loading_column('body'),
    chunking   => ai.chunking_none(),
    embedding  => ai.embedding_openai('text-embedding-3-small', $DIMS, base_url => 'http://127.0.0.1:$FAKE_PORT/v1'),
    scheduling => ai.scheduling_none(),
    indexing   => ai.indexing_none());
SELECT extract(epoch FROM clock_timestamp());
SQL
{ read -r CV_T0; read -r ID; read -r CV_T1; } < "$OUT/create.out"
sleep 2
touch "$OUT/writers.stop"
wait "${SIDE_PIDS[0]}"
SIDE_PIDS=()
CV_S=$(awk -v a="$CV_T0" -v b="$CV_T1" 'BEGIN { printf "%.2f", b - a }')
LAT=$(py latency "$OUT/writers.tsv" "$CV_T0" "$CV_T1")
QUEUE=$("${PSQL[@]}" -d "$DB" -c "SELECT format('%I.%I', queue_schema, queue_table) FROM ai.vectorizer WHERE id = $ID")
STORE=doc_embedding_store
sleep 1   # the statistics of create_vectorizer's session reach pg_stat when it ends
STATS=$("${PSQL[@]}" -d "$DB" -F ' ' -c "SELECT s.last_analyze IS NOT NULL, c.reltuples::bigint, c.relpages
    FROM pg_stat_user_tables s JOIN pg_class c ON c.oid = s.relid WHERE s.relid = '$QUEUE'::regclass")
read -r CV_ANALYZED CV_RELTUPLES CV_RELPAGES <<< "$STATS"
echo "create_vectorizer: ${CV_S} s; queue $QUEUE analyzed by it: $CV_ANALYZED (reltuples $CV_RELTUPLES, relpages $CV_RELPAGES)"
py describe_latency "$LAT"

case $PRE_ANALYZE in
    1) "${PSQL[@]}" -d "$DB" -c "ANALYZE $QUEUE" ;;
    # The state of a queue nobody has analyzed, as before create_vectorizer analyzed it.
    forget) "${PSQL[@]}" -d "$DB" -c "DELETE FROM pg_statistic WHERE starelid = '$QUEUE'::regclass" \
                -c "UPDATE pg_class SET reltuples = -1, relpages = 0 WHERE oid = '$QUEUE'::regclass" >/dev/null ;;
esac
"${PSQL[@]}" -d "$DB" -c "CHECKPOINT"
PENDING0=$("${PSQL[@]}" -d "$DB" -c "SELECT ai.vectorizer_queue_pending($ID, true)")
[ "$PENDING0" -eq "$ROWS" ] || die "the queue holds $PENDING0 rows, not $ROWS"
QUEUE_MIB0=$("${PSQL[@]}" -d "$DB" -c "SELECT round(pg_total_relation_size('$QUEUE') / 1048576.0, 1)")

# --- the drain ---------------------------------------------------------------------------------
run_worker() {   # $1: tag; sets WRC, WPID_T (timeout's pid) and the worker's start time W_T0
    local tag=$1 wpid=""
    W_T0=$(now)
    timeout -k 10 "$LIMIT" "$PGVECTORIZER" worker -d "$URL" -i "$ID" --once -c "$CONCURRENCY" > "$OUT/$tag.log" 2>&1 &
    WPID_T=$!
    for _ in $(seq 1 50); do wpid=$(pgrep -P "$WPID_T" | head -n1 || true); [ -n "$wpid" ] && break; sleep 0.1; done
    [ -n "$wpid" ] || die "the worker did not start"
    rm -f "$OUT/$tag.stop"
    py sample "$URL" "$OUT/$tag.samples" "$QUEUE" "$wpid" "$OUT/$tag.stop" "$((LIMIT + 60))" "$SAMPLE_S" &
    SIDE_PIDS+=($!)
    WRC=0
    wait "$WPID_T" || WRC=$?
    W_T1=$(now)
    touch "$OUT/$tag.stop"
}

if [ "$UPDATES" = 1 ]; then
    N_UPD=$((ROWS / 20))
    echo "updates: $N_UPD rows' body, $UPDATE_RATE/s from the worker's start"
    py updates "$URL" "$OUT/updates.tsv" "$ROWS" "$N_UPD" "$UPDATE_RATE" &
    UPD_PID=$!
fi
run_worker drain
echo "worker: rc $WRC, $(awk -v a="$W_T0" -v b="$W_T1" 'BEGIN { printf "%.1f", b - a }') s"
TAIL_S=""
if [ "$UPDATES" = 1 ]; then
    # The updates that came after the worker found the queue empty wait for a second pass.
    wait "$UPD_PID"
    UPD_T1=$(tail -n1 "$OUT/updates.tsv" | cut -d' ' -f1)
    LEFT=$("${PSQL[@]}" -d "$DB" -c "SELECT ai.vectorizer_queue_pending($ID, true)")
    echo "last update $(awk -v a="$W_T1" -v b="$UPD_T1" 'BEGIN { printf "%.1f", a - b }') s before the worker's end; $LEFT rows queued after it"
    T0=$(now)
    timeout -k 10 "$LIMIT" "$PGVECTORIZER" worker -d "$URL" -i "$ID" --once -c "$CONCURRENCY" > "$OUT/tail.log" 2>&1 || WRC=$?
    TAIL_S=$(awk -v a="$T0" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }')
    echo "second pass: $LEFT rows in $TAIL_S s, rc $WRC"
fi
for pid in "${SIDE_PIDS[@]}"; do wait "$pid" || true; done
SIDE_PIDS=()

# --- checks ------------------------------------------------------------------------------------
"${PSQL[@]}" -d "$DB" -F ' ' -c "SELECT xmin::text, count(*) FROM $STORE GROUP BY 1" > "$OUT/store.xids"
read -r PENDING ERRORS STORED DISTINCT_IDS WRONG QUEUE_MIB_END < <("${PSQL[@]}" -d "$DB" -F ' ' -c "
    SELECT ai.vectorizer_queue_pending($ID, true),
           (SELECT count(*) FROM ai._vectorizer_errors WHERE id = $ID),
           (SELECT count(*) FROM $STORE), (SELECT count(DISTINCT id) FROM $STORE),
           (SELECT count(*) FROM doc d LEFT JOIN $STORE s ON s.id = d.id WHERE s.chunk IS DISTINCT FROM d.body),
           round(pg_total_relation_size('$QUEUE') / 1048576.0, 1)")
UPD_LAT='{}'
[ "$UPDATES" != 1 ] || UPD_LAT=$(py latency "$OUT/updates.tsv" 0 1e12)
cat > "$OUT/meta.json" <<JSON
{"rows": $ROWS, "pre_analyze": "$PRE_ANALYZE", "updates": $UPDATES, "create_s": $CV_S,
 "create_analyzed": "$CV_ANALYZED", "create_reltuples": $CV_RELTUPLES, "writer": $LAT,
 "worker_start": $W_T0, "worker_s": $(awk -v a="$W_T0" -v b="$W_T1" 'BEGIN { print b - a }'), "worker_rc": $WRC,
 "tail_s": "${TAIL_S}", "pending": $PENDING, "errors": $ERRORS, "store_rows": $STORED, "store_ids": $DISTINCT_IDS,
 "chunk_not_body": $WRONG, "queue_mib_start": $QUEUE_MIB0, "queue_mib_end": $QUEUE_MIB_END,
 "update_latency": $UPD_LAT}
JSON

echo
py analyze "$OUT/drain.samples" "$OUT/store.xids" "$ROWS" "$OUT/meta.json"
python3 - "$OUT/result.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
w = r["writer"]["during"]
print()
print(f"worker: {r['worker_s']:.1f} s wall, first stored row after {r['first_row_after_s']:.1f} s,"
      f" {r['overall_rows_per_s']:.0f} rows/s from the first stored row to the last; peak RSS (VmHWM) {r['peak_rss_mib']:.1f} MiB")
print(f"create_vectorizer: {r['create_s']:.2f} s, queue analyzed by it: {r['create_analyzed']}"
      f" (reltuples {r['create_reltuples']}); queue statistics before the drain: {r['pre_analyze']};"
      f" autovacuum on the queue, seconds from the first stored row: analyze {r['autoanalyze_at_s']}, vacuum {r['autovacuum_at_s']}")
a = r["writer"]["all"]
print(f"writer during create_vectorizer: {w['n']} statements overlapped it, max wait {w['max_ms']:.0f} ms;"
      f" the probe's {a['n']} statements in all (2 s before to 2 s after): max {a['max_ms']:.0f} ms, p99 {a['p99_ms']:.1f} ms")
print(f"queue on disk: {r['queue_mib_start']} MiB after create_vectorizer, {r['queue_mib_max']:.1f} MiB at most"
      f" during the drain, {r['queue_mib_end']} MiB at the end")
if r["updates"]:
    u = r["update_latency"]["all"]
    print(f"updates: {u['n']} (5% of the rows), latency max {u['max_ms']:.0f} ms p99 {u['p99_ms']:.1f} ms;"
          f" second pass {r['tail_s']} s")
print(f"checks: queue pending {r['pending']}, errors {r['errors']}, store rows {r['store_rows']} ({r['store_ids']} ids),"
      f" rows whose stored chunk is not their body: {r['chunk_not_body']}, rows seen by no sample {r['unseen']}")
bad = r["worker_rc"] != 0 or r["pending"] != 0 or r["errors"] != 0 or r["store_ids"] != r["rows"] \
    or r["store_rows"] != r["rows"] or r["chunk_not_body"] != 0
print("load average at the end: " + " ".join(open("/proc/loadavg").read().split()[:3]))
sys.exit("FAILED: see the logs in " + sys.argv[1].rsplit("/", 1)[0] if bad else 0)
PY
