"""vertex_ai/<model>: Vertex AI's text embeddings, POST .../publishers/google/models/{model}:predict.

The URL is https://{location}-aiplatform.googleapis.com/v1/projects/{project}/locations/
{location}/publishers/google/models/{model}:predict; project and location come from
extra_options (vertex_project, vertex_location) or VERTEXAI_PROJECT / VERTEXAI_LOCATION
(location defaults to us-central1, project to the credentials' own). VERTEXAI_API_BASE (the
operator's) or extra_options.api_base replaces the https://...googleapis.com part.

Credentials: api_key_name names a variable holding a Google credentials JSON (a service
account's key, or an authorized_user file from `gcloud auth application-default login`) or
the path of such a file; without it, GOOGLE_APPLICATION_CREDENTIALS (or VERTEXAI_CREDENTIALS).
The access token made from them goes to Google's endpoint for the location, to
VERTEXAI_API_BASE, or where PGVECTORIZER_KEY_ENDPOINTS lists the variable; the JWT assertion
goes to the JSON's own token_uri (the credentials are the operator's, and so is their URI).

Why `cryptography` and not google-auth: a service account's token takes one RS256-signed JWT
and one form POST, about forty lines here; `cryptography` is already installed wherever the
worker runs (boto3's stack and most Python installs carry it), while google-auth would be a
new dependency, in the database server's Python too. What that leaves out: the metadata
server of a Google Cloud VM and workload identity federation (external_account files); for
those, run a LiteLLM proxy and use ai.embedding_openai with its base_url.
"""

from __future__ import annotations

import base64
import json
import os
import re
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import quote

import httpx
import numpy as np

from pgvectorizer.embedders.http import (
    BatchedHTTPEmbedder,
    make_client,
    post_json,
    server_message,
)
from pgvectorizer.embedders.litellm.common import (
    Spec,
    client_env,
    operator_url,
    opt_bool,
    opt_dimensions,
    opt_str,
    require_key,
    vectors_of,
)
from pgvectorizer.errors import (
    UNREACHABLE,
    ConfigError,
    EmbeddingError,
    MissingDependency,
    ProviderError,
)

PROJECT_ENV = "VERTEXAI_PROJECT"
LOCATION_ENV = "VERTEXAI_LOCATION"
# pgai's docs name VERTEX_PROJECT (and so VERTEX_LOCATION): read after LiteLLM's names.
OTHER_PROJECT_ENV = "VERTEX_PROJECT"
OTHER_LOCATION_ENV = "VERTEX_LOCATION"
BASE_URL_ENV = "VERTEXAI_API_BASE"
DEFAULT_LOCATION = "us-central1"
DEFAULT_CREDENTIALS_NAME = "GOOGLE_APPLICATION_CREDENTIALS"
OWN_CREDENTIALS_NAMES = ("VERTEXAI_CREDENTIALS", "VERTEX_CREDENTIALS")
DEFAULT_TOKEN_URI = "https://oauth2.googleapis.com/token"
SCOPE = "https://www.googleapis.com/auth/cloud-platform"
OPTIONS = frozenset({"vertex_project", "vertex_location", "vertex_ai_project",
                     "vertex_ai_location", "api_base", "input_type", "task_type",
                     "auto_truncate", "dimensions"})
TASK_TYPES = ("RETRIEVAL_DOCUMENT", "RETRIEVAL_QUERY", "SEMANTIC_SIMILARITY", "CLASSIFICATION",
              "CLUSTERING", "QUESTION_ANSWERING", "FACT_VERIFICATION", "CODE_RETRIEVAL_QUERY")
MAX_INSTANCES = 250  # texts per request, Vertex AI's limit for text-embedding-* models
GEMINI_MAX_INSTANCES = 1  # gemini-embedding-001 takes one text per request
# Tokens per request, Vertex AI's limit summed over the texts; counted as UTF-8 bytes, which
# never undercount tokens.
MAX_REQUEST_TOKENS = 20_000
TOKEN_LIFETIME = 3600  # seconds a signed assertion asks for (Google's maximum)
TOKEN_MARGIN = 300.0  # seconds before an access token's expiry to get a new one

