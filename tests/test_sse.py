"""The SSE parser against the streams real servers send, as plain data (no HTTP)."""
import itertools
import json

import pytest

from agents.llm_errors import ContextLengthExceeded, EmptyStream, LLMStreamError
from agents.sse import StreamEvent, StreamStats, iter_events, parse_completion, parse_sse, split_lines


def chunk(delta=None, finish=None, **extra) -> str:
    """One `data:` line of a chat.completion.chunk, as OpenAI shapes it."""
    choices = [] if delta is None else [{"index": 0, "delta": delta, "finish_reason": finish}]
    return "data: " + json.dumps({"id": "c1", "object": "chat.completion.chunk", "choices": choices, **extra})


def stream(*events: str, newline: str = "\n") -> list[str]:
    """Lines of a stream: each event followed by a blank line."""
    return (newline * 2).join(events).split(newline) + [""]


def collect(lines) -> dict:
    """What a caller would assemble from the events."""
    events = list(parse_sse(lines))
    return {"content": "".join(e.text for e in events if e.kind == "content"),
            "reasoning": "".join(e.text for e in events if e.kind == "reasoning"),
            "finish": [e.finish_reason for e in events if e.kind == "finish"],
            "usage": [e.usage for e in events if e.kind == "usage"]}


USAGE = {"prompt_tokens": 9, "completion_tokens": 2, "total_tokens": 11}

# One short reply ("Hi there") as each server streams it.
TRANSCRIPTS = {
    "openai": stream(chunk({"role": "assistant", "content": "", "refusal": None}, usage=None),
                     chunk({"content": "Hi"}, usage=None), chunk({"content": " there"}, usage=None),
                     chunk({}, "stop", usage=None), chunk(usage=USAGE), "data: [DONE]"),
    "azure": stream('data: {"choices":[],"created":0,"id":"","model":"","object":"","prompt_filter_results":'
                    '[{"prompt_index":0,"content_filter_results":{"hate":{"filtered":false,"severity":"safe"}}}]}',
                    chunk({"role": "assistant", "content": ""}), chunk({"content": "Hi"}),
                    chunk({"content": " there"}), chunk({}, "stop"),
                    'data: {"choices":[{"content_filter_offsets":{"check_offset":0},"content_filter_results":{},'
                    '"finish_reason":null,"index":0}],"id":"","object":""}',
                    chunk(usage=USAGE), "data: [DONE]"),
    "ollama": stream(chunk({"role": "assistant", "content": "Hi"}), chunk({"role": "assistant", "content": " there"}),
                     chunk({"role": "assistant", "content": ""}, "stop"), chunk(usage=USAGE), "data: [DONE]"),
    "vllm": stream(chunk({"role": "assistant", "content": ""}), chunk({"content": "Hi"}),
                   chunk({"content": " there"}), chunk({"content": ""}, "stop", stop_reason=None),
                   chunk(usage=USAGE), "data: [DONE]"),
    "llama.cpp": stream(chunk({"content": "Hi"}), chunk({"content": " there"}),
                        chunk({}, "stop", usage=USAGE, timings={"predicted_n": 2}), "data: [DONE]"),
    "lm studio": stream(chunk({"role": "assistant", "content": "Hi"}), chunk({"content": " there"}),
                        chunk({}, "stop"), chunk(usage=USAGE), "data: [DONE]", newline="\r\n"),
    "litellm": stream(chunk({"content": "Hi", "role": "assistant"}), chunk({"content": " there"}),
                      chunk({}, "stop"), chunk(usage=USAGE)),
    "openrouter": stream(": OPENROUTER PROCESSING", ": OPENROUTER PROCESSING",
                         chunk({"role": "assistant", "content": "Hi", "reasoning": None}, native_finish_reason=None),
                         chunk({"content": " there"}), chunk({}, "stop"), chunk(usage=USAGE), "data: [DONE]"),
}


@pytest.mark.parametrize("server", TRANSCRIPTS)
def test_parse_sse_reads_each_servers_stream(server):
    assert collect(TRANSCRIPTS[server]) == {"content": "Hi there", "reasoning": "", "finish": ["stop"],
                                            "usage": [USAGE]}


@pytest.mark.parametrize("chunks, lines", [
    ([b"a\nb\n"], ["a", "b"]),
    ([b"a\r\nb\r\n"], ["a", "b"]),
    ([b"a\rb\r"], ["a", "b"]),
    ([b"a\r", b"\nb"], ["a", "b"]),
    ([b"data: x\n\n"], ["data: x", ""]),
    ([b"da", b"ta: x", b"\n"], ["data: x"]),
    ([b"caf\xc3", b"\xa9\n"], ["caf\u00e9"]),
    ([b"no newline at the end"], ["no newline at the end"]),
])
def test_split_lines_handles_every_line_ending_across_chunks(chunks, lines):
    assert list(split_lines(chunks)) == lines


