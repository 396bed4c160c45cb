"""documents/parsing.py on real documents written by their own libraries."""

from __future__ import annotations

import io
import zipfile

import pytest
from pgvectorizer.documents import Document, DocumentError
from pgvectorizer.documents.parsing import detect_type, make_parser
from pgvectorizer.errors import ConfigError, MissingDependency

from tests.helpers import documents as d

AUTO = {"implementation": "auto", "config_type": "parsing"}


def parse(data: bytes, **kw: str) -> str:
    return make_parser(AUTO)(Document(data=data, **kw))


def test_pdf_two_pages_and_table() -> None:
    text = parse(d.pdf_two_pages(), name="report.pdf")
    assert d.PAGE_ONE in text.replace("\n", " ")
    assert d.PAGE_TWO in text.replace("\n", " ")
    assert text.index("lighthouse") < text.index("Helium") < text.index("salmon")
    assert "Argon" in text and "Ar" in text


def test_type_from_signature_not_name() -> None:
    # No name, no MIME type: the bytes say what each is.
    assert detect_type(Document(data=d.pdf_two_pages())) == "pdf"
    assert detect_type(Document(data=d.docx_document())) == "docx"
    assert detect_type(Document(data=d.pptx_document())) == "pptx"
    assert detect_type(Document(data=d.html_document())) == "html"
    assert detect_type(Document(data=d.text_document())) == "text"
    assert detect_type(Document(data=d.markdown_document(), name="notes.md")) == "markdown"
    assert detect_type(Document(data=b"<p>x</p>", content_type="text/html; charset=utf-8")) == "html"
    assert detect_type(Document(data=b"x", uri="https://h/a/notes.MD?v=2")) == "markdown"


def test_docx_heading_paragraph_table() -> None:
    text = parse(d.docx_document())
    assert "# Sales report" in text
    assert d.DOCX_SENTENCE in text
    assert "| Helium | He |" in text
    assert text.index("Sales report") < text.index("revenue") < text.index("Helium")


def test_pptx_slides() -> None:
    text = parse(d.pptx_document(), name="deck.pptx")
    assert "## Slide 1" in text
    assert "Glaciology" in text and d.PPTX_SENTENCE in text


def test_pptx_line_breaks_inside_a_paragraph_stay_breaks() -> None:
    import pptx

    presentation = pptx.Presentation()
    box = presentation.slides.add_slide(presentation.slide_layouts[6]).shapes.add_textbox(0, 0, 100, 100)
    run = box.text_frame.paragraphs[0]
    run.text = "first line"
    run.add_line_break()   # Shift+Enter: python-pptx reads it back as a vertical tab
    run.add_run().text = "second line"
    out = io.BytesIO()
    presentation.save(out)
    text = parse(out.getvalue(), name="deck.pptx")
    assert "first line\nsecond line" in text and "\x0b" not in text


def test_html_text_is_not_markdown_escaped() -> None:
    page = b"<p>Call handle_read() with a[2*k+1] and *may* [sic] or 1. ok</p>"
    text = parse(page, name="page.html")
    assert "handle_read() with a[2*k+1] and *may* [sic] or 1. ok" in text


def test_html_to_markdown_without_scripts() -> None:
    text = parse(d.html_document(), name="page.html")
    assert "# Vineyards" in text
    assert d.HTML_SENTENCE in text
    assert "Merlot" in text
    assert "do not embed" not in text and "color: red" not in text


def test_markdown_and_text_as_they_are() -> None:
    assert parse(d.markdown_document(), name="bees.md") == d.markdown_document().decode()
    assert parse(d.text_document()) == d.text_document().decode()
    assert parse(b"\xef\xbb\xbfbom text", name="a.txt") == "bom text"


def test_corrupt_pdf_is_named() -> None:
    broken = d.pdf_two_pages()[:200]
    with pytest.raises(DocumentError) as info:
        parse(broken, name="broken.pdf")
    assert info.value.step == "parsing"
    assert "bytea document broken.pdf" in str(info.value) and "PDF" in str(info.value)


def test_corrupt_docx_by_name() -> None:
    with pytest.raises(DocumentError, match="not a readable DOCX"):
        parse(b"PK\x03\x04 not really a zip", uri="file:///tmp/x.docx")


def test_unknown_type() -> None:
    png = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(64)
    with pytest.raises(DocumentError, match="unknown type") as info:
        parse(png, uri="s3://bucket/picture")
    assert "s3://bucket/picture" in str(info.value)
    # A zip that is neither DOCX nor PPTX.
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as z:
        z.writestr("a.bin", b"\x00\x01")
    with pytest.raises(DocumentError, match="unknown type"):
        parse(out.getvalue())


def test_pdf_without_text_layer() -> None:
    from fpdf import FPDF

    pdf = FPDF()
    pdf.add_page()
    pdf.rect(10, 10, 50, 50)
    with pytest.raises(DocumentError, match="no text layer"):
        parse(bytes(pdf.output()))


def test_parsing_none_decodes_utf8_and_refuses_binary() -> None:
    none = make_parser({"implementation": "none"})
    assert none(Document(data="héllo".encode())) == "héllo"
    with pytest.raises(DocumentError, match="binary, not UTF-8"):
        none(Document(data=d.pdf_two_pages()[:10] + b"\x00\x00", name="x.pdf"))
    with pytest.raises(DocumentError, match="not valid UTF-8"):
        none(Document(data=b"caf\xe9"))


def test_bad_config() -> None:
    with pytest.raises(ConfigError, match="unknown parsing implementation 'ocr'"):
        make_parser({"implementation": "ocr"})
    with pytest.raises(ConfigError, match="unknown parsing implementation None"):
        make_parser({})


def test_docling_absent_is_a_clear_error(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    import importlib.util

    if importlib.util.find_spec("docling") is None:
        with pytest.raises(MissingDependency, match=r"parsing_docling needs the docling package") as info:
            make_parser({"implementation": "docling"})
        assert info.value.package == "docling"
    else:
        monkeypatch.setenv("DOCLING_ARTIFACTS_PATH", str(tmp_path / "none"))
        with pytest.raises(ConfigError, match="layout models"):
            make_parser({"implementation": "docling"})


def test_pymupdf_absent_or_parses() -> None:
    import importlib.util

    if importlib.util.find_spec("pymupdf") is None:
        with pytest.raises(MissingDependency, match="PyMuPDF"):
            make_parser({"implementation": "pymupdf"})
    else:
        text = make_parser({"implementation": "pymupdf"})(Document(data=d.pdf_two_pages()))
        assert d.PAGE_TWO in text.replace("\n", " ")