_LOCATION = re.compile(r"[a-z0-9]+(-[a-z0-9]+)*")
_PROJECT = re.compile(r"[A-Za-z0-9][A-Za-z0-9.:_-]*")


def location(spec: Spec, env: Mapping[str, str]) -> str:
    """The region (us-central1, europe-west4, global); ConfigError for anything else."""
    value = (opt_str(spec, "vertex_location") or opt_str(spec, "vertex_ai_location")
             or (env.get(LOCATION_ENV) or "").strip() or (env.get(OTHER_LOCATION_ENV) or "").strip()
             or DEFAULT_LOCATION)
    if not _LOCATION.fullmatch(value):
        raise ConfigError(f"embedding config ({spec.what}): {value!r} is not a Vertex AI "
                          f"location such as us-central1")
    return value


def google_base(loc: str) -> str:
    """Google's own Vertex AI endpoint for a location."""
    host = "aiplatform.googleapis.com" if loc == "global" else f"{loc}-aiplatform.googleapis.com"
    return f"https://{host}"


def _project(spec: Spec, env: Mapping[str, str], fallback: str | None) -> str:
    value = (opt_str(spec, "vertex_project") or opt_str(spec, "vertex_ai_project")
             or (env.get(PROJECT_ENV) or "").strip() or (env.get(OTHER_PROJECT_ENV) or "").strip()
             or fallback)
    if not value:
        raise ConfigError(f"embedding config ({spec.what}): no Google Cloud project; give "
                          f"extra_options.vertex_project or set {PROJECT_ENV}")
    if not _PROJECT.fullmatch(value):
        raise ConfigError(f"embedding config ({spec.what}): {value!r} is not a project id")
    return value


def base_url(spec: Spec, env: Mapping[str, str]) -> str:
    """extra_options.api_base, else VERTEXAI_API_BASE, else Google's for the location."""
    return (opt_str(spec, "api_base") or operator_url(env, BASE_URL_ENV)
            or google_base(location(spec, env))).rstrip("/")


def predict_url(spec: Spec, env: Mapping[str, str], project: str) -> str:
    """The model's :predict URL."""
    loc = location(spec, env)
    model = quote(spec.model, safe="@.-_")
    return (f"{base_url(spec, env)}/v1/projects/{project}/locations/{loc}/publishers/google/"
            f"models/{model}:predict")


def _operator_defaults(spec: Spec, env: Mapping[str, str]) -> list[str]:
    return [operator_url(env, BASE_URL_ENV) or google_base(location(spec, env))]


def server_targets(spec: Spec, env: Mapping[str, str]) -> list[tuple[str, list[str]]]:
    """The URL requests go to, with the endpoints the operator allows by default. (The
    credentials' token_uri is the operator's own and is not checked.)"""
    return [(f"{base_url(spec, env)}/v1/projects", _operator_defaults(spec, env))]


