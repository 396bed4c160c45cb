"""Voyage AI end to end: the worker fills a store from the fake Voyage server, and ai.embed
asks it for a query's vector from inside PostgreSQL (tests/helpers/fake_voyage.py)."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import psycopg
import pytest

from tests.helpers import fake_voyage
from tests.helpers.db import SERVER_KEY_VAR, create_vectorizer, queued, rows, scalar
from tests.helpers.fake_voyage import KEY, FakeVoyage, voyage_vector
from tests.helpers.worker import WORKER_KEY, parse, run_once


@pytest.fixture
def voyage() -> Iterator[FakeVoyage]:
    with fake_voyage.running() as srv:
        srv.keys.add(WORKER_KEY[SERVER_KEY_VAR])
        yield srv


def test_worker_fills_the_store_from_voyage(db: psycopg.Connection, voyage: FakeVoyage) -> None:
    db.execute("CREATE TABLE doc (id int PRIMARY KEY, body text)")
    vid = create_vectorizer(db, "doc", chunking="ai.chunking_none()",
                            embedding="ai.embedding_voyageai('voyage-3.5-lite', output_dimension => 512)")
    config = scalar(db, "SELECT config->'embedding' FROM ai.vectorizer WHERE id = %s", (vid,))
    assert config["dimensions"] == 512 and config["api_key_name"] == "VOYAGE_API_KEY"
    texts = ["first document", "RATE429", "ünïcödé ✓", "fourth"]
    db.execute("INSERT INTO doc SELECT i, t FROM unnest(%s::text[]) WITH ORDINALITY AS u(t, i)", (texts,))
    run_once(db, vid, VOYAGE_BASE_URL=voyage.url, VOYAGE_API_KEY=KEY)
    assert queued(db, vid) == set()
    stored = {k: parse(v) for k, v in rows(db, "SELECT id, embedding::text FROM doc_embedding")}
    assert sorted(stored) == [1, 2, 3, 4]
    for i, text in enumerate(texts, start=1):
        np.testing.assert_allclose(stored[i], voyage_vector(text, 512), rtol=1e-6, atol=1e-7)
    # Documents go as documents, at the asked size, after one 429 and its Retry-After.
    assert {p["input_type"] for p in voyage.payloads} == {"document"}
    assert {p["output_dimension"] for p in voyage.payloads} == {512}
    assert sum("RATE429" in p["input"] for p in voyage.payloads) >= 2  # refused, then sent again


def test_ai_embed_asks_voyage_from_sql(db: psycopg.Connection, voyage: FakeVoyage) -> None:
    config = (f"ai.embedding_voyageai('voyage-3.5', input_type => 'query', "
              f"api_key_name => '{SERVER_KEY_VAR}') || jsonb_build_object('base_url', %s::text)")
    got = parse(scalar(db, f"SELECT ai.embed({config}, %s)::text", (voyage.url, "a question")))
    np.testing.assert_allclose(got, voyage_vector("a question", 1024), rtol=1e-6, atol=1e-7)
    assert voyage.payloads[-1]["input_type"] == "query"
    assert voyage.auth[-1] == f"Bearer {WORKER_KEY[SERVER_KEY_VAR]}"


def test_ai_embed_refuses_an_endpoint_the_server_does_not_allow(db: psycopg.Connection,
                                                                 voyage: FakeVoyage) -> None:
    url = voyage.url.replace("127.0.0.1", "localhost")
    with pytest.raises(psycopg.Error, match="is not an endpoint that the database server may call"):
        db.execute("SELECT ai.embed(ai.embedding_voyageai('voyage-3.5') || "
                   "jsonb_build_object('base_url', %s::text), 'q')", (url,))
    assert voyage.payloads == []
