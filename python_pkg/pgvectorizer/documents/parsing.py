"""Parsers: a loaded Document becomes the text that is chunked and embedded.

ai.parsing_auto picks a parser by the document's type (the bytes' signature first, then the
MIME type, then the name's extension) among ones that need no downloaded model, so that it
works on a machine that cannot reach a model hub: pypdf for PDF, python-docx for DOCX,
python-pptx for PPTX, markdownify for HTML (to Markdown), and UTF-8 decoding for Markdown and
plain text. ai.parsing_pymupdf uses PyMuPDF and ai.parsing_docling docling's layout models;
both are optional extras, and their absence is a configuration error, never a silent fallback.
"""

from __future__ import annotations

import importlib
import importlib.util
import io
import os
import zipfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from ..errors import ConfigError, MissingDependency, MissingModel
from . import Document, DocumentError

T = TypeVar("T")

Parser = Callable[[Document], str]

PDF, DOCX, PPTX, HTML, MARKDOWN, TEXT = "pdf", "docx", "pptx", "html", "markdown", "text"

_EXTENSIONS = {
    ".pdf": PDF, ".docx": DOCX, ".pptx": PPTX, ".html": HTML, ".htm": HTML, ".xhtml": HTML,
    ".md": MARKDOWN, ".markdown": MARKDOWN, ".txt": TEXT, ".text": TEXT, ".csv": TEXT,
    ".json": TEXT, ".rst": TEXT, ".log": TEXT,
}
_MIME_TYPES = {
    "application/pdf": PDF,
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document": DOCX,
    "application/vnd.openxmlformats-officedocument.presentationml.presentation": PPTX,
    "text/html": HTML, "application/xhtml+xml": HTML,
    "text/markdown": MARKDOWN, "text/x-markdown": MARKDOWN,
    "text/plain": TEXT, "text/csv": TEXT, "application/json": TEXT,
}
# MIME types that say nothing about the content: the name or the bytes decide instead.
_VAGUE_MIME = {"application/octet-stream", "binary/octet-stream", "application/zip"}


def _fail(doc: Document, cause: str) -> DocumentError:
    return DocumentError("parsing", f"{doc.label}: {cause}")


def _extension(doc: Document) -> str:
    for where in (doc.name, doc.uri):
        if where:
            path = where.split("?", 1)[0].split("#", 1)[0]
            suffix = Path(path).suffix.lower()
            if suffix:
                return suffix
    return ""


def detect_type(doc: Document) -> str | None:
    """The document's type (pdf, docx, pptx, html, markdown, text), or None when unknown."""
    data = doc.data
    if data.lstrip()[:5] == b"%PDF-":
        return PDF
    if data[:4] == b"PK\x03\x04":
        try:
            with zipfile.ZipFile(io.BytesIO(data)) as archive:
                names = set(archive.namelist())
        except zipfile.BadZipFile:
            names = set()
        if "word/document.xml" in names:
            return DOCX
        if "ppt/presentation.xml" in names:
            return PPTX
    mime = (doc.content_type or "").split(";", 1)[0].strip().lower()
    if mime in _MIME_TYPES:
        return _MIME_TYPES[mime]
    suffix = _extension(doc)
    if suffix in _EXTENSIONS:
        return _EXTENSIONS[suffix]
    if mime and mime not in _VAGUE_MIME and not mime.startswith("text/"):
        return None
    if b"\x00" in data[:8192]:
        return None
    head = data[:1024].lstrip().lower()
    if head.startswith((b"<!doctype html", b"<html")):
        return HTML
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return None
    return TEXT


def _decode(doc: Document) -> str:
    if b"\x00" in doc.data[:8192]:
        raise _fail(doc, "is binary, not UTF-8 text (ai.parsing_auto() reads PDF, DOCX, PPTX "
                         "and HTML)")
    try:
        return doc.data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise _fail(doc, f"is not valid UTF-8 text (byte {exc.start})") from None


def _parse_pdf(doc: Document) -> str:
    import pypdf
    from pypdf.errors import PyPdfError

    try:
        reader = pypdf.PdfReader(io.BytesIO(doc.data))
        if reader.is_encrypted:
            raise _fail(doc, "is an encrypted PDF")
        pages = [(page.extract_text() or "").strip() for page in reader.pages]
    except DocumentError:
        raise
    except (PyPdfError, ValueError, KeyError, TypeError, OSError) as exc:
        raise _fail(doc, f"is not a readable PDF ({type(exc).__name__}: {exc})") from None
    text = "\n\n".join(p for p in pages if p)
    if not text:
        raise _fail(doc, f"is a PDF of {len(pages)} page(s) with no text layer (a scanned PDF "
                         "needs OCR: ai.parsing_docling())")
    return text


