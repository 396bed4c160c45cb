"""`pgvectorizer install`: the schema ai without the extension, or its upgrade in place."""

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
    parser.add_argument("--version", dest="target", metavar="VERSION", default=None,
                        help="install or upgrade to this version (default: this package's)")
    parser.add_argument("--dry-run", action="store_true",
                        help="print the SQL it would run, and run nothing")


def run(args: argparse.Namespace) -> int:
    from pgvectorizer.db.install import install
    from pgvectorizer.install.scripts import CURRENT

    try:
        done, text = install(resolve_db_url(args.db_url, os.environ), args.target or CURRENT,
                             dry_run=args.dry_run)
    except VectorizerError as exc:
        print(f"pgvectorizer install: {exc}", file=sys.stderr)
        return EXIT_FAILED
    if args.dry_run:
        sys.stdout.write(text)
    elif not done.scripts:
        print(f"pgvectorizer {done.after} is already installed")
    elif done.before is None:
        print(f"installed pgvectorizer {done.after} (plain install)")
    else:
        print(f"upgraded pgvectorizer {done.before} -> {done.after} ({', '.join(done.scripts)})")
    return EXIT_OK


COMMAND = Command(
    "install", help="create or upgrade schema ai where CREATE EXTENSION ai is not possible",
    description="Install pgvectorizer's SQL as plain objects (no PL/Python, no event triggers, no "
                "superuser): for managed PostgreSQL with pgvector. Idempotent; it also upgrades.",
    add_arguments=add_arguments, run=run)
