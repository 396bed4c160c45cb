"""The Voyage AI embedder against a fake /v1/embeddings started here; no database."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from pgvectorizer.embedders import make_embedder
from pgvectorizer.embedders.voyageai import (
    DEFAULT_BASE_URL,
    VoyageAIEmbedder,
    max_request_tokens,
)
from pgvectorizer.errors import (
    ApiKeyMissing,
    ConfigError,
    EmbeddingError,
    EndpointNotAllowed,
    KeyEndpointRefused,
    ProviderError,
)

from tests.helpers import fake_voyage
from tests.helpers.fake_voyage import KEY, FakeVoyage, voyage_vector


@pytest.fixture
def server() -> Iterator[FakeVoyage]:
    with fake_voyage.running() as srv:
        yield srv


def env_for(srv: FakeVoyage, **extra: str) -> dict[str, str]:
    return {"VOYAGE_BASE_URL": srv.url, "VOYAGE_API_KEY": KEY, **extra}


def embedder(srv: FakeVoyage, env: dict[str, str] | None = None,
             **config: Any) -> VoyageAIEmbedder:
    full = {"implementation": "voyageai", "model": "voyage-3.5-lite", "dimensions": 1024,
            "input_type": "document", **config}
    made = make_embedder(full, env if env is not None else env_for(srv))
    assert isinstance(made, VoyageAIEmbedder)
    return made


def test_embeds_in_order_with_key_and_input_type(server: FakeVoyage) -> None:
    texts = ["alpha", "beta", "gamma"]
    out = embedder(server).embed(texts)
    assert out.shape == (3, 1024) and out.dtype == np.float32
    for row, text in zip(out, texts, strict=True):
        np.testing.assert_allclose(row, voyage_vector(text, 1024), rtol=1e-6)
    assert server.auth == [f"Bearer {KEY}"]
    sent = server.payloads[0]
    assert sent["model"] == "voyage-3.5-lite" and sent["input_type"] == "document"
    assert sent["input"] == texts and "output_dimension" not in sent


def test_output_dimension_and_int8(server: FakeVoyage) -> None:
    made = embedder(server, dimensions=256, output_dimension=256, output_dtype="int8")
    out = made.embed(["one", "two"])
    assert out.shape == (2, 256)
    np.testing.assert_array_equal(out[1], np.asarray(voyage_vector("two", 256, "int8")))
    assert server.payloads[0]["output_dimension"] == 256
    assert server.payloads[0]["output_dtype"] == "int8"


def test_batches_within_text_count(server: FakeVoyage) -> None:
    texts = [f"t{i}" for i in range(2500)]
    out = embedder(server).embed(texts)
    assert [len(p["input"]) for p in server.payloads] == [1000, 1000, 500]
    np.testing.assert_allclose(out[2499], voyage_vector("t2499", 1024), rtol=1e-6)


def test_batches_within_model_token_budget(server: FakeVoyage) -> None:
    # voyage-code-3 takes 120K tokens a request: 5 texts of 50K bytes need 3 requests.
    texts = [c * 50_000 for c in "abcde"]
    out = embedder(server, model="voyage-code-3").embed(texts)
    assert [len(p["input"]) for p in server.payloads] == [2, 2, 1]
    np.testing.assert_allclose(out[4], voyage_vector("e" * 50_000, 1024), rtol=1e-6)
    assert max_request_tokens("voyage-3.5") == 320_000
    assert max_request_tokens("voyage-3-lite") == 1_000_000


def test_rate_limit_retried_after_retry_after(server: FakeVoyage) -> None:
    out = embedder(server).embed(["RATE429", "x"])
    assert len(server.payloads) == 2
    np.testing.assert_allclose(out[1], voyage_vector("x", 1024), rtol=1e-6)


def test_rate_limit_gives_up_transient(server: FakeVoyage) -> None:
    server.rate_limits = 10
    with pytest.raises(EmbeddingError, match="rate limited") as info:
        embedder(server).embed(["RATE429"])
    assert info.value.transient and len(server.payloads) == 3


def test_server_error_is_transient(server: FakeVoyage) -> None:
    with pytest.raises(EmbeddingError, match="server error 500.*internal error") as info:
        embedder(server).embed(["FAIL500"])
    assert info.value.transient


def test_bad_model_is_refused_with_voyage_words(server: FakeVoyage) -> None:
    with pytest.raises(EmbeddingError, match="Model voyage-9 is not supported") as info:
        embedder(server, model="voyage-9").embed(["x"])
    assert not info.value.transient


def test_wrong_key_is_config_error(server: FakeVoyage) -> None:
    with pytest.raises(ConfigError, match="refused the API key from VOYAGE_API_KEY"):
        embedder(server, env=env_for(server, VOYAGE_API_KEY="pa-wrong")).embed(["x"])


def test_wrong_dimensions(server: FakeVoyage) -> None:
    with pytest.raises(ProviderError, match="returned 512-dimensional vectors"):
        embedder(server, model="voyage-3-lite").embed(["x"])


def test_missing_key() -> None:
    with pytest.raises(ApiKeyMissing, match="VOYAGE_API_KEY is not set"):
        make_embedder({"implementation": "voyageai", "model": "voyage-3.5", "dimensions": 1024}, {})


def test_key_goes_only_to_its_endpoint(server: FakeVoyage) -> None:
    # A config naming another provider's key cannot have it sent to Voyage.
    with pytest.raises(KeyEndpointRefused, match="OPENAI_API_KEY may not be sent"):
        embedder(server, env=env_for(server, OPENAI_API_KEY="sk-x"), api_key_name="OPENAI_API_KEY")
    with pytest.raises(ConfigError, match="only environment variables whose names end"):
        embedder(server, env=env_for(server, PGPASSWORD="pw"), api_key_name="PGPASSWORD")
    assert server.payloads == []


def test_default_endpoint_and_server_side_check() -> None:
    config = {"implementation": "voyageai", "model": "voyage-3.5", "dimensions": 1024}
    made = make_embedder(config, {"VOYAGE_API_KEY": "k"}, server_side=True)
    assert isinstance(made, VoyageAIEmbedder) and made.base_url == DEFAULT_BASE_URL
    made.close()


def test_server_side_allows_operator_base_url_only(server: FakeVoyage) -> None:
    config = {"implementation": "voyageai", "model": "voyage-3.5-lite", "dimensions": 1024}
    made = make_embedder(config, env_for(server), server_side=True)
    assert made.embed(["q"]).shape == (1, 1024)
    with pytest.raises(EndpointNotAllowed):
        # an unparsable VOYAGE_BASE_URL allows nothing
        make_embedder(config, {"VOYAGE_BASE_URL": "ftp://x", "VOYAGE_API_KEY": KEY},
                      server_side=True)


@pytest.mark.parametrize("bad, message", [
    ({"output_dtype": "binary"}, "output_dtype must be one of"),
    ({"input_type": "passage"}, "input_type must be one of"),
    ({"output_dimension": 512}, "differs from dimensions 1024"),
])
def test_bad_config(server: FakeVoyage, bad: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        embedder(server, **bad)


def test_config_base_url_is_the_authors(server: FakeVoyage) -> None:
    config = {"base_url": server.url}
    # The key goes to a config's base_url only where PGVECTORIZER_KEY_ENDPOINTS lists it ...
    with pytest.raises(KeyEndpointRefused, match="PGVECTORIZER_KEY_ENDPOINTS"):
        embedder(server, env={"VOYAGE_API_KEY": KEY}, **config)
    listed = {"VOYAGE_API_KEY": KEY,
              "PGVECTORIZER_KEY_ENDPOINTS": "VOYAGE_API_KEY=http://127.0.0.1:*"}
    assert embedder(server, env=listed, **config).embed(["x"]).shape == (1, 1024)
    # ... and server-side, it is not allowed as VOYAGE_BASE_URL would be.
    full = {"implementation": "voyageai", "model": "voyage-3.5", "dimensions": 1024, **config}
    with pytest.raises(EndpointNotAllowed):
        make_embedder(full, {"VOYAGE_API_KEY": KEY, "VOYAGE_BASE_URL": server.url},
                      server_side=True)
