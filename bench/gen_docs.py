#!/usr/bin/env python3
"""Write N deterministic documents as CSV (id, title, body) for COPY into the benchmarks' tables.

Bodies are English-like prose of about 1,200 characters (750-1,800): sentences of 6-18 words
from a fixed word list, some commas and questions, two to five sentences a paragraph, and
paragraphs separated by a blank line, so the recursive splitter meets every kind of separator.
The same N and seed give the same bytes on every machine (random.Random is stable across
Python 3 versions for these calls).

    python3 bench/gen_docs.py 20000 > docs.csv      # then \\copy doc FROM 'docs.csv' (FORMAT csv)
"""

from __future__ import annotations

import argparse
import csv
import random
import sys

WORDS = ["the", "of", "and", "to", "in", "a", "is", "that", "for", "it", "as", "was", "with", "be", "by", "on", "not", "he", "this", "are", "or", "his", "from", "at", "which", "but", "have", "an", "they", "you", "were", "her", "she", "there", "been", "one", "all", "we", "their", "has", "would", "when", "if", "so", "no", "will", "can", "more", "other", "some", "what", "time", "up", "out", "them", "about", "into", "than", "only", "its", "new", "could", "these", "two", "may", "first", "then", "do", "any", "like", "my", "now", "over", "such", "our", "man", "me", "even", "most", "made", "after", "also", "did", "many", "before", "must", "through", "back", "years", "where", "much", "your", "way", "well", "down", "should", "because", "each", "just", "those", "people", "how", "too", "little", "state", "good", "very", "make", "world", "still", "own", "see", "men", "work", "long", "get", "here", "between", "both", "life", "being", "under", "never", "day", "same", "another", "know", "while", "last", "might", "us", "great", "old", "year", "off", "come", "since", "against", "go", "came", "right", "used", "take", "three", "house", "small", "water", "table", "garden", "river", "city", "street", "market", "morning", "evening", "winter", "summer", "light", "paper", "letter", "window", "door", "road", "field", "family", "school", "story", "question", "answer", "reason", "change", "number", "point", "system", "program", "report", "place", "hand", "part", "child", "eye", "woman", "case", "week", "company", "group", "problem", "fact", "idea", "study", "book", "word", "business", "issue", "side", "kind", "head", "service", "friend", "power", "hour", "game", "line", "end", "member", "law", "car", "name", "president", "team", "minute", "body", "face", "others", "level", "office", "health", "person", "art", "war", "history", "party", "result", "morning", "moment", "air", "teacher", "force", "education", "foot", "boy", "age", "policy", "process", "music", "market", "sense", "nation", "plan", "college", "interest", "death", "experience", "effect", "class", "control", "care", "field", "development", "role", "effort", "rate", "heart", "drug", "show", "leader", "light", "voice", "wife", "police", "mind", "price", "report", "decision", "son", "view", "quickly", "slowly", "carefully", "often", "rarely", "always", "sometimes", "perhaps", "certainly", "clearly", "simply", "finally", "bright", "quiet", "heavy", "early", "late", "simple", "strong", "clear", "public", "private", "local", "small", "large", "young", "modern", "open", "close", "bring", "write", "read", "speak", "listen", "build", "grow", "carry", "follow", "remember", "consider", "explain", "begin"]


def sentence(rng: random.Random) -> str:
    words = [rng.choice(WORDS) for _ in range(rng.randint(6, 18))]
    if len(words) > 9 and rng.random() < 0.4:
        words[rng.randint(3, len(words) - 4)] += ","
    text = " ".join(words)
    end = rng.choices([".", "?", "!"], weights=[85, 10, 5])[0]
    return text[0].upper() + text[1:] + end


def body(rng: random.Random) -> str:
    target = rng.randint(750, 1350)  # characters; the last paragraph overshoots by ~130
    paragraphs: list[str] = []
    length = 0
    while length < target:
        para = " ".join(sentence(rng) for _ in range(rng.randint(2, 5)))
        paragraphs.append(para)
        length += len(para) + 2
    return "\n\n".join(paragraphs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("rows", type=int)
    parser.add_argument("--seed", type=int, default=20261122)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    out = csv.writer(sys.stdout, lineterminator="\n")
    for i in range(1, args.rows + 1):
        title = " ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 7))).capitalize()
        out.writerow((i, title, body(rng)))


if __name__ == "__main__":
    main()
