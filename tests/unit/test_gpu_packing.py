"""Packing the texts of claimed tasks into one batch (pgvectorizer.gpu_worker.packing)."""

from __future__ import annotations

import numpy as np
import pytest
from pgvectorizer.errors import MissingModel
from pgvectorizer.gpu_worker.packing import Packing, embed_tasks, truncate
from pgvectorizer.service.protocol import TaskError, TaskResult

from tests.helpers.gpu_fakes import (
    DIMS,
    MODEL,
    FakeBackend,
    result_of,
    task,
    vectors_of,
)


def test_packing_sorts_longest_first_and_splits_back() -> None:
    packing = Packing([["bb", "a"], ["dddd", "", "ccc"]])
    assert packing.texts == ["dddd", "ccc", "bb", "a", ""]
    # Row i of the packed vectors says which packed text it belongs to.
    packed = np.arange(5, dtype=np.float32)[:, None].repeat(2, axis=1)
    first, second = packing.split(packed)
    assert first[:, 0].tolist() == [2, 3]  # "bb", "a"
    assert second[:, 0].tolist() == [0, 4, 1]  # "dddd", "", "ccc"


def test_split_tokens_adds_up() -> None:
    packing = Packing([["a" * 30], ["b" * 10, "c" * 10], [""]])
    parts = packing.split_tokens(100)
    assert sum(parts) == 100
    assert parts[0] > parts[1] > parts[2] >= 0
    assert packing.split_tokens(0) == [0, 0, 0]


def test_embed_tasks_one_call_in_original_order() -> None:
    backend = FakeBackend()
    tasks = [task("t1", ["short", "a much longer text here"]), task("t2", ["mid text"])]
    outcomes = embed_tasks(backend, tasks)
    assert len(backend.calls) == 1
    sent = backend.calls[0][1]
    assert sent == sorted(sent, key=len, reverse=True)
    assert [o.id for o in outcomes] == ["t1", "t2"]
    for outcome, t in zip(outcomes, tasks, strict=True):
        np.testing.assert_allclose(result_of(outcome), vectors_of(t.input), atol=1e-6)
    assert isinstance(outcomes[0], TaskResult) and isinstance(outcomes[1], TaskResult)
    assert outcomes[0].tokens + outcomes[1].tokens == 8  # one per word


def test_dimensions_as_is_truncated_or_too_large() -> None:
    backend = FakeBackend()
    texts = ["alpha beta", "gamma"]
    outcomes = embed_tasks(backend, [task("none", texts), task("same", texts, DIMS),
                                     task("cut", texts, 3), task("big", ["never sent"], DIMS + 1)])
    full = vectors_of(texts)
    np.testing.assert_allclose(result_of(outcomes[0]), full, atol=1e-6)
    np.testing.assert_allclose(result_of(outcomes[1]), full, atol=1e-6)
    cut = result_of(outcomes[2])
    assert cut.shape == (2, 3)
    np.testing.assert_allclose(np.linalg.norm(cut, axis=1), 1.0, atol=1e-6)
    np.testing.assert_allclose(cut, full[:, :3] / np.linalg.norm(full[:, :3], axis=1,
                                                                 keepdims=True), atol=1e-6)
    big = outcomes[3]
    assert isinstance(big, TaskError) and not big.retryable
    assert MODEL in big.error and f"{DIMS}-dimensional" in big.error and str(DIMS + 1) in big.error
    assert all("never sent" not in texts for _, texts in backend.calls)


def test_truncate_keeps_zero_rows_finite() -> None:
    vectors = np.array([[0, 0, 1], [3, 4, 0]], dtype=np.float32)
    np.testing.assert_allclose(truncate(vectors, 2), np.array([[0, 0], [0.6, 0.8]]), atol=1e-7)
    assert truncate(vectors, None) is vectors


def test_bad_task_is_isolated() -> None:
    backend = FakeBackend(fail_on="BAD")
    outcomes = embed_tasks(backend, [task("a", ["fine"]), task("b", ["x", "BAD"]),
                                     task("c", ["also fine"])])
    assert len(backend.calls) == 4  # together, then each alone
    bad = outcomes[1]
    assert isinstance(bad, TaskError) and not bad.retryable and "cannot embed BAD" in bad.error
    np.testing.assert_allclose(result_of(outcomes[0]), vectors_of(["fine"]), atol=1e-6)
    np.testing.assert_allclose(result_of(outcomes[2]), vectors_of(["also fine"]), atol=1e-6)


def test_a_lone_task_that_fails_gets_a_second_try() -> None:
    # One failure cannot tell a bad text from a broken worker: the first attempt is retryable,
    # the second (another try failed too) is not.
    first = embed_tasks(FakeBackend(fail_on="BAD"), [task("a", ["BAD"])])
    second = embed_tasks(FakeBackend(fail_on="BAD"),
                         [task("a", ["BAD"]).model_copy(update={"attempt": 2})])
    assert [(type(o), getattr(o, "retryable", None)) for o in first + second] == [
        (TaskError, True), (TaskError, False)]


def test_all_failing_alone_blames_the_backend() -> None:
    outcomes = embed_tasks(FakeBackend(fail_on="BAD"), [task("a", ["BAD 1"]),
                                                        task("b", ["BAD 2"])])
    assert all(isinstance(o, TaskError) and o.retryable for o in outcomes)


def test_transient_error_fails_all_retryable_at_once() -> None:
    backend = FakeBackend(fail_on="x", transient=True)
    outcomes = embed_tasks(backend, [task("a", ["x"]), task("b", ["y"])])
    assert len(backend.calls) == 1
    assert all(isinstance(o, TaskError) and o.retryable for o in outcomes)


def test_models_grouped_and_unserved_model() -> None:
    backend = FakeBackend(models=(MODEL, "other"))
    outcomes = embed_tasks(backend, [task("a", ["one"]), task("b", ["two"], model="other"),
                                     task("c", ["three"]), task("d", ["four"], model="nope")])
    assert sorted(m for m, _ in backend.calls) == [MODEL, "other"]
    assert [o.id for o in outcomes] == ["a", "b", "c", "d"]
    unserved = outcomes[3]
    assert isinstance(unserved, TaskError) and unserved.retryable and "nope" in unserved.error


def test_config_error_passes_through() -> None:
    with pytest.raises(MissingModel):
        embed_tasks(FakeBackend(error=MissingModel("gone")), [task("a", ["x"])])
