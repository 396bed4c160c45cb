"""ai.embedding_litellm's providers against the fakes in tests/helpers/fake_litellm.py; no
database. The shared behaviour runs once per provider (CASES); each provider's own rules
follow."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from pgvectorizer.embedders import IMPLEMENTATIONS, make_embedder
from pgvectorizer.embedders.litellm import LiteLLMEmbedder
from pgvectorizer.embedders.litellm.azure import is_azure_host
from pgvectorizer.embedders.litellm.huggingface import model_url
from pgvectorizer.errors import (
    ApiKeyMissing,
    ConfigError,
    EmbeddingError,
    EndpointNotAllowed,
    KeyEndpointRefused,
    ProviderError,
)

from tests.helpers import fake_litellm
from tests.helpers.fake_litellm import (
    AWS_KEY_ID,
    AWS_SECRET,
    AZURE_KEY,
    AZURE_VERSION,
    COHERE_KEY,
    HF_KEY,
    MISTRAL_KEY,
    TOKEN_LEVEL_MODEL,
    FakeLiteLLM,
    service_account,
    token_vectors,
    vector,
)

HF_MODEL = "BAAI/bge-small-en-v1.5"


@pytest.fixture
def srv() -> Iterator[FakeLiteLLM]:
    with fake_litellm.running() as server:
        yield server


def config(model: str, dims: int, api_key_name: str | None = None, **options: Any) -> dict[str, Any]:
    """What ai.embedding_litellm builds (nulls stripped)."""
    out: dict[str, Any] = {"implementation": "litellm", "config_type": "embedding",
                           "model": model, "dimensions": dims}
    if api_key_name is not None:
        out["api_key_name"] = api_key_name
    if options:
        out["extra_options"] = options
    return out


def vertex_env(srv: FakeLiteLLM, tmp: Path) -> dict[str, str]:
    path = tmp / "sa.json"
    path.write_text(json.dumps(service_account(f"{srv.url}/token")))
    return {"GOOGLE_APPLICATION_CREDENTIALS": str(path), "VERTEXAI_API_BASE": srv.url}


@dataclass
class Case:
    """One provider's config, environment and request limit, for the shared tests."""

    name: str
    route: str  # the fake's name for its requests
    model: str
    dims: int
    env: Callable[[FakeLiteLLM, Path], dict[str, str]]
    key_var: str  # the variable a refused key is named by
    wrong_key: dict[str, str]  # env entries with a key the fake refuses
    limit: int  # texts per request
    options: dict[str, Any] = field(default_factory=dict)
    api_key_name: str | None = None
    texts_of: Callable[[Any], list[str]] = lambda body: []

    def make(self, srv: FakeLiteLLM, tmp: Path, env: dict[str, str] | None = None,
             **options: Any) -> LiteLLMEmbedder:
        made = make_embedder(config(self.model, self.dims, self.api_key_name,
                                    **{**self.options, **options}),
                             {**self.env(srv, tmp), **(env or {})})
        assert isinstance(made, LiteLLMEmbedder)
        return made


CASES = [
    Case("cohere", "cohere", "cohere/embed-v4.0", 256,
         lambda s, t: {"COHERE_API_BASE": s.url, "COHERE_API_KEY": COHERE_KEY},
         "COHERE_API_KEY", {"COHERE_API_KEY": "co-wrong"}, 96,
         texts_of=lambda b: b["texts"]),
    Case("mistral", "mistral", "mistral/mistral-embed", 1024,
         lambda s, t: {"MISTRAL_API_BASE": f"{s.url}/mistral/v1", "MISTRAL_API_KEY": MISTRAL_KEY},
         "MISTRAL_API_KEY", {"MISTRAL_API_KEY": "mi-wrong"}, 512,
         texts_of=lambda b: b["input"]),
    Case("azure", "azure", "azure/my-embeddings", 8,
         lambda s, t: {"AZURE_API_BASE": s.url, "AZURE_API_KEY": AZURE_KEY},
         "AZURE_API_KEY", {"AZURE_API_KEY": "az-wrong"}, 2048,
         options={"api_version": AZURE_VERSION, "dimensions": 8},
         texts_of=lambda b: b["input"]),
    Case("vertex", "vertex", "vertex_ai/text-embedding-005", 768, vertex_env,
         "GOOGLE_APPLICATION_CREDENTIALS", {}, 250,
         options={"vertex_project": "test-project", "vertex_location": "europe-west4"},
         texts_of=lambda b: [i["content"] for i in b["instances"]]),
    Case("huggingface", "huggingface", f"huggingface/{HF_MODEL}", 384,
         lambda s, t: {"HUGGINGFACE_API_BASE": f"{s.url}/hf/{HF_MODEL}/pipeline/feature-extraction",
                       "HUGGINGFACE_API_KEY": HF_KEY},
         "HUGGINGFACE_API_KEY", {"HUGGINGFACE_API_KEY": "hf_wrong"}, 32,
         texts_of=lambda b: b["inputs"]),
    Case("bedrock", "bedrock", "bedrock/cohere.embed-english-v3", 1024,
         lambda s, t: {"AWS_ENDPOINT_URL_BEDROCK_RUNTIME": s.url, "AWS_ACCESS_KEY_ID": AWS_KEY_ID,
                       "AWS_SECRET_ACCESS_KEY": AWS_SECRET},
         "AWS_SECRET_ACCESS_KEY", {"AWS_ACCESS_KEY_ID": "AKIDWRONG"}, 96,
         options={"aws_region_name": "us-east-1"},
         texts_of=lambda b: b["texts"]),
]
ids = [c.name for c in CASES]


