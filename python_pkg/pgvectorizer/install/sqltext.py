"""A SQL script as a list of statements, split the way PostgreSQL's own lexer would.

Standard library only: `make` runs this module to build the install scripts before any of
the package's dependencies exist on a fresh machine. Splitting is lossless (the pieces join
back into the script), so a build step can drop or rewrite single statements and leave every
other byte as it was.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_DOLLAR = re.compile(r"\$([A-Za-z_\x80-\uffff][A-Za-z0-9_\x80-\uffff]*)?\$")
_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_$]*")
_IDENT_CHAR = re.compile(r"[A-Za-z0-9_$\x80-\uffff]")


@dataclass(frozen=True)
class Statement:
    """One statement with the comments and blank lines before it (`lead`)."""
    lead: str   # comments and whitespace before the statement
    body: str   # the statement, its ';' included (absent only at the end of a script)

    @property
    def text(self) -> str:
        return self.lead + self.body

    @property
    def head(self) -> str:
        """The statement's words, upper-cased and single-spaced, for matching its kind."""
        return " ".join(self.body.split()).upper()


def split(script: str) -> list[Statement]:
    """Statements of `script`, each with the comments before it; a psql meta-command (a line
    that starts with a backslash outside a statement) is a statement of its own."""
    out: list[Statement] = []
    i, n = 0, len(script)
    while i < n:
        lead_end = _skip_blank(script, i)
        if lead_end >= n:   # comments after the last statement
            out.append(Statement(script[i:], ""))
            break
        if script[lead_end] == "\\":
            end = script.find("\n", lead_end)
            end = n if end < 0 else end + 1
        else:
            end = _statement_end(script, lead_end)
        out.append(Statement(script[i:lead_end], script[lead_end:end]))
        i = end
    return out


def join(statements: list[Statement]) -> str:
    return "".join(s.text for s in statements)


def _skip_blank(s: str, i: int) -> int:
    """The first position at or after i that is neither whitespace nor inside a comment."""
    n = len(s)
    while i < n:
        if s[i].isspace():
            i += 1
        elif s.startswith("--", i):
            j = s.find("\n", i)
            i = n if j < 0 else j + 1
        elif s.startswith("/*", i):
            i = _block_comment_end(s, i)
        else:
            break
    return i


def _block_comment_end(s: str, i: int) -> int:
    depth = 0
    n = len(s)
    while i < n:
        if s.startswith("/*", i):
            depth, i = depth + 1, i + 2
        elif s.startswith("*/", i):
            depth, i = depth - 1, i + 2
            if depth == 0:
                return i
        else:
            i += 1
    raise ValueError("unterminated /* comment")


def _statement_end(s: str, i: int) -> int:
    """The position just after the ';' that ends the statement starting at i (or the end)."""
    n = len(s)
    depth = 0   # parentheses
    atomic = False   # inside BEGIN ATOMIC ... END, whose ';'s do not end the statement
    cases = 0        # CASE ... END inside such a body
    while i < n:
        c = s[i]
        if c == "'":
            escapes = i > 0 and s[i - 1] in "eE" and (i < 2 or not _IDENT_CHAR.match(s[i - 2]))
            i = _quoted_end(s, i, "'", escapes)
        elif c == '"':
            i = _quoted_end(s, i, '"', False)
        elif c == "$" and (i == 0 or not _IDENT_CHAR.match(s[i - 1])):
            m = _DOLLAR.match(s, i)
            if m:
                close = s.find(m.group(0), m.end())
                if close < 0:
                    raise ValueError(f"unterminated dollar quote {m.group(0)}")
                i = close + len(m.group(0))
            else:
                i += 1
        elif s.startswith("--", i) or s.startswith("/*", i):
            i = _skip_blank(s, i)
        elif c == "(":
            depth, i = depth + 1, i + 1
        elif c == ")":
            depth, i = depth - 1, i + 1
        elif c == ";" and depth == 0 and not atomic:
            return i + 1
        elif c.isalpha() and (i == 0 or not _IDENT_CHAR.match(s[i - 1])):
            m = _WORD.match(s, i)
            assert m
            word = m.group(0).upper()
            # SQL-standard function bodies (BEGIN ATOMIC ... END) hold ';'s of their own.
            if word == "ATOMIC" and re.search(r"\bBEGIN\s*$", s[max(0, i - 20):i], re.IGNORECASE):
                atomic = True
            elif atomic and word == "CASE":
                cases += 1
            elif atomic and word == "END":
                if cases:
                    cases -= 1
                else:
                    atomic = False
            i = m.end()
        else:
            i += 1
    return n


def _quoted_end(s: str, i: int, q: str, backslash_escapes: bool) -> int:
    n = len(s)
    i += 1
    while i < n:
        c = s[i]
        if backslash_escapes and c == "\\":
            i += 2
        elif c == q:
            if s.startswith(q, i + 1):   # a doubled quote stands for itself
                i += 2
            else:
                return i + 1
        else:
            i += 1
    raise ValueError(f"unterminated {q} quote")