@pytest.mark.parametrize("lines, events", [
    (["data: a", ""], [("message", "a")]),
    (["data:a", ""], [("message", "a")]),
    (["data:  a", ""], [("message", " a")]),
    (["data: a\r", "\r", "data: b\r", "\r"], [("message", "a"), ("message", "b")]),
    (["data: {", 'data: "k": 1', "data: }", ""], [("message", '{\n"k": 1\n}')]),
    ([": keep-alive", "", ": OPENROUTER PROCESSING", "data: a", ""], [("message", "a")]),
    (["event: delta", "data: a", "", "data: b", ""], [("delta", "a"), ("message", "b")]),
    (["id: 7", "retry: 100", "data: a", ""], [("message", "a")]),
    (["", "", "data: a", "", "", ""], [("message", "a")]),
    (["data: a"], [("message", "a")]),
    (['error: {"message": "oops"}', ""], [("error", '{"message": "oops"}')]),
    (["\ufeffdata: a", ""], [("message", "a")]),
    ([b"data: a", b""], [("message", "a")]),
])
def test_iter_events_follows_the_sse_framing(lines, events):
    assert list(iter_events(lines)) == events


def test_parse_sse_accepts_a_stream_without_done():
    stats = StreamStats()
    assert [e.text for e in parse_sse(stream(chunk({"content": "ok"})), stats)] == ["ok"]
    assert stats.done is False


def test_parse_sse_stops_at_done():
    lines = stream(chunk({"content": "a"}), "data: [DONE]", chunk({"content": "after"}))
    assert [e.text for e in parse_sse(lines)] == ["a"]


def test_parse_sse_skips_chunks_without_choices():
    lines = stream(chunk(usage=None), 'data: {"id": "x", "object": "chat.completion.chunk"}',
                   'data: {"choices": null}', chunk({"content": "a"}))
    assert [e.kind for e in parse_sse(lines)] == ["content"]


@pytest.mark.parametrize("reason", ["stop", "length", "content_filter", "tool_calls", "function_call"])
def test_parse_sse_reports_every_finish_reason(reason):
    assert list(parse_sse(stream(chunk({"content": "a"}), chunk({}, reason)))) == [
        StreamEvent("content", "a"), StreamEvent("finish", finish_reason=reason)]


def test_parse_sse_yields_no_finish_for_null():
    assert [e.kind for e in parse_sse(stream(chunk({"content": "a"}, None)))] == ["content"]


@pytest.mark.parametrize("delta, expected", [
    ({"reasoning_content": "think", "content": None}, {"reasoning": "think", "content": ""}),
    ({"reasoning": "think"}, {"reasoning": "think", "content": ""}),
    ({"reasoning": "think", "reasoning_content": "think"}, {"reasoning": "think", "content": ""}),
    ({"reasoning": None, "content": "say"}, {"reasoning": "", "content": "say"}),
    ({"reasoning_content": "think", "content": "say"}, {"reasoning": "think", "content": "say"}),
])
def test_parse_sse_keeps_reasoning_apart_from_content(delta, expected):
    got = collect(stream(chunk(delta), chunk({}, "length")))
    assert {"reasoning": got["reasoning"], "content": got["content"]} == expected


def test_parse_sse_usage_only_when_sent():
    assert collect(stream(chunk({"content": "a"}, usage=None)))["usage"] == []
    assert collect(stream(chunk({"content": "a"}), chunk(usage=USAGE)))["usage"] == [USAGE]


@pytest.mark.parametrize("lines, message", [
    (stream(chunk({"content": "a"}), 'data: {"error": {"message": "Overloaded", "type": "server_error"}}'),
     "Overloaded"),
    (stream(chunk({"content": "a"}), 'data: {"error": {"code": 502, "message": "Provider returned error"}, '
                                     '"choices": [{"index": 0, "delta": {"content": ""}, "finish_reason": "error"}]}'),
     "Provider returned error"),
    (stream(chunk({"content": "a"}), 'error: {"code": 500, "message": "slot unavailable", "type": "server_error"}'),
     "slot unavailable"),
    (stream(chunk({"content": "a"}), "event: error\ndata: upstream went away"), "upstream went away"),
    (stream(chunk({"content": "a"}), 'data: {"error": "model crashed"}'), "model crashed"),
])
def test_parse_sse_raises_on_an_error_mid_stream(lines, message):
    events = parse_sse(lines)
    assert next(events).text == "a"
    with pytest.raises(LLMStreamError, match=message) as raised:
        next(events)
    assert message in raised.value.message


def test_parse_sse_reports_a_context_error_mid_stream():
    lines = stream('error: {"code": 400, "message": "the request exceeds the available context size", '
                   '"type": "exceed_context_size_error", "n_ctx": 4096}')
    with pytest.raises(ContextLengthExceeded) as raised:
        list(parse_sse(lines))
    assert raised.value.limit == 4096


def test_parse_sse_skips_and_counts_lines_that_are_not_json():
    stats = StreamStats()
    lines = stream("data: <html>", chunk({"content": "a"}), "data: {broken", "data: 42", chunk({"content": "b"}))
    assert [e.text for e in parse_sse(lines, stats)] == ["a", "b"]
    assert (stats.chunks, stats.skipped) == (2, 3)


