"""Embedders: turn texts into vectors with OpenAI(-compatible) servers, Ollama or a local model.

make_embedder picks one from a vectorizer's embedding config (the jsonb that ai.embedding_openai,
ai.embedding_ollama, ai.embedding_sentence_transformers, ai.embedding_voyageai and
ai.embedding_litellm build).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pgvectorizer.embedders.base import Embedder
from pgvectorizer.endpoints import check_server_endpoint
from pgvectorizer.errors import ConfigError

__all__ = ["IMPLEMENTATIONS", "Embedder", "config_dimensions", "config_str", "make_embedder"]

IMPLEMENTATIONS = ("openai", "ollama", "sentence_transformers", "voyageai", "litellm")


def make_embedder(config: Mapping[str, Any], env: Mapping[str, str] | None = None, *,
                  server_side: bool = False) -> Embedder:
    """The embedder for an embedding config; env defaults to os.environ over a ./.env file.

    server_side: the embedder runs inside PostgreSQL (in-database runs, ai.embed), so it may
    only call endpoints that the server's operator allows (endpoints.py). Raises ConfigError
    (ApiKeyMissing, KeyEndpointRefused, EndpointNotAllowed among them) when the config cannot
    work.
    """
    if env is None:
        from pgvectorizer.dotenv import load_env
        env = load_env()
    implementation = config.get("implementation")
    # Imported here so that an OpenAI-only worker never imports torch.
    if implementation == "openai":
        from pgvectorizer.embedders.openai import (
            DEFAULT_BASE_URL,
            OpenAIEmbedder,
            openai_base_url,
        )
        if server_side:
            check_server_endpoint(openai_base_url(config), env, defaults=[DEFAULT_BASE_URL])
        return OpenAIEmbedder(config, env)
    if implementation == "ollama":
        from pgvectorizer.embedders.ollama import OllamaEmbedder, ollama_base_url
        if server_side:
            base_url = ollama_base_url(config, env)
            # OLLAMA_HOST is the operator's own setting; a base_url is the config author's.
            own = not config.get("base_url")
            check_server_endpoint(base_url, env, defaults=[base_url] if own else [])
        return OllamaEmbedder(config, env)
    if implementation == "voyageai":
        from pgvectorizer.embedders.voyageai import (
            VoyageAIEmbedder,
            operator_base_url,
            voyage_base_url,
        )
        if server_side:
            # VOYAGE_BASE_URL is the operator's own setting, as OLLAMA_HOST is; a config's
            # base_url is its author's.
            operators = [] if config.get("base_url") else [operator_base_url(env)]
            check_server_endpoint(voyage_base_url(config, env), env, defaults=operators)
        return VoyageAIEmbedder(config, env)
    if implementation == "litellm":
        from pgvectorizer.embedders.litellm import (
            LiteLLMEmbedder,
            check_server_endpoints,
        )
        if server_side:
            # Every URL the provider will call (boto3's endpoint for bedrock included).
            check_server_endpoints(config, env)
        return LiteLLMEmbedder(config, env)
    if implementation == "sentence_transformers":
        from pgvectorizer.embedders.sentence_transformers import (
            SentenceTransformersEmbedder,
        )
        return SentenceTransformersEmbedder(config)
    raise ConfigError(f"unknown embedding implementation {implementation!r}; expected one of "
                      f"{', '.join(IMPLEMENTATIONS)}")


def config_str(config: Mapping[str, Any], key: str, default: str | None = None) -> str:
    """config[key] as a non-empty string, else default; ConfigError when neither exists."""
    value = config.get(key)
    if value is None or value == "":
        if default is not None:
            return default
        raise ConfigError(f"embedding config ({config.get('implementation')}) lacks {key!r}")
    if not isinstance(value, str):
        raise ConfigError(f"embedding config: {key} must be a string, got {value!r}")
    return value


def config_dimensions(config: Mapping[str, Any]) -> int:
    """config["dimensions"] as a positive int (the store column's vector size)."""
    value = config.get("dimensions")
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"embedding config: dimensions must be a positive integer, got {value!r}")
    return value
