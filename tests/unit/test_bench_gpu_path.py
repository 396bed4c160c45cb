"""What bench/gpu_path.py computes without a GPU or processes: bf16 peaks by device name, an
encoder's FLOPs, and the worker part's reason to skip when no server answers."""

from __future__ import annotations

import importlib
import socket
import sys
from pathlib import Path
from types import ModuleType, SimpleNamespace

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"


def bench_module(name: str) -> ModuleType:
    if str(BENCH) not in sys.path:
        sys.path.insert(0, str(BENCH))
    return importlib.import_module(name)


@pytest.mark.parametrize(("name", "peak"), [
    ("NVIDIA H200", 989.0), ("NVIDIA H100 80GB HBM3", 989.0), ("NVIDIA H100 PCIe", 756.0),
    ("NVIDIA A100-SXM4-80GB", 312.0), ("NVIDIA L4", 121.0), ("NVIDIA L40S", 362.0),
    ("NVIDIA A10G", 70.0), ("Tesla T4", 65.0), ("Quadro P1000", None),
])
def test_bf16_peak_by_device_name(name: str, peak: float | None) -> None:
    assert bench_module("gpu_common").bf16_peak(name) == peak


def test_encoder_flops_counts_weights_and_attention() -> None:
    flops = bench_module("gpu_common").encoder_flops
    minilm = SimpleNamespace(hidden_size=384, intermediate_size=1536, num_hidden_layers=6)
    linear = 8 * 384 ** 2 + 4 * 384 * 1536  # 2 x the weights a token multiplies, per layer
    assert flops(minilm, [10]) == 6 * (10 * linear + 4 * 10 ** 2 * 384)
    # Attention grows with the square of a sequence's length, the rest linearly.
    assert flops(minilm, [10, 10]) == 2 * flops(minilm, [10])
    assert flops(minilm, [20]) > 2 * flops(minilm, [10])
    assert flops(minilm, []) == 0
    # About 2 x 21.3 M parameters a token, plus a little attention: ~22 MFLOP for 100 tokens.
    assert 21e6 < flops(minilm, [100]) / 100 < 23e6


def test_worker_part_skips_without_a_server(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("psycopg")
    with socket.socket() as sock:  # a port that nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setenv("PGHOST", "127.0.0.1")
    monkeypatch.setenv("PGPORT", str(port))
    url, reason = bench_module("gpu_path").worker_server()
    assert url is None
    assert f"no PostgreSQL server at host=127.0.0.1 port={port}" in reason
    assert "PostgreSQL binaries on PATH" in reason
