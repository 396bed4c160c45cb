"""cohere/<model>: Cohere's POST /v2/embed.

Texts go as search documents unless extra_options.input_type says otherwise (LiteLLM's
default too); vectors are asked for as floats. The key is COHERE_API_KEY (or api_key_name),
sent as a bearer token to https://api.cohere.com, or to COHERE_API_BASE, the operator's
setting; a config's extra_options.api_base is its author's, so the key goes there only where
PGVECTORIZER_KEY_ENDPOINTS lists it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from pgvectorizer.embedders.http import (
    BatchedHTTPEmbedder,
    key_refusal,
    make_client,
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
    vectors_of,
)

DEFAULT_BASE_URL = "https://api.cohere.com"
BASE_URL_ENV = "COHERE_API_BASE"
DEFAULT_API_KEY_NAME = "COHERE_API_KEY"
OPTIONS = frozenset({"api_base", "input_type", "truncate", "dimensions"})
INPUT_TYPES = ("search_document", "search_query", "classification", "clustering")
TRUNCATE = ("NONE", "START", "END")
MAX_INPUTS = 96  # texts per request, Cohere's limit
# Cohere truncates each text to the model's context; a request has no token limit of its
# own. The bound keeps one request's body reasonable.
MAX_REQUEST_BYTES = 4_000_000


def base_url(spec: Spec, env: Mapping[str, str]) -> str:
    """extra_options.api_base, else COHERE_API_BASE, else Cohere's own root."""
    return (opt_str(spec, "api_base") or operator_url(env, BASE_URL_ENV)
            or DEFAULT_BASE_URL).rstrip("/")


def embed_url(base: str) -> str:
    """The /v2/embed URL below an API root (or the full URL as given)."""
    base = base.rstrip("/")
    if base.endswith("/embed"):
        return base
    return endpoint_url(base, "/v2") + "/embed"


def server_targets(spec: Spec, env: Mapping[str, str]) -> list[tuple[str, list[str]]]:
    """The URL requests go to, with the endpoints the operator allows by default."""
    return [(embed_url(base_url(spec, env)), _operator_defaults(spec, env))]


def _operator_defaults(spec: Spec, env: Mapping[str, str]) -> list[str]:
    # The operator's COHERE_API_BASE stands in for Cohere's endpoint; a config's api_base
    # is nobody's default.
    return [operator_url(env, BASE_URL_ENV) or DEFAULT_BASE_URL]


class CohereEmbedder(BatchedHTTPEmbedder):
    """Embeds through Cohere's /v2/embed; thread-safe, one connection pool."""

    max_inputs = MAX_INPUTS
    max_request_bytes = MAX_REQUEST_BYTES

    def __init__(self, spec: Spec, env: Mapping[str, str]) -> None:
        self.spec = spec
        self.dimensions = spec.dimensions
        self.input_type = opt_str(spec, "input_type", INPUT_TYPES) or "search_document"
        self.truncate = opt_str(spec, "truncate", TRUNCATE)
        # embed-v4.0 makes vectors of 256, 512, 1024 or 1536 numbers; v3 models one size.
        self.output_dimension = opt_dimensions(spec) or spec.model.startswith("embed-v4")
        self.base_url = base_url(spec, env)
        self.url = embed_url(self.base_url)
        self.api_key_name, key = require_key(
            spec, env, [spec.api_key_name or DEFAULT_API_KEY_NAME], url=self.url,
            default_name=DEFAULT_API_KEY_NAME, default_urls=_operator_defaults(spec, env))
        self._client = make_client(client_env(spec, env), {"Authorization": f"Bearer {key}"})
        self._what = f"Cohere model {spec.model} at {self.base_url}"
        self._refusal = key_refusal(self._what, self.api_key_name)

    def _request(self, texts: Sequence[str]) -> np.ndarray:
        payload: dict[str, Any] = {"model": self.spec.model, "texts": list(texts),
                                   "input_type": self.input_type, "embedding_types": ["float"]}
        if self.truncate is not None:
            payload["truncate"] = self.truncate
        if self.output_dimension:
            payload["output_dimension"] = self.dimensions
        body = post_json(self._client, self.url, payload, what=self._what,
                         refusal=self._refusal)
        embeddings = body.get("embeddings") if isinstance(body, dict) else None
        floats = embeddings.get("float") if isinstance(embeddings, dict) else None
        return vectors_of(floats, len(texts), self.dimensions, self._what)

