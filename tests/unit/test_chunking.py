"""Unit tests for pgvectorizer.chunking (no database).

The expected chunks in FROZEN were produced once by langchain-text-splitters (0.3.11, what
pgai 0.12's `<1.0` pin installs, and 1.1.3 gave the same) with the parameters pgai passes;
a differential run over 95,000 generated texts (random prose, paragraphs, sentence marks,
unicode, long unbroken words, blank texts; chunk sizes 1 to 2,000, overlaps 0 to chunk_size;
literal and regex separators) found no difference. The property tests cover what those few
cases cannot.
"""

from __future__ import annotations

import random
import re
import time
from typing import Any

import pytest
from pgvectorizer.chunking import (
    CharacterSplitter,
    RecursiveSplitter,
    check_regex,
    make_chunker,
    merge_splits,
)
from pgvectorizer.errors import ChunkingError, ConfigError

DEFAULT_SEPARATORS = ["\n\n", "\n", ".", "?", "!", " ", ""]

PROSE = (
    "Postgres stores rows. Vectors live beside them!\n\nWhy keep two systems? "
    "One database is simpler.\nTriggers queue the changed rows.\n\n\n"
    "A worker embeds them in batches and writes the chunks back."
)


def recursive(size: int, overlap: int, separators: list[str] = DEFAULT_SEPARATORS,
              regex: bool = False) -> dict[str, object]:
    return {"implementation": "recursive_character_text_splitter", "config_type": "chunking",
            "chunk_size": size, "chunk_overlap": overlap, "separators": separators,
            "is_separator_regex": regex}


def character(size: int, overlap: int, separator: str = "\n\n",
              regex: bool = False) -> dict[str, object]:
    return {"implementation": "character_text_splitter", "config_type": "chunking",
            "chunk_size": size, "chunk_overlap": overlap, "separator": separator,
            "is_separator_regex": regex}


# name: (config, text, LangChain's chunks)
FROZEN: dict[str, tuple[dict[str, object], str, list[str]]] = {
    # Separators stay at the start of the piece after them, then chunks are stripped.
    "recursive_default_separators": (recursive(40, 10), PROSE, [
        "Postgres stores rows", ". Vectors live beside them!", "Why keep two systems",
        "? One database is simpler", ".", "Triggers queue the changed rows.",
        "A worker embeds them in batches and", "and writes the chunks back", "."]),
    "recursive_no_overlap": (recursive(40, 0), PROSE, [
        "Postgres stores rows", ". Vectors live beside them!", "Why keep two systems",
        "? One database is simpler", ".", "Triggers queue the changed rows.",
        "A worker embeds them in batches and", "writes the chunks back", "."]),
    # A word longer than a chunk falls through to "" and is cut into overlapping letters.
    "recursive_long_word": (recursive(8, 3), "see abcdefghijklmnopqrstu end", [
        "see", "abcdefg", "efghijkl", "jklmnopq", "opqrstu", "end"]),
    # A piece of exactly chunk_size is split again; one nothing can split is kept whole
    # and unstripped.
    "recursive_unsplittable": (recursive(5, 0, ["\n", " "]), "abcde\nfgh ij\nklmn q\nrstuvw", [
        "abcde", "fgh", "ij", "\nklmn", "q", "\nrstuvw"]),
    "recursive_unicode": (
        recursive(12, 4),
        "Café naïve 日本語のテキスト 🙂👩\u200d👩\u200d👧 Straße.\xa0Ωμέγα?\u3000end",
        ["Café naïve", "日本語のテキスト", "🙂👩\u200d👩\u200d👧", "Straße",
         ".\xa0Ωμέγα?\u3000end"]),
    "recursive_regex": (
        recursive(30, 8, [r"\n{2,}", r"(?<=[.?!])\s", r"\s+", ""], regex=True), PROSE,
        ["Postgres stores rows.", "Vectors live beside them!", "Why keep two systems?",
         "One database is simpler.", "Triggers queue the changed", "changed rows.",
         "A worker embeds them in", "them in batches and writes", "writes the chunks back."]),
    "character_paragraphs": (character(60, 20), PROSE, [
        "Postgres stores rows. Vectors live beside them!",
        "Why keep two systems? One database is simpler.\nTriggers queue the changed rows.",
        "A worker embeds them in batches and writes the chunks back."]),
    # A piece longer than chunk_size becomes a chunk of its own.
    "character_oversize": (character(6, 2, " "), "a bb ccc dddddddddd ee f", [
        "a bb", "bb ccc", "dddddddddd", "ee f"]),
    # LangChain joins pieces with the regex as written (a quirk kept for identical chunks).
    "character_regex_joined_literally": (
        character(20, 0, r"\s+", regex=True), "one two  three\nfour five six",
        ["one\\s+two\\s+three", "four\\s+five\\s+six"]),
    # ... except a lookaround, which is joined with nothing.
    "character_lookbehind": (
        character(30, 0, r"(?<=\.) ", regex=True),
        "One. Two words. Three more words here. Four.",
        ["One.Two words.", "Three more words here.Four."]),
    "character_empty_separator": (character(4, 1, ""), "abcdefghij", ["abcd", "defg", "ghij"]),
}


