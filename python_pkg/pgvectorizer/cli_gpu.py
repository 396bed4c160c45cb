"""`pgvectorizer gpu-worker`: embed the queue service's tasks on this machine's GPU (or CPU).

Flags win over environment variables (read after ./.env is loaded), and those over defaults.
Only outgoing HTTP: the worker works behind NAT. Exit status: 0 after SIGTERM/SIGINT (a
graceful stop), 1 when the service refuses the token or the model cannot be served, 2 for bad
flags or variables.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pgvectorizer.cli_common import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    ShutdownSignals,
    argtype,
    env_value,
    from_env,
    parse_positive_int,
)
from pgvectorizer.defaults import (
    CLAIM_TASKS,
    CLAIM_TEXTS,
    CLAIM_WAIT,
    DEVICE,
    GPU_BACKENDS,
    LOCAL_MODEL,
    MAX_CLAIM_TASKS,
    MAX_CLAIM_TEXTS,
    MAX_CLAIM_WAIT,
    POLL_INTERVAL,
)
from pgvectorizer.errors import ConfigError

if TYPE_CHECKING:
    from pgvectorizer.gpu_worker import Backend, GpuWorker

logger = logging.getLogger(__name__)

ENV_SERVER = "SERVER_URL"
ENV_TOKENS = ("WORKER_TOKEN", "AUTH_TOKEN")  # the first one set wins
ENV_BACKEND = "EMBEDDING_BACKEND"
ENV_MODEL = "EMBEDDING_MODEL"
ENV_DEVICE = "EMBEDDING_DEVICE"
ENV_POLL_INTERVAL = "POLL_INTERVAL"
ENV_OLLAMA = "OLLAMA_HOST"



_DEVICE = DEVICE


# --- values: each parser raises ValueError with a message that quotes the value -------------

def parse_device(text: str) -> str:
    """auto, cpu, cuda or cuda:N."""
    value = text.strip().lower()
    if not _DEVICE.fullmatch(value):
        raise ValueError(f"{text!r} is not a device: use auto, cpu, cuda or cuda:N")
    return value


def _seconds(text: str) -> float:
    try:
        return float(text.strip())
    except ValueError:
        raise ValueError(f"{text!r} is not a number of seconds") from None


def parse_seconds(text: str) -> float:
    """A number of seconds more than 0 ("2", "0.5")."""
    value = _seconds(text)
    if not 0 < value < float("inf"):
        raise ValueError(f"{text!r} is not more than 0 seconds")
    return value


def parse_wait(text: str) -> float:
    """Seconds from 0 to 60: how long the service may hold a claim open."""
    value = _seconds(text)
    if not 0 <= value <= MAX_CLAIM_WAIT:
        raise ValueError(f"{text!r} is not between 0 and {MAX_CLAIM_WAIT:g} seconds")
    return value


def parse_backend(text: str) -> str:
    """sentence-transformers or ollama (sentence_transformers too)."""
    value = text.strip().lower().replace("_", "-")
    if value not in GPU_BACKENDS:
        raise ValueError(f"{text!r} is not a backend: use {' or '.join(GPU_BACKENDS)}")
    return value


def parse_models(text: str) -> list[str]:
    """Model names separated by commas."""
    models = [m.strip() for m in text.split(",") if m.strip()]
    if not models:
        raise ValueError(f"{text!r} names no model")
    return models


def _at_most(high: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        number = parse_positive_int(text)
        if number > high:
            raise ValueError(f"{text!r} is more than {high}")
        return number
    return parse


# --- flags and settings ---------------------------------------------------------------------

def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--server", metavar="URL",
                        help=f"the queue service, like http://host:8000 (env {ENV_SERVER}; "
                             "required)")
    parser.add_argument("--token", metavar="T",
                        help=f"the service's worker token (env {ENV_TOKENS[0]}, then "
                             f"{ENV_TOKENS[1]}; required; the variable keeps it out of ps)")
    parser.add_argument("--backend", type=argtype(parse_backend), metavar="NAME",
                        help=f"sentence-transformers or ollama (env {ENV_BACKEND}; default "
                             "sentence-transformers)")
    parser.add_argument("--model", dest="models", action="append", metavar="NAME",
                        help=f"a model to serve, as clients name it; repeat for more (env "
                             f"{ENV_MODEL}, comma separated; default {LOCAL_MODEL})")
    parser.add_argument("--device", type=argtype(parse_device), metavar="DEVICE",
                        help=f"auto, cpu, cuda or cuda:N (env {ENV_DEVICE}; default auto: "
                             "CUDA in fp16 if there is a GPU, else CPU)")
    parser.add_argument("--batch-size", type=argtype(parse_positive_int), metavar="N",
                        help="texts per forward pass (default 256 on CUDA, 64 on CPU)")
    parser.add_argument("--max-tasks", type=argtype(_at_most(MAX_CLAIM_TASKS)),
                        default=CLAIM_TASKS, metavar="N",
                        help=f"tasks per claim (default {CLAIM_TASKS})")
    parser.add_argument("--max-texts", type=argtype(_at_most(MAX_CLAIM_TEXTS)),
                        default=CLAIM_TEXTS, metavar="N",
                        help=f"about this many texts per claim; a claim always takes one task "
                             f"however long (default {CLAIM_TEXTS})")
    parser.add_argument("--wait", type=argtype(parse_wait), default=CLAIM_WAIT, metavar="SECONDS",
                        help="how long the service may hold a claim open waiting for work "
                             f"(0 to {MAX_CLAIM_WAIT:g}; default {CLAIM_WAIT:g})")
    parser.add_argument("--poll-interval", type=argtype(parse_seconds), metavar="SECONDS",
                        help=f"pause after an empty claim with --wait 0, and the first pause "
                             f"when the service is unreachable (env {ENV_POLL_INTERVAL}; "
                             f"default {POLL_INTERVAL:g})")
    parser.add_argument("--ollama-url", metavar="URL",
                        help=f"the Ollama server for --backend ollama (env {ENV_OLLAMA}; "
                             "default http://localhost:11434)")
    parser.add_argument("--worker-id", metavar="ID",
                        help="this worker's name in the service (default hostname-pid-random)")


@dataclass(frozen=True)
class GpuSettings:
    """What the GPU worker is built from, resolved from flags, environment and defaults."""

    server: str
    token: str
    backend: str
    models: list[str]
    device: str
    batch_size: int | None  # None: the backend's default for its device
    max_tasks: int
    max_texts: int
    wait_seconds: float
    poll_interval: float
    ollama_url: str | None
    worker_id: str | None


def resolve_settings(args: argparse.Namespace, environ: Mapping[str, str]) -> GpuSettings:
    """Flags over environment variables over defaults; ValueError names what is missing or
    which variable is bad."""
    from pgvectorizer.gpu_worker.client import base_url

    server = args.server or env_value(environ, ENV_SERVER)
    if not server:
        raise ValueError(f"no service URL: give --server URL or set {ENV_SERVER}")
    try:
        server = base_url(server)
    except ValueError as exc:
        where = "--server" if args.server else f"environment variable {ENV_SERVER}"
        raise ValueError(f"{where}: {exc}") from None
    token = args.token
    for name in ENV_TOKENS:
        token = token or env_value(environ, name)
    if not token:
        raise ValueError(f"no worker token: give --token or set {ENV_TOKENS[0]} (or "
                         f"{ENV_TOKENS[1]}) to the service's worker token")
    poll_interval = args.poll_interval
    if poll_interval is None:
        poll_interval = from_env(environ, ENV_POLL_INTERVAL, parse_seconds) or POLL_INTERVAL
    return GpuSettings(
        server=server,
        token=token.strip(),
        backend=args.backend or from_env(environ, ENV_BACKEND, parse_backend)
        or GPU_BACKENDS[0],
        models=list(dict.fromkeys(args.models or from_env(environ, ENV_MODEL, parse_models)
                                  or [LOCAL_MODEL])),
        device=args.device or from_env(environ, ENV_DEVICE, parse_device) or "auto",
        batch_size=args.batch_size,
        max_tasks=args.max_tasks,
        max_texts=args.max_texts,
        wait_seconds=args.wait,
        poll_interval=poll_interval,
        ollama_url=args.ollama_url or env_value(environ, ENV_OLLAMA),
        worker_id=args.worker_id,
    )


# --- running --------------------------------------------------------------------------------

def make_backend(settings: GpuSettings) -> Backend:
    """Loads or probes the models (tests replace this function)."""
    from pgvectorizer.gpu_worker import make_backend as make

    return make(settings.backend, settings.models, device=settings.device,
                batch_size=settings.batch_size, ollama_url=settings.ollama_url)


def run(args: argparse.Namespace) -> int:
    """Works until SIGTERM or SIGINT; the exit status (see the module's docstring)."""
    try:
        from pgvectorizer.gpu_worker import GpuWorker
    except ImportError as exc:
        print(f"pgvectorizer gpu-worker needs its extra: pip install '<checkout>/python_pkg[gpu]' "
              f"({exc})", file=sys.stderr)
        return EXIT_USAGE
    try:
        settings = resolve_settings(args, os.environ)
    except ValueError as exc:
        print(f"pgvectorizer gpu-worker: {exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        backend = make_backend(settings)
    except ConfigError as exc:
        print(f"pgvectorizer gpu-worker: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:  # Ctrl-C while a model loads: no traceback
        return EXIT_INTERRUPTED
    try:
        worker = GpuWorker(settings.server, settings.token, backend,
                           worker_id=settings.worker_id, max_tasks=settings.max_tasks,
                           max_texts=settings.max_texts, wait_seconds=settings.wait_seconds,
                           poll_interval=settings.poll_interval)
    except ConfigError as exc:  # the flags' own checks make this rare
        backend.close()
        print(f"pgvectorizer gpu-worker: {exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        return run_worker(worker)
    finally:
        backend.close()


def run_worker(worker: GpuWorker) -> int:
    """Runs the worker under SIGTERM/SIGINT handling: 0 on a graceful stop, 1 when the service
    refuses it (the reason in one line) or it fails."""

    async def serve() -> None:
        signals = ShutdownSignals(worker, asyncio.get_running_loop())
        signals.install()
        try:
            await worker.run()
        finally:
            signals.uninstall()

    try:
        asyncio.run(serve())
    except ConfigError as exc:  # ServiceAuthError among them
        print(f"pgvectorizer gpu-worker: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except Exception:
        logger.exception("GPU worker failed")
        return EXIT_FAILED
    return EXIT_OK
