"""What the HTTP embedders share: timeouts, one POST with 429 handling, and error classification.

Every failure becomes an errors.EmbeddingError whose `transient` flag tells the worker whether
the same texts are worth sending again later (timeouts, 5xx, 429, lost connections) or whether
the request itself was refused (other 4xx); its `cause` says which (errors.Cause). A refused
key (401, 403) is a ConfigError, and an answer that does not fit the request (wrong number
or size of vectors) a ProviderError. Quoted answers are cut short by snippet().
"""

from __future__ import annotations

import binascii
import email.utils
import json
import logging
import time
import unicodedata
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import httpx
import numpy as np
import orjson
import pybase64

from pgvectorizer.errors import (
    SERVER_ERROR,
    UNREACHABLE,
    ConfigError,
    EmbeddingError,
    ProviderError,
)
from pgvectorizer.settings import tuning_seconds

logger = logging.getLogger(__name__)

TIMEOUT_ENV = "PGVECTORIZER_HTTP_TIMEOUT"
CONNECT_TIMEOUT = 10.0  # seconds to open a connection
DEFAULT_TIMEOUT = 60.0  # seconds to wait for a response (each read, write and pool wait)

RATE_LIMIT_TRIES = 3  # requests sent in all when the server keeps answering 429
RATE_LIMIT_MAX_WAIT = 60.0  # seconds slept in all on 429s within one call
RATE_LIMIT_FIRST_WAIT = 1.0  # seconds slept after a 429 without Retry-After; doubles each time

# Characters of a provider's answer quoted in an error message, at most.
SNIPPET_CHARS = 200
# Unicode categories replaced in a quoted answer: controls, format characters (such as
# bidirectional overrides), surrogates, private use.
_UNPRINTABLE = frozenset({"Cc", "Cf", "Cs", "Co"})

# Enough for the worker's threads to each keep a connection open to one provider.
MAX_CONNECTIONS = 32


def timeout_from_env(env: Mapping[str, str]) -> httpx.Timeout:
    """Connect within 10 s; wait PGVECTORIZER_HTTP_TIMEOUT seconds (default 60) for the rest."""
    seconds = tuning_seconds(env, TIMEOUT_ENV, DEFAULT_TIMEOUT, positive=True)
    return httpx.Timeout(seconds, connect=min(CONNECT_TIMEOUT, seconds))


def make_client(env: Mapping[str, str], headers: Mapping[str, str] | None = None) -> httpx.Client:
    """A thread-safe client with a shared connection pool and the configured timeouts."""
    limits = httpx.Limits(max_connections=MAX_CONNECTIONS,
                          max_keepalive_connections=MAX_CONNECTIONS)
    return httpx.Client(timeout=timeout_from_env(env), limits=limits, headers=dict(headers or {}))


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or an HTTP date), or None."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:  # HTTP dates are GMT; a date without a zone is read as such
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def server_message(response: httpx.Response) -> str:
    """The server's own words, as a short snippet: OpenAI's {"error": {"message"}}, Ollama's
    {"error": "..."}, Voyage's {"detail": "..."}, or the body as text."""
    text = response.text
    try:
        body = json.loads(text)
    except ValueError:
        return snippet(text) or response.reason_phrase
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            return snippet(error["message"])
        if isinstance(error, str):
            return snippet(error)
        if isinstance(body.get("message"), str):
            return snippet(body["message"])
        if isinstance(body.get("detail"), str):  # Voyage AI's {"detail": "..."}
            return snippet(body["detail"])
    return snippet(text)


def snippet(text: str, limit: int = SNIPPET_CHARS) -> str:
    """text as one short line for an error message: whitespace runs become one space, other
    control and format characters U+FFFD, and past `limit` characters it is cut with an
    ellipsis. A provider's answer may be anything (an internal service's whole page)."""
    head = text[:limit * 8]  # enough to fill the limit after collapsing whitespace
    line = " ".join(head.split())
    line = "".join("\ufffd" if unicodedata.category(c) in _UNPRINTABLE else c for c in line)
    if len(line) > limit or len(head) < len(text):
        line = line[:limit - 1].rstrip() + "\u2026"
    return line


# Builds the message of a non-transient 4xx error: (status, server message) -> message.
Refusal = Callable[[int, str], str]


