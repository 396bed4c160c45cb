"""Trigger semantics of a vectorizer, against real Postgres: what a change puts in the queue."""

from __future__ import annotations

from collections.abc import Callable

import psycopg
import pytest
from psycopg import errors, sql

from tests.helpers.db import (
    VECTOR,
    catalog_snapshot,
    clear_queue,
    create_vectorizer,
    failed_rows,
    queue_rows,
    regclass,
    rows,
    scalar,
    store_name,
    vectorizer,
    view_name,
)

BLOG = """
CREATE TABLE blog
( id int PRIMARY KEY
, title text
, body text
, author text
, published_time timestamptz
, meta json
);
INSERT INTO blog VALUES
  (1, 'one',   'first body',  'ann', '2024-01-01', '{"tags": ["a"]}')
, (2, 'two',   'second body', 'bob', '2024-01-02', '{"tags": ["b"]}')
, (3, 'three', 'third body',  'cat', NULL,         '{"tags": ["c"]}');
"""


@pytest.fixture
def blog(db: psycopg.Connection) -> int:
    """public.blog with three rows and a vectorizer on body with $title in its template."""
    db.execute(BLOG)
    vid = create_vectorizer(db, "blog", formatting="ai.formatting_python_template('$title: $chunk')")
    assert queue_rows(db, vid) == []
    return vid


@pytest.fixture
def published(db: psycopg.Connection) -> int:
    """public.blog with a vectorizer for published rows only."""
    db.execute(BLOG)
    vid = create_vectorizer(db, "blog", row_filter="published_time IS NOT NULL")
    assert queue_rows(db, vid) == []
    return vid


def fill_store(db: psycopg.Connection, vid: int, *ids: int) -> None:
    """Store rows the way a worker would write them."""
    for i in ids:
        db.execute(sql.SQL("INSERT INTO {} (id, chunk_seq, chunk, embedding) VALUES (%s, 0, %s, %s)")
                   .format(store_name(db, vid)), (i, f"chunk of {i}", VECTOR))


# --- insert, update, delete ------------------------------------------------------------------

def test_insert_enqueues_the_new_key(db: psycopg.Connection, blog: int) -> None:
    db.execute("INSERT INTO blog (id, title, body) VALUES (10, 'ten', 'tenth body'), (11, 't', 'b')")
    assert queue_rows(db, blog) == [10, 11]


def test_update_of_loading_column_enqueues(db: psycopg.Connection, blog: int) -> None:
    db.execute("UPDATE blog SET body = 'new body' WHERE id = 2")
    assert queue_rows(db, blog) == [2]


def test_update_of_template_column_enqueues(db: psycopg.Connection, blog: int) -> None:
    db.execute("UPDATE blog SET title = 'new title' WHERE id = 3")
    assert queue_rows(db, blog) == [3]


def test_delete_enqueues_the_old_key(db: psycopg.Connection, blog: int) -> None:
    db.execute("DELETE FROM blog WHERE id IN (1, 3)")
    assert queue_rows(db, blog) == [1, 3]


def test_update_of_unread_columns_enqueues_nothing(db: psycopg.Connection, blog: int) -> None:
    db.execute("UPDATE blog SET author = 'zed', published_time = now(), meta = '{}'")
    assert scalar(db, "SELECT count(*) FROM blog WHERE author = 'zed'") == 3
    assert queue_rows(db, blog) == []


def test_update_to_the_same_value_enqueues_nothing(db: psycopg.Connection, blog: int) -> None:
    db.execute("UPDATE blog SET body = body, title = title")
    assert queue_rows(db, blog) == []


def test_multi_row_update_enqueues_each_changed_row(db: psycopg.Connection, blog: int) -> None:
    db.execute("UPDATE blog SET body = body || '!' WHERE id <> 2")
    assert queue_rows(db, blog) == [1, 3]


def test_primary_key_change_enqueues_old_and_new_key(db: psycopg.Connection, blog: int) -> None:
    db.execute("UPDATE blog SET id = 20 WHERE id = 2")
    assert queue_rows(db, blog) == [2, 20]


def test_rolled_back_change_enqueues_nothing(db: psycopg.Connection, blog: int) -> None:
    with db.transaction(force_rollback=True):
        db.execute("UPDATE blog SET body = 'x'")
        assert queue_rows(db, blog) == [1, 2, 3]
    assert queue_rows(db, blog) == []


def test_truncate_empties_queue_failed_items_and_store(db: psycopg.Connection, blog: int) -> None:
    v = vectorizer(db, blog)
    db.execute("UPDATE blog SET body = 'changed'")
    db.execute(sql.SQL("INSERT INTO {} (id, error) VALUES (1, 'boom')")
               .format(sql.Identifier(v["queue_schema"], v["queue_failed_table"])))
    fill_store(db, blog, 1, 2)
    assert queue_rows(db, blog) == [1, 2, 3]
    assert failed_rows(db, blog) == [1]

    db.execute("TRUNCATE blog")
    assert queue_rows(db, blog) == []
    assert failed_rows(db, blog) == []
    assert scalar(db, sql.SQL("SELECT count(*) FROM {}").format(store_name(db, blog))) == 0

    db.execute("INSERT INTO blog (id, body) VALUES (5, 'after truncate')")
    assert queue_rows(db, blog) == [5]


