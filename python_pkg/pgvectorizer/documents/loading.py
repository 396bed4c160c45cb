"""Loading: a row's loading value as text (a text column) or a Document (bytes).

loading_column on a text column hands its text on unchanged; on a bytea column the row's bytes
(read as {"base64": ...} by ai._vq_read, or bytes) become a Document. loading_uri fetches the
URI that the column holds: s3:// with boto3 (credentials, endpoint and region as every AWS SDK
reads them, so AWS, MinIO, R2 and GCS's S3 API work alike), http(s):// with httpx (streamed,
size-capped, bounded timeouts and redirects), file:// only under the directories that the
operator lists in PGVECTORIZER_FILE_ROOTS. An HTTP URI (and each redirect) must resolve to a
public address unless the operator lists it (reach.py); inside PostgreSQL (server_side) it must
pass the endpoint allow-list that the embedders use instead, so the server fetches nothing its
operator has not allowed. Every failure is a DocumentError("loading") naming the URI.
"""

from __future__ import annotations

import base64
import binascii
import os
import threading
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from ..errors import EndpointNotAllowed
from ..settings import tuning_seconds, tuning_whole
from . import Document, DocumentError
from .reach import check_public, private_urls

FILE_ROOTS_ENV = "PGVECTORIZER_FILE_ROOTS"  # os.pathsep-separated directories; empty: no file://
MAX_BYTES_ENV = "PGVECTORIZER_MAX_DOCUMENT_BYTES"
TIMEOUT_ENV = "PGVECTORIZER_LOAD_TIMEOUT"
DEFAULT_MAX_BYTES = 64 * 1024 * 1024  # bytes
DEFAULT_TIMEOUT = 30.0  # seconds, per connect/read (HTTP) or per call (S3)
MAX_REDIRECTS = 5
LOAD_THREADS = 4  # documents of one batch fetched at once
CHUNK = 1024 * 1024  # bytes read at a time
ROLE_REFRESH = 300.0  # seconds before an assumed role's credentials expire to renew them

Loaded = str | Document | None


def _step_error(message: str, *, transient: bool = False) -> DocumentError:
    return DocumentError("loading", message, transient=transient)


def _too_large(label: str, size: int | None, cap: int) -> DocumentError:
    seen = f"{size} bytes" if size is not None else f"more than {cap} bytes"
    return _step_error(f"{label}: the document is {seen}, over the limit of {cap} bytes "
                       f"({MAX_BYTES_ENV})")


