"""Real worker processes for the acceptance tests: spawned with a clean environment, reaped
after each test (the autouse fixture in tests/acceptance/conftest.py), read when they end."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable

from tests.helpers.db import KEY_ENDPOINTS

WAIT = 30.0  # seconds: the most any condition below may take


def process_env(**extra: str) -> dict[str, str]:
    """A worker process's environment: this one's, less the worker's own variables."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PGAI_VECTORIZER", "VECTORIZER_DB"))}
    env.update({"OPENAI_API_KEY": "test-key", "PGVECTORIZER_RETRY_SECONDS": "0", **KEY_ENDPOINTS, **extra})
    return env


_spawned: list[subprocess.Popen[str]] = []


def kill_leftovers() -> None:
    """Kill what spawn() started and is still running."""
    while _spawned:
        proc = _spawned.pop()
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def spawn(args: list[str], **extra: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen(args, env=process_env(**extra), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    _spawned.append(proc)
    return proc


def finish(proc: subprocess.Popen[str], timeout: float = WAIT) -> str:
    out, _ = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, out
    return out


def wait_for(what: Callable[[], bool], message: str) -> None:
    deadline = time.monotonic() + WAIT
    while not what():
        assert time.monotonic() < deadline, f"timed out waiting for {message}"
        time.sleep(0.1)
