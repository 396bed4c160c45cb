"""`pgvectorizer search`: the nearest chunks to a query, embedded by the vectorizer's own model."""

from __future__ import annotations

import argparse
import os
import sys

from pgvectorizer.cli_common import (
    EXIT_FAILED,
    EXIT_OK,
    Command,
    add_db_url,
    resolve_db_url,
)
from pgvectorizer.errors import VectorizerError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_db_url(parser)
    parser.add_argument("vectorizer", help="the vectorizer's name or id")
    parser.add_argument("query", help="the text to search for")
    parser.add_argument("--limit", type=int, default=5, help="how many chunks (default 5)")
    parser.add_argument("--columns", default="",
                        help="source columns to show beside each hit, comma separated")


def run(args: argparse.Namespace) -> int:
    """Print one line per hit: rank, distance, key, the chosen columns and the chunk."""
    # The db layer (psycopg) and the embedders load only when a search runs.
    from pgvectorizer.search import search

    db_url = resolve_db_url(args.db_url, os.environ)
    try:
        hits = search(db_url, args.vectorizer, args.query, limit=args.limit)
    except (VectorizerError, OSError) as exc:
        print(f"pgvectorizer search: {exc}", file=sys.stderr)
        return EXIT_FAILED
    columns = [c.strip() for c in args.columns.split(",") if c.strip()]
    for rank, hit in enumerate(hits, 1):
        key = ", ".join(str(k) for k in hit.key)
        shown = "  ".join(f"{c}={hit.row.get(c)!s}" for c in columns)
        chunk = " ".join(hit.chunk.split())
        chunk = chunk if len(chunk) <= 80 else chunk[:77] + "..."
        print(f"{rank:>3}. distance {hit.distance:.4f}  [{key}]  {shown}{'  ' if shown else ''}{chunk}")
    if not hits:
        print("(no chunks stored yet)")
    return EXIT_OK


COMMAND = Command(
    "search", help="semantic search in a vectorizer's chunks",
    description="Embed a query with the vectorizer's model and print the nearest chunks.",
    add_arguments=add_arguments, run=run)
