"""Reading settings (pgvectorizer.settings): names and aliases, precedence, the wording of bad
values, and the README's tables of variables."""

from __future__ import annotations

import argparse
import asyncio
import re
import signal
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from pgvectorizer import cli, cli_gpu
from pgvectorizer.cli_common import DB_URL, resolve_db_url, run_until_signal
from pgvectorizer.embedders.http import timeout_from_env
from pgvectorizer.errors import ConfigError
from pgvectorizer.service import settings as service
from pgvectorizer.settings import (
    COMMAND,
    SERVICE,
    TUNING,
    Env,
    Var,
    parse_number,
    parse_seconds,
    parse_tuning_seconds,
    parse_whole,
    tuning_seconds,
)

README = Path(__file__).resolve().parents[2] / "README.md"
# The worker's and the embedders' tunables: ours, with no alias.
TUNABLES = ("PGVECTORIZER_HTTP_TIMEOUT", "PGVECTORIZER_LEASE_SECONDS", "PGVECTORIZER_RETRY_SECONDS",
            "PGVECTORIZER_FAILED_RETRY_SECONDS", "PGVECTORIZER_KEY_ENDPOINTS",
            "PGVECTORIZER_ALLOWED_ENDPOINTS")
# Every setting, by the command that reads it.
BY_COMMAND: dict[str, tuple[Var, ...]] = {
    "worker": cli.VARIABLES, "gpu-worker": cli_gpu.VARIABLES, "serve": service.SETTINGS}
PREFIX = {"worker": "PGVECTORIZER_", "gpu-worker": "PGVECTORIZER_GPU_",
          "serve": "PGVECTORIZER_SERVE_"}


# --- Env --------------------------------------------------------------------------------------

def test_the_canonical_name_wins_then_the_aliases_in_order() -> None:
    var = Var("PGVECTORIZER_X", "OLD_X", "OLDER_X")
    assert str(var) == "PGVECTORIZER_X, then OLD_X, then OLDER_X"
    assert Env({"OLDER_X": "3", "OLD_X": "2", "PGVECTORIZER_X": "1"}).text(var) == "1"
    assert Env({"OLDER_X": "3", "OLD_X": "2"}).lookup(var) == ("OLD_X", "2")
    assert Env({"OLDER_X": " 3 "}).text(var) == " 3 "  # as given
    assert Env({}).text(var, "default") == "default"


@pytest.mark.parametrize("blank", ["", " ", "\t\n"])
def test_a_blank_variable_counts_as_unset(blank: str) -> None:
    var = Var("PGVECTORIZER_X", "OLD_X")
    assert Env({"PGVECTORIZER_X": blank, "OLD_X": "2"}).text(var) == "2"
    assert Env({"PGVECTORIZER_X": blank}).get(var, int, 7) == 7


def test_a_tunable_of_blanks_is_refused_as_before() -> None:
    assert tuning_seconds({"PGVECTORIZER_LEASE_SECONDS": ""}, "PGVECTORIZER_LEASE_SECONDS", 5) == 5
    with pytest.raises(ConfigError, match="must be a number of seconds, got ' '"):
        tuning_seconds({"PGVECTORIZER_LEASE_SECONDS": " "}, "PGVECTORIZER_LEASE_SECONDS", 5)


def test_a_flag_wins_and_its_variable_is_not_read() -> None:
    var = Var("PGVECTORIZER_X")
    env = Env({"PGVECTORIZER_X": "bad"})
    assert env.get(var, int, 1, flag=9) == 9
    with pytest.raises(ValueError, match="PGVECTORIZER_X='bad'"):
        env.get(var, int, 1)


