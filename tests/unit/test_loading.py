"""documents/loading.py without a database: column values, file:// roots, limits, refusals.

HTTP and S3 against real servers on loopback: tests/integration/test_documents_loading.py.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from pgvectorizer.documents import Document, DocumentError
from pgvectorizer.documents.loading import (
    FILE_ROOTS_ENV,
    MAX_BYTES_ENV,
    TIMEOUT_ENV,
    Loader,
)
from pgvectorizer.documents.reach import PRIVATE_URLS_ENV
from pgvectorizer.errors import ConfigError

URI = {"implementation": "uri", "column_name": "u"}
COLUMN = {"implementation": "column", "column_name": "c"}
LOOPBACK = {PRIVATE_URLS_ENV: "http://127.0.0.1:*"}  # the test servers' address, listed


class _Handler(BaseHTTPRequestHandler):
    def log_message(self, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        body = b"y" * 2048
        self.send_response(200)
        if self.path != "/unsized":
            self.send_header("Content-Length", str(len(body)))
        else:
            self.close_connection = True
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture(scope="module")
def http_url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_column_values() -> None:
    loader = Loader(COLUMN, {})
    assert not loader.needed
    assert loader.load("some text") == "some text"
    assert loader.load(None) is None
    assert loader.load(b"\x00\x01") == Document(b"\x00\x01")
    assert loader.load({"base64": "aGk="}) == Document(b"hi")
    assert loader.load({"base64": None}) is None
    with pytest.raises(DocumentError, match="cannot decode"):
        loader.load({"base64": "a"})


def test_file_roots(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    (root / "a.txt").write_bytes(b"inside")
    (tmp_path / "b.txt").write_bytes(b"outside")
    (root / "link").symlink_to(tmp_path / "b.txt")
    with pytest.raises(DocumentError, match=FILE_ROOTS_ENV) as refused:
        Loader(URI, {}).load(f"file://{root}/a.txt")
    assert not refused.value.transient and refused.value.step == "loading"
    loader = Loader(URI, {FILE_ROOTS_ENV: f"/nonexistent{os.pathsep}{root}"})
    doc = loader.load(f"file://{root}/a.txt")
    assert isinstance(doc, Document) and doc.data == b"inside" and doc.name == "a.txt"
    for uri in (f"file://{root}/../b.txt", f"file://{root}/link", f"file://{tmp_path}/b.txt"):
        with pytest.raises(DocumentError, match="outside the directories"):
            loader.load(uri)
    with pytest.raises(DocumentError, match="no such file"):
        loader.load(f"file://{root}/missing.txt")
    with pytest.raises(DocumentError, match="no host"):
        loader.load(f"file://elsewhere{root}/a.txt")
    small = Loader(URI, {FILE_ROOTS_ENV: str(root), MAX_BYTES_ENV: "3"})
    with pytest.raises(DocumentError, match="6 bytes, over the limit of 3 bytes"):
        small.load(f"file://{root}/a.txt")


def test_unknown_scheme_and_bad_s3_uri() -> None:
    loader = Loader(URI, {})
    with pytest.raises(DocumentError, match="unknown URI scheme 'gopher'") as e:
        loader.load("gopher://example.invalid/x")
    assert not e.value.transient
    with pytest.raises(DocumentError, match="unknown URI scheme '\\(none\\)'"):
        loader.load("just words")
    with pytest.raises(DocumentError, match="s3://bucket/key"):
        loader.load("s3://bucket-only")
    assert loader.load("  ") is None


def test_http_size_cap(http_url: str) -> None:
    loader = Loader(URI, {MAX_BYTES_ENV: "1024", **LOOPBACK})
    with pytest.raises(DocumentError, match="2048 bytes, over the limit of 1024"):
        loader.load(f"{http_url}/sized")
    with pytest.raises(DocumentError, match="more than 1024 bytes"):
        loader.load(f"{http_url}/unsized")
    doc = Loader(URI, LOOPBACK).load(f"{http_url}/sized.txt")
    assert isinstance(doc, Document) and len(doc.data) == 2048 and doc.name == "sized.txt"


def test_server_side_needs_an_allowed_endpoint(http_url: str) -> None:
    refused = Loader(URI, {}, server_side=True)
    with pytest.raises(DocumentError, match="PGVECTORIZER_ALLOWED_ENDPOINTS") as e:
        refused.load(f"{http_url}/sized")
    assert f"{http_url}/sized" in str(e.value)
    allowed = Loader(URI, {"PGVECTORIZER_ALLOWED_ENDPOINTS": "http://127.0.0.1:*"},
                     server_side=True)
    assert isinstance(allowed.load(f"{http_url}/sized"), Document)


@pytest.mark.parametrize("url", [
    "http://127.0.0.1:{port}/sized", "http://localhost:{port}/sized", "http://[::1]:{port}/sized",
    "http://[::ffff:127.0.0.1]:{port}/sized", "http://169.254.169.254/latest/meta-data/",
    "http://10.1.2.3/x", "https://192.168.0.1/x", "http://100.64.0.1/x", "http://0.0.0.0/x",
])
def test_the_worker_fetches_only_public_addresses_unless_listed(http_url: str, url: str) -> None:
    # The address is checked before any connection, so none of these is ever reached.
    uri = url.format(port=http_url.rsplit(":", 1)[1])
    with pytest.raises(DocumentError, match=f"not a public address.*{PRIVATE_URLS_ENV}") as e:
        Loader(URI, {}).load(uri)
    assert e.value.step == "loading" and not e.value.transient and uri in str(e.value)


def test_listed_private_urls_and_their_redirects(http_url: str) -> None:
    port = http_url.rsplit(":", 1)[1]
    assert isinstance(Loader(URI, {PRIVATE_URLS_ENV: f"http://127.0.0.1:{port}/sized"}).load(
        f"{http_url}/sized"), Document)
    # Listed by path: another path on the same server is not.
    with pytest.raises(DocumentError, match="not a public address"):
        Loader(URI, {PRIVATE_URLS_ENV: f"http://127.0.0.1:{port}/sized"}).load(f"{http_url}/unsized")
    with pytest.raises(ConfigError, match=PRIVATE_URLS_ENV):
        Loader(URI, {PRIVATE_URLS_ENV: "intranet:8080"}).load(f"{http_url}/sized")


def test_load_many_keeps_order_and_outcomes(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_bytes(b"a")
    loader = Loader(URI, {FILE_ROOTS_ENV: str(tmp_path)})
    out = loader.load_many([f"file://{tmp_path}/a.txt", "nope://x", None,
                            f"file://{tmp_path}/missing"] * 3)
    assert [type(x).__name__ for x in out[:4]] == ["Document", "DocumentError", "NoneType",
                                                   "DocumentError"]
    assert [type(x) for x in out] == [type(x) for x in out[:4]] * 3


@pytest.mark.parametrize(("name", "value"), [(MAX_BYTES_ENV, "lots"), (MAX_BYTES_ENV, "0"),
                                             (TIMEOUT_ENV, "-1"), (TIMEOUT_ENV, "soon")])
def test_a_bad_setting_is_named_not_ignored(name: str, value: str) -> None:
    # The operator's mistake stops the vectorizer with the setting's name, rather than
    # loading with a limit nobody chose.
    with pytest.raises(ConfigError, match=name):
        Loader(URI, {name: value})
