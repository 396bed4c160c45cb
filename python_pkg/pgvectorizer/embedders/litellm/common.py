"""What the litellm providers share: the parsed config, option checks, and key reading.

A litellm config is {"model": "provider/model", "dimensions": N, "api_key_name": ...,
"extra_options": {...}} (ai.embedding_litellm). Each provider module reads its own options
from `extra_options` by the names LiteLLM gives them, and refuses any other name, so that a
typo fails at once instead of being ignored.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from pgvectorizer.embedders.http import (
    TIMEOUT_ENV,
    count_error,
    dimension_error,
    number_vector,
)
from pgvectorizer.endpoints import KEY_ENDPOINTS_ENV, parse_endpoint, read_api_key
from pgvectorizer.errors import ApiKeyMissing, ConfigError

# Options every provider takes: seconds to wait for an answer (PGVECTORIZER_HTTP_TIMEOUT's
# value for this vectorizer).
COMMON_OPTIONS = frozenset({"timeout"})
# Names LiteLLM takes for secrets. A secret never belongs in a config (it is stored in the
# database); ai.embedding_litellm refuses some, the worker refuses these too.
SECRET_OPTIONS = frozenset({"api_key", "token", "aws_secret_access_key", "aws_session_token",
                            "azure_ad_token", "vertex_credentials", "client_secret"})


@dataclass(frozen=True)
class Spec:
    """A litellm embedding config, parsed: provider and model from "provider/model"."""

    provider: str
    model: str
    dimensions: int
    api_key_name: str | None
    options: Mapping[str, Any] = field(default_factory=dict)

    @property
    def what(self) -> str:
        """How messages name the model: "cohere/embed-v4.0"."""
        return f"{self.provider}/{self.model}"


def check_options(spec: Spec, accepted: Collection[str]) -> None:
    """ConfigError for an extra_options key that the provider does not take."""
    allowed = COMMON_OPTIONS | set(accepted)
    for key in spec.options:
        if key in SECRET_OPTIONS:
            raise ConfigError(
                f"embedding config ({spec.what}): extra_options may not hold {key!r}, a secret "
                f"stored in the database for anyone who can read ai.vectorizer; put it in an "
                f"environment variable of the worker and name that variable in api_key_name")
        if key not in allowed:
            raise ConfigError(
                f"embedding config ({spec.what}): unknown extra_options key {key!r}; "
                f"{spec.provider} takes {', '.join(sorted(allowed))}")


def opt_str(spec: Spec, key: str, allowed: Collection[str] | None = None) -> str | None:
    """extra_options[key] as a non-empty string (one of `allowed` if given), else None."""
    value = spec.options.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise ConfigError(f"embedding config ({spec.what}): extra_options.{key} must be a "
                          f"non-empty string, got {value!r}")
    if allowed is not None and value not in allowed:
        raise ConfigError(f"embedding config ({spec.what}): extra_options.{key} must be one of "
                          f"{', '.join(allowed)}, got {value!r}")
    return value


def opt_bool(spec: Spec, key: str) -> bool | None:
    """extra_options[key] as a bool, else None."""
    value = spec.options.get(key)
    if value is not None and not isinstance(value, bool):
        raise ConfigError(f"embedding config ({spec.what}): extra_options.{key} must be true or "
                          f"false, got {value!r}")
    return value


def opt_dimensions(spec: Spec, *keys: str) -> bool:
    """Whether extra_options asks the provider for a size (under one of `keys`, by default
    "dimensions"); ConfigError when it differs from the config's dimensions."""
    asked = False
    for key in keys or ("dimensions",):
        value = spec.options.get(key)
        if value is None:
            continue
        if isinstance(value, bool) or value != spec.dimensions:
            raise ConfigError(f"embedding config ({spec.what}): extra_options.{key} {value!r} "
                              f"differs from dimensions {spec.dimensions}")
        asked = True
    return asked


