"""Where API keys come from and where they, and server-side requests, may go; no database."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from pgvectorizer.embedders import make_embedder
from pgvectorizer.embedders.ollama import OllamaEmbedder
from pgvectorizer.embedders.openai import OpenAIEmbedder
from pgvectorizer.endpoints import (
    allowed_endpoints,
    check_server_endpoint,
    key_endpoints,
    parse_endpoint,
    read_api_key,
)
from pgvectorizer.errors import (
    ApiKeyMissing,
    ConfigError,
    EndpointNotAllowed,
    KeyEndpointRefused,
)

from tests.helpers.fake_openai import start_fake_server

KEYS = "PGVECTORIZER_KEY_ENDPOINTS"
ALLOWED = "PGVECTORIZER_ALLOWED_ENDPOINTS"
DB_URL = "postgresql://worker:s3cret@db.internal/app"


def openai(base_url: str | None = None, **config: Any) -> dict[str, Any]:
    out = {"implementation": "openai", "model": "text-embedding-3-small", "dimensions": 4, **config}
    if base_url is not None:
        out["base_url"] = base_url
    return out


@pytest.fixture
def fake() -> Iterator[str]:
    """A fake OpenAI server that wants the bearer token `right`."""
    url, stop = start_fake_server(dimensions=4, token="right")
    yield url
    stop()


def authorization(embedder: OpenAIEmbedder) -> str | None:
    """The Authorization header the embedder sends, seen by a mock transport."""
    seen: list[str | None] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers.get("authorization"))
        n = len(json.loads(request.content)["input"])
        return httpx.Response(200, json={"data": [{"index": i, "embedding": [0.0] * 4}
                                                  for i in range(n)]})

    embedder._client = httpx.Client(transport=httpx.MockTransport(handler),
                                    headers=embedder._client.headers)
    embedder.embed(["x"])
    embedder.close()
    return seen[0]


# Reading keys -------------------------------------------------------------------------------

def test_a_variable_not_meant_as_a_key_is_never_read() -> None:
    # The attack: the database URL as a bearer token to the config author's server.
    config = openai("https://attacker.example/v1", api_key_name="PGAI_VECTORIZER_WORKER_DB_URL")
    with pytest.raises(ConfigError, match="PGAI_VECTORIZER_WORKER_DB_URL") as info:
        make_embedder(config, {"PGAI_VECTORIZER_WORKER_DB_URL": DB_URL})
    assert "_API_KEY" in str(info.value) and KEYS in str(info.value)
    assert DB_URL not in str(info.value)
    # Unset, it is refused all the same: the rule is about the name.
    with pytest.raises(ConfigError, match="end in _API_KEY"):
        make_embedder(config, {})


def test_a_listed_variable_may_be_read_whatever_its_name(fake: str) -> None:
    env = {"QUEUE_TOKEN": "right", KEYS: f"QUEUE_TOKEN={fake}"}
    embedder = make_embedder(openai(fake, api_key_name="QUEUE_TOKEN"), env)
    assert isinstance(embedder, OpenAIEmbedder)
    assert embedder.embed(["a"]).shape == (1, 4)
    embedder.close()


# Sending keys -------------------------------------------------------------------------------

def test_the_default_key_goes_to_the_default_endpoint() -> None:
    embedder = make_embedder(openai(), {"OPENAI_API_KEY": "sk-x"})
    assert isinstance(embedder, OpenAIEmbedder)
    assert authorization(embedder) == "Bearer sk-x"


def test_the_default_key_is_refused_to_another_endpoint(fake: str) -> None:
    with pytest.raises(KeyEndpointRefused) as info:
        make_embedder(openai(fake), {"OPENAI_API_KEY": "right"})
    message = str(info.value)
    assert "OPENAI_API_KEY" in message and fake in message
    assert f"add OPENAI_API_KEY={fake} to {KEYS}" in message
    assert "right" not in message  # the key itself never shows
    # The setting the message names lets it through.
    embedder = make_embedder(openai(fake), {"OPENAI_API_KEY": "right", KEYS: f"OPENAI_API_KEY={fake}"})
    assert embedder.embed(["a"]).shape == (1, 4)
    embedder.close()


def test_another_key_is_refused_even_to_the_default_endpoint() -> None:
    with pytest.raises(KeyEndpointRefused, match="TEAM_API_KEY=https://api.openai.com/v1"):
        make_embedder(openai(api_key_name="TEAM_API_KEY"), {"TEAM_API_KEY": "sk-x"})
    env = {"TEAM_API_KEY": "sk-x", KEYS: "TEAM_API_KEY=https://api.openai.com/v1"}
    embedder = make_embedder(openai(api_key_name="TEAM_API_KEY"), env)
    assert isinstance(embedder, OpenAIEmbedder)
    assert authorization(embedder) == "Bearer sk-x"


def test_a_key_listed_for_one_endpoint_does_not_go_to_another() -> None:
    env = {"TEAM_API_KEY": "sk-x", KEYS: "TEAM_API_KEY=https://proxy.example/v1"}
    with pytest.raises(KeyEndpointRefused, match="https://proxy.example.evil/v1"):
        make_embedder(openai("https://proxy.example.evil/v1", api_key_name="TEAM_API_KEY"), env)
    with pytest.raises(KeyEndpointRefused):
        make_embedder(openai("https://proxy.example/v1", api_key_name="OTHER_API_KEY"),
                      {**env, "OTHER_API_KEY": "sk-y"})


def test_a_missing_key_keeps_todays_behaviour() -> None:
    with pytest.raises(ApiKeyMissing, match="OPENAI_API_KEY is not set"):
        make_embedder(openai(), {})
    with pytest.raises(ApiKeyMissing, match="TEAM_API_KEY is not set"):
        make_embedder(openai(api_key_name="TEAM_API_KEY"), {"TEAM_API_KEY": ""})
    # A local server without a key gets no Authorization, and no policy applies.
    embedder = make_embedder(openai("http://localhost:8000/v1"), {})
    assert isinstance(embedder, OpenAIEmbedder)
    assert authorization(embedder) is None


def test_read_api_key_directly() -> None:
    env = {"A_API_KEY": "k", KEYS: "A_API_KEY=http://h:*/v1"}
    args = {"default_name": "OPENAI_API_KEY", "default_url": "https://api.openai.com/v1"}
    assert read_api_key(env, "A_API_KEY", base_url="http://h:9/v1/", **args) == "k"
    assert read_api_key(env, "B_API_KEY", base_url="http://evil/v1", **args) is None


# Matching -----------------------------------------------------------------------------------

@pytest.mark.parametrize(("listed", "url", "match"), [
    ("https://my-proxy.example/v1", "https://my-proxy.example/v1", True),
    ("https://my-proxy.example/v1/", "https://MY-PROXY.example:443/v1/", True),
    ("HTTPS://my-proxy.example/v1", "https://my-proxy.example/v1/embeddings", True),
    ("https://my-proxy.example/v1", "https://my-proxy.example/v10", False),
    ("https://my-proxy.example/v1", "https://my-proxy.example/", False),
    ("https://my-proxy.example/v1", "http://my-proxy.example/v1", False),
    ("https://my-proxy.example/v1", "https://my-proxy.example:8443/v1", False),
    ("https://my-proxy.example", "https://my-proxy.example/any/path", True),
    ("http://queue:8000/v1", "http://queue:8000/v1", True),
    ("http://queue:8000/v1", "http://queue/v1", False),
    ("http://queue/v1", "http://queue:80/v1", True),
    ("http://queue:*/v1", "http://queue:1234/v1", True),
    ("http://queue:*/v1", "http://queue/v1", True),
    ("http://[::1]:8000/v1", "http://[::1]:8000/v1", True),
    # What httpx would really request decides: another host, or a path outside the prefix.
    ("https://api.openai.com/v1", "https://api.openai.com@evil.example/v1", False),
    ("https://api.openai.com/v1", "https://api.openai.com.evil.example/v1", False),
    ("https://good.example/v1", "https://good.example/v1/../admin", False),
    ("https://good.example/v1", "https://good.example/v1/%2e%2e/admin", False),
    ("https://good.example/v1", "https://good.example/v1%2F..%2Fadmin", False),
    ("https://good.example/v1", "ftp://good.example/v1", False),
    ("https://good.example/v1", "not a url", False),
])
def test_matching(listed: str, url: str, match: bool) -> None:
    assert parse_endpoint(listed, KEYS).matches(url) is match


@pytest.mark.parametrize("value", [
    "OPENAI_API_KEY", "OPENAI_API_KEY=", "=https://x/v1", "1BAD=https://x/v1",
    "A_API_KEY=ftp://x/v1", "A_API_KEY=x/v1", "A_API_KEY=https://user@x/v1",
    "A_API_KEY=https://x/v1?q=1", "A_API_KEY=https://x:port/v1",
])
def test_malformed_key_endpoints_name_the_variable(value: str) -> None:
    with pytest.raises(ConfigError, match=KEYS):
        key_endpoints({KEYS: value})


def test_key_endpoints_separators_and_repeats() -> None:
    parsed = key_endpoints({KEYS: " A_API_KEY=http://a/v1,http://b/v1;\nB_API_KEY=http://c\t"
                                  "A_API_KEY=http://d/v2 "})
    assert {k: [e.host for e in v] for k, v in parsed.items()} == {
        "A_API_KEY": ["a", "b", "d"], "B_API_KEY": ["c"]}
    assert key_endpoints({}) == {}


def test_allowed_endpoints_separators() -> None:
    parsed = allowed_endpoints({ALLOWED: "http://a:1/v1, http://b;http://c\nhttp://d:*"})
    assert [(e.host, e.port) for e in parsed] == [("a", 1), ("b", 80), ("c", 80), ("d", None)]
    with pytest.raises(ConfigError, match=ALLOWED):
        allowed_endpoints({ALLOWED: "gopher://x"})


# Server-side requests -----------------------------------------------------------------------

def test_server_side_openai_goes_only_where_allowed() -> None:
    env = {"OPENAI_API_KEY": "sk-x"}
    make_embedder(openai(), env, server_side=True).close()  # OpenAI's own endpoint
    internal = "http://10.0.0.5:8080/v1"
    with pytest.raises(EndpointNotAllowed) as info:
        make_embedder(openai(internal), {}, server_side=True)
    assert internal in str(info.value) and ALLOWED in str(info.value)
    # Not server-side, the same config works (the worker's own network is its operator's).
    make_embedder(openai(internal), {}).close()
    make_embedder(openai(internal), {ALLOWED: "http://10.0.0.5:8080"}, server_side=True).close()
    # A URL listed for any key is one the operator vouched for.
    listed = {KEYS: f"SOME_API_KEY={internal}"}
    make_embedder(openai(internal), listed, server_side=True).close()


def test_server_side_ollama_default_only_without_base_url() -> None:
    ollama = {"implementation": "ollama", "model": "m", "dimensions": 4}
    made = make_embedder(ollama, {}, server_side=True)
    assert isinstance(made, OllamaEmbedder) and made.base_url == "http://localhost:11434"
    made.close()
    make_embedder(ollama, {"OLLAMA_HOST": "gpu-box"}, server_side=True).close()
    with pytest.raises(EndpointNotAllowed, match="http://localhost:11434"):
        make_embedder({**ollama, "base_url": "http://localhost:11434"}, {}, server_side=True)
    env = {ALLOWED: "http://localhost:11434"}
    make_embedder({**ollama, "base_url": "http://localhost:11434"}, env, server_side=True).close()


def test_check_server_endpoint_ignores_an_unreadable_default() -> None:
    with pytest.raises(EndpointNotAllowed):
        check_server_endpoint("ftp://x", {}, defaults=["ftp://x"])
