"""The command line in this process: options, environment variables, signal handling and the
`status` table. The worker itself is replaced through the `_make_worker` seam.

The same command line as real processes (signals sent from outside, console scripts): tests/
acceptance/test_cli_processes.py; `status` against the database: tests/integration/
test_cli_status.py.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
import types
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pgvectorizer
import pytest
from pgvectorizer import cli
from pgvectorizer.cli import (
    DEFAULT_POLL_INTERVAL,
    WorkerSettings,
    format_status_table,
    main,
    parse_bool,
    parse_duration,
    parse_vectorizer_ids,
    vectorizer_main,
)
from pgvectorizer.defaults import DEFAULT_DB_URL

from tests.helpers.cli import clear_worker_env, columns

# --- fixtures ---------------------------------------------------------------------------------

@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No worker variables from the caller's shell, and no .env from the caller's directory."""
    clear_worker_env(monkeypatch, tmp_path)


class FakeWorker:
    """Stands in for pgvectorizer.worker.Worker: records calls, returns what it is told."""

    def __init__(self, settings: WorkerSettings, result: Exception | None = None,
                 raises: Exception | None = None, send: signal.Signals | None = None) -> None:
        self.settings = settings
        self.result = result
        self.raises = raises
        self.send = send
        self.shutdown_requests = 0
        self.stopped: asyncio.Event | None = None

    async def run(self) -> Exception | None:
        if self.raises is not None:
            raise self.raises
        if self.send is not None:
            self.stopped = asyncio.Event()
            signal.raise_signal(self.send)
            await asyncio.wait_for(self.stopped.wait(), timeout=5)
        return self.result

    async def request_graceful_shutdown(self) -> None:
        self.shutdown_requests += 1
        if self.stopped is not None:
            self.stopped.set()


class Made:
    """What the seam was asked to build, and how the next fake should behave."""

    def __init__(self) -> None:
        self.workers: list[FakeWorker] = []
        self.behaviour: dict[str, Any] = {}

    @property
    def settings(self) -> WorkerSettings:
        assert len(self.workers) == 1, f"expected one worker, got {len(self.workers)}"
        return self.workers[0].settings


@pytest.fixture
def made(monkeypatch: pytest.MonkeyPatch) -> Made:
    record = Made()

    def make(settings: WorkerSettings) -> FakeWorker:
        worker = FakeWorker(settings, **record.behaviour)
        record.workers.append(worker)
        return worker

    monkeypatch.setattr(cli, "_make_worker", make)
    return record


def settings_of(made: Made, *argv: str) -> WorkerSettings:
    assert main(["worker", *argv]) == 0
    return made.settings


# --- value parsers --------------------------------------------------------------------------

