"""Voyage AI's embeddings API: POST {base_url}/embeddings with a list of texts.

Our own client rather than the `voyageai` package: the wire format is one small JSON POST, and
the package would add a dependency tree (and its tokenizer downloads) for nothing we use.

The endpoint is https://api.voyageai.com/v1, or VOYAGE_BASE_URL from the environment (the
operator's setting, like OLLAMA_HOST for Ollama). A config's own "base_url" (not a parameter
of ai.embedding_voyageai, which keeps pgai's signature; add it to the jsonb) is the config
author's: like embedding_openai's base_url, a key goes there only where
PGVECTORIZER_KEY_ENDPOINTS lists it, and a server-side call only where the operator allows.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from pgvectorizer.embedders import config_dimensions, config_str
from pgvectorizer.embedders.http import (
    BatchedHTTPEmbedder,
    decode_data,
    key_refusal,
    make_client,
    number_vector,
    post_json,
)
from pgvectorizer.endpoints import read_api_key
from pgvectorizer.errors import ApiKeyMissing, ConfigError

DEFAULT_BASE_URL = "https://api.voyageai.com/v1"
BASE_URL_ENV = "VOYAGE_BASE_URL"
DEFAULT_API_KEY_NAME = "VOYAGE_API_KEY"
MAX_INPUTS = 1000  # texts per request, Voyage's limit
# Tokens per request, Voyage's limit per model (docs.voyageai.com/docs/embeddings). Counted as
# UTF-8 bytes, as for OpenAI: a token covers at least one byte, so bytes never undercount.
_TOKENS_1M = ("voyage-3.5-lite", "voyage-3-lite")
_TOKENS_320K = ("voyage-3.5", "voyage-3", "voyage-2")
DEFAULT_REQUEST_TOKENS = 120_000  # every other model (voyage-3-large, voyage-code-3, ...)
# What Voyage returns for each output_dtype: float and the quantized integers are one number
# per dimension and fit a vector column; binary and ubinary are bit-packed and do not.
STORABLE_DTYPES = ("float", "int8", "uint8")


def max_request_tokens(model: str) -> int:
    """Voyage's limit on a request's tokens, summed over its texts, for a model."""
    if model in _TOKENS_1M:
        return 1_000_000
    if model in _TOKENS_320K:
        return 320_000
    return DEFAULT_REQUEST_TOKENS


def operator_base_url(env: Mapping[str, str]) -> str:
    """VOYAGE_BASE_URL without a trailing /, else Voyage's own endpoint."""
    return (env.get(BASE_URL_ENV) or DEFAULT_BASE_URL).rstrip("/")


def voyage_base_url(config: Mapping[str, Any], env: Mapping[str, str]) -> str:
    """The config's base_url, else the operator's (operator_base_url)."""
    return config_str(config, "base_url", operator_base_url(env)).rstrip("/")


class VoyageAIEmbedder(BatchedHTTPEmbedder):
    """Embeds through Voyage's /embeddings; thread-safe, one connection pool."""

    max_inputs = MAX_INPUTS

    def __init__(self, config: Mapping[str, Any], env: Mapping[str, str]) -> None:
        self.model = config_str(config, "model")
        self.dimensions = config_dimensions(config)
        self.api_key_name = config_str(config, "api_key_name", DEFAULT_API_KEY_NAME)
        self.base_url = voyage_base_url(config, env)
        self.input_type = _optional(config, "input_type", ("query", "document"))
        self.output_dtype = _optional(config, "output_dtype", STORABLE_DTYPES)
        output_dimension = config.get("output_dimension")
        if output_dimension is not None and (isinstance(output_dimension, bool)
                                             or output_dimension != self.dimensions):
            raise ConfigError(f"embedding config (voyageai): output_dimension "
                              f"{output_dimension!r} differs from dimensions {self.dimensions}")
        self.output_dimension = output_dimension
        # The operator's VOYAGE_BASE_URL stands in for Voyage's endpoint (a proxy, or a test
        # server): VOYAGE_API_KEY goes there and nowhere else.
        key = read_api_key(env, self.api_key_name, base_url=self.base_url,
                           default_name=DEFAULT_API_KEY_NAME,
                           default_url=operator_base_url(env))
        if not key:
            raise ApiKeyMissing(
                f"{self.api_key_name} is not set: the vectorizer's embedding config reads the "
                f"Voyage AI key from this environment variable (set it in the worker's "
                f"environment or a .env file)")
        self._client = make_client(env, {"Authorization": f"Bearer {key}"})
        self._url = f"{self.base_url}/embeddings"
        self._what = f"Voyage AI model {self.model} at {self.base_url}"
        self._refusal = key_refusal(self._what, self.api_key_name)
        self.max_request_bytes = max_request_tokens(self.model)

    def _request(self, texts: Sequence[str]) -> np.ndarray:
        payload: dict[str, Any] = {"model": self.model, "input": list(texts),
                                   "input_type": self.input_type, "truncation": True}
        if self.output_dimension is not None:
            payload["output_dimension"] = self.output_dimension
        if self.output_dtype is not None:
            payload["output_dtype"] = self.output_dtype
        body = post_json(self._client, self._url, payload, what=self._what, refusal=self._refusal)
        return self._decode(body, len(texts))

    def _decode(self, body: Any, n: int) -> np.ndarray:
        # int8 and uint8 answers are whole numbers, stored as they are.
        return decode_data(body, n, self.dimensions, self._what,
                           lambda embedding: number_vector(self._what, embedding))


def _optional(config: Mapping[str, Any], key: str, allowed: tuple[str, ...]) -> str | None:
    value = config.get(key)
    if value is not None and value not in allowed:
        raise ConfigError(f"embedding config (voyageai): {key} must be one of "
                          f"{', '.join(allowed)}, got {value!r}")
    return value if isinstance(value, str) else None
