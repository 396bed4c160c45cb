"""What embeds the texts on a GPU worker: a local sentence-transformers model, or Ollama.

A backend serves a fixed list of model names (as clients ask for them), knows each one's native
vector size, and embeds a list of texts in one call, batching inside. Its errors say who is to
blame: errors.EmbeddingError(transient=True) is worth retrying anywhere, transient=False blames
the texts, and errors.ConfigError means this worker cannot embed at all (it stops).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Protocol

import numpy as np

from pgvectorizer.defaults import GPU_BACKENDS
from pgvectorizer.errors import ConfigError, EmbeddingError, MissingModel

logger = logging.getLogger(__name__)

SENTENCE_TRANSFORMERS, OLLAMA = GPU_BACKENDS

CUDA_BATCH_SIZE = 256  # texts per forward pass on a GPU (fp16 MiniLM-sized models fit easily)
CPU_BATCH_SIZE = 64  # texts per forward pass on a CPU, where bigger batches gain nothing

PROBE_TEXT = "dimensions probe"  # embedded once per Ollama model at start-up to learn its size
OLLAMA_STARTUP_WAIT = 60.0  # seconds to wait for an Ollama that is still starting
OLLAMA_STARTUP_RETRY = 2.0  # seconds between tries meanwhile


class Backend(Protocol):
    """Embeds texts with one of its models. Called from one worker thread at a time."""

    name: str
    models: list[str]

    def dimensions(self, model: str) -> int:
        """The native size of the model's vectors."""
        ...

    def embed(self, model: str, texts: list[str]) -> tuple[np.ndarray, int]:
        """float32 (len(texts), dimensions(model)) normalized vectors, and the input tokens."""
        ...

    def close(self) -> None:
        """Release connections; models stay cached for the process."""
        ...


def make_backend(name: str, models: Sequence[str], *, device: str = "auto",
                 batch_size: int | None = None, ollama_url: str | None = None,
                 env: Mapping[str, str] | None = None) -> Backend:
    """The named backend (sentence-transformers or ollama) with its models loaded or probed.

    Raises ConfigError when the name is unknown or a model cannot be served.
    """
    kind = name.strip().lower().replace("_", "-")
    if kind == SENTENCE_TRANSFORMERS:
        return SentenceTransformersBackend(models, device=device, batch_size=batch_size)
    if kind == OLLAMA:
        return OllamaBackend(models, ollama_url, env=env)
    raise ConfigError(f"unknown backend {name!r}; expected one of {', '.join(GPU_BACKENDS)}")


def _served(models: Sequence[str]) -> list[str]:
    names = list(dict.fromkeys(m.strip() for m in models if m.strip()))
    if not names:
        raise ConfigError("a GPU worker needs at least one model to serve")
    return names


# --- sentence-transformers --------------------------------------------------------------------

