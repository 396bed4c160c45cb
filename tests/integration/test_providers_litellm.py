"""ai.embedding_litellm end to end: the worker fills stores from the fake providers in
tests/helpers/fake_litellm.py, and a row the provider refuses ends as a failed queue item
while the others go through. In-database calls (ai.embed, ai.litellm_embed, execute_vectorizer)
are in test_pgai_embed_functions.py."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import psycopg
import pytest
from psycopg import sql

from tests.helpers import fake_litellm
from tests.helpers.db import create_vectorizer, failed_rows, queued, rows, scalar
from tests.helpers.fake_litellm import (
    AWS_KEY_ID,
    AWS_SECRET,
    AZURE_KEY,
    AZURE_VERSION,
    COHERE_KEY,
    HF_KEY,
    MISTRAL_KEY,
    FakeLiteLLM,
    service_account,
    vector,
)
from tests.helpers.worker import parse, run_once

HF_MODEL = "BAAI/bge-small-en-v1.5"
TEXTS = ["first document", "RATE429", "ünïcödé ✓", "fourth"]


@pytest.fixture
def fake() -> Iterator[FakeLiteLLM]:
    with fake_litellm.running() as srv:
        yield srv


def options(**values: object) -> str:
    """extra_options as a SQL jsonb literal."""
    return sql.quote(json.dumps(values)) + "::jsonb"


# name -> (SQL embedding config, dimensions, worker env, the fake's route)
Setup = Callable[[FakeLiteLLM, Path], tuple[str, int, dict[str, str], str]]
SETUPS: dict[str, Setup] = {
    "cohere": lambda f, t: ("ai.embedding_litellm('cohere/embed-v4.0', 256)", 256,
                            {"COHERE_API_BASE": f.url, "COHERE_API_KEY": COHERE_KEY}, "cohere"),
    "azure": lambda f, t: (
        ("ai.embedding_litellm('azure/my-embeddings', 8, api_key_name => 'AZURE_API_KEY', "
         f"extra_options => {options(api_base=f.url, api_version=AZURE_VERSION, dimensions=8)})"),
        8, {"AZURE_API_KEY": AZURE_KEY,
            # A loopback api_base is no Azure host: the operator lists it for the key.
            "PGVECTORIZER_KEY_ENDPOINTS": "AZURE_API_KEY=http://127.0.0.1:*"}, "azure"),
    "mistral": lambda f, t: ("ai.embedding_litellm('mistral/mistral-embed', 1024)", 1024,
                             {"MISTRAL_API_BASE": f"{f.url}/mistral/v1",
                              "MISTRAL_API_KEY": MISTRAL_KEY}, "mistral"),
    "vertex_ai": lambda f, t: (
        ("ai.embedding_litellm('vertex_ai/text-embedding-005', 768, "
         f"extra_options => {options(vertex_location='europe-west4')})"), 768,
        {"GOOGLE_APPLICATION_CREDENTIALS": _sa_file(f, t), "VERTEXAI_API_BASE": f.url},
        "vertex"),
    "huggingface": lambda f, t: (
        f"ai.embedding_litellm('huggingface/{HF_MODEL}', 384)", 384,
        {"HUGGINGFACE_API_BASE": f"{f.url}/hf/{HF_MODEL}/pipeline/feature-extraction",
         "HUGGINGFACE_API_KEY": HF_KEY}, "huggingface"),
    "bedrock": lambda f, t: (
        ("ai.embedding_litellm('bedrock/amazon.titan-embed-text-v2:0', 256, "
         "api_key_name => 'AWS_SECRET_ACCESS_KEY', "
         f"extra_options => {options(aws_region_name='us-east-1', aws_access_key_id=AWS_KEY_ID)})"),
        256, {"AWS_ENDPOINT_URL_BEDROCK_RUNTIME": f.url, "AWS_SECRET_ACCESS_KEY": AWS_SECRET},
        "bedrock"),
}


def _sa_file(f: FakeLiteLLM, tmp: Path) -> str:
    path = tmp / "sa.json"
    path.write_text(json.dumps(service_account(f"{f.url}/token")))
    return str(path)


def stored(db: psycopg.Connection) -> dict[int, np.ndarray]:
    return {k: parse(v) for k, v in rows(db, "SELECT id, embedding::text FROM doc_embedding")}


@pytest.mark.parametrize("name", list(SETUPS))
def test_worker_fills_the_store_from_the_provider(db: psycopg.Connection, fake: FakeLiteLLM,
                                                  tmp_path: Path, name: str) -> None:
    embedding, dims, env, route = SETUPS[name](fake, tmp_path)
    db.execute("CREATE TABLE doc (id int PRIMARY KEY, body text)")
    vid = create_vectorizer(db, "doc", chunking="ai.chunking_none()", embedding=embedding)
    config = scalar(db, "SELECT config->'embedding' FROM ai.vectorizer WHERE id = %s", (vid,))
    assert config["implementation"] == "litellm" and config["dimensions"] == dims
    db.execute("INSERT INTO doc SELECT i, t FROM unnest(%s::text[]) WITH ORDINALITY AS u(t, i)",
               (TEXTS,))
    run_once(db, vid, **env)
    assert queued(db, vid) == set() and failed_rows(db, vid) == []
    got = stored(db)
    assert sorted(got) == [1, 2, 3, 4]
    for i, text in enumerate(TEXTS, start=1):
        np.testing.assert_allclose(got[i], vector(text, dims), rtol=1e-6, atol=1e-7)
    # The 429 was answered and the texts sent again after its Retry-After.
    assert len(fake.of(route)) >= 2


def test_cohere_sends_documents_as_documents(db: psycopg.Connection, fake: FakeLiteLLM,
                                             tmp_path: Path) -> None:
    embedding, _, env, _ = SETUPS["cohere"](fake, tmp_path)
    db.execute("CREATE TABLE doc (id int PRIMARY KEY, body text)")
    vid = create_vectorizer(db, "doc", chunking="ai.chunking_none()", embedding=embedding)
    db.execute("INSERT INTO doc VALUES (1, 'one'), (2, 'two')")
    run_once(db, vid, **env)
    assert {r.body["input_type"] for r in fake.of("cohere")} == {"search_document"}
    assert {r.body["output_dimension"] for r in fake.of("cohere")} == {256}
    assert {r.headers["Authorization"] for r in fake.of("cohere")} == {f"Bearer {COHERE_KEY}"}


@pytest.mark.parametrize("name", ["cohere", "azure"])
def test_a_refused_text_fails_its_row_only(db: psycopg.Connection, fake: FakeLiteLLM,
                                           tmp_path: Path, name: str) -> None:
    embedding, dims, env, _ = SETUPS[name](fake, tmp_path)
    db.execute("CREATE TABLE doc (id int PRIMARY KEY, body text)")
    vid = create_vectorizer(db, "doc", chunking="ai.chunking_none()", embedding=embedding,
                            loading="ai.loading_column('body', retries => 0)")
    db.execute("INSERT INTO doc VALUES (1, 'fine'), (2, 'FAIL400 refused'), (3, 'also fine')")
    run_once(db, vid, **env)
    assert failed_rows(db, vid) == [2]
    error = scalar(db, f"SELECT error FROM ai._vectorizer_q_failed_{vid}")
    assert "refused the request (400)" in error and "FAIL400" in error, error
    got = stored(db)
    assert sorted(got) == [1, 3]
    np.testing.assert_allclose(got[3], vector("also fine", dims), rtol=1e-6, atol=1e-7)


def test_a_refused_key_stops_the_vectorizer_and_keeps_its_queue(
        db: psycopg.Connection, fake: FakeLiteLLM, tmp_path: Path) -> None:
    embedding, _, env, _ = SETUPS["cohere"](fake, tmp_path)
    db.execute("CREATE TABLE doc (id int PRIMARY KEY, body text)")
    vid = create_vectorizer(db, "doc", chunking="ai.chunking_none()", embedding=embedding)
    db.execute("INSERT INTO doc VALUES (1, 'one'), (2, 'two')")
    run_once(db, vid, expect_error="COHERE_API_KEY", **{**env, "COHERE_API_KEY": "co-wrong"})
    assert queued(db, vid) == {1, 2} and failed_rows(db, vid) == []
    message = scalar(db, "SELECT last_error FROM ai.vectorizer_status WHERE id = %s", (vid,))
    assert "COHERE_API_KEY" in message, message

