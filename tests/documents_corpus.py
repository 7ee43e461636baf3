"""PDFs and DOCX files built in memory for the tests and benchmarks/document_bench.py: real-world-like
ones (written by fpdf2 and python-docx: headings, wrapped paragraphs, tables, lists, a scan) and
hostile ones (encrypted, 10,000+ pages, a lying page count, decompression bombs in a content stream
and in an object stream, zip bombs, lying zip sizes, thousands of zip entries).

Every page of a report, and every section of a .docx, holds one fact found nowhere else:
`codeword(n)` ("quokka17"), so a search for it must come back with that page or heading.
"""
from __future__ import annotations

import io
import struct
import textwrap
import zipfile
import zlib

import docx
import pypdf
from fpdf import FPDF
from PIL import Image, ImageDraw

TOPICS = ["Revenue", "Staffing", "Logistics", "Safety", "Outlook", "Suppliers", "Energy", "Customers"]
LOREM = ("The committee reviewed the quarterly figures in detail and compared them with the plan agreed "
         "in the spring. Several teams reported delays caused by late deliveries, while others finished "
         "ahead of schedule thanks to better planning and a calmer season. ")


def codeword(n: int) -> str:
    return f"quokka{n}"


def fact(n: int) -> str:
    return f"The inspection codeword for part {n} is {codeword(n)}, and its budget was {1000 + 37 * n} euros."


# -- real-world-like PDFs (fpdf2) ----------------------------------------------------------------

