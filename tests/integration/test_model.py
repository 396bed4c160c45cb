"""Two runners with the real all-MiniLM-L6-v2 on CPU while writers keep changing the rows.

At the end every stored vector must be the model's vector for the row's current chunk text,
and no chunk of an older text may remain. The runners are two workers or two sessions calling
ai.execute_vectorizer (`path`). Workers run in this process (in threads with their own event
loops and connections) so the model is loaded once per test session; each session loads it in
its backend. How the server keeps its model between calls: test_indb_model.py.
"""

from __future__ import annotations

import asyncio
import random
import threading
import time

import numpy as np
import psycopg
import pytest
from pgvectorizer.chunking import make_chunker
from pgvectorizer.embedders.sentence_transformers import load_model
from pgvectorizer.worker import Worker

from tests.helpers.db import (
    Connector,
    create_vectorizer,
    dsn,
    queued,
    rows,
    scalar,
    vectorizer,
)
from tests.helpers.worker import stored

WORDS = ["database", "vector", "search", "embedding", "queue", "worker", "row", "update",
         "postgres", "model", "chunk", "index", "query", "text", "fast", "safe"]


@pytest.fixture(autouse=True)
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def test_two_runners_and_writers_end_with_the_models_vectors(db: psycopg.Connection, path: str,
                                                             connect: Connector) -> None:
    db.execute("CREATE TABLE doc (id int PRIMARY KEY, body text)")
    vid = create_vectorizer(db, "doc", embedding="ai.embedding_sentence_transformers('all-MiniLM-L6-v2')",
                            chunking="ai.chunking_recursive_character_text_splitter(60, 10)",
                            processing="ai.processing_default(batch_size => 3)")
    db.execute("INSERT INTO doc SELECT g, 'the first text of row ' || g FROM generate_series(1, 8) g")
    config = vectorizer(db, vid)["config"]
    model = load_model(config["embedding"])

    stop = threading.Event()
    failures: list[object] = []

    def work() -> None:
        # Each pass drains what it can claim; two of these race on the same queue.
        conn = connect() if path == "indb" else None
        while True:
            last = stop.is_set()
            if conn is None:
                worker = Worker(dsn(db), once=True, env={"PGVECTORIZER_RETRY_SECONDS": "0"})
                result = asyncio.run(worker.run())
                if result is not None:
                    failures.append(result)
            else:
                try:
                    out = scalar(conn, "SELECT ai.execute_vectorizer(%s)", (vid,))
                    if out["failed"] or out["retried"]:
                        failures.append(out)
                except psycopg.Error as e:
                    failures.append(e)
            if last:
                return
            time.sleep(0.05)

    def write(seed: int) -> None:
        rnd = random.Random(seed)
        conn = connect()
        for n in range(12):
            key = rnd.randint(1, 10)
            if rnd.random() < 0.2:
                conn.execute("DELETE FROM doc WHERE id = %s", (key,))
            else:
                text = f"version {seed}.{n}: " + " ".join(rnd.choices(WORDS, k=rnd.randint(2, 18)))
                conn.execute("INSERT INTO doc VALUES (%s, %s) ON CONFLICT (id) DO UPDATE "
                             "SET body = excluded.body", (key, text))
            time.sleep(0.15)

    workers = [threading.Thread(target=work) for _ in range(2)]
    writers = [threading.Thread(target=write, args=(s,)) for s in range(2)]
    for t in workers + writers:
        t.start()
    for t in writers:
        t.join()
    stop.set()
    for t in workers:
        t.join(120)
    assert not failures
    assert queued(db, vid) == set()

    chunker = make_chunker(config["chunking"])
    current = dict(rows(db, "SELECT id, body FROM doc"))
    got_rows = stored(db)
    assert sorted(got_rows) == sorted(current)
    chunks = [c for key in sorted(current) for c, _ in got_rows[key]]
    for key, body in current.items():
        assert [c for c, _ in got_rows[key]] == chunker(body), f"row {key} keeps chunks of an older text"
    expected = model.encode(chunks, normalize_embeddings=True, convert_to_numpy=True)
    got = np.array([vec for key in sorted(current) for _, vec in got_rows[key]], dtype=np.float32)
    cosine = (got * expected).sum(axis=1) / (np.linalg.norm(got, axis=1) * np.linalg.norm(expected, axis=1))
    assert cosine.min() > 0.9999, list(zip(chunks, cosine, strict=True))
