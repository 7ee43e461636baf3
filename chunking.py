"""Split a long text into token-bounded chunks on natural boundaries, with overlap.

Pure functions, no Flask. The text is tokenised line by line, never in one call: tiktoken holds
the GIL while it builds the token list, so one 5 MB call would stall every other thread for
~100 ms, while a line at a time keeps each step to a fraction of a millisecond. Between lines
`pause()` is called, so an event loop can run its other work (agents/offload.pauser).
Documents pass `breaks`, the offsets where their pages or headed sections start: the best places to cut.
"""
from __future__ import annotations

import re
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass

import utils

SECTION, PARAGRAPH, LINE, SENTENCE, NONE = 4, 3, 2, 1, 0  # how good a place to cut after a piece is
MAX_PIECE_CHARS = 2000
_SENTENCE_END = re.compile(r"(?<=[.!?;:])\s+")
_LINE = re.compile(r"[^\n]*\n|[^\n]+")


@dataclass(frozen=True)
class Chunk:
    index: int
    text: str
    tokens: int
    start: int  # character offset of the chunk in the whole text


@dataclass(frozen=True)
class _Piece:
    text: str
    tokens: int
    boundary: int
    start: int


def chunk_text(text: str, chunk_tokens: int, overlap_tokens: int = 0,
               count: Callable[[str], int] = utils.count_tokens,
               pause: Callable[[], None] = lambda: None, breaks: Collection[int] = ()) -> list[Chunk]:
    """Chunks of at most chunk_tokens each, cut at the strongest boundary in the chunk's second
    half (a section start in `breaks`, paragraph, then line, then sentence); each chunk after the
    first repeats up to overlap_tokens of the previous chunk's end, so no sentence loses its context."""
    if chunk_tokens <= 0:
        raise ValueError("chunk_tokens must be positive")
    overlap_tokens = max(0, min(overlap_tokens, chunk_tokens // 2))
    chunks: list[Chunk] = []
    current: list[_Piece] = []
    for piece in _pieces(text, chunk_tokens, count, pause, frozenset(breaks)):
        while current and _total(current) + piece.tokens > chunk_tokens:
            cut = _best_cut(current, chunk_tokens)
            emitted, rest = current[:cut], current[cut:]
            chunks.append(_chunk(len(chunks), emitted))
            room = chunk_tokens - piece.tokens - _total(rest)  # overlap never forces another cut
            current = _tail(emitted, min(overlap_tokens, room)) + rest
        current.append(piece)
    if current:
        chunks.append(_chunk(len(chunks), current))
    return chunks


def _total(pieces: list[_Piece]) -> int:
    return sum(p.tokens for p in pieces)


def _chunk(index: int, pieces: list[_Piece]) -> Chunk:
    return Chunk(index, "".join(p.text for p in pieces), _total(pieces), pieces[0].start)


def _best_cut(pieces: list[_Piece], chunk_tokens: int) -> int:
    """How many pieces the chunk keeps: after the strongest boundary past half the chunk."""
    best, best_strength, total = len(pieces), -1, 0
    for i, piece in enumerate(pieces):
        total += piece.tokens
        if total >= chunk_tokens / 2 and piece.boundary >= best_strength:
            best, best_strength = i + 1, piece.boundary
    return best


def _tail(pieces: list[_Piece], limit: int) -> list[_Piece]:
    """The last pieces of a chunk totalling at most limit tokens."""
    kept, total = [], 0
    for piece in reversed(pieces):
        if total + piece.tokens > limit:
            break
        kept.insert(0, piece)
        total += piece.tokens
    return kept


def _pieces(text: str, chunk_tokens: int, count: Callable[[str], int],
            pause: Callable[[], None], breaks: frozenset[int] = frozenset()) -> Iterator[_Piece]:
    """Lines (a blank line after one marks a paragraph end), long lines cut into sentences and,
    if still too long, into token-bounded slices; joined, the pieces are the text exactly.
    A generator, so the caller's packing interleaves with it between pauses."""
    offset = 0
    for line, following in _lines(text):
        pause()
        paragraph_end = line.strip() == "" or following is None or following.strip() == ""
        strength = PARAGRAPH if paragraph_end else LINE
        parts = _split_long(line, chunk_tokens, count)
        for j, (part, tokens, boundary) in enumerate(parts):
            boundary = strength if j + 1 == len(parts) else boundary
            yield _Piece(part, tokens, SECTION if offset + len(part) in breaks else boundary, offset)
            offset += len(part)


def _lines(text: str) -> Iterator[tuple[str, str | None]]:
    """Each line with the one after it (None for the last), found one at a time: a single C call
    over megabytes (findall) would hold the GIL for tens of milliseconds."""
    previous = None
    for match in _LINE.finditer(text):
        if previous is not None:
            yield previous, match.group(0)
        previous = match.group(0)
    if previous is not None:
        yield previous, None


def _split_long(line: str, chunk_tokens: int, count: Callable[[str], int]) -> list[tuple[str, int, int]]:
    if len(line) <= MAX_PIECE_CHARS:
        tokens = count(line)
        if tokens <= chunk_tokens:
            return [(line, tokens, LINE)]
    out: list[tuple[str, int, int]] = []
    for sentence in _sentences(line):
        for part in _slices(sentence, MAX_PIECE_CHARS):
            tokens = count(part)
            if tokens <= chunk_tokens:
                out.append((part, tokens, NONE))
            else:
                out.extend((piece, count(piece), NONE) for piece in _token_slices(part, chunk_tokens))
        if out:
            out[-1] = (out[-1][0], out[-1][1], SENTENCE)
    return out


def _sentences(line: str) -> list[str]:
    """Sentence-ish parts that keep their trailing whitespace, so joining them gives the line."""
    parts, start = [], 0
    for match in _SENTENCE_END.finditer(line):
        parts.append(line[start:match.end()])
        start = match.end()
    if start < len(line):
        parts.append(line[start:])
    return parts


def _slices(text: str, size: int) -> list[str]:
    """Cut at the last whitespace before each size limit where there is one."""
    parts = []
    while len(text) > size:
        cut = text.rfind(" ", size // 2, size)
        cut = size if cut == -1 else cut + 1
        parts.append(text[:cut])
        text = text[cut:]
    return parts + ([text] if text else [])


def _token_slices(text: str, chunk_tokens: int) -> list[str]:
    """Last resort for text with no boundaries: consecutive token windows decoded back to text."""
    tokens = utils.encoding().encode(text, disallowed_special=())
    _, offsets = utils.encoding().decode_with_offsets(tokens)
    step = max(1, chunk_tokens // 2)
    starts = sorted({offsets[i] for i in range(0, len(tokens), step)} | {0})
    return [text[a:b] for a, b in zip(starts, starts[1:] + [len(text)], strict=False) if a < b]
