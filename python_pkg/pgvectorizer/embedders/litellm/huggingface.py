"""huggingface/<model>: Hugging Face's Inference API, the feature-extraction task.

POST https://router.huggingface.co/hf-inference/models/{model}/pipeline/feature-extraction
with {"inputs": [...]}. extra_options.api_base or HUGGINGFACE_API_BASE (the operator's) is a
dedicated endpoint's full URL (an Inference Endpoint, a TEI server), posted to as it is.

The key is HUGGINGFACE_API_KEY (or api_key_name; else HF_TOKEN, the variable Hugging Face's
own tools read), a bearer token for router.huggingface.co or HUGGINGFACE_API_BASE; a config's
api_base gets it only where PGVECTORIZER_KEY_ENDPOINTS lists it.

Answers: one vector per text (a sentence-embedding model) is used as it is. A model without
pooling answers one vector per token, [texts][tokens][dims]; those are mean-pooled over the
tokens, which is what sentence-transformers does for most models, so such a model still
gives one vector per text (normalize it with extra_options.normalize if the model needs
that). A 503 (the model is loading) is transient, like every 5xx: the rows are tried again
later; extra_options.wait_for_model asks the API to hold the request until the model is up.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import quote

import numpy as np

from pgvectorizer.embedders.http import (
    BatchedHTTPEmbedder,
    count_error,
    dimension_error,
    key_refusal,
    make_client,
    post_json,
)
from pgvectorizer.embedders.litellm.common import (
    Spec,
    client_env,
    operator_url,
    opt_bool,
    opt_str,
    require_key,
)
from pgvectorizer.errors import ProviderError

ROUTER_URL = "https://router.huggingface.co"
BASE_URL_ENV = "HUGGINGFACE_API_BASE"
DEFAULT_API_KEY_NAME = "HUGGINGFACE_API_KEY"
OWN_KEY_NAMES = ("HF_TOKEN",)
OPTIONS = frozenset({"api_base", "wait_for_model", "normalize", "truncate", "prompt_name"})
# Texts per request: text-embeddings-inference's default max_client_batch_size, which the
# Inference API's feature-extraction models run on.
MAX_INPUTS = 32
MAX_REQUEST_BYTES = 1_000_000  # keeps one request's body reasonable


def model_url(model: str) -> str:
    """The serverless Inference API's feature-extraction URL for a model."""
    return f"{ROUTER_URL}/hf-inference/models/{quote(model, safe='/')}/pipeline/feature-extraction"


def embed_url(spec: Spec, env: Mapping[str, str]) -> str:
    """extra_options.api_base, else HUGGINGFACE_API_BASE, else the model's router URL."""
    return (opt_str(spec, "api_base") or operator_url(env, BASE_URL_ENV)
            or model_url(spec.model))


def _operator_defaults(env: Mapping[str, str]) -> list[str]:
    return [operator_url(env, BASE_URL_ENV) or ROUTER_URL]


def server_targets(spec: Spec, env: Mapping[str, str]) -> list[tuple[str, list[str]]]:
    """The URL requests go to, with the endpoints the operator allows by default."""
    return [(embed_url(spec, env), _operator_defaults(env))]


class HuggingFaceEmbedder(BatchedHTTPEmbedder):
    """Embeds through the feature-extraction task; thread-safe, one connection pool."""

    max_inputs = MAX_INPUTS
    max_request_bytes = MAX_REQUEST_BYTES

    def __init__(self, spec: Spec, env: Mapping[str, str]) -> None:
        self.spec = spec
        self.dimensions = spec.dimensions
        self.parameters: dict[str, Any] = {}
        for name in ("normalize", "truncate"):
            value = opt_bool(spec, name)
            if value is not None:
                self.parameters[name] = value
        prompt = opt_str(spec, "prompt_name")
        if prompt is not None:
            self.parameters["prompt_name"] = prompt
        headers: dict[str, str] = {}
        if opt_bool(spec, "wait_for_model"):
            headers["X-Wait-For-Model"] = "true"
        self.url = embed_url(spec, env)
        defaults = _operator_defaults(env)
        names = [spec.api_key_name] if spec.api_key_name else [DEFAULT_API_KEY_NAME,
                                                                *OWN_KEY_NAMES]
        self.api_key_name, key = require_key(spec, env, names, url=self.url,
                                             default_name=DEFAULT_API_KEY_NAME,
                                             default_urls=defaults, own_names=OWN_KEY_NAMES,
                                             what="token")
        headers["Authorization"] = f"Bearer {key}"
        self._client = make_client(client_env(spec, env), headers)
        self._what = f"Hugging Face model {spec.model} at {self.url}"
        self._refusal = key_refusal(self._what, self.api_key_name)

    def _request(self, texts: Sequence[str]) -> np.ndarray:
        payload: dict[str, Any] = {"inputs": list(texts), **self.parameters}
        body = post_json(self._client, self.url, payload, what=self._what,
                         refusal=self._refusal)
        return pooled(body, len(texts), self.dimensions, self._what)


def pooled(body: Any, n: int, dimensions: int, what: str) -> np.ndarray:
    """An answer of n vectors, or of n lists of token vectors (mean-pooled), as float32
    (n, dimensions); ProviderError when it is neither."""
    if not isinstance(body, list) or len(body) != n:
        raise count_error(what, len(body) if isinstance(body, list) else "no", n)
    out = np.empty((n, dimensions), dtype=np.float32)
    for i, item in enumerate(body):
        try:
            array = np.asarray(item, dtype=np.float32)
        except (ValueError, TypeError) as exc:
            raise ProviderError(f"{what} answered with an embedding that cannot be decoded "
                                f"(text {i})") from exc
        if array.ndim == 2 and array.shape[0] > 0:
            array = array.mean(axis=0)  # token vectors: one per text by their mean
        if array.ndim != 1:
            raise ProviderError(f"{what} answered with an embedding of shape {array.shape} "
                                f"for text {i}; expected one vector (or one per token)")
        if array.shape[0] != dimensions:
            raise dimension_error(what, array.shape[0], dimensions)
        out[i] = array
    return out
