"""The gpu-worker command line (pgvectorizer.cli_gpu): settings from flags and env, exit codes."""

from __future__ import annotations

import argparse
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from pgvectorizer import cli_gpu

from tests.helpers.gpu_fakes import MODEL, FakeBackend

ENV_NAMES = ("SERVER_URL", "WORKER_TOKEN", "AUTH_TOKEN", "EMBEDDING_BACKEND", "EMBEDDING_MODEL",
             "EMBEDDING_DEVICE", "POLL_INTERVAL", "OLLAMA_HOST")


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in ENV_NAMES:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="gpu-worker")
    cli_gpu.add_arguments(parser)
    return parser.parse_args(argv)


def test_settings_defaults_env_and_flags(clean_env: pytest.MonkeyPatch) -> None:
    env = {"SERVER_URL": "http://q:8000/v1", "AUTH_TOKEN": "client", "WORKER_TOKEN": "worker",
           "EMBEDDING_MODEL": "m1, m2,", "EMBEDDING_DEVICE": "CUDA:1", "POLL_INTERVAL": "0.5",
           "EMBEDDING_BACKEND": "ollama", "OLLAMA_HOST": "gpu:11434"}
    s = cli_gpu.resolve_settings(parse([]), env)
    assert (s.server, s.token, s.models, s.device, s.poll_interval, s.backend, s.ollama_url) == (
        "http://q:8000", "worker", ["m1", "m2"], "cuda:1", 0.5, "ollama", "gpu:11434")
    assert (s.max_tasks, s.max_texts, s.wait_seconds, s.batch_size) == (64, 4096, 20.0, None)
    s = cli_gpu.resolve_settings(parse(["--server", "https://x", "--token", "t", "--model", "a",
                                        "--model", "b", "--device", "cpu", "--batch-size", "8",
                                        "--wait", "0", "--poll-interval", "3",
                                        "--backend", "sentence_transformers"]), env)
    assert (s.server, s.token, s.models, s.device, s.batch_size, s.wait_seconds,
            s.poll_interval, s.backend) == (
        "https://x", "t", ["a", "b"], "cpu", 8, 0.0, 3.0, "sentence-transformers")
    s = cli_gpu.resolve_settings(parse([]), {"SERVER_URL": "http://q", "AUTH_TOKEN": "client"})
    assert (s.token, s.models, s.device, s.backend, s.poll_interval) == (
        "client", ["all-MiniLM-L6-v2"], "auto", "sentence-transformers", 2.0)


@pytest.mark.parametrize(("env", "argv", "named"), [
    ({}, ["--token", "t"], "SERVER_URL"),
    ({"SERVER_URL": "http://q"}, [], "WORKER_TOKEN"),
    ({"SERVER_URL": "q:8000", "WORKER_TOKEN": "t"}, [], "SERVER_URL"),
    ({"SERVER_URL": "http://q", "WORKER_TOKEN": "t", "POLL_INTERVAL": "soon"}, [], "POLL_INTERVAL"),
    ({"SERVER_URL": "http://q", "WORKER_TOKEN": "t", "EMBEDDING_BACKEND": "trt"}, [],
     "EMBEDDING_BACKEND"),
    ({"SERVER_URL": "http://q", "WORKER_TOKEN": "t", "EMBEDDING_DEVICE": "tpu"}, [],
     "EMBEDDING_DEVICE"),
])
def test_bad_settings_exit_2(clean_env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
                             env: dict[str, str], argv: list[str], named: str) -> None:
    for name, value in env.items():
        clean_env.setenv(name, value)
    assert cli_gpu.run(parse(argv)) == 2
    assert named in capsys.readouterr().err


@pytest.mark.parametrize("argv", [["--max-tasks", "1025"], ["--wait", "61"], ["--device", "tpu"],
                                  ["--poll-interval", "0"], ["--backend", "onnx"]])
def test_bad_flags_exit_2(argv: list[str]) -> None:
    with pytest.raises(SystemExit) as info:
        parse(argv)
    assert info.value.code == 2


class RefusingService(BaseHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        body = json.dumps({"error": {"message": "Incorrect bearer token"}}).encode()
        self.send_response(401)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def test_refused_token_exits_1_with_one_line(clean_env: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), RefusingService)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    backend = FakeBackend()
    clean_env.setattr(cli_gpu, "load_backend", lambda settings: backend)
    try:
        code = cli_gpu.run(parse(["--server", f"http://127.0.0.1:{server.server_address[1]}",
                                  "--token", "wrong", "--model", MODEL]))
    finally:
        server.shutdown()
        server.server_close()
    err = capsys.readouterr().err
    assert code == 1
    assert err.count("\n") == 1 and "refused the worker token" in err and "401" in err
    assert backend.closed
