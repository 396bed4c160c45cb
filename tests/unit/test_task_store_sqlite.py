"""The TaskStore contract (tests/helpers/task_store_contract.py) on SQLite."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers.task_store_contract import *
from tests.helpers.task_store_contract import Harness, make_harness

pytestmark = pytest.mark.anyio


@pytest.fixture(params=["sqlite"])
def harness(request: pytest.FixtureRequest, tmp_path: Path) -> Harness:
    return make_harness(request.param, request, tmp_path)
