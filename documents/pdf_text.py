"""A PDF's text page by page, with pypdf, inside the worker process (documents/worker.py).

Cheap checks come first, so a hostile file is refused before any page is read: encryption, then
the page count (the catalog's /Count, then the page tree itself walked only up to the cap, so a
lying /Count cannot make it walk further). pypdf's decoding limits (its Configuration) are
lowered to DOCUMENT_MAX_INFLATED_MB per stream, and it never runs an external image decoder;
pages are read until DOCUMENT_TIMEOUT_S or DOCUMENT_MAX_TEXT_MB runs out.
"""
from __future__ import annotations

import io
import re
import time

import pypdf
from pypdf.errors import FileNotDecryptedError, LimitReachedError, PyPdfError

from .limits import Limits, Refused, megabytes

DAMAGED = "{name} could not be read as a PDF (it is damaged or not really a PDF)."
ENCRYPTED = ("{name} is encrypted (password-protected), so its text cannot be read. Save a copy "
             "without the password (for example with Print → Save as PDF) and upload that.")
TOO_MANY_PAGES = "{name} has {pages} pages; at most {cap} are accepted."
INFLATES = ("{name} goes past the limits set for reading PDFs (content that unpacks to more than {cap}, "
            "or a structure too large or too deep), so it was refused.")
TOO_SLOW = "Reading {name} took longer than {seconds:g} s, so it was stopped."
TOO_MUCH_TEXT = "{name} holds more than {cap} of text; at most that much is accepted."
NO_TEXT_LAYER = ("{name} has no text layer: its pages are images (a scan or a photo), so there is no "
                 "text to analyse. Run it through OCR (text recognition) first, then upload the result.")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
_DECODE_LIMITS = ("maximum_declared_stream_length", "array_based_stream_maximum_output_length",
                  "jbig2_maximum_output_length", "lzw_maximum_output_length", "run_length_maximum_output_length",
                  "zlib_maximum_output_length", "brotli_maximum_output_length", "image_maximum_buffer_size")


def read_pdf(data: bytes, name: str, limits: Limits) -> dict:
    """{"sections": [{"text", "page"}...] (pages with text), "pages", "pages_without_text"}; Refused."""
    deadline = time.monotonic() + limits.timeout_s
    _lower_decode_limits(limits.max_inflated_bytes)
    try:
        reader = _open(data, name)
        pages = _checked_page_count(reader, name, limits.max_pages)
        sections = _page_texts(reader, name, limits, deadline)
    except LimitReachedError:
        raise Refused(INFLATES.format(name=name, cap=megabytes(limits.max_inflated_bytes))) from None
    except FileNotDecryptedError:
        raise Refused(ENCRYPTED.format(name=name)) from None
    except (PyPdfError, ValueError, KeyError, TypeError, AttributeError, IndexError, RecursionError):
        raise Refused(DAMAGED.format(name=name)) from None
    if not sections:
        raise Refused(NO_TEXT_LAYER.format(name=name))
    return {"sections": sections, "pages": pages, "pages_without_text": pages - len(sections)}


def _lower_decode_limits(cap: int) -> None:
    """One stream may not decode to more than cap (pypdf's default is 75 MB each)."""
    current = pypdf.get_configuration()
    pypdf.overwrite_configuration(jbig2dec_binary=None, disable_legacy_handling=True,
                                  **{name: min(getattr(current, name), cap) for name in _DECODE_LIMITS})


def _open(data: bytes, name: str) -> pypdf.PdfReader:
    """The reader, decrypted when the file opens with an empty password (permissions only)."""
    reader = pypdf.PdfReader(io.BytesIO(data), strict=False)
    if reader.is_encrypted:
        try:
            opened = reader.decrypt("")
        except (PyPdfError, NotImplementedError):  # e.g. AES without a crypto library
            opened = 0
        if not opened:
            raise Refused(ENCRYPTED.format(name=name))
    return reader


def _checked_page_count(reader: pypdf.PdfReader, name: str, cap: int) -> int:
    """The declared /Count, then the leaves of the page tree counted up to cap+1."""
    root = reader.trailer["/Root"].get_object()["/Pages"].get_object()
    declared = root.get("/Count", 0)
    if isinstance(declared, int) and declared > cap:
        raise Refused(TOO_MANY_PAGES.format(name=name, pages=f"{declared:,}", cap=f"{cap:,}"))
    counted = _count_leaves(root, cap + 1)
    if counted > cap:
        raise Refused(TOO_MANY_PAGES.format(name=name, pages=f"more than {cap:,}", cap=f"{cap:,}"))
    return counted


def _count_leaves(root, stop_at: int) -> int:
    """Pages under the tree's root, up to stop_at: each node read when it is counted (not when its
    parent lists it), and once (a hostile tree may loop). One /Kids list longer than stop_at is
    enough: a tree of fewer pages has no such node."""
    stack, seen, count = [root], set(), 0
    while stack and count < stop_at:
        node = stack.pop().get_object()
        kids = node.get("/Kids")
        if kids is None:
            count += 1
            continue
        kids = kids.get_object()
        if len(kids) >= stop_at:
            return len(kids)
        for kid in kids:
            key = (kid.idnum, kid.generation) if hasattr(kid, "idnum") else id(kid)
            if key not in seen:
                seen.add(key)
                stack.append(kid)
    return count


def _page_texts(reader: pypdf.PdfReader, name: str, limits: Limits, deadline: float) -> list[dict]:
    sections, total = [], 0
    for number, page in enumerate(reader.pages, start=1):
        if time.monotonic() > deadline:
            raise Refused(TOO_SLOW.format(name=name, seconds=limits.timeout_s))
        text = _CONTROL.sub("", page.extract_text() or "").strip()
        total += len(text.encode("utf-8", "replace"))
        if total > limits.max_text_bytes:
            raise Refused(TOO_MUCH_TEXT.format(name=name, cap=megabytes(limits.max_text_bytes)))
        if text:
            sections.append({"text": text, "page": number})
    return sections
