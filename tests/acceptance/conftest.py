"""Fixtures of the acceptance tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.helpers.processes import kill_leftovers


@pytest.fixture(autouse=True)
def _no_leftover_workers() -> Iterator[None]:
    """No worker process a test spawned outlives it."""
    yield
    kill_leftovers()
