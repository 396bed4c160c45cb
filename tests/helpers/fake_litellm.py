"""Fakes of the providers behind ai.embedding_litellm, on loopback, in this process.

One server speaks every wire format, told apart by path:

    POST /v2/embed                                        Cohere (bearer COHERE_KEY)
    POST /mistral/v1/embeddings                           Mistral (bearer MISTRAL_KEY)
    POST /openai/deployments/{name}/embeddings?api-version=V   Azure OpenAI (api-key AZURE_KEY)
    POST /token                                           Google OAuth: checks the JWT's RS256
                                                          signature with the test's public key
    POST /v1/projects/{p}/locations/{l}/publishers/google/models/{m}:predict   Vertex AI
    POST /hf/{model}/pipeline/feature-extraction          Hugging Face (bearer HF_KEY)
    POST /model/{modelId}/invoke                          Bedrock InvokeModel (SigV4 signed)

Vectors are fake_vector(text, dims) (tests/helpers/fake_openai.py): a function of the text
alone, so a test checks them end to end. Texts drive failures: FAIL400 -> 400, FAIL500 ->
500, RATE429 -> 429 with Retry-After the first `rate_limits` times, WRONGDIMS -> vectors one
number too long, LOADING -> Hugging Face's 503 "model is loading". Each provider's request
limit is enforced with the provider's own kind of refusal; `requests` records what came.
"""

from __future__ import annotations

import base64
import json
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import numpy as np
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from tests.helpers.fake_openai import fake_vector
from tests.helpers.threads import serving

COHERE_KEY = "co-test-key"
MISTRAL_KEY = "mi-test-key"
AZURE_KEY = "az-test-key"
HF_KEY = "hf_test_key"
AWS_KEY_ID = "AKIDTESTFAKE"
AWS_SECRET = "aws-test-secret"
SA_EMAIL = "embedder@test-project.iam.gserviceaccount.com"
AZURE_VERSION = "2024-10-21"

COHERE_MAX = 96
AZURE_MAX = 2048
MISTRAL_MAX_TOKENS = 16_384
VERTEX_MAX = 250
HF_MAX = 32
BEDROCK_COHERE_MAX = 96

# Each model's own size, when the request asks for none.
SIZES = {"embed-english-v3.0": 1024, "embed-v4.0": 1536, "mistral-embed": 1024,
         "codestral-embed": 1536, "text-embedding-005": 768, "textembedding-gecko@003": 768,
         "gemini-embedding-001": 3072, "amazon.titan-embed-text-v1": 1536,
         "amazon.titan-embed-text-v2:0": 1024, "cohere.embed-english-v3": 1024,
         "cohere.embed-v4:0": 1536}
HF_SIZE = 384
TOKEN_LEVEL_MODEL = "test/token-level"  # answers one vector per token (whitespace words)


def vector(text: str, dims: int) -> list[float]:
    """What the fakes return for text."""
    return [float(x) for x in fake_vector(text, dims)]


def token_vectors(text: str, dims: int) -> list[list[float]]:
    """The token-level model's answer for text: one vector per word."""
    return [vector(word, dims) for word in text.split() or [""]]


_PRIVATE_KEY: rsa.RSAPrivateKey | None = None


def private_key() -> rsa.RSAPrivateKey:
    """The tests' service-account key (made once per process)."""
    global _PRIVATE_KEY
    if _PRIVATE_KEY is None:
        _PRIVATE_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return _PRIVATE_KEY


def service_account(token_uri: str, project: str = "test-project") -> dict[str, str]:
    """A service account's key JSON whose token_uri is the fake's."""
    pem = private_key().private_bytes(serialization.Encoding.PEM,
                                      serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption()).decode()
    return {"type": "service_account", "project_id": project, "private_key_id": "kid-1",
            "private_key": pem, "client_email": SA_EMAIL, "client_id": "1",
            "token_uri": token_uri}


@dataclass
class Seen:
    """One request as the fake saw it."""

    provider: str
    path: str
    headers: dict[str, str]
    body: Any
    query: dict[str, list[str]] = field(default_factory=dict)


