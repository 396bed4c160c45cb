"""The set-up path: scripts/setup.sh is idempotent and leaves a machine that works."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pgvectorizer
import psycopg
import pytest

from tests.helpers import REPO
from tests.helpers.db import PGHOST, PGPORT, rows, scalar

PG_CONFIG = "/usr/lib/postgresql/15/bin/pg_config"
PYTHON_TARGET = "/usr/local/lib/pgvectorizer/python"
TRIXIE_SRC = Path("/etc/apt/sources.list.d/pgvectorizer-trixie-src.sources")
SETUP_TIMEOUT = 300   # seconds; a run on an installed machine takes a few

root_only = pytest.mark.skipif(os.geteuid() != 0, reason="scripts/setup.sh installs system packages: run as root")


def pg_config(flag: str) -> Path:
    if not Path(PG_CONFIG).exists():
        pytest.skip(f"{PG_CONFIG} is missing: PostgreSQL 15 server development files are not installed")
    return Path(subprocess.run([PG_CONFIG, flag], check=True, capture_output=True, text=True).stdout.strip())


@pytest.fixture(scope="module")
def setup_runs() -> list[subprocess.CompletedProcess[str]]:
    """scripts/setup.sh run twice: the first converges, the second must find everything done."""
    if os.geteuid() != 0:
        pytest.skip("scripts/setup.sh installs system packages: run as root")
    env = {**os.environ, "PYTHON": sys.executable, "PGPORT": str(PGPORT)}
    env.pop("SUDO_USER", None)
    runs = []
    for _ in range(2):
        runs.append(subprocess.run([str(REPO / "scripts" / "setup.sh")], env=env, cwd="/", stdin=subprocess.DEVNULL,
                                   capture_output=True, text=True, timeout=SETUP_TIMEOUT, check=False))
    return runs


@root_only
@pytest.mark.slow
def test_setup_succeeds(setup_runs: list[subprocess.CompletedProcess[str]]) -> None:
    for run in setup_runs:
        assert run.returncode == 0, run.stdout + run.stderr
        assert re.search(r"^setup: done in \d+s$", run.stdout, re.MULTILINE), run.stdout


@root_only
@pytest.mark.slow
def test_setup_second_run_skips_every_step(setup_runs: list[subprocess.CompletedProcess[str]]) -> None:
    out = setup_runs[1].stdout
    for line in ("setup: apt packages already installed",
                 "setup: pgvector already installed",
                 "setup: python package already installed for",
                 "setup: python package for PL/Python already in",
                 "cluster: cluster 15/pgvectorizer already running"):
        assert line in out, out
    assert "installing apt packages" not in out
    assert "building pgvector" not in out
    assert "restarting cluster" not in out


@pytest.mark.usefixtures("setup_runs")
@root_only
def test_pgvector_installed_for_pg15() -> None:
    assert (pg_config("--pkglibdir") / "vector.so").is_file()
    control = pg_config("--sharedir") / "extension" / "vector.control"
    match = re.search(r"^default_version = '(\d+)\.(\d+)\.(\d+)'$", control.read_text(), re.MULTILINE)
    assert match, control.read_text()
    # META.json requires vector 0.5.0 or later (HNSW).
    assert tuple(int(x) for x in match.groups()) >= (0, 5, 0)


@pytest.mark.usefixtures("setup_runs")
@root_only
def test_trixie_sources_are_deb_src_only() -> None:
    if not TRIXIE_SRC.exists():
        pytest.skip(f"{TRIXIE_SRC} is absent: pgvector was not built by this script")
    stanzas = [s for s in re.split(r"\n\s*\n", TRIXIE_SRC.read_text()) if s.strip()]
    assert stanzas
    for stanza in stanzas:
        fields = dict(re.findall(r"^([A-Za-z-]+):\s*(.*)$", stanza, re.MULTILINE))
        assert fields["Types"].split() == ["deb-src"]
        assert fields["Suites"].split() == ["trixie"]
        assert "Signed-By" in fields


@pytest.mark.usefixtures("setup_runs")
@root_only
def test_no_trixie_binary_source_anywhere() -> None:
    """Binary packages from trixie could replace bookworm's libc; only source may come from it."""
    files = [Path("/etc/apt/sources.list"), *Path("/etc/apt/sources.list.d").glob("*.list"),
             *Path("/etc/apt/sources.list.d").glob("*.sources")]
    for path in (f for f in files if f.exists()):
        text = path.read_text()
        for line in text.splitlines():
            assert not re.match(r"^\s*deb\s+(\[[^]]*\]\s+)?\S+\s+trixie", line), f"{path}: {line}"
        for stanza in re.split(r"\n\s*\n", text):
            fields = dict(re.findall(r"^([A-Za-z-]+):\s*(.*)$", stanza, re.MULTILINE))
            if "trixie" in fields.get("Suites", "").split():
                assert "deb" not in fields.get("Types", "").split(), f"{path}: {stanza}"


