"""Fuzzing the parsers that read untrusted bytes: the model endpoint's SSE stream (agents/sse.py)
and uploaded files (utils.decode_text, what POST /upload_file uses).

- SSE: any bytes, any JSON in `data:` lines, any nesting depth: the parser yields events or raises
  one of its own LLMError types, nothing else; a valid stream gives the same events however its
  bytes are split into network reads.
- Uploads: any bytes give text the route can save as UTF-8, or NotText; valid UTF-8, UTF-8 with a
  BOM, UTF-16 with a BOM and Latin-1 text come back exactly.
"""
from __future__ import annotations

import codecs
import json
from collections import Counter

import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from agents.llm_errors import EmptyStream, LLMError
from agents.sse import StreamEvent, StreamStats, iter_events, parse_completion, parse_sse, split_lines, stream_events
from utils import NotText, decode_text

FUZZ = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
SNIFF_BYTES = 8192  # how much of an upload decode_text looks at for NULs and control characters
BOMS = (codecs.BOM_UTF8, codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)
ENCODINGS = {"utf-8", "utf-8-sig", "utf-16", "latin-1"}
counts: Counter = Counter()


@pytest.fixture(scope="module", autouse=True)
def tally(request):
    """Prints the fuzz examples run per test when the module ends."""
    yield
    per_test = ", ".join(f"{name} {count}" for name, count in sorted(counts.items()))
    line = f"test_fuzz_parsers: {sum(counts.values())} fuzz examples run: {per_test}"
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    if reporter is not None and capture is not None:
        with capture.global_and_fixture_disabled():
            reporter.write_line(line)


@st.composite
def split(draw, blob: bytes) -> list[bytes]:
    """`blob` cut at arbitrary places (empty reads included), as network reads would deliver it."""
    cuts = sorted(draw(st.lists(st.integers(0, len(blob)), max_size=12)))
    return [blob[start:end] for start, end in zip([0, *cuts], [*cuts, len(blob)], strict=False)]


# -- SSE: garbage ---------------------------------------------------------------------------------

SSE_PIECES = [b"data: ", b"data:", b"event: error\n", b"event: message\n", b"error: ", b"id: 1\n", b"retry: 5\n",
              b": keep-alive\n", b"\n", b"\r\n", b"\r", b"\n\n", b":", b"[DONE]", b" [DONE] ", b'{"choices":',
              b'[{"index":0,"delta":{"content":"hi"}}]}', b'{"error":{"message":"boom"}}', b"{", b"}", b"[", b"]",
              b'"', b"\\u", b"\\ud800", b"\xff", b"\xfe", b"\xef\xbb\xbf", b"\xc3", b"\xf0\x9f\x98", b"\x00", b"<html>",
              b"null", b"NaN", b"1e999", b"-", b"0"]
CHUNK_KEYS = ["choices", "delta", "message", "content", "reasoning_content", "reasoning", "finish_reason", "usage",
              "error", "index", "code", "type", "n_ctx", "detail", "msg", "object", "id"]
json_scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12)
json_values = st.recursive(json_scalars, lambda kids: st.lists(kids, max_size=3)
                           | st.dictionaries(st.sampled_from(CHUNK_KEYS) | st.text(max_size=4), kids, max_size=4),
                           max_leaves=16)
sse_soup = st.lists(st.sampled_from(SSE_PIECES) | st.binary(max_size=8), max_size=40).map(b"".join)


def _deep(depth: int, opener: str) -> str:
    closer = {"[": "]", '{"choices":': "}", '{"error":': "}"}[opener]
    return opener * depth + "1" + closer * depth


deep_json = st.builds(_deep, st.integers(1, 50_000), st.sampled_from(["[", '{"choices":', '{"error":']))
CHOICE_KEYS = {"index": st.just(0) | json_values, "message": json_values, "finish_reason": json_values}
choice_like = (st.fixed_dictionaries({"delta": json_values}, optional=CHOICE_KEYS)
               | st.fixed_dictionaries({}, optional={**CHOICE_KEYS, "delta": json_values}))
