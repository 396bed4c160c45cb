"""azure/<deployment>: Azure OpenAI's POST {api_base}/openai/deployments/{deployment}/embeddings.

api_base and api_version come from extra_options or from AZURE_API_BASE / AZURE_API_VERSION
(api_version defaults to DEFAULT_API_VERSION, a GA version); the key is AZURE_API_KEY (or
api_key_name; AZURE_OPENAI_API_KEY is read too), sent in the api-key header.

Where the key may go. An Azure resource's URL is normally in the config (pgai's examples put
api_base in extra_options), so unlike other providers' api_base it is not only its author's
word: AZURE_API_KEY goes to an api_base on Microsoft's own hosts (*.openai.azure.com,
*.cognitiveservices.azure.com, *.services.ai.azure.com, over https on port 443), where Azure
itself checks the key and no code of the resource's owner sees it; to the operator's
AZURE_API_BASE; and wherever PGVECTORIZER_KEY_ENDPOINTS lists it. Any other api_base (a
proxy, a test server) needs a listing. The same hosts count as Azure's own endpoint for
in-database calls.

The deployment's model is not in its name, so `dimensions` goes to Azure only when
extra_options asks for it (text-embedding-3 deployments take it).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import quote

import httpx
import numpy as np

from pgvectorizer.embedders.http import (
    BatchedHTTPEmbedder,
    base64_or_number_vector,
    decode_data,
    key_refusal,
    make_client,
    post_json,
)
from pgvectorizer.embedders.litellm.common import (
    Spec,
    client_env,
    operator_url,
    opt_dimensions,
    opt_str,
    require_key,
)
from pgvectorizer.errors import ConfigError

BASE_URL_ENV = "AZURE_API_BASE"
API_VERSION_ENV = "AZURE_API_VERSION"
DEFAULT_API_VERSION = "2024-10-21"
DEFAULT_API_KEY_NAME = "AZURE_API_KEY"
OWN_KEY_NAMES = ("AZURE_OPENAI_API_KEY",)
AZURE_HOSTS = (".openai.azure.com", ".cognitiveservices.azure.com", ".services.ai.azure.com")
OPTIONS = frozenset({"api_base", "api_version", "dimensions", "encoding_format", "user"})
MAX_INPUTS = 2048  # texts per request, Azure OpenAI's limit
# Tokens per request, as OpenAI's; counted as UTF-8 bytes (never fewer than tokens).
MAX_REQUEST_TOKENS = 300_000


def is_azure_host(url: str) -> bool:
    """Whether url is https on port 443 of one of Microsoft's Azure OpenAI hosts."""
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError, ValueError):
        return False
    host = parsed.host.lower()
    return (parsed.scheme == "https" and parsed.port in (None, 443)
            and not parsed.userinfo and any(host.endswith(h) and len(host) > len(h)
                                            for h in AZURE_HOSTS))


def base_url(spec: Spec, env: Mapping[str, str]) -> str:
    """extra_options.api_base, else AZURE_API_BASE; ConfigError when neither is set."""
    base = opt_str(spec, "api_base") or operator_url(env, BASE_URL_ENV)
    if not base:
        raise ConfigError(f"embedding config ({spec.what}): no Azure resource URL; give "
                          f"extra_options.api_base (https://<resource>.openai.azure.com) or "
                          f"set {BASE_URL_ENV} in the worker's environment")
    return base.rstrip("/")


def embed_url(spec: Spec, env: Mapping[str, str]) -> str:
    """The deployment's embeddings URL with its api-version."""
    version = (opt_str(spec, "api_version") or (env.get(API_VERSION_ENV) or "").strip()
               or DEFAULT_API_VERSION)
    deployment = quote(spec.model, safe="")
    return (f"{base_url(spec, env)}/openai/deployments/{deployment}/embeddings"
            f"?api-version={quote(version, safe='')}")


def _trusted(spec: Spec, env: Mapping[str, str]) -> list[str]:
    """Where the key (and an in-database call) may go without a listing."""
    urls = [u for u in (operator_url(env, BASE_URL_ENV),) if u]
    base = base_url(spec, env)
    if is_azure_host(base):
        urls.append(base)
    return urls


def server_targets(spec: Spec, env: Mapping[str, str]) -> list[tuple[str, list[str]]]:
    """The URL requests go to, with the endpoints the operator allows by default."""
    return [(embed_url(spec, env), _trusted(spec, env))]


class AzureEmbedder(BatchedHTTPEmbedder):
    """Embeds through an Azure OpenAI deployment; thread-safe, one connection pool."""

    max_inputs = MAX_INPUTS
    max_request_bytes = MAX_REQUEST_TOKENS

    def __init__(self, spec: Spec, env: Mapping[str, str]) -> None:
        self.spec = spec
        self.dimensions = spec.dimensions
        self.send_dimensions = opt_dimensions(spec)
        self.encoding = opt_str(spec, "encoding_format", ("float", "base64")) or "base64"
        self.user = opt_str(spec, "user")
        self.base_url = base_url(spec, env)
        self.url = embed_url(spec, env)
        # LiteLLM reads AZURE_OPENAI_API_KEY when AZURE_API_KEY is not set.
        self.api_key_name, key = require_key(
            spec, env,
            [spec.api_key_name] if spec.api_key_name else [DEFAULT_API_KEY_NAME, OWN_KEY_NAMES[0]],
            url=self.base_url, default_name=DEFAULT_API_KEY_NAME,
            default_urls=_trusted(spec, env), own_names=OWN_KEY_NAMES)
        self._client = make_client(client_env(spec, env), {"api-key": key})
        self._what = f"Azure OpenAI deployment {spec.model} at {self.base_url}"
        self._refusal = key_refusal(self._what, self.api_key_name)

    def _request(self, texts: Sequence[str]) -> np.ndarray:
        payload: dict[str, Any] = {"input": list(texts), "encoding_format": self.encoding}
        if self.send_dimensions:
            payload["dimensions"] = self.dimensions
        if self.user is not None:
            payload["user"] = self.user
        body = post_json(self._client, self.url, payload, what=self._what,
                         refusal=self._refusal)
        return decode_data(body, len(texts), self.dimensions, self._what,
                           lambda embedding: base64_or_number_vector(self._what, embedding))