class SentenceTransformersBackend:
    """Local models through embedders/sentence_transformers.py's process-wide cache: fp16 on
    CUDA, CPU when device=auto finds no GPU.

    pipelined (default: on CUDA) runs the forward passes itself instead of through
    model.encode, so that the GPU does not wait on the host between passes: a thread tokenizes
    the next pass while this one is launched, the token ids travel from pinned memory without
    blocking, and the vectors stay on the GPU until one copy back at the end of the call.
    """

    name = SENTENCE_TRANSFORMERS

    def __init__(self, models: Sequence[str], device: str = "auto",
                 batch_size: int | None = None, normalize: bool = True,
                 pipelined: bool | None = None) -> None:
        from pgvectorizer.embedders import sentence_transformers as st

        self.models = _served(models)
        self.device = st.resolve_device(device)
        if batch_size is None:
            batch_size = CUDA_BATCH_SIZE if self.device.startswith("cuda") else CPU_BATCH_SIZE
        if batch_size < 1:
            raise ConfigError(f"batch size must be at least 1, got {batch_size}")
        self.normalize = normalize
        # On a CPU the forward pass takes the cores that tokenizing ahead would use, so
        # model.encode stays the path there.
        self.pipelined = self.device.startswith("cuda") if pipelined is None else pipelined
        # One thread: a fast tokenizer must not be used by two threads at once ("Already
        # borrowed"), and one pass ahead is all the GPU needs. Within a call the tokenizer
        # spreads over the cores itself, unless TOKENIZERS_PARALLELISM=false.
        self._tokenizer_thread = (ThreadPoolExecutor(1, thread_name_prefix="tokenize")
                                  if self.pipelined else None)
        self._encoders: dict[str, Any] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._sizes: dict[str, int] = {}
        # Lowered per model after CUDA runs out of memory, and kept low: the memory was taken
        # by something else on the GPU, and one smaller pass costs less than one failed pass.
        self._batch_sizes: dict[str, int] = {}
        for model in self.models:
            encoder: Any = st.load_shared(model, self.device)
            size = st.output_size(encoder)
            if size is None:
                size = int(np.asarray(encoder.encode([PROBE_TEXT])).shape[-1])
            if self.pipelined:
                encoder.eval()  # model.encode does this on every call; the pipeline once
            self._encoders[model] = encoder
            self._locks[model] = st.encode_lock(encoder)
            self._sizes[model] = size
            self._batch_sizes[model] = batch_size
            logger.info("model %s on %s: %d dimensions, batches of %d%s", model, self.device,
                        size, batch_size, ", pipelined" if self.pipelined else "")

    def dimensions(self, model: str) -> int:
        return self._sizes[model]

    def batch_size(self, model: str) -> int:
        """Texts per forward pass for the model now (lower after out-of-memory errors)."""
        return self._batch_sizes[model]

    def embed(self, model: str, texts: list[str]) -> tuple[np.ndarray, int]:
        """In passes of batch_size texts, in the order given: texts sorted by length (as
        packing hands them over) pad little."""
        encoder = self._encoders[model]
        out = np.empty((len(texts), self._sizes[model]), dtype=np.float32)
        tokens = 0
        start = 0
        pipeline = (_Pipeline(encoder, self.device, self._tokenizer_thread, self.normalize)
                    if self._tokenizer_thread is not None else None)
        with self._locks[model]:
            try:
                while start < len(texts):
                    size = self._batch_sizes[model]
                    chunk = texts[start:start + size]
                    try:
                        if pipeline is not None:
                            tokens += pipeline.run(start, chunk,
                                                   texts[start + size:start + 2 * size])
                        else:
                            vectors = encoder.encode(chunk, batch_size=size,
                                                     normalize_embeddings=self.normalize,
                                                     convert_to_numpy=True,
                                                     show_progress_bar=False)
                            tokens += _count_tokens(encoder, chunk)
                            out[start:start + len(chunk)] = np.asarray(vectors,
                                                                       dtype=np.float32)
                    except Exception as exc:
                        _raise_unless_out_of_memory(exc, model, self.device, len(chunk))
                        _free_cuda_memory()
                        if size == 1:
                            raise EmbeddingError(f"{model} ran out of GPU memory on "
                                                 f"{self.device} even one text at a time",
                                                 transient=True) from exc
                        self._batch_sizes[model] = size // 2
                        logger.warning("%s ran out of GPU memory in a batch of %d texts; "
                                       "batches of %d from now on", model, size, size // 2)
                        continue
                    start += len(chunk)
                if pipeline is not None:
                    try:
                        pipeline.collect(out)
                    except Exception as exc:
                        # Kernels run behind the host: their errors show at this copy.
                        _raise_unless_out_of_memory(exc, model, self.device, len(texts))
                        raise EmbeddingError(f"{model} ran out of GPU memory on {self.device} "
                                             "copying the vectors back", transient=True
                                             ) from exc
            finally:
                if pipeline is not None:
                    pipeline.close()
        return out, tokens

    def close(self) -> None:
        """Nothing to release: the models stay cached for the process (the tokenizer
        thread too, idle)."""


def _raise_unless_out_of_memory(exc: Exception, model: str, device: str, texts: int) -> None:
    """Raises what a failed pass means for the worker; returns for CUDA out of memory."""
    if _device_broken(exc):
        # The GPU's state is gone (an illegal access, a lost device): every later batch would
        # fail too, so this worker stops and gives its tasks back rather than fail them as if
        # the texts were to blame.
        raise ConfigError(f"{model} on {device} hit a device error; this worker stops: "
                          f"{type(exc).__name__}: {exc}") from exc
    if not _out_of_memory(exc):
        # Tokenizer and model errors come from the texts as far as we can tell.
        raise EmbeddingError(f"{model} failed on {texts} texts: {type(exc).__name__}: {exc}",
                             transient=False) from exc


class _Pipeline:
    """The forward passes of one embed() call, with the tokenizer one pass ahead.

    Each pass is launched without waiting for the one before (CUDA runs kernels behind the
    host), so the host's work for pass i+1 (tokenizing, copying ids, launching kernels) hides
    behind the GPU's work on pass i; only collect() waits for the GPU.
    """

    def __init__(self, encoder: Any, device: str, thread: ThreadPoolExecutor,
                 normalize: bool) -> None:
        import torch

        self._torch = torch
        self._encoder = encoder
        self._device = torch.device(device)
        self._thread = thread
        self._normalize = normalize
        self._pin = self._device.type == "cuda"
        # The next pass being tokenized: (its first text's index, its length, the future).
        self._ahead: tuple[int, int, Future[tuple[dict[str, Any], int]]] | None = None
        self._done: list[tuple[int, Any]] = []  # (first text's index, vectors on the device)

    def run(self, start: int, chunk: list[str], following: list[str]) -> int:
        """Launches the pass over chunk (texts[start:...]), tokenizes following meanwhile;
        returns the pass's tokens."""
        features, tokens = self._features(start, chunk)
        if following:
            self._ahead = (start + len(chunk), len(following),
                           self._thread.submit(_tokenize, self._encoder, following, self._pin))
        torch = self._torch
        with torch.inference_mode():
            # From pinned memory these copies queue on the stream and return at once.
            on_device = {k: v.to(self._device, non_blocking=True)
                         if isinstance(v, torch.Tensor) else v for k, v in features.items()}
            vectors = self._encoder(on_device)["sentence_embedding"].float()
            if self._normalize:
                vectors = torch.nn.functional.normalize(vectors, p=2, dim=1)
        self._done.append((start, vectors))
        return tokens

    def _features(self, start: int, chunk: list[str]) -> tuple[dict[str, Any], int]:
        ahead, self._ahead = self._ahead, None
        if ahead is not None:
            if ahead[:2] == (start, len(chunk)):
                return ahead[2].result()
            # Tokenized for a pass of another size (the batch shrank after running out of
            # memory): wait for it all the same, as the tokenizer is not to be shared.
            _wait_quietly(ahead[2])
        return self._thread.submit(_tokenize, self._encoder, chunk, self._pin).result()

    def collect(self, out: np.ndarray) -> None:
        """Copies every pass's vectors into out (one copy back, which waits for the GPU)."""
        if not self._done:
            return
        host = self._torch.cat([v for _, v in self._done]).cpu().numpy()
        row = 0
        for start, vectors in self._done:
            n = int(vectors.shape[0])
            out[start:start + n] = host[row:row + n]
            row += n

    def close(self) -> None:
        """Waits for a pass still being tokenized, so the tokenizer is free for others."""
        if self._ahead is not None:
            _wait_quietly(self._ahead[2])
            self._ahead = None
        self._done.clear()


def _tokenize(encoder: Any, texts: list[str], pin: bool) -> tuple[dict[str, Any], int]:
    """The model's features for texts (pinned for a non-blocking copy to CUDA) and their
    tokens, counted from the same attention mask the model reads."""
    tokenize = getattr(encoder, "preprocess", None) or encoder.tokenize
    features = dict(tokenize(texts))
    tokens = int(features["attention_mask"].sum())
    if pin:
        features = {k: v.pin_memory() if hasattr(v, "pin_memory") else v
                    for k, v in features.items()}
    return features, tokens


def _wait_quietly(future: Future[Any]) -> None:
    # Waits without raising: its error, if any, is raised again when that pass (or a smaller
    # one over the same texts) tokenizes anew.
    future.exception()


def _count_tokens(encoder: Any, texts: list[str]) -> int:
    # The attention mask marks the tokens the model really read (after truncation at its
    # max_seq_length); with a fast tokenizer this costs little next to the forward pass.
    # sentence-transformers 6 calls it preprocess (tokenize warns); 3 to 5 only tokenize.
    tokenize = getattr(encoder, "preprocess", None) or encoder.tokenize
    return int(tokenize(texts)["attention_mask"].sum())


def _device_broken(exc: BaseException) -> bool:
    # "CUDA error: an illegal memory access", "cuDNN error", "device-side assert": the CUDA
    # context cannot be used again in this process. Out of memory is not among them.
    text = str(exc)
    return (isinstance(exc, RuntimeError) and not _out_of_memory(exc)
            and ("CUDA error" in text or "cuDNN" in text or "device-side assert" in text))


def _out_of_memory(exc: BaseException) -> bool:
    # torch.cuda.OutOfMemoryError is a RuntimeError; older torch raises a plain one.
    return isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower()


def _free_cuda_memory() -> None:
    try:
        import torch
    except ImportError:
        return
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


# --- Ollama -------------------------------------------------------------------------------------

class OllamaBackend:
    """Models served by an Ollama server, through embedders/ollama.py's OllamaEmbedder.

    Token counts are 0: OllamaEmbedder keeps no prompt_eval_count, and reading it here would
    mean a second copy of its request code.
    """

    name = OLLAMA

    def __init__(self, models: Sequence[str], base_url: str | None = None, *,
                 env: Mapping[str, str] | None = None,
                 startup_wait: float = OLLAMA_STARTUP_WAIT) -> None:
        from pgvectorizer.embedders.ollama import OllamaEmbedder, ollama_base_url

        env = dict(os.environ) if env is None else env
        self.models = _served(models)
        # Read as Ollama reads OLLAMA_HOST: "gpu-box" and "gpu-box:11434" are fine too.
        self.base_url = ollama_base_url({}, {**env, "OLLAMA_HOST": base_url} if base_url else env)
        self._embedders: dict[str, OllamaEmbedder] = {}
        for model in self.models:
            size = _probe_ollama(self.base_url, model, env, startup_wait)
            self._embedders[model] = OllamaEmbedder(
                {"implementation": "ollama", "model": model, "dimensions": size,
                 "base_url": self.base_url}, env)
            logger.info("Ollama model %s at %s: %d dimensions", model, self.base_url, size)

    def dimensions(self, model: str) -> int:
        return self._embedders[model].dimensions

    def embed(self, model: str, texts: list[str]) -> tuple[np.ndarray, int]:
        try:
            return self._embedders[model].embed(texts), 0
        except EmbeddingError as exc:
            if exc.status == 404:
                # The model went away from the server (ollama rm): no text is to blame.
                raise MissingModel(str(exc)) from exc
            raise

    def close(self) -> None:
        for embedder in self._embedders.values():
            embedder.close()


def _probe_ollama(base_url: str, model: str, env: Mapping[str, str], wait: float) -> int:
    """The size of the model's vectors, from one short text; waits up to `wait` seconds for a
    server that is still starting. ConfigError when the model cannot be used."""
    from pgvectorizer.embedders.http import make_client, post_json

    what = f"Ollama model {model} at {base_url}"

    def refusal(status: int, message: str) -> str:
        if status == 404:
            return f"{what}: the model is not there ({message}); run `ollama pull {model}`"
        return f"{what} refused the probe ({status}): {message}"

    deadline = time.monotonic() + wait
    with make_client(env) as client:
        while True:
            try:
                body = post_json(client, f"{base_url}/api/embed",
                                 {"model": model, "input": [PROBE_TEXT]},
                                 what=what, refusal=refusal)
                break
            except EmbeddingError as exc:
                if not exc.transient:
                    raise (MissingModel if exc.status == 404 else ConfigError)(str(exc)) from exc
                if time.monotonic() + OLLAMA_STARTUP_RETRY > deadline:
                    raise ConfigError(f"{exc} (gave up after {wait:g} s)") from exc
                logger.info("%s: not answering yet (%s); trying again", what, exc)
                time.sleep(OLLAMA_STARTUP_RETRY)
    embeddings = body.get("embeddings") if isinstance(body, dict) else None
    if (not isinstance(embeddings, list) or len(embeddings) != 1
            or not isinstance(embeddings[0], list) or not embeddings[0]):
        raise ConfigError(f"{what} answered the probe without an embedding: is it an "
                          "embedding model?")
    return len(embeddings[0])