def test_trigger_function_is_safe(db: psycopg.Connection, blog: int) -> None:
    v = vectorizer(db, blog)
    func = f"{v['queue_schema']}.{v['trigger_name']}()"
    [(secdef, config, comment, public_exec)] = rows(
        db, "SELECT p.prosecdef, p.proconfig, obj_description(p.oid, 'pg_proc'), "
            "has_function_privilege('public', p.oid, 'EXECUTE') "
            "FROM pg_proc p WHERE p.oid = %s::regprocedure", (func,))
    assert secdef is True
    # No SET clause without a row filter (it costs every write): the body resolves no name at
    # run time, which tests/regress/sql/05_triggers.sql checks under a hostile search_path.
    assert config is None
    assert comment and "blog" in comment
    assert public_exec is False
    # Row triggers for insert/delete, update and key change, a statement trigger for truncate,
    # all AFTER.
    triggers = rows(db, """
        SELECT tgname, (tgtype & 2) <> 0 AS before, (tgtype & 1) <> 0 AS per_row
          FROM pg_trigger WHERE tgrelid = 'blog'::regclass AND NOT tgisinternal ORDER BY tgname""")
    name = v["trigger_name"]
    assert triggers == [(name, False, True), (f"{name}_key", False, True),
                        (f"{name}_truncate", False, False), (f"{name}_upd", False, True)]


def test_filtered_trigger_function_pins_search_path(db: psycopg.Connection, published: int) -> None:
    # A row filter is the user's expression, resolved when it runs: there the pin stays.
    v = vectorizer(db, published)
    func = f"{v['queue_schema']}.{v['trigger_name']}()"
    assert scalar(db, "SELECT proconfig FROM pg_proc WHERE oid = %s::regprocedure", (func,)) == [
        "search_path=pg_catalog, pg_temp"]


# --- row filter ------------------------------------------------------------------------------

def test_filter_insert_of_non_matching_row_enqueues_nothing(db: psycopg.Connection, published: int) -> None:
    db.execute("INSERT INTO blog (id, body) VALUES (10, 'draft')")
    db.execute("INSERT INTO blog (id, body, published_time) VALUES (11, 'out', now())")
    assert queue_rows(db, published) == [11]


def test_filter_row_that_starts_matching_is_enqueued(db: psycopg.Connection, published: int) -> None:
    db.execute("UPDATE blog SET published_time = now() WHERE id = 3")
    assert queue_rows(db, published) == [3]


def test_filter_row_that_stops_matching_is_enqueued(db: psycopg.Connection, published: int) -> None:
    db.execute("UPDATE blog SET published_time = NULL WHERE id = 1")
    assert queue_rows(db, published) == [1]


def test_filter_column_change_of_matching_row_enqueues(db: psycopg.Connection, published: int) -> None:
    db.execute("UPDATE blog SET published_time = published_time + interval '1 day' WHERE id = 2")
    assert queue_rows(db, published) == [2]


def test_filter_edit_of_non_matching_row_enqueues_nothing(db: psycopg.Connection, published: int) -> None:
    db.execute("UPDATE blog SET body = 'edited draft' WHERE id = 3")
    db.execute("DELETE FROM blog WHERE id = 3")
    assert queue_rows(db, published) == []
    db.execute("UPDATE blog SET body = 'edited' WHERE id = 1")
    db.execute("DELETE FROM blog WHERE id = 2")
    assert queue_rows(db, published) == [1, 2]


def test_filter_key_change_enqueues_only_matching_sides(db: psycopg.Connection, published: int) -> None:
    db.execute("UPDATE blog SET id = 30, published_time = now() WHERE id = 3")   # new side matches
    db.execute("UPDATE blog SET id = 10, published_time = NULL WHERE id = 1")    # old side matches
    assert queue_rows(db, published) == [1, 30]


def test_filter_enqueue_existing_queues_only_matching_rows(db: psycopg.Connection) -> None:
    db.execute(BLOG)
    vid = create_vectorizer(db, "blog", row_filter="published_time IS NOT NULL", enqueue_existing=True)
    assert queue_rows(db, vid) == [1, 2]
    assert vectorizer(db, vid)["config"]["filter_columns"] == ["published_time"]


def test_enqueue_existing_without_filter_queues_every_row(db: psycopg.Connection) -> None:
    db.execute(BLOG)
    vid = create_vectorizer(db, "blog", enqueue_existing=True)
    assert queue_rows(db, vid) == [1, 2, 3]


def test_filter_view_hides_rows_no_longer_matching_or_deleted(db: psycopg.Connection, published: int) -> None:
    fill_store(db, published, 1, 2)
    view = view_name(db, published)
    assert rows(db, sql.SQL("SELECT id, chunk FROM {} ORDER BY id").format(view)) \
        == [(1, "chunk of 1"), (2, "chunk of 2")]

    db.execute("UPDATE blog SET published_time = NULL WHERE id = 1")
    db.execute("DELETE FROM blog WHERE id = 2")
    # The store still has both rows (no worker ran), yet the view shows neither.
    assert scalar(db, sql.SQL("SELECT count(*) FROM {}").format(store_name(db, published))) == 2
    assert rows(db, sql.SQL("SELECT id FROM {}").format(view)) == []


