"""pgai's one-call embedding functions in SQL (ai.openai_embed, ai.ollama_embed, ai.voyageai_embed,
ai.cohere_embed, ai.litellm_embed): the vector of a text, asked of the fake servers from inside
PostgreSQL, and the arguments refused on purpose (a key in SQL, headers we do not forward); and
a LiteLLM-provider vectorizer run in the database."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator

import numpy as np
import psycopg
import pytest
from psycopg import errors, sql

from tests.helpers import fake_litellm, fake_ollama
from tests.helpers.db import (
    DIMS,
    SERVER_KEY_VAR,
    Connector,
    create_vectorizer,
    rows,
    scalar,
)
from tests.helpers.fake_ollama import MODEL as OLLAMA_MODEL
from tests.helpers.fake_ollama import FakeOllama
from tests.helpers.fake_openai import fake_vector
from tests.helpers.worker import WORKER_KEY, execute, parse


@pytest.fixture
def ollama() -> Iterator[FakeOllama]:
    with fake_ollama.running() as srv:
        yield srv


def test_openai_embed(db: psycopg.Connection, fake_url: str) -> None:
    call = ("SELECT ai.openai_embed('text-embedding-3-small', %s, api_key_name => %s, dimensions => %s, "
            "client_config => jsonb_build_object('base_url', %s::text))::text")
    got = parse(scalar(db, call, ("a question", SERVER_KEY_VAR, DIMS, fake_url)))
    assert np.array_equal(got, fake_vector("a question", DIMS))


def test_ollama_embed_in_a_search(db: psycopg.Connection, ollama: FakeOllama) -> None:
    host = f"http://127.0.0.1:{ollama.server_address[1]}"
    # The fake makes vectors of any size it is told; nomic-embed-text's is 768.
    db.execute("CREATE TABLE notes (id int PRIMARY KEY, embedding vector(768))")
    for i, text in enumerate(["first note", "second note", "third note"], start=1):
        db.execute("INSERT INTO notes VALUES (%s, %s::vector)", (i, str(fake_vector(text, 768).tolist())))
    top = scalar(db, "SELECT id FROM notes ORDER BY embedding <=> ai.ollama_embed(%s, 'second note', host => %s, "
                     "keep_alive => '5m', embedding_options => '{\"fake_dims\": 768}') LIMIT 1", (OLLAMA_MODEL, host))
    assert top == 2
    assert ollama.payloads[-1]["keep_alive"] == "5m" and ollama.payloads[-1]["input"] == ["second note"]


def test_voyageai_embed_names_the_missing_key(db: psycopg.Connection) -> None:
    # The server's environment has no VOYAGE_API_KEY: refused before any request is made.
    with pytest.raises(psycopg.Error, match="VOYAGE_API_KEY is not set"):
        db.execute("SELECT ai.voyageai_embed('voyage-3.5', 'q', input_type => 'query')")


@pytest.mark.parametrize("call", [
    "SELECT ai.openai_embed('text-embedding-3-small', 'q', 'sk-live-123')",
    "SELECT ai.openai_embed('text-embedding-3-small', 'q', api_key => 'sk-live-123')",
    "SELECT ai.voyageai_embed('voyage-3.5', 'q', api_key => 'pa-123')",
    "SELECT ai.cohere_embed('embed-english-v3.0', 'q', api_key => 'co-123')",
    "SELECT ai.litellm_embed('mistral/mistral-embed', 'q', api_key => 'm-123')",
])
def test_a_key_in_sql_is_refused(db: psycopg.Connection, call: str) -> None:
    with pytest.raises(errors.InvalidParameterValue, match="api_key is not accepted") as info:
        db.execute(call)
    assert "environment" in (info.value.diag.message_hint or "")


@pytest.mark.parametrize(("arguments", "message"), [
    ("extra_headers => '{\"X-Tenant\": \"a\"}'", "extra_headers and extra_query are not supported"),
    ("extra_query => '{\"a\": 1}'", "extra_headers and extra_query are not supported"),
    ("client_config => '{\"base_url\": \"http://127.0.0.1:1/v1\", \"timeout\": 3}'", "base_url only"),
    ("client_config => '[]'", "base_url only"),
])
def test_openai_embed_refuses_what_it_does_not_forward(db: psycopg.Connection, fake_url: str,
                                                        arguments: str, message: str) -> None:
    with pytest.raises(psycopg.Error, match=message):
        db.execute(f"SELECT ai.openai_embed('text-embedding-3-small', 'q', {arguments})")


def test_only_admins_may_call_them(db: psycopg.Connection, connect: Connector,
                                   make_role: Callable[[str], tuple[str, str]]) -> None:
    user, admin = make_role("user"), make_role("admin")
    db.execute("SELECT ai.grant_vectorizer_usage(%s)", (user[0],))
    db.execute("SELECT ai.grant_vectorizer_usage(%s, admin => true)", (admin[0],))
    for name in ("openai_embed", "ollama_embed", "voyageai_embed", "cohere_embed", "litellm_embed"):
        assert scalar(db, "SELECT bool_or(has_function_privilege(%s, p.oid, 'EXECUTE')) FROM pg_proc p "
                          "WHERE p.proname = %s AND p.pronamespace = 'ai'::regnamespace", (user[0], name)) is False
        assert scalar(db, "SELECT bool_and(has_function_privilege(%s, p.oid, 'EXECUTE')) FROM pg_proc p "
                          "WHERE p.proname = %s AND p.pronamespace = 'ai'::regnamespace", (admin[0], name)) is True
    conn = connect(user=user[0], password=user[1])
    with pytest.raises(errors.InsufficientPrivilege, match="openai_embed"):
        conn.execute("SELECT ai.openai_embed('text-embedding-3-small', 'q')")


# --- LiteLLM's providers, from inside PostgreSQL ---------------------------------------------------

@pytest.fixture
def cohere(monkeypatch: pytest.MonkeyPatch) -> Iterator[fake_litellm.FakeLiteLLM]:
    """The fake Cohere, taking the key the server's environment has."""
    monkeypatch.setattr(fake_litellm, "COHERE_KEY", WORKER_KEY[SERVER_KEY_VAR])
    with fake_litellm.running() as srv:
        yield srv


