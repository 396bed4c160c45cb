"""Helpers shared by the tests: SQL helpers (db), the worker and in-database drivers (worker),
real processes (processes), threads (threads) and the fake servers the tests talk to."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parent.parent.parent
