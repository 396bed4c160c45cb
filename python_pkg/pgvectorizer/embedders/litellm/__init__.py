"""ai.embedding_litellm configs: "provider/model" names as LiteLLM spells them, embedded by
lean clients of our own, one module per provider.

Not the litellm package: it weighs 356 MB over 60 packages, takes seconds to import and
fetches a cost map from GitHub when imported, all for the few providers below. Each module
reads the environment variables and extra_options that LiteLLM reads for that provider, and
refuses extra_options it does not know. Keys follow endpoints.py's rules (a key goes only to
its provider's endpoint, the operator's override of it, or a URL PGVECTORIZER_KEY_ENDPOINTS
lists); azure.py and bedrock.py say how those apply there.

    cohere/<model>          cohere.py       COHERE_API_KEY
    mistral/<model>         mistral.py      MISTRAL_API_KEY
    azure/<deployment>      azure.py        AZURE_API_KEY, AZURE_API_BASE, AZURE_API_VERSION
    bedrock/<model id>      bedrock.py      boto3's credentials, AWS_REGION
    vertex_ai/<model>       vertex.py       GOOGLE_APPLICATION_CREDENTIALS, VERTEXAI_PROJECT
    huggingface/<model>     huggingface.py  HUGGINGFACE_API_KEY (or HF_TOKEN)
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from pgvectorizer.embedders.litellm.common import Spec, check_options
from pgvectorizer.endpoints import check_server_endpoint
from pgvectorizer.errors import ConfigError

__all__ = ["PROVIDERS", "LiteLLMEmbedder", "check_server_endpoints", "parse_config"]

# provider prefix -> (module, embedder class)
PROVIDERS: dict[str, tuple[str, str]] = {
    "cohere": ("cohere", "CohereEmbedder"),
    "mistral": ("mistral", "MistralEmbedder"),
    "azure": ("azure", "AzureEmbedder"),
    "bedrock": ("bedrock", "BedrockEmbedder"),
    "vertex_ai": ("vertex", "VertexEmbedder"),
    "huggingface": ("huggingface", "HuggingFaceEmbedder"),
}
# Providers that have an implementation of their own here, for a better hint.
_OWN_IMPLEMENTATIONS = {"openai": "ai.embedding_openai", "voyage": "ai.embedding_voyageai",
                        "ollama": "ai.embedding_ollama"}


def parse_config(config: Mapping[str, Any]) -> Spec:
    """The Spec of a litellm embedding config; ConfigError when it cannot work."""
    model = config.get("model")
    if not isinstance(model, str) or "/" not in model:
        raise ConfigError(f"embedding config (litellm): model must be provider/model, such as "
                          f"cohere/embed-english-v3.0, got {model!r}")
    provider, _, name = model.partition("/")
    if provider not in PROVIDERS:
        hint = ""
        if provider in _OWN_IMPLEMENTATIONS:
            hint = f" {provider} has its own: use {_OWN_IMPLEMENTATIONS[provider]}."
        raise ConfigError(
            f"embedding config (litellm): provider {provider!r} of model {model!r} is not "
            f"supported; supported are {', '.join(p + '/' for p in PROVIDERS)}.{hint} For an "
            f"OpenAI-compatible server (a LiteLLM proxy, vLLM, TEI) use ai.embedding_openai "
            f"with its base_url")
    if not name:
        raise ConfigError(f"embedding config (litellm): model {model!r} names no model after "
                          f"{provider}/")
    dimensions = config.get("dimensions")
    if isinstance(dimensions, bool) or not isinstance(dimensions, int) or dimensions < 1:
        raise ConfigError(f"embedding config: dimensions must be a positive integer, got "
                          f"{dimensions!r}")
    key_name = config.get("api_key_name")
    if key_name is not None and (not isinstance(key_name, str) or not key_name):
        raise ConfigError(f"embedding config: api_key_name must be a string, got {key_name!r}")
    options = config.get("extra_options") or {}
    if not isinstance(options, Mapping):
        raise ConfigError(f"embedding config (litellm): extra_options must be a json object, "
                          f"got {options!r}")
    spec = Spec(provider, name, dimensions, key_name, dict(options))
    check_options(spec, _module(provider).OPTIONS)
    return spec


def check_server_endpoints(config: Mapping[str, Any], env: Mapping[str, str]) -> None:
    """EndpointNotAllowed unless every URL the config's provider will call from inside
    PostgreSQL is one the server's operator allows (endpoints.check_server_endpoint)."""
    spec = parse_config(config)
    for url, defaults in _module(spec.provider).server_targets(spec, env):
        check_server_endpoint(url, env, defaults=defaults)


class LiteLLMEmbedder:
    """The provider's embedder for a litellm config, behind the Embedder protocol."""

    def __init__(self, config: Mapping[str, Any], env: Mapping[str, str]) -> None:
        self.spec = parse_config(config)
        class_name = PROVIDERS[self.spec.provider][1]
        self.provider = getattr(_module(self.spec.provider), class_name)(self.spec, env)
        self.dimensions = self.spec.dimensions

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """float32 (len(texts), dimensions), row i for texts[i]."""
        if not texts:
            return np.empty((0, self.dimensions), dtype=np.float32)
        out: np.ndarray = self.provider.embed(texts)
        return out

    def close(self) -> None:
        """Release the provider's connections."""
        self.provider.close()


def _module(provider: str) -> Any:
    # Imported on use: a Cohere-only worker never imports boto3.
    return importlib.import_module(f"{__name__}.{PROVIDERS[provider][0]}")
