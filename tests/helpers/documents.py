"""Real documents of each type, written by their libraries, for the parsing tests."""

from __future__ import annotations

import io

PAGE_ONE = "The lighthouse keeper logged the storm on the first page."
PAGE_TWO = "Migrating salmon return upstream to the river where they hatched."
TABLE_ROWS = [["Element", "Symbol"], ["Helium", "He"], ["Argon", "Ar"]]
DOCX_SENTENCE = "Quarterly revenue grew in the northern region."
PPTX_SENTENCE = "Glaciers carve valleys over thousands of years."
HTML_SENTENCE = "Volcanic soil makes the vineyards fertile."
MARKDOWN_SENTENCE = "Honeybees communicate by dancing."
TEXT_SENTENCE = "The tram line closes at midnight on Sundays."


def pdf_two_pages() -> bytes:
    """A PDF (fpdf2) with a sentence on each of two pages and a table on the first."""
    from fpdf import FPDF

    pdf = FPDF()
    pdf.set_font("Helvetica", size=12)
    pdf.add_page()
    pdf.multi_cell(0, 8, PAGE_ONE)
    with pdf.table() as table:
        for row in TABLE_ROWS:
            cells = table.row()
            for value in row:
                cells.cell(value)
    pdf.add_page()
    pdf.multi_cell(0, 8, PAGE_TWO)
    return bytes(pdf.output())


def docx_document() -> bytes:
    import docx

    document = docx.Document()
    document.add_heading("Sales report", level=1)
    document.add_paragraph(DOCX_SENTENCE)
    table = document.add_table(rows=0, cols=2)
    for row in TABLE_ROWS:
        cells = table.add_row().cells
        for cell, value in zip(cells, row, strict=True):
            cell.text = value
    out = io.BytesIO()
    document.save(out)
    return out.getvalue()


def pptx_document() -> bytes:
    import pptx

    presentation = pptx.Presentation()
    slide = presentation.slides.add_slide(presentation.slide_layouts[1])
    slide.shapes.title.text = "Glaciology"
    slide.placeholders[1].text = PPTX_SENTENCE
    out = io.BytesIO()
    presentation.save(out)
    return out.getvalue()


def html_document() -> bytes:
    return (f"<!DOCTYPE html><html><head><title>Wine</title><style>p {{color: red}}</style>"
            f"<script>var hidden = 'do not embed';</script></head><body><h1>Vineyards</h1>"
            f"<p>{HTML_SENTENCE}</p><ul><li>Merlot</li><li>Syrah</li></ul></body></html>").encode()


def markdown_document() -> bytes:
    return f"# Bees\n\n{MARKDOWN_SENTENCE}\n\n- waggle\n- round\n".encode()


def text_document() -> bytes:
    return f"{TEXT_SENTENCE}\nTimetable changes apply from May.\n".encode()
