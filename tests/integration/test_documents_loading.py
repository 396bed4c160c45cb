"""Documents loaded by ai.loading_uri and from a bytea ai.loading_column, end to end.

Real servers on loopback: an HTTP server in a thread (documents, a 404, a 503, one that never
answers, a 200 MB file made up as it is sent), moto's S3 server (reached through the settings
every AWS SDK reads), a second moto server that enforces IAM (a reader allowed one key prefix
only), files under and outside PGVECTORIZER_FILE_ROOTS; the fake OpenAI server embeds. Each bad
URI ends as a failed item naming the URI and the cause; the rest is embedded.
"""

from __future__ import annotations

import http.client
import json
import logging
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.helpers.db import create_vectorizer, failed_rows, queued, rows, scalar
from tests.helpers.worker import (
    WORKER_KEY,
    chunks_of,
    embedding,
    execute,
    run_once,
    run_worker,
)

boto3 = pytest.importorskip("boto3")
ClientError = pytest.importorskip("botocore.exceptions").ClientError
moto_server = pytest.importorskip("moto.server")

BIG = 200 * 1024 * 1024  # bytes: over the default cap, and never held in memory here
SLOW = 10.0  # seconds the never-answering path waits at most (the loader gives up after 1)
MOTO_START = 30.0  # seconds the IAM-enforcing moto server may take to answer
TEXTS = {"/a.txt": "Otters hold hands while they sleep.",
         "/b.md": "# Tides\n\nThe moon pulls the oceans twice a day."}