def post_json(client: httpx.Client, url: str, payload: Mapping[str, Any], *, what: str,
              refusal: Refusal, sleep: Callable[[float], None] = time.sleep) -> Any:
    """POST payload as JSON and return the decoded JSON answer.

    `what` names the provider in messages ("model text-embedding-3-small at https://...").
    429s are retried here after Retry-After, within RATE_LIMIT_TRIES and RATE_LIMIT_MAX_WAIT.
    """
    # orjson writes UTF-8 as is (shorter bodies for non-English text) and, for a batch of
    # chunks, about 80 times faster than json.dumps: the worker's per-chunk cost (issue 16).
    body = orjson.dumps(payload)
    return request_json(client, "POST", url, body, what=what, refusal=refusal, sleep=sleep)[1]


def request_json(client: httpx.Client, method: str, url: str, body: bytes | None = None, *,
                 what: str, refusal: Refusal,
                 sleep: Callable[[float], None] = time.sleep) -> tuple[int, Any]:
    """(status, decoded JSON answer) of a 2xx answer; errors as post_json raises them."""
    headers = {"Content-Type": "application/json"} if body is not None else {}
    waited = 0.0
    attempt = 0
    while True:
        attempt += 1
        try:
            response = client.request(method, url, content=body, headers=headers)
        except httpx.TimeoutException as exc:
            raise EmbeddingError(f"{what}: no answer from {url} within the timeout "
                                 f"({type(exc).__name__}; set {TIMEOUT_ENV} to change it)",
                                 transient=True, cause=UNREACHABLE) from exc
        except httpx.HTTPError as exc:
            raise EmbeddingError(f"{what}: request to {url} failed: {exc!r}",
                                 transient=True, cause=UNREACHABLE) from exc
        status = response.status_code
        if status == 429:
            hint = parse_retry_after(response.headers.get("retry-after"))
            wait = hint if hint is not None else RATE_LIMIT_FIRST_WAIT * 2 ** (attempt - 1)
            if attempt == RATE_LIMIT_TRIES or waited + wait > RATE_LIMIT_MAX_WAIT:
                raise EmbeddingError(
                    f"{what}: rate limited by {url} ({server_message(response)}); "
                    f"gave up after {attempt} request(s) and {waited:.1f} s of waiting",
                    transient=True, status=429, retry_after=wait)
            logger.info("%s: rate limited (429), retrying in %.2f s", what, wait)
            sleep(wait)
            waited += wait
            continue
        if status >= 500:
            raise EmbeddingError(f"{what}: server error {status} from {url}: "
                                 f"{server_message(response)}", transient=True, status=status)
        if status in (401, 403):
            # The key (or its absence) is wrong for every text: no row is to blame, so the
            # vectorizer stops with its queue untouched until the configuration is fixed.
            raise ConfigError(refusal(status, server_message(response)))
        if status >= 400:
            raise EmbeddingError(refusal(status, server_message(response)),
                                 transient=False, status=status)
        try:
            return status, decode_json(response.content)
        except ValueError as exc:
            raise EmbeddingError(f"{what}: {url} answered {status} with a body that is not JSON",
                                 transient=True, status=status, cause=SERVER_ERROR) from exc


def key_refusal(what: str, key_name: str) -> Refusal:
    """The refusal messages of a provider whose key comes from the variable key_name."""
    def refusal(status: int, message: str) -> str:
        if status in (401, 403):
            return f"{what} refused the API key from {key_name} ({status}): {message}"
        return f"{what} refused the request ({status}): {message}"
    return refusal


def number_vector(what: str, embedding: Any) -> np.ndarray:
    """An embedding answered as a list of numbers, as float32; ProviderError otherwise."""
    try:
        vector = np.asarray(embedding, dtype=np.float32)
    except (ValueError, TypeError) as exc:
        raise ProviderError(f"{what} answered with an embedding that cannot be decoded: "
                            f"{snippet(str(exc))}") from exc
    if vector.ndim != 1:
        raise ProviderError(f"{what} answered with an embedding that is not a flat list of "
                            f"numbers")
    return vector


def decode_json(content: bytes) -> Any:
    """A JSON answer. orjson parses an answer of 500 base64 vectors in half json's time; it
    refuses NaN and Infinity, which are not JSON (json.loads takes them), as not JSON."""
    return orjson.loads(content)