def report_pdf(pages: int = 50, paragraphs: int = 4) -> bytes:
    """A report: a heading per page, wrapped paragraphs (each page's fact in the middle), a table every
    fifth page, page numbers in the footer."""
    pdf = FPDF(format="A4")
    pdf.set_auto_page_break(False)
    for n in range(1, pages + 1):
        pdf.add_page()
        pdf.set_font("helvetica", "B", 15)
        pdf.cell(0, 9, f"{n}. {TOPICS[n % len(TOPICS)]} review", new_x="LMARGIN", new_y="NEXT")
        pdf.set_font("helvetica", size=10)
        for p in range(paragraphs):
            body = LOREM + (fact(n) + " " if p == paragraphs // 2 else "") + LOREM
            _lines(pdf, body)
        if n % 5 == 0:
            _table(pdf, n)
        pdf.set_y(-15)
        pdf.cell(0, 8, f"Page {n} of {pages}", align="C")
    return bytes(pdf.output())


def _lines(pdf: FPDF, text: str, width: int = 95) -> None:
    """Wrapped by textwrap, one cell a line (fpdf2's multi_cell is slow for hundreds of pages)."""
    for line in textwrap.wrap(text, width):
        pdf.cell(0, 5, line, new_x="LMARGIN", new_y="NEXT")
    pdf.ln(3)


def _table(pdf: FPDF, n: int) -> None:
    with pdf.table(col_widths=(50, 30, 30)) as table:
        for row in (("Item", "Plan", "Actual"), (f"Unit {n}", str(10 * n), str(11 * n)), ("Total", "100", "104")):
            cells = table.row()
            for value in row:
                cells.cell(value)


def scanned_pdf(pages: int = 2) -> bytes:
    """Pages that are only pictures of text (as a scanner makes them): no text layer at all."""
    pdf = FPDF(format="A4")
    for n in range(pages):
        image = Image.new("L", (620, 877), 250)
        draw = ImageDraw.Draw(image)
        for y in range(60, 820, 18):
            draw.text((40, y), f"Scanned line {y} of page {n + 1}: the quick brown fox", fill=30)
        pdf.add_page()
        pdf.image(image, x=0, y=0, w=210)
    return bytes(pdf.output())


def half_scanned_pdf() -> bytes:
    """A text page, then a scanned one: the text is read, the scan counted as a page without text."""
    writer = pypdf.PdfWriter()
    for data in (report_pdf(pages=1), scanned_pdf(pages=1)):
        writer.append(pypdf.PdfReader(io.BytesIO(data)))
    return _written(writer)


def encrypted_pdf(user_password: str = "secret") -> bytes:
    """RC4-128 (pypdf needs no crypto library for it). An empty user password only restricts permissions."""
    writer = pypdf.PdfWriter(clone_from=pypdf.PdfReader(io.BytesIO(report_pdf(pages=2))))
    writer.encrypt(user_password=user_password, owner_password="owner-secret", algorithm="RC4-128")
    return _written(writer)


def _written(writer: pypdf.PdfWriter) -> bytes:
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


# -- hostile PDFs, written byte by byte ------------------------------------------------------------

def raw_pdf(objects: dict[int, bytes], root: int = 1) -> bytes:
    """A PDF with a classic xref table from numbered object bodies."""
    out = bytearray(b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n")
    offsets = {}
    for number in sorted(objects):
        offsets[number] = len(out)
        out += b"%d 0 obj\n%s\nendobj\n" % (number, objects[number])
    size, start = max(objects) + 1, len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % size
    out += b"".join(b"%010d 00000 n \n" % offsets[n] if n in offsets else b"0000000000 65535 f \n"
                    for n in range(1, size))
    out += b"trailer\n<< /Size %d /Root %d 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (size, root, start)
    return bytes(out)


def stream(body: bytes, extra: bytes = b"", flate: bool = False) -> bytes:
    """A stream object; `flate`: the body is zlib data (FlateDecode)."""
    return b"<< /Length %d%s%s >>\nstream\n%s\nendstream" % (
        len(body), b" /Filter /FlateDecode" if flate else b"", extra, body)


def deflated(size: int, byte: bytes = b" ") -> bytes:
    """`size` bytes of one byte, compressed a megabyte at a time (about 1,000 to 1)."""
    packer, block, parts = zlib.compressobj(9), byte * (1 << 20), []
    for _ in range(size >> 20):
        parts.append(packer.compress(block))
    return b"".join(parts) + packer.flush()


def many_pages_pdf(pages: int = 10_001, declared: int | None = None, per_node: int | None = None) -> bytes:
    """`pages` blank pages, under the root /Pages node or, with per_node, under intermediate nodes of
    that many pages each; `declared` is the /Count the root claims (a liar's is small)."""
    per_node = per_node or pages
    nodes = -(-pages // per_node) if per_node < pages else 0
    first_page = 3 + nodes
    objects = {1: b"<< /Type /Catalog /Pages 2 0 R >>"}
    for node in range(nodes):
        kids = range(first_page + node * per_node, first_page + min(pages, (node + 1) * per_node))
        objects[3 + node] = b"<< /Type /Pages /Parent 2 0 R /Count %d /Kids [%s] >>" % (
            len(kids), b" ".join(b"%d 0 R" % kid for kid in kids))
    top = range(3, 3 + nodes) if nodes else range(first_page, first_page + pages)
    objects[2] = b"<< /Type /Pages /Count %d /Kids [%s] >>" % (
        pages if declared is None else declared, b" ".join(b"%d 0 R" % kid for kid in top))
    for i in range(pages):
        objects[first_page + i] = b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] >>"
    return raw_pdf(objects)


FONT = b"/Resources << /Font << /F1 << /Type /Font /Subtype /Type1 /BaseFont /Helvetica >> >> >>"


def content_bomb_pdf(inflated: int) -> bytes:
    """One page (with a font, so a reader must look at its content) whose content stream inflates to
    `inflated` bytes of spaces."""
    body = deflated(inflated)
    return raw_pdf({1: b"<< /Type /Catalog /Pages 2 0 R >>", 2: b"<< /Type /Pages /Count 1 /Kids [3 0 R] >>",
                    3: b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] %s /Contents 4 0 R >>" % FONT,
                    4: stream(body, flate=True)})


def object_stream_bomb_pdf(inflated: int) -> bytes:
    """Catalog, pages and page packed in an object stream (PDF 1.5) padded to inflate to `inflated`
    bytes, found through a cross-reference stream: opening the file at all means unpacking it."""
    bodies = [b"<< /Type /Catalog /Pages 2 0 R >>", b"<< /Type /Pages /Count 1 /Kids [3 0 R] >>",
              b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] >>"]
    offsets, position = [], 0
    for body in bodies:
        offsets.append(position)
        position += len(body) + 1
    header = b" ".join(b"%d %d" % (i + 1, offset) for i, offset in enumerate(offsets)) + b" "
    packer = zlib.compressobj(9)
    packed = packer.compress(header + b" ".join(bodies) + b" ")
    packed += b"".join(packer.compress(b" " * (1 << 20)) for _ in range(inflated >> 20)) + packer.flush()
    out = bytearray(b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n")
    stream_at = len(out)
    out += b"4 0 obj\n%s\nendobj\n" % stream(packed, b" /Type /ObjStm /N 3 /First %d" % len(header), flate=True)
    xref_at = len(out)
    rows = [(0, 0, 65535), (2, 4, 0), (2, 4, 1), (2, 4, 2), (1, stream_at, 0), (1, xref_at, 0)]
    table = b"".join(struct.pack(">BIH", *row) for row in rows)
    out += b"5 0 obj\n%s\nendobj\n" % stream(table, b" /Type /XRef /Size 6 /W [1 4 2] /Root 1 0 R")
    out += b"startxref\n%d\n%%%%EOF\n" % xref_at
    return bytes(out)


# -- DOCX (python-docx) ----------------------------------------------------------------------------

def report_docx(sections: int = 12) -> bytes:
    """A title, a heading per section (some with a sub-heading), paragraphs (each section's fact in
    its own paragraph), a bulleted list and a table."""
    document = docx.Document()
    document.add_heading("Annual operations report", 0)
    document.add_paragraph("Prepared by the operations office. " + LOREM)
    for n in range(1, sections + 1):
        document.add_heading(f"{TOPICS[n % len(TOPICS)]} in part {n}", level=1)
        document.add_paragraph(LOREM)
        document.add_paragraph(fact(n))
        if n % 3 == 0:
            document.add_heading(f"Details of part {n}", level=2)
            for item in ("first delivery", "second delivery", "final check"):
                document.add_paragraph(f"{item} for part {n}", style="List Bullet")
        if n % 4 == 0:
            table = document.add_table(rows=2, cols=3)
            for i, value in enumerate(("Item", "Plan", "Actual", f"Unit {n}", str(10 * n), str(11 * n))):
                table.cell(i // 3, i % 3).text = value
        document.add_paragraph(LOREM)
    out = io.BytesIO()
    document.save(out)
    return out.getvalue()


def with_entries(data: bytes, entries: dict[str, bytes]) -> bytes:
    """The .docx with more zip entries added (compressed)."""
    out = io.BytesIO(data)
    with zipfile.ZipFile(out, "a", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, content in entries.items():
            archive.writestr(name, content)
    return out.getvalue()


def zip_bomb_docx(inflated: int) -> bytes:
    """A real .docx carrying a media part that inflates to `inflated` bytes (declared honestly)."""
    return with_entries(report_docx(2), {"word/media/filler.bin": b"\0" * inflated})


def lying_zip_docx(inflated: int, declared: int = 1000) -> bytes:
    """A zip bomb whose directory claims the filler is `declared` bytes: the reader must not trust it."""
    data = bytearray(zip_bomb_docx(inflated))
    name = b"word/media/filler.bin"
    central = data.rfind(b"PK\x01\x02", 0, data.rfind(name))  # the filler's central directory record
    struct.pack_into("<I", data, central + 24, declared)  # uncompressed size
    local = data.rfind(b"PK\x03\x04", 0, data.find(name))
    struct.pack_into("<I", data, local + 22, declared)
    return bytes(data)


def many_entries_docx(entries: int) -> bytes:
    return with_entries(report_docx(1), {f"customXml/extra{i}.xml": b"<a/>" for i in range(entries)})


def plain_zip(name: str = "hello.txt") -> bytes:
    """A zip that is not a Word document (no word/document.xml)."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr(name, "hello")
    return out.getvalue()


OLE_HEADER = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\0" * 504  # an old .doc, or a password-protected .docx
PNG_BYTES = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + b"\0" * 64
