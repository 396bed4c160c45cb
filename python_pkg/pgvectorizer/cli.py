"""The command line: `pgvectorizer worker | status | search | serve | gpu-worker`, and
`vectorizer` (the worker).

Each command is a cli_common.Command: its arguments, and a run that reads its settings (a flag
over its environment variables over the default; pgvectorizer.settings) and returns the exit
status. This module builds the parser from them; before any run it sets up logging and copies
./.env into the environment. The worker and psycopg are imported only when a command needs
them, so that `--help` answers at once.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any, NoReturn

from pgvectorizer import __version__, cli_gpu, cli_install, cli_search, cli_serve
from pgvectorizer.cli_common import (
    DB_URL,
    EXIT_FAILED,
    EXIT_OK,
    Command,
    Runnable,
    add_db_url,
    resolve_db_url,
    run_until_signal,
)
from pgvectorizer.defaults import DEFAULT_POLL_INTERVAL
from pgvectorizer.errors import ConfigError, VectorizerError
from pgvectorizer.settings import (
    Env,
    Var,
    argtype,
    parse_bool,
    parse_duration,
    parse_positive_int,
)

logger = logging.getLogger(__name__)

# The worker's variables besides DB_URL: ours first, then pgai's worker's.
VECTORIZER_IDS = Var("PGVECTORIZER_VECTORIZER_IDS", "PGAI_VECTORIZER_WORKER_VECTORIZER_IDS")
POLL_INTERVAL = Var("PGVECTORIZER_POLL_INTERVAL", "PGAI_VECTORIZER_WORKER_POLL_INTERVAL")
CONCURRENCY = Var("PGVECTORIZER_CONCURRENCY", "PGAI_VECTORIZER_WORKER_CONCURRENCY")
ONCE = Var("PGVECTORIZER_ONCE", "PGAI_VECTORIZER_WORKER_ONCE")
VARIABLES = (DB_URL, VECTORIZER_IDS, POLL_INTERVAL, CONCURRENCY, ONCE)

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

STATUS_ERROR_WIDTH = 60  # characters of last_error shown in the status table


def parse_vectorizer_ids(text: str) -> list[int]:
    """Vectorizer ids separated by commas and/or spaces ("1,2 3"); none is an empty list."""
    return [parse_positive_int(part) for part in re.split(r"[\s,]+", text.strip()) if part]


# --- the worker's settings ------------------------------------------------------------------

@dataclass(frozen=True)
class WorkerSettings:
    """The Worker's constructor arguments, resolved from flags, environment and defaults."""

    db_url: str
    vectorizer_ids: list[int] | None  # None: every vectorizer, including ones created later
    poll_interval: timedelta
    concurrency: int | None  # None: each vectorizer's processing config decides
    once: bool


def resolve_worker_settings(args: argparse.Namespace, environ: Mapping[str, str]) -> WorkerSettings:
    """Flags over environment variables over defaults; ValueError names a bad variable."""
    env = Env(environ)
    ids = env.get(VECTORIZER_IDS, parse_vectorizer_ids, flag=args.vectorizer_ids)
    poll_interval = env.get(POLL_INTERVAL, parse_duration, DEFAULT_POLL_INTERVAL,
                            flag=args.poll_interval)
    concurrency = env.get(CONCURRENCY, parse_positive_int, flag=args.concurrency)
    once = env.get(ONCE, parse_bool, False, flag=args.once)
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


def _add_worker_arguments(parser: argparse.ArgumentParser) -> None:
    add_db_url(parser)
    # "-id" is spelled out because the self-hosting guide uses it ("vectorizer -id 42");
    # without it argparse would read "-id" as "-i" with the value "d".
    parser.add_argument("-i", "-id", "--vectorizer-id", dest="vectorizer_ids", metavar="ID",
                        type=argtype(parse_positive_int), action="append",
                        help=f"process only this vectorizer; repeat for more (env {VECTORIZER_IDS}, "
                             "comma or space separated; default all)")
    parser.add_argument("--poll-interval", metavar="DURATION", type=argtype(parse_duration),
                        help="pause between rounds: seconds or 30s, 5m, 1h30m, 2d "
                             f"(env {POLL_INTERVAL}; default 5m)")
    parser.add_argument("-c", "--concurrency", metavar="N", type=argtype(parse_positive_int),
                        help=f"tasks per vectorizer queue (env {CONCURRENCY}; "
                             "default: the vectorizer's processing config, else 1)")
    parser.add_argument("--once", action=argparse.BooleanOptionalAction, default=None,
                        help=f"work each queue until empty, then exit (env {ONCE}; default off)")


