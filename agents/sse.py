"""Server-sent events from OpenAI-compatible servers, parsed without any HTTP.

Pure (bytes or lines in, events out) so each server's quirks are tested as plain data: comments
and keep-alives, CRLF, `data:` with or without a space, multi-line data, `[DONE]` or not, chunks
without choices (usage, Azure's prompt filter), reasoning deltas, llama.cpp's `error:` lines and
old vLLM's flat `{"object": "error"}` chunks. A stream with no text and no finish reason raises
EmptyStream: llama.cpp's server answers an over-window request with HTTP 200 and nothing else.
"""
from __future__ import annotations

import itertools
import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Literal, NamedTuple

import orjson

from agents.llm_errors import EmptyStream, LLMStreamError, is_error_object, stream_error

EventKind = Literal["content", "reasoning", "usage", "finish"]
REASONING_FIELDS = ("reasoning_content", "reasoning")
TEXT_KINDS = ("content", "reasoning")
BOM = "\ufeff".encode()
LINE_BREAK = re.compile(rb"\r\n|\r|\n")


class StreamEvent(NamedTuple):
    """One thing the caller acts on: a piece of text, the server's usage counts, or why it ended.
    A NamedTuple: made once per token, it costs a third of a frozen dataclass."""

    kind: EventKind
    text: str = ""
    usage: dict | None = None
    finish_reason: str | None = None


@dataclass
class StreamStats:
    """What one parse saw, for logs and tests: JSON chunks, skipped unreadable events, [DONE],
    and whether any text or finish reason came (without either the stream was empty)."""

    chunks: int = 0
    skipped: int = 0
    done: bool = False
    replied: bool = False
    finished: bool = False  # a finish reason came


def split_lines(chunks: Iterable[bytes]) -> Iterator[str]:
    """Bytes as they arrive -> text lines, at CRLF, LF or CR, even when a break spans two chunks."""
    buffer = b""
    for chunk in chunks:
        buffer += chunk
        cut = len(buffer) - 1 if buffer.endswith(b"\r") else len(buffer)  # may be half of a CRLF
        *lines, rest = LINE_BREAK.split(buffer[:cut])
        buffer = rest + buffer[cut:]
        yield from (line.decode("utf-8", "replace") for line in lines)
    *lines, rest = LINE_BREAK.split(buffer)
    yield from (line.decode("utf-8", "replace") for line in lines + ([rest] if rest else []))


def iter_events(lines: Iterable[str | bytes]) -> Iterator[tuple[str, str]]:
    """(event name, data) pairs per the SSE spec: fields up to a blank line, data lines joined by \\n."""
    name, data = "", []
    for number, line in enumerate(lines):
        line = (line.decode("utf-8", "replace") if isinstance(line, bytes) else line).rstrip("\r\n")
        if number == 0:
            line = line.removeprefix("\ufeff")
        if not line:
            if data:
                yield name or "message", "\n".join(data)
            name, data = "", []
            continue
        if line.startswith(":"):
            continue
        field, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if field == "data":
            data.append(value)
        elif field == "event":
            name = value
        elif field == "error":  # older llama.cpp servers: `error: {...}`
            name, data = "error", [value]
    if data:
        yield name or "message", "\n".join(data)


def parse_sse(lines: Iterable[str | bytes], stats: StreamStats | None = None) -> Iterator[StreamEvent]:
    """StreamEvents from the lines of a chat-completions stream; raises on error events or pure garbage."""
    stats = stats if stats is not None else StreamStats()
    for name, data in iter_events(lines):
        yield from _data_events(name, data, stats)
        if stats.done:
            break
    _check_end(stats)


def stream_events(chunks: Iterable[bytes], stats: StreamStats | None = None) -> Iterator[StreamEvent]:
    """What `parse_sse(split_lines(chunks))` yields, for the bytes as they arrive, with the text of
    one read joined: a server writes an event per token and a paced read (agents/paced_read.py)
    takes many, which then cost the caller one event, not one each. The usual event, one
    `data: {...}` line ended by a blank line with LF line ends, is parsed straight from the bytes
    (a third of the time); any other framing goes through the general parser, same result."""
    stats = stats if stats is not None else StreamStats()
    yield from _joined(_events_by_read(chunks, stats))
    _check_end(stats)


def _data_events(name: str, data: str, stats: StreamStats) -> Iterator[StreamEvent]:
    """The events of one SSE event's data; sets stats.done at [DONE]."""
    if data.strip() == "[DONE]":
        stats.done = True
        return
    chunks = _json_objects(data)
    if name == "error":
        raise stream_error(chunks[0] if chunks else data)
    if chunks is None:
        stats.skipped += 1
        return
    for chunk in chunks:
        stats.chunks += 1
        yield from _noted(parse_chunk(chunk), stats)


def _events_by_read(chunks: Iterable[bytes], stats: StreamStats) -> Iterator[StreamEvent | None]:
    """Events, and None after each read's. LF-framed events are cut from the bytes; from the first
    CR on (CRLF or CR line ends) the rest goes through split_lines and iter_events."""
    buffer, at_start = b"", True
    chunks = iter(chunks)
    for chunk in chunks:
        if b"\r" in chunk:
            yield from _general_events(itertools.chain([buffer + chunk], chunks), stats, at_start)
            return
        *blocks, buffer = (buffer + chunk).split(b"\n\n")
        for block in blocks:
            yield from _block_events(block.removeprefix(BOM) if at_start else block, stats)
            at_start = False
            if stats.done:
                yield None
                return
        yield None
    if buffer:
        yield from _block_events(buffer.removeprefix(BOM) if at_start else buffer, stats)


