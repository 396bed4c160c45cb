"""Many claimed tasks, one backend call per model: pack their texts, embed, split back.

Texts go to the backend longest first. The backend cuts them into forward passes in that
order, so each pass holds texts of similar length and pads little; and the longest (the most
memory-hungry) pass runs first, so a CUDA out-of-memory error shows at once and the backend's
smaller retry repeats no finished work.

Token counts: a backend reports one total per call, which is split over the tasks in
proportion to their characters (largest remainders, so the parts add up to the total). Exact
per-task counts would need a second call per task; usage is an estimate in any case.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np

from pgvectorizer.errors import EmbeddingError
from pgvectorizer.gpu_worker.backends import Backend
from pgvectorizer.service.protocol import (
    ClaimedTask,
    TaskError,
    TaskResult,
    encode_vectors,
)

logger = logging.getLogger(__name__)

TaskOutcome = TaskResult | TaskError  # what a worker posts for one task


class Packing:
    """The texts of several inputs as one list, longest first, and the way back."""

    def __init__(self, inputs: Sequence[Sequence[str]]) -> None:
        self.sizes = [len(texts) for texts in inputs]
        flat = [text for texts in inputs for text in texts]
        lengths = np.fromiter((len(t) for t in flat), dtype=np.int64, count=len(flat))
        # A stable sort keeps equal lengths in their original order: easier to follow in logs.
        self.order = np.argsort(-lengths, kind="stable")
        self.texts = [flat[i] for i in self.order]
        self._chars = [sum(len(t) for t in texts) for texts in inputs]

    def split(self, vectors: np.ndarray) -> list[np.ndarray]:
        """Rows of the packed texts' vectors, back in each input's own order."""
        restored = np.empty_like(vectors)
        restored[self.order] = vectors
        return np.split(restored, np.cumsum(self.sizes)[:-1])

    def split_tokens(self, total: int) -> list[int]:
        """total over the inputs in proportion to their characters (and texts, so that empty
        texts count too); the parts add up to total."""
        weights = np.array([c + n for c, n in zip(self._chars, self.sizes, strict=True)],
                           dtype=np.float64)
        if not len(weights) or weights.sum() == 0 or total <= 0:
            return [0] * len(weights)
        shares = weights / weights.sum() * total
        parts = np.floor(shares).astype(np.int64)
        # Hand the rest out to the largest fractions.
        for i in np.argsort(parts - shares, kind="stable")[:total - int(parts.sum())]:
            parts[i] += 1
        return [int(p) for p in parts]


def truncate(vectors: np.ndarray, dimensions: int | None) -> np.ndarray:
    """The first `dimensions` values of each row, L2-normalized again (Matryoshka style, as
    OpenAI's text-embedding-3 and sentence-transformers' truncate_dim do); None or the native
    size keeps the vectors as they are."""
    if dimensions is None or dimensions >= vectors.shape[1]:
        return vectors
    cut = vectors[:, :dimensions]
    norms = np.linalg.norm(cut, axis=1, keepdims=True)
    # An all-zero prefix stays zero rather than becoming NaN.
    out: np.ndarray = np.divide(cut, norms, out=np.zeros_like(cut), where=norms > 0)
    return out


def embed_tasks(backend: Backend, tasks: Sequence[ClaimedTask]) -> list[TaskOutcome]:
    """A result or an error for each task, in the order given; one backend call per model
    unless a call fails for its texts, when each task of that model is tried alone.

    ConfigError from the backend (this worker cannot embed at all) passes through.
    """
    outcomes: list[TaskOutcome | None] = [None] * len(tasks)
    groups: dict[str, list[int]] = {}
    for i, task in enumerate(tasks):
        problem = _problem(backend, task)
        if problem is not None:
            outcomes[i] = problem
        else:
            groups.setdefault(task.model, []).append(i)
    for model, indices in groups.items():
        group = [tasks[i] for i in indices]
        for i, outcome in zip(indices, _embed_group(backend, model, group), strict=True):
            outcomes[i] = outcome
    return [o for o in outcomes if o is not None]


def _problem(backend: Backend, task: ClaimedTask) -> TaskError | None:
    if task.model not in backend.models:
        # The service should not have sent it; another worker may serve the model.
        return TaskError(id=task.id, error=f"this worker ({backend.name}) does not serve model "
                         f"{task.model!r}", retryable=True)
    native = backend.dimensions(task.model)
    if task.dimensions is not None and not 1 <= task.dimensions <= native:
        return TaskError(id=task.id, error=f"{task.model} makes {native}-dimensional vectors; "
                         f"the request asked for {task.dimensions}", retryable=False)
    return None


def _embed_group(backend: Backend, model: str, group: list[ClaimedTask]) -> list[TaskOutcome]:
    try:
        return _embed_together(backend, model, group)
    except EmbeddingError as exc:
        if exc.transient:
            return [_failed(t, backend, exc) for t in group]
        if len(group) == 1:
            # One failure does not prove the input bad (a broken worker fails the same way):
            # the task fails for good on its second attempt, when another try failed too.
            task = group[0]
            return [_failed(task, backend, exc, retryable=task.attempt < 2)]
        logger.info("%s: %d tasks failed together (%s); trying each alone", model, len(group),
                    exc)
    alone = [_embed_alone(backend, model, task) for task in group]
    errors = [o for o in alone if isinstance(o, TaskError)]
    if len(errors) == len(alone):
        # Every input failing on its own points at the backend, not at the inputs: let other
        # workers try (the service's attempt limit still ends them).
        return [TaskError(id=e.id, error=e.error, retryable=True) for e in errors]
    return alone


def _embed_alone(backend: Backend, model: str, task: ClaimedTask) -> TaskOutcome:
    try:
        return _embed_together(backend, model, [task])[0]
    except EmbeddingError as exc:
        return _failed(task, backend, exc)


def _failed(task: ClaimedTask, backend: Backend, exc: EmbeddingError,
            retryable: bool | None = None) -> TaskError:
    return TaskError(id=task.id, error=f"{backend.name} could not embed with {task.model}: {exc}",
                     retryable=exc.transient if retryable is None else retryable)


def _embed_together(backend: Backend, model: str, group: list[ClaimedTask]) -> list[TaskOutcome]:
    packing = Packing([task.input for task in group])
    native = backend.dimensions(model)
    if packing.texts:
        vectors, tokens = backend.embed(model, packing.texts)
        if vectors.shape != (len(packing.texts), native):
            raise EmbeddingError(f"{backend.name} returned vectors of shape {vectors.shape} for "
                                 f"{len(packing.texts)} texts of {model} ({native} dimensions)",
                                 transient=True)
    else:  # only empty inputs: nothing to call the backend for
        vectors, tokens = np.empty((0, native), dtype=np.float32), 0
    outcomes: list[TaskOutcome] = []
    for task, rows, count in zip(group, packing.split(vectors), packing.split_tokens(tokens),
                                 strict=True):
        rows = truncate(rows, task.dimensions)
        outcomes.append(TaskResult(id=task.id, embeddings=encode_vectors(rows),
                                   dimensions=rows.shape[1], tokens=count))
    return outcomes
