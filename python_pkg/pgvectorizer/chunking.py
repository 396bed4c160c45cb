"""Split a row's text into chunks, the way pgai's vectorizer does.

pgai (0.12) hands the chunking config to LangChain's text splitters with only chunk_size,
chunk_overlap, the separator(s) and is_separator_regex set, so everything else keeps
LangChain's defaults: lengths by len(), every chunk stripped of surrounding whitespace,
empty chunks dropped; CharacterTextSplitter drops the separator and joins pieces with it
again, RecursiveCharacterTextSplitter keeps each separator at the start of the piece after
it. This module reproduces those chunks without LangChain (tests/test_chunking.py holds
outputs frozen from langchain-text-splitters 0.3.11 and 1.1.3, which agree), in time
linear in the text.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from pgvectorizer.errors import ChunkingConfigError

Chunker = Callable[[str], list[str]]

# What LangChain uses when the separators list is empty (`separators or [...]`).
LANGCHAIN_DEFAULT_SEPARATORS: tuple[str, ...] = ("\n\n", "\n", " ", "")

# CharacterTextSplitter does not put a separator back between pieces when it is a
# zero-width lookaround; LangChain tells one by these prefixes.
_LOOKAROUND_PREFIXES = ("(?=", "(?<!", "(?<=", "(?!")


def merge_splits(splits: Sequence[str], separator: str, chunk_size: int,
                 chunk_overlap: int) -> list[str]:
    """Greedily join pieces into chunks of at most chunk_size characters (joined by
    separator), each starting with up to chunk_overlap characters of the previous one.

    The same decisions as LangChain's TextSplitter._merge_splits, but the window is a pair
    of indexes over lengths computed once, where LangChain copies the list on every pop.
    """
    sep_len = len(separator)
    lengths = [len(s) for s in splits]
    chunks: list[str] = []
    lo = 0  # the window is splits[lo:hi]
    total = 0  # its joined length
    for hi, length in enumerate(lengths):
        if total + length + (sep_len if hi > lo else 0) > chunk_size and hi > lo:
            _append_joined(chunks, splits[lo:hi], separator)
            # Drop pieces from the front until what is left fits as overlap and leaves room
            # for the new piece.
            while total > chunk_overlap or (
                total > 0 and total + length + (sep_len if hi > lo else 0) > chunk_size
            ):
                total -= lengths[lo] + (sep_len if hi - lo > 1 else 0)
                lo += 1
        total += length + (sep_len if hi > lo else 0)
    _append_joined(chunks, splits[lo:], separator)
    return chunks


def _append_joined(chunks: list[str], pieces: Sequence[str], separator: str) -> None:
    chunk = separator.join(pieces).strip()
    if chunk:
        chunks.append(chunk)


class CharacterSplitter:
    """LangChain's CharacterTextSplitter as pgai builds it: split on one separator,
    merge the pieces back with it."""

    def __init__(self, chunk_size: int, chunk_overlap: int, separator: str,
                 is_separator_regex: bool = False) -> None:
        _check_sizes(chunk_size, chunk_overlap)
        self.chunk_size = chunk_size
        self.chunk_overlap = chunk_overlap
        self.separator = separator
        self._pattern = _compile(separator, "separator") if is_separator_regex else None
        # LangChain joins with the separator as written, so a regex such as "\s+" comes back
        # literally; only lookarounds are joined with nothing. Kept for identical chunks.
        lookaround = is_separator_regex and separator.startswith(_LOOKAROUND_PREFIXES)
        self._joiner = "" if lookaround else separator

    def __call__(self, text: str) -> list[str]:
        if not self.separator:
            splits = list(text)
        elif self._pattern is not None:
            # re.split also returns the pattern's own groups, as LangChain's does.
            splits = [s for s in self._pattern.split(text) if s]
        else:
            splits = [s for s in text.split(self.separator) if s]
        return merge_splits(splits, self._joiner, self.chunk_size, self.chunk_overlap)


class RecursiveSplitter:
    """LangChain's RecursiveCharacterTextSplitter as pgai builds it: split on the first
    separator found in the text, then split again any piece still too long with the
    separators after it."""

    def __init__(self, chunk_size: int, chunk_overlap: int, separators: Sequence[str],
                 is_separator_regex: bool = False) -> None:
        _check_sizes(chunk_size, chunk_overlap)
        self.chunk_size = chunk_size
        self.chunk_overlap = chunk_overlap
        self.separators = tuple(separators) or LANGCHAIN_DEFAULT_SEPARATORS
        self._patterns: tuple[re.Pattern[str] | None, ...] = tuple(
            _compile(s, "separators") if is_separator_regex and s else None
            for s in self.separators
        )

    def __call__(self, text: str) -> list[str]:
        if len(text) < self.chunk_size:
            # Every piece would be shorter than a chunk and the pieces add up to the text,
            # so LangChain merges them all back into one chunk: the stripped text.
            stripped = text.strip()
            return [stripped] if stripped else []
        chunks: list[str] = []
        self._split(text, 0, chunks)
        return chunks

    def _split(self, text: str, first: int, out: list[str]) -> None:
        """Append the chunks of text to out, trying separators[first:]."""
        seps = self.separators
        # The first separator present in the text; the empty one always is and ends the
        # list. With none present the last one is used and nothing is left to try.
        index = len(seps) - 1
        rest = len(seps)
        for i in range(first, len(seps)):
            sep, pattern = seps[i], self._patterns[i]
            if not sep:
                index = i
                break
            if (pattern.search(text) is not None) if pattern else (sep in text):
                index, rest = i, i + 1
                break
        splits = self._pieces(text, seps[index], self._patterns[index])

        pending: list[str] = []
        for piece in splits:
            # Strictly shorter, as in LangChain: a piece of exactly chunk_size is split again.
            if len(piece) < self.chunk_size:
                pending.append(piece)
                continue
            if pending:
                out.extend(merge_splits(pending, "", self.chunk_size, self.chunk_overlap))
                pending = []
            if rest < len(seps):
                self._split(piece, rest, out)
            else:
                out.append(piece)
        if pending:
            out.extend(merge_splits(pending, "", self.chunk_size, self.chunk_overlap))

    @staticmethod
    def _pieces(text: str, sep: str, pattern: re.Pattern[str] | None) -> list[str]:
        """text cut before each separator, the separator kept at the start of the next
        piece; empty pieces dropped."""
        if not sep:
            return list(text)
        if pattern is None:
            parts = text.split(sep)
            pieces = [sep + p for p in parts[1:]]
            if parts[0]:
                pieces.insert(0, parts[0])
            return pieces
        # Cut where each match starts. LangChain splits on "(pattern)" and pairs the parts,
        # which is the same for patterns without groups of their own (with groups it
        # misaligns or raises).
        cuts = [match.start() for match in pattern.finditer(text)]
        cuts.append(len(text))
        pieces = []
        start = 0
        for cut in cuts:
            if cut > start:
                pieces.append(text[start:cut])
                start = cut
        return pieces


def make_chunker(config: Mapping[str, Any]) -> Chunker:
    """A function from text to chunks for a vectorizer's chunking config (jsonb as a dict).

    Raises ChunkingConfigError (a ConfigError) naming the field when the config cannot work.
    """
    implementation = config.get("implementation")
    if implementation == "none":
        return _whole_text
    if implementation == "character_text_splitter":
        return CharacterSplitter(
            _int_field(config, "chunk_size"),
            _int_field(config, "chunk_overlap"),
            _str_field(config, "separator"),
            _bool_field(config, "is_separator_regex"),
        )
    if implementation == "recursive_character_text_splitter":
        separators = config.get("separators")
        if not isinstance(separators, list) or not all(isinstance(s, str) for s in separators):
            raise ChunkingConfigError(
                f"chunking config: separators must be a list of strings, got {separators!r}")
        return RecursiveSplitter(
            _int_field(config, "chunk_size"),
            _int_field(config, "chunk_overlap"),
            separators,
            _bool_field(config, "is_separator_regex"),
        )
    raise ChunkingConfigError(f"chunking config: unknown implementation {implementation!r}")


def _whole_text(text: str) -> list[str]:
    # An empty or blank text would only embed noise, so it gives no chunk at all.
    return [text] if text.strip() else []


def _int_field(config: Mapping[str, Any], name: str) -> int:
    value = config.get(name)
    # bool is an int to Python, but true is no chunk size.
    if not isinstance(value, int) or isinstance(value, bool):
        raise ChunkingConfigError(f"chunking config: {name} must be an integer, got {value!r}")
    return value


def _str_field(config: Mapping[str, Any], name: str) -> str:
    value = config.get(name)
    if not isinstance(value, str):
        raise ChunkingConfigError(f"chunking config: {name} must be a string, got {value!r}")
    return value


def _bool_field(config: Mapping[str, Any], name: str) -> bool:
    value = config.get(name, False)
    if not isinstance(value, bool):
        raise ChunkingConfigError(f"chunking config: {name} must be true or false, got {value!r}")
    return value


def _check_sizes(chunk_size: int, chunk_overlap: int) -> None:
    # The same limits LangChain's constructor enforces.
    if chunk_size <= 0:
        raise ChunkingConfigError(f"chunking config: chunk_size must be > 0, got {chunk_size}")
    if chunk_overlap < 0:
        raise ChunkingConfigError(f"chunking config: chunk_overlap must be >= 0, got {chunk_overlap}")
    if chunk_overlap > chunk_size:
        raise ChunkingConfigError(
            f"chunking config: chunk_overlap ({chunk_overlap}) must not exceed "
            f"chunk_size ({chunk_size})")


def check_regex(pattern: str) -> str | None:
    """Why pattern cannot be compiled as a separator regex, or None when it can. Pure, for
    the SQL side to check a chunking config when it is made."""
    try:
        re.compile(pattern)
    except _REGEX_ERRORS as e:
        return _regex_problem(e)
    return None


# What re.compile raises for a bad pattern: re.error, and for a huge repeat count or very
# deep nesting these.
_REGEX_ERRORS = (re.error, OverflowError, RecursionError)


def _regex_problem(e: BaseException) -> str:
    if isinstance(e, RecursionError):
        return "it is nested too deeply"
    return str(e)


def _compile(pattern: str, field: str) -> re.Pattern[str]:
    try:
        return re.compile(pattern)
    except _REGEX_ERRORS as e:
        raise ChunkingConfigError(
            f"chunking config: {field} has an invalid regular expression {pattern!r}: "
            f"{_regex_problem(e)}") from e