@pytest.mark.parametrize("lines, error, message", [
    (stream("data: <html>", "data: Bad gateway", "data: [DONE]"), LLMStreamError, "2 unreadable events"),
    (stream("data: nope"), LLMStreamError, "1 unreadable events"),
    (stream(": keep-alive"), EmptyStream, "without sending a reply"),
    ([], EmptyStream, "without sending a reply"),
    (["<html><body>Bad gateway</body></html>"], EmptyStream, "without sending a reply"),
])
def test_parse_sse_raises_when_nothing_readable_arrived(lines, error, message):
    with pytest.raises(error, match=message):
        list(parse_sse(lines))


@pytest.mark.parametrize("lines", [
    [],                                                          # llama.cpp over its window: HTTP 200, no body
    stream("data: [DONE]"),                                      # ... or only [DONE]
    stream(chunk({"role": "assistant", "content": ""}), "data: [DONE]"),  # a role chunk and nothing else
    stream(chunk({"role": "assistant"}), chunk(usage=USAGE), "data: [DONE]"),
    stream(chunk({"content": ""}, None), chunk({"content": None}, None)),
    stream(chunk({"reasoning_content": "thinking..."}), "data: [DONE]"),  # thought, never answered
    stream("data: <html>", chunk({"role": "assistant"}), "data: [DONE]"),
])
def test_parse_sse_raises_empty_stream_without_text_or_finish_reason(lines):
    with pytest.raises(EmptyStream, match="without sending a reply"):
        list(parse_sse(lines))


@pytest.mark.parametrize("lines, events", [
    (stream(chunk({"content": ""}, "stop"), "data: [DONE]"), [StreamEvent("finish", finish_reason="stop")]),
    (stream(chunk({"content": "a"}), "data: [DONE]"), [StreamEvent("content", "a")]),
])
def test_parse_sse_a_finish_reason_or_any_text_is_a_reply(lines, events):
    assert list(parse_sse(lines)) == events


@pytest.mark.parametrize("after", [0, 1])
def test_parse_sse_raises_on_old_vllms_flat_error_object(after):
    flat = 'data: {"object": "error", "message": "CUDA out of memory", "type": "InternalServerError", ' \
           '"param": null, "code": 500}'
    events = parse_sse(stream(*[chunk({"content": "a"})] * after, flat, "data: [DONE]"))
    assert [e.text for e in itertools.islice(events, after)] == ["a"] * after
    with pytest.raises(LLMStreamError, match="error mid-reply: CUDA out of memory"):
        next(events)


def test_parse_sse_flat_context_error_is_a_context_error():
    flat = ('data: {"object": "error", "message": "This model\'s maximum context length is 2048 tokens.", '
            '"type": "BadRequestError", "param": null, "code": 400}')
    with pytest.raises(ContextLengthExceeded) as raised:
        list(parse_sse(stream(flat, "data: [DONE]")))
    assert raised.value.limit == 2048


def test_parse_sse_reads_json_chunks_that_lack_blank_lines_between():
    lines = [chunk({"content": "a"}), chunk({"content": "b"}), ""]
    assert [e.text for e in parse_sse(lines)] == ["a", "b"]


def test_parse_sse_reads_crlf_bytes_end_to_end():
    raw = "\r\n\r\n".join([chunk({"content": "a"}), chunk({"content": "b"}, "stop"), "data: [DONE]"]).encode()
    pieces = [raw[i:i + 7] for i in range(0, len(raw), 7)]
    assert collect(split_lines(pieces))["content"] == "ab"


@pytest.mark.parametrize("body, expected", [
    (('{"choices": [{"index": 0, "message": {"role": "assistant", "content": "Hi", "reasoning_content": "r"}, '
     '"finish_reason": "stop"}], "usage": {"total_tokens": 3}}'),
     [StreamEvent("reasoning", "r"), StreamEvent("content", "Hi"), StreamEvent("finish", finish_reason="stop"),
      StreamEvent("usage", usage={"total_tokens": 3})]),
    ('{"choices": [{"index": 0, "message": {"content": null}, "finish_reason": "length"}]}',
     [StreamEvent("finish", finish_reason="length")]),
])
def test_parse_completion_reads_a_whole_json_reply(body, expected):
    assert list(parse_completion(body)) == expected


@pytest.mark.parametrize("body, error", [
    ('{"id": "x", "object": "chat.completion", "choices": []}', EmptyStream),
    ('{"choices": [{"index": 0, "message": {"content": ""}, "finish_reason": null}]}', EmptyStream),
    ('{"object": "error", "message": "boom", "type": "InternalServerError", "param": null, "code": 500}',
     LLMStreamError),
])
def test_parse_completion_without_text_or_finish_reason_is_an_error(body, error):
    with pytest.raises(error):
        list(parse_completion(body))


@pytest.mark.parametrize("body", ["not json", "[1, 2]"])
def test_parse_completion_rejects_what_is_not_a_completion(body):
    with pytest.raises(LLMStreamError):
        list(parse_completion(body))
