"""The package's layers read top-down, and only the adapters touch a driver.

CLI -> worker / in-database entry points / service -> queue core -> pipeline -> config. These
tests read the imports of every module (as text, so that nothing is loaded) and fail on an
arrow that points up, or on psycopg imported outside its adapters.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "python_pkg" / "pgvectorizer"

# What each layer may not import (by the module's dotted name inside the package).
FORBIDDEN = {
    "db": ("pipeline", "embedders", "service", "worker", "indb", "cli", "gpu_worker", "chunking",
           "formatting"),
    "core": ("db", "indb", "worker", "service", "cli", "gpu_worker", "embedders"),
    "pipeline": ("core", "db", "indb", "worker", "service", "cli"),
    "chunking": ("core", "db", "indb", "worker", "service", "cli", "pipeline", "embedders"),
    "formatting": ("core", "db", "indb", "worker", "service", "cli", "pipeline", "embedders"),
    "embedders": ("core", "db", "indb", "worker", "service", "cli", "pipeline"),
    "config": ("core", "db", "indb", "worker", "service", "cli", "pipeline", "embedders"),
    "indb": ("db", "worker", "service", "cli"),
}
# The only modules that may import psycopg: the worker's adapters and the service's store.
DRIVER_MODULES = ("db.", "service.store_pg")


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE).with_suffix("")
        name = ".".join(p for p in rel.parts if p != "__init__")
        out[name or "__init__"] = path
    return out


def _imports(name: str, path: Path) -> set[str]:
    """The package-internal modules (dotted, relative to the package) and the top-level
    outside packages a module imports."""
    tree = ast.parse(path.read_text())
    package = name.split(".")[:-1] if path.name != "__init__.py" else name.split(".")
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                module = ".".join([*base, *(node.module or "").split(".")]).strip(".")
                found.add("pgvectorizer." + module if module else "pgvectorizer")
                found.update(f"pgvectorizer.{module}.{a.name}".replace("..", ".") for a in node.names)
            elif node.module:
                found.add(node.module)
    return found


def _inside(found: set[str]) -> set[str]:
    return {m.removeprefix("pgvectorizer.") for m in found if m.startswith("pgvectorizer.")}


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_no_layer_imports_one_above_it(layer: str) -> None:
    bad = []
    for name, path in _modules().items():
        if name != layer and not name.startswith(layer + "."):
            continue
        for target in _inside(_imports(name, path)):
            top = target.split(".")[0]
            if top in FORBIDDEN[layer]:
                bad.append(f"{name} imports {target}")
    assert bad == []


def test_only_the_adapters_import_psycopg() -> None:
    bad = [name for name, path in _modules().items()
           if any(m == "psycopg" or m.startswith(("psycopg.", "psycopg_pool"))
                  for m in _imports(name, path))
           and not name.startswith(DRIVER_MODULES)]
    assert bad == []


def test_the_in_database_code_loads_no_driver() -> None:
    """What PL/Python imports for ai.execute_vectorizer and ai.embed leaves psycopg out: SPI
    sends the core's statements as they are."""
    code = ("import sys; import pgvectorizer.indb.api, pgvectorizer.indb.executor; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('psycopg', 'psycopg_pool')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=PACKAGE.parent)
    assert out.stdout.strip() == "[]"