def test_litellm_embed_asks_cohere_from_sql(db: psycopg.Connection, cohere: fake_litellm.FakeLiteLLM) -> None:
    options = json.dumps({"api_base": cohere.url, "input_type": "search_query"})
    got = parse(scalar(db, "SELECT ai.litellm_embed('cohere/embed-english-v3.0', 'a question', "
                           "api_key_name => %s, extra_options => %s::jsonb)::text", (SERVER_KEY_VAR, options)))
    np.testing.assert_allclose(got, fake_litellm.vector("a question", 1024), rtol=1e-6, atol=1e-7)
    seen = cohere.of("cohere")[-1]
    assert seen.body["input_type"] == "search_query" and seen.body["texts"] == ["a question"]


def test_cohere_embed_goes_only_where_the_server_allows(db: psycopg.Connection,
                                                        cohere: fake_litellm.FakeLiteLLM) -> None:
    # Cohere's own endpoint is not on this server's allow-list (loopback only): refused unsent.
    with pytest.raises(psycopg.Error, match="api.cohere.com"):
        db.execute("SELECT ai.cohere_embed('embed-english-v3.0', 'q', api_key_name => %s, "
                   "input_type => 'search_query', truncate_long_inputs => 'END')", (SERVER_KEY_VAR,))
    assert cohere.requests == []


def test_execute_vectorizer_with_a_litellm_provider(db: psycopg.Connection,
                                                    cohere: fake_litellm.FakeLiteLLM) -> None:
    db.execute("CREATE TABLE doc (id int PRIMARY KEY, body text)")
    options = sql.quote(json.dumps({"api_base": cohere.url}))
    vid = create_vectorizer(db, "doc", chunking="ai.chunking_none()",
                            embedding=f"ai.embedding_litellm('cohere/embed-english-v3.0', "
                                      f"api_key_name => {sql.quote(SERVER_KEY_VAR)}, extra_options => {options})")
    db.execute("INSERT INTO doc VALUES (1, 'first'), (2, 'FAIL400 second'), (3, 'third')")
    assert execute(db, vid)["rows"] == 2
    stored = {k: parse(v) for k, v in rows(db, "SELECT id, embedding::text FROM doc_embedding")}
    assert sorted(stored) == [1, 3]
    for k, text in ((1, "first"), (3, "third")):
        np.testing.assert_allclose(stored[k], fake_litellm.vector(text, 1024), rtol=1e-6, atol=1e-7)
    # The refused row waits for its next try (loading's retries), with the cause recorded.
    assert rows(db, f"SELECT id FROM ai._vectorizer_q_{vid}") == [(2,)]
    assert "refused the request (400)" in scalar(db, "SELECT string_agg(message, ' ') FROM ai.vectorizer_errors")
