"""The database layer: the only part of the package that imports psycopg."""

from __future__ import annotations