@pytest.mark.parametrize("name", sorted(FROZEN))
def test_matches_langchain(name: str) -> None:
    config, text, expected = FROZEN[name]
    assert make_chunker(config)(text) == expected


def test_default_config_on_prose() -> None:
    # The SQL defaults (800/400) leave a short document whole.
    assert make_chunker(recursive(800, 400))(f"  {PROSE}\n") == [PROSE]


@pytest.mark.parametrize("config", [recursive(800, 400), character(800, 400)])
@pytest.mark.parametrize("text", ["", " ", "\n\n\n", " \t\n "])
def test_blank_text_gives_no_chunks(config: dict[str, object], text: str) -> None:
    assert make_chunker(config)(text) == []


def test_none_keeps_the_whole_text() -> None:
    chunk = make_chunker({"implementation": "none", "config_type": "chunking"})
    text = "  whole text\n\nkept as it is " * 100
    assert chunk(text) == [text]
    assert chunk("") == []
    assert chunk(" \n\t") == []


# Property tests over generated texts ---------------------------------------------------

WORDS = [
    "alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta", "iota", "kappa",
    "lambda", "mu"
]


def generated_texts(count: int, seed: int) -> list[str]:
    """Prose with paragraphs, lines, sentence marks, unicode and long unbroken words."""
    rng = random.Random(seed)
    texts = []
    for _ in range(count):
        parts = []
        for _ in range(rng.randint(0, 60)):
            roll = rng.random()
            if roll < 0.05:
                parts.append("x" * rng.randint(10, 300))
            elif roll < 0.1:
                parts.append(rng.choice(["日本語", "naïve", "🙂", "\u00a0", "Ωμέγα"]))
            else:
                parts.append(rng.choice(WORDS))
            parts.append(rng.choice([" "] * 8 + [". ", "? ", "!", "\n", "\n\n", "\n\n\n  "]))
        texts.append("".join(parts))
    return texts


TEXTS = generated_texts(200, seed=7)
SIZES = [(1, 0), (7, 0), (7, 3), (50, 0), (50, 25), (50, 50), (300, 100), (800, 400)]


def _no_whitespace(text: str) -> str:
    return re.sub(r"\s+", "", text)


@pytest.mark.parametrize(("size", "overlap"), SIZES)
def test_recursive_chunks_fit_and_come_from_the_text(size: int, overlap: int) -> None:
    chunk = make_chunker(recursive(size, overlap))
    for text in TEXTS:
        chunks = chunk(text)
        # With "" as the last separator everything can be split small enough.
        assert all(0 < len(c) <= size for c in chunks)
        # Separators are kept and pieces joined with nothing: each chunk is in the text.
        assert all(c in text for c in chunks)


@pytest.mark.parametrize("size", [1, 7, 50, 800])
def test_recursive_without_overlap_covers_the_text_in_order(size: int) -> None:
    chunk = make_chunker(recursive(size, 0))
    for text in TEXTS:
        # Nothing is repeated or lost but the whitespace at the chunks' ends.
        assert _no_whitespace("".join(chunk(text))) == _no_whitespace(text)


@pytest.mark.parametrize(("size", "overlap"), SIZES)
@pytest.mark.parametrize("separator", ["\n\n", " ", "."])
def test_character_chunks_fit_unless_one_piece(size: int, overlap: int, separator: str) -> None:
    chunk = make_chunker(character(size, overlap, separator))
    for text in TEXTS:
        for c in chunk(text):
            assert c and c == c.strip()
            # Longer than chunk_size only as one piece, which holds no separator.
            assert len(c) <= size or separator not in c


@pytest.mark.parametrize("size", [1, 7, 50, 800])
@pytest.mark.parametrize("separator", ["\n\n", " "])
def test_character_without_overlap_covers_the_text_in_order(size: int, separator: str) -> None:
    chunk = make_chunker(character(size, 0, separator))
    for text in TEXTS:
        assert _no_whitespace("".join(chunk(text))) == _no_whitespace(text)


