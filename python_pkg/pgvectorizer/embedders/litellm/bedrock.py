"""bedrock/<model id>: Amazon Bedrock's InvokeModel, through boto3's bedrock-runtime client.

Models: Amazon Titan text embeddings (amazon.titan-embed-text-v1, -v2:0, g1-text-02; one
text per request, sent PARALLEL_REQUESTS at a time) and Cohere Embed on Bedrock
(cohere.embed-english-v3, -multilingual-v3, -v4:0; up to 96 texts per request), also through
an inference profile (us.cohere.embed-v4:0) or an ARN that names them.

Credentials and region follow boto3's own chain (environment, ~/.aws files, instance roles),
with LiteLLM's names in extra_options on top: aws_region_name, aws_access_key_id,
aws_profile_name. The secret access key is never in the config: api_key_name names the
variable holding it (pgai's examples use AWS_SECRET_ACCESS_KEY); AWS_SESSION_TOKEN is read
from the environment. Values in a .env file count as the environment.

Endpoint: https://bedrock-runtime.{region}.amazonaws.com, or the operator's
AWS_ENDPOINT_URL_BEDROCK_RUNTIME / AWS_ENDPOINT_URL (a VPC endpoint, a test server). SigV4
sends a signature, never the secret, but where signed requests may go follows endpoints.py's
rules for keys all the same: credentials from AWS_SECRET_ACCESS_KEY (or boto3's own chain)
sign for those two endpoints; a config's extra_options.aws_bedrock_runtime_endpoint is its
author's, and like any api_key_name other than AWS_SECRET_ACCESS_KEY (which must end in
_API_KEY or be listed) it is used only where PGVECTORIZER_KEY_ENDPOINTS lists it for the
secret's variable.

boto3's own retries are off: throttling is retried here as a 429 is for the HTTP providers
(Retry-After if the answer has one), and every other error is classified as theirs are.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from pgvectorizer.embedders.http import (
    RATE_LIMIT_FIRST_WAIT,
    RATE_LIMIT_MAX_WAIT,
    RATE_LIMIT_TRIES,
    batch_ranges,
    dimension_error,
    number_vector,
    parse_retry_after,
    snippet,
    timeout_from_env,
)
from pgvectorizer.embedders.litellm.common import (
    Spec,
    client_env,
    opt_bool,
    opt_dimensions,
    opt_str,
    vectors_of,
)
from pgvectorizer.endpoints import KEY_ENDPOINTS_ENV, key_endpoints, parse_endpoint
from pgvectorizer.errors import (
    SERVER_ERROR,
    UNREACHABLE,
    ApiKeyMissing,
    ConfigError,
    EmbeddingError,
    KeyEndpointRefused,
    MissingDependency,
)

logger = logging.getLogger(__name__)

SECRET_NAME = "AWS_SECRET_ACCESS_KEY"
REGION_ENVS = ("AWS_REGION_NAME", "AWS_REGION", "AWS_DEFAULT_REGION")
ENDPOINT_ENVS = ("AWS_ENDPOINT_URL_BEDROCK_RUNTIME", "AWS_ENDPOINT_URL")
OPTIONS = frozenset({"aws_region_name", "aws_access_key_id", "aws_profile_name",
                     "aws_bedrock_runtime_endpoint", "input_type", "truncate", "dimensions",
                     "normalize"})
COHERE_INPUT_TYPES = ("search_document", "search_query", "classification", "clustering")
COHERE_TRUNCATE = ("NONE", "START", "END")
TITAN_V2_SIZES = (256, 512, 1024)
COHERE_MAX_INPUTS = 96  # texts per request, Cohere Embed on Bedrock's limit
COHERE_MAX_REQUEST_BYTES = 4_000_000  # keeps one request's body reasonable
PARALLEL_REQUESTS = 8  # Titan requests (one text each) of one embed() call in flight at once
CONNECT_TIMEOUT = 10.0  # seconds to open a connection


def region(spec: Spec, env: Mapping[str, str], session_region: str | None = None) -> str:
    """extra_options.aws_region_name, else the environment's, else the profile's."""
    value = opt_str(spec, "aws_region_name")
    for name in REGION_ENVS:
        value = value or (env.get(name) or "").strip() or None
    value = value or session_region
    if not value:
        raise ConfigError(f"embedding config ({spec.what}): no AWS region; give "
                          f"extra_options.aws_region_name or set AWS_REGION")
    if not all(c.isalnum() or c == "-" for c in value):
        raise ConfigError(f"embedding config ({spec.what}): {value!r} is not an AWS region")
    return value


def aws_base(region_name: str) -> str:
    """Bedrock's own runtime endpoint in a region."""
    return f"https://bedrock-runtime.{region_name}.amazonaws.com"