@pytest.mark.parametrize(("dialect", "parse", "raw", "message"), [
    (COMMAND, parse_seconds, "soon",
     "environment variable V='soon': 'soon' is not a number of seconds"),
    (SERVICE, lambda t: parse_number(t, minimum=1), " 0.5 ", "V='0.5' is less than 1"),
    (SERVICE, lambda t: parse_whole(t, minimum=1), "2.5", "V='2.5' is not a whole number"),
    (SERVICE, lambda t: parse_number(t, minimum=0), "inf", "V='inf' is not a finite number"),
    (TUNING, parse_tuning_seconds, "soon", "V must be a number of seconds, got 'soon'"),
    (TUNING, parse_tuning_seconds, "-1", "V must not be negative, got '-1'"),
])
def test_each_dialect_keeps_its_wording(dialect: Any, parse: Any, raw: str, message: str) -> None:
    with pytest.raises(dialect.error) as caught:
        Env({"V": raw}, dialect).get(Var("V"), parse)
    assert str(caught.value) == message


def test_the_http_timeout_must_be_positive() -> None:
    with pytest.raises(ConfigError) as caught:
        timeout_from_env({"PGVECTORIZER_HTTP_TIMEOUT": "0"})
    assert str(caught.value) == "PGVECTORIZER_HTTP_TIMEOUT must be positive, got '0'"
    assert timeout_from_env({"PGVECTORIZER_HTTP_TIMEOUT": "7"}).read == 7.0


@pytest.mark.parametrize(("text", "problem"), [
    ("soon", "'soon' is not a number of seconds"), ("61", "'61' is not between 0 and 60 seconds"),
    ("-1", "'-1' is not between 0 and 60 seconds")])
def test_parse_seconds_with_a_maximum_takes_zero(text: str, problem: str) -> None:
    assert parse_seconds("0", maximum=60) == 0.0
    with pytest.raises(ValueError, match=re.escape(problem)):
        parse_seconds(text, maximum=60)


# --- canonical names over aliases, command by command ------------------------------------------

# A good value for each setting, and another one, with what each reads as.
WORKER_VALUES: dict[str, tuple[str, str, str, Any, Any]] = {
    DB_URL.name: ("db_url", "postgres://new@h/db", "postgres://old@h/db", "postgres://new@h/db",
                  "postgres://old@h/db"),
    cli.VECTORIZER_IDS.name: ("vectorizer_ids", "1", "2", [1], [2]),
    cli.POLL_INTERVAL.name: ("poll_interval", "60", "1m30s", timedelta(seconds=60),
                             timedelta(seconds=90)),
    cli.CONCURRENCY.name: ("concurrency", "3", "4", 3, 4),
    cli.ONCE.name: ("once", "true", "false", True, False),
}


def worker_settings(env: dict[str, str]) -> cli.WorkerSettings:
    return cli.resolve_worker_settings(cli.build_parser().parse_args(["worker"]), env)


@pytest.mark.parametrize("var", cli.VARIABLES, ids=lambda v: v.name)
def test_the_worker_reads_our_name_over_pgais(var: Var) -> None:
    field, ours, theirs, ours_read, theirs_read = WORKER_VALUES[var.name]
    for alias in var.aliases:
        assert getattr(worker_settings({var.name: ours, alias: theirs}), field) == ours_read
        assert getattr(worker_settings({var.name: " ", alias: theirs}), field) == theirs_read
        assert getattr(worker_settings({alias: theirs}), field) == theirs_read


def test_a_bad_value_under_our_name_is_named_and_wins_over_a_good_alias() -> None:
    with pytest.raises(ValueError) as caught:
        worker_settings({"PGVECTORIZER_CONCURRENCY": "0", "PGAI_VECTORIZER_WORKER_CONCURRENCY": "2"})
    assert str(caught.value) == "environment variable PGVECTORIZER_CONCURRENCY='0': '0' is less than 1"


def test_status_and_search_read_the_same_db_url() -> None:
    assert resolve_db_url(None, {"PGVECTORIZER_DB_URL": "postgres://a@h/db",
                                     "PGAI_VECTORIZER_WORKER_DB_URL": "postgres://b@h/db"}) \
        == "postgres://a@h/db"


def gpu_settings(env: dict[str, str]) -> cli_gpu.GpuSettings:
    parser = argparse.ArgumentParser()
    cli_gpu.add_arguments(parser)
    return cli_gpu.resolve_settings(parser.parse_args([]), env)