def _table_markdown(rows: list[list[str]]) -> str:
    if not rows:
        return ""
    width = max(len(r) for r in rows)
    cells = [[c.replace("\n", " ").replace("|", "\\|").strip() for c in r] + [""] * (width - len(r))
             for r in rows]
    lines = ["| " + " | ".join(cells[0]) + " |", "|" + " --- |" * width]
    lines += ["| " + " | ".join(r) + " |" for r in cells[1:]]
    return "\n".join(lines)


def _open_package(doc: Document, kind: str, opener: Callable[[io.BytesIO], T]) -> T:
    """An Office package opened by its library; a damaged one is this document's failure."""
    try:
        return opener(io.BytesIO(doc.data))
    except Exception as exc:  # noqa: BLE001 - python-docx and python-pptx raise several kinds
        raise _fail(doc, f"is not a readable {kind} ({type(exc).__name__}: {exc})") from None


def _parse_docx(doc: Document) -> str:
    import docx
    from docx.table import Table
    from docx.text.paragraph import Paragraph

    document = _open_package(doc, "DOCX", docx.Document)
    blocks: list[str] = []
    for child in document.element.body.iterchildren():
        tag = child.tag.rsplit("}", 1)[-1]
        if tag == "p":
            para = Paragraph(child, document)
            text = para.text.strip()
            if not text:
                continue
            style = (para.style.name if para.style is not None else "") or ""
            if style.startswith("Heading") and style[7:].strip().isdigit():
                text = "#" * min(int(style[7:]), 6) + " " + text
            elif style == "Title":
                text = "# " + text
            blocks.append(text)
        elif tag == "tbl":
            table = Table(child, document)
            blocks.append(_table_markdown([[cell.text for cell in row.cells] for row in table.rows]))
    return "\n\n".join(b for b in blocks if b)


def _parse_pptx(doc: Document) -> str:
    import pptx

    presentation = _open_package(doc, "PPTX", pptx.Presentation)
    slides: list[str] = []
    for number, slide in enumerate(presentation.slides, start=1):
        parts = [f"## Slide {number}"]
        for shape in slide.shapes:
            if getattr(shape, "has_text_frame", False) and shape.text_frame.text.strip():
                parts.append(_pptx_text(shape.text_frame.text))
            elif getattr(shape, "has_table", False):
                parts.append(_table_markdown([[_pptx_text(c.text) for c in row.cells]
                                              for row in shape.table.rows]))
        if slide.has_notes_slide and slide.notes_slide.notes_text_frame is not None:
            notes = _pptx_text(slide.notes_slide.notes_text_frame.text)
            if notes:
                parts.append(notes)
        slides.append("\n\n".join(parts))
    return "\n\n".join(slides)


def _pptx_text(text: str) -> str:
    # python-pptx gives a line break inside a paragraph (Shift+Enter) as a vertical tab, which
    # tokenizers drop, gluing the words on either side into one.
    return text.replace("\x0b", "\n").strip()


def _parse_html(doc: Document) -> str:
    from bs4 import BeautifulSoup
    from markdownify import MarkdownConverter

    soup = BeautifulSoup(_decode(doc), "html.parser")
    for tag in soup(["script", "style", "noscript", "template"]):
        tag.decompose()
    # No Markdown escapes: the text is embedded, not rendered, and handle\_read() or 2\*k
    # is not what the page says.
    text: str = MarkdownConverter(heading_style="ATX", escape_underscores=False,
                                  escape_asterisks=False, escape_misc=False).convert_soup(soup)
    # markdownify keeps the blank lines between blocks; three or more say nothing more.
    lines = [line.rstrip() for line in text.splitlines()]
    out: list[str] = []
    for line in lines:
        if line or (out and out[-1]):
            out.append(line)
    return "\n".join(out).strip()


_AUTO: dict[str, Parser] = {
    PDF: _parse_pdf, DOCX: _parse_docx, PPTX: _parse_pptx, HTML: _parse_html,
    MARKDOWN: _decode, TEXT: _decode,
}