def base64_or_number_vector(what: str, embedding: Any) -> np.ndarray:
    """An OpenAI-style embedding: base64 of little-endian float32 (encoding_format base64,
    whatever this machine's byte order), or a list of numbers from a server that ignored it."""
    if not isinstance(embedding, str):
        return number_vector(what, embedding)
    try:
        try:
            # pybase64's SIMD decoder: 5-7 times faster than the standard library's, which was
            # a sixth of the worker's CPU with 768-float vectors (issue 16's profile).
            raw = pybase64.b64decode(embedding, validate=True)
        except binascii.Error:
            # Not strict base64 (line breaks, say): decoded as base64.b64decode would, which
            # skips characters outside the alphabet, and fails the same way where it fails.
            raw = pybase64.b64decode(embedding)
        return np.frombuffer(raw, dtype="<f4")
    except (binascii.Error, ValueError) as exc:
        raise ProviderError(f"{what} answered with an embedding that cannot be "
                            f"decoded: {snippet(str(exc))}") from exc


def decode_data(body: Any, n: int, dimensions: int, what: str,
                vector_of: Callable[[Any], np.ndarray]) -> np.ndarray:
    """The (n, dimensions) float32 vectors of an answer shaped like OpenAI's
    {"data": [{"index": i, "embedding": ...}]} (OpenAI, Voyage), in the texts' order;
    vector_of decodes one embedding. ProviderError when the answer does not fit the request."""
    data = body.get("data") if isinstance(body, dict) else None
    if not isinstance(data, list) or len(data) != n:
        raise count_error(what, len(data) if isinstance(data, list) else "no", n)
    out = np.empty((n, dimensions), dtype=np.float32)
    filled = np.zeros(n, dtype=bool)
    for position, item in enumerate(data):
        index = item.get("index", position) if isinstance(item, dict) else None
        if not isinstance(index, int) or not 0 <= index < n or filled[index]:
            raise ProviderError(f"{what} answered with a bad or repeated index "
                                f"{snippet(repr(index))}")
        vector = vector_of(item.get("embedding"))
        if vector.shape[0] != dimensions:
            raise dimension_error(what, vector.shape[0], dimensions)
        out[index] = vector
        filled[index] = True
    return out


def dimension_error(what: str, got: int, expected: int) -> ProviderError:
    """The error for vectors of the wrong size: a configuration mistake, no text's fault."""
    return ProviderError(f"{what} returned {got}-dimensional vectors; the vectorizer expects "
                         f"{expected} (fix the dimensions in its embedding config or the model)")


def count_error(what: str, got: int | str, expected: int) -> ProviderError:
    """The error for an answer with more or fewer vectors than texts sent."""
    return ProviderError(f"{what} answered with {got} embeddings for {expected} texts; a "
                         f"provider must return one per text (is base_url an embeddings API?)")


def batch_ranges(texts: Sequence[str], max_count: int, max_bytes: int) -> Iterator[tuple[int, int]]:
    """(start, end) ranges of texts, in order, each within max_count texts and max_bytes of UTF-8.

    A single text over max_bytes still gets a request of its own: the server, not this client,
    says whether it is too long.
    """
    start = 0
    size = 0
    for i, text in enumerate(texts):
        # len() is the UTF-8 size for ASCII; encoding only the rest keeps this cheap.
        nbytes = len(text) if text.isascii() else len(text.encode("utf-8"))
        if i > start and (i - start >= max_count or size + nbytes > max_bytes):
            yield start, i
            start, size = i, 0
        size += nbytes
    if start < len(texts):
        yield start, len(texts)


class BatchedHTTPEmbedder:
    """What the HTTP embedders share: texts split into requests within the provider's limits,
    answers stacked in order, one pooled client. A subclass sets dimensions, _client,
    max_inputs (texts per request) and max_request_bytes (UTF-8 bytes, standing for tokens),
    and sends one request in _request."""

    dimensions: int
    max_inputs: int
    max_request_bytes: int
    _client: httpx.Client

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """float32 (len(texts), dimensions); several requests when texts exceed the limits."""
        out = np.empty((len(texts), self.dimensions), dtype=np.float32)
        for start, end in batch_ranges(texts, self.max_inputs, self.max_request_bytes):
            out[start:end] = self._request(texts[start:end])
        return out

    def close(self) -> None:
        """Close the pooled connections."""
        self._client.close()

    def _request(self, texts: Sequence[str]) -> np.ndarray:
        raise NotImplementedError
