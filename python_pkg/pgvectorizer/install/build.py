"""Builds the released SQL artefacts from `sql/`, and the plain-install form of any of them.

    python -m pgvectorizer.install.build full VERSION sql/*.sql          > ai--VERSION.sql
    python -m pgvectorizer.install.build upgrade TEMPLATE VERSION sql/*.sql > ai--A--B.sql
    python -m pgvectorizer.install.build plain SCRIPT                    > plain form

An upgrade script is written by hand as a template (`sql/upgrade/A--B.sql`) whose
`-- @replace NAME` and `-- @create NAME` lines stand for the current sources' definition of
that function, procedure or view (every overload, with its COMMENT): one definition, so the
upgrade can never install a different body than a fresh install does.

The plain form (`pgvectorizer install`, for databases where only pgvector can be installed)
is the same script less what needs a superuser: no event triggers, no extension membership
calls, and PL/Python functions replaced by ones that raise an error naming the alternative.
Standard library only: `make` runs this on a fresh machine (see sqltext).
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from .sqltext import Statement, join, split

_DEFINES = re.compile(
    r"^CREATE (?:OR REPLACE )?(FUNCTION|PROCEDURE|VIEW) ([A-Z0-9_.\"]+)", re.IGNORECASE)
_COMMENT = re.compile(r"^COMMENT ON (FUNCTION|PROCEDURE|VIEW) ([A-Z0-9_.\"]+)", re.IGNORECASE)
_DIRECTIVE = re.compile(r"^-- @(replace|create) (\S+)\s*$", re.MULTILINE)

PLAIN_HEAD = """\
-- pgvectorizer's schema ai as plain objects (`pgvectorizer install`): built from the extension's
-- script with what needs a superuser left out (see pgvectorizer/install/build.py).
DO $plain$
BEGIN
    IF EXISTS (SELECT FROM pg_catalog.pg_extension WHERE extname = 'ai') THEN
        RAISE EXCEPTION 'the ai extension is installed in this database: it cannot also have a plain install'
            USING ERRCODE = 'duplicate_object', HINT = 'Upgrade it with ALTER EXTENSION ai UPDATE instead.';
    END IF;
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_extension WHERE extname = 'vector') THEN
        RAISE EXCEPTION 'pgvector is not installed in this database'
            USING ERRCODE = 'undefined_object',
                  HINT = 'CREATE EXTENSION vector first (on a managed service it is on the list of allowed extensions).';
    END IF;
END $plain$;
"""

# What each PL/Python entry point does instead in a plain install.
ALTERNATIVES = {
    "ai.execute_vectorizer": "run the vectorizers with `pgvectorizer worker`, which needs no PL/Python",
    "ai._vectorizer_job": "run the vectorizers with `pgvectorizer worker`, which needs no PL/Python",
    "ai.embed": "embed the query outside the database (`pgvectorizer search`, or pgvectorizer.search "
                "in Python) and pass its vector to the query",
}
_DEFAULT_ALTERNATIVE = "only the ai extension (CREATE EXTENSION ai) runs Python inside the server"


def full(version: str, sources: list[Path]) -> str:
    return "".join(p.read_text() for p in sources).replace("@EXTVERSION@", version)


def upgrade(template: str, version: str, sources: list[Path]) -> str:
    statements = split(full(version, sources))

    def definition(match: re.Match[str]) -> str:
        verb, name = match.group(1), match.group(2).lower()
        found = [s for s in statements if _object(s, _DEFINES) == name or _object(s, _COMMENT) == name]
        if not any(_object(s, _DEFINES) == name for s in found):
            raise SystemExit(f"build: {verb} {name}: sql/ defines no such function, procedure or view")
        out = []
        for s in found:
            body = s.body
            if verb == "replace" and _object(s, _DEFINES) == name:
                body = re.sub(r"^CREATE (?!OR REPLACE)", "CREATE OR REPLACE ", body, count=1,
                              flags=re.IGNORECASE)
            out.append(body)
        return "\n".join(out)

    return _DIRECTIVE.sub(definition, template.replace("@EXTVERSION@", version))


def plain(script: str, install: bool) -> str:
    """The plain-install form of an install (install=True) or upgrade script."""
    out: list[Statement] = []
    for s in split(script):
        head = s.head
        if (head.startswith("\\")
                or "PG_EXTENSION_CONFIG_DUMP(" in head
                or re.match(r"^(CREATE|ALTER|DROP|COMMENT ON) EVENT TRIGGER\b", head)):
            # Leave the comments before a dropped statement where they were.
            out.append(Statement(s.lead, ""))
        elif re.search(r"\bLANGUAGE PLPYTHON3U\b", head) and _DEFINES.match(head):
            out.append(Statement(s.lead, _stub(s.body)))
        elif head.startswith("DO ") and "PLPYTHON3U" in head:
            # 0.1.0 made ai.embed in a DO block (its type's schema in a format string), which
            # no stub can be read from: made here as PL/pgSQL with its Python body unchecked,
            # it fails when called; the upgrade to 0.2.0 replaces it with the stub.
            body = re.sub(r"\bplpython3u\b", "plpgsql", s.body, flags=re.IGNORECASE)
            out.append(Statement(s.lead, "SET LOCAL check_function_bodies = off;\n" + body
                                 + "\nRESET check_function_bodies;"))
        else:
            out.append(s)
    text = join(out)
    return (PLAIN_HEAD + "\nCREATE SCHEMA ai;\n" + text) if install else text


def _object(s: Statement, pattern: re.Pattern[str]) -> str | None:
    m = pattern.match(s.head)
    return m.group(2).lower().replace('"', "") if m else None


def _stub(body: str) -> str:
    """A PL/Python function's definition with a PL/pgSQL body that refuses, naming the way."""
    m = _DEFINES.match(" ".join(body.split()))
    assert m
    name = m.group(2).lower()
    message = (f"{name} is not available here: this database has pgvectorizer as a plain install "
               "(pgvectorizer install), without PL/Python")
    code = (f"BEGIN\n    RAISE EXCEPTION {_literal(message)}\n"
            f"        USING ERRCODE = 'feature_not_supported', HINT = {_literal(_hint(name))};\nEND")
    quoted = re.search(r"\bAS\s+(\$[A-Za-z_]*\$).*?\1", body, re.DOTALL | re.IGNORECASE)
    if not quoted:
        raise SystemExit(f"build: {name}: a PL/Python function without a dollar-quoted body")
    body = body[:quoted.start()] + f"AS $plain$\n{code}\n$plain$" + body[quoted.end():]
    return re.sub(r"\bLANGUAGE\s+plpython3u\b", "LANGUAGE plpgsql", body, flags=re.IGNORECASE)


def _hint(name: str) -> str:
    alternative = ALTERNATIVES.get(name, _DEFAULT_ALTERNATIVE)
    return alternative[0].upper() + alternative[1:] + "."


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def main(argv: list[str]) -> int:
    if len(argv) >= 2 and argv[0] == "full":
        sys.stdout.write(full(argv[1], [Path(p) for p in argv[2:]]))
    elif len(argv) >= 3 and argv[0] == "upgrade":
        sys.stdout.write(upgrade(Path(argv[1]).read_text(), argv[2], [Path(p) for p in argv[3:]]))
    elif len(argv) == 2 and argv[0] == "plain":
        text = Path(argv[1]).read_text()
        sys.stdout.write(plain(text, install="--" not in Path(argv[1]).name.removeprefix("ai--")))
    else:
        print(__doc__, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