@pytest.mark.parametrize(("text", "expected"), [
    ("900", timedelta(seconds=900)),
    ("1", timedelta(seconds=1)),
    ("30s", timedelta(seconds=30)),
    ("5m", timedelta(minutes=5)),
    ("45m", timedelta(minutes=45)),
    ("1h", timedelta(hours=1)),
    ("1h30m", timedelta(hours=1, minutes=30)),
    ("1h 30m", timedelta(hours=1, minutes=30)),
    ("2d", timedelta(days=2)),
    ("1d2h3m4s", timedelta(days=1, hours=2, minutes=3, seconds=4)),
    ("90m", timedelta(minutes=90)),
    (" 5M ", timedelta(minutes=5)),
    ("0h5m", timedelta(minutes=5)),
])
def test_parse_duration_good(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize(("text", "problem"), [
    ("", "not a duration"),
    ("   ", "not a duration"),
    ("0", "not longer than zero"),
    ("0s", "not longer than zero"),
    ("0h0m", "not longer than zero"),
    ("-5", "negative"),
    ("-5m", "negative"),
    ("5x", "not a duration"),
    ("1.5h", "not a duration"),
    ("m", "not a duration"),
    ("30m1h", "not a duration"),  # largest unit first
    ("1h1h", "not a duration"),
    ("5 m", "not a duration"),
    ("abc", "not a duration"),
    ("\uff11\uff12", "not a duration"),  # full-width digits
    ("99999999999d", "too long"),
])
def test_parse_duration_bad(text: str, problem: str) -> None:
    with pytest.raises(ValueError, match=re.escape(repr(text))) as info:
        parse_duration(text)
    assert problem in str(info.value)


@pytest.mark.parametrize(("text", "expected"), [
    ("42", [42]), ("1,2,3", [1, 2, 3]), ("1 2 3", [1, 2, 3]), (" 1, 2,,3 ", [1, 2, 3]),
    ("7\t8\n9", [7, 8, 9]), ("", []), (",", []),
])
def test_parse_vectorizer_ids(text: str, expected: list[int]) -> None:
    assert parse_vectorizer_ids(text) == expected


@pytest.mark.parametrize("text", ["a", "1,b", "0", "-3", "1.5"])
def test_parse_vectorizer_ids_bad(text: str) -> None:
    with pytest.raises(ValueError):
        parse_vectorizer_ids(text)


@pytest.mark.parametrize("text", ["true", "TRUE", "1", "yes", "Yes", "on", " on "])
def test_parse_bool_true(text: str) -> None:
    assert parse_bool(text) is True


@pytest.mark.parametrize("text", ["false", "False", "0", "no", "NO", "off"])
def test_parse_bool_false(text: str) -> None:
    assert parse_bool(text) is False


@pytest.mark.parametrize("text", ["y", "2", "enabled", ""])
def test_parse_bool_bad(text: str) -> None:
    with pytest.raises(ValueError, match="not a boolean"):
        parse_bool(text)


# --- flags ----------------------------------------------------------------------------------

def test_defaults(made: Made) -> None:
    assert settings_of(made) == WorkerSettings(
        db_url=DEFAULT_DB_URL, vectorizer_ids=None, poll_interval=DEFAULT_POLL_INTERVAL,
        concurrency=None, once=False)
    assert DEFAULT_DB_URL == "postgres://postgres@localhost:5432/postgres"
    assert DEFAULT_POLL_INTERVAL == timedelta(minutes=5)


def test_every_flag(made: Made) -> None:
    assert settings_of(made, "-d", "postgres://u@h/db", "-i", "3", "-i", "5", "--poll-interval", "90s",
                       "-c", "4", "--once", "--log-level", "debug") == WorkerSettings(
        db_url="postgres://u@h/db", vectorizer_ids=[3, 5], poll_interval=timedelta(seconds=90),
        concurrency=4, once=True)


def test_long_flags(made: Made) -> None:
    assert settings_of(made, "--db-url=postgres://u@h/db", "--vectorizer-id=3", "--vectorizer-id", "5",
                       "--poll-interval=1h", "--concurrency=2", "--once") == WorkerSettings(
        db_url="postgres://u@h/db", vectorizer_ids=[3, 5], poll_interval=timedelta(hours=1),
        concurrency=2, once=True)


@pytest.mark.parametrize("argv", [["-i", "42"], ["-i42"], ["-id", "42"], ["-id=42"],
                                  ["--vectorizer-id", "42"], ["--vectorizer-id=42"]])
def test_vectorizer_id_spellings(made: Made, argv: list[str]) -> None:
    # "-id 42" is how the self-hosting guide spells it.
    assert settings_of(made, *argv).vectorizer_ids == [42]


def test_repeated_id_is_kept_once(made: Made) -> None:
    assert settings_of(made, "-i", "8", "-i", "42", "-i", "8").vectorizer_ids == [8, 42]


@pytest.mark.parametrize(("argv", "fragment"), [
    (["--poll-interval", "0"], "'0' is not longer than zero"),
    (["--poll-interval=-5m"], "'-5m' is negative"),
    (["--poll-interval", "soon"], "'soon' is not a duration"),
    (["-c", "0"], "argument -c/--concurrency: '0' is less than 1"),
    (["-c", "many"], "'many' is not a whole number"),
    (["-i", "x"], "'x' is not a whole number"),
    (["-id42"], "'d42' is not a whole number"),  # "-id" takes its value separately
    (["--log-level", "LOUD"], "invalid choice: 'LOUD'"),
    (["--vec", "3"], "unrecognized arguments: --vec"),  # no abbreviations
    (["extra"], "unrecognized arguments: extra"),
])
def test_bad_flag_exits_2(made: Made, capsys: pytest.CaptureFixture[str], argv: list[str],
                          fragment: str) -> None:
    assert main(["worker", *argv]) == 2
    assert fragment in capsys.readouterr().err
    assert made.workers == []


def test_no_command_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert "required: COMMAND" in capsys.readouterr().err


def test_help_and_version_return_0(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"pgvectorizer {pgvectorizer.__version__}"
    assert main(["worker", "--help"]) == 0
    assert "--poll-interval" in capsys.readouterr().out


# --- environment variables ------------------------------------------------------------------

@pytest.mark.parametrize(("name", "value", "field", "expected"), [
    ("PGAI_VECTORIZER_WORKER_DB_URL", "postgres://env@h/db", "db_url", "postgres://env@h/db"),
    ("VECTORIZER_DB_URL", "postgres://old@h/db", "db_url", "postgres://old@h/db"),
    ("PGAI_VECTORIZER_WORKER_VECTORIZER_IDS", "42, 64 8", "vectorizer_ids", [42, 64, 8]),
    ("PGAI_VECTORIZER_WORKER_VECTORIZER_IDS", ",", "vectorizer_ids", None),
    ("PGAI_VECTORIZER_WORKER_POLL_INTERVAL", "45m", "poll_interval", timedelta(minutes=45)),
    ("PGAI_VECTORIZER_WORKER_POLL_INTERVAL", "900", "poll_interval", timedelta(seconds=900)),
    ("PGAI_VECTORIZER_WORKER_CONCURRENCY", "3", "concurrency", 3),
    ("PGAI_VECTORIZER_WORKER_ONCE", "true", "once", True),
    ("PGAI_VECTORIZER_WORKER_ONCE", "ON", "once", True),
    ("PGAI_VECTORIZER_WORKER_ONCE", "0", "once", False),
    ("PGAI_VECTORIZER_WORKER_ONCE", "", "once", False),  # empty is unset
])
def test_env_var(made: Made, monkeypatch: pytest.MonkeyPatch, name: str, value: str, field: str,
                 expected: object) -> None:
    monkeypatch.setenv(name, value)
    assert getattr(settings_of(made), field) == expected


@pytest.mark.parametrize(("name", "value", "argv", "field", "expected"), [
    ("PGAI_VECTORIZER_WORKER_DB_URL", "postgres://env@h/db", ["-d", "postgres://flag@h/db"], "db_url",
     "postgres://flag@h/db"),
    ("VECTORIZER_DB_URL", "postgres://old@h/db", ["-d", "postgres://flag@h/db"], "db_url",
     "postgres://flag@h/db"),
    ("PGAI_VECTORIZER_WORKER_VECTORIZER_IDS", "1,2", ["-i", "9"], "vectorizer_ids", [9]),
    ("PGAI_VECTORIZER_WORKER_POLL_INTERVAL", "1h", ["--poll-interval", "10"], "poll_interval",
     timedelta(seconds=10)),
    ("PGAI_VECTORIZER_WORKER_CONCURRENCY", "3", ["-c", "5"], "concurrency", 5),
    ("PGAI_VECTORIZER_WORKER_ONCE", "true", ["--no-once"], "once", False),
    ("PGAI_VECTORIZER_WORKER_ONCE", "false", ["--once"], "once", True),
])
def test_flag_beats_env(made: Made, monkeypatch: pytest.MonkeyPatch, name: str, value: str,
                        argv: list[str], field: str, expected: object) -> None:
    monkeypatch.setenv(name, value)
    assert getattr(settings_of(made, *argv), field) == expected


def test_new_db_url_variable_beats_old(made: Made, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VECTORIZER_DB_URL", "postgres://old@h/db")
    monkeypatch.setenv("PGAI_VECTORIZER_WORKER_DB_URL", "postgres://new@h/db")
    assert settings_of(made).db_url == "postgres://new@h/db"


def test_empty_new_db_url_falls_back_to_old(made: Made, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PGAI_VECTORIZER_WORKER_DB_URL", "")
    monkeypatch.setenv("VECTORIZER_DB_URL", "postgres://old@h/db")
    assert settings_of(made).db_url == "postgres://old@h/db"


@pytest.mark.parametrize(("name", "value"), [
    ("PGAI_VECTORIZER_WORKER_VECTORIZER_IDS", "1,two"),
    ("PGAI_VECTORIZER_WORKER_VECTORIZER_IDS", "0"),
    ("PGAI_VECTORIZER_WORKER_POLL_INTERVAL", "0"),
    ("PGAI_VECTORIZER_WORKER_POLL_INTERVAL", "5 minutes"),
    ("PGAI_VECTORIZER_WORKER_CONCURRENCY", "0"),
    ("PGAI_VECTORIZER_WORKER_CONCURRENCY", "lots"),
    ("PGAI_VECTORIZER_WORKER_ONCE", "maybe"),
])
def test_bad_env_var_exits_2(made: Made, monkeypatch: pytest.MonkeyPatch,
                             capsys: pytest.CaptureFixture[str], name: str, value: str) -> None:
    monkeypatch.setenv(name, value)
    assert main(["worker"]) == 2
    err = capsys.readouterr().err
    assert f"environment variable {name}={value!r}: " in err, err
    assert made.workers == []


def test_bad_env_var_is_ignored_when_the_flag_is_given(made: Made, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PGAI_VECTORIZER_WORKER_CONCURRENCY", "lots")
    assert settings_of(made, "-c", "2").concurrency == 2


@pytest.fixture
def restore_environ() -> Iterator[None]:
    # .env loading writes os.environ directly, past monkeypatch's bookkeeping.
    saved = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(saved)


@pytest.mark.usefixtures("restore_environ")
def test_dotenv_fills_the_environment(made: Made, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PGVT_TEST_SET_IN_SHELL", "shell")
    (tmp_path / ".env").write_text(
        "PGAI_VECTORIZER_WORKER_DB_URL=postgres://dotenv@h/db\n"
        "PGVT_TEST_API_KEY='sk-from-file'\n"
        "PGVT_TEST_SET_IN_SHELL=file\n")
    assert settings_of(made).db_url == "postgres://dotenv@h/db"
    assert os.environ["PGVT_TEST_API_KEY"] == "sk-from-file"
    assert os.environ["PGVT_TEST_SET_IN_SHELL"] == "shell"  # the real environment wins


@pytest.mark.usefixtures("restore_environ")
def test_flag_beats_dotenv(made: Made, tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("PGAI_VECTORIZER_WORKER_CONCURRENCY=7\n")
    assert settings_of(made, "-c", "2").concurrency == 2


# --- the vectorizer alias -------------------------------------------------------------------

@pytest.mark.parametrize("argv", [
    [],
    ["-d", "postgres://u@h/db", "-i", "42", "--once"],
    ["-id", "42", "-i", "64", "--poll-interval=1h30m", "-c", "3"],
    ["--db-url", "postgres://u@h/db", "--vectorizer-id=8", "--no-once"],
])
def test_vectorizer_alias_parses_the_same(made: Made, argv: list[str]) -> None:
    assert main(["worker", *argv]) == 0
    assert vectorizer_main(argv) == 0
    assert len(made.workers) == 2
    assert made.workers[0].settings == made.workers[1].settings


def test_vectorizer_alias_reads_env_and_rejects_bad_values(made: Made, monkeypatch: pytest.MonkeyPatch,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("VECTORIZER_DB_URL", "postgres://old@h/db")
    assert vectorizer_main([]) == 0
    assert made.settings.db_url == "postgres://old@h/db"
    assert vectorizer_main(["--poll-interval", "never"]) == 2
    assert "vectorizer: error: argument --poll-interval: 'never'" in capsys.readouterr().err


# --- running the worker ---------------------------------------------------------------------

def test_exit_0_when_run_returns_none(made: Made) -> None:
    assert main(["worker", "--once"]) == 0


def test_exit_1_when_run_returns_an_exception(made: Made, caplog: pytest.LogCaptureFixture) -> None:
    made.behaviour = {"result": RuntimeError("queue table is gone")}
    assert main(["worker"]) == 1
    assert "queue table is gone" in caplog.text


def test_exit_1_when_run_raises(made: Made, caplog: pytest.LogCaptureFixture) -> None:
    made.behaviour = {"raises": RuntimeError("lost the connection")}
    assert main(["worker"]) == 1
    assert "lost the connection" in caplog.text


def test_sigint_requests_graceful_shutdown_and_restores_handlers(made: Made) -> None:
    before = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    made.behaviour = {"send": signal.SIGINT}
    assert main(["worker"]) == 0
    assert made.workers[0].shutdown_requests == 1
    assert {sig: signal.getsignal(sig) for sig in before} == before


def test_make_worker_passes_every_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[dict[str, Any]] = []
    fake = types.ModuleType("pgvectorizer.worker")

    class Worker:
        def __init__(self, **kwargs: Any) -> None:
            calls.append(kwargs)

    fake.Worker = Worker  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "pgvectorizer.worker", fake)
    settings = WorkerSettings(db_url="postgres://u@h/db", vectorizer_ids=[1, 2],
                              poll_interval=timedelta(seconds=30), concurrency=None, once=True)
    assert isinstance(cli._make_worker(settings), Worker)
    assert calls == [{"db_url": "postgres://u@h/db", "vectorizer_ids": [1, 2],
                      "poll_interval": timedelta(seconds=30), "concurrency": None, "once": True}]


# --- status ---------------------------------------------------------------------------------

def status_row(**values: Any) -> dict[str, Any]:
    row: dict[str, Any] = {"id": 1, "name": "public_blog_embedding_store", "source_table": "public.blog",
                           "target_table": "public.blog_embedding_store",
                           "view": "public.blog_embedding", "embedding_column": None,
                           "pending_items": 3, "failed_items": 0, "last_success_at": None,
                           "last_error_at": None, "last_error": None, "disabled": False,
                           "scheduling": "none"}
    row.update(values)
    return row


def test_status_table_format() -> None:
    when = datetime(2024, 5, 1, 12, 30, 5, 123456, tzinfo=UTC)
    table = format_status_table([
        status_row(),
        status_row(id=12, name="docs_vec", source_table='public."Docs"', target_table=None, view=None,
                   embedding_column="embedding", pending_items=20000, failed_items=2, disabled=True,
                   last_success_at=when, last_error="rate limited\nby the provider " + "x" * 100),
    ])
    lines = table.splitlines()
    assert lines[0].split() == ["id", "name", "source_table", "destination", "pending_items",
                                "failed_items", "disabled", "last_success_at", "last_error"]
    assert lines[-1] == "(2 vectorizers)"
    first, second = columns(table)
    assert first == {"id": "1", "name": "public_blog_embedding_store", "source_table": "public.blog",
                     "destination": "public.blog_embedding_store (view public.blog_embedding)",
                     "pending_items": "3", "failed_items": "0", "disabled": "no",
                     "last_success_at": "-", "last_error": "-"}
    assert second["destination"] == "column embedding"
    assert second["pending_items"] == "20000" and second["disabled"] == "yes"
    assert second["last_success_at"] == "2024-05-01 12:30:05+00:00"
    assert second["last_error"].startswith("rate limited by the provider xx")
    assert second["last_error"].endswith("...") and len(second["last_error"]) == cli.STATUS_ERROR_WIDTH
    # Numbers line up on the right.
    assert lines[2].index("3 ") == lines[3].index("20000") + 4


def test_status_table_empty() -> None:
    assert format_status_table([]).splitlines()[-1] == "(0 vectorizers)"


def test_status_connection_error_exits_1(capsys: pytest.CaptureFixture[str]) -> None:
    # Port 1 on the loopback refuses at once.
    assert main(["status", "-d", "postgresql://nobody@127.0.0.1:1/x"]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("pgvectorizer status: cannot read ai.vectorizer_status:")


def test_a_bad_tuning_variable_exits_2_with_its_name(monkeypatch: pytest.MonkeyPatch,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    """The worker reads these itself, before it connects: a usage error, not a traceback."""
    monkeypatch.setenv("PGVECTORIZER_LEASE_SECONDS", "soon")
    assert main(["worker", "--once", "--db-url", "postgresql://127.0.0.1:1/none"]) == 2
    err = capsys.readouterr().err
    assert "PGVECTORIZER_LEASE_SECONDS" in err and "'soon'" in err, err
    assert "Traceback" not in err
