"""The command line as real processes: signals sent from outside, `python -m`, console scripts.

The worker is replaced by a small script that patches the `_make_worker` seam.
"""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import sysconfig
import textwrap
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO

import pgvectorizer
import pytest

from tests.helpers.cli import ENV_VARS, SUBPROCESS_TIMEOUT, clear_worker_env


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No worker variables from the caller's shell, and no .env from the caller's directory."""
    clear_worker_env(monkeypatch, tmp_path)


FAKE_MAIN = """
import asyncio, os, sys
from pgvectorizer import cli

STUBBORN = os.environ.get("FAKE_STUBBORN") == "1"


class FakeWorker:
    async def run(self):
        self.stop = asyncio.Event()
        print("running", flush=True)
        await self.stop.wait()
        print("stopped", flush=True)

    async def request_graceful_shutdown(self):
        print("shutdown requested", flush=True)
        if not STUBBORN:
            self.stop.set()


cli._make_worker = lambda settings: FakeWorker()
sys.exit(cli.main(sys.argv[1:]))
"""


def scripts_dir() -> Path:
    return Path(sysconfig.get_path("scripts"))


def child_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ENV_VARS}
    env.update(extra)
    return env


def run(argv: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, cwd=cwd, env=child_env(),
                          timeout=SUBPROCESS_TIMEOUT, check=False)


@pytest.fixture
def fake_main(tmp_path: Path) -> Path:
    path = tmp_path / "fake_main.py"
    path.write_text(textwrap.dedent(FAKE_MAIN))
    return path


class Child:
    """The fake worker in its own process; stdout lines are read with a timeout, never a hang."""

    def __init__(self, fake_main: Path, **env: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(fake_main), "worker", "-d", "postgres://nowhere/x"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=fake_main.parent,
            env=child_env(**env))
        self.lines: queue.Queue[str] = queue.Queue()
        self.err: list[str] = []
        assert self.proc.stdout is not None and self.proc.stderr is not None
        # Both pipes are drained by threads, so the child never blocks on a full pipe.
        self.readers = [threading.Thread(target=self._read, args=(self.proc.stdout, self.lines.put)),
                        threading.Thread(target=self._read, args=(self.proc.stderr, self.err.append))]
        for reader in self.readers:
            reader.start()
        assert self.next_line() == "running"

    @staticmethod
    def _read(pipe: IO[str], put: Callable[[str], None]) -> None:
        for line in pipe:
            put(line.rstrip("\n"))

    def next_line(self) -> str:
        try:
            return self.lines.get(timeout=SUBPROCESS_TIMEOUT)
        except queue.Empty:
            self.proc.kill()
            raise AssertionError("the child printed nothing more") from None

    def signal(self, sig: signal.Signals) -> None:
        self.proc.send_signal(sig)

    def finish(self) -> tuple[int, list[str], str]:
        """Exit status, the stdout lines not read yet, and all of stderr."""
        try:
            self.proc.wait(timeout=SUBPROCESS_TIMEOUT)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
            for reader in self.readers:
                reader.join(timeout=SUBPROCESS_TIMEOUT)
        rest = []
        while not self.lines.empty():
            rest.append(self.lines.get())
        return self.proc.returncode, rest, "\n".join(self.err)


def test_sigterm_stops_the_worker_gracefully(fake_main: Path) -> None:
    child = Child(fake_main)
    child.signal(signal.SIGTERM)
    code, out, err = child.finish()
    assert code == 0, err
    assert out == ["shutdown requested", "stopped"]
    assert "SIGTERM: finishing the current batch" in err


def test_second_sigint_exits_at_once(fake_main: Path) -> None:
    child = Child(fake_main, FAKE_STUBBORN="1")
    child.signal(signal.SIGINT)
    assert child.next_line() == "shutdown requested"
    child.signal(signal.SIGINT)
    code, out, err = child.finish()
    assert code == 130, err
    assert out == []
    assert "second SIGINT: exiting now" in err


def test_second_sigterm_keeps_waiting_then_sigint_exits(fake_main: Path) -> None:
    child = Child(fake_main, FAKE_STUBBORN="1")
    child.signal(signal.SIGTERM)
    assert child.next_line() == "shutdown requested"
    child.signal(signal.SIGTERM)
    time.sleep(0.5)
    assert child.proc.poll() is None, "a second SIGTERM should not end the worker"
    child.signal(signal.SIGINT)
    code, out, err = child.finish()
    assert code == 130, err
    assert "SIGTERM: already shutting down" in err
    assert out == []  # no second shutdown request


def test_python_m_worker_help(tmp_path: Path) -> None:
    done = run([sys.executable, "-m", "pgvectorizer", "worker", "--help"], tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage: pgvectorizer worker")
    for flag in ("--db-url", "--vectorizer-id", "--poll-interval", "--concurrency", "--once",
                 "--log-level", "PGAI_VECTORIZER_WORKER_DB_URL"):
        assert flag in done.stdout


@pytest.mark.parametrize(("script", "usage"), [("pgvectorizer", "usage: pgvectorizer"),
                                               ("vectorizer", "usage: vectorizer")])
def test_console_scripts(tmp_path: Path, script: str, usage: str) -> None:
    path = scripts_dir() / script
    assert path.exists(), f"{path} is missing: pip install -e python_pkg"
    done = run([str(path), "--help"], tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(usage)
    done = run([str(path), "--version"], tmp_path)
    assert (done.returncode, done.stdout) == (0, f"pgvectorizer {pgvectorizer.__version__}\n")


def test_console_script_bad_value_exits_2(tmp_path: Path) -> None:
    done = run([str(scripts_dir() / "vectorizer"), "--poll-interval", "0"], tmp_path)
    assert done.returncode == 2
    assert "'0' is not longer than zero" in done.stderr