class Loader:
    """Turns loading values into text or Documents for one vectorizer's loading config."""

    def __init__(self, loading: Mapping[str, Any], env: Mapping[str, str] | None = None, *,
                 server_side: bool = False) -> None:
        self.env = os.environ if env is None else env
        self.implementation = str(loading.get("implementation") or "column")
        self.role_arn: str | None = loading.get("aws_role_arn")
        self.server_side = server_side
        # A bad setting is the operator's to fix: ConfigError (naming it) stops the vectorizer.
        self.max_bytes = tuning_whole(self.env, MAX_BYTES_ENV, DEFAULT_MAX_BYTES)
        self.timeout = tuning_seconds(self.env, TIMEOUT_ENV, DEFAULT_TIMEOUT, positive=True)
        self.private_urls = private_urls(self.env) if not server_side else ()
        self.roots = tuple(Path(r).resolve() for r in
                           (self.env.get(FILE_ROOTS_ENV) or "").split(os.pathsep) if r.strip())
        self._lock = threading.Lock()
        self._http: Any = None
        self._s3: Any = None
        self._s3_expires = 0.0  # time.time() when assumed-role credentials run out

    @property
    def needed(self) -> bool:
        """Whether values may need more than passing on (False: a text loading_column)."""
        return self.implementation != "column"

    def load(self, value: Any) -> Loaded:
        """The value as text or a Document; None for no value. DocumentError otherwise."""
        if value is None:
            return None
        if self.implementation == "column":
            return _column_value(value)
        if self.implementation != "uri":
            raise _step_error(f"unknown loading implementation {self.implementation!r}")
        uri = str(value).strip()
        if not uri:
            return None
        scheme = urlsplit(uri).scheme.lower()
        if scheme in ("http", "https"):
            return self._load_http(uri)
        if scheme == "s3":
            return self._load_s3(uri)
        if scheme == "file":
            return self._load_file(uri)
        raise _step_error(f"{uri}: unknown URI scheme {scheme or '(none)'!r}; loading_uri reads "
                          "s3://, https://, http:// and file:// URIs")

    def load_many(self, values: Sequence[Any]) -> list[Loaded | DocumentError]:
        """Load every value, a few at a time; each has its own outcome, in order."""
        def one(value: Any) -> Loaded | DocumentError:
            try:
                return self.load(value)
            except DocumentError as e:
                return e
        if len(values) <= 1 or not self.needed:
            return [one(v) for v in values]
        with ThreadPoolExecutor(max_workers=min(LOAD_THREADS, len(values))) as pool:
            return list(pool.map(one, values))

    def close(self) -> None:
        if self._http is not None:
            self._http.close()
            self._http = None

    # --- file:// ---------------------------------------------------------------------------

    def _load_file(self, uri: str) -> Document:
        parts = urlsplit(uri)
        if parts.netloc not in ("", "localhost"):
            raise _step_error(f"{uri}: a file:// URI must name a local file (no host)")
        if not self.roots:
            raise _step_error(f"{uri}: file:// URIs are refused: set {FILE_ROOTS_ENV} in the "
                              "environment of the process that loads (the worker, or the "
                              "PostgreSQL server for in-database runs) to the directories it "
                              f"may read, separated by {os.pathsep!r}")
        # Symlinks and .. resolved first, so that no path leads out of the allowed roots.
        path = Path(unquote(parts.path)).resolve()
        if not any(path.is_relative_to(root) for root in self.roots):
            raise _step_error(f"{uri}: {path} is outside the directories that {FILE_ROOTS_ENV} "
                              "allows")
        try:
            with path.open("rb") as f:
                size = os.fstat(f.fileno()).st_size
                if size > self.max_bytes:
                    raise _too_large(uri, size, self.max_bytes)
                data = f.read(self.max_bytes + 1)
        except FileNotFoundError:
            raise _step_error(f"{uri}: no such file") from None
        except IsADirectoryError:
            raise _step_error(f"{uri}: is a directory, not a file") from None
        except PermissionError:
            raise _step_error(f"{uri}: permission denied") from None
        except OSError as e:
            raise _step_error(f"{uri}: cannot read it: {e.strerror or e}", transient=True) from e
        if len(data) > self.max_bytes:
            raise _too_large(uri, None, self.max_bytes)
        return Document(data, uri=uri, name=path.name)

    # --- http(s):// ------------------------------------------------------------------------

    def _client(self) -> Any:
        import httpx
        with self._lock:
            if self._http is None:
                # Redirects are followed by hand, so that each hop is checked (server side).
                self._http = httpx.Client(timeout=httpx.Timeout(self.timeout),
                                          follow_redirects=False)
            return self._http

    def _check_endpoint(self, uri: str, url: str) -> None:
        if not self.server_side:
            check_public(uri, url, self.private_urls)
            return
        from ..endpoints import check_server_endpoint
        try:
            check_server_endpoint(url, self.env)
        except EndpointNotAllowed as e:
            raise _step_error(f"{uri}: {e}") from None

    def _load_http(self, uri: str) -> Document:
        import httpx
        client = self._client()
        url = uri
        try:
            for _ in range(MAX_REDIRECTS + 1):
                self._check_endpoint(uri, url)
                with client.stream("GET", url) as response:
                    if response.is_redirect and "location" in response.headers:
                        url = str(response.url.join(response.headers["location"]))
                        continue
                    status = response.status_code
                    if status >= 400:
                        transient = status >= 500 or status in (408, 425, 429)
                        raise _step_error(f"{uri}: HTTP {status} {response.reason_phrase}",
                                          transient=transient)
                    length = response.headers.get("content-length")
                    if length and length.isdigit() and int(length) > self.max_bytes:
                        raise _too_large(uri, int(length), self.max_bytes)
                    data = bytearray()
                    for chunk in response.iter_bytes(CHUNK):
                        data += chunk
                        if len(data) > self.max_bytes:
                            raise _too_large(uri, None, self.max_bytes)
                    content_type = response.headers.get("content-type")
                    name = Path(urlsplit(str(response.url)).path).name or None
                    return Document(bytes(data), uri=uri, name=name,
                                    content_type=content_type)
        except httpx.TimeoutException:
            raise _step_error(f"{uri}: no answer within {self.timeout:g} s ({TIMEOUT_ENV})",
                              transient=True) from None
        except httpx.HTTPError as e:
            raise _step_error(f"{uri}: {type(e).__name__}: {e}", transient=True) from None
        raise _step_error(f"{uri}: more than {MAX_REDIRECTS} redirects")

    # --- s3:// -----------------------------------------------------------------------------

    def _s3_client(self) -> Any:
        try:
            import boto3  # type: ignore[import-untyped]
            from botocore.config import Config  # type: ignore[import-untyped]
        except ImportError:
            raise _step_error("s3:// URIs need boto3: pip install 'pgvectorizer[documents]' "
                              "(for in-database runs, on the PostgreSQL server)") from None
        with self._lock:
            if self._s3 is not None and (self.role_arn is None
                                         or time.time() < self._s3_expires - ROLE_REFRESH):
                return self._s3
            config = Config(connect_timeout=self.timeout, read_timeout=self.timeout,
                            retries={"max_attempts": 2, "mode": "standard"})
            # The settings every AWS SDK reads, taken from this process's settings (the
            # worker's include its .env file); what is unset is left to boto3's own chain.
            env = self.env
            region = env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION")
            endpoint = env.get("AWS_ENDPOINT_URL_S3") or env.get("AWS_ENDPOINT_URL")
            session = boto3.session.Session(
                aws_access_key_id=env.get("AWS_ACCESS_KEY_ID"),
                aws_secret_access_key=env.get("AWS_SECRET_ACCESS_KEY"),
                aws_session_token=env.get("AWS_SESSION_TOKEN"),
                region_name=region, profile_name=env.get("AWS_PROFILE"))
            if self.role_arn:
                sts_endpoint = env.get("AWS_ENDPOINT_URL_STS") or env.get("AWS_ENDPOINT_URL")
                sts = session.client("sts", config=config, endpoint_url=sts_endpoint)
                creds = sts.assume_role(RoleArn=self.role_arn,
                                        RoleSessionName="pgvectorizer")["Credentials"]
                session = boto3.session.Session(
                    aws_access_key_id=creds["AccessKeyId"],
                    aws_secret_access_key=creds["SecretAccessKey"],
                    aws_session_token=creds["SessionToken"], region_name=region)
                self._s3_expires = creds["Expiration"].timestamp()
            self._s3 = session.client("s3", config=config, endpoint_url=endpoint)
            return self._s3

    def _load_s3(self, uri: str) -> Document:
        from botocore.exceptions import BotoCoreError, ClientError  # type: ignore[import-untyped]
        parts = urlsplit(uri)
        bucket, key = parts.netloc, parts.path.lstrip("/")
        if not bucket or not key:
            raise _step_error(f"{uri}: an s3:// URI names a bucket and a key (s3://bucket/key)")
        try:
            client = self._s3_client()
            if self.server_side:
                self._check_endpoint(uri, client.meta.endpoint_url)
            obj = client.get_object(Bucket=bucket, Key=key)
            size = obj.get("ContentLength")
            body = obj["Body"]
            try:
                if size is not None and size > self.max_bytes:
                    raise _too_large(uri, size, self.max_bytes)
                data = body.read(self.max_bytes + 1)
            finally:
                body.close()
        except ClientError as e:
            err = e.response.get("Error", {})
            code = str(err.get("Code") or "")
            status = int(e.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
            transient = status >= 500 or status == 429 or code in (
                "SlowDown", "Throttling", "ThrottlingException", "RequestTimeout",
                "InternalError", "ServiceUnavailable")
            raise _step_error(f"{uri}: {code or status}: {err.get('Message') or e}",
                              transient=transient) from None
        except BotoCoreError as e:
            # No credentials or region is the operator's to fix; a connection failure may pass.
            name = type(e).__name__
            transient = "Connect" in name or "Timeout" in name or "Endpoint" in name
            raise _step_error(f"{uri}: {name}: {e}", transient=transient) from None
        if len(data) > self.max_bytes:
            raise _too_large(uri, None, self.max_bytes)
        return Document(data, uri=uri, name=Path(key).name or None,
                        content_type=obj.get("ContentType"))


def _column_value(value: Any) -> Loaded:
    """A loading_column value: text as it is, bytes (a bytea column) as a Document."""
    if isinstance(value, str):
        return value
    if isinstance(value, (bytes, bytearray, memoryview)):
        return Document(bytes(value))
    if isinstance(value, Mapping) and "base64" in value:
        if value["base64"] is None:
            return None
        try:
            return Document(base64.b64decode(str(value["base64"])))
        except (binascii.Error, ValueError) as e:
            raise _step_error(f"bytea document: cannot decode it: {e}") from None
    return str(value)