def client_env(spec: Spec, env: Mapping[str, str]) -> Mapping[str, str]:
    """env with extra_options.timeout as PGVECTORIZER_HTTP_TIMEOUT (checked as that is)."""
    timeout = spec.options.get("timeout")
    if timeout is None:
        return env
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout <= 0:
        raise ConfigError(f"embedding config ({spec.what}): extra_options.timeout must be a "
                          f"positive number of seconds, got {timeout!r}")
    return {**env, TIMEOUT_ENV: str(timeout)}


def operator_url(env: Mapping[str, str], name: str) -> str | None:
    """The URL in the operator's variable `name` without a trailing /, or None when unset."""
    value = (env.get(name) or "").strip().rstrip("/")
    return value or None


def read_key(env: Mapping[str, str], name: str, *, url: str, default_name: str,
             default_urls: Collection[str], own_names: Collection[str] = ()) -> str | None:
    """The key in variable `name` that is about to go to `url`, by endpoints.py's rules:
    `default_name` (or one of the provider's `own_names`, variables its SDK reads such as
    HF_TOKEN, which need no _API_KEY suffix) goes to `default_urls`; any name goes where
    PGVECTORIZER_KEY_ENDPOINTS lists it. None when the variable is unset or empty."""
    urls = [u for u in default_urls if u and _readable(u)]
    if name in own_names or name == default_name:
        # A listing of our own, added to the operator's: the provider's variable may be read
        # and sent to the provider's (or the operator's) endpoint, as read_api_key allows
        # its default name to be.
        own = " ".join(f"{name}={u}" for u in urls)
        env = {**env, KEY_ENDPOINTS_ENV: f"{env.get(KEY_ENDPOINTS_ENV) or ''} {own}".strip()}
    return read_api_key(env, name, base_url=url, default_name=default_name,
                        default_url=urls[0] if urls else _NOWHERE)


# A default URL that matches no request: a provider with no endpoint of its own (Azure
# without a known api_base) lets keys go only where PGVECTORIZER_KEY_ENDPOINTS says.
_NOWHERE = "https://nowhere.invalid"


def _readable(url: str) -> bool:
    """Whether url can stand in a PGVECTORIZER_KEY_ENDPOINTS entry (a bad operator setting
    allows nothing rather than failing with a message about another setting)."""
    try:
        parse_endpoint(url, "url")
    except ConfigError:
        return False
    return not any(c.isspace() or c in ";," for c in url)


def require_key(spec: Spec, env: Mapping[str, str], names: Sequence[str], *, url: str,
                default_name: str, default_urls: Collection[str], own_names: Collection[str] = (),
                what: str = "API key") -> tuple[str, str]:
    """The first of `names` whose variable holds a key for `url` (read_key's rules), and
    that key: a config's api_key_name alone, or the provider's variables in LiteLLM's order.
    ApiKeyMissing naming the first when none is set."""
    for name in names:
        key = read_key(env, name, url=url, default_name=default_name,
                       default_urls=default_urls, own_names=own_names)
        if key:
            return name, key
    raise missing_key(spec, names[0], what)


def missing_key(spec: Spec, name: str, what: str = "API key") -> ApiKeyMissing:
    """The error for an unset key variable."""
    return ApiKeyMissing(
        f"{name} is not set: the vectorizer's embedding config ({spec.what}) reads the "
        f"{spec.provider} {what} from this environment variable (set it in the worker's "
        f"environment or a .env file)")


def endpoint_url(base: str, suffix: str) -> str:
    """base (an API root or the full endpoint URL) with `suffix` appended unless it ends so."""
    base = base.rstrip("/")
    return base if base.endswith(suffix) else base + suffix


def vectors_of(rows: Any, n: int, dimensions: int, what: str) -> np.ndarray:
    """A list of n vectors (in the texts' order) as float32 (n, dimensions); ProviderError
    when it is not that."""
    if not isinstance(rows, list) or len(rows) != n:
        raise count_error(what, len(rows) if isinstance(rows, list) else "no", n)
    out = np.empty((n, dimensions), dtype=np.float32)
    for i, row in enumerate(rows):
        vector = number_vector(what, row)
        if vector.shape[0] != dimensions:
            raise dimension_error(what, vector.shape[0], dimensions)
        out[i] = vector
    return out