chunk_like = st.fixed_dictionaries(  # the right keys holding values of any type
    {"choices": st.lists(choice_like, min_size=1, max_size=2) | json_values},
    optional={"usage": json_values, "error": json_values})
data_values = st.one_of(json_values.map(json.dumps), chunk_like.map(json.dumps), deep_json, st.text(max_size=20))


@st.composite
def json_streams(draw) -> bytes:
    """`data:` lines holding arbitrary JSON (any shape where a chunk is expected), error events,
    nesting deep enough to exhaust a recursive parser."""
    kinds = st.sampled_from(["", "", "", "", "event: error\n", "error: "])  # mostly plain data events
    events = draw(st.lists(st.tuples(kinds, data_values), min_size=1, max_size=6))
    text = "".join((f"{kind}{value}" if kind == "error: " else f"{kind}data: {value}") + "\n\n"
                   for kind, value in events)
    return text.encode("utf-8", "surrogatepass")


def _parse_or_llm_error(blob_pieces: list[bytes]) -> list[StreamEvent] | LLMError:
    """The events, or the LLMError raised; any other exception fails the test."""
    try:
        return list(parse_sse(split_lines(blob_pieces), StreamStats()))
    except LLMError as error:
        assert isinstance(error.message, str) and error.message
        return error


@settings(FUZZ, max_examples=300)
@given(data=st.data(), blob=st.binary(max_size=3000) | sse_soup)
def test_fuzz_sse_any_bytes_give_events_or_an_llm_error(data, blob):
    counts["sse_any_bytes"] += 1
    pieces = data.draw(split(blob), label="pieces")
    lines = list(split_lines(pieces))
    assert lines == list(split_lines([blob]))  # the same lines however the bytes arrive
    assert all(isinstance(line, str) for line in lines)
    assert all(isinstance(name, str) and isinstance(value, str) for name, value in iter_events(lines))
    _parse_or_llm_error(pieces)


@settings(FUZZ, max_examples=300)
@given(blob=json_streams())
@example(blob=b'data: {"choices": [{"delta": "text"}]}\n\n')  # found by this test: AttributeError
@example(blob=b"data: " + b"[" * 100_000 + b"\n\n")  # found by this test: RecursionError
@example(blob=b"event: error\ndata: " + b"[" * 100_000 + b"\n\n")
def test_fuzz_sse_any_json_in_data_lines_gives_events_or_an_llm_error(blob):
    counts["sse_any_json"] += 1
    result = _parse_or_llm_error([blob])
    if not isinstance(result, LLMError):
        assert all(isinstance(event, StreamEvent) for event in result)
        assert all(isinstance(event.text, str) for event in result)


@settings(FUZZ, max_examples=150)
@given(body=data_values)
@example(body='{"choices": [{"message": 5}]}')
@example(body="[" * 100_000)
def test_fuzz_sse_any_whole_completion_gives_events_or_an_llm_error(body):
    """Servers that ignore `stream: true` send one JSON body; any body parses or raises LLMError."""
    counts["sse_completion"] += 1
    try:
        assert all(isinstance(event, StreamEvent) for event in parse_completion(body))
    except LLMError:
        pass


# -- SSE: valid streams split anywhere -----------------------------------------------------------

reply_text = st.text(max_size=12) | st.sampled_from(["", "\n", "data: x\n\n", "🙂", "مرحبا", "\u202e", "\r\n", "\x00"])
deltas = st.fixed_dictionaries({}, optional={"content": reply_text, "reasoning_content": reply_text,
                                             "role": st.just("assistant")})
chunks = st.tuples(deltas, st.none() | st.sampled_from(["stop", "length", "content_filter"]))
usages = st.none() | st.fixed_dictionaries({"prompt_tokens": st.integers(0, 10**6),
                                            "completion_tokens": st.integers(0, 10**6)})


def _expected(parts: list[tuple[dict, str | None]], usage: dict | None) -> list[StreamEvent]:
    """What OpenAI's protocol says each chunk carries: reasoning, content, finish; usage last."""
    events = []
    for delta, finish in parts:
        if delta.get("reasoning_content"):
            events.append(StreamEvent("reasoning", text=delta["reasoning_content"]))
        if delta.get("content"):
            events.append(StreamEvent("content", text=delta["content"]))
        if finish:
            events.append(StreamEvent("finish", finish_reason=finish))
    return events + ([StreamEvent("usage", usage=usage)] if usage else [])


