"""mistral/<model>: Mistral's POST /v1/embeddings, shaped like OpenAI's.

The key is MISTRAL_API_KEY (or api_key_name), a bearer token for https://api.mistral.ai/v1
or MISTRAL_API_BASE (the operator's setting); a config's extra_options.api_base gets it only
where PGVECTORIZER_KEY_ENDPOINTS lists it. codestral-embed takes an output size
(extra_options.dimensions, sent as output_dimension); mistral-embed makes 1024 numbers.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from pgvectorizer.embedders.http import (
    BatchedHTTPEmbedder,
    decode_data,
    key_refusal,
    make_client,
    number_vector,
    post_json,
)
from pgvectorizer.embedders.litellm.common import (
    Spec,
    client_env,
    endpoint_url,
    operator_url,
    opt_dimensions,
    opt_str,
    require_key,
)

DEFAULT_BASE_URL = "https://api.mistral.ai/v1"
BASE_URL_ENV = "MISTRAL_API_BASE"
DEFAULT_API_KEY_NAME = "MISTRAL_API_KEY"
OPTIONS = frozenset({"api_base", "dimensions", "output_dimension", "encoding_format",
                     "output_dtype"})
MAX_INPUTS = 512  # texts per request
# Tokens per request, Mistral's limit summed over the texts. Counted as UTF-8 bytes, as for
# OpenAI: a token covers at least one byte, so bytes never undercount.
MAX_REQUEST_TOKENS = 16_384


def base_url(spec: Spec, env: Mapping[str, str]) -> str:
    """extra_options.api_base, else MISTRAL_API_BASE, else Mistral's own."""
    return (opt_str(spec, "api_base") or operator_url(env, BASE_URL_ENV)
            or DEFAULT_BASE_URL).rstrip("/")


def server_targets(spec: Spec, env: Mapping[str, str]) -> list[tuple[str, list[str]]]:
    """The URL requests go to, with the endpoints the operator allows by default."""
    return [(endpoint_url(base_url(spec, env), "/embeddings"), _operator_defaults(env))]


def _operator_defaults(env: Mapping[str, str]) -> list[str]:
    return [operator_url(env, BASE_URL_ENV) or DEFAULT_BASE_URL]


class MistralEmbedder(BatchedHTTPEmbedder):
    """Embeds through Mistral's /embeddings; thread-safe, one connection pool."""

    max_inputs = MAX_INPUTS
    max_request_bytes = MAX_REQUEST_TOKENS

    def __init__(self, spec: Spec, env: Mapping[str, str]) -> None:
        self.spec = spec
        self.dimensions = spec.dimensions
        self.output_dimension = opt_dimensions(spec, "dimensions", "output_dimension")
        # Vectors that fit a vector column: floats, one number per dimension.
        opt_str(spec, "encoding_format", ("float",))
        opt_str(spec, "output_dtype", ("float",))
        self.base_url = base_url(spec, env)
        self.url = endpoint_url(self.base_url, "/embeddings")
        self.api_key_name, key = require_key(
            spec, env, [spec.api_key_name or DEFAULT_API_KEY_NAME], url=self.url,
            default_name=DEFAULT_API_KEY_NAME, default_urls=_operator_defaults(env))
        self._client = make_client(client_env(spec, env), {"Authorization": f"Bearer {key}"})
        self._what = f"Mistral model {spec.model} at {self.base_url}"
        self._refusal = key_refusal(self._what, self.api_key_name)

    def _request(self, texts: Sequence[str]) -> np.ndarray:
        payload: dict[str, Any] = {"model": self.spec.model, "input": list(texts),
                                   "encoding_format": "float"}
        if self.output_dimension:
            payload["output_dimension"] = self.dimensions
        body = post_json(self._client, self.url, payload, what=self._what,
                         refusal=self._refusal)
        return decode_data(body, len(texts), self.dimensions, self._what,
                           lambda embedding: number_vector(self._what, embedding))
