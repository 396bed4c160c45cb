"""The released SQL scripts shipped in the package (install/sql/, copied there by `make`),
and the path through them from an installed version to the one wanted.

`pgvectorizer install` runs their plain form (build.plain); the extension's own copies are
the same files, installed into PostgreSQL's extension directory by `make install`.
"""

from __future__ import annotations

import re
from collections import deque
from importlib import resources

from pgvectorizer import __version__
from pgvectorizer.errors import VectorizerError, VersionMismatch

from . import build

CURRENT = __version__
# The versions of the SQL this package's worker, status and search work with. A release that
# changes what they read adds its version here and drops the ones it no longer reads.
UNDERSTOOD = (CURRENT,)

_NAME = re.compile(r"^ai--(\d+\.\d+\.\d+)(?:--(\d+\.\d+\.\d+))?\.sql$")


def _key(version: str) -> tuple[int, ...]:
    return tuple(int(p) for p in version.split("."))


def check_understood(installed: str | None) -> None:
    """Raises VersionMismatch, one line saying what to do, unless `installed` is understood."""
    if installed is None:
        raise VersionMismatch("pgvectorizer is not installed in this database: run CREATE EXTENSION "
                              "ai CASCADE, or pgvectorizer install where extensions cannot be added")
    if installed in UNDERSTOOD:
        return
    if _key(installed) < _key(min(UNDERSTOOD, key=_key)):
        raise VersionMismatch(
            f"the database has pgvectorizer {installed}, older than this worker ({CURRENT}) works "
            f"with: run ALTER EXTENSION ai UPDATE (or pgvectorizer install for a plain install)")
    raise VersionMismatch(
        f"the database has pgvectorizer {installed}, newer than this worker ({CURRENT}) knows: "
        f"upgrade the worker")


def _files() -> dict[str, str]:
    folder = resources.files("pgvectorizer.install") / "sql"
    if not folder.is_dir():
        raise VectorizerError("pgvectorizer's SQL scripts are missing from the package "
                              "(pgvectorizer/install/sql): run make in the checkout")
    return {f.name: f.read_text() for f in folder.iterdir() if _NAME.match(f.name)}


def plan(installed: str | None, target: str = CURRENT) -> list[tuple[str, str]]:
    """(file name, plain-form SQL) to run in order: nothing when `installed` is `target`."""
    files = _files()
    if installed == target:
        return []
    if installed is None:
        name = f"ai--{target}.sql"
        if name not in files:
            raise VectorizerError(f"no install script for pgvectorizer {target} in this package")
        return [(name, build.plain(files[name], install=True))]
    if _key(installed) > _key(target):
        raise VersionMismatch(f"the database has pgvectorizer {installed}, newer than {target}: "
                              f"upgrade pgvectorizer (the Python package) instead")
    # Breadth first over the upgrade scripts: the fewest steps, as ALTER EXTENSION takes.
    steps: dict[str, list[tuple[str, str]]] = {}   # from -> [(to, file)]
    for name in files:
        m = _NAME.match(name)
        if m and m.group(2):
            steps.setdefault(m.group(1), []).append((m.group(2), name))
    seen, todo = {installed: [""]}, deque([installed])
    while todo:
        at = todo.popleft()
        for nxt, name in steps.get(at, []):
            if nxt not in seen:
                seen[nxt] = seen[at] + [name]
                todo.append(nxt)
    if target not in seen:
        raise VectorizerError(f"no upgrade path from pgvectorizer {installed} to {target} in this package")
    return [(name, build.plain(files[name], install=False)) for name in seen[target][1:]]