@pytest.mark.parametrize(("size", "overlap"), [(7, 3), (50, 25), (300, 100)])
def test_overlap_repeats_the_end_of_the_previous_chunk(size: int, overlap: int) -> None:
    chunk = make_chunker(recursive(size, overlap, [" "]))
    text = " ".join(f"w{i}" for i in range(2000))  # unique words: positions are unambiguous
    chunks = chunk(text)
    starts = [text.index(c) for c in chunks]
    assert starts == sorted(starts)
    for (a, c), b in zip(zip(starts, chunks, strict=False), starts[1:], strict=False):
        # The next chunk starts inside this one, no further back than the overlap allows.
        assert a < b <= a + len(c) + 1
        assert a + len(c) - b <= overlap


def test_merge_splits_is_linear() -> None:
    # LangChain copies its window on every step forward, quadratic when a chunk holds many
    # pieces: these 200,000 one-character pieces take it about 10 s, here 0.05 s.
    pieces = ["a"] * 200_000
    start = time.perf_counter()
    chunks = merge_splits(pieces, "", 100_000, 50_000)
    assert time.perf_counter() - start < 2.0
    assert [len(c) for c in chunks] == [100_000, 100_000, 100_000]


def test_regex_separator_groups_count_as_one_separator() -> None:
    # LangChain wraps each separator in a group of its own and pairs the parts of
    # re.split; a capturing group in the pattern misaligns that pairing (it raises
    # IndexError or repeats text). Here the whole match is the separator, which is what
    # LangChain does for the same pattern written with (?:...).
    text = "One two. Three? Four!"
    expected = ["One two", ". Three", "? Four!"]  # LangChain's, for (?:[.?!])
    assert make_chunker(recursive(8, 0, [r"(?:[.?!])", " "], regex=True))(text) == expected
    assert make_chunker(recursive(8, 0, [r"([.?!])", " "], regex=True))(text) == expected


def test_splitters_are_callable_directly() -> None:
    assert CharacterSplitter(10, 0, " ")("a b c") == ["a b c"]
    assert RecursiveSplitter(3, 0, [" ", ""])("ab cd") == ["ab", "cd"]


# Config validation ---------------------------------------------------------------------

@pytest.mark.parametrize(("config", "field"), [
    ({"implementation": "semantic"}, "implementation"),
    ({}, "implementation"),
    ({**recursive(800, 400), "chunk_size": "800"}, "chunk_size"),
    ({**recursive(800, 400), "chunk_size": True}, "chunk_size"),
    ({**recursive(800, 400), "chunk_size": 0}, "chunk_size"),
    ({**recursive(800, 400), "chunk_overlap": -1}, "chunk_overlap"),
    (recursive(100, 101), "chunk_overlap"),
    ({k: v for k, v in recursive(800, 400).items() if k != "chunk_overlap"}, "chunk_overlap"),
    ({**recursive(800, 400), "separators": "\n\n"}, "separators"),
    ({**recursive(800, 400), "separators": ["\n", 1]}, "separators"),
    (recursive(800, 400, ["(unclosed"], regex=True), "separators"),
    ({**recursive(800, 400), "is_separator_regex": "false"}, "is_separator_regex"),
    ({**character(800, 400), "separator": None}, "separator"),
    (character(800, 400, "[", regex=True), "separator"),
])
def test_bad_config_names_the_field(config: dict[str, object], field: str) -> None:
    with pytest.raises(ChunkingError, match=field):
        make_chunker(config)


def test_optional_and_ignored_fields() -> None:
    # is_separator_regex defaults to false; pgai's chunk_column and other keys are ignored.
    config = {"implementation": "character_text_splitter", "chunk_size": 5,
              "chunk_overlap": 0, "separator": " ", "chunk_column": "body"}
    assert make_chunker(config)("a.b c.d") == ["a.b", "c.d"]
    # An empty separators list means LangChain's own default list, as in pgai.
    assert make_chunker(recursive(3, 0, []))("ab cd") == ["ab", "cd"]


@pytest.mark.parametrize("pattern", ["(unclosed", "[", "a{2,1}", "(?<=a+)b", "a{4294967296}",
                                     "(" * 2000 + ")" * 2000])
@pytest.mark.parametrize("build", [lambda p: character(800, 400, p, regex=True),
                                   lambda p: recursive(800, 400, ["\n", p], regex=True)])
def test_an_invalid_separator_regex_is_a_config_error(pattern: str, build: Any) -> None:
    # A ConfigError stops the vectorizer; anything else escaped and ended the worker's run.
    with pytest.raises(ConfigError, match="invalid regular expression"):
        make_chunker(build(pattern))
    assert check_regex(pattern)


def test_check_regex() -> None:
    assert check_regex(r"\n\n|(?=#)") is None
    assert check_regex("") is None
    assert check_regex("(") == "missing ), unterminated subpattern at position 0"
    assert check_regex("a{4294967296}") == "the repetition number is too large"
    assert check_regex("(" * 2000 + ")" * 2000) == "it is nested too deeply"
