"""A .docx's text heading by heading, with python-docx, inside the worker process (documents/worker.py).

A .docx is a zip: before python-docx sees it, the zip's directory is checked (at most
MAX_ZIP_ENTRIES entries, declared unpacked sizes adding up to at most DOCUMENT_MAX_INFLATED_MB,
a word/document.xml inside), then every entry is unpacked in blocks, counting what it really
yields, so a zip whose directory lies is stopped at the same cap.
"""
from __future__ import annotations

import io
import re
import time
import zipfile

import docx
from docx.table import Table

from .limits import MAX_ZIP_ENTRIES, Limits, Refused, megabytes

DAMAGED = "{name} could not be read as a Word document (it is damaged or not really a .docx)."
NOT_WORD = "{name} is a zip file but not a Word document (it has no word/document.xml)."
TOO_MANY_PARTS = "{name} has {entries:,} parts inside; at most {cap:,} are accepted."
INFLATES = "{name} unpacks to more than {cap}; it was refused."
TOO_SLOW = "Reading {name} took longer than {seconds:g} s, so it was stopped."
TOO_MUCH_TEXT = "{name} holds more than {cap} of text; at most that much is accepted."
NO_TEXT = "{name} contains no text to analyse."
HEADING = re.compile(r"^(?:Title|Heading \d)$")
MAX_HEADING_CHARS = 120
BLOCK = 1 << 20


def read_docx(data: bytes, name: str, limits: Limits) -> dict:
    """{"sections": [{"text", "heading"}...]}, a section per heading (None before the first); Refused."""
    deadline = time.monotonic() + limits.timeout_s
    _check_package(data, name, limits.max_inflated_bytes)
    try:
        document = docx.Document(io.BytesIO(data))
        sections = _sections(document, name, limits, deadline)
    except (Refused, MemoryError):
        raise
    except Exception:  # noqa: BLE001 - python-docx and lxml raise many kinds on a malformed package
        raise Refused(DAMAGED.format(name=name)) from None
    if not sections:
        raise Refused(NO_TEXT.format(name=name))
    return {"sections": sections}


def _check_package(data: bytes, name: str, cap: int) -> None:
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, ValueError, OSError):
        raise Refused(DAMAGED.format(name=name)) from None
    with archive:
        entries = archive.infolist()
        if len(entries) > MAX_ZIP_ENTRIES:
            raise Refused(TOO_MANY_PARTS.format(name=name, entries=len(entries), cap=MAX_ZIP_ENTRIES))
        if sum(entry.file_size for entry in entries) > cap:
            raise Refused(INFLATES.format(name=name, cap=megabytes(cap)))
        if "word/document.xml" not in {entry.filename for entry in entries}:
            raise Refused(NOT_WORD.format(name=name))
        _unpack_counting(archive, entries, name, cap)


def _unpack_counting(archive: zipfile.ZipFile, entries: list[zipfile.ZipInfo], name: str, cap: int) -> None:
    """Every entry unpacked in blocks and thrown away; zipfile also checks each one's CRC."""
    total = 0
    try:
        for entry in entries:
            with archive.open(entry) as member:
                while block := member.read(BLOCK):
                    total += len(block)
                    if total > cap:
                        raise Refused(INFLATES.format(name=name, cap=megabytes(cap)))
    except (zipfile.BadZipFile, RuntimeError, NotImplementedError, ValueError, OSError, EOFError):
        raise Refused(DAMAGED.format(name=name)) from None


def _sections(document, name: str, limits: Limits, deadline: float) -> list[dict]:
    """Paragraphs and tables in document order; a heading paragraph starts a new section."""
    sections: list[dict] = []
    heading, lines, total = None, [], 0
    for block in document.iter_inner_content():
        if time.monotonic() > deadline:
            raise Refused(TOO_SLOW.format(name=name, seconds=limits.timeout_s))
        text = _table_text(block) if isinstance(block, Table) else block.text.strip()
        if not isinstance(block, Table) and _is_heading(block) and text:
            _close(sections, heading, lines)
            heading, lines = text[:MAX_HEADING_CHARS], []
        if text:
            lines.append(text)
            total += len(text.encode("utf-8", "replace")) + 2
            if total > limits.max_text_bytes:
                raise Refused(TOO_MUCH_TEXT.format(name=name, cap=megabytes(limits.max_text_bytes)))
    _close(sections, heading, lines)
    return sections


def _close(sections: list[dict], heading: str | None, lines: list[str]) -> None:
    if lines:
        sections.append({"text": "\n\n".join(lines), "heading": heading})


def _is_heading(paragraph) -> bool:
    style = paragraph.style
    return style is not None and bool(HEADING.match(style.name or ""))


def _table_text(table: Table) -> str:
    """One line per row, cells joined by ' | ' (a merged cell once)."""
    rows = []
    for row in table.rows:
        cells: list[str] = []
        for cell in row.cells:
            text = " ".join(cell.text.split())
            if not cells or cells[-1] != text:
                cells.append(text)
        if any(cells):
            rows.append(" | ".join(cells))
    return "\n".join(rows)
