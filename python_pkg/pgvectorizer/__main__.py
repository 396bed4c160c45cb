"""`python -m pgvectorizer`: the same as the `pgvectorizer` command."""

from __future__ import annotations

import sys

from pgvectorizer.cli import main

if __name__ == "__main__":
    sys.exit(main())
