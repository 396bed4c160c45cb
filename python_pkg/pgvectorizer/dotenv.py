"""A small .env reader, so API keys can live beside the worker instead of in its shell.

Lines are KEY=VALUE, optionally prefixed by `export `; `#` starts a comment; values may be
'single-quoted' (taken literally) or "double-quoted" (with \\n, \\t, \\" and \\\\ escapes).
No variable expansion: a value is what the file says.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping

_LINE = re.compile(r"\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_.]*)\s*=\s*(.*)")
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", '"': '"', "\\": "\\"}


def load_env(path: str | os.PathLike[str] = ".env",
             environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The file's variables overlaid by environ (default os.environ); a missing file is empty."""
    values: dict[str, str] = {}
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except FileNotFoundError:
        text = ""
    values.update(parse_env(text))
    # The real environment wins: a deployment can override what a checked-in file says.
    values.update(os.environ if environ is None else environ)
    return values


def parse_env(text: str) -> dict[str, str]:
    """KEY -> value for each assignment in .env text; other lines are skipped."""
    values: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        match = _LINE.fullmatch(line)
        if match is None:
            continue
        key, raw = match.groups()
        values[key] = _value(raw)
    return values


def _value(raw: str) -> str:
    raw = raw.strip()
    if raw[:1] == "'":
        end = raw.find("'", 1)
        return raw[1:end] if end > 0 else raw[1:]
    if raw[:1] == '"':
        out: list[str] = []
        i = 1
        while i < len(raw) and raw[i] != '"':
            if raw[i] == "\\" and i + 1 < len(raw):
                out.append(_ESCAPES.get(raw[i + 1], "\\" + raw[i + 1]))
                i += 2
            else:
                out.append(raw[i])
                i += 1
        return "".join(out)
    # Unquoted: a # after whitespace starts a comment (so KEY=a#b keeps its #).
    return re.split(r"\s+#", raw, maxsplit=1)[0].strip()