def parse_auto(doc: Document) -> str:
    """ai.parsing_auto: the parser for the document's type."""
    kind = detect_type(doc)
    if kind is None:
        hint = f" (content type {doc.content_type})" if doc.content_type else ""
        raise _fail(doc, f"has an unknown type{hint}: parsing_auto reads PDF, DOCX, PPTX, HTML, "
                         "Markdown and UTF-8 text")
    return _AUTO[kind](doc)


def _require(module: str, package: str, parser: str) -> Any:
    if importlib.util.find_spec(module) is None:
        raise MissingDependency(f"{parser} needs the {package} package: pip install "
                                f"'pgvectorizer[{package.lower()}]' (on the database server too, "
                                "for in-database runs)", package=package)
    return importlib.import_module(module)


def _pymupdf_parser() -> Parser:
    pymupdf = _require("pymupdf", "PyMuPDF", "parsing_pymupdf")

    def parse(doc: Document) -> str:
        kind = detect_type(doc)
        if kind in (MARKDOWN, TEXT):
            return _decode(doc)
        filetype = {PDF: "pdf", DOCX: "docx", PPTX: "pptx", HTML: "html"}.get(kind or "", "")
        if not filetype:
            raise _fail(doc, "has a type PyMuPDF cannot read")
        try:
            with pymupdf.open(stream=doc.data, filetype=filetype) as opened:
                text = "\n\n".join(page.get_text().strip() for page in opened)
        except Exception as exc:  # noqa: BLE001 - PyMuPDF raises its own FileDataError and RuntimeErrors
            raise _fail(doc, f"is not a readable {filetype.upper()} for PyMuPDF "
                             f"({type(exc).__name__}: {exc})") from None
        return text.strip()

    return parse


def docling_artifacts_path() -> Path:
    """Where docling's layout models are expected (DOCLING_ARTIFACTS_PATH, else its cache)."""
    configured = os.environ.get("DOCLING_ARTIFACTS_PATH")
    return Path(configured) if configured else Path.home() / ".cache" / "docling" / "models"


def _docling_parser() -> Parser:
    _require("docling", "docling", "parsing_docling")
    artifacts = docling_artifacts_path()
    if not artifacts.is_dir() or not any(artifacts.iterdir()):
        raise MissingModel(f"parsing_docling needs docling's layout models in {artifacts}, and "
                           "none are there: run `docling-tools models download` where a model hub "
                           "is reachable and copy them there (or set DOCLING_ARTIFACTS_PATH); "
                           "ai.parsing_auto() needs no models")
    # Imported by name: docling is an optional extra without stubs here.
    base_models = importlib.import_module("docling.datamodel.base_models")
    pipeline_options = importlib.import_module("docling.datamodel.pipeline_options")
    converter_module = importlib.import_module("docling.document_converter")
    options = pipeline_options.PdfPipelineOptions(artifacts_path=str(artifacts))
    pdf_option = converter_module.PdfFormatOption(pipeline_options=options)
    converter = converter_module.DocumentConverter(
        format_options={base_models.InputFormat.PDF: pdf_option})

    def parse(doc: Document) -> str:
        kind = detect_type(doc)
        if kind in (MARKDOWN, TEXT):
            return _decode(doc)
        suffix = {PDF: ".pdf", DOCX: ".docx", PPTX: ".pptx", HTML: ".html"}.get(kind or "", "")
        if not suffix:
            raise _fail(doc, "has a type docling is not asked to read here")
        try:
            result = converter.convert(base_models.DocumentStream(name="document" + suffix, stream=io.BytesIO(doc.data)))
            return str(result.document.export_to_markdown()).strip()
        except Exception as exc:  # noqa: BLE001 - docling wraps its backends' errors in several kinds
            raise _fail(doc, f"docling could not read it ({type(exc).__name__}: {exc})") from None

    return parse


def make_parser(parsing_config: Mapping[str, Any]) -> Parser:
    """The parser that a vectorizer's parsing config (from ai.parsing_*()) names."""
    implementation = parsing_config.get("implementation")
    if implementation == "auto":
        return parse_auto
    if implementation == "none":
        return _decode
    if implementation == "pymupdf":
        return _pymupdf_parser()
    if implementation == "docling":
        return _docling_parser()
    raise ConfigError(f"unknown parsing implementation {implementation!r}: use ai.parsing_auto(), "
                      "ai.parsing_none(), ai.parsing_pymupdf() or ai.parsing_docling()")