GPU_VALUES: dict[str, tuple[str, str, str, Any, Any]] = {
    "PGVECTORIZER_GPU_SERVER": ("server", "http://new", "http://old", "http://new", "http://old"),
    "PGVECTORIZER_GPU_TOKEN": ("token", "new", "old", "new", "old"),
    "PGVECTORIZER_GPU_BACKEND": ("backend", "ollama", "sentence-transformers", "ollama",
                                 "sentence-transformers"),
    "PGVECTORIZER_GPU_MODEL": ("models", "a,b", "c", ["a", "b"], ["c"]),
    "PGVECTORIZER_GPU_DEVICE": ("device", "cpu", "cuda", "cpu", "cuda"),
    "PGVECTORIZER_GPU_POLL_INTERVAL": ("poll_interval", "0.5", "3", 0.5, 3.0),
    "PGVECTORIZER_GPU_OLLAMA_URL": ("ollama_url", "http://o1", "http://o2", "http://o1", "http://o2"),
}


@pytest.mark.parametrize("var", cli_gpu.VARIABLES, ids=lambda v: v.name)
def test_the_gpu_worker_reads_our_name_over_the_queues(var: Var) -> None:
    field, ours, theirs, ours_read, theirs_read = GPU_VALUES[var.name]
    base = {k: v for k, v in {"SERVER_URL": "http://q", "WORKER_TOKEN": "t"}.items()
            if k not in var.names}
    for alias in var.aliases:
        assert getattr(gpu_settings({**base, var.name: ours, alias: theirs}), field) == ours_read
        assert getattr(gpu_settings({**base, alias: theirs}), field) == theirs_read


def test_the_gpu_worker_names_the_variable_of_a_bad_url() -> None:
    with pytest.raises(ValueError, match="^environment variable PGVECTORIZER_GPU_SERVER: "):
        gpu_settings({"PGVECTORIZER_GPU_SERVER": "q:8000", "SERVER_URL": "http://q",
                      "WORKER_TOKEN": "t"})


SERVICE_VALUES: dict[str, tuple[str, str, str, Any, Any]] = {
    "PGVECTORIZER_SERVE_AUTH_TOKEN": ("auth_token", "new", "old", "new", "old"),
    "PGVECTORIZER_SERVE_WORKER_TOKEN": ("worker_token", "new", "old", "new", "old"),
    "PGVECTORIZER_SERVE_EMBEDDING_MODEL": ("default_model", "m1", "m2", "m1", "m2"),
    "PGVECTORIZER_SERVE_MODELS": ("models", "x", "y", ("all-MiniLM-L6-v2", "x"),
                                  ("all-MiniLM-L6-v2", "y")),
    "PGVECTORIZER_SERVE_HOST": ("host", "0.0.0.0", "::1", "0.0.0.0", "::1"),
    "PGVECTORIZER_SERVE_PORT": ("port", "9000", "9001", 9000, 9001),
    "PGVECTORIZER_SERVE_DB_PATH": ("db_path", "a.db", "b.db", "a.db", "b.db"),
    "PGVECTORIZER_SERVE_DATABASE_URL": ("database_url", "postgresql://a", "postgresql://b",
                                        "postgresql://a", "postgresql://b"),
    "PGVECTORIZER_SERVE_LEASE_SECONDS": ("lease_seconds", "2", "3", 2.0, 3.0),
    "PGVECTORIZER_SERVE_MAX_ATTEMPTS": ("max_attempts", "4", "5", 4, 5),
    "PGVECTORIZER_SERVE_RESULT_RETENTION": ("result_retention", "60", "70", 60.0, 70.0),
    "PGVECTORIZER_SERVE_MAX_REQUEST_BYTES": ("max_request_bytes", "2048", "4096", 2048, 4096),
    "PGVECTORIZER_SERVE_MAX_INPUTS": ("max_inputs", "10", "20", 10, 20),
    "PGVECTORIZER_SERVE_MAX_WAIT_SECONDS": ("max_wait_seconds", "5", "6", 5.0, 6.0),
    "PGVECTORIZER_SERVE_SYNC_WAIT_SECONDS": ("sync_wait", "7", "8", 7.0, 8.0),
    "PGVECTORIZER_SERVE_PENDING_TIMEOUT": ("pending_timeout", "100", "200", 100.0, 200.0),
    "PGVECTORIZER_SERVE_DIMENSIONS_MODELS": ("dimensions_models", "e5", "gte", ("e5",), ("gte",)),
}