# --- the parsers ----------------------------------------------------------------------------

def _add_log_level(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--log-level", type=str.upper, choices=LOG_LEVELS, default="INFO",
                        help="how much to log to stderr (default INFO)")


def build_parser() -> argparse.ArgumentParser:
    """The `pgvectorizer` parser with its commands."""
    parser = argparse.ArgumentParser(
        prog="pgvectorizer", allow_abbrev=False,
        description="Keep vector embeddings of PostgreSQL rows in sync with the ai extension.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        sub = commands.add_parser(command.name, allow_abbrev=False, help=command.help,
                                  description=command.description)
        command.add_arguments(sub)
        _add_log_level(sub)
        sub.set_defaults(run=command.run, parser=sub)
    return parser


def build_vectorizer_parser() -> argparse.ArgumentParser:
    """The `vectorizer` parser: the worker's options without a command."""
    parser = argparse.ArgumentParser(
        prog="vectorizer", allow_abbrev=False,
        description="Work the vectorizers' queues (the same as `pgvectorizer worker`).")
    parser.add_argument("--version", action="version", version=f"pgvectorizer {__version__}")
    _add_worker_arguments(parser)
    _add_log_level(parser)
    parser.set_defaults(run=WORKER.run, parser=parser)
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
        _setup_logging(args.log_level)
        _load_dotenv(args)
        code: int = args.run(args)
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
    # load_env only returns the file overlaid by the environment; the settings and the
    # embedders' API keys are read from os.environ, so the file's variables go there.
    for key, value in merged.items():
        os.environ.setdefault(key, value)


# --- worker ---------------------------------------------------------------------------------

def _make_worker(settings: WorkerSettings) -> Runnable[Exception | None]:
    """Builds the real Worker (tests replace this function)."""
    from pgvectorizer.worker import Worker

    return Worker(db_url=settings.db_url, vectorizer_ids=settings.vectorizer_ids,
                  poll_interval=settings.poll_interval, concurrency=settings.concurrency,
                  once=settings.once)


def _run_worker(args: argparse.Namespace) -> int:
    """Works the queues under SIGTERM/SIGINT handling; 0 on a clean stop, else 1."""
    try:
        settings = resolve_worker_settings(args, os.environ)
    except ValueError as exc:
        _usage_error(args, str(exc))
    try:
        worker = _make_worker(settings)
    except ConfigError as exc:  # a tuning variable it reads itself (PGVECTORIZER_LEASE_SECONDS, ...)
        _usage_error(args, str(exc))
    try:
        error = run_until_signal(worker)
    except Exception:
        logger.exception("worker failed")
        return EXIT_FAILED
    if error is not None:
        # The worker logs the traceback where it caught the error; one line here is enough.
        logger.error("worker stopped on an error: %s", error)
        return EXIT_FAILED
    return EXIT_OK


WORKER = Command(
    "worker", help="embed queued rows, round after round",
    description="Work the vectorizers' queues: embed changed rows and store the vectors.",
    add_arguments=_add_worker_arguments, run=_run_worker)


# --- status ---------------------------------------------------------------------------------

STATUS_COLUMNS = ("id", "name", "source_table", "destination", "pending_items", "failed_items",
                  "disabled", "last_success_at", "last_error")
_NUMERIC = frozenset({"id", "pending_items", "failed_items"})


def _add_status_arguments(parser: argparse.ArgumentParser) -> None:
    add_db_url(parser)
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")


def _run_status(args: argparse.Namespace) -> int:
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


STATUS = Command(
    "status", help="show each vectorizer's queue and last error",
    description="Print ai.vectorizer_status: pending and failed rows, last success and error.",
    add_arguments=_add_status_arguments, run=_run_status)

# In the order of `pgvectorizer --help`.
COMMANDS = (WORKER, STATUS, cli_search.COMMAND, cli_serve.COMMAND, cli_gpu.COMMAND,
            cli_install.COMMAND)


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
