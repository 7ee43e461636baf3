"""Search snippets as plain text plus highlight offsets, so no store ever returns HTML."""
from __future__ import annotations

import re

START, END = "\x02", "\x03"
_WINDOW_WORDS = 14


def from_markers(marked: str) -> tuple[str, list[list[int]]]:
    """Turn text with START/END markers (FTS5 snippet()) into text and [start, end) offsets."""
    text, highlights, pos = [], [], 0
    for part in re.split(f"([{START}{END}])", marked):
        if part == START:
            highlights.append([pos, pos])
        elif part == END:
            if highlights:
                highlights[-1][1] = pos
        else:
            text.append(part)
            pos += len(part)
    return "".join(text), [h for h in highlights if h[1] > h[0]]


def around_terms(text: str, terms: list[str], prefix_last: bool = False) -> tuple[str, list[list[int]]]:
    """A window of words around the first match of any term, with each match highlighted.

    Terms match at the start of a word, so stemmed index hits ('running' for 'run') still show.
    """
    if not terms:
        return _clip(text), []
    pattern = re.compile(r"\b(?:" + "|".join(re.escape(t) for t in terms) + r")\w*", re.IGNORECASE)
    first = pattern.search(text)
    if not first:
        return _clip(text), []
    words = list(re.finditer(r"\S+", text))
    index = next((i for i, w in enumerate(words) if w.end() > first.start()), 0)
    lo = max(0, index - _WINDOW_WORDS // 3)
    hi = min(len(words), lo + _WINDOW_WORDS)
    start, end = words[lo].start(), words[hi - 1].end()
    lead, tail = ("…" if lo > 0 else ""), ("…" if hi < len(words) else "")
    window = text[start:end]
    spans = [[m.start() + len(lead), m.end() + len(lead)] for m in pattern.finditer(window)]
    return lead + window + tail, spans


def _clip(text: str) -> str:
    words = text.split()
    return " ".join(words[:_WINDOW_WORDS]) + (" …" if len(words) > _WINDOW_WORDS else "")