def test_view_hides_rows_deleted_from_source(db: psycopg.Connection, blog: int) -> None:
    fill_store(db, blog, 1, 2, 3)
    db.execute("DELETE FROM blog WHERE id = 3")
    assert rows(db, sql.SQL("SELECT id, title, embedding::text FROM {} ORDER BY id").format(view_name(db, blog))) \
        == [(1, "one", VECTOR), (2, "two", VECTOR)]


def test_filter_with_function_and_several_columns(db: psycopg.Connection) -> None:
    db.execute(BLOG)
    vid = create_vectorizer(db, "blog", row_filter="lower(author) <> 'bob' AND published_time IS NOT NULL",
                            enqueue_existing=True)
    assert queue_rows(db, vid) == [1]
    assert vectorizer(db, vid)["config"]["filter_columns"] == ["author", "published_time"]
    clear_queue(db, vid)
    db.execute("UPDATE blog SET author = 'BOB' WHERE id = 1")     # stops matching
    db.execute("UPDATE blog SET author = 'dan' WHERE id = 2")     # starts matching
    db.execute("UPDATE blog SET author = 'eve' WHERE id = 3")     # still not matching
    assert queue_rows(db, vid) == [1, 2]


# --- a row filter that raises --------------------------------------------------------------------

@pytest.fixture
def ratio(db: psycopg.Connection) -> int:
    """public.ratio (id, n, body) with a filter that divides by n: it raises where n = 0."""
    db.execute("CREATE TABLE ratio (id int PRIMARY KEY, n int, body text);"
               "INSERT INTO ratio VALUES (1, 10, 'ten'), (2, 50, 'fifty')")
    return create_vectorizer(db, "ratio", row_filter="100 / n > 1")


def notices(conn: psycopg.Connection) -> list[str]:
    """The WARNING messages conn receives from now on."""
    got: list[str] = []
    conn.add_notice_handler(lambda d: got.append(str(d.message_primary)) if d.severity == "WARNING" else None)
    return got


def test_failing_filter_never_fails_a_write(db: psycopg.Connection, ratio: int) -> None:
    warned = notices(db)
    # INSERT: the raising row counts as not matching; the other is queued.
    db.execute("INSERT INTO ratio VALUES (3, 0, 'zero'), (4, 20, 'twenty')")
    assert queue_rows(db, ratio) == [4]
    clear_queue(db, ratio)
    # UPDATE: old matched, new raises: queued, so the worker drops the row's chunks.
    db.execute("UPDATE ratio SET n = 0 WHERE id = 1")
    assert queue_rows(db, ratio) == [1]
    clear_queue(db, ratio)
    # UPDATE of a raising row that still raises, and a key change of one: nothing to do.
    db.execute("UPDATE ratio SET body = 'still zero' WHERE id = 3")
    db.execute("UPDATE ratio SET id = 30 WHERE id = 3")
    assert queue_rows(db, ratio) == []
    # A key change of a matching row whose new values raise: the old key loses its chunks.
    db.execute("UPDATE ratio SET id = 40, n = 0 WHERE id = 4")
    assert queue_rows(db, ratio) == [4]
    clear_queue(db, ratio)
    # DELETE of raising rows and of a matching one.
    db.execute("DELETE FROM ratio")
    assert queue_rows(db, ratio) == [2]
    assert scalar(db, "SELECT count(*) FROM ratio") == 0
    # Once per transaction (statement here): six statements met a failing row.
    assert len(warned) == 6
    assert all("vectorizer \"public_ratio_embedding_store\": row_filter '100 / n > 1' failed" in w
               and "division by zero" in w for w in warned), warned


def test_failing_filter_is_recorded_once_per_transaction(db: psycopg.Connection, ratio: int) -> None:
    with db.transaction():
        db.execute("INSERT INTO ratio SELECT g, 0, 'zero' FROM generate_series(10, 19) g")
        db.execute("UPDATE ratio SET body = 'x' WHERE n = 0")
    assert rows(db, "SELECT message, details->>'step', details->>'sqlstate' FROM ai.vectorizer_errors "
                    "WHERE id = %s", (ratio,)) \
        == [("row_filter failed on a row of public.ratio, which counts as not matching: division by zero",
             "row_filter", "22012")]


def test_failing_filter_report_that_fails_is_not_the_writers_problem(db: psycopg.Connection,
                                                                    ratio: int) -> None:
    # Even when the errors table takes no rows, the write goes through.
    db.execute("CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS "
               "$$BEGIN RAISE EXCEPTION 'no errors today'; END$$")
    db.execute("CREATE TRIGGER refuse BEFORE INSERT ON ai._vectorizer_errors FOR EACH ROW EXECUTE FUNCTION refuse()")
    db.execute("INSERT INTO ratio VALUES (5, 0, 'zero'), (6, 10, 'ten')")
    assert queue_rows(db, ratio) == [6]
    assert scalar(db, "SELECT count(*) FROM ai._vectorizer_errors") == 0


def test_filter_with_comments_inside_is_accepted(db: psycopg.Connection) -> None:
    db.execute(BLOG)
    vid = create_vectorizer(db, "blog", row_filter="published_time IS NOT NULL -- published\n"
                                                   "AND author <> 'bob' /* not bob's */")
    db.execute("UPDATE blog SET body = 'new'")
    assert queue_rows(db, vid) == [1]


# --- other triggers, keys, names and types ---------------------------------------------------