@pytest.mark.parametrize("var", service.SETTINGS, ids=lambda v: v.name)
def test_the_service_reads_our_name_over_the_queues(var: Var) -> None:
    field, ours, theirs, ours_read, theirs_read = SERVICE_VALUES[var.name]
    (alias,) = var.aliases
    base = {"AUTH_TOKEN": "t"} if var is not service.AUTH_TOKEN else {}
    assert getattr(service.settings_from_env({**base, var.name: ours, alias: theirs}),
                   field) == ours_read
    assert getattr(service.settings_from_env({**base, alias: theirs}), field) == theirs_read


def test_the_service_names_our_variable_when_it_is_bad() -> None:
    with pytest.raises(ConfigError) as caught:
        service.settings_from_env({"AUTH_TOKEN": "t", "PGVECTORIZER_SERVE_MAX_ATTEMPTS": "0",
                                   "MAX_ATTEMPTS": "3"})
    assert str(caught.value) == "PGVECTORIZER_SERVE_MAX_ATTEMPTS='0' is less than 1"


def test_the_service_reads_both_names_of_every_setting() -> None:
    assert set(service.VARIABLES) == {n for var in service.SETTINGS for n in var.names}


# --- one prefix, and the README says which name is which ---------------------------------------

def test_our_names_have_one_prefix_and_mean_one_thing() -> None:
    canonical: list[str] = list(TUNABLES)
    for command, variables in BY_COMMAND.items():
        for var in variables:
            prefix = PREFIX[command] if var is not DB_URL else "PGVECTORIZER_"
            assert var.name.startswith(prefix), var
            assert not any(a.startswith("PGVECTORIZER_") for a in var.aliases), var
            canonical.append(var.name)
    assert len(canonical) == len(set(canonical))
    aliases = {a for variables in BY_COMMAND.values() for var in variables for a in var.aliases}
    assert aliases & set(canonical) == set()


def _table_rows() -> list[str]:
    return [line for line in README.read_text().splitlines() if line.startswith("| ")]


@pytest.mark.parametrize("var", [v for vs in BY_COMMAND.values() for v in vs], ids=lambda v: v.name)
def test_the_readme_gives_each_canonical_name_with_its_aliases(var: Var) -> None:
    rows = [row for row in _table_rows() if re.search(rf"\| `{var.name}`[ (|]", row)]
    assert rows, f"no README table row for {var.name}"
    for row in rows:
        cells = [c.strip() for c in row.strip("|").split(" | ")]
        where = next(i for i, c in enumerate(cells) if c.startswith(f"`{var.name}`"))
        assert re.findall(r"`([A-Z0-9_]+)`", cells[where + 1]) == list(var.aliases), row


@pytest.mark.parametrize("name", TUNABLES)
def test_the_readme_lists_the_tunables(name: str) -> None:
    assert any(row.startswith(f"| `{name}` |") for row in _table_rows())


# --- running ------------------------------------------------------------------------------------

class Worker:
    def __init__(self, result: object = None, error: Exception | None = None) -> None:
        self.result, self.error = result, error

    async def run(self) -> object:
        await asyncio.sleep(0)
        if self.error is not None:
            raise self.error
        return self.result

    async def request_graceful_shutdown(self) -> None:
        pass


def test_run_until_signal_returns_and_raises_what_run_does() -> None:
    before = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    assert run_until_signal(Worker(result=42)) == 42
    with pytest.raises(RuntimeError, match="boom"):
        run_until_signal(Worker(error=RuntimeError("boom")))
    assert {sig: signal.getsignal(sig) for sig in before} == before