def credentials_info(value: str, name: str) -> dict[str, Any]:
    """The credentials JSON in a variable's value: the JSON itself or a file's path.
    Messages never quote the value (it may be any variable's secret)."""
    text = value.strip()
    if not text.startswith("{"):
        try:
            with open(os.path.expanduser(text), encoding="utf-8") as f:
                text = f.read()
        except OSError as exc:
            raise ConfigError(f"{name} holds neither Google credentials JSON nor the path of a "
                              f"readable file ({type(exc).__name__})") from None
    try:
        info = json.loads(text)
    except ValueError:
        raise ConfigError(f"the Google credentials in {name} are not valid JSON") from None
    if not isinstance(info, dict) or info.get("type") not in ("service_account",
                                                              "authorized_user"):
        raise ConfigError(f"the Google credentials in {name} are neither a service account's "
                          f"key nor authorized_user credentials")
    needed = (("client_email", "private_key") if info["type"] == "service_account"
              else ("client_id", "client_secret", "refresh_token"))
    missing = [k for k in needed if not isinstance(info.get(k), str) or not info.get(k)]
    if missing:
        raise ConfigError(f"the Google credentials in {name} lack {', '.join(missing)}")
    return info


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def signed_assertion(info: Mapping[str, Any], token_uri: str, now: float) -> str:
    """A service account's RS256-signed JWT asking token_uri for a cloud-platform token."""
    try:
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import padding, rsa
    except ImportError as exc:
        raise MissingDependency("vertex_ai embeddings with a service account need the "
                                "`cryptography` package (pip install cryptography)",
                                package="cryptography") from exc
    try:
        key = serialization.load_pem_private_key(info["private_key"].encode(), password=None)
    except (ValueError, TypeError):
        raise ConfigError("the service account's private_key cannot be read as a PEM RSA "
                          "key") from None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ConfigError("the service account's private_key is not an RSA key")
    header: dict[str, Any] = {"alg": "RS256", "typ": "JWT"}
    if isinstance(info.get("private_key_id"), str):
        header["kid"] = info["private_key_id"]
    claims = {"iss": info["client_email"], "scope": SCOPE, "aud": token_uri,
              "iat": int(now), "exp": int(now) + TOKEN_LIFETIME}
    signing_input = (_b64url(json.dumps(header, separators=(",", ":")).encode()) + "."
                     + _b64url(json.dumps(claims, separators=(",", ":")).encode()))
    signature = key.sign(signing_input.encode("ascii"), padding.PKCS1v15(), hashes.SHA256())
    return f"{signing_input}.{_b64url(signature)}"


class AccessTokens:
    """OAuth access tokens from Google credentials, cached until shortly before expiry."""

    def __init__(self, info: Mapping[str, Any], name: str, client: httpx.Client) -> None:
        self.info = info
        self.name = name
        self.token_uri = str(info.get("token_uri") or DEFAULT_TOKEN_URI)
        self._client = client
        self._lock = threading.Lock()
        self._token: str | None = None
        self._expires = 0.0

    def get(self) -> str:
        """A valid access token, fetched when there is none or it is about to expire."""
        with self._lock:
            if self._token is None or time.time() > self._expires - TOKEN_MARGIN:
                self._token, lifetime = self._fetch()
                self._expires = time.time() + lifetime
            return self._token

    def forget(self) -> None:
        """Drop the cached token (Vertex refused it)."""
        with self._lock:
            self._token = None

    def _fetch(self) -> tuple[str, float]:
        if self.info["type"] == "service_account":
            form = {"grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer",
                    "assertion": signed_assertion(self.info, self.token_uri, time.time())}
        else:
            form = {"grant_type": "refresh_token", "client_id": self.info["client_id"],
                    "client_secret": self.info["client_secret"],
                    "refresh_token": self.info["refresh_token"]}
        what = f"Google's token endpoint {self.token_uri}"
        try:
            response = self._client.post(self.token_uri, data=form)
        except httpx.HTTPError as exc:
            raise EmbeddingError(f"{what}: request failed: {exc!r}", transient=True,
                                 cause=UNREACHABLE) from exc
        status = response.status_code
        if status == 429 or status >= 500:
            raise EmbeddingError(f"{what} answered {status}: {server_message(response)}",
                                 transient=True, status=status)
        if status >= 400:
            detail = server_message(response)
            try:
                described = response.json().get("error_description")
            except (ValueError, AttributeError):
                described = None
            if isinstance(described, str):
                detail = f"{detail}: {described}"
            raise ConfigError(f"{what} refused the credentials in {self.name} ({status}): "
                              f"{detail}")
        try:
            body = response.json()
            token = body["access_token"]
            lifetime = float(body.get("expires_in", TOKEN_LIFETIME))
        except (ValueError, KeyError, TypeError, AttributeError):
            raise ProviderError(f"{what} answered without an access token") from None
        if not isinstance(token, str) or not token:
            raise ProviderError(f"{what} answered without an access token")
        return token, lifetime


