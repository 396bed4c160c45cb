"""The command line: `pgvectorizer worker | status | search | serve | gpu-worker`, and
`vectorizer` (the worker).

Each worker option can also come from an environment variable; a flag wins over its variable,
and the variable over the default. The worker and psycopg are imported only when a command
needs them, so that `--help` answers at once.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import re
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any, NoReturn, Protocol

from pgvectorizer import __version__, cli_gpu, cli_search, cli_serve
from pgvectorizer.cli_common import (
    EXIT_FAILED,
    EXIT_OK,
    ShutdownSignals,
    argtype,
    env_value,
    from_env,
    parse_positive_int,
)
from pgvectorizer.errors import VectorizerError

logger = logging.getLogger(__name__)

DEFAULT_DB_URL = "postgres://postgres@localhost:5432/postgres"
DEFAULT_POLL_INTERVAL = timedelta(minutes=5)

ENV_DB_URL = "PGAI_VECTORIZER_WORKER_DB_URL"
# The name the first releases used; read after the new one so old deployments keep working.
ENV_DB_URL_OLD = "VECTORIZER_DB_URL"
ENV_VECTORIZER_IDS = "PGAI_VECTORIZER_WORKER_VECTORIZER_IDS"
ENV_POLL_INTERVAL = "PGAI_VECTORIZER_WORKER_POLL_INTERVAL"
ENV_CONCURRENCY = "PGAI_VECTORIZER_WORKER_CONCURRENCY"
ENV_ONCE = "PGAI_VECTORIZER_WORKER_ONCE"

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

STATUS_ERROR_WIDTH = 60  # characters of last_error shown in the status table


# --- values: each parser raises ValueError with a message that quotes the value -------------

_UNITS = (("d", "days"), ("h", "hours"), ("m", "minutes"), ("s", "seconds"))
# Units largest first, each at most once, so "1h30m" reads one way only; spaces may separate.
_DURATION = re.compile(r"\s*".join(rf"(?:([0-9]+){u})?" for u, _ in _UNITS), re.ASCII)
_TRUE = frozenset({"true", "1", "yes", "on"})
_FALSE = frozenset({"false", "0", "no", "off"})


def parse_duration(text: str) -> timedelta:
    """A positive duration: whole seconds ("900") or units largest first ("30s", "1h30m", "2d")."""
    value = text.strip().lower()
    if value.startswith("-"):
        raise ValueError(f"{text!r} is negative: the interval must be longer than zero")
    if re.fullmatch(r"[0-9]+", value, re.ASCII):
        delta = timedelta(seconds=int(value))
    else:
        match = _DURATION.fullmatch(value)
        if not value or match is None or not any(match.groups()):
            raise ValueError(f"{text!r} is not a duration: use whole seconds or units d, h, m, s "
                             "largest first, like 30s, 5m, 1h30m, 2d")
        try:
            delta = timedelta(**{name: int(n) for (_, name), n in zip(_UNITS, match.groups(), strict=True)
                                 if n is not None})
        except OverflowError:
            raise ValueError(f"{text!r} is too long a duration") from None
    if delta <= timedelta(0):
        raise ValueError(f"{text!r} is not longer than zero")
    return delta


def parse_vectorizer_ids(text: str) -> list[int]:
    """Vectorizer ids separated by commas and/or spaces ("1,2 3"); none is an empty list."""
    return [parse_positive_int(part) for part in re.split(r"[\s,]+", text.strip()) if part]


def parse_bool(text: str) -> bool:
    """true/1/yes/on or false/0/no/off, in any case."""
    value = text.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ValueError(f"{text!r} is not a boolean: use true/false, 1/0, yes/no or on/off")


# --- settings -------------------------------------------------------------------------------

@dataclass(frozen=True)
class WorkerSettings:
    """The Worker's constructor arguments, resolved from flags, environment and defaults."""

    db_url: str
    vectorizer_ids: list[int] | None  # None: every vectorizer, including ones created later
    poll_interval: timedelta
    concurrency: int | None  # None: each vectorizer's processing config decides
    once: bool


