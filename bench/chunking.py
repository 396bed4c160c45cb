"""Chunking speed: texts per second on one core, with the default recursive config.

    python3 bench/chunking.py [TEXTS] [CHARS]

Chunks TEXTS (default 20,000) generated texts of about CHARS (default 1,200) characters,
prose in paragraphs, with ai.chunking_recursive_character_text_splitter's defaults, and
prints the best of a few rounds. If langchain_text_splitters can be imported it times
LangChain on the same texts too, prints the ratio and checks that the chunks are the same:

    python3 -m venv /tmp/lcvenv && /tmp/lcvenv/bin/pip install langchain-text-splitters
    PYTHONPATH=python_pkg /tmp/lcvenv/bin/python bench/chunking.py
"""

from __future__ import annotations

import logging
import random
import sys
import time
from collections.abc import Callable

from pgvectorizer.chunking import make_chunker

TEXTS = 20_000
CHARS = 1_200  # characters per text, about
ROUNDS = 3  # the best round counts, to keep other load on the machine out of the figure
SEED = 1

CONFIG = {
    "implementation": "recursive_character_text_splitter",
    "config_type": "chunking",
    "chunk_size": 800,  # characters
    "chunk_overlap": 400,  # characters
    "separators": ["\n\n", "\n", ".", "?", "!", " ", ""],
    "is_separator_regex": False,
}

WORDS = [
    "the", "of", "and", "to", "in", "is", "it", "that", "was", "for", "on", "are", "with",
    "as", "his", "they", "be", "at", "one", "have", "this", "from", "or", "had", "by",
    "hot", "word", "but", "what", "some", "we", "can", "out", "other", "were", "all",
    "there", "when", "up", "use", "your", "how", "said", "an", "each", "she", "which", "do",
    "their", "time", "if", "will", "way", "about", "many", "then", "them", "write", "would",
    "like", "so", "these", "her", "long", "make", "thing", "see", "him", "two", "has",
    "look", "more", "day", "could", "go", "come", "did", "number", "sound", "no", "most",
    "people", "my", "over", "know", "water", "than", "call", "first", "who", "may", "down",
    "side", "been", "now", "find",
]


def make_texts(count: int, chars: int, seed: int = SEED) -> list[str]:
    """count texts of about chars characters: sentences ending in . ? !, paragraphs."""
    rng = random.Random(seed)
    texts = []
    for _ in range(count):
        paragraphs: list[str] = []
        size = 0
        while size < chars:
            sentences = []
            for _ in range(rng.randint(2, 6)):
                words = rng.choices(WORDS, k=rng.randint(4, 20))
                sentences.append(" ".join(words).capitalize() + rng.choice(".....?!"))
            paragraph = " ".join(sentences)
            paragraphs.append(paragraph)
            size += len(paragraph) + 2
        texts.append("\n\n".join(paragraphs)[:chars])
    return texts


def best_rate(split: Callable[[str], list[str]], texts: list[str]) -> tuple[float, int]:
    """(texts per second over the best of ROUNDS, chunks made)."""
    best = float("inf")
    chunks = 0
    for _ in range(ROUNDS):
        start = time.perf_counter()
        chunks = sum(len(split(t)) for t in texts)
        best = min(best, time.perf_counter() - start)
    return len(texts) / best, chunks


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else TEXTS
    chars = int(sys.argv[2]) if len(sys.argv) > 2 else CHARS
    texts = make_texts(count, chars)
    ours = make_chunker(CONFIG)
    rate, chunks = best_rate(ours, texts)
    print(f"pgvectorizer: {rate:,.0f} texts/s ({count:,} texts of {chars:,} chars, "
          f"{chunks:,} chunks, best of {ROUNDS})")

    try:
        from langchain_text_splitters import RecursiveCharacterTextSplitter
    except ImportError:
        print("langchain_text_splitters not importable: no comparison")
        return
    logging.disable(logging.WARNING)  # LangChain warns about every oversized chunk
    theirs = RecursiveCharacterTextSplitter(
        separators=CONFIG["separators"], chunk_size=CONFIG["chunk_size"],
        chunk_overlap=CONFIG["chunk_overlap"], is_separator_regex=False)
    lc_rate, _ = best_rate(theirs.split_text, texts)
    print(f"langchain:    {lc_rate:,.0f} texts/s; ratio pgvectorizer/langchain "
          f"{rate / lc_rate:.2f}")
    differ = sum(ours(t) != theirs.split_text(t) for t in texts)
    print(f"chunks differ for {differ} of {count:,} texts")
    if differ:
        sys.exit(1)


if __name__ == "__main__":
    main()