# --- what every provider does ------------------------------------------------------------

@pytest.mark.parametrize("case", CASES, ids=ids)
def test_vectors_are_correct_and_in_order(case: Case, srv: FakeLiteLLM, tmp_path: Path) -> None:
    texts = ["alpha", "beta", "ünïcödé ✓", "delta"]
    made = case.make(srv, tmp_path)
    out = made.embed(texts)
    assert out.shape == (4, case.dims) and out.dtype == np.float32
    for row, text in zip(out, texts, strict=True):
        np.testing.assert_allclose(row, vector(text, case.dims), rtol=1e-6, atol=1e-7)
    sent = srv.of(case.route)
    assert len(sent) == 1 and case.texts_of(sent[0].body) == texts
    made.close()


@pytest.mark.parametrize("case", CASES, ids=ids)
def test_batches_at_the_provider_limit(case: Case, srv: FakeLiteLLM, tmp_path: Path) -> None:
    texts = [f"t{i}" for i in range(2 * case.limit + 1)]
    out = case.make(srv, tmp_path).embed(texts)
    assert [len(case.texts_of(r.body)) for r in srv.of(case.route)] == [case.limit, case.limit, 1]
    np.testing.assert_allclose(out[-1], vector(texts[-1], case.dims), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(out[case.limit], vector(texts[case.limit], case.dims),
                               rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("case", CASES, ids=ids)
def test_429_is_retried_after_retry_after(case: Case, srv: FakeLiteLLM, tmp_path: Path) -> None:
    made = case.make(srv, tmp_path)
    started = time.monotonic()
    out = made.embed(["RATE429", "x"])
    # The fake's Retry-After is 0.05 s; without it the first wait would be a whole second.
    assert time.monotonic() - started < 0.9
    assert len(srv.of(case.route)) == 2
    np.testing.assert_allclose(out[1], vector("x", case.dims), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("case", CASES, ids=ids)
def test_429_gives_up_transient(case: Case, srv: FakeLiteLLM, tmp_path: Path) -> None:
    srv.rate_limits = 10
    with pytest.raises(EmbeddingError) as info:
        case.make(srv, tmp_path).embed(["RATE429"])
    assert info.value.transient and info.value.status == 429
    assert len(srv.of(case.route)) == 3


@pytest.mark.parametrize("case", [c for c in CASES if c.name != "vertex"], ids=lambda c: c.name)
def test_refused_key_is_config_error_naming_its_variable(case: Case, srv: FakeLiteLLM,
                                                         tmp_path: Path) -> None:
    made = case.make(srv, tmp_path, env=case.wrong_key)
    with pytest.raises(ConfigError, match=case.key_var) as info:
        made.embed(["x"])
    assert not isinstance(info.value, ProviderError)


@pytest.mark.parametrize("case", CASES, ids=ids)
def test_400_is_not_transient(case: Case, srv: FakeLiteLLM, tmp_path: Path) -> None:
    with pytest.raises(EmbeddingError) as info:
        case.make(srv, tmp_path).embed(["ok", "FAIL400"])
    assert not info.value.transient and info.value.status == 400
    assert info.value.cause == "refused"


@pytest.mark.parametrize("case", CASES, ids=ids)
def test_5xx_is_transient(case: Case, srv: FakeLiteLLM, tmp_path: Path) -> None:
    with pytest.raises(EmbeddingError) as info:
        case.make(srv, tmp_path).embed(["FAIL500"])
    assert info.value.transient and info.value.status == 500


@pytest.mark.parametrize("case", CASES, ids=ids)
def test_wrong_dimensions_is_provider_error(case: Case, srv: FakeLiteLLM, tmp_path: Path) -> None:
    with pytest.raises(ProviderError, match=f"returned {case.dims + 1}-dimensional vectors"):
        case.make(srv, tmp_path).embed(["WRONGDIMS"])


@pytest.mark.parametrize("case", CASES, ids=ids)
def test_unknown_option_is_refused_listing_the_known(case: Case, srv: FakeLiteLLM,
                                                     tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"unknown extra_options key 'colour'.*timeout"):
        case.make(srv, tmp_path, colour="blue")
    assert srv.requests == []


@pytest.mark.parametrize("case", CASES, ids=ids)
def test_timeout_option_is_checked(case: Case, srv: FakeLiteLLM, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="timeout must be a positive number"):
        case.make(srv, tmp_path, timeout="soon")
    assert case.make(srv, tmp_path, timeout=5).embed(["x"]).shape == (1, case.dims)


# --- keys go only where they belong ------------------------------------------------------

@pytest.mark.parametrize("name, model, dims, env, option, extra", [
    ("cohere", "cohere/embed-v4.0", 256, {"COHERE_API_KEY": COHERE_KEY}, "api_base", {}),
    ("mistral", "mistral/mistral-embed", 1024, {"MISTRAL_API_KEY": MISTRAL_KEY}, "api_base", {}),
    ("huggingface", f"huggingface/{HF_MODEL}", 384, {"HUGGINGFACE_API_KEY": HF_KEY}, "api_base",
     {}),
    ("azure", "azure/dep", 8, {"AZURE_API_KEY": AZURE_KEY}, "api_base",
     {"api_version": AZURE_VERSION}),
    ("bedrock", "bedrock/cohere.embed-english-v3", 1024,
     {"AWS_ACCESS_KEY_ID": AWS_KEY_ID, "AWS_SECRET_ACCESS_KEY": AWS_SECRET},
     "aws_bedrock_runtime_endpoint", {"aws_region_name": "us-east-1"}),
])
def test_key_never_goes_to_a_configs_unlisted_api_base(srv: FakeLiteLLM, name: str, model: str,
                                                       dims: int, env: dict[str, str],
                                                       option: str, extra: dict[str, Any]) -> None:
    url = {"huggingface": f"{srv.url}/hf/{HF_MODEL}/pipeline/feature-extraction",
           "mistral": f"{srv.url}/mistral/v1"}.get(name, srv.url)
    cfg = config(model, dims, **{option: url, **extra})
    with pytest.raises(KeyEndpointRefused, match="PGVECTORIZER_KEY_ENDPOINTS"):
        make_embedder(cfg, env)
    assert srv.requests == []
    # The operator can allow it.
    key_var = "AWS_SECRET_ACCESS_KEY" if name == "bedrock" else next(iter(env))
    listed = {**env, "PGVECTORIZER_KEY_ENDPOINTS": f"{key_var}=http://127.0.0.1:*"}
    made = make_embedder(cfg, listed)
    if name == "azure":
        cfg["extra_options"]["dimensions"] = dims
        made = make_embedder(cfg, listed)
    assert made.embed(["x"]).shape == (1, dims)
    assert len(srv.requests) == 1


def test_a_key_named_by_the_config_is_read_by_the_rules(srv: FakeLiteLLM) -> None:
    env = {"COHERE_API_BASE": srv.url, "COHERE_API_KEY": COHERE_KEY, "PGPASSWORD": "pw",
           "OPENAI_API_KEY": "sk-x"}
    with pytest.raises(ConfigError, match="only environment variables whose names end"):
        make_embedder(config("cohere/embed-v4.0", 256, "PGPASSWORD"), env)
    with pytest.raises(KeyEndpointRefused, match="OPENAI_API_KEY may not be sent"):
        make_embedder(config("cohere/embed-v4.0", 256, "OPENAI_API_KEY"), env)
    assert srv.requests == []


@pytest.mark.parametrize("model, env, variable", [
    ("cohere/embed-v4.0", {}, "COHERE_API_KEY"),
    ("mistral/mistral-embed", {}, "MISTRAL_API_KEY"),
    ("azure/dep", {"AZURE_API_BASE": "https://r.openai.azure.com"}, "AZURE_API_KEY"),
    ("huggingface/x/y", {}, "HUGGINGFACE_API_KEY"),
    ("vertex_ai/text-embedding-005", {}, "GOOGLE_APPLICATION_CREDENTIALS"),
])
def test_missing_key_names_the_variable(model: str, env: dict[str, str], variable: str) -> None:
    with pytest.raises(ApiKeyMissing, match=f"{variable} is not set"):
        make_embedder(config(model, 8), env)


# --- the dispatcher ----------------------------------------------------------------------

def test_litellm_is_an_implementation() -> None:
    assert "litellm" in IMPLEMENTATIONS


@pytest.mark.parametrize("model, message", [
    ("groq/some-embed", (r"provider 'groq'.*cohere/, mistral/, azure/, bedrock/, vertex_ai/, "
                         r"huggingface/.*ai.embedding_openai with its base_url")),
    ("openai/text-embedding-3-small", "openai has its own: use ai.embedding_openai"),
    ("voyage/voyage-3.5", "use ai.embedding_voyageai"),
    ("no-slash", "model must be provider/model"),
    ("cohere/", "names no model"),
])
def test_unknown_provider_or_model(model: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        make_embedder(config(model, 8), {})


def test_create_vectorizer_knows_the_same_providers() -> None:
    # create_vectorizer refuses other prefixes up front; its list must be the worker's.
    from pgvectorizer.embedders.litellm import PROVIDERS
    source = (Path(__file__).parents[2] / "sql" / "040_create_vectorizer.sql").read_text()
    listed = source.split("split_part(embedding->>'model', '/', 1) NOT IN (", 1)[1].split(")", 1)[0]
    assert [p.strip().strip("'") for p in listed.split(",")] == list(PROVIDERS)


@pytest.mark.parametrize("option", ["api_key", "aws_session_token", "vertex_credentials"])
def test_secrets_in_extra_options_are_refused(option: str) -> None:
    with pytest.raises(ConfigError, match=f"may not hold '{option}', a secret"):
        make_embedder(config("cohere/embed-v4.0", 256, **{option: "s3cr3t"}), {})


def test_empty_batch_sends_nothing(srv: FakeLiteLLM, tmp_path: Path) -> None:
    assert CASES[0].make(srv, tmp_path).embed([]).shape == (0, 256)
    assert srv.requests == []


# --- server side (in-database calls) -----------------------------------------------------

@pytest.mark.parametrize("cfg, env", [
    (config("cohere/embed-v4.0", 256), {"COHERE_API_KEY": "k"}),
    (config("mistral/mistral-embed", 1024), {"MISTRAL_API_KEY": "k"}),
    (config("azure/dep", 8, api_base="https://res.openai.azure.com"), {"AZURE_API_KEY": "k"}),
    (config(f"huggingface/{HF_MODEL}", 384), {"HUGGINGFACE_API_KEY": "k"}),
    (config("bedrock/amazon.titan-embed-text-v2:0", 1024, aws_region_name="eu-west-1"),
     {"AWS_ACCESS_KEY_ID": "a", "AWS_SECRET_ACCESS_KEY": "b"}),
])
def test_server_side_allows_providers_own_endpoints(cfg: dict[str, Any], env: dict[str, str]) -> None:
    make_embedder(cfg, env, server_side=True).close()


@pytest.mark.parametrize("cfg, env", [
    (config("cohere/embed-v4.0", 256, api_base="http://127.0.0.1:9"), {"COHERE_API_KEY": "k"}),
    (config("azure/dep", 8, api_base="http://127.0.0.1:9"), {"AZURE_API_KEY": "k"}),
    (config("vertex_ai/text-embedding-005", 768, api_base="http://127.0.0.1:9",
            vertex_project="p"), {}),
    (config("bedrock/amazon.titan-embed-text-v2:0", 1024, aws_region_name="eu-west-1",
            aws_bedrock_runtime_endpoint="http://127.0.0.1:9"), {}),
])
def test_server_side_refuses_a_configs_endpoint(cfg: dict[str, Any], env: dict[str, str]) -> None:
    with pytest.raises(EndpointNotAllowed, match="127.0.0.1:9"):
        make_embedder(cfg, env, server_side=True)
    allowed = {**env, "PGVECTORIZER_ALLOWED_ENDPOINTS": "http://127.0.0.1:9"}
    from pgvectorizer.embedders.litellm import check_server_endpoints
    check_server_endpoints(cfg, allowed)  # the operator may allow it


def test_server_side_allows_the_operators_own_base(srv: FakeLiteLLM) -> None:
    env = {"COHERE_API_BASE": srv.url, "COHERE_API_KEY": COHERE_KEY}
    made = make_embedder(config("cohere/embed-v4.0", 256), env, server_side=True)
    assert made.embed(["q"]).shape == (1, 256)


# --- Cohere ------------------------------------------------------------------------------

def test_cohere_input_type_and_output_dimension(srv: FakeLiteLLM, tmp_path: Path) -> None:
    case = CASES[0]
    case.make(srv, tmp_path).embed(["a"])
    case.make(srv, tmp_path, input_type="search_query").embed(["b"])
    first, second = (r.body for r in srv.of("cohere"))
    assert first["input_type"] == "search_document"  # LiteLLM's default, for documents
    assert second["input_type"] == "search_query"
    assert first["output_dimension"] == 256 and first["embedding_types"] == ["float"]
    assert first["model"] == "embed-v4.0"
    env = case.env(srv, tmp_path)
    v3 = make_embedder(config("cohere/embed-english-v3.0", 1024), env)
    v3.embed(["c"])
    assert "output_dimension" not in srv.of("cohere")[-1].body
    with pytest.raises(ConfigError, match="input_type must be one of"):
        case.make(srv, tmp_path, input_type="document")
    with pytest.raises(ConfigError, match="differs from dimensions 256"):
        case.make(srv, tmp_path, dimensions=512)


def test_cohere_default_endpoint() -> None:
    made = make_embedder(config("cohere/embed-v4.0", 256), {"COHERE_API_KEY": "k"})
    assert made.provider.url == "https://api.cohere.com/v2/embed"


# --- Mistral -----------------------------------------------------------------------------

def test_mistral_batches_within_its_token_budget(srv: FakeLiteLLM, tmp_path: Path) -> None:
    texts = [c * 5000 for c in "abcdefg"]  # three fit 16384 tokens, a fourth does not
    out = CASES[1].make(srv, tmp_path).embed(texts)
    assert [len(r.body["input"]) for r in srv.of("mistral")] == [3, 3, 1]
    np.testing.assert_allclose(out[6], vector("g" * 5000, 1024), rtol=1e-6, atol=1e-7)


def test_mistral_output_dimension(srv: FakeLiteLLM, tmp_path: Path) -> None:
    env = CASES[1].env(srv, tmp_path)
    made = make_embedder(config("mistral/codestral-embed", 256, output_dimension=256), env)
    np.testing.assert_allclose(made.embed(["x"])[0], vector("x", 256), rtol=1e-6, atol=1e-7)
    assert srv.of("mistral")[0].body["output_dimension"] == 256
    assert srv.of("mistral")[0].body["encoding_format"] == "float"
    with pytest.raises(ConfigError, match="encoding_format must be one of float"):
        make_embedder(config("mistral/mistral-embed", 1024, encoding_format="base64"), env)


# --- Azure -------------------------------------------------------------------------------

def test_azure_url_header_and_version(srv: FakeLiteLLM, tmp_path: Path) -> None:
    CASES[2].make(srv, tmp_path).embed(["x"])
    seen = srv.of("azure")[0]
    assert seen.path == "/openai/deployments/my-embeddings/embeddings"
    assert seen.query == {"api-version": [AZURE_VERSION]}
    assert seen.headers.get("api-key") == AZURE_KEY and "Authorization" not in seen.headers
    assert seen.body["encoding_format"] == "base64" and seen.body["dimensions"] == 8
    assert "model" not in seen.body


def test_azure_sends_dimensions_only_when_asked_and_reads_version_from_env(
        srv: FakeLiteLLM) -> None:
    env = {"AZURE_API_BASE": srv.url, "AZURE_API_KEY": AZURE_KEY,
           "AZURE_API_VERSION": AZURE_VERSION}
    out = make_embedder(config("azure/dep", 1536, encoding_format="float"), env).embed(["x"])
    np.testing.assert_allclose(out[0], vector("x", 1536), rtol=1e-6, atol=1e-7)
    assert "dimensions" not in srv.of("azure")[0].body
    with pytest.raises(EmbeddingError, match="404.*Resource not found"):
        make_embedder(config("azure/dep", 1536), {**env, "AZURE_API_VERSION": "1999-01-01"}
                      ).embed(["x"])


def test_azure_needs_a_resource_url() -> None:
    with pytest.raises(ConfigError, match="no Azure resource URL"):
        make_embedder(config("azure/dep", 8), {"AZURE_API_KEY": "k"})


@pytest.mark.parametrize("url, trusted", [
    ("https://res.openai.azure.com", True),
    ("https://res.openai.azure.com/", True),
    ("https://res.cognitiveservices.azure.com", True),
    ("https://res.services.ai.azure.com", True),
    ("http://res.openai.azure.com", False),  # not over https
    ("https://res.openai.azure.com:8443", False),
    ("https://openai.azure.com.evil.example", False),
    ("https://evil.example/res.openai.azure.com", False),
    ("https://user@res.openai.azure.com", False),
    ("https://.openai.azure.com", False),
])
def test_azure_hosts(url: str, trusted: bool) -> None:
    assert is_azure_host(url) is trusted


def test_azure_key_goes_to_an_azure_api_base_in_the_config() -> None:
    # pgai's examples give api_base in extra_options: Microsoft's hosts need no listing ...
    made = make_embedder(config("azure/dep", 8, api_base="https://res.openai.azure.com"),
                         {"AZURE_API_KEY": "k"})
    assert made.provider.url == ("https://res.openai.azure.com/openai/deployments/dep/"
                                 "embeddings?api-version=2024-10-21")
    # ... but another variable's key does not go there unlisted.
    with pytest.raises(KeyEndpointRefused):
        make_embedder(config("azure/dep", 8, "VOYAGE_API_KEY", api_base="https://res.openai.azure.com"),
                      {"VOYAGE_API_KEY": "k"})


def test_azure_openai_api_key_is_read_too(srv: FakeLiteLLM) -> None:
    env = {"AZURE_API_BASE": srv.url, "AZURE_OPENAI_API_KEY": AZURE_KEY}
    made = make_embedder(config("azure/dep", 8, api_version=AZURE_VERSION, dimensions=8), env)
    assert made.embed(["x"]).shape == (1, 8)


# --- Vertex AI ---------------------------------------------------------------------------

def test_vertex_signs_a_jwt_once_and_reuses_the_token(srv: FakeLiteLLM, tmp_path: Path) -> None:
    made = CASES[3].make(srv, tmp_path)
    made.embed(["a"])
    made.embed(["b"])
    assert srv.token_requests == 1
    seen = srv.of("vertex")
    assert seen[0].path == ("/v1/projects/test-project/locations/europe-west4/publishers/google/"
                            "models/text-embedding-005:predict")
    assert seen[0].headers["Authorization"] in {f"Bearer {t}" for t in srv.tokens}
    assert seen[0].body["parameters"] == {"outputDimensionality": 768}


def test_vertex_credentials_inline_and_project_from_them(srv: FakeLiteLLM) -> None:
    sa = json.dumps(service_account(f"{srv.url}/token", project="sa-project"))
    env = {"VERTEX_SA_API_KEY": sa, "VERTEXAI_API_BASE": srv.url,
           "PGVECTORIZER_KEY_ENDPOINTS": "VERTEX_SA_API_KEY=http://127.0.0.1:*"}
    made = make_embedder(config("vertex_ai/text-embedding-005", 768, "VERTEX_SA_API_KEY",
                                task_type="RETRIEVAL_QUERY"), env)
    np.testing.assert_allclose(made.embed(["q"])[0], vector("q", 768), rtol=1e-6, atol=1e-7)
    seen = srv.of("vertex")[0]
    assert "/projects/sa-project/locations/us-central1/" in seen.path
    assert seen.body["instances"] == [{"content": "q", "task_type": "RETRIEVAL_QUERY"}]


def test_vertex_reads_pgais_variable_names(srv: FakeLiteLLM, tmp_path: Path) -> None:
    # pgai's docs: VERTEX_PROJECT and, as api_key_name, VERTEX_CREDENTIALS (a file's path).
    path = tmp_path / "sa.json"
    path.write_text(json.dumps(service_account(f"{srv.url}/token", project="from-sa")))
    env = {"VERTEX_CREDENTIALS": str(path), "VERTEX_PROJECT": "docs-project",
           "VERTEX_LOCATION": "europe-west1", "VERTEXAI_API_BASE": srv.url}
    made = make_embedder(config("vertex_ai/text-embedding-005", 768, "VERTEX_CREDENTIALS"), env)
    made.embed(["q"])
    assert "/projects/docs-project/locations/europe-west1/" in srv.of("vertex")[0].path


def test_vertex_token_goes_only_to_googles_endpoint(srv: FakeLiteLLM, tmp_path: Path) -> None:
    env = vertex_env(srv, tmp_path)
    del env["VERTEXAI_API_BASE"]
    with pytest.raises(KeyEndpointRefused, match="GOOGLE_APPLICATION_CREDENTIALS"):
        make_embedder(config("vertex_ai/text-embedding-005", 768, vertex_project="p",
                             api_base=srv.url), env)
    made = make_embedder(config("vertex_ai/text-embedding-005", 768, vertex_project="p",
                                vertex_location="asia-northeast1"), env)
    assert made.provider.url.startswith(
        "https://asia-northeast1-aiplatform.googleapis.com/v1/projects/p/locations/asia-northeast1/")
    assert srv.requests == [] and srv.token_requests == 0


def test_vertex_credentials_signed_by_another_key_are_config_error(srv: FakeLiteLLM,
                                                                   tmp_path: Path) -> None:
    sa = service_account(f"{srv.url}/token")
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    sa["private_key"] = other.private_bytes(serialization.Encoding.PEM,
                                            serialization.PrivateFormat.PKCS8,
                                            serialization.NoEncryption()).decode()
    path = tmp_path / "other.json"
    path.write_text(json.dumps(sa))
    env = {**vertex_env(srv, tmp_path), "GOOGLE_APPLICATION_CREDENTIALS": str(path)}
    with pytest.raises(ConfigError, match=r"refused the credentials in GOOGLE_APPLICATION_CREDENTIALS"
                                          r".*invalid_grant.*Invalid JWT Signature"):
        make_embedder(config("vertex_ai/text-embedding-005", 768, vertex_project="p"), env
                      ).embed(["x"])
    assert srv.of("vertex") == []


def test_vertex_refused_token_is_config_error(srv: FakeLiteLLM, tmp_path: Path) -> None:
    made = CASES[3].make(srv, tmp_path)
    made.embed(["a"])
    srv.tokens.clear()  # Vertex no longer takes the cached token
    with pytest.raises(ConfigError, match="refused the access token of the credentials in "
                                          "GOOGLE_APPLICATION_CREDENTIALS"):
        made.embed(["b"])
    assert made.embed(["c"]).shape == (1, 768)  # a fresh token next time
    assert srv.token_requests == 2


def test_vertex_gemini_takes_one_text_per_request(srv: FakeLiteLLM, tmp_path: Path) -> None:
    env = vertex_env(srv, tmp_path)
    made = make_embedder(config("vertex_ai/gemini-embedding-001", 768, vertex_project="p"), env)
    out = made.embed(["a", "b", "c"])
    assert [len(r.body["instances"]) for r in srv.of("vertex")] == [1, 1, 1]
    np.testing.assert_allclose(out[2], vector("c", 768), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("options, message", [
    ({"vertex_project": "p", "vertex_location": "evil.example/x?"}, "is not a Vertex AI location"),
    ({"vertex_project": "p/../q"}, "is not a project id"),
    ({"vertex_project": "p", "task_type": "SEARCH"}, "task_type must be one of"),
    ({}, "no Google Cloud project"),
])
def test_vertex_bad_config(srv: FakeLiteLLM, tmp_path: Path, options: dict[str, Any],
                           message: str) -> None:
    sa = service_account(f"{srv.url}/token")
    del sa["project_id"]
    path = tmp_path / "noproject.json"
    path.write_text(json.dumps(sa))
    env = {**vertex_env(srv, tmp_path), "GOOGLE_APPLICATION_CREDENTIALS": str(path)}
    with pytest.raises(ConfigError, match=message):
        make_embedder(config("vertex_ai/text-embedding-005", 768, **options), env)


def test_vertex_unreadable_credentials_are_not_quoted(tmp_path: Path) -> None:
    env = {"GOOGLE_APPLICATION_CREDENTIALS": "{not json but a secret-ish value"}
    with pytest.raises(ConfigError, match="not valid JSON") as info:
        make_embedder(config("vertex_ai/text-embedding-005", 768, vertex_project="p"), env)
    assert "secret-ish" not in str(info.value)
    env = {"GOOGLE_APPLICATION_CREDENTIALS": str(tmp_path / "missing.json")}
    with pytest.raises(ConfigError, match="neither Google credentials JSON nor the path"):
        make_embedder(config("vertex_ai/text-embedding-005", 768, vertex_project="p"), env)


# --- Hugging Face ------------------------------------------------------------------------

def test_huggingface_mean_pools_token_vectors(srv: FakeLiteLLM) -> None:
    env = {"HUGGINGFACE_API_BASE": f"{srv.url}/hf/{TOKEN_LEVEL_MODEL}/pipeline/feature-extraction",
           "HUGGINGFACE_API_KEY": HF_KEY}
    out = make_embedder(config(f"huggingface/{TOKEN_LEVEL_MODEL}", 384), env).embed(
        ["two words", "one"])
    np.testing.assert_allclose(out[0], np.mean(token_vectors("two words", 384), axis=0),
                               rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(out[1], vector("one", 384), rtol=1e-6, atol=1e-7)


def test_huggingface_loading_is_transient_and_wait_for_model(srv: FakeLiteLLM,
                                                             tmp_path: Path) -> None:
    with pytest.raises(EmbeddingError, match="503.*currently loading") as info:
        CASES[4].make(srv, tmp_path).embed(["LOADING"])
    assert info.value.transient
    CASES[4].make(srv, tmp_path, wait_for_model=True, normalize=True).embed(["x"])
    seen = srv.of("huggingface")[-1]
    assert seen.headers.get("X-Wait-For-Model") == "true" and seen.body["normalize"] is True


def test_huggingface_hf_token_and_default_url(srv: FakeLiteLLM) -> None:
    env = {"HUGGINGFACE_API_BASE": f"{srv.url}/hf/{HF_MODEL}/pipeline/feature-extraction",
           "HF_TOKEN": HF_KEY}
    assert make_embedder(config(f"huggingface/{HF_MODEL}", 384), env).embed(["x"]).shape == (1, 384)
    assert srv.of("huggingface")[0].headers["Authorization"] == f"Bearer {HF_KEY}"
    made = make_embedder(config(f"huggingface/{HF_MODEL}", 384), {"HF_TOKEN": "hf_x"})
    assert made.provider.url == model_url(HF_MODEL) == (
        "https://router.huggingface.co/hf-inference/models/BAAI/bge-small-en-v1.5/pipeline/"
        "feature-extraction")


# --- Bedrock -----------------------------------------------------------------------------

def bedrock_env(srv: FakeLiteLLM) -> dict[str, str]:
    return {"AWS_ENDPOINT_URL_BEDROCK_RUNTIME": srv.url, "AWS_ACCESS_KEY_ID": AWS_KEY_ID,
            "AWS_SECRET_ACCESS_KEY": AWS_SECRET}


def test_bedrock_titan_one_text_per_request_with_dimensions(srv: FakeLiteLLM) -> None:
    made = make_embedder(config("bedrock/amazon.titan-embed-text-v2:0", 512,
                                aws_region_name="eu-west-1", normalize=True), bedrock_env(srv))
    texts = [f"text {i}" for i in range(20)]
    out = made.embed(texts)
    for row, text in zip(out, texts, strict=True):
        np.testing.assert_allclose(row, vector(text, 512), rtol=1e-6, atol=1e-7)
    seen = srv.of("bedrock")
    assert len(seen) == 20 and {r.path for r in seen} == {"/model/amazon.titan-embed-text-v2%3A0/invoke"}
    assert all(r.body["dimensions"] == 512 and r.body["normalize"] is True for r in seen)
    assert sorted(r.body["inputText"] for r in seen) == sorted(texts)
    # Signed with SigV4 for the configured region.
    assert "/eu-west-1/bedrock/aws4_request" in seen[0].headers["Authorization"]
    made.close()


def test_bedrock_titan_v1_sends_no_dimensions(srv: FakeLiteLLM) -> None:
    made = make_embedder(config("bedrock/amazon.titan-embed-text-v1", 1536,
                                aws_region_name="us-east-1"), bedrock_env(srv))
    made.embed(["x"])
    assert srv.of("bedrock")[0].body == {"inputText": "x"}


def test_bedrock_secret_from_api_key_name(srv: FakeLiteLLM) -> None:
    env = {"AWS_ENDPOINT_URL": srv.url, "MY_AWS_API_KEY": AWS_SECRET}
    cfg = config("bedrock/cohere.embed-english-v3", 1024, "MY_AWS_API_KEY",
                 aws_region_name="us-east-1", aws_access_key_id=AWS_KEY_ID,
                 input_type="search_query")
    # A non-default variable signs requests only where PGVECTORIZER_KEY_ENDPOINTS lists it.
    with pytest.raises(KeyEndpointRefused, match="MY_AWS_API_KEY"):
        make_embedder(cfg, env)
    listed = {**env, "PGVECTORIZER_KEY_ENDPOINTS": "MY_AWS_API_KEY=http://127.0.0.1:*"}
    assert make_embedder(cfg, listed).embed(["x"]).shape == (1, 1024)
    assert srv.of("bedrock")[0].body["input_type"] == "search_query"
    with pytest.raises(ConfigError, match="needs an access key id"):
        make_embedder(config("bedrock/cohere.embed-english-v3", 1024, "MY_AWS_API_KEY",
                             aws_region_name="us-east-1"), listed)
    with pytest.raises(ApiKeyMissing, match="MY_AWS_API_KEY is not set"):
        make_embedder(cfg, {"AWS_ENDPOINT_URL": srv.url,
                            "PGVECTORIZER_KEY_ENDPOINTS": "MY_AWS_API_KEY=http://127.0.0.1:*"})


@pytest.mark.parametrize("model, options, message", [
    ("bedrock/amazon.titan-embed-image-v1", {}, "only Amazon Titan text embeddings"),
    ("bedrock/amazon.titan-embed-text-v2:0", {"input_type": "search_query"},
     "options of Cohere models"),
    ("bedrock/cohere.embed-english-v3", {"normalize": True}, "titan-embed-text-v2 only"),
    ("bedrock/amazon.titan-embed-text-v1", {"aws_role_name": "r"}, "unknown extra_options key"),
])
def test_bedrock_bad_config(srv: FakeLiteLLM, model: str, options: dict[str, Any],
                            message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        make_embedder(config(model, 1024, aws_region_name="us-east-1", **options), bedrock_env(srv))


def test_bedrock_titan_v2_sizes(srv: FakeLiteLLM) -> None:
    with pytest.raises(ConfigError, match="Titan v2 makes vectors of 256, 512, 1024"):
        make_embedder(config("bedrock/amazon.titan-embed-text-v2:0", 768,
                             aws_region_name="us-east-1"), bedrock_env(srv))


def test_bedrock_default_endpoint_is_the_regions() -> None:
    made = make_embedder(config("bedrock/cohere.embed-english-v3", 1024,
                                aws_region_name="ap-south-1"),
                         {"AWS_ACCESS_KEY_ID": "a", "AWS_SECRET_ACCESS_KEY": "b"})
    assert made.provider.endpoint == "https://bedrock-runtime.ap-south-1.amazonaws.com"
    made.close()
