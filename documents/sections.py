"""A document's sections (its pages, or the parts under its headings) chunked as one text, each
chunk labelled with where it came from: {"pages": [3, 4]} or {"headings": ["Methods"]} (at most
MAX_HEADINGS: the first ones and the last, with "skipped" saying how many were left out between).

The sections are joined with blank lines and chunked by chunking.chunk_text, which prefers to cut
where a section starts. A chunk's location counts only its own text, not the overlap it repeats
from the chunk before: a chunk that starts with a few lines of page 3 and goes on with page 4 is p. 4.
"""
from __future__ import annotations

from bisect import bisect_right
from collections.abc import Callable
from dataclasses import dataclass

import chunking

SEPARATOR = "\n\n"
MAX_HEADINGS = 3


@dataclass(frozen=True)
class Section:
    text: str
    page: int | None = None  # PDFs: 1-based page number
    heading: str | None = None  # DOCX: the heading the text is under (None before the first)


def join(sections: list[Section]) -> tuple[str, list[int]]:
    """The whole text and where each section starts in it."""
    starts, offset = [], 0
    for section in sections:
        starts.append(offset)
        offset += len(section.text) + len(SEPARATOR)
    return SEPARATOR.join(section.text for section in sections), starts


def chunk_sections(sections: list[Section], chunk_tokens: int, overlap_tokens: int,
                   pause: Callable[[], None] = lambda: None) -> list[tuple[chunking.Chunk, dict | None]]:
    """Each chunk with its location (None when the sections carry none, as for a text file)."""
    text, starts = join(sections)
    chunks = chunking.chunk_text(text, chunk_tokens, overlap_tokens, pause=pause, breaks=starts[1:])
    located, previous_end = [], 0
    for chunk in chunks:
        end = chunk.start + len(chunk.text)
        own_start = min(max(chunk.start, previous_end), end - 1)
        located.append((chunk, _where(sections[bisect_right(starts, own_start) - 1:
                                               bisect_right(starts, end - 1)])))
        previous_end = end
    return located


def _where(covered: list[Section]) -> dict | None:
    pages = [s.page for s in covered if s.page is not None]
    if pages:
        return {"pages": [min(pages), max(pages)]}
    headings = list(dict.fromkeys(s.heading for s in covered if s.heading))
    if len(headings) > MAX_HEADINGS:  # the first ones and the last, and how many between
        return {"headings": headings[:MAX_HEADINGS - 1] + headings[-1:], "skipped": len(headings) - MAX_HEADINGS}
    return {"headings": headings} if headings else None


def label(meta: dict | None) -> str | None:
    """How a chunk is cited: 'p. 3', 'pp. 3–4', '§ Methods; § Results', '§ A; § B; … § F'; None
    without a location."""
    if not meta:
        return None
    if meta.get("pages"):
        first, last = meta["pages"][0], meta["pages"][-1]
        return f"p. {first}" if first == last else f"pp. {first}–{last}"
    if meta.get("headings"):
        named = [f"§ {heading}" for heading in meta["headings"]]
        if meta.get("skipped"):
            named[-1] = "… " + named[-1]
        return "; ".join(named)
    return None
