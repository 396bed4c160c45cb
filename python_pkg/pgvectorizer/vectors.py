"""pgvector's text form of a vector, shared by the worker's text adapters and PL/Python."""

from __future__ import annotations

import functools

import numpy as np


def vector_text(vec: np.ndarray) -> str:
    """'[x,y,...]'. Nine significant digits identify any float32, so vector_in (strtof) gives
    back the very float32 computed. One format for the whole vector: formatting 768 floats one
    by one took two thirds of an in-database run."""
    values = np.asarray(vec, dtype=np.float32).tolist()
    return "[" + _format(len(values)) % tuple(values) + "]"


@functools.lru_cache(maxsize=8)
def _format(n: int) -> str:
    return ",".join(["%.9g"] * n)


def parse_vector(text: str) -> np.ndarray:
    return np.array(text.strip("[]").split(","), dtype=np.float32)
