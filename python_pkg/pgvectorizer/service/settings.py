"""The service's settings, from the environment over a ./.env file (pgvectorizer.settings).

Each has our name, PGVECTORIZER_SERVE_..., and the embedding queue's (spec 002's and ours
before) as an alias; the first wins when both are set.

| variable (alias)                                    | default                 | meaning                                          |
| PGVECTORIZER_SERVE_AUTH_TOKEN (AUTH_TOKEN)          | (required)              | clients' bearer token                            |
| PGVECTORIZER_SERVE_WORKER_TOKEN (WORKER_TOKEN)      | the auth token          | GPU workers' bearer token                        |
| PGVECTORIZER_SERVE_EMBEDDING_MODEL (EMBEDDING_MODEL)| all-MiniLM-L6-v2        | the model a request without `model` gets         |
| PGVECTORIZER_SERVE_MODELS (MODELS)                  | the embedding model     | more model names clients may ask for, by commas  |
| PGVECTORIZER_SERVE_HOST (SERVER_HOST)               | 127.0.0.1               | address to listen on (0.0.0.0 in containers)     |
| PGVECTORIZER_SERVE_PORT (SERVER_PORT)               | 8000                    | port to listen on                                |
| PGVECTORIZER_SERVE_DB_PATH (DB_PATH)                | data/embedding_queue.db | the SQLite task store                            |
| PGVECTORIZER_SERVE_DATABASE_URL (DATABASE_URL)      | (unset)                 | a PostgreSQL task store instead, for replicas    |
| PGVECTORIZER_SERVE_LEASE_SECONDS (LEASE_SECONDS)    | 10                      | a claimed task goes back to the queue after this |
| PGVECTORIZER_SERVE_MAX_ATTEMPTS (MAX_ATTEMPTS)      | 3                       | claims of one task before it ends failed         |
| PGVECTORIZER_SERVE_RESULT_RETENTION (RESULT_RETENTION) | 3600                 | seconds a finished task stays readable           |
| PGVECTORIZER_SERVE_MAX_REQUEST_BYTES (MAX_REQUEST_BYTES) | 8388608            | largest request body (413 beyond)                |
| PGVECTORIZER_SERVE_MAX_INPUTS (MAX_INPUTS)          | 2048                    | most texts in one request (413 beyond), as OpenAI|
| PGVECTORIZER_SERVE_MAX_WAIT_SECONDS (MAX_WAIT_SECONDS) | 30                   | longest wait a client may ask for (202 after)    |
| PGVECTORIZER_SERVE_SYNC_WAIT_SECONDS (SYNC_WAIT_SECONDS) | the max wait       | wait of a request asking for no task; 503 after  |
| PGVECTORIZER_SERVE_PENDING_TIMEOUT (PENDING_TIMEOUT) | 86400                  | a task no worker took in this long ends failed   |
| PGVECTORIZER_SERVE_DIMENSIONS_MODELS (DIMENSIONS_MODELS) | (none)             | models whose vectors may be cut to `dimensions`  |
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import partial

from pgvectorizer.defaults import LOCAL_MODEL
from pgvectorizer.errors import ConfigError
from pgvectorizer.settings import (
    SERVICE,
    Env,
    Var,
    parse_number,
    parse_whole,
    variable_names,
)

AUTH_TOKEN = Var("PGVECTORIZER_SERVE_AUTH_TOKEN", "AUTH_TOKEN")
WORKER_TOKEN = Var("PGVECTORIZER_SERVE_WORKER_TOKEN", "WORKER_TOKEN")
EMBEDDING_MODEL = Var("PGVECTORIZER_SERVE_EMBEDDING_MODEL", "EMBEDDING_MODEL")
MODELS = Var("PGVECTORIZER_SERVE_MODELS", "MODELS")
HOST = Var("PGVECTORIZER_SERVE_HOST", "SERVER_HOST")
PORT = Var("PGVECTORIZER_SERVE_PORT", "SERVER_PORT")
DB_PATH = Var("PGVECTORIZER_SERVE_DB_PATH", "DB_PATH")
DATABASE_URL = Var("PGVECTORIZER_SERVE_DATABASE_URL", "DATABASE_URL")
LEASE_SECONDS = Var("PGVECTORIZER_SERVE_LEASE_SECONDS", "LEASE_SECONDS")
MAX_ATTEMPTS = Var("PGVECTORIZER_SERVE_MAX_ATTEMPTS", "MAX_ATTEMPTS")
RESULT_RETENTION = Var("PGVECTORIZER_SERVE_RESULT_RETENTION", "RESULT_RETENTION")
MAX_REQUEST_BYTES = Var("PGVECTORIZER_SERVE_MAX_REQUEST_BYTES", "MAX_REQUEST_BYTES")
MAX_INPUTS = Var("PGVECTORIZER_SERVE_MAX_INPUTS", "MAX_INPUTS")
MAX_WAIT_SECONDS = Var("PGVECTORIZER_SERVE_MAX_WAIT_SECONDS", "MAX_WAIT_SECONDS")
SYNC_WAIT_SECONDS = Var("PGVECTORIZER_SERVE_SYNC_WAIT_SECONDS", "SYNC_WAIT_SECONDS")
PENDING_TIMEOUT = Var("PGVECTORIZER_SERVE_PENDING_TIMEOUT", "PENDING_TIMEOUT")
DIMENSIONS_MODELS = Var("PGVECTORIZER_SERVE_DIMENSIONS_MODELS", "DIMENSIONS_MODELS")
SETTINGS = (AUTH_TOKEN, WORKER_TOKEN, EMBEDDING_MODEL, MODELS, HOST, PORT, DB_PATH, DATABASE_URL,
            LEASE_SECONDS, MAX_ATTEMPTS, RESULT_RETENTION, MAX_REQUEST_BYTES, MAX_INPUTS,
            MAX_WAIT_SECONDS, SYNC_WAIT_SECONDS, PENDING_TIMEOUT, DIMENSIONS_MODELS)
# Every variable settings_from_env reads, under either name.
VARIABLES = variable_names(SETTINGS)

DEFAULT_DB_PATH = "data/embedding_queue.db"
DEFAULT_WAIT_SECONDS = 10.0  # spec 002: a request waits this long for its result by default
# A GPU worker heartbeats every third of the lease, so a live one renews it about every 3 s and
# a SIGKILLed one's tasks go back to the queue within 10 s: well inside one client's wait
# (MAX_WAIT_SECONDS). The process tests run workers on a lease of 3 s on two loaded CPU cores.
DEFAULT_LEASE_SECONDS = 10.0


@dataclass(frozen=True)
class ServiceSettings:
    auth_token: str
    worker_token: str
    default_model: str = LOCAL_MODEL
    models: tuple[str, ...] = (LOCAL_MODEL,)
    host: str = "127.0.0.1"
    port: int = 8000
    db_path: str = DEFAULT_DB_PATH
    database_url: str | None = None
    lease_seconds: float = DEFAULT_LEASE_SECONDS
    max_attempts: int = 3
    result_retention: float = 3600.0  # seconds
    max_request_bytes: int = 8 * 1024 * 1024
    max_inputs: int = 2048
    max_wait_seconds: float = 30.0
    # Seconds a request that asks for no task (no `wait_seconds`, no `Prefer: respond-async`:
    # the OpenAI SDK) waits for its vectors before a 503 its SDK retries (None: MAX_WAIT_SECONDS).
    sync_wait_seconds: float | None = None
    default_wait_seconds: float = DEFAULT_WAIT_SECONDS
    pending_timeout: float = 86400.0  # seconds
    # Models trained to keep their meaning in a prefix of the vector (Matryoshka, like
    # OpenAI's text-embedding-3): only these take a `dimensions` below their size.
    dimensions_models: tuple[str, ...] = ()
    # Seconds between re-reads of the store while a request or claim waits (None: by store).
    # With PostgreSQL another replica may finish a task or add work, seen this late at most.
    # With SQLite every change passes through this process, which wakes the waiters itself;
    # the rare re-read is a safety net, and frequent ones would take CPU from a local model.
    recheck_seconds: float | None = None
    housekeeping_seconds: float = 15.0

    @property
    def recheck(self) -> float:
        if self.recheck_seconds is not None:
            return self.recheck_seconds
        return 0.5 if self.database_url else 5.0

    @property
    def sync_wait(self) -> float:
        if self.sync_wait_seconds is not None:
            return self.sync_wait_seconds
        return self.max_wait_seconds

    @property
    def store_description(self) -> str:
        return "PostgreSQL (DATABASE_URL)" if self.database_url else f"SQLite {self.db_path}"


def _names(text: str | None) -> tuple[str, ...]:
    """Comma-separated names, blanks dropped."""
    return tuple(n.strip() for n in (text or "").split(",") if n.strip())


def settings_from_env(env: Mapping[str, str] | None = None) -> ServiceSettings:
    """Settings from env (default: os.environ over ./.env); ConfigError names a bad variable."""
    if env is None:
        from pgvectorizer.dotenv import load_env
        env = load_env()
    read = Env(env, SERVICE)

    def number(var: Var, default: float, minimum: float) -> float:
        return read.get(var, partial(parse_number, minimum=minimum), default)

    def whole(var: Var, default: int, minimum: int) -> int:
        return read.get(var, partial(parse_whole, minimum=minimum), default)

    def text(var: Var) -> str:
        return (read.text(var) or "").strip()

    token = text(AUTH_TOKEN)
    if not token:
        # No built-in default: a token printed in every README is no secret.
        raise ConfigError("AUTH_TOKEN is not set: the service needs a bearer token for its "
                          "clients (for example `export AUTH_TOKEN=$(openssl rand -hex 32)`)")
    default_model = text(EMBEDDING_MODEL) or _DEFAULTS.default_model
    max_wait = number(MAX_WAIT_SECONDS, _DEFAULTS.max_wait_seconds, minimum=0)
    return ServiceSettings(
        auth_token=token,
        worker_token=text(WORKER_TOKEN) or token,
        default_model=default_model,
        models=tuple(dict.fromkeys((default_model, *_names(read.text(MODELS))))),
        host=text(HOST) or _DEFAULTS.host,
        port=whole(PORT, _DEFAULTS.port, minimum=0),
        db_path=text(DB_PATH) or _DEFAULTS.db_path,
        database_url=text(DATABASE_URL) or None,
        lease_seconds=number(LEASE_SECONDS, _DEFAULTS.lease_seconds, minimum=1),
        max_attempts=whole(MAX_ATTEMPTS, _DEFAULTS.max_attempts, minimum=1),
        result_retention=number(RESULT_RETENTION, _DEFAULTS.result_retention, minimum=0),
        max_request_bytes=whole(MAX_REQUEST_BYTES, _DEFAULTS.max_request_bytes, minimum=1024),
        max_inputs=whole(MAX_INPUTS, _DEFAULTS.max_inputs, minimum=1),
        max_wait_seconds=max_wait,
        sync_wait_seconds=number(SYNC_WAIT_SECONDS, max_wait, minimum=0),
        pending_timeout=number(PENDING_TIMEOUT, _DEFAULTS.pending_timeout, minimum=1),
        dimensions_models=_names(read.text(DIMENSIONS_MODELS)),
    )


# What a setting is when its variables are unset (the dataclass's defaults).
_DEFAULTS = ServiceSettings(auth_token="", worker_token="")