def operator_endpoint(env: Mapping[str, str]) -> str | None:
    """AWS_ENDPOINT_URL_BEDROCK_RUNTIME, else AWS_ENDPOINT_URL (the operator's), else None."""
    for name in ENDPOINT_ENVS:
        value = (env.get(name) or "").strip().rstrip("/")
        if value:
            return value
    return None


def endpoint(spec: Spec, env: Mapping[str, str], region_name: str) -> str:
    """Where InvokeModel requests go."""
    return (opt_str(spec, "aws_bedrock_runtime_endpoint") or operator_endpoint(env)
            or aws_base(region_name)).rstrip("/")


def _defaults(env: Mapping[str, str], region_name: str) -> list[str]:
    return [operator_endpoint(env) or aws_base(region_name)]


def server_targets(spec: Spec, env: Mapping[str, str]) -> list[tuple[str, list[str]]]:
    """The URL requests go to, with the endpoints the operator allows by default."""
    region_name = region(spec, env, _profile_region(spec))
    return [(endpoint(spec, env, region_name), _defaults(env, region_name))]


def _boto3() -> Any:
    try:
        import boto3  # type: ignore[import-untyped]
    except ImportError as exc:
        raise MissingDependency("bedrock embeddings need boto3 (pip install boto3, or "
                                "pgvectorizer[documents])", package="boto3") from exc
    return boto3


def _session(spec: Spec, **credentials: str | None) -> Any:
    boto3 = _boto3()
    from botocore.exceptions import BotoCoreError  # type: ignore[import-untyped]
    try:
        return boto3.Session(profile_name=opt_str(spec, "aws_profile_name"), **credentials)
    except BotoCoreError as exc:  # an unknown profile
        raise ConfigError(f"embedding config ({spec.what}): {exc}") from exc


def _profile_region(spec: Spec) -> str | None:
    if opt_str(spec, "aws_region_name"):
        return None
    region_name = _session(spec).region_name
    return region_name if isinstance(region_name, str) else None


def family(model: str) -> str:
    """"titan-v1", "titan-v2" or "cohere" for a model id; ConfigError for others."""
    if "titan-embed-text-v2" in model:
        return "titan-v2"
    if "titan-embed-text-v1" in model or "titan-embed-g1-text" in model:
        return "titan-v1"
    if "cohere.embed-" in model:
        return "cohere"
    raise ConfigError(f"bedrock model {model!r}: only Amazon Titan text embeddings "
                      f"(amazon.titan-embed-text-v1, amazon.titan-embed-text-v2:0) and Cohere "
                      f"Embed (cohere.embed-english-v3, cohere.embed-multilingual-v3, "
                      f"cohere.embed-v4:0) are supported")