class _BearerAuth(httpx.Auth):
    """Puts the current access token on each request (fetching one when needed)."""

    def __init__(self, tokens: AccessTokens) -> None:
        self.tokens = tokens

    def auth_flow(self, request: httpx.Request) -> Any:
        request.headers["Authorization"] = f"Bearer {self.tokens.get()}"
        yield request


class VertexEmbedder(BatchedHTTPEmbedder):
    """Embeds through a Vertex AI text-embedding model; thread-safe, one connection pool."""

    max_request_bytes = MAX_REQUEST_TOKENS

    def __init__(self, spec: Spec, env: Mapping[str, str]) -> None:
        self.spec = spec
        self.dimensions = spec.dimensions
        task = opt_str(spec, "task_type", TASK_TYPES) or opt_str(spec, "input_type", TASK_TYPES)
        self.task_type = task
        self.auto_truncate = opt_bool(spec, "auto_truncate")
        opt_dimensions(spec)
        # The gecko models make one size and take no outputDimensionality.
        self.send_dimensions = not spec.model.startswith("textembedding-gecko")
        self.max_inputs = (GEMINI_MAX_INSTANCES if spec.model.startswith("gemini-embedding")
                           else MAX_INSTANCES)
        self.base_url = base_url(spec, env)
        names = ([spec.api_key_name] if spec.api_key_name
                 else [DEFAULT_CREDENTIALS_NAME, *OWN_CREDENTIALS_NAMES])
        self.credentials_name, value = require_key(
            spec, env, names, url=self.base_url, default_name=DEFAULT_CREDENTIALS_NAME,
            default_urls=_operator_defaults(spec, env),
            own_names=(DEFAULT_CREDENTIALS_NAME, *OWN_CREDENTIALS_NAMES),
            what="credentials (JSON or its path)")
        info = credentials_info(value, self.credentials_name)
        project_id = info.get("project_id") or info.get("quota_project_id")
        self.project = _project(spec, env, project_id if isinstance(project_id, str) else None)
        self.url = predict_url(spec, env, self.project)
        # Two pools: the token endpoint must never see the access tokens it hands out.
        self._token_client = make_client(client_env(spec, env))
        self._tokens = AccessTokens(info, self.credentials_name, self._token_client)
        self._client = make_client(client_env(spec, env))
        self._client.auth = _BearerAuth(self._tokens)
        self._what = f"Vertex AI model {spec.model} at {self.base_url}"

    def close(self) -> None:
        """Close the pooled connections, the token endpoint's too."""
        self._client.close()
        self._token_client.close()

    def _refusal(self, status: int, message: str) -> str:
        if status in (401, 403):
            self._tokens.forget()
            return (f"{self._what} refused the access token of the credentials in "
                    f"{self.credentials_name} ({status}): {message}")
        return f"{self._what} refused the request ({status}): {message}"

    def _request(self, texts: Sequence[str]) -> np.ndarray:
        instances: list[dict[str, Any]] = []
        for text in texts:
            instance: dict[str, Any] = {"content": text}
            if self.task_type is not None:
                instance["task_type"] = self.task_type
            instances.append(instance)
        parameters: dict[str, Any] = {}
        if self.send_dimensions:
            parameters["outputDimensionality"] = self.dimensions
        if self.auto_truncate is not None:
            parameters["autoTruncate"] = self.auto_truncate
        payload: dict[str, Any] = {"instances": instances}
        if parameters:
            payload["parameters"] = parameters
        body = post_json(self._client, self.url, payload, what=self._what,
                         refusal=self._refusal)
        predictions = body.get("predictions") if isinstance(body, dict) else None
        values = None
        if isinstance(predictions, list):
            values = [p.get("embeddings", {}).get("values") if isinstance(p, dict)
                      and isinstance(p.get("embeddings"), dict) else None for p in predictions]
        return vectors_of(values, len(texts), self.dimensions, self._what)
