"""What a database holds of pgvectorizer, as plain data to compare two databases by: the
functions with their definitions and settings, relations, columns, indexes, constraints,
triggers with their WHEN clauses, views, grants, comments, event triggers, pg_cron jobs, the
extension's members and the vectorizers' catalog rows. Object ids and times are left out, so an upgraded database and
a fresh one compare equal when they hold the same things."""

from __future__ import annotations

from typing import Any

import psycopg

# Schemas to look at: ai, and every schema a vectorizer has objects in.
_SCHEMAS = """
SELECT array_agg(DISTINCT s) FROM (
    SELECT 'ai'::text AS s
    UNION SELECT source_schema FROM ai.vectorizer
    UNION SELECT queue_schema FROM ai.vectorizer
    UNION SELECT config->'destination'->>'target_schema' FROM ai.vectorizer
    UNION SELECT config->'destination'->>'view_schema' FROM ai.vectorizer) AS x WHERE s IS NOT NULL
"""

QUERIES: dict[str, str] = {
    "functions": """
        SELECT p.oid::regprocedure::text, l.lanname, p.prosecdef, p.provolatile, p.proisstrict,
               p.proparallel, p.proconfig, pg_get_userbyid(p.proowner), p.proacl::text,
               obj_description(p.oid, 'pg_proc'), pg_get_function_result(p.oid),
               pg_get_function_arguments(p.oid), p.prosrc, pg_get_function_sqlbody(p.oid)
          FROM pg_proc p JOIN pg_language l ON l.oid = p.prolang
         WHERE p.pronamespace::regnamespace::text = ANY (%(schemas)s)""",
    "relations": """
        SELECT c.oid::regclass::text, c.relkind, c.reloptions, pg_get_userbyid(c.relowner),
               c.relacl::text, obj_description(c.oid, 'pg_class'), c.relpersistence
          FROM pg_class c WHERE c.relnamespace::regnamespace::text = ANY (%(schemas)s)
           AND c.relkind IN ('r', 'p', 'v', 'm', 'S')""",
    "columns": """
        SELECT a.attrelid::regclass::text, a.attname, format_type(a.atttypid, a.atttypmod),
               a.attnotnull, pg_get_expr(d.adbin, d.adrelid), a.attidentity, a.attgenerated,
               a.attacl::text, col_description(a.attrelid, a.attnum), a.attstorage
          FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
          LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
         WHERE c.relnamespace::regnamespace::text = ANY (%(schemas)s)
           AND c.relkind IN ('r', 'p', 'v') AND a.attnum > 0 AND NOT a.attisdropped""",
    "indexes": """
        SELECT i.indexrelid::regclass::text, pg_get_indexdef(i.indexrelid)
          FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid
         WHERE c.relnamespace::regnamespace::text = ANY (%(schemas)s)""",
    "constraints": """
        SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid)
          FROM pg_constraint WHERE connamespace::regnamespace::text = ANY (%(schemas)s)""",
    "triggers": """
        SELECT t.tgrelid::regclass::text, t.tgname, pg_get_triggerdef(t.oid), t.tgenabled
          FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
         WHERE NOT t.tgisinternal AND c.relnamespace::regnamespace::text = ANY (%(schemas)s)""",
    "views": """
        SELECT c.oid::regclass::text, pg_get_viewdef(c.oid)
          FROM pg_class c WHERE c.relkind = 'v' AND c.relnamespace::regnamespace::text = ANY (%(schemas)s)""",
    "schemas": """
        SELECT nspname, pg_get_userbyid(nspowner), nspacl::text, obj_description(oid, 'pg_namespace')
          FROM pg_namespace WHERE nspname = ANY (%(schemas)s)""",
    "event_triggers": """
        SELECT evtname, evtevent, evtfoid::regproc::text, evttags, evtenabled, pg_get_userbyid(evtowner)
          FROM pg_event_trigger""",
    "extension_members": """
        SELECT pg_describe_object(classid, objid, objsubid) FROM pg_depend
         WHERE refclassid = 'pg_extension'::regclass AND deptype = 'e'
           AND refobjid = (SELECT oid FROM pg_extension WHERE extname = 'ai')""",
    "vectorizers": """
        SELECT id, name, source_schema, source_table, source_pk, queue_schema, queue_table,
               queue_failed_table, trigger_name, config, disabled, owner FROM ai.vectorizer""",
}

_CRON = """
SELECT jobname, schedule, command, database, username, active FROM cron.job
 WHERE database = current_database()"""


def snapshot(conn: psycopg.Connection[Any]) -> dict[str, list[tuple[Any, ...]]]:
    row = conn.execute(_SCHEMAS).fetchone()
    assert row is not None
    schemas = row[0]
    out = {kind: sorted(conn.execute(query, {"schemas": schemas}).fetchall(), key=repr)
           for kind, query in QUERIES.items()}
    has_cron = conn.execute("SELECT to_regclass('cron.job') IS NOT NULL").fetchone()
    if has_cron and has_cron[0]:
        out["cron_jobs"] = sorted(conn.execute(_CRON).fetchall(), key=repr)
    return out


def differences(a: dict[str, list[tuple[Any, ...]]], b: dict[str, list[tuple[Any, ...]]]) -> list[str]:
    """Each row that only one side has, as 'kind: only in a|b: row'."""
    out = []
    for kind in sorted(set(a) | set(b)):
        left, right = set(map(repr, a.get(kind, []))), set(map(repr, b.get(kind, [])))
        out += [f"{kind}: only in first: {r}" for r in sorted(left - right)]
        out += [f"{kind}: only in second: {r}" for r in sorted(right - left)]
    return out