def test_before_trigger_rewriting_the_loading_column_is_noticed(db: psycopg.Connection, blog: int) -> None:
    db.execute("""
        CREATE FUNCTION stamp_body() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN NEW.body := NEW.body || ' (by ' || NEW.author || ')'; RETURN NEW; END $$;
        CREATE TRIGGER a_stamp_body BEFORE UPDATE ON blog FOR EACH ROW EXECUTE FUNCTION stamp_body();
    """)
    db.execute("UPDATE blog SET author = 'zed' WHERE id = 1")   # the user's SQL never names body
    assert scalar(db, "SELECT body FROM blog WHERE id = 1") == "first body (by zed)"
    assert queue_rows(db, blog) == [1]


def test_before_trigger_that_cancels_a_change_enqueues_nothing(db: psycopg.Connection, blog: int) -> None:
    db.execute("""
        CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NULL; END $$;
        CREATE TRIGGER a_refuse BEFORE INSERT OR UPDATE OR DELETE ON blog FOR EACH ROW EXECUTE FUNCTION refuse();
    """)
    db.execute("INSERT INTO blog (id, body) VALUES (10, 'x')")
    db.execute("UPDATE blog SET body = 'y'")
    db.execute("DELETE FROM blog")
    assert scalar(db, "SELECT count(*) FROM blog") == 3
    assert queue_rows(db, blog) == []


def test_composite_primary_key(db: psycopg.Connection) -> None:
    # The key's order differs from the columns' order: the queue follows the key.
    db.execute("""
        CREATE TABLE notes (tenant text, id int, body text, extra int, PRIMARY KEY (id, tenant));
        INSERT INTO notes VALUES ('a', 1, 'x', 0), ('a', 2, 'y', 0), ('b', 1, 'z', 0);
    """)
    vid = create_vectorizer(db, "notes", enqueue_existing=True)
    v = vectorizer(db, vid)
    assert [p["attname"] for p in v["source_pk"]] == ["id", "tenant"]
    queue_columns = [c for (c,) in rows(db, "SELECT attname FROM pg_attribute WHERE attrelid = %s::regclass "
                                            "AND attnum > 0 AND NOT attisdropped ORDER BY attnum",
                                        (f'"{v["queue_schema"]}"."{v["queue_table"]}"',))]
    assert queue_columns[:2] == ["id", "tenant"]
    assert queue_rows(db, vid) == [(1, "a"), (1, "b"), (2, "a")]
    clear_queue(db, vid)

    db.execute("UPDATE notes SET extra = 1")
    db.execute("UPDATE notes SET body = 'w' WHERE (tenant, id) = ('b', 1)")
    db.execute("UPDATE notes SET tenant = 'c' WHERE (tenant, id) = ('a', 2)")
    db.execute("DELETE FROM notes WHERE (tenant, id) = ('a', 1)")
    db.execute("INSERT INTO notes VALUES ('d', 7, 'new', 0)")
    assert queue_rows(db, vid) == [(1, "a"), (1, "b"), (2, "a"), (2, "c"), (7, "d")]


ODD = """
CREATE SCHEMA "My Schema";
CREATE TABLE "My Schema"."Blog Posts"
( "Post ID" int PRIMARY KEY
, "Body Text" text
, "Other Col" text
);
INSERT INTO "My Schema"."Blog Posts" VALUES (1, 'one', 'x'), (2, 'two', 'y');
"""


def test_quoted_mixed_case_identifiers(db: psycopg.Connection) -> None:
    db.execute(ODD)
    vid = create_vectorizer(db, '"My Schema"."Blog Posts"', "Body Text", enqueue_existing=True)
    v = vectorizer(db, vid)
    assert (v["source_schema"], v["source_table"]) == ("My Schema", "Blog Posts")
    assert v["source_pk"][0]["attname"] == "Post ID"
    assert v["name"] == "my_schema_blog_posts_embedding_store"  # pgai would refuse it
    assert regclass(db, '"My Schema"."Blog Posts_embedding_store"') is not None
    assert regclass(db, '"My Schema"."Blog Posts_embedding"') is not None
    assert queue_rows(db, vid) == [1, 2]
    clear_queue(db, vid)

    table = '"My Schema"."Blog Posts"'
    db.execute(f'UPDATE {table} SET "Other Col" = \'z\'')
    assert queue_rows(db, vid) == []
    db.execute(f'UPDATE {table} SET "Body Text" = \'uno\' WHERE "Post ID" = 1')
    db.execute(f'UPDATE {table} SET "Post ID" = 20 WHERE "Post ID" = 2')
    db.execute(f'INSERT INTO {table} VALUES (3, \'three\', NULL)')
    db.execute(f'DELETE FROM {table} WHERE "Post ID" = 3')
    assert queue_rows(db, vid) == [1, 2, 3, 3, 20]

    db.execute('INSERT INTO "My Schema"."Blog Posts_embedding_store" ("Post ID", chunk_seq, chunk, embedding) '
               "VALUES (1, 0, 'uno', %s)", (VECTOR,))
    assert rows(db, 'SELECT "Post ID", "Body Text", chunk FROM "My Schema"."Blog Posts_embedding"') \
        == [(1, "uno", "uno")]
    db.execute(f"TRUNCATE {table}")
    assert queue_rows(db, vid) == []
    assert scalar(db, 'SELECT count(*) FROM "My Schema"."Blog Posts_embedding_store"') == 0


