"""The installed extension: its version, and the catalog habits every install script keeps."""

from __future__ import annotations

from pathlib import Path

import psycopg

from tests.helpers.db import rows, scalar
from tests.helpers.extension import GUARD, first_statement, makefile_version


def test_installed_control_has_the_version(db: psycopg.Connection) -> None:
    assert scalar(db, "SELECT default_version FROM pg_available_extensions WHERE name = 'ai'") \
        == makefile_version()
    assert scalar(db, "SELECT extversion FROM pg_extension WHERE extname = 'ai'") == makefile_version()


def test_public_objects_have_comments(db: psycopg.Connection) -> None:
    functions = rows(db, """
        SELECT p.oid::regprocedure::text, obj_description(p.oid, 'pg_proc')
          FROM pg_proc p WHERE p.pronamespace = 'ai'::regnamespace AND p.proname NOT LIKE '\\_%'""")
    relations = rows(db, """
        SELECT c.oid::regclass::text, obj_description(c.oid, 'pg_class')
          FROM pg_class c WHERE c.relnamespace = 'ai'::regnamespace AND c.relkind IN ('r', 'p', 'v', 'm')""")
    # The sets are not empty, so a catalog query gone wrong cannot pass for "all commented".
    assert "ai.create_vectorizer(regclass,text,jsonb,jsonb,jsonb,jsonb,jsonb,jsonb,jsonb,jsonb,jsonb,name,name,name[],boolean,boolean,text)" \
        in dict(functions)
    assert {"ai.vectorizer", "ai.vectorizer_status", "ai.vectorizer_errors"} <= set(dict(relations))
    assert [name for name, comment in functions if not comment] == []
    assert [name for name, comment in relations if not comment] == []


def test_functions_pin_search_path(db: psycopg.Connection) -> None:
    functions = rows(db, """
        SELECT p.oid::regprocedure::text, p.proconfig
          FROM pg_proc p WHERE p.pronamespace = 'ai'::regnamespace""")
    assert len(functions) > 20
    unpinned = [name for name, config in functions
                if "search_path=pg_catalog, pg_temp" not in (config or [])]
    # A procedure that commits may not have a SET clause; this one pins search_path itself in
    # each transaction (test_cron.py runs it under pg_cron).
    assert unpinned == ["ai._vectorizer_job(integer)"]


# The only functions that run with the extension owner's rights: the checked catalog writers,
# the event triggers, the worker-facing reports (which check the caller may use the
# vectorizer), and the one that gives a vectorizer's owner a pg_cron job for its index.
# Trigger functions made by create_vectorizer are checked in test_triggers.
DEFINERS = {
    "ai._vectorizer_register(name,regclass,text,jsonb,name,name)",
    "ai._vectorizer_unregister(integer,boolean)",
    "ai._vectorizer_set_disabled(integer,boolean)",
    "ai._vectorizer_handle_drops()",
    "ai._vectorizer_handle_alters()",
    "ai._vectorizer_handle_ddl_start()",
    "ai._vectorizer_handle_drop_end()",
    "ai._vectorizer_index_job(integer)",
    "ai._vectorizer_report(integer,bigint,text)",
    "ai._vectorizer_record_success(integer,bigint)",
    "ai._vectorizer_record_error(integer,text,jsonb)",
    "ai._vectorizer_backfill_after(integer,boolean)",
    "ai._vectorizer_backfill_set(integer,jsonb)",
}


def test_security_definer_only_where_needed(db: psycopg.Connection) -> None:
    definers = rows(db, "SELECT p.oid::regprocedure::text, has_function_privilege('public', p.oid, 'EXECUTE') "
                        "FROM pg_proc p WHERE p.pronamespace = 'ai'::regnamespace AND p.prosecdef")
    assert {name for name, _ in definers} == DEFINERS
    assert [name for name, public in definers if public] == []


def test_installed_scripts_start_with_guard(db: psycopg.Connection) -> None:
    sharedir = Path(scalar(db, "SELECT setting FROM pg_config WHERE name = 'SHAREDIR'"))
    scripts = sorted((sharedir / "extension").glob("ai--*.sql"))
    assert sharedir / "extension" / f"ai--{makefile_version()}.sql" in scripts
    for script in scripts:
        line = first_statement(script)
        guard = GUARD if script.name.count("--") == 1 else '\\echo Use "ALTER EXTENSION ai UPDATE'
        assert line.startswith(guard) and line.endswith("\\quit"), script


def test_config_records_the_version(db: psycopg.Connection) -> None:
    db.execute("CREATE TABLE t (id int PRIMARY KEY, body text)")
    vid = scalar(db, "SELECT ai.create_vectorizer('t', loading => ai.loading_column('body'), "
                     "embedding => ai.embedding_openai('text-embedding-3-small'))")
    assert scalar(db, "SELECT config->>'version' FROM ai.vectorizer WHERE id = %s", (vid,)) \
        == makefile_version()