def resolve_db_url(flag: str | None, environ: Mapping[str, str]) -> str:
    """The flag, else PGAI_VECTORIZER_WORKER_DB_URL, else VECTORIZER_DB_URL, else the default."""
    if flag is not None:
        return flag
    return env_value(environ, ENV_DB_URL) or env_value(environ, ENV_DB_URL_OLD) or DEFAULT_DB_URL


def resolve_worker_settings(args: argparse.Namespace, environ: Mapping[str, str]) -> WorkerSettings:
    """Flags over environment variables over defaults; ValueError names a bad variable."""
    ids = args.vectorizer_ids
    if ids is None:
        ids = from_env(environ, ENV_VECTORIZER_IDS, parse_vectorizer_ids)
    poll_interval = args.poll_interval
    if poll_interval is None:
        poll_interval = from_env(environ, ENV_POLL_INTERVAL, parse_duration) or DEFAULT_POLL_INTERVAL
    concurrency = args.concurrency
    if concurrency is None:
        concurrency = from_env(environ, ENV_CONCURRENCY, parse_positive_int)
    once = args.once
    if once is None:
        once = from_env(environ, ENV_ONCE, parse_bool) or False
    if ids is not None:
        # The same id twice would only make the worker visit it twice per round; no ids
        # at all (a variable holding only separators) means every vectorizer.
        ids = list(dict.fromkeys(ids)) or None
    return WorkerSettings(
        db_url=resolve_db_url(args.db_url, environ),
        vectorizer_ids=ids,
        poll_interval=poll_interval,
        concurrency=concurrency,
        once=once,
    )


# --- the parsers ----------------------------------------------------------------------------

def _add_log_level(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--log-level", type=str.upper, choices=LOG_LEVELS, default="INFO",
                        help="how much to log to stderr (default INFO)")


def _add_db_url(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-d", "--db-url", metavar="URL",
                        help=f"PostgreSQL connection string (env {ENV_DB_URL}, then {ENV_DB_URL_OLD}; "
                             f"default {DEFAULT_DB_URL})")


def _add_worker_options(parser: argparse.ArgumentParser) -> None:
    _add_db_url(parser)
    # "-id" is spelled out because the self-hosting guide uses it ("vectorizer -id 42");
    # without it argparse would read "-id" as "-i" with the value "d".
    parser.add_argument("-i", "-id", "--vectorizer-id", dest="vectorizer_ids", metavar="ID",
                        type=argtype(parse_positive_int), action="append",
                        help=f"process only this vectorizer; repeat for more (env {ENV_VECTORIZER_IDS}, "
                             "comma or space separated; default all)")
    parser.add_argument("--poll-interval", metavar="DURATION", type=argtype(parse_duration),
                        help="pause between rounds: seconds or 30s, 5m, 1h30m, 2d "
                             f"(env {ENV_POLL_INTERVAL}; default 5m)")
    parser.add_argument("-c", "--concurrency", metavar="N", type=argtype(parse_positive_int),
                        help=f"tasks per vectorizer queue (env {ENV_CONCURRENCY}; "
                             "default: the vectorizer's processing config, else 1)")
    parser.add_argument("--once", action=argparse.BooleanOptionalAction, default=None,
                        help=f"work each queue until empty, then exit (env {ENV_ONCE}; default off)")
    _add_log_level(parser)