def test_extensions_available(db: psycopg.Connection) -> None:
    available = {name for (name,) in rows(db, "SELECT name FROM pg_available_extensions")}
    assert {"ai", "vector", "plpython3u", "pg_cron"} <= available
    installed = dict(rows(db, "SELECT extname, extversion FROM pg_extension"))
    assert {"ai", "vector", "plpython3u"} <= set(installed)


def test_cluster_is_up_with_pg_cron_preloaded() -> None:
    with psycopg.connect(host=PGHOST, port=PGPORT, dbname="pgvectorizer") as conn:
        assert conn.info.server_version // 10000 == 15
        libraries = [s.strip() for s in scalar(conn, "SHOW shared_preload_libraries").split(",")]
        assert "pg_cron" in libraries
        assert scalar(conn, "SHOW cron.database_name") == "pgvectorizer"


@pytest.mark.usefixtures("setup_runs")
@root_only
def test_cluster_status_script() -> None:
    status = subprocess.run([str(REPO / "scripts" / "cluster.sh"), "status"], capture_output=True, text=True, check=False,
                            timeout=60)
    assert status.returncode == 0, status.stdout + status.stderr
    assert re.search(rf"^15\s+pgvectorizer\s+{PGPORT}\s+online", status.stdout, re.MULTILINE), status.stdout


def test_plpython_imports_the_package(db: psycopg.Connection) -> None:
    info = scalar(db, "SELECT ai.python_info()")
    if isinstance(info, str):
        info = json.loads(info)
    assert info["package_version"] == pgvectorizer.__version__
    assert info["package_path"].startswith(PYTHON_TARGET + "/")
    # The server's interpreter, not the user's.
    assert info["python_version"].startswith("3.")


def test_system_python_imports_the_package() -> None:
    if not Path("/usr/bin/python3").exists():
        pytest.skip("no /usr/bin/python3")
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": PYTHON_TARGET}
    out = subprocess.run(["/usr/bin/python3", "-c",
                          "import pgvectorizer; print(pgvectorizer.__version__); print(pgvectorizer.__file__)"],
                         env=env, cwd="/", capture_output=True, text=True, timeout=60, check=False)
    assert out.returncode == 0, out.stderr
    version, path = out.stdout.split()
    assert version == pgvectorizer.__version__
    assert path.startswith(PYTHON_TARGET + "/")


@pytest.mark.usefixtures("setup_runs")
@root_only
def test_installed_package_matches_the_checkout() -> None:
    """The copy PL/Python imports holds the same code as python_pkg/ (setup.sh re-copies on change)."""
    target = Path(PYTHON_TARGET) / "pgvectorizer"
    if not target.is_dir():
        pytest.fail(f"{target} is missing: run make setup")
    source = REPO / "python_pkg" / "pgvectorizer"
    mine = sorted(p.relative_to(source) for p in source.rglob("*.py"))
    theirs = sorted(p.relative_to(target) for p in target.rglob("*.py"))
    assert mine == theirs
    for rel in mine:
        assert (source / rel).read_bytes() == (target / rel).read_bytes(), rel
