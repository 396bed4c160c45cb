"""The queue service's settings from the environment (pgvectorizer.service.settings)."""

from __future__ import annotations

import pytest
from pgvectorizer.defaults import LOCAL_MODEL
from pgvectorizer.errors import ConfigError
from pgvectorizer.service.settings import DEFAULT_DB_PATH, settings_from_env


def test_settings_need_auth_token() -> None:
    for env in ({}, {"AUTH_TOKEN": ""}, {"AUTH_TOKEN": "   ", "WORKER_TOKEN": "w"}):
        with pytest.raises(ConfigError, match="AUTH_TOKEN is not set"):
            settings_from_env(env)


def test_settings_defaults_and_derived_values() -> None:
    s = settings_from_env({"AUTH_TOKEN": " secret "})
    assert (s.auth_token, s.worker_token) == ("secret", "secret")
    assert (s.default_model, s.models) == (LOCAL_MODEL, (LOCAL_MODEL,))
    assert (s.host, s.port, s.db_path, s.database_url) == ("127.0.0.1", 8000, DEFAULT_DB_PATH,
                                                           None)
    assert (s.lease_seconds, s.max_attempts, s.result_retention, s.max_request_bytes,
            s.max_inputs, s.max_wait_seconds) == (10.0, 3, 3600.0, 8 * 1024 * 1024, 2048, 30.0)
    assert s.sync_wait == 30.0
    assert (s.pending_timeout, s.dimensions_models, s.recheck) == (86400.0, (), 5.0)
    s = settings_from_env({"AUTH_TOKEN": "secret", "WORKER_TOKEN": "gpu",
                           "DIMENSIONS_MODELS": "e5, ,gte", "PENDING_TIMEOUT": "60",
                           "EMBEDDING_MODEL": "bge-m3", "MODELS": " e5, bge-m3,, gte ,e5",
                           "LEASE_SECONDS": "2.5", "MAX_ATTEMPTS": "5", "SERVER_PORT": "9000",
                           "DATABASE_URL": "postgresql://x/y", "MAX_INPUTS": "10"})
    assert (s.auth_token, s.worker_token) == ("secret", "gpu")
    assert (s.default_model, s.models) == ("bge-m3", ("bge-m3", "e5", "gte"))
    assert (s.lease_seconds, s.max_attempts, s.port, s.max_inputs) == (2.5, 5, 9000, 10)
    assert s.store_description == "PostgreSQL (DATABASE_URL)"
    assert (s.dimensions_models, s.pending_timeout, s.recheck) == (("e5", "gte"), 60.0, 0.5)


def test_the_sync_wait_follows_max_wait_unless_set() -> None:
    s = settings_from_env({"AUTH_TOKEN": "t", "MAX_WAIT_SECONDS": "12"})
    assert (s.max_wait_seconds, s.sync_wait) == (12.0, 12.0)
    s = settings_from_env({"AUTH_TOKEN": "t", "MAX_WAIT_SECONDS": "12", "SYNC_WAIT_SECONDS": "50"})
    assert (s.max_wait_seconds, s.sync_wait) == (12.0, 50.0)


@pytest.mark.parametrize(("name", "value", "problem"), [
    ("LEASE_SECONDS", "soon", "is not a number"),
    ("LEASE_SECONDS", "0.5", "is less than 1"),
    ("MAX_ATTEMPTS", "2.5", "is not a whole number"),
    ("MAX_ATTEMPTS", "0", "is less than 1"),
    ("SERVER_PORT", "http", "is not a number"),
    ("RESULT_RETENTION", "-1", "is less than 0"),
    ("MAX_REQUEST_BYTES", "100", "is less than 1024"),
    ("MAX_INPUTS", "many", "is not a number"),
    ("MAX_WAIT_SECONDS", "-5", "is less than 0"),
    ("SYNC_WAIT_SECONDS", "-1", "is less than 0"),
    ("PENDING_TIMEOUT", "0", "is less than 1"),
])
def test_settings_name_a_bad_number(name: str, value: str, problem: str) -> None:
    with pytest.raises(ConfigError) as caught:
        settings_from_env({"AUTH_TOKEN": "t", name: value})
    assert str(caught.value) == f"{name}={value!r} {problem}"


@pytest.mark.parametrize(("name", "value"), [("LEASE_SECONDS", "nan"), ("LEASE_SECONDS", "inf"),
                                             ("MAX_ATTEMPTS", "inf"), ("MAX_ATTEMPTS", "nan"),
                                             ("MAX_WAIT_SECONDS", "nan")])
def test_settings_refuse_numbers_that_are_not_finite(name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=name):
        settings_from_env({"AUTH_TOKEN": "t", name: value})
