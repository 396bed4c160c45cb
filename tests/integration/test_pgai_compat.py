"""pgai's documented vectorizer call forms, in named notation, on tables of our own.

Each test makes one call the way pgai's vectorizer docs write it (pgai's argument names, named
notation) and checks what the extension recorded. Only forms that work today are here; the
survey of the ones that don't is in the lead's issue 15 notes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import psycopg
import pytest
from psycopg import sql

from tests.helpers.db import regclass, rows, scalar

KITCHEN = """
CREATE SCHEMA kitchen;
CREATE TABLE kitchen.recipe (
    id int PRIMARY KEY, title text, cuisine text, body text, photo bytea, link text);
INSERT INTO kitchen.recipe VALUES
    (1, 'Borscht', 'Ukrainian', 'Beets, cabbage and dill.', NULL, 'file:///tmp/borscht.md'),
    (2, 'Pho', 'Vietnamese', 'Broth simmered for hours.', NULL, 'file:///tmp/pho.md');
"""
# Embedding and loading every form below shares unless it is the point of the test.
OPENAI = "ai.embedding_openai('text-embedding-3-small', 768)"
BODY = "ai.loading_column('body')"


@pytest.fixture
def kitchen(db: psycopg.Connection) -> psycopg.Connection:
    db.execute(KITCHEN)
    return db


def create(db: psycopg.Connection, name: str, **parts: str) -> int:
    """ai.create_vectorizer on kitchen.recipe in named notation; parts are SQL expressions."""
    parts.setdefault("loading", BODY)
    parts.setdefault("embedding", OPENAI)
    # Braces in the expressions (JSON options) are literal, not sql.SQL placeholders.
    args = ",\n    ".join(f"{key} => {expr}" for key, expr in parts.items()).replace("{", "{{").replace("}", "}}")
    query = sql.SQL("SELECT ai.create_vectorizer('kitchen.recipe'::regclass, name => {},\n    " + args + ")")
    return int(scalar(db, query.format(name)))


def config(db: psycopg.Connection, vid: int, part: str) -> dict[str, Any]:
    return dict(scalar(db, "SELECT config -> %s FROM ai.vectorizer WHERE id = %s", (part, vid)))


def status(db: psycopg.Connection, vid: int) -> dict[str, Any]:
    cur = db.execute("SELECT * FROM ai.vectorizer_status WHERE id = %s", (vid,))
    names = [c.name for c in cur.description or ()]
    return dict(zip(names, cur.fetchone() or (), strict=True))


def test_table_destination_with_everything_named(
        kitchen: psycopg.Connection, make_role: Callable[..., tuple[str, str]]) -> None:
    """The reference's first example: every part named, the store and view placed by hand."""
    cook, _ = make_role("cook")
    vid = create(
        kitchen, "kitchen_recipe_vectors",
        embedding="ai.embedding_ollama('nomic-embed-text', 768)",
        chunking="ai.chunking_character_text_splitter(128, 10)",
        formatting="ai.formatting_python_template('title: $title cuisine: $cuisine $chunk')",
        grant_to=f"ai.grant_to('{cook}')",
        destination="ai.destination_table(target_schema => 'kitchen', target_table => 'recipe_vec_store',"
                    " view_name => 'recipe_vec')")
    got = status(kitchen, vid)
    assert (got["name"], got["source_table"], got["target_table"], got["view"]) == (
        "kitchen_recipe_vectors", "kitchen.recipe", "kitchen.recipe_vec_store", "kitchen.recipe_vec")
    assert regclass(kitchen, "kitchen.recipe_vec") is not None
    assert scalar(kitchen, "SELECT has_table_privilege(%s, 'kitchen.recipe_vec', 'SELECT')", (cook,))
    assert config(kitchen, vid, "chunking")["chunk_size"] == 128


def test_column_destination_needs_no_chunking(kitchen: psycopg.Connection) -> None:
    vid = create(kitchen, "recipe_in_place", chunking="ai.chunking_none()",
                 destination="ai.destination_column('body_embedding')")
    assert status(kitchen, vid)["embedding_column"] == "body_embedding"
    assert config(kitchen, vid, "destination")["implementation"] == "column"


@pytest.mark.parametrize(("destination", "store", "view"), [
    ("ai.destination_table('recipe_search')", "kitchen.recipe_search_store", "kitchen.recipe_search"),
    (("ai.destination_table(target_schema => 'public', target_table => 'rs_store',"
     " view_schema => 'kitchen', view_name => 'rs')"), "public.rs_store", "kitchen.rs"),
])
def test_destination_table_forms(kitchen: psycopg.Connection, destination: str, store: str, view: str) -> None:
    vid = create(kitchen, "recipe_dest", destination=destination)
    got = status(kitchen, vid)
    assert (got["target_table"], got["view"]) == (store, view)
    assert regclass(kitchen, store) is not None and regclass(kitchen, view) is not None