def build_parser() -> argparse.ArgumentParser:
    """The `pgvectorizer` parser with its worker and status commands."""
    parser = argparse.ArgumentParser(
        prog="pgvectorizer", allow_abbrev=False,
        description="Keep vector embeddings of PostgreSQL rows in sync with the ai extension.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    worker = commands.add_parser(
        "worker", allow_abbrev=False, help="embed queued rows, round after round",
        description="Work the vectorizers' queues: embed changed rows and store the vectors.")
    _add_worker_options(worker)
    worker.set_defaults(handler=_worker_command, parser=worker)

    status = commands.add_parser(
        "status", allow_abbrev=False, help="show each vectorizer's queue and last error",
        description="Print ai.vectorizer_status: pending and failed rows, last success and error.")
    _add_db_url(status)
    status.add_argument("--json", action="store_true", help="print JSON instead of a table")
    _add_log_level(status)
    status.set_defaults(handler=_status_command, parser=status)

    search = commands.add_parser(
        "search", allow_abbrev=False, help="semantic search in a vectorizer's chunks",
        description="Embed a query with the vectorizer's model and print the nearest chunks.")
    _add_db_url(search)
    cli_search.add_arguments(search)
    _add_log_level(search)
    search.set_defaults(handler=_search_command, parser=search)

    serve = commands.add_parser(
        "serve", allow_abbrev=False, help="run the embedding queue service (OpenAI-compatible)",
        description="Accept POST /v1/embeddings and hand the texts to GPU workers over HTTP. "
                    "Settings: AUTH_TOKEN (required), WORKER_TOKEN, EMBEDDING_MODEL, MODELS, "
                    "SERVER_HOST, SERVER_PORT, DB_PATH or DATABASE_URL, LEASE_SECONDS, "
                    "MAX_ATTEMPTS, RESULT_RETENTION, MAX_REQUEST_BYTES, MAX_INPUTS, "
                    "MAX_WAIT_SECONDS, SYNC_WAIT_SECONDS, PENDING_TIMEOUT, DIMENSIONS_MODELS.")
    cli_serve.add_arguments(serve)
    _add_log_level(serve)
    serve.set_defaults(handler=_serve_command, parser=serve)

    gpu = commands.add_parser(
        "gpu-worker", allow_abbrev=False, help="embed the queue service's tasks on this machine",
        description="Pull tasks from `pgvectorizer serve` over HTTP (no inbound connection "
                    "needed) and embed them with sentence-transformers (CUDA in fp16, else "
                    "CPU) or Ollama.")
    cli_gpu.add_arguments(gpu)
    _add_log_level(gpu)
    gpu.set_defaults(handler=_gpu_worker_command, parser=gpu)
    return parser


