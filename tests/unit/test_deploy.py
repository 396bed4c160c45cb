"""deploy/: the compose file and Dockerfiles, checked by reading them (no Docker here).

Every command must parse with our own CLI, every setting must be one the service reads, the
services must point at each other's names and ports, and every COPY source must exist.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from pgvectorizer.cli import build_parser
from pgvectorizer.service.settings import VARIABLES

from tests.helpers import REPO

DEPLOY = REPO / "deploy"


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return dict(yaml.safe_load((DEPLOY / "docker-compose.yml").read_text()))


def test_the_four_services_are_there(compose: dict[str, Any]) -> None:
    assert set(compose["services"]) == {"db", "queue", "worker", "gpu-worker"}


@pytest.mark.parametrize("name", ["queue", "worker", "gpu-worker"])
def test_each_command_parses_with_our_cli(compose: dict[str, Any], name: str) -> None:
    command = compose["services"][name]["command"]
    assert command[0] == "pgvectorizer"
    try:
        build_parser().parse_args(command[1:])
    except SystemExit as exc:
        pytest.fail(f"{name}: {command} does not parse ({exc})")


def test_the_service_reads_every_setting_it_is_given(compose: dict[str, Any]) -> None:
    env = compose["services"]["queue"]["environment"]
    assert set(env) <= set(VARIABLES), set(env) - set(VARIABLES)
    assert env["SERVER_HOST"] == "0.0.0.0"  # reachable from the other containers


def test_the_services_point_at_each_other(compose: dict[str, Any]) -> None:
    services = compose["services"]
    port = services["queue"]["environment"]["SERVER_PORT"]
    assert f"{port}:{port}" in services["queue"]["ports"]
    command = services["gpu-worker"]["command"]
    server = urlsplit(command[command.index("--server") + 1])
    assert (server.hostname, str(server.port)) == ("queue", port)
    db_url = urlsplit(services["worker"]["environment"]["PGAI_VECTORIZER_WORKER_DB_URL"])
    dbname = services["db"]["environment"]["POSTGRES_DB"]
    assert (server.scheme, db_url.hostname, db_url.path) == ("http", "db", f"/{dbname}")
    assert f"cron.database_name={dbname}" in services["db"]["command"]
    worker = services["worker"]["environment"]
    assert worker["QUEUE_API_KEY"] == "${AUTH_TOKEN}"
    assert worker["PGVECTORIZER_KEY_ENDPOINTS"] == f"QUEUE_API_KEY=http://queue:{port}/v1"


def test_env_example_names_every_variable_the_file_uses() -> None:
    text = (DEPLOY / "docker-compose.yml").read_text()
    used = set(re.findall(r"\$\{([A-Z_]+)", text))
    example = {line.split("=", 1)[0] for line in (DEPLOY / "env.example").read_text().splitlines()
               if line and not line.startswith("#")}
    assert used <= example, used - example


def test_dockerfiles_exist_and_copy_what_the_repository_has(compose: dict[str, Any]) -> None:
    files = {s["build"]["dockerfile"] for s in compose["services"].values() if "build" in s}
    assert files == {"deploy/Dockerfile.postgres", "deploy/Dockerfile.python",
                     "deploy/Dockerfile.gpu"}
    for name in files:
        text = (REPO / name).read_text()
        assert re.search(r"^FROM \S+", text, re.MULTILINE), name
        for line in re.findall(r"^COPY (.+)$", text, re.MULTILINE):
            *sources, _target = line.split()
            for source in sources:
                assert (REPO / source).exists(), f"{name}: COPY {source}: not in the repository"