@pytest.mark.parametrize(("part", "expr", "expected"), [
    ("loading", "ai.loading_column('body')", {"implementation": "column", "column_name": "body"}),
    ("loading", "ai.loading_column(column_name => 'body')", {"implementation": "column"}),
    ("loading", "ai.loading_uri('link')", {"implementation": "uri", "column_name": "link"}),
    ("loading", ("ai.loading_uri(column_name => 'link', retries => 6, aws_role_arn => "
                "'arn:aws:iam::000000000000:role/Reader')"),
     {"implementation": "uri", "retries": 6, "aws_role_arn": "arn:aws:iam::000000000000:role/Reader"}),
    ("parsing", "ai.parsing_auto()", {"implementation": "auto"}),
    ("parsing", "ai.parsing_none()", {"implementation": "none"}),
    ("chunking", "ai.chunking_character_text_splitter(128, 10, E'\\n')",
     {"implementation": "character_text_splitter", "chunk_size": 128, "chunk_overlap": 10, "separator": "\n"}),
    ("chunking", "ai.chunking_recursive_character_text_splitter(256, 20, separators => array[E'\\n;', ' '])",
     {"implementation": "recursive_character_text_splitter", "chunk_size": 256, "separators": ["\n;", " "]}),
    ("chunking", ("ai.chunking_recursive_character_text_splitter(chunk_size => 700, chunk_overlap => 150,"
                 " separators => array[E'\\n## ', E'\\n\\n', '.', ' '])"),
     {"chunk_size": 700, "chunk_overlap": 150}),
    ("embedding", ("ai.embedding_openai('text-embedding-3-small', 768, chat_user => 'chef',"
                  " api_key_name => 'KITCHEN_OPENAI_KEY')"),
     {"implementation": "openai", "dimensions": 768, "user": "chef", "api_key_name": "KITCHEN_OPENAI_KEY"}),
    ("embedding", "ai.embedding_openai(model => 'text-embedding-ada-002', dimensions => '1536')",
     {"model": "text-embedding-ada-002", "dimensions": 1536}),
    ("embedding", ("ai.embedding_ollama('nomic-embed-text', 768, base_url => 'http://127.0.0.1:11434',"
                  " options => '{\"num_ctx\": 1024}', keep_alive => '10m')"),
     {"implementation": "ollama", "base_url": "http://127.0.0.1:11434", "keep_alive": "10m",
      "options": {"num_ctx": 1024}}),
    ("formatting", "ai.formatting_python_template('$chunk')", {"template": "$chunk"}),
    ("formatting", "ai.formatting_python_template('Title: $title\\nCuisine: $cuisine\\n$chunk')",
     {"implementation": "python_template"}),
    ("indexing", "ai.indexing_none()", {"implementation": "none"}),
    ("indexing", "ai.indexing_hnsw(min_rows => 50000, opclass => 'vector_l1_ops')",
     {"implementation": "hnsw", "min_rows": 50000, "opclass": "vector_l1_ops"}),
    ("scheduling", "ai.scheduling_none()", {"implementation": "none"}),
    # No pg_cron in the test databases: a TimescaleDB schedule leaves the vectorizer to the worker.
    ("scheduling", "ai.scheduling_timescaledb('1 minute')", {"implementation": "none"}),
    ("scheduling", ("ai.scheduling_timescaledb(interval '5m', initial_start => '2050-01-06'::timestamptz,"
                    " timezone => 'America/Chicago')"), {"implementation": "none"}),
    ("embedding", "ai.embedding_litellm('cohere/embed-english-v3.0', 1024, api_key_name => 'COHERE_API_KEY')",
     {"implementation": "litellm", "model": "cohere/embed-english-v3.0", "dimensions": 1024}),
    ("embedding", ("ai.embedding_litellm('azure/text-embedding-3-small', 1536, api_key_name => 'AZURE_API_KEY',"
                   " extra_options => '{\"api_base\": \"https://x.openai.azure.com\", \"api_version\": \"2024-02-01\"}'::jsonb)"),
     {"implementation": "litellm", "dimensions": 1536}),
    ("embedding", ("ai.embedding_litellm('bedrock/amazon.titan-embed-text-v2:0', 1024, api_key_name => 'AWS_SECRET_ACCESS_KEY',"
                   " extra_options => '{\"aws_access_key_id\": \"AKIAEXAMPLE\", \"aws_region_name\": \"us-east-1\"}'::jsonb)"),
     {"implementation": "litellm", "dimensions": 1024}),
    ("embedding", "ai.embedding_voyageai('voyage-3-lite', 512)", {"implementation": "voyageai", "dimensions": 512}),
    ("processing", "ai.processing_default(batch_size => 200, concurrency => 5)",
     {"batch_size": 200, "concurrency": 5}),
])
def test_config_forms(kitchen: psycopg.Connection, part: str, expr: str, expected: dict[str, Any]) -> None:
    """One documented config call per case, passed by pgai's argument name for its part."""
    vid = create(kitchen, "recipe_form", **{part: expr})
    got = config(kitchen, vid, part)
    assert {key: got.get(key) for key in expected} == expected


