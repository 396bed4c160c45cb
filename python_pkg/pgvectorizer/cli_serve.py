"""`pgvectorizer serve`: the embedding queue service under uvicorn.

Settings come from the environment and ./.env (service/settings.py); flags override the
listening address and the store (the only settings with flags). --port 0 picks a free port, written to --port-file once the
socket is bound, so tests and scripts need not guess one.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import logging
import os
import signal
import socket
import sys
import threading
from collections.abc import Iterator

from pgvectorizer.cli_common import EXIT_FAILED, EXIT_OK, EXIT_USAGE, Command
from pgvectorizer.errors import ConfigError
from pgvectorizer.service.settings import DATABASE_URL, DB_PATH, HOST, PORT, SETTINGS

logger = logging.getLogger(__name__)

# Seconds uvicorn gives open requests on SIGTERM: long polls are cut short, and their
# clients ask again (a task accepted before is not lost).
GRACEFUL_SHUTDOWN = 5


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", help=f"address to listen on (env {HOST}; default 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port to listen on, 0 for any free one "
                        f"(env {PORT}; default 8000)")
    parser.add_argument("--port-file", metavar="FILE",
                        help="write the port here once listening (useful with --port 0)")
    parser.add_argument("--db-path", metavar="FILE",
                        help=f"SQLite task store (env {DB_PATH}; default data/embedding_queue.db)")
    parser.add_argument("--database-url", metavar="URL",
                        help=f"PostgreSQL task store, for several replicas (env {DATABASE_URL})")


def run(args: argparse.Namespace) -> int:
    """Serves until SIGTERM or SIGINT; 0 on a clean stop, 2 for bad settings."""
    from pgvectorizer.service.settings import settings_from_env

    try:
        settings = settings_from_env(dict(os.environ))
    except ConfigError as exc:
        print(f"pgvectorizer serve: {exc}", file=sys.stderr)
        return EXIT_USAGE
    overrides = {"host": args.host, "port": args.port, "db_path": args.db_path,
                 "database_url": args.database_url}
    settings = dataclasses.replace(
        settings, **{k: v for k, v in overrides.items() if v is not None})
    try:
        import uvicorn

        from pgvectorizer.service.app import create_app
    except ImportError as exc:
        print(f"pgvectorizer serve needs the service extra: pip install '<checkout>/python_pkg[service]' "
              f"({exc})", file=sys.stderr)
        return EXIT_USAGE
    family = socket.AF_INET6 if ":" in settings.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((settings.host, settings.port))
    except OSError as exc:
        print(f"pgvectorizer serve: cannot listen on {settings.host}:{settings.port}: {exc}",
              file=sys.stderr)
        return EXIT_FAILED
    port = sock.getsockname()[1]
    config = uvicorn.Config(create_app(settings), log_level=logging.getLogger().level,
                            timeout_graceful_shutdown=GRACEFUL_SHUTDOWN, access_log=False)
    server = _server_class()(config)

    async def serve() -> None:
        task = asyncio.create_task(server.serve(sockets=[sock]))
        while not server.started and not task.done():
            await asyncio.sleep(0.05)
        if server.started:
            logger.info("serving on http://%s:%d (%s)", settings.host, port,
                        settings.store_description)
            if args.port_file:
                _write_atomically(args.port_file, f"{port}\n")
        await task

    asyncio.run(serve())
    # A signal ends serve() gracefully; a failed start-up (say, a store it cannot open) not.
    return EXIT_OK if server.started else EXIT_FAILED


def _server_class() -> type:
    import uvicorn

    class Server(uvicorn.Server):
        """uvicorn's server, minus raising the signal again after a graceful shutdown: that
        makes the process die of it (exit 143 for SIGTERM) where a clean stop should exit 0."""

        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            if threading.current_thread() is not threading.main_thread():
                yield
                return
            previous = {sig: signal.signal(sig, self.handle_exit)
                        for sig in (signal.SIGINT, signal.SIGTERM)}
            try:
                yield
            finally:
                for sig, handler in previous.items():
                    signal.signal(sig, handler)

    return Server


def _write_atomically(path: str, text: str) -> None:
    # A reader polling for the file never sees it half-written.
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


COMMAND = Command(
    "serve", help="run the embedding queue service (OpenAI-compatible)",
    description="Accept POST /v1/embeddings and hand the texts to GPU workers over HTTP. "
                "Settings (environment or .env; the embedding queue's name also works): "
                + ", ".join(f"{var.name} ({', '.join(var.aliases)})" for var in SETTINGS)
                + f"; {SETTINGS[0].name} is required.",
    add_arguments=add_arguments, run=run)