@st.composite
def valid_streams(draw) -> tuple[bytes, list[StreamEvent]]:
    """A stream as real servers vary it: line breaks, `data:` with or without a space, comments,
    ignored fields, JSON spread over several data lines, a BOM, [DONE] (then anything) or none."""
    parts, usage = draw(st.lists(chunks, min_size=1, max_size=6)), draw(usages)
    newline, space = draw(st.sampled_from(["\n", "\r\n", "\r"])), draw(st.sampled_from(["", " "]))
    payloads = [{"id": "c1", "object": "chat.completion.chunk",
                 "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]} for delta, finish in parts]
    payloads += [{"id": "c1", "choices": [], "usage": usage}] if usage else []
    events = []
    for payload in payloads:
        text = json.dumps(payload, ensure_ascii=draw(st.booleans()), indent=draw(st.none() | st.just(1)))
        lines = [f"data:{space}{line}" for line in text.split("\n")]
        extras = draw(st.lists(st.sampled_from([": keep-alive", "id: 7", "retry: 1000", "event: message"]), max_size=2))
        events.append(newline.join(extras + lines))
    end = draw(st.sampled_from(["done", "done+garbage", "blank", "none"]))
    body = (newline * 2).join(events)
    body += {"done": f"{newline * 2}data: [DONE]{newline * 2}", "blank": newline * 2, "none": "",
             "done+garbage": f"{newline * 2}data: [DONE]{newline * 2}data: {{broken{newline * 2}"}[end]
    bom = draw(st.sampled_from(["", "\ufeff"]))
    return (bom + body).encode("utf-8"), _expected(parts, usage)


def _events_or_empty(pieces: list[bytes]) -> list[StreamEvent] | type[EmptyStream]:
    """The events, or EmptyStream (the class) when the stream carried no text and no finish reason."""
    try:
        return list(parse_sse(split_lines(pieces)))
    except EmptyStream:
        return EmptyStream


@settings(FUZZ, max_examples=300)
@given(data=st.data(), stream=valid_streams())
def test_fuzz_sse_valid_stream_split_anywhere_gives_the_same_events(data, stream):
    counts["sse_valid_split"] += 1
    blob, expected = stream
    if not any(event.kind in ("content", "finish") for event in expected):
        expected = EmptyStream  # no text and no finish reason: a failure, never an empty reply
    pieces = data.draw(split(blob), label="pieces")
    assert _events_or_empty(pieces) == expected
    assert _events_or_empty([blob]) == expected


# -- SSE: the byte parser reads every stream as the line parser does -----------------------------

def _outcome(events) -> tuple[list[StreamEvent], tuple[str, str] | None]:
    """The events with runs of one text kind joined (the byte parser joins a read's), and the
    LLMError raised after them (class and message), if any; any other exception fails the test."""
    joined: list[StreamEvent] = []
    try:
        for event in events:
            if joined and event.kind in ("content", "reasoning") and joined[-1].kind == event.kind:
                joined[-1] = StreamEvent(event.kind, text=joined[-1].text + event.text)
            else:
                joined.append(event)
    except LLMError as error:
        return joined, (type(error).__name__, error.message)
    return joined, None


@settings(FUZZ, max_examples=400)
@given(data=st.data(), blob=st.binary(max_size=3000) | sse_soup | json_streams()
       | valid_streams().map(lambda stream: stream[0]))
@example(data=None, blob=b'data: {}\n\n\xef\xbb\xbfdata: {"choices": [{"delta": {"content": "a"}}]}\n\n')
@example(data=None, blob=b'data: {}\n\n\xef\xbb\xbfdata: {"choices": [{"delta": {"content": "a"}}]}\r\n\r\n')
def test_fuzz_sse_stream_events_gives_what_parse_sse_gives(data, blob):
    counts["sse_bytes_vs_lines"] += 1
    pieces = data.draw(split(blob), label="pieces") if data is not None else [blob[:10], blob[10:]]  # BOM mid-stream
    by_lines, by_bytes = StreamStats(), StreamStats()
    assert _outcome(stream_events(pieces, by_bytes)) == _outcome(parse_sse(split_lines(pieces), by_lines))
    assert by_bytes == by_lines


# -- uploads: decode_text -------------------------------------------------------------------------

def _decoded_or_not_text(raw: bytes) -> tuple[str, str] | None:
    """decode_text's answer, None for NotText; anything else raised fails the test."""
    try:
        text, encoding = decode_text(raw)
    except NotText as error:
        assert str(error)
        return None
    assert isinstance(text, str) and encoding in ENCODINGS
    text.encode("utf-8")  # what the upload route saves: no unpaired surrogates may come out
    return text, encoding


upload_bytes = st.one_of(
    st.binary(max_size=4000),
    st.tuples(st.sampled_from(BOMS), st.binary(max_size=400)).map(b"".join),
    st.tuples(st.binary(min_size=SNIFF_BYTES - 2, max_size=SNIFF_BYTES + 2), st.binary(max_size=20)).map(b"".join),
    st.tuples(st.integers(SNIFF_BYTES - 3, SNIFF_BYTES + 3), st.binary(min_size=1, max_size=8))
    .map(lambda cut: b"a" * cut[0] + cut[1]),  # a NUL or stray byte just before or after the sniffed part
)


@settings(FUZZ, max_examples=400)
@given(raw=upload_bytes)
def test_fuzz_decode_text_any_bytes_give_text_or_not_text(raw):
    counts["decode_any_bytes"] += 1
    _decoded_or_not_text(raw)


@settings(FUZZ, max_examples=300)
@given(text=st.text(max_size=300) | st.text(max_size=20).map(lambda tail: "a" * SNIFF_BYTES + tail))
def test_fuzz_decode_text_valid_utf8_round_trips_exactly(text):
    counts["decode_utf8"] += 1
    raw = text.encode("utf-8")
    result = _decoded_or_not_text(raw)
    if b"\x00" in raw[:SNIFF_BYTES]:
        assert result is None  # a NUL early on means binary, whatever else is valid
    elif text.startswith("\ufeff"):
        assert result == (text[1:], "utf-8-sig")  # U+FEFF first is a byte-order mark
    else:
        assert result == (text, "utf-8")


@settings(FUZZ, max_examples=300)
@given(text=st.text(max_size=300), encoding=st.sampled_from(["utf-8-sig", "utf-16", "utf-16-le+bom",
                                                             "utf-16-be+bom"]))
def test_fuzz_decode_text_text_with_a_bom_round_trips_exactly(text, encoding):
    counts["decode_bom"] += 1
    if encoding.endswith("+bom"):
        codec = encoding.removesuffix("+bom")
        raw = (codecs.BOM_UTF16_LE if codec.endswith("le") else codecs.BOM_UTF16_BE) + text.encode(codec)
    else:
        raw = text.encode(encoding)  # Python writes the BOM for utf-8-sig and utf-16
    assert _decoded_or_not_text(raw) == (text, "utf-8-sig" if encoding == "utf-8-sig" else "utf-16")


LATIN1_TEXT = st.characters(codec="latin-1", exclude_categories=["Cc"]) | st.sampled_from("\t\n\r")


@settings(FUZZ, max_examples=300)
@given(text=st.text(LATIN1_TEXT, min_size=1, max_size=300))
def test_fuzz_decode_text_latin1_text_round_trips_exactly(text):
    """Printable Latin-1 comes back as written, unless its bytes happen to be valid UTF-8 (then
    UTF-8 wins, as for any file) or start with what reads as a byte-order mark."""
    counts["decode_latin1"] += 1
    raw = text.encode("latin-1")
    assume(not raw.startswith(BOMS))
    try:
        expected = (raw.decode("utf-8"), "utf-8")
    except UnicodeDecodeError:
        expected = (text, "latin-1")
    assert _decoded_or_not_text(raw) == expected
