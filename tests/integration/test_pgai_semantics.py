"""pgai's names and small semantics in the SQL API, against real Postgres with real roles.

ai.vectorizer_queue_pending by name, the ai.grant_to_default setting read by ai.grant_to, and a
grant_to role that does not exist (warned about and skipped, as pgai does).
"""

from __future__ import annotations

from collections.abc import Callable

import psycopg
import pytest
from psycopg import sql

from tests.helpers.db import create_vectorizer, scalar

Role = tuple[str, str]


def test_queue_pending_by_name_counts_as_by_id(db: psycopg.Connection) -> None:
    db.execute("CREATE TABLE doc (id int PRIMARY KEY, body text)")
    vid = create_vectorizer(db, "doc", name="'docs_vec'", scheduling="ai.scheduling_none()",
                            indexing="ai.indexing_none()")
    db.execute("INSERT INTO doc SELECT g, 'text ' || g FROM generate_series(1, 5) AS g")
    db.execute("UPDATE doc SET body = body || '!' WHERE id <= 2")  # queued again: still 5 keys
    # The quick count counts queue rows (7), the exact one distinct keys (5), as by id.
    assert scalar(db, "SELECT ai.vectorizer_queue_pending('docs_vec')") == 7
    assert scalar(db, "SELECT ai.vectorizer_queue_pending(%s)", (vid,)) == 7
    assert scalar(db, "SELECT ai.vectorizer_queue_pending('docs_vec', exact_count => true)") == 5
    assert scalar(db, "SELECT ai.vectorizer_queue_pending(%s, true)", (vid,)) == 5
    with pytest.raises(psycopg.errors.UndefinedObject, match='vectorizer "no_such_vec" does not exist'):
        db.execute("SELECT ai.vectorizer_queue_pending('no_such_vec')")


def test_grant_to_reads_grant_to_default(db: psycopg.Connection,
                                         make_role: Callable[[str], Role]) -> None:
    reader, _ = make_role("reader")
    other, _ = make_role("other")
    assert scalar(db, "SELECT ai.grant_to('b', 'a')") == ["a", "b"]
    with db.transaction():
        db.execute(sql.SQL("SET LOCAL ai.grant_to_default = {}").format(sql.Literal(f" {reader} ,{other}")))
        assert scalar(db, "SELECT ai.grant_to()") == sorted([reader, other])
        assert scalar(db, "SELECT ai.grant_to(%s)", (reader,)) == sorted([reader, other])
        db.execute("CREATE TABLE doc (id int PRIMARY KEY, body text)")
        vid = create_vectorizer(db, "doc", scheduling="ai.scheduling_none()", indexing="ai.indexing_none()")
    granted = scalar(db, "SELECT config->'grant_to' FROM ai.vectorizer WHERE id = %s", (vid,))
    assert sorted(granted) == sorted([reader, other])
    assert scalar(db, "SELECT has_table_privilege(%s, 'doc', 'SELECT')", (reader,)) is True
    assert scalar(db, "SELECT ai.grant_to()") == []  # the setting was local to the transaction


def test_missing_grant_to_role_is_warned_and_skipped(db: psycopg.Connection,
                                                      make_role: Callable[[str], Role]) -> None:
    reader, _ = make_role("reader")
    notices: list[str] = []
    db.add_notice_handler(lambda d: notices.append(f"{d.severity}: {d.message_primary}"))
    db.execute("CREATE TABLE doc (id int PRIMARY KEY, body text)")
    vid = create_vectorizer(db, "doc", scheduling="ai.scheduling_none()", indexing="ai.indexing_none()",
                            grant_to=f"ai.grant_to({sql.quote(reader)}, 'pgvt_no_such_role_x')")
    assert any(n.startswith("WARNING: ") and "pgvt_no_such_role_x" in n and "do not exist" in n
               for n in notices), notices
    assert scalar(db, "SELECT config->'grant_to' FROM ai.vectorizer WHERE id = %s", (vid,)) == [reader]
    assert scalar(db, "SELECT has_table_privilege(%s, 'doc', 'SELECT')", (reader,)) is True