def test_quoted_identifiers_with_own_queue_and_destination(db: psycopg.Connection) -> None:
    db.execute(ODD)
    vid = create_vectorizer(
        db, '"My Schema"."Blog Posts"', "Body Text",
        destination="ai.destination_table(target_table => 'Post Chunks', view_name => 'Post View')",
        queue_schema="'My Schema'", queue_table="'Post Queue'",
        row_filter='"Other Col" IS NOT NULL')
    v = vectorizer(db, vid)
    assert (v["queue_schema"], v["queue_table"], v["queue_failed_table"]) \
        == ("My Schema", "Post Queue", "Post Queue_failed")
    assert regclass(db, '"My Schema"."Post Chunks"') is not None
    assert regclass(db, '"My Schema"."Post View"') is not None
    db.execute('INSERT INTO "My Schema"."Blog Posts" VALUES (5, \'five\', \'set\'), (6, \'six\', NULL)')
    db.execute('UPDATE "My Schema"."Blog Posts" SET "Other Col" = NULL WHERE "Post ID" = 1')
    assert queue_rows(db, vid) == [1, 5]


def test_json_template_column_change_is_detected(db: psycopg.Connection) -> None:
    db.execute("""
        CREATE TABLE docs (id int PRIMARY KEY, body text, meta json, other json);
        INSERT INTO docs VALUES (1, 'b', '{"a": 1}', '{}'), (2, 'c', '{"a": 2}', '{}');
    """)
    vid = create_vectorizer(db, "docs", formatting="ai.formatting_python_template('$meta $chunk')")
    assert vectorizer(db, vid)["config"]["template_columns"] == ["meta"]
    db.execute("""UPDATE docs SET other = '{"x": 1}'""")       # json, but not read
    db.execute("""UPDATE docs SET meta = '{"a": 2}' WHERE id = 2""")   # the same value
    assert queue_rows(db, vid) == []
    db.execute("""UPDATE docs SET meta = '{"a": 10}' WHERE id = 1""")
    assert queue_rows(db, vid) == [1]


def test_varchar_and_domain_loading_columns(db: psycopg.Connection) -> None:
    db.execute("""
        CREATE DOMAIN short_text AS varchar(100);
        CREATE TABLE docs (id bigint PRIMARY KEY, body short_text, summary varchar(50));
        INSERT INTO docs VALUES (1, 'b', 's');
    """)
    vid = create_vectorizer(db, "docs", formatting="ai.formatting_python_template('$summary $chunk')")
    db.execute("UPDATE docs SET body = 'bb'")
    db.execute("INSERT INTO docs VALUES (2, 'c', 't')")
    db.execute("UPDATE docs SET summary = 'ss' WHERE id = 2")
    assert queue_rows(db, vid) == [1, 2, 2]


# --- destination column ----------------------------------------------------------------------

def test_destination_column(db: psycopg.Connection) -> None:
    db.execute(BLOG)
    vid = create_vectorizer(db, "blog", destination="ai.destination_column('body_embedding')")
    v = vectorizer(db, vid)
    assert v["name"] == "public_blog_body_embedding"
    assert v["config"]["chunking"]["implementation"] == "none"
    assert scalar(db, "SELECT format_type(atttypid, atttypmod) FROM pg_attribute "
                      "WHERE attrelid = 'blog'::regclass AND attname = 'body_embedding'") == "vector(4)"
    assert regclass(db, "blog_embedding_store") is None
    assert regclass(db, "blog_embedding") is None

    # A worker writing the embedding back does not wake the vectorizer again.
    db.execute("UPDATE blog SET body_embedding = %s", (VECTOR,))
    assert queue_rows(db, vid) == []
    db.execute("UPDATE blog SET body = 'new', body_embedding = NULL WHERE id = 1")
    assert queue_rows(db, vid) == [1]
    db.execute("TRUNCATE blog")
    assert queue_rows(db, vid) == []


# --- drop ------------------------------------------------------------------------------------

def trigger_count(db: psycopg.Connection, v: dict[str, object]) -> int:
    name = v["trigger_name"]
    return scalar(db, "SELECT count(*) FROM pg_trigger WHERE tgname = ANY(%s)",
                  ([name, f"{name}_upd", f"{name}_truncate"],))


def objects_of(db: psycopg.Connection, vid: int) -> dict[str, bool]:
    """Which of a vectorizer's objects exist."""
    v = vectorizer(db, vid)
    dest = v["config"]["destination"]
    qs = sql.quote(v["queue_schema"])
    return {
        "queue": regclass(db, f'"{v["queue_schema"]}"."{v["queue_table"]}"') is not None,
        "failed": regclass(db, f'"{v["queue_schema"]}"."{v["queue_failed_table"]}"') is not None,
        "function": scalar(db, f"SELECT count(*) FROM pg_proc WHERE pronamespace = {qs}::regnamespace "
                               "AND proname = %s", (v["trigger_name"],)) == 1,
        "triggers": trigger_count(db, v) == 3,
        "store": dest["implementation"] == "table"
        and regclass(db, f'"{dest["target_schema"]}"."{dest["target_table"]}"') is not None,
        "view": dest["implementation"] == "table"
        and regclass(db, f'"{dest["view_schema"]}"."{dest["view_name"]}"') is not None,
    }


@pytest.fixture
def two_on_blog(db: psycopg.Connection) -> tuple[int, int]:
    """Two vectorizers on blog: one with a store, one with a column."""
    db.execute(BLOG)
    first = create_vectorizer(db, "blog")
    second = create_vectorizer(db, "blog", destination="ai.destination_column('emb')")
    assert all(objects_of(db, first).values())
    return first, second