def build_vectorizer_parser() -> argparse.ArgumentParser:
    """The `vectorizer` parser: the worker's options without a command."""
    parser = argparse.ArgumentParser(
        prog="vectorizer", allow_abbrev=False,
        description="Work the vectorizers' queues (the same as `pgvectorizer worker`).")
    parser.add_argument("--version", action="version", version=f"pgvectorizer {__version__}")
    _add_worker_options(parser)
    parser.set_defaults(handler=_worker_command, parser=parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """`pgvectorizer COMMAND ...`; returns the exit status."""
    return _dispatch(build_parser(), argv)


def vectorizer_main(argv: Sequence[str] | None = None) -> int:
    """`vectorizer ...`: the worker; returns the exit status."""
    return _dispatch(build_vectorizer_parser(), argv)


def _dispatch(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> int:
    try:
        args = parser.parse_args(argv)
        code: int = args.handler(args)
        return code
    except SystemExit as exc:
        # argparse exits for --help, --version and usage errors; callers get a status instead.
        return exc.code if isinstance(exc.code, int) else EXIT_OK if exc.code is None else EXIT_FAILED


def _usage_error(args: argparse.Namespace, message: str) -> NoReturn:
    parser: argparse.ArgumentParser = args.parser
    parser.error(message)


def _setup_logging(level: str) -> None:
    logging.basicConfig(level=level, format=LOG_FORMAT, stream=sys.stderr)
    # httpx logs every request at INFO: thousands of lines a minute from a busy worker.
    logging.getLogger("httpx").setLevel(max(logging.WARNING, logging.getLogger().level))


def _load_dotenv(args: argparse.Namespace) -> None:
    # API keys usually live in .env; variables already set in the environment win.
    from pgvectorizer.dotenv import load_env

    try:
        merged = load_env()
    except (OSError, ValueError) as exc:  # unreadable, or not UTF-8
        _usage_error(args, f".env: {exc}")
    # load_env only returns the file overlaid by the environment; the worker's settings and
    # the embedders' API keys are read from os.environ, so the file's variables go there.
    for key, value in merged.items():
        os.environ.setdefault(key, value)


# --- worker ---------------------------------------------------------------------------------

class WorkerLike(Protocol):
    """What the CLI needs of pgvectorizer.worker.Worker."""

    async def run(self) -> Exception | None: ...

    async def request_graceful_shutdown(self) -> None: ...


def _make_worker(settings: WorkerSettings) -> WorkerLike:
    """Builds the real Worker (tests replace this function)."""
    from pgvectorizer.worker import Worker

    return Worker(db_url=settings.db_url, vectorizer_ids=settings.vectorizer_ids,
                  poll_interval=settings.poll_interval, concurrency=settings.concurrency,
                  once=settings.once)


def _worker_command(args: argparse.Namespace) -> int:
    _setup_logging(args.log_level)
    _load_dotenv(args)
    try:
        settings = resolve_worker_settings(args, os.environ)
    except ValueError as exc:
        _usage_error(args, str(exc))
    return run_worker(_make_worker(settings))


def run_worker(worker: WorkerLike) -> int:
    """Runs the worker to its end under SIGTERM/SIGINT handling; 0 on a clean stop, else 1."""
    try:
        error = asyncio.run(_serve(worker))
    except Exception:
        logger.exception("worker failed")
        return EXIT_FAILED
    if error is not None:
        # The worker logs the traceback where it caught the error; one line here is enough.
        logger.error("worker stopped on an error: %s", error)
        return EXIT_FAILED
    return EXIT_OK


async def _serve(worker: WorkerLike) -> Exception | None:
    signals = ShutdownSignals(worker, asyncio.get_running_loop())
    signals.install()
    try:
        return await worker.run()
    finally:
        signals.uninstall()


# --- status ---------------------------------------------------------------------------------

STATUS_COLUMNS = ("id", "name", "source_table", "destination", "pending_items", "failed_items",
                  "disabled", "last_success_at", "last_error")
_NUMERIC = frozenset({"id", "pending_items", "failed_items"})


def _status_command(args: argparse.Namespace) -> int:
    _setup_logging(args.log_level)
    _load_dotenv(args)
    # psycopg is imported here, not at start-up: the db layer is the only one to import it.
    from pgvectorizer.db.status import fetch_status

    try:
        rows = fetch_status(resolve_db_url(args.db_url, os.environ))
    except VectorizerError as exc:
        print(f"pgvectorizer status: {exc}", file=sys.stderr)
        return EXIT_FAILED
    if args.json:
        print(json.dumps(rows, indent=2, default=_json_value))
    else:
        print(format_status_table(rows))
    return EXIT_OK


def _search_command(args: argparse.Namespace) -> int:
    _setup_logging(args.log_level)
    _load_dotenv(args)
    return cli_search.run(args, resolve_db_url(args.db_url, os.environ))


def _serve_command(args: argparse.Namespace) -> int:
    _setup_logging(args.log_level)
    _load_dotenv(args)
    return cli_serve.run(args)


def _gpu_worker_command(args: argparse.Namespace) -> int:
    _setup_logging(args.log_level)
    _load_dotenv(args)
    return cli_gpu.run(args)


def _json_value(value: object) -> object:
    if isinstance(value, datetime | date):
        return value.isoformat()
    return str(value)


def _destination(row: Mapping[str, Any]) -> str:
    target = row.get("target_table")
    if target:
        view = row.get("view")
        return f"{target} (view {view})" if view else str(target)
    column = row.get("embedding_column")
    return f"column {column}" if column else "-"


def _cell(name: str, row: Mapping[str, Any]) -> str:
    if name == "destination":
        return _destination(row)
    value = row.get(name)
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, datetime):
        return value.isoformat(sep=" ", timespec="seconds")
    text = " ".join(str(value).split())  # an error message may span lines
    if name == "last_error" and len(text) > STATUS_ERROR_WIDTH:
        text = text[:STATUS_ERROR_WIDTH - 3] + "..."
    return text


def format_status_table(rows: Sequence[Mapping[str, Any]]) -> str:
    """Rows of ai.vectorizer_status as an aligned plain-text table with a count below it."""
    cells = [[_cell(name, row) for name in STATUS_COLUMNS] for row in rows]
    widths = [max([len(name)] + [len(r[i]) for r in cells]) for i, name in enumerate(STATUS_COLUMNS)]

    def line(values: Sequence[str]) -> str:
        return "  ".join(v.rjust(w) if name in _NUMERIC else v.ljust(w)
                         for name, v, w in zip(STATUS_COLUMNS, values, widths, strict=True)).rstrip()

    lines = [line(STATUS_COLUMNS), line(["-" * w for w in widths])]
    lines += [line(r) for r in cells]
    lines.append(f"({len(rows)} vectorizer{'' if len(rows) == 1 else 's'})")
    return "\n".join(lines)
