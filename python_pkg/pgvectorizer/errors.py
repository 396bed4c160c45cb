"""Every exception the package raises on purpose, in one place."""

from __future__ import annotations


class VectorizerError(Exception):
    """Base of the package's own errors."""


class ConfigError(VectorizerError):
    """A vectorizer's configuration cannot work as it stands (a bad model, a missing API key).

    It stops that vectorizer only; its queue is left as it is until the configuration is fixed.
    """


class ApiKeyMissing(ConfigError):
    """The environment variable named by the embedding config's api_key_name is not set."""


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


class EmbeddingError(VectorizerError):
    """A provider could not embed a batch.

    transient: worth retrying the same texts later (timeouts, 5xx, 429, connection errors);
    otherwise the request itself was refused (4xx) and one of its texts may be to blame.
    retry_after: the provider's own hint in seconds (Retry-After), if it gave one.
    """

    def __init__(self, message: str, *, transient: bool, status: int | None = None,
                 retry_after: float | None = None) -> None:
        super().__init__(message)
        self.transient = transient
        self.status = status
        self.retry_after = retry_after


class ChunkingError(VectorizerError):
    """A row's text could not be split or formatted (say, a template column missing)."""


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