@pytest.mark.parametrize("by", ["id", "name"])
@pytest.mark.parametrize("drop_all", [False, True])
def test_drop_vectorizer(db: psycopg.Connection, two_on_blog: tuple[int, int], by: str, drop_all: bool) -> None:
    first, second = two_on_blog
    v = vectorizer(db, first)
    target = first if by == "id" else v["name"]
    store = f'"{v["config"]["destination"]["target_schema"]}"."{v["config"]["destination"]["target_table"]}"'
    view = f'"{v["config"]["destination"]["view_schema"]}"."{v["config"]["destination"]["view_name"]}"'
    queue = f'"{v["queue_schema"]}"."{v["queue_table"]}"'

    db.execute("SELECT ai.drop_vectorizer(%s, drop_all => %s)", (target, drop_all))

    assert rows(db, "SELECT id FROM ai.vectorizer ORDER BY id") == [(second,)]
    assert regclass(db, queue) is None
    assert regclass(db, f'"{v["queue_schema"]}"."{v["queue_failed_table"]}"') is None
    assert scalar(db, "SELECT count(*) FROM pg_proc WHERE proname = %s", (v["trigger_name"],)) == 0
    assert trigger_count(db, v) == 0
    assert (regclass(db, store) is None) is drop_all
    assert (regclass(db, view) is None) is drop_all
    # The other vectorizer is untouched and still queues.
    assert all(o for k, o in objects_of(db, second).items() if k not in ("store", "view"))
    db.execute("UPDATE blog SET body = 'x' WHERE id = 1")
    assert queue_rows(db, second) == [1]
    assert scalar(db, "SELECT count(*) FROM blog") == 3


@pytest.mark.parametrize("drop_all", [False, True])
def test_drop_vectorizer_with_destination_column(db: psycopg.Connection, two_on_blog: tuple[int, int],
                                                 drop_all: bool) -> None:
    first, second = two_on_blog
    db.execute("SELECT ai.drop_vectorizer(%s, %s)", (second, drop_all))
    has_column = scalar(db, "SELECT count(*) FROM pg_attribute WHERE attrelid = 'blog'::regclass "
                            "AND attname = 'emb' AND NOT attisdropped") == 1
    assert has_column is not drop_all
    assert rows(db, "SELECT id FROM ai.vectorizer") == [(first,)]
    assert all(objects_of(db, first).values())


def test_drop_unknown_vectorizer_fails(db: psycopg.Connection, blog: int) -> None:
    with pytest.raises(errors.UndefinedObject, match="no_such"):
        db.execute("SELECT ai.drop_vectorizer('no_such')")
    with pytest.raises(errors.UndefinedObject):
        db.execute("SELECT ai.drop_vectorizer(%s)", (blog + 100,))
    assert rows(db, "SELECT id FROM ai.vectorizer") == [(blog,)]


@pytest.mark.parametrize("destinations", [["table"], ["table", "column"]])
def test_drop_table_cascade_drops_the_vectorizer(db: psycopg.Connection, destinations: list[str]) -> None:
    db.execute(BLOG)
    made = [vectorizer(db, create_vectorizer(db, "blog")) if d == "table" else
            vectorizer(db, create_vectorizer(db, "blog", destination="ai.destination_column('emb')"))
            for d in destinations]
    db.execute("CREATE TABLE bystander (id int PRIMARY KEY, body text)")
    other = create_vectorizer(db, "bystander")

    db.execute("DROP TABLE blog CASCADE")

    assert rows(db, "SELECT id FROM ai.vectorizer") == [(other,)]
    for v in made:
        assert regclass(db, f'ai."{v["queue_table"]}"') is None
        assert regclass(db, f'ai."{v["queue_failed_table"]}"') is None
        assert scalar(db, "SELECT count(*) FROM pg_proc WHERE proname = %s", (v["trigger_name"],)) == 0
    assert regclass(db, "blog_embedding_store") is None
    assert regclass(db, "blog_embedding") is None
    assert all(objects_of(db, other).values())


def view_state(db: psycopg.Connection) -> tuple[object, ...]:
    """What a DROP TABLE must leave as it was on blog's vectorizer's view."""
    return tuple(db.execute(
        "SELECT pg_get_viewdef(c.oid), c.reloptions, c.relacl::text, obj_description(c.oid, 'pg_class'), "
        "(SELECT count(*) FROM pg_depend d WHERE d.objid = (SELECT oid FROM pg_catalog.pg_rewrite "
        "  WHERE ev_class = c.oid) AND d.refobjid = 'blog'::regclass) "
        "FROM pg_class c WHERE c.oid = 'blog_embedding'::regclass").fetchone() or ())


@pytest.mark.parametrize("statement", ["DROP TABLE blog", "drop table if exists nothing_here, public.blog",
                                       "DO $$ BEGIN EXECUTE 'DROP TABLE blog'; END $$"])
