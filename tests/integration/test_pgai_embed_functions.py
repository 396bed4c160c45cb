"""pgai's one-call embedding functions in SQL (ai.openai_embed, ai.ollama_embed, ai.voyageai_embed,
ai.cohere_embed, ai.litellm_embed): the vector of a text, asked of the fake servers from inside
PostgreSQL, and the arguments refused on purpose (a key in SQL, headers we do not forward)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np
import psycopg
import pytest
from psycopg import errors

from tests.helpers.db import DIMS, SERVER_KEY_VAR, Connector, scalar
from tests.helpers import fake_ollama
from tests.helpers.fake_ollama import MODEL as OLLAMA_MODEL
from tests.helpers.fake_ollama import FakeOllama
from tests.helpers.fake_openai import fake_vector
from tests.helpers.worker import parse


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
