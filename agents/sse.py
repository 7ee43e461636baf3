"""Server-sent events from OpenAI-compatible servers, parsed without any HTTP.

Pure (bytes or lines in, events out) so each server's quirks are tested as plain data: comments
and keep-alives, CRLF, `data:` with or without a space, multi-line data, `[DONE]` or not, chunks
without choices (usage, Azure's prompt filter), reasoning deltas, llama.cpp's `error:` lines and
old vLLM's flat `{"object": "error"}` chunks. A stream with no text and no finish reason raises
EmptyStream: llama.cpp's server answers an over-window request with HTTP 200 and nothing else.
"""
from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Literal

import orjson

from agents.llm_errors import EmptyStream, LLMStreamError, is_error_object, stream_error

EventKind = Literal["content", "reasoning", "usage", "finish"]
REASONING_FIELDS = ("reasoning_content", "reasoning")
LINE_BREAK = re.compile(rb"\r\n|\r|\n")


@dataclass(frozen=True)
class StreamEvent:
    """One thing the caller acts on: a piece of text, the server's usage counts, or why it ended."""

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
        if data.strip() == "[DONE]":
            stats.done = True
            break
        chunks = _json_objects(data)
        if name == "error":
            raise stream_error(chunks[0] if chunks else data)
        if chunks is None:
            stats.skipped += 1
            continue
        for chunk in chunks:
            stats.chunks += 1
            yield from _noting_reply(parse_chunk(chunk), stats)
    _check_end(stats)


def parse_completion(body: str) -> Iterator[StreamEvent]:
    """Events from a whole JSON chat.completion, for servers that ignore `stream: true`."""
    payload = _loads(body)
    if not isinstance(payload, dict):
        raise LLMStreamError("The model endpoint answered with something that is not an OpenAI-compatible reply.")
    stats = StreamStats(chunks=1, done=True)
    yield from _noting_reply(parse_chunk(payload), stats)
    _check_end(stats)


def parse_chunk(chunk: dict) -> Iterator[StreamEvent]:
    """The events in one chat.completion.chunk, or in a whole (non-streamed) chat.completion."""
    if is_error_object(chunk):
        raise stream_error(chunk)
    for choice in _first_choice(chunk.get("choices")):
        delta = choice.get("delta") or choice.get("message")
        delta = delta if isinstance(delta, dict) else {}  # a server's garbage is no reply text
        reasoning = next((delta[key] for key in REASONING_FIELDS if _text(delta.get(key))), "")
        if reasoning:
            yield StreamEvent("reasoning", text=reasoning)
        if _text(delta.get("content")):
            yield StreamEvent("content", text=delta["content"])
        if choice.get("finish_reason"):
            yield StreamEvent("finish", finish_reason=str(choice["finish_reason"]))
    if isinstance(chunk.get("usage"), dict):
        yield StreamEvent("usage", usage=chunk["usage"])


def _first_choice(choices) -> list[dict]:
    """Choice 0 only (we never ask for n > 1); none for usage or prompt-filter chunks."""
    if not isinstance(choices, list):
        return []
    return [choice for choice in choices if isinstance(choice, dict) and choice.get("index", 0) == 0][:1]


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


def _noting_reply(events: Iterator[StreamEvent], stats: StreamStats) -> Iterator[StreamEvent]:
    """The events, noting in `stats` when one is reply text or a finish reason."""
    for event in events:
        stats.replied = stats.replied or event.kind in ("content", "finish")
        stats.finished = stats.finished or event.kind == "finish"
        yield event


def _check_end(stats: StreamStats) -> None:
    """A stream with no text and no finish reason is an error, never an empty reply."""
    if stats.replied:
        return
    if stats.skipped and not stats.chunks:
        raise LLMStreamError(f"The model endpoint sent {stats.skipped} unreadable events and no reply; "
                             "it does not look like an OpenAI-compatible stream.")
    raise EmptyStream()
