"""`pgvectorizer gpu-worker`: embed the queue service's tasks on this machine's GPU (or CPU).

Flags win over environment variables (read after ./.env is loaded), and those over defaults.
Only outgoing HTTP: the worker works behind NAT. Exit status: 0 after SIGTERM/SIGINT (a
graceful stop), 1 when the service refuses the token or the model cannot be served, 2 for bad
flags or variables.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING

from pgvectorizer.cli_common import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    Command,
    run_until_signal,
)
from pgvectorizer.defaults import (
    CLAIM_TASKS,
    CLAIM_TEXTS,
    CLAIM_WAIT,
    DEVICE,
    GPU_BACKENDS,
    GPU_POLL_INTERVAL,
    LOCAL_MODEL,
    MAX_CLAIM_TASKS,
    MAX_CLAIM_TEXTS,
    MAX_CLAIM_WAIT,
)
from pgvectorizer.errors import ConfigError
from pgvectorizer.settings import (
    Env,
    Var,
    argtype,
    at_most,
    parse_positive_int,
    parse_seconds,
)

if TYPE_CHECKING:
    from pgvectorizer.gpu_worker import Backend

logger = logging.getLogger(__name__)

# Ours first, then the embedding queue's names (the token: the workers', then the clients').
SERVER = Var("PGVECTORIZER_GPU_SERVER", "SERVER_URL")
TOKEN = Var("PGVECTORIZER_GPU_TOKEN", "WORKER_TOKEN", "AUTH_TOKEN")
BACKEND = Var("PGVECTORIZER_GPU_BACKEND", "EMBEDDING_BACKEND")
MODEL = Var("PGVECTORIZER_GPU_MODEL", "EMBEDDING_MODEL")
DEVICE_VAR = Var("PGVECTORIZER_GPU_DEVICE", "EMBEDDING_DEVICE")
POLL_INTERVAL = Var("PGVECTORIZER_GPU_POLL_INTERVAL", "POLL_INTERVAL")
OLLAMA_URL = Var("PGVECTORIZER_GPU_OLLAMA_URL", "OLLAMA_HOST")
VARIABLES = (SERVER, TOKEN, BACKEND, MODEL, DEVICE_VAR, POLL_INTERVAL, OLLAMA_URL)


# --- values: each parser raises ValueError with a message that quotes the value -------------

def parse_device(text: str) -> str:
    """auto, cpu, cuda or cuda:N."""
    value = text.strip().lower()
    if not DEVICE.fullmatch(value):
        raise ValueError(f"{text!r} is not a device: use auto, cpu, cuda or cuda:N")
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


# --- flags and settings ---------------------------------------------------------------------

def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--server", metavar="URL",
                        help=f"the queue service, like http://host:8000 (env {SERVER}; "
                             "required)")
    parser.add_argument("--token", metavar="T",
                        help=f"the service's worker token (env {TOKEN}; required; the "
                             "variable keeps it out of ps)")
    parser.add_argument("--backend", type=argtype(parse_backend), metavar="NAME",
                        help=f"sentence-transformers or ollama (env {BACKEND}; default "
                             "sentence-transformers)")
    parser.add_argument("--model", dest="models", action="append", metavar="NAME",
                        help=f"a model to serve, as clients name it; repeat for more (env "
                             f"{MODEL}, comma separated; default {LOCAL_MODEL})")
    parser.add_argument("--device", type=argtype(parse_device), metavar="DEVICE",
                        help=f"auto, cpu, cuda or cuda:N (env {DEVICE_VAR}; default auto: "
                             "CUDA in fp16 if there is a GPU, else CPU)")
    parser.add_argument("--batch-size", type=argtype(parse_positive_int), metavar="N",
                        help="texts per forward pass (default 256 on CUDA, 64 on CPU)")
    parser.add_argument("--max-tasks", type=argtype(at_most(MAX_CLAIM_TASKS)),
                        default=CLAIM_TASKS, metavar="N",
                        help=f"tasks per claim (default {CLAIM_TASKS})")
    parser.add_argument("--max-texts", type=argtype(at_most(MAX_CLAIM_TEXTS)),
                        default=CLAIM_TEXTS, metavar="N",
                        help=f"about this many texts per claim; a claim always takes one task "
                             f"however long (default {CLAIM_TEXTS})")
    parser.add_argument("--wait", type=argtype(partial(parse_seconds, maximum=MAX_CLAIM_WAIT)),
                        default=CLAIM_WAIT, metavar="SECONDS",
                        help="how long the service may hold a claim open waiting for work "
                             f"(0 to {MAX_CLAIM_WAIT:g}; default {CLAIM_WAIT:g})")
    parser.add_argument("--poll-interval", type=argtype(parse_seconds), metavar="SECONDS",
                        help=f"pause after an empty claim with --wait 0, and the first pause "
                             f"when the service is unreachable (env {POLL_INTERVAL}; "
                             f"default {GPU_POLL_INTERVAL:g})")
    parser.add_argument("--ollama-url", metavar="URL",
                        help=f"the Ollama server for --backend ollama (env {OLLAMA_URL}; "
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

    env = Env(environ)
    found = None if args.server else env.lookup(SERVER)
    server = args.server or (found[1] if found else None)
    if not server:
        raise ValueError(f"no service URL: give --server URL or set {SERVER.aliases[0]}")
    try:
        server = base_url(server)
    except ValueError as exc:
        where = f"environment variable {found[0]}" if found else "--server"
        raise ValueError(f"{where}: {exc}") from None
    token = args.token or env.text(TOKEN)
    if not token:
        raise ValueError(f"no worker token: give --token or set {TOKEN.aliases[0]} (or "
                         f"{TOKEN.aliases[1]}) to the service's worker token")
    poll_interval = env.get(POLL_INTERVAL, parse_seconds, GPU_POLL_INTERVAL,
                            flag=args.poll_interval)
    return GpuSettings(
        server=server,
        token=token.strip(),
        backend=args.backend or env.get(BACKEND, parse_backend, GPU_BACKENDS[0]),
        models=list(dict.fromkeys(args.models or env.get(MODEL, parse_models, [LOCAL_MODEL]))),
        device=args.device or env.get(DEVICE_VAR, parse_device, "auto"),
        batch_size=args.batch_size,
        max_tasks=args.max_tasks,
        max_texts=args.max_texts,
        wait_seconds=args.wait,
        poll_interval=poll_interval,
        ollama_url=args.ollama_url or env.text(OLLAMA_URL),
        worker_id=args.worker_id,
    )


# --- running --------------------------------------------------------------------------------

def load_backend(settings: GpuSettings) -> Backend:
    """Loads or probes the models (tests replace this function)."""
    from pgvectorizer.gpu_worker import make_backend

    return make_backend(settings.backend, settings.models, device=settings.device,
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
        backend = load_backend(settings)
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
        run_until_signal(worker)
    except ConfigError as exc:  # ServiceAuthError among them: the service refuses the worker
        print(f"pgvectorizer gpu-worker: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except Exception:
        logger.exception("GPU worker failed")
        return EXIT_FAILED
    finally:
        backend.close()
    return EXIT_OK


COMMAND = Command(
    "gpu-worker", help="embed the queue service's tasks on this machine",
    description="Pull tasks from `pgvectorizer serve` over HTTP (no inbound connection "
                "needed) and embed them with sentence-transformers (CUDA in fp16, else "
                "CPU) or Ollama.",
    add_arguments=add_arguments, run=run)