@pytest.mark.parametrize("parser", ["ai.parsing_docling()", "ai.parsing_pymupdf()"])
def test_document_parsers_on_a_bytea_column(kitchen: psycopg.Connection, parser: str) -> None:
    vid = create(kitchen, "recipe_photo", loading="ai.loading_column('photo')", parsing=parser)
    assert config(kitchen, vid, "parsing")["implementation"] == parser[len("ai.parsing_"):-2]


@pytest.mark.parametrize("part", ["indexing => ai.indexing_default()", "scheduling => ai.scheduling_default()"])
def test_default_forms_are_accepted(kitchen: psycopg.Connection, part: str) -> None:
    key, expr = part.split(" => ")
    vid = create(kitchen, "recipe_defaults", **{key: expr})
    assert config(kitchen, vid, key)["config_type"] == key


def test_management_by_name_and_by_id(kitchen: psycopg.Connection) -> None:
    """Schedule switches, queue counts and drop, called with a name and with an id."""
    kitchen.execute("CREATE TABLE kitchen.menu (id int PRIMARY KEY, body text)")
    first = create(kitchen, "kitchen_recipe_search")
    second = int(scalar(kitchen, "SELECT ai.create_vectorizer('kitchen.menu'::regclass,"
                        " name => 'kitchen_menu_search', loading => " + BODY + ", embedding => " + OPENAI + ")"))
    store = status(kitchen, first)["target_table"]
    for call in ("ai.disable_vectorizer_schedule(%s)", "ai.enable_vectorizer_schedule(%s)"):
        for ref in ("kitchen_recipe_search", first):
            kitchen.execute("SELECT " + call, (ref,))
    assert scalar(kitchen, "SELECT ai.vectorizer_queue_pending('kitchen_recipe_search')") == 2
    assert scalar(kitchen, "SELECT ai.vectorizer_queue_pending('kitchen_recipe_search', exact_count => true)") == 2
    assert scalar(kitchen, "SELECT ai.vectorizer_queue_pending(%s, exact_count => true)", (second,)) == 0
    assert rows(kitchen, "SELECT id, source_table, pending_items FROM ai.vectorizer_status"
                         " WHERE pending_items > 0") == [(first, "kitchen.recipe", 2)]
    kitchen.execute("SELECT ai.drop_vectorizer('kitchen_recipe_search', drop_all => true)")
    kitchen.execute("SELECT ai.drop_vectorizer(%s)", (second,))
    assert scalar(kitchen, "SELECT count(*) FROM ai.vectorizer") == 0
    assert store and regclass(kitchen, store) is None


def test_default_name_is_pgais(kitchen: psycopg.Connection) -> None:
    vid = int(scalar(kitchen, "SELECT ai.create_vectorizer('kitchen.recipe'::regclass, loading => "
                              + BODY + ", embedding => " + OPENAI + ")"))
    assert scalar(kitchen, "SELECT name FROM ai.vectorizer WHERE id = %s", (vid,)) == "kitchen_recipe_embedding_store"
    kitchen.execute("SELECT ai.drop_vectorizer('kitchen_recipe_embedding_store', drop_all => true)")


def test_plain_drop_table_of_a_source(kitchen: psycopg.Connection) -> None:
    create(kitchen, "recipe_search")
    kitchen.execute("DROP TABLE kitchen.recipe")   # pgai's docs drop sources this way
    assert scalar(kitchen, "SELECT count(*) FROM ai.vectorizer") == 0


def test_errors_view_has_pgai_columns(kitchen: psycopg.Connection) -> None:
    cur = kitchen.execute("SELECT id, name, message, details, recorded FROM ai.vectorizer_errors")
    assert [c.name for c in cur.description or ()] == ["id", "name", "message", "details", "recorded"]
