"""Every exception the package raises on purpose, in one place."""

from __future__ import annotations

from typing import Literal


class VectorizerError(Exception):
    """Base of the package's own errors."""


class QueueMissing(VectorizerError, LookupError):
    """A vectorizer's queue table is not there (dropped by hand, or the vectorizer with it)."""


class ConfigError(VectorizerError):
    """A vectorizer's configuration cannot work as it stands (a bad model, a missing API key).

    It stops that vectorizer only; its queue is left as it is until the configuration is fixed.
    """


class ApiKeyMissing(ConfigError):
    """The environment variable named by the embedding config's api_key_name is not set."""


class ProviderError(ConfigError):
    """A provider answered in a way that no text can explain: vectors of the wrong size, more
    or fewer vectors than texts, an answer that cannot be read as vectors. Like a refused
    key, it stops the vectorizer and keeps its queue until the configuration (or the
    provider) is fixed, instead of failing every row."""


class KeyEndpointRefused(ConfigError):
    """An API key would be sent to an endpoint it is not meant for (endpoints.py has the
    policy); the message names the key, the URL and the setting that would allow it."""


class EndpointNotAllowed(ConfigError):
    """A request made on the database server (an in-database run, ai.embed) would go to an
    endpoint that the server's operator has not allowed (endpoints.py has the policy)."""


class MissingDependency(ConfigError):
    """A Python package the configuration needs is not installed (`package` is its pip name)."""

    def __init__(self, message: str, *, package: str) -> None:
        super().__init__(message)
        self.package = package


class MissingModel(ConfigError):
    """A local model cannot be found or loaded where the embedder runs."""


# What made a provider fail a batch (EmbeddingError.cause), for callers that must tell a
# text's fault from the provider's.
Cause = Literal["refused", "server_error", "rate_limited", "unreachable", "unavailable",
                "deadline", "bad_vector"]
REFUSED: Cause = "refused"  # a 4xx other than 429 (or a local model's error): a text may be to blame
SERVER_ERROR: Cause = "server_error"  # a 5xx or an unreadable answer: perhaps a text, perhaps not
RATE_LIMITED: Cause = "rate_limited"  # 429 after the retries
UNREACHABLE: Cause = "unreachable"  # no answer: a timeout or a failed connection
UNAVAILABLE: Cause = "unavailable"  # another passing failure: out of memory, an expired task
DEADLINE: Cause = "deadline"  # the caller's deadline passed first (DeadlineReached)
BAD_VECTOR: Cause = "bad_vector"  # the provider answered, but this text's vector is unusable


class EmbeddingError(VectorizerError):
    """A provider could not embed a batch.

    transient: worth retrying the same texts later (timeouts, 5xx, 429, connection errors);
    otherwise the request itself was refused (4xx) and one of its texts may be to blame.
    status: the HTTP status, None without an answer.
    retry_after: the provider's own hint in seconds (Retry-After), if it gave one.
    cause: one of the Cause values; by default told from transient and status.
    """

    def __init__(self, message: str, *, transient: bool, status: int | None = None,
                 retry_after: float | None = None, cause: Cause | None = None) -> None:
        super().__init__(message)
        self.transient = transient
        self.status = status
        self.retry_after = retry_after
        self.cause: Cause = cause or _cause(transient, status)


class DeadlineReached(EmbeddingError):
    """The caller's deadline (an in-database run's max_seconds) passed before the provider
    answered. No text's fault and no attempt used up: give the batch back unclaimed."""

    def __init__(self, message: str) -> None:
        super().__init__(message, transient=True, cause=DEADLINE)


def _cause(transient: bool, status: int | None) -> Cause:
    if not transient:
        return REFUSED
    if status == 429:
        return RATE_LIMITED
    if status is not None and status >= 500:
        return SERVER_ERROR
    return UNAVAILABLE


class ChunkingError(VectorizerError):
    """A row's text could not be split or formatted (say, a template column missing)."""


class ChunkingConfigError(ConfigError, ChunkingError):
    """A chunking or formatting config that cannot work (an invalid separator regex, a
    chunk_overlap over chunk_size). A ConfigError, so the worker stops that vectorizer and
    keeps its queue; also a ChunkingError, for callers that catch those."""


class ServiceRefusal(ConfigError):
    """The embedding queue service refused a GPU worker's request for good (a 4xx other than
    408 and 429, or an answer the worker cannot read): sending it again cannot help, so the
    worker stops. `status` is the HTTP status, None for an unreadable answer."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class ServiceAuthError(ServiceRefusal):
    """The service answered 401 (missing or wrong token) or 403 (a token not meant for
    workers) to a GPU worker."""


class VersionMismatch(VectorizerError):
    """The database's pgvectorizer SQL is of a version this package does not work with."""
