"""The service's settings, from the environment over a ./.env file (spec 002's names, plus ours).

| variable            | default                   | meaning                                          |
| AUTH_TOKEN          | (required)                | clients' bearer token                            |
| WORKER_TOKEN        | AUTH_TOKEN                | GPU workers' bearer token                        |
| EMBEDDING_MODEL     | all-MiniLM-L6-v2          | the model a request without `model` gets          |
| MODELS              | EMBEDDING_MODEL           | every model name clients may ask for, by commas   |
| SERVER_HOST         | 127.0.0.1                 | address to listen on (0.0.0.0 in containers)     |
| SERVER_PORT         | 8000                      | port to listen on                                |
| DB_PATH             | data/embedding_queue.db   | the SQLite task store                            |
| DATABASE_URL        | (unset)                   | a PostgreSQL task store instead, for replicas    |
| LEASE_SECONDS       | 10                        | a claimed task goes back to the queue after this |
| MAX_ATTEMPTS        | 3                         | claims of one task before it ends failed         |
| RESULT_RETENTION    | 3600                      | seconds a finished task stays readable           |
| MAX_REQUEST_BYTES   | 8388608                   | largest request body (413 beyond)                |
| MAX_INPUTS          | 2048                      | most texts in one request (413 beyond), as OpenAI|
| MAX_WAIT_SECONDS    | 30                        | longest wait a client may ask for (202 after)    |
| SYNC_WAIT_SECONDS   | MAX_WAIT_SECONDS          | wait of a request asking for no task; 503 after  |
| PENDING_TIMEOUT     | 86400                     | a task no worker took in this long ends failed   |
| DIMENSIONS_MODELS   | (none)                    | models whose vectors may be cut to `dimensions`  |
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from pgvectorizer.defaults import LOCAL_MODEL
from pgvectorizer.errors import ConfigError

# Every variable settings_from_env reads.
VARIABLES = ("AUTH_TOKEN", "WORKER_TOKEN", "EMBEDDING_MODEL", "MODELS", "SERVER_HOST",
             "SERVER_PORT", "DB_PATH", "DATABASE_URL", "LEASE_SECONDS", "MAX_ATTEMPTS",
             "RESULT_RETENTION", "MAX_REQUEST_BYTES", "MAX_INPUTS", "MAX_WAIT_SECONDS",
             "SYNC_WAIT_SECONDS", "PENDING_TIMEOUT", "DIMENSIONS_MODELS")
DEFAULT_MODEL = LOCAL_MODEL
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
    default_model: str = DEFAULT_MODEL
    models: tuple[str, ...] = (DEFAULT_MODEL,)
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


def _number(env: Mapping[str, str], name: str, default: float, *, minimum: float) -> float:
    raw = (env.get(name) or "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a number") from None
    if not math.isfinite(value):
        raise ConfigError(f"{name}={raw!r} is not a finite number")
    if value < minimum:
        raise ConfigError(f"{name}={raw!r} is less than {minimum:g}")
    return value


def _whole(env: Mapping[str, str], name: str, default: int, *, minimum: int) -> int:
    value = _number(env, name, default, minimum=minimum)
    if value != int(value):
        raise ConfigError(f"{name}={env[name]!r} is not a whole number")
    return int(value)


def settings_from_env(env: Mapping[str, str] | None = None) -> ServiceSettings:
    """Settings from env (default: os.environ over ./.env); ConfigError names a bad variable."""
    if env is None:
        from pgvectorizer.dotenv import load_env
        env = load_env()
    token = (env.get("AUTH_TOKEN") or "").strip()
    if not token:
        # No built-in default: a token printed in every README is no secret.
        raise ConfigError("AUTH_TOKEN is not set: the service needs a bearer token for its "
                          "clients (for example `export AUTH_TOKEN=$(openssl rand -hex 32)`)")
    worker_token = (env.get("WORKER_TOKEN") or "").strip() or token
    default_model = (env.get("EMBEDDING_MODEL") or "").strip() or DEFAULT_MODEL
    models = tuple(dict.fromkeys((default_model, *_names(env.get("MODELS")))))
    database_url = (env.get("DATABASE_URL") or "").strip() or None
    max_wait = _number(env, "MAX_WAIT_SECONDS", 30.0, minimum=0)
    return ServiceSettings(
        auth_token=token,
        worker_token=worker_token,
        default_model=default_model,
        models=models,
        host=(env.get("SERVER_HOST") or "").strip() or "127.0.0.1",
        port=_whole(env, "SERVER_PORT", 8000, minimum=0),
        db_path=(env.get("DB_PATH") or "").strip() or DEFAULT_DB_PATH,
        database_url=database_url,
        lease_seconds=_number(env, "LEASE_SECONDS", DEFAULT_LEASE_SECONDS, minimum=1),
        max_attempts=_whole(env, "MAX_ATTEMPTS", 3, minimum=1),
        result_retention=_number(env, "RESULT_RETENTION", 3600.0, minimum=0),
        max_request_bytes=_whole(env, "MAX_REQUEST_BYTES", 8 * 1024 * 1024, minimum=1024),
        max_inputs=_whole(env, "MAX_INPUTS", 2048, minimum=1),
        max_wait_seconds=max_wait,
        sync_wait_seconds=_number(env, "SYNC_WAIT_SECONDS", max_wait, minimum=0),
        pending_timeout=_number(env, "PENDING_TIMEOUT", 86400.0, minimum=1),
        dimensions_models=_names(env.get("DIMENSIONS_MODELS")),
    )