class BedrockEmbedder:
    """Embeds through bedrock-runtime InvokeModel; thread-safe (boto3 clients are)."""

    def __init__(self, spec: Spec, env: Mapping[str, str]) -> None:
        self.spec = spec
        self.dimensions = spec.dimensions
        self.family = family(spec.model)
        self._options(spec)
        self.secret_name = spec.api_key_name or SECRET_NAME
        credentials = self._credentials(spec, env)
        session = _session(spec, **credentials)
        self.region = region(spec, env, session.region_name)
        self.endpoint = endpoint(spec, env, self.region)
        self._check_endpoint(env)
        from botocore.config import Config  # type: ignore[import-untyped]
        timeout = timeout_from_env(client_env(spec, env))
        config = Config(retries={"total_max_attempts": 1, "mode": "standard"},
                        connect_timeout=min(CONNECT_TIMEOUT, timeout.connect or CONNECT_TIMEOUT),
                        read_timeout=timeout.read, max_pool_connections=PARALLEL_REQUESTS * 4)
        self._client = session.client("bedrock-runtime", region_name=self.region,
                                      endpoint_url=self.endpoint, config=config)
        self._what = f"Bedrock model {spec.model} at {self.endpoint}"
        self._pool: ThreadPoolExecutor | None = None
        self._pool_lock = threading.Lock()

    def _options(self, spec: Spec) -> None:
        sized = opt_dimensions(spec)
        self.normalize = opt_bool(spec, "normalize")
        self.input_type = opt_str(spec, "input_type", COHERE_INPUT_TYPES)
        self.truncate = opt_str(spec, "truncate", COHERE_TRUNCATE)
        if self.family != "cohere" and (self.input_type or self.truncate):
            raise ConfigError(f"embedding config ({spec.what}): input_type and truncate are "
                              f"options of Cohere models, not Titan's")
        if self.family != "titan-v2" and self.normalize is not None:
            raise ConfigError(f"embedding config ({spec.what}): normalize is an option of "
                              f"amazon.titan-embed-text-v2 only")
        if self.family == "titan-v2" and self.dimensions not in TITAN_V2_SIZES:
            raise ConfigError(f"embedding config ({spec.what}): Titan v2 makes vectors of "
                              f"{', '.join(map(str, TITAN_V2_SIZES))} numbers, not "
                              f"{self.dimensions}")
        # Cohere's embed-v4 takes an output size; the v3 models and Titan v1 make one size.
        self.send_dimensions = self.family == "titan-v2" or (
            self.family == "cohere" and (sized or "embed-v4" in spec.model))

    def _credentials(self, spec: Spec, env: Mapping[str, str]) -> dict[str, str | None]:
        """Explicit credentials from extra_options and the env mapping (a .env file's values
        are not in os.environ, where boto3 looks); empty: boto3's own chain."""
        key_id = opt_str(spec, "aws_access_key_id") or env.get("AWS_ACCESS_KEY_ID") or None
        if spec.api_key_name is None and not env.get(SECRET_NAME):
            return {}  # a profile, a role, or os.environ: boto3 finds them itself
        # The secret is only a signing key (SigV4 sends a signature, never the secret), but
        # its variable is still read by the rules for keys: where it may sign requests is
        # checked in _check_endpoint once the endpoint is known.
        if self.secret_name == SECRET_NAME:
            secret = env.get(SECRET_NAME) or None
        else:
            secret = _read_secret(env, self.secret_name)
        if not secret:
            raise ApiKeyMissing(f"{self.secret_name} is not set: the vectorizer's embedding "
                                f"config ({spec.what}) reads the AWS secret access key from "
                                f"this environment variable")
        if not key_id:
            raise ConfigError(f"embedding config ({spec.what}): the secret access key in "
                              f"{self.secret_name} needs an access key id: give "
                              f"extra_options.aws_access_key_id or set AWS_ACCESS_KEY_ID")
        # A session token belongs to the environment's own key pair, not to another variable's.
        token = env.get("AWS_SESSION_TOKEN") if self.secret_name == SECRET_NAME else None
        return {"aws_access_key_id": key_id, "aws_secret_access_key": secret,
                "aws_session_token": token or None}

    def _check_endpoint(self, env: Mapping[str, str]) -> None:
        # As endpoints.read_api_key has it: the default variable (or boto3's own chain) signs
        # for Bedrock's or the operator's endpoint, any variable where the operator lists it.
        allowed = [parse_endpoint(u, "endpoint") for u in _defaults(env, self.region)
                   if _parses(u)] if self.secret_name == SECRET_NAME else []
        allowed.extend(key_endpoints(env).get(self.secret_name, ()))
        if any(e.matches(self.endpoint) for e in allowed):
            return
        raise KeyEndpointRefused(
            f"requests signed with the AWS credentials ({self.secret_name}) may not go to "
            f"{self.endpoint}: they go only to Bedrock's own endpoint, the operator's "
            f"{ENDPOINT_ENVS[0]}, or URLs that {KEY_ENDPOINTS_ENV} lists; to allow it, add "
            f"{self.secret_name}={self.endpoint} to {KEY_ENDPOINTS_ENV}")

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """float32 (len(texts), dimensions): Titan one text a request, Cohere up to 96."""
        out = np.empty((len(texts), self.dimensions), dtype=np.float32)
        if self.family == "cohere":
            for start, end in batch_ranges(texts, COHERE_MAX_INPUTS, COHERE_MAX_REQUEST_BYTES):
                out[start:end] = self._cohere(texts[start:end])
            return out
        if len(texts) <= 1:
            for i, text in enumerate(texts):
                out[i] = self._titan(text)
            return out
        with self._pool_lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(PARALLEL_REQUESTS, thread_name_prefix="bedrock")
        for i, vector in enumerate(self._pool.map(self._titan, texts)):
            out[i] = vector
        return out

    def close(self) -> None:
        """Stop the request threads and close the client's connections."""
        if self._pool is not None:
            self._pool.shutdown()
        self._client.close()

    def _titan(self, text: str) -> np.ndarray:
        body: dict[str, Any] = {"inputText": text}
        if self.send_dimensions:
            body["dimensions"] = self.dimensions
        if self.normalize is not None:
            body["normalize"] = self.normalize
        answer = self._invoke(body)
        vector = number_vector(self._what, answer.get("embedding")
                               if isinstance(answer, dict) else None)
        if vector.shape[0] != self.dimensions:
            raise dimension_error(self._what, vector.shape[0], self.dimensions)
        return vector

    def _cohere(self, texts: Sequence[str]) -> np.ndarray:
        body: dict[str, Any] = {"texts": list(texts),
                                "input_type": self.input_type or "search_document",
                                "embedding_types": ["float"]}
        if self.truncate is not None:
            body["truncate"] = self.truncate
        if self.send_dimensions:
            body["output_dimension"] = self.dimensions
        answer = self._invoke(body)
        embeddings = answer.get("embeddings") if isinstance(answer, dict) else None
        if isinstance(embeddings, dict):  # by type, as embedding_types asks
            embeddings = embeddings.get("float")
        return vectors_of(embeddings, len(texts), self.dimensions, self._what)

    def _invoke(self, body: Mapping[str, Any]) -> Any:
        from botocore.exceptions import BotoCoreError, ClientError
        payload = json.dumps(body, ensure_ascii=False).encode("utf-8")
        waited = 0.0
        attempt = 0
        while True:
            attempt += 1
            try:
                response = self._client.invoke_model(modelId=self.spec.model, body=payload,
                                                     contentType="application/json",
                                                     accept="application/json")
                raw = response["body"].read()
            except ClientError as exc:
                wait = self._classify(exc, attempt, waited)
                logger.info("%s: throttled, retrying in %.2f s", self._what, wait)
                time.sleep(wait)
                waited += wait
                continue
            except BotoCoreError as exc:
                raise self._boto_error(exc) from exc
            try:
                return json.loads(raw)
            except ValueError as exc:
                raise EmbeddingError(f"{self._what} answered with a body that is not JSON",
                                     transient=True, cause=SERVER_ERROR) from exc

    def _classify(self, exc: Any, attempt: int, waited: float) -> float:
        """Seconds to wait before sending a throttled request again; raises otherwise."""
        error = exc.response.get("Error", {})
        meta = exc.response.get("ResponseMetadata", {})
        code = str(error.get("Code") or "")
        status = int(meta.get("HTTPStatusCode") or 0)
        message = snippet(str(error.get("Message") or code or exc))
        if status == 429 or code in ("ThrottlingException", "TooManyRequestsException"):
            hint = parse_retry_after((meta.get("HTTPHeaders") or {}).get("retry-after"))
            wait = hint if hint is not None else RATE_LIMIT_FIRST_WAIT * 2 ** (attempt - 1)
            if attempt == RATE_LIMIT_TRIES or waited + wait > RATE_LIMIT_MAX_WAIT:
                raise EmbeddingError(f"{self._what}: throttled ({message}); gave up after "
                                     f"{attempt} request(s) and {waited:.1f} s of waiting",
                                     transient=True, status=429, retry_after=wait)
            return wait
        if status >= 500 or code in ("ServiceUnavailableException", "ModelNotReadyException",
                                     "InternalServerException", "ModelTimeoutException"):
            raise EmbeddingError(f"{self._what}: server error {status} ({code}): {message}",
                                 transient=True, status=status or 503)
        if status in (401, 403) or code in ("AccessDeniedException",
                                            "UnrecognizedClientException",
                                            "InvalidSignatureException", "ExpiredTokenException"):
            raise ConfigError(f"{self._what} refused the AWS credentials ({self.secret_name}, "
                              f"{code or status}): {message}")
        raise EmbeddingError(f"{self._what} refused the request ({status} {code}): {message}",
                             transient=False, status=status or 400)

    def _boto_error(self, exc: Exception) -> Exception:
        from botocore.exceptions import (
            ConnectTimeoutError,
            EndpointConnectionError,
            NoCredentialsError,
            PartialCredentialsError,
            ReadTimeoutError,
        )
        if isinstance(exc, NoCredentialsError | PartialCredentialsError):
            return ApiKeyMissing(f"{self._what}: no AWS credentials found ({exc}); set "
                                 f"AWS_ACCESS_KEY_ID and {SECRET_NAME} (or api_key_name), a "
                                 f"profile, or a role")
        if isinstance(exc, ConnectTimeoutError | ReadTimeoutError | EndpointConnectionError):
            return EmbeddingError(f"{self._what}: no answer ({type(exc).__name__}: "
                                  f"{snippet(str(exc))})", transient=True, cause=UNREACHABLE)
        return EmbeddingError(f"{self._what}: {type(exc).__name__}: {snippet(str(exc))}",
                              transient=True)


def _parses(url: str) -> bool:
    try:
        parse_endpoint(url, "url")
    except ConfigError:
        return False
    return True


def _read_secret(env: Mapping[str, str], name: str) -> str | None:
    """The secret in api_key_name's variable: one whose name ends in _API_KEY or that
    PGVECTORIZER_KEY_ENDPOINTS lists (endpoints.py's rule for reading keys)."""
    if not name.endswith("_API_KEY") and name not in key_endpoints(env):
        raise ConfigError(
            f"api_key_name {name!r}: only AWS_SECRET_ACCESS_KEY, variables whose names end in "
            f"_API_KEY, or variables that {KEY_ENDPOINTS_ENV} lists may be read as the AWS "
            f"secret access key (list it as {name}=<endpoint URL> in {KEY_ENDPOINTS_ENV})")
    return env.get(name) or None