def test_plain_drop_table_drops_the_vectorizer(db: psycopg.Connection, blog: int, statement: str) -> None:
    db.execute("CREATE TABLE bystander (id int PRIMARY KEY, body text)")
    other = create_vectorizer(db, "bystander")
    v = vectorizer(db, blog)

    db.execute(statement)   # as in pgai: no CASCADE needed for the vectorizer's own view

    assert rows(db, "SELECT id FROM ai.vectorizer") == [(other,)]
    assert regclass(db, "blog_embedding") is None
    assert regclass(db, "blog_embedding_store") is None
    assert regclass(db, f'ai."{v["queue_table"]}"') is None
    assert all(objects_of(db, other).values())


def test_drop_table_naming_a_source_leaves_other_views_as_they_were(
        db: psycopg.Connection, blog: int, make_role: Callable[..., tuple[str, str]]) -> None:
    reader, _ = make_role("reader")
    db.execute(sql.SQL("GRANT SELECT ON blog_embedding TO {}").format(sql.Identifier(reader)))
    db.execute("COMMENT ON VIEW blog_embedding IS 'kept'")
    fill_store(db, blog, 1, 2)
    before = view_state(db)
    assert before[0] and "blog" in str(before[0]) and before[4]
    # Names that contain the source's name: the views are set aside and put back.
    db.execute("CREATE TABLE blog_archive (id int); CREATE TABLE blog2 (id int)")
    db.execute("DROP TABLE blog_archive")
    db.execute("BEGIN; DROP TABLE blog2; SELECT 1; COMMIT")

    assert view_state(db) == before
    assert scalar(db, "SELECT count(*) FROM blog_embedding") == 2
    assert all(objects_of(db, blog).values())


def test_drop_table_that_fails_otherwise_changes_nothing(db: psycopg.Connection, blog: int) -> None:
    before = view_state(db)
    db.execute("CREATE VIEW blog_titles AS SELECT title FROM blog")
    with pytest.raises(errors.DependentObjectsStillExist) as info:
        db.execute("DROP TABLE blog")
    assert "blog_titles" in (info.value.diag.message_detail or "")
    assert view_state(db) == before
    assert rows(db, "SELECT id FROM ai.vectorizer") == [(blog,)]
    assert all(objects_of(db, blog).values())


def test_drop_table_keeps_views_built_on_the_vectorizers_view(db: psycopg.Connection, blog: int) -> None:
    db.execute("CREATE VIEW blog_chunks AS SELECT chunk FROM blog_embedding")
    with pytest.raises(errors.DependentObjectsStillExist) as info:
        db.execute("DROP TABLE blog")   # dropping the vectorizer's view would need CASCADE
    assert "blog_chunks" in (info.value.diag.message_detail or "")
    assert all(objects_of(db, blog).values())
    db.execute("DROP TABLE blog CASCADE")
    assert regclass(db, "blog_chunks") is None
    assert rows(db, "SELECT id FROM ai.vectorizer") == []


def test_plain_drop_of_column_destination_source(db: psycopg.Connection) -> None:
    db.execute(BLOG)
    vid = create_vectorizer(db, "blog", destination="ai.destination_column('emb')")
    v = vectorizer(db, vid)
    db.execute("DROP TABLE blog")   # nothing depends on it: the event trigger cleans up
    assert rows(db, "SELECT id FROM ai.vectorizer") == []
    assert regclass(db, f'ai."{v["queue_table"]}"') is None
    assert scalar(db, "SELECT count(*) FROM pg_proc WHERE proname = %s", (v["trigger_name"],)) == 0


def test_drop_schema_cascade_drops_the_vectorizer(db: psycopg.Connection) -> None:
    db.execute(ODD)
    vid = create_vectorizer(db, '"My Schema"."Blog Posts"', "Body Text")
    v = vectorizer(db, vid)
    db.execute('DROP SCHEMA "My Schema" CASCADE')
    assert rows(db, "SELECT id FROM ai.vectorizer") == []
    assert regclass(db, f'ai."{v["queue_table"]}"') is None
    assert scalar(db, "SELECT count(*) FROM pg_proc WHERE proname = %s", (v["trigger_name"],)) == 0


def test_dropping_a_same_named_table_elsewhere_keeps_the_vectorizer(db: psycopg.Connection, blog: int) -> None:
    db.execute("CREATE SCHEMA other; CREATE TABLE other.blog (id int)")
    db.execute("DROP TABLE other.blog")
    assert rows(db, "SELECT id FROM ai.vectorizer") == [(blog,)]
    assert all(objects_of(db, blog).values())


# --- failures leave nothing behind -----------------------------------------------------------

