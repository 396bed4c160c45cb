"""One version everywhere, read from the files (the installed extension: tests/integration/
test_catalog.py)."""

from __future__ import annotations

import json
import re
import tomllib

import pgvectorizer
import pytest

from tests.helpers import REPO
from tests.helpers.extension import GUARD, first_statement, makefile_version


def test_makefile_version_is_a_version() -> None:
    assert re.fullmatch(r"\d+\.\d+\.\d+", makefile_version())


def test_meta_json_agrees() -> None:
    version = makefile_version()
    meta = json.loads((REPO / "META.json").read_text())
    assert meta["version"] == version
    assert meta["provides"]["ai"]["version"] == version
    assert meta["provides"]["ai"]["file"] == f"extension/ai--{version}.sql"


def test_control_template_renders_the_version() -> None:
    template = (REPO / "control" / "ai.control.in").read_text()
    assert re.search(r"^default_version = '@EXTVERSION@'$", template, re.MULTILINE)
    # Rendered the way the Makefile renders it.
    rendered = template.replace("@EXTVERSION@", makefile_version())
    assert re.findall(r"^default_version = '([^']*)'$", rendered, re.MULTILINE) == [makefile_version()]


def test_python_package_agrees() -> None:
    pyproject = tomllib.loads((REPO / "python_pkg" / "pyproject.toml").read_text())
    assert pyproject["project"]["version"] == makefile_version()
    assert pgvectorizer.__version__ == makefile_version()


def test_built_script_starts_with_guard() -> None:
    built = REPO / "extension" / f"ai--{makefile_version()}.sql"
    if not built.exists():
        pytest.skip("run make first: extension/ai--VERSION.sql is built")
    line = first_statement(built)
    assert line.startswith(GUARD) and line.endswith("\\quit")