class _Handler(BaseHTTPRequestHandler):
    def log_message(self, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        if self.path in TEXTS:
            body = TEXTS[self.path].encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        elif self.path == "/moved":
            self.send_response(302)
            self.send_header("Location", "/a.txt")
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif self.path == "/elsewhere":
            # To the same server under another name, which the worker's setting does not list.
            self.send_response(302)
            self.send_header("Location", f"http://localhost:{self.server.server_address[1]}/a.txt")
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif self.path == "/loop":
            self.send_response(302)
            self.send_header("Location", "/loop")
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif self.path == "/busy":
            self.send_error(503, "busy")
        elif self.path == "/slow":
            time.sleep(SLOW)
            self.send_error(504)
        elif self.path in ("/big.bin", "/big-unsized.bin"):
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            if self.path == "/big.bin":
                self.send_header("Content-Length", str(BIG))
            else:
                self.close_connection = True
            self.end_headers()
            block = b"x" * (1024 * 1024)
            try:
                for _ in range(BIG // len(block)):
                    self.wfile.write(block)
            except OSError:
                pass  # the loader stopped reading, as it should
        else:
            self.send_error(404, "no such document")


@pytest.fixture(scope="module")
def http_url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def s3() -> Iterator[dict[str, str]]:
    """moto's S3 server on loopback with bucket 'docs' holding c.txt; the AWS settings."""
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    env = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
           "AWS_REGION": "us-east-1", "AWS_ENDPOINT_URL": f"http://{host}:{port}"}
    client = boto3.client("s3", endpoint_url=env["AWS_ENDPOINT_URL"], region_name="us-east-1",
                          aws_access_key_id="testing", aws_secret_access_key="testing")
    client.create_bucket(Bucket="docs")
    client.put_object(Bucket="docs", Key="notes/c.txt", Body=b"Lichens are fungi and algae together.",
                      ContentType="text/plain")
    yield env
    server.stop()


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    root = tmp_path / "allowed"
    root.mkdir()
    (root / "d.txt").write_text("Basalt columns form as lava cools.")
    outside = tmp_path / "secret.txt"
    outside.write_text("not for the vectorizer")
    (root / "link.txt").symlink_to(outside)
    return {"root": root, "outside": outside}


def _uri_table(db: psycopg.Connection, fake_url: str, uris: list[str]) -> int:
    db.execute("CREATE TABLE doc (id int PRIMARY KEY, uri text)")
    vid = create_vectorizer(db, "doc", "uri", loading="ai.loading_uri('uri', retries => 0)",
                            embedding=embedding(fake_url))
    with db.cursor() as cur:
        cur.executemany("INSERT INTO doc VALUES (%s, %s)", list(enumerate(uris, 1)))
    return vid


def _failures(db: psycopg.Connection, vid: int) -> dict[int, tuple[str, str]]:
    v = scalar(db, "SELECT row_to_json(v) FROM ai.vectorizer v WHERE id = %s", (vid,))
    got = rows(db, f'SELECT id, failure_step, error FROM "{v["queue_schema"]}"."{v["queue_failed_table"]}"')
    return {k: (step, error) for k, step, error in got}


def test_uris_load_and_bad_ones_fail_alone(db: psycopg.Connection, fake_url: str, http_url: str,
                                           s3: dict[str, str], files: dict[str, Path]) -> None:
    uris = [
        f"{http_url}/a.txt",                          # 1 http
        "s3://docs/notes/c.txt",                      # 2 s3
        f"file://{files['root']}/d.txt",              # 3 file under the roots
        f"{http_url}/moved",                          # 4 a redirect, followed
        f"{http_url}/missing.txt",                    # 5 404
        f"{http_url}/busy",                           # 6 503
        f"{http_url}/slow",                           # 7 no answer in time
        f"{http_url}/big.bin",                        # 8 200 MB, announced
        f"{http_url}/big-unsized.bin",                # 9 200 MB, no length
        "s3://docs/notes/missing.txt",                # 10 no such key
        "s3://no-such-bucket/x.txt",                  # 11 no such bucket
        f"file://{files['outside']}",                 # 12 outside the roots
        f"file://{files['root']}/../secret.txt",      # 13 .. out of the roots
        f"file://{files['root']}/link.txt",           # 14 a symlink out of the roots
        "ftp://example.invalid/e.txt",                # 15 unknown scheme
        f"{http_url}/loop",                           # 16 endless redirects
        f"{http_url}/elsewhere",                      # 17 a redirect to an unlisted private host
    ]
    vid = _uri_table(db, fake_url, uris)
    started = time.monotonic()
    # The test servers are on loopback, which the worker reaches only where it is told to.
    run_once(db, vid, **WORKER_KEY, **s3, PGVECTORIZER_FILE_ROOTS=str(files["root"]),
             PGVECTORIZER_LOAD_TIMEOUT="1", PGVECTORIZER_LOAD_PRIVATE_URLS=http_url)
    assert time.monotonic() - started < 60
    assert chunks_of(db) == {1: [TEXTS["/a.txt"]], 2: ["Lichens are fungi and algae together."],
                             3: ["Basalt columns form as lava cools."], 4: [TEXTS["/a.txt"]]}
    assert queued(db, vid) == set()
    failed = _failures(db, vid)
    assert sorted(failed) == list(range(5, 18))
    expected = {5: "HTTP 404", 6: "HTTP 503", 7: "no answer within 1 s", 8: f"{BIG} bytes",
                9: "over the limit", 10: "NoSuchKey", 11: "NoSuchBucket",
                12: "outside the directories", 13: "outside the directories",
                14: "outside the directories", 15: "unknown URI scheme 'ftp'",
                16: "more than 5 redirects", 17: "localhost is at 127.0.0.1, not a public address"}
    for k, cause in expected.items():
        step, error = failed[k]
        assert step == "loading", (k, step)
        assert uris[k - 1] in error and cause in error, (k, error)


def test_file_uris_are_refused_until_roots_are_set(db: psycopg.Connection, fake_url: str,
                                                   files: dict[str, Path]) -> None:
    vid = _uri_table(db, fake_url, [f"file://{files['root']}/d.txt"])
    run_worker(db, vid)
    (step, error), = _failures(db, vid).values()
    assert step == "loading" and "PGVECTORIZER_FILE_ROOTS" in error and "d.txt" in error, error


@pytest.mark.parametrize("path", ["worker", "indb"])
def test_a_bytea_column_is_parsed_and_embedded(db: psycopg.Connection, fake_url: str,
                                               path: str) -> None:
    db.execute("CREATE TABLE doc (id int PRIMARY KEY, body bytea)")
    vid = create_vectorizer(db, "doc", "body", embedding=embedding(fake_url))
    db.execute("INSERT INTO doc VALUES (1, convert_to('Moss grows on the north side.', 'UTF8')), "
               "(2, NULL), (3, '\\x5c78'::bytea)")
    if path == "worker":
        run_worker(db, vid)
    else:
        out = execute(db, vid)
        assert out["failed"] == 0, out
    # Row 3 holds the bytes of the text '\x': bytes, never confused with bytea's text form.
    assert chunks_of(db) == {1: ["Moss grows on the north side."], 3: ["\\x"]}
    assert failed_rows(db, vid) == [] and queued(db, vid) == set()


def test_in_database_runs_load_only_from_allowed_endpoints(db: psycopg.Connection, fake_url: str,
                                                           http_url: str) -> None:
    # The server's environment allows http://127.0.0.1:* (scripts/cluster.sh), not localhost.
    other = http_url.replace("127.0.0.1", "localhost")
    vid = _uri_table(db, fake_url, [f"{http_url}/a.txt", f"{other}/b.md"])
    out = execute(db, vid)
    assert (out["chunks"], out["failed"]) == (1, 1), out
    assert chunks_of(db) == {1: [TEXTS["/a.txt"]]}
    (step, error), = _failures(db, vid).values()
    assert step == "loading" and f"{other}/b.md" in error, error
    assert "PGVECTORIZER_ALLOWED_ENDPOINTS" in error, error


def test_aws_role_arn_is_assumed_through_sts_and_cached(s3: dict[str, str]) -> None:
    from pgvectorizer.documents import Document
    from pgvectorizer.documents.loading import Loader

    loader = Loader({"implementation": "uri", "column_name": "u",
                     "aws_role_arn": "arn:aws:iam::123456789012:role/reader"}, s3)
    doc = loader.load("s3://docs/notes/c.txt")
    assert isinstance(doc, Document) and doc.content_type == "text/plain" and doc.name == "c.txt"
    client = loader._s3
    creds = client._request_signer._credentials
    assert creds.access_key != "testing" and creds.token  # the role's, not the caller's
    assert loader.load("s3://docs/notes/c.txt") == doc and loader._s3 is client  # cached


READABLE = "Puffins mate for life."
READER_POLICY = {"Version": "2012-10-17", "Statement": [
    {"Effect": "Allow", "Action": "s3:ListBucket", "Resource": "arn:aws:s3:::docs"},
    {"Effect": "Allow", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::docs/allowed/*"}]}


def _moto_call(port: int, method: str, path: str, body: bytes | None = None) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request(method, path, body=body, headers={"Content-Type": "text/plain"})
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()


@pytest.fixture(scope="module")
def s3_iam(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """moto's S3 server enforcing IAM, with bucket 'docs' holding allowed/ok.txt and
    private/plan.txt; the AWS settings of user 'reader', who may get objects under allowed/ only.

    Its own process: moto's auth switch and its backends are global to a process, so turning IAM
    on here would also lock out the s3 fixture's server (and share its bucket 'docs').
    """
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    log = tmp_path_factory.mktemp("moto") / "server.log"
    with log.open("wb") as out:
        server = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1",
                                   "-p", str(port)], stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + MOTO_START
        while True:
            try:
                if _moto_call(port, "GET", "/moto-api/") == 200:
                    break
            except OSError:
                pass
            assert server.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        url = f"http://127.0.0.1:{port}"
        # Set up as moto's root while IAM is off (moto's default), then switch it on.
        root = {"endpoint_url": url, "region_name": "us-east-1",
                "aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
        s3 = boto3.client("s3", **root)
        s3.create_bucket(Bucket="docs")
        s3.put_object(Bucket="docs", Key="allowed/ok.txt", Body=READABLE.encode(),
                      ContentType="text/plain")
        s3.put_object(Bucket="docs", Key="private/plan.txt", Body=b"not for the reader")
        iam = boto3.client("iam", **root)
        iam.create_user(UserName="reader")
        iam.put_user_policy(UserName="reader", PolicyName="read-allowed",
                            PolicyDocument=json.dumps(READER_POLICY))
        key = iam.create_access_key(UserName="reader")["AccessKey"]
        # INITIAL_NO_AUTH_ACTION_COUNT = 0: every request from now on is signed and authorized.
        assert _moto_call(port, "POST", "/moto-api/reset-auth", b"0") == 200
        env = {"AWS_ACCESS_KEY_ID": key["AccessKeyId"],
               "AWS_SECRET_ACCESS_KEY": key["SecretAccessKey"],
               "AWS_DEFAULT_REGION": "us-east-1", "AWS_ENDPOINT_URL_S3": url}
        reader = boto3.client("s3", endpoint_url=url, region_name="us-east-1",
                              aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
                              aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"])
        with pytest.raises(ClientError, match="AccessDenied"):  # IAM is on, or nothing is tested
            reader.get_object(Bucket="docs", Key="private/plan.txt")
        yield env
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(timeout=10)


def test_an_s3_key_the_worker_may_not_read_fails_alone(db: psycopg.Connection, fake_url: str,
                                                       s3_iam: dict[str, str],
                                                       caplog: pytest.LogCaptureFixture) -> None:
    uris = ["s3://docs/allowed/ok.txt", "s3://docs/private/plan.txt"]
    vid = _uri_table(db, fake_url, uris)
    with caplog.at_level(logging.DEBUG, logger="pgvectorizer"):
        run_once(db, vid, **WORKER_KEY, **s3_iam, PGVECTORIZER_LOAD_TIMEOUT="5")
    assert chunks_of(db) == {1: [READABLE]}
    assert queued(db, vid) == set()
    failed = _failures(db, vid)
    assert sorted(failed) == [2]
    step, error = failed[2]
    assert step == "loading" and uris[1] in error and "AccessDenied" in error, error
    secret = s3_iam["AWS_SECRET_ACCESS_KEY"]
    assert all(secret not in e for _, e in failed.values())
    assert secret not in caplog.text


def test_s3_access_denied_is_not_transient(s3_iam: dict[str, str]) -> None:
    from pgvectorizer.documents import Document, DocumentError
    from pgvectorizer.documents.loading import Loader

    loader = Loader({"implementation": "uri", "column_name": "u"}, s3_iam)
    doc = loader.load("s3://docs/allowed/ok.txt")
    assert isinstance(doc, Document) and doc.data == READABLE.encode()
    # A 403 is the operator's to fix (the key's policy), like NoSuchKey: retrying the same
    # request with the same credentials gets the same answer.
    for uri, code in (("s3://docs/private/plan.txt", "AccessDenied"),
                      ("s3://docs/allowed/missing.txt", "NoSuchKey")):
        with pytest.raises(DocumentError) as e:
            loader.load(uri)
        assert e.value.step == "loading" and not e.value.transient, uri
        assert uri in str(e.value) and code in str(e.value), str(e.value)
        assert s3_iam["AWS_SECRET_ACCESS_KEY"] not in str(e.value)