class FakeLiteLLM(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.requests: list[Seen] = []
        self.rate_limits = 1  # 429s answered to RATE429 before it succeeds
        self.tokens: set[str] = set()  # access tokens the OAuth fake gave out
        self.token_requests = 0
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def of(self, provider: str) -> list[Seen]:
        """The requests that reached one provider's route."""
        return [r for r in self.requests if r.provider == provider]


@contextmanager
def running() -> Iterator[FakeLiteLLM]:
    with serving(FakeLiteLLM()) as srv:
        yield srv


_VERTEX = re.compile(r"/v1/projects/([^/]+)/locations/([^/]+)/publishers/google/models/(.+):predict")
_AZURE = re.compile(r"/openai/deployments/([^/]+)/embeddings")
_BEDROCK = re.compile(r"/model/([^/]+)/invoke")
_HF = re.compile(r"/hf/(.+)/pipeline/feature-extraction")


class Handler(BaseHTTPRequestHandler):
    server: FakeLiteLLM
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # quiet test output
        pass

    def do_POST(self) -> None:
        split = urlsplit(self.path)
        path, query = split.path, parse_qs(split.query)
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if path == "/token":
            return self._token(raw)
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            return self._send(400, {"message": "not JSON"})
        route = [("cohere", path == "/v2/embed"), ("mistral", path == "/mistral/v1/embeddings"),
                 ("azure", bool(_AZURE.fullmatch(path))), ("vertex", bool(_VERTEX.fullmatch(path))),
                 ("huggingface", bool(_HF.fullmatch(path))),
                 ("bedrock", bool(_BEDROCK.fullmatch(path)))]
        provider = next((name for name, hit in route if hit), None)
        if provider is None:
            return self._send(404, {"message": f"no route {path}"})
        with self.server.lock:
            self.server.requests.append(Seen(provider, path, dict(self.headers.items()), body, query))
        getattr(self, f"_{provider}")(path, query, body)

    # --- one method per provider ---------------------------------------------------------

    def _cohere(self, path: str, query: Any, body: Any) -> None:
        if self.headers.get("Authorization") != f"Bearer {COHERE_KEY}":
            return self._send(401, {"message": "invalid api token"})
        texts = body.get("texts")
        model = body.get("model")
        if model not in SIZES or not isinstance(texts, list) or not texts:
            return self._send(400, {"message": f"model '{model}' not found or no texts"})
        if len(texts) > COHERE_MAX:
            return self._send(400, {"message": f"invalid request: total number of texts must "
                                               f"be at most {COHERE_MAX} - received {len(texts)}"})
        if body.get("input_type") not in ("search_document", "search_query", "classification",
                                          "clustering"):
            return self._send(400, {"message": "invalid input_type"})
        if body.get("embedding_types") != ["float"]:
            return self._send(400, {"message": "this fake answers floats only"})
        if self._failures(texts, {"message": "internal server error"}):
            return
        dims = body.get("output_dimension") or SIZES[model]
        if body.get("output_dimension") and not model.startswith("embed-v4"):
            return self._send(400, {"message": "output_dimension is only for embed-v4.0"})
        floats = [vector(t, self._dims(texts, dims)) for t in texts]
        self._send(200, {"id": "x", "texts": texts, "embeddings": {"float": floats},
                         "meta": {"api_version": {"version": "2"}}})

    def _mistral(self, path: str, query: Any, body: Any) -> None:
        if self.headers.get("Authorization") != f"Bearer {MISTRAL_KEY}":
            return self._send(401, {"message": "Unauthorized", "request_id": "r"})
        texts = body.get("input")
        model = body.get("model")
        if model not in SIZES:
            return self._send(400, {"object": "error", "message": f"Invalid model: {model}"})
        if sum(len(t.encode()) for t in texts) > MISTRAL_MAX_TOKENS:
            return self._send(400, {"object": "error",
                                    "message": "Too many tokens overall, split into more batches."})
        if self._failures(texts, {"object": "error", "message": "Service unavailable."}):
            return
        dims = body.get("output_dimension") or SIZES[model]
        data = [{"object": "embedding", "index": i,
                 "embedding": vector(t, self._dims(texts, dims))} for i, t in enumerate(texts)]
        data.reverse()  # the index, not the order, says which text a vector is for
        self._send(200, {"id": "e", "object": "list", "data": data, "model": model})

    def _azure(self, path: str, query: Any, body: Any) -> None:
        if self.headers.get("api-key") != AZURE_KEY:
            return self._send(401, {"error": {"code": "401", "message": "Access denied due to "
                                              "invalid subscription key or wrong API endpoint."}})
        if query.get("api-version") != [AZURE_VERSION]:
            return self._send(404, {"error": {"code": "404", "message": "Resource not found"}})
        texts = body.get("input")
        if len(texts) > AZURE_MAX:
            return self._send(400, {"error": {"message": f"Too many inputs. The max number of "
                                              f"inputs is {AZURE_MAX}."}})
        if self._failures(texts, {"error": {"message": "The server had an error"}}):
            return
        dims = self._dims(texts, body.get("dimensions") or 1536)
        data = []
        for i, t in enumerate(texts):
            v = fake_vector(t, dims)
            emb: Any = (base64.b64encode(np.asarray(v, dtype="<f4").tobytes()).decode()
                        if body.get("encoding_format") == "base64" else [float(x) for x in v])
            data.append({"object": "embedding", "index": i, "embedding": emb})
        self._send(200, {"object": "list", "data": data, "model": "text-embedding-3-small"})

    def _vertex(self, path: str, query: Any, body: Any) -> None:
        auth = self.headers.get("Authorization") or ""
        if not auth.startswith("Bearer ") or auth[7:] not in self.server.tokens:
            return self._send(401, {"error": {"code": 401, "status": "UNAUTHENTICATED",
                                              "message": "Request had invalid authentication "
                                                         "credentials."}})
        match = _VERTEX.fullmatch(path)
        assert match is not None
        model = unquote(match.group(3))
        instances = body.get("instances")
        limit = 1 if model.startswith("gemini-embedding") else VERTEX_MAX
        if model not in SIZES:
            return self._send(404, {"error": {"code": 404, "message": f"model {model} not found"}})
        if len(instances) > limit:
            return self._send(400, {"error": {"code": 400, "status": "INVALID_ARGUMENT",
                                              "message": f"{len(instances)} instances; the "
                                                         f"limit is {limit}"}})
        texts = [i["content"] for i in instances]
        if self._failures(texts, {"error": {"code": 500, "message": "Internal error"}}):
            return
        dims = self._dims(texts, (body.get("parameters") or {}).get("outputDimensionality")
                          or SIZES[model])
        predictions = [{"embeddings": {"values": vector(t, dims),
                                       "statistics": {"token_count": len(t.split())}}}
                       for t in texts]
        self._send(200, {"predictions": predictions, "deployedModelId": ""})

    def _huggingface(self, path: str, query: Any, body: Any) -> None:
        if self.headers.get("Authorization") != f"Bearer {HF_KEY}":
            return self._send(401, {"error": "Invalid credentials in Authorization header"})
        match = _HF.fullmatch(path)
        assert match is not None
        model = match.group(1)
        texts = body.get("inputs")
        if len(texts) > HF_MAX:
            return self._send(413, {"error": f"batch size {len(texts)} > maximum allowed "
                                             f"batch size {HF_MAX}", "error_type": "Validation"})
        if _has("LOADING", texts):
            return self._send(503, {"error": f"Model {model} is currently loading",
                                    "estimated_time": 20.0})
        if self._failures(texts, {"error": "Internal Server Error"}):
            return
        dims = self._dims(texts, HF_SIZE)
        if model == TOKEN_LEVEL_MODEL:
            return self._send(200, [token_vectors(t, dims) for t in texts])
        self._send(200, [vector(t, dims) for t in texts])

    def _bedrock(self, path: str, query: Any, body: Any) -> None:
        auth = self.headers.get("Authorization") or ""
        # SigV4: the credential scope names the key id, the region and the service.
        if not re.match(rf"AWS4-HMAC-SHA256 Credential={AWS_KEY_ID}/\d{{8}}/[a-z0-9-]+/bedrock/"
                        r"aws4_request, SignedHeaders=[^,]+, Signature=[0-9a-f]{64}$", auth):
            return self._aws_error(403, "UnrecognizedClientException",
                                   "The security token included in the request is invalid.")
        match = _BEDROCK.fullmatch(path)
        assert match is not None
        model = unquote(match.group(1))
        if model not in SIZES:
            return self._aws_error(400, "ValidationException", "The provided model identifier "
                                                               "is invalid.")
        if model.startswith("cohere."):
            texts = body.get("texts")
            if len(texts) > BEDROCK_COHERE_MAX:
                return self._aws_error(400, "ValidationException",
                                       f"texts: expected maxLength: {BEDROCK_COHERE_MAX}")
        else:
            texts = [body.get("inputText")]
            if set(body) - {"inputText", "dimensions", "normalize"}:
                return self._aws_error(400, "ValidationException", "extraneous key")
        if _has("RATE429", texts):
            with self.server.lock:
                limited = self.server.rate_limits > 0
                self.server.rate_limits -= 1
            if limited:
                return self._aws_error(429, "ThrottlingException", "Too many requests, please "
                                       "wait before trying again.", {"Retry-After": "0.05"})
        if _has("FAIL500", texts):
            return self._aws_error(500, "InternalServerException", "internal error")
        if _has("FAIL400", texts):
            return self._aws_error(400, "ValidationException", "Malformed input request")
        dims = self._dims(texts, body.get("dimensions") or body.get("output_dimension")
                          or SIZES[model])
        if model.startswith("cohere."):
            return self._send(200, {"id": "x", "texts": texts, "response_type":
                                    "embeddings_by_type",
                                    "embeddings": {"float": [vector(t, dims) for t in texts]}})
        self._send(200, {"embedding": vector(texts[0], dims), "inputTextTokenCount": 3})

    # --- OAuth ---------------------------------------------------------------------------

    def _token(self, raw: bytes) -> None:
        form = {k: v[0] for k, v in parse_qs(raw.decode()).items()}
        with self.server.lock:
            self.server.token_requests += 1
        if form.get("grant_type") != "urn:ietf:params:oauth:grant-type:jwt-bearer":
            return self._send(400, {"error": "unsupported_grant_type"})
        try:
            head, claims_part, signature = form["assertion"].split(".")
            header = json.loads(_unb64(head))
            claims = json.loads(_unb64(claims_part))
            private_key().public_key().verify(_unb64(signature),
                                              f"{head}.{claims_part}".encode(),
                                              padding.PKCS1v15(), hashes.SHA256())
        except (ValueError, KeyError, InvalidSignature):
            return self._send(400, {"error": "invalid_grant",
                                    "error_description": "Invalid JWT Signature."})
        now = time.time()
        if (header.get("alg") != "RS256" or claims.get("iss") != SA_EMAIL
                or claims.get("aud") != f"{self.server.url}/token"
                or "cloud-platform" not in claims.get("scope", "")
                or not claims["iat"] - 60 <= now <= claims["exp"]):
            return self._send(400, {"error": "invalid_grant",
                                    "error_description": "Invalid JWT claims."})
        token = f"ya29.fake-{len(self.server.tokens)}"
        with self.server.lock:
            self.server.tokens.add(token)
        self._send(200, {"access_token": token, "expires_in": 3599, "token_type": "Bearer"})

    # --- shared --------------------------------------------------------------------------

    def _failures(self, texts: list[str], server_error: Any) -> bool:
        """Answer the failure a special text asks for; True when one was answered."""
        if _has("RATE429", texts):
            with self.server.lock:
                limited = self.server.rate_limits > 0
                self.server.rate_limits -= 1
            if limited:
                self._send(429, {"message": "rate limited", "error": {"message": "rate limited"}},
                           {"Retry-After": "0.05"})
                return True
        if _has("FAIL500", texts):
            self._send(500, server_error)
            return True
        if _has("FAIL400", texts):
            self._send(400, {"message": "invalid request: text FAIL400 refused",
                             "error": {"message": "invalid request: text FAIL400 refused"}})
            return True
        return False

    @staticmethod
    def _dims(texts: list[str], dims: int) -> int:
        return dims + 1 if _has("WRONGDIMS", texts) else int(dims)

    def _aws_error(self, status: int, code: str, message: str,
                   headers: dict[str, str] | None = None) -> None:
        self._send(status, {"message": message},
                   {"x-amzn-ErrorType": f"{code}:http://internal.amazon.com/coral/", **(headers or {})})

    def _send(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)


def _has(marker: str, texts: list[str]) -> bool:
    """Whether any text carries the marker."""
    return any(marker in t for t in texts)


def _unb64(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))