def _block_events(block: bytes, stats: StreamStats) -> Iterator[StreamEvent]:
    """The events of the lines between two blank lines (LF line ends)."""
    if block.startswith(b"data:") and b"\n" not in block:
        try:
            chunk = orjson.loads(block[6:] if block[5:6] == b" " else block[5:])
        except orjson.JSONDecodeError:
            chunk = None
        if isinstance(chunk, dict):
            stats.chunks += 1
            yield from _noted(parse_chunk(chunk), stats)
            return
    lines = ["", *(line.decode("utf-8", "replace") for line in block.split(b"\n"))]  # "": not the stream's first
    for name, data in iter_events(lines):
        yield from _data_events(name, data, stats)


def _general_events(chunks: Iterator[bytes], stats: StreamStats, at_start: bool) -> Iterator[StreamEvent | None]:
    """parse_sse's way, each event on its own (a read's end is not known here)."""
    lines = split_lines(chunks)
    for name, data in iter_events(lines if at_start else itertools.chain([""], lines)):
        for event in _data_events(name, data, stats):
            yield event
            yield None
        if stats.done:
            return


def _joined(items: Iterable[StreamEvent | None]) -> Iterator[StreamEvent]:
    """Runs of text events of one kind up to a None, each as one event; others as they come. Text
    already parsed is handed over before an error raised after it, as parse_sse would."""
    kind, texts = None, []
    try:
        for item in items:
            if item is not None and item.kind == kind:
                texts.append(item.text)
                continue
            if texts:
                yield StreamEvent(kind, text="".join(texts))
                kind, texts = None, []
            if item is not None and item.kind in TEXT_KINDS:
                kind, texts = item.kind, [item.text]
            elif item is not None:
                yield item
    except Exception:
        if texts:
            yield StreamEvent(kind, text="".join(texts))
        raise
    if texts:
        yield StreamEvent(kind, text="".join(texts))


def parse_completion(body: str) -> Iterator[StreamEvent]:
    """Events from a whole JSON chat.completion, for servers that ignore `stream: true`."""
    payload = _loads(body)
    if not isinstance(payload, dict):
        raise LLMStreamError("The model endpoint answered with something that is not an OpenAI-compatible reply.")
    stats = StreamStats(chunks=1, done=True)
    yield from _noted(parse_chunk(payload), stats)
    _check_end(stats)


def parse_chunk(chunk: dict) -> list[StreamEvent]:
    """The events in one chat.completion.chunk, or in a whole (non-streamed) chat.completion."""
    if is_error_object(chunk):
        raise stream_error(chunk)
    events = []
    choice = _first_choice(chunk.get("choices"))
    if choice is not None:
        delta = choice.get("delta") or choice.get("message")
        if isinstance(delta, dict):  # a server's garbage is no reply text
            for key in REASONING_FIELDS:
                if _text(delta.get(key)):
                    events.append(StreamEvent("reasoning", text=delta[key]))
                    break
            content = delta.get("content")
            if _text(content):
                events.append(StreamEvent("content", text=content))
        if choice.get("finish_reason"):
            events.append(StreamEvent("finish", finish_reason=str(choice["finish_reason"])))
    if isinstance(chunk.get("usage"), dict):
        events.append(StreamEvent("usage", usage=chunk["usage"]))
    return events


def _first_choice(choices) -> dict | None:
    """Choice 0 only (we never ask for n > 1); none for usage or prompt-filter chunks."""
    if isinstance(choices, list):
        for choice in choices:
            if isinstance(choice, dict) and choice.get("index", 0) == 0:
                return choice
    return None


def _text(value) -> bool:
    return isinstance(value, str) and value != ""


def _json_objects(data: str) -> list[dict] | None:
    """The JSON object in one event, or one per line when a server forgot the blank lines between."""
    parsed = _loads(data)
    if isinstance(parsed, dict):
        return [parsed]
    if parsed is None and "\n" in data:
        objects = [_loads(line) for line in data.split("\n") if line.strip()]
        if all(isinstance(item, dict) for item in objects):
            return objects
    return None


def _loads(text: str):
    """The JSON value, or None for text that is not JSON (or nested too deep to parse). orjson
    parses a stream's chunk (one per token) in a third of the time; what it refuses and the
    standard library takes (NaN, integers past 64 bits) is parsed again by the latter."""
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        pass
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        return None


def _noted(events: list[StreamEvent], stats: StreamStats) -> list[StreamEvent]:
    """The events, noting in `stats` when one is reply text or a finish reason."""
    for event in events:
        stats.replied = stats.replied or event.kind in ("content", "finish")
        stats.finished = stats.finished or event.kind == "finish"
    return events


def _check_end(stats: StreamStats) -> None:
    """A stream with no text and no finish reason is an error, never an empty reply."""
    if stats.replied:
        return
    if stats.skipped and not stats.chunks:
        raise LLMStreamError(f"The model endpoint sent {stats.skipped} unreadable events and no reply; "
                             "it does not look like an OpenAI-compatible stream.")
    raise EmptyStream()
