"""Fixtures of the integration tests."""

from __future__ import annotations

import pytest

from tests.helpers.worker import PATHS


@pytest.fixture(params=PATHS)
def path(request: pytest.FixtureRequest) -> str:
    """How the test drains a queue: "worker" (a `--once` pass of the external worker, in this
    process) or "indb" (ai.execute_vectorizer); tests/helpers/worker.py drain()."""
    return str(request.param)