BAD_INPUTS = [
    # create_vectorizer's arguments (SQL; "column" is the loading column, "row_filter" text),
    # the error, and words its message must have. The first fails after the DDL is done: the
    # filter is fine to plan and fails only when the existing rows are queued.
    pytest.param({"row_filter": "length(body) / (id - id) > 0"}, errors.DivisionByZero,
                 "division by zero", id="filter-fails-when-queueing"),
    pytest.param({"column": "no_such_column"}, errors.UndefinedColumn, "no_such_column", id="missing-column"),
    pytest.param({"column": "id"}, errors.DatatypeMismatch, "text type", id="int-loading-column"),
    pytest.param({"formatting": "ai.formatting_python_template('$nope $chunk')"}, errors.UndefinedColumn,
                 "nope", id="template-missing-column"),
    pytest.param({"row_filter": "id IN (SELECT 1)"}, errors.InvalidParameterValue, "row_filter",
                 id="filter-subquery"),
    pytest.param({"row_filter": "random() > 0.5"}, errors.InvalidParameterValue, "row_filter",
                 id="filter-volatile"),
    pytest.param({"row_filter": "no_such_column > 1"}, errors.InvalidParameterValue, "no_such_column",
                 id="filter-missing-column"),
    pytest.param({"row_filter": "true; DROP TABLE blog"}, errors.InvalidParameterValue, "row_filter",
                 id="filter-two-statements"),
    # A -- comment used to swallow the check's closing parenthesis.
    pytest.param({"row_filter": "true) --"}, errors.InvalidParameterValue,
                 r"row_filter 'true\) --' is not one complete expression: it closes a parenthesis it did not open",
                 id="filter-closes-and-comments"),
    pytest.param({"row_filter": "title IS NULL) OR (id > 0"}, errors.InvalidParameterValue,
                 "closes a parenthesis it did not open", id="filter-unbalanced"),
    pytest.param({"row_filter": "id > 1 -- a note"}, errors.InvalidParameterValue,
                 "ends in a -- comment", id="filter-trailing-comment"),
    pytest.param({"row_filter": "id >"}, errors.InvalidParameterValue,
                 "not one complete expression: syntax error", id="filter-syntax"),
    pytest.param({"chunking": "ai.chunking_character_text_splitter(separator => '(', is_separator_regex => true)"},
                 errors.InvalidRegularExpression,
                 r"separator '\(' is not a valid Python regular expression: missing \), unterminated subpattern",
                 id="separator-regex"),
    pytest.param({"chunking": "ai.chunking_recursive_character_text_splitter("
                              "separators => ARRAY['\\s+', '', '[a-'], is_separator_regex => true)"},
                 errors.InvalidRegularExpression, r"separator '\[a-' .*unterminated character set",
                 id="separators-regex"),
    pytest.param({"destination": "ai.destination_column('emb')",
                  "chunking": "ai.chunking_recursive_character_text_splitter()"},
                 errors.InvalidParameterValue, "chunking_none", id="column-with-chunking"),
    pytest.param({"destination": "ai.destination_column('title')"}, errors.DuplicateColumn, "title",
                 id="column-exists"),
    pytest.param({"embedding": "ai.embedding_openai('text-embedding-3-large')"}, errors.InvalidParameterValue,
                 "2000", id="hnsw-too-many-dimensions"),
    pytest.param({"queue_schema": "'no_such_schema'"}, errors.InvalidSchemaName, "no_such_schema",
                 id="missing-queue-schema"),
    pytest.param({"destination": "ai.destination_table('blog')"}, errors.DuplicateTable, "blog",
                 id="view-name-taken"),
    pytest.param({"loading": "ai.parsing_auto()"}, errors.InvalidParameterValue, "loading",
                 id="wrong-config-type"),
    pytest.param({"name": "'taken'"}, errors.DuplicateObject, "taken", id="vectorizer-name-taken"),
]


@pytest.mark.parametrize(("kwargs", "error", "words"), BAD_INPUTS)
def test_failing_create_leaves_nothing_behind(db: psycopg.Connection, kwargs: dict[str, str],
                                             error: type[Exception], words: str) -> None:
    db.execute(BLOG)
    taken = create_vectorizer(db, "blog", name="'taken'", destination="ai.destination_table('other')")
    db.execute("UPDATE blog SET body = 'queued before'")
    before = catalog_snapshot(db)
    args = dict(kwargs)
    column = args.pop("column", "body")
    row_filter = args.pop("row_filter", None)
    with pytest.raises(error, match=words):
        create_vectorizer(db, "blog", column, row_filter=row_filter, enqueue_existing=True, **args)
    assert catalog_snapshot(db) == before
    assert queue_rows(db, taken) == [1, 2, 3]
    assert scalar(db, "SELECT count(*) FROM blog") == 3


def test_regex_separators_python_accepts_are_accepted(db: psycopg.Connection) -> None:
    """Python's re, not PostgreSQL's, judges them: a lookbehind, which LangChain's users write."""
    db.execute(BLOG)
    vid = create_vectorizer(db, "blog", chunking="ai.chunking_recursive_character_text_splitter("
                                                 "separators => ARRAY['(?<=\\.)\\s+', ''], is_separator_regex => true)")
    assert vectorizer(db, vid)["config"]["chunking"]["separators"] == ["(?<=\\.)\\s+", ""]
    # Not regexes: taken as written.
    create_vectorizer(db, "blog", destination="ai.destination_table('plain')",
                      chunking="ai.chunking_character_text_splitter(separator => '(')")


def test_temporary_source_is_refused(db: psycopg.Connection) -> None:
    db.execute("CREATE TEMP TABLE scratch (id int PRIMARY KEY, body text)")
    before = catalog_snapshot(db)
    with pytest.raises(errors.WrongObjectType, match="source scratch is a temporary table"):
        create_vectorizer(db, "scratch")
    assert catalog_snapshot(db) == before


def test_source_without_primary_key_is_refused(db: psycopg.Connection) -> None:
    db.execute("CREATE TABLE nopk (id int, body text); CREATE VIEW aview AS SELECT 1 AS id, 'x'::text AS body")
    before = catalog_snapshot(db)
    with pytest.raises(errors.InvalidTableDefinition, match="no primary key"):
        create_vectorizer(db, "nopk")
    with pytest.raises(errors.WrongObjectType, match="not a table"):
        create_vectorizer(db, "aview")
    assert catalog_snapshot(db) == before
