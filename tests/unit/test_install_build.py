"""The SQL build (pgvectorizer/install): lossless statement splitting, the plain form, upgrade
templates resolved from sql/, and the path through the released scripts."""

from __future__ import annotations

import re

import pytest
from pgvectorizer.errors import VersionMismatch
from pgvectorizer.install import build, scripts, sqltext

from tests.helpers import REPO

SOURCES = sorted((REPO / "sql").glob("*.sql"))
FROZEN = REPO / "extension" / "ai--0.1.0.sql"


def test_split_is_lossless_and_keeps_quoted_semicolons() -> None:
    text = ("-- head\nCREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1; "
            "SELECT CASE WHEN true THEN 2 END; END;\nSELECT 'a;b', E'c\\';d', \"x;y\";\n"
            "DO $do$ BEGIN PERFORM 1; END $do$;\n/* a; /* nested; */ */ SELECT $$;$$;\n\\echo hi\n-- tail\n")
    parts = sqltext.split(text)
    assert sqltext.join(parts) == text
    assert [p.head.split()[0] for p in parts if p.body] == ["CREATE", "SELECT", "DO", "SELECT", "\\ECHO"]
    whole = sqltext.join(sqltext.split(build.full("9.9.9", SOURCES)))
    assert whole == build.full("9.9.9", SOURCES)


@pytest.mark.parametrize("unterminated", ["SELECT 'a", "SELECT $x$ b", "/* c"])
def test_split_refuses_an_unterminated_quote(unterminated: str) -> None:
    with pytest.raises(ValueError, match="unterminated"):
        sqltext.split(unterminated + ";")


def test_the_plain_form_leaves_out_what_needs_a_superuser() -> None:
    plain = build.plain(build.full("9.9.9", SOURCES), install=True)
    assert not re.search(r"(?i)language\s+plpython3u", plain)
    assert "CREATE EVENT TRIGGER" not in plain and "pg_extension_config_dump" not in plain.lower()
    assert "\\echo" not in plain and plain.count("CREATE SCHEMA ai;") == 1
    # Each PL/Python function is there, refusing with the way out.
    assert "ai.execute_vectorizer is not available here" in plain
    assert "`pgvectorizer worker`" in plain and "`pgvectorizer search`" in plain
    # The rest is untouched: every other statement of the extension's script is in it as is.
    kept = [s.text for s in sqltext.split(build.full("9.9.9", SOURCES))
            if "PLPYTHON3U" not in s.head and "EVENT TRIGGER" not in s.head
            and "PG_EXTENSION_CONFIG_DUMP" not in s.head and not s.head.startswith("\\")]
    assert all(k in plain for k in kept)


def test_upgrade_templates_take_their_definitions_from_sql() -> None:
    template = "-- @replace ai.version\n-- @create ai.install_mode\n"
    out = build.upgrade(template, "9.9.9", SOURCES)
    assert "CREATE OR REPLACE FUNCTION ai.version()" in out and "RETURN '9.9.9'" in out
    assert "CREATE FUNCTION ai.install_mode()" in out
    assert "COMMENT ON FUNCTION ai.version()" in out
    with pytest.raises(SystemExit, match="ai.nothing"):
        build.upgrade("-- @replace ai.nothing\n", "9.9.9", SOURCES)


def test_the_frozen_script_is_the_one_released() -> None:
    text = FROZEN.read_text()
    assert text.startswith("-- pgvectorizer: the `ai` extension, version 0.1.0.")
    # Paths are filled in at install time (Makefile), never frozen in.
    assert "@PYTHON_TARGET@" in text and "/usr/local/lib" not in text


def test_check_understood_says_what_to_do() -> None:
    scripts.check_understood(scripts.CURRENT)
    with pytest.raises(VersionMismatch, match="run ALTER EXTENSION ai UPDATE"):
        scripts.check_understood("0.0.1")
    with pytest.raises(VersionMismatch, match="upgrade the worker"):
        scripts.check_understood("99.0.0")
    with pytest.raises(VersionMismatch, match="not installed"):
        scripts.check_understood(None)


def test_plan_walks_the_upgrade_scripts() -> None:
    if not (REPO / "python_pkg" / "pgvectorizer" / "install" / "sql").is_dir():
        pytest.skip("run make first: the package's copies of the scripts are built")
    assert scripts.plan(scripts.CURRENT) == []
    fresh = scripts.plan(None)
    assert [name for name, _ in fresh] == [f"ai--{scripts.CURRENT}.sql"]
    steps = scripts.plan("0.1.0")
    assert [name for name, _ in steps] == [f"ai--0.1.0--{scripts.CURRENT}.sql"]
    assert "\\echo" not in steps[0][1]
    with pytest.raises(VersionMismatch, match="newer"):
        scripts.plan("99.0.0")
