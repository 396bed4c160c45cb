"""Ollama's native embeddings endpoint, POST {base}/api/embed."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

import numpy as np

from pgvectorizer.embedders import config_dimensions, config_str
from pgvectorizer.embedders.http import (
    BatchedHTTPEmbedder,
    count_error,
    dimension_error,
    make_client,
    post_json,
    snippet,
)
from pgvectorizer.errors import ConfigError, ProviderError

DEFAULT_HOST = "http://localhost:11434"
DEFAULT_PORT = 11434  # Ollama's port, assumed when OLLAMA_HOST names only a host
# Texts per request: Ollama often runs on a CPU, and a request must finish within the HTTP
# timeout (60 s by default), so requests stay far smaller than OpenAI's.
MAX_INPUTS = 256
MAX_REQUEST_BYTES = 1_000_000  # UTF-8 bytes of input per request, for the same reason


def ollama_base_url(config: Mapping[str, Any], env: Mapping[str, str]) -> str:
    """config base_url, else OLLAMA_HOST (scheme and port optional, as Ollama reads it), else
    localhost."""
    base = config.get("base_url")
    if isinstance(base, str) and base:
        return base.rstrip("/")
    host = (env.get("OLLAMA_HOST") or "").strip()
    if not host:
        return DEFAULT_HOST
    if "://" not in host:
        # "0.0.0.0:11434" or "myhost": Ollama's own client reads these as http, port 11434.
        host = "http://" + host
        parts = urlsplit(host)
        try:
            port = parts.port
        except ValueError:
            raise ConfigError(f"OLLAMA_HOST is not a host[:port] or URL: {host!r}") from None
        if port is None:
            host = f"{parts.scheme}://{parts.netloc}:{DEFAULT_PORT}{parts.path}"
    return host.rstrip("/")


class OllamaEmbedder(BatchedHTTPEmbedder):
    """Embeds with a model served by Ollama; thread-safe, one connection pool."""

    max_inputs = MAX_INPUTS
    max_request_bytes = MAX_REQUEST_BYTES

    def __init__(self, config: Mapping[str, Any], env: Mapping[str, str]) -> None:
        self.model = config_str(config, "model")
        self.dimensions = config_dimensions(config)
        self.base_url = ollama_base_url(config, env)
        options = config.get("options")
        if options is not None and not isinstance(options, Mapping):
            raise ConfigError(f"embedding config: ollama options must be an object, "
                              f"got {options!r}")
        self.options = dict(options) if options else None
        keep_alive = config.get("keep_alive")
        self.keep_alive = keep_alive if keep_alive not in (None, "") else None
        self._client = make_client(env)
        self._url = f"{self.base_url}/api/embed"
        self._what = f"Ollama model {self.model} at {self.base_url}"

    def _request(self, texts: Sequence[str]) -> np.ndarray:
        payload: dict[str, Any] = {"model": self.model, "input": list(texts)}
        if self.options is not None:
            payload["options"] = self.options
        if self.keep_alive is not None:
            payload["keep_alive"] = self.keep_alive
        body = post_json(self._client, self._url, payload, what=self._what, refusal=self._refusal)
        embeddings = body.get("embeddings") if isinstance(body, dict) else None
        if not isinstance(embeddings, list) or len(embeddings) != len(texts):
            got = len(embeddings) if isinstance(embeddings, list) else "no"
            raise count_error(self._what, got, len(texts))
        try:
            vectors = np.asarray(embeddings, dtype=np.float32)
        except (ValueError, TypeError) as exc:
            # Rows of unequal length (or non-numbers) cannot make one array.
            sizes = sorted({len(e) for e in embeddings if isinstance(e, list)})
            raise ProviderError(f"{self._what} answered with embeddings that are not numbers "
                                f"of one size (sizes {snippet(str(sizes))})") from exc
        if vectors.ndim != 2:
            raise ProviderError(f"{self._what} answered with embeddings that are not lists of "
                                f"numbers")
        if vectors.shape[1] != self.dimensions:
            raise dimension_error(self._what, vectors.shape[1], self.dimensions)
        return vectors

    def _refusal(self, status: int, message: str) -> str:
        if status == 404:
            return (f"{self._what}: the model is not there ({message}); run `ollama pull "
                    f"{self.model}` on that server")
        return f"{self._what} refused the request ({status}): {message}"
