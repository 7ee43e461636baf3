"""LLMClient against a real local HTTP server speaking SSE, with the faults real endpoints show."""
import logging
import re
import time
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest
from conftest import free_port
from fake_llm import Fault, fake_llm  # noqa: F401  (fake_llm is a fixture)

from agents.llm_client import (
    Completion,
    ContextLengthExceeded,
    LLMBadRequest,
    LLMClient,
    LLMStreamError,
    LLMUnavailable,
    StreamEvent,
)
from agents.llm_errors import EmptyStream

KEY = "sk-test-0123456789abcdef"
MESSAGES = [{"role": "user", "content": "Hello there"}]
REPLY = "Hello! How can I help you today?"


@pytest.fixture
def sleeps():
    """Durations the client asked to sleep; nothing actually waits."""
    return []


@pytest.fixture
def make_client(fake_llm, sleeps):
    """Build clients against the fake (or another URL); all are closed afterwards."""
    made = []

    def make(base_url=None, api_key=KEY, **options):
        options = {"model": "fake-model", "sleep": sleeps.append, "read_timeout": 2, **options}
        made.append(LLMClient(base_url or fake_llm.url, api_key, **options))
        return made[-1]
    yield make
    for client in made:
        client.close()


@pytest.fixture
def client(make_client):
    return make_client()


# -- the endpoint -------------------------------------------------------------------------------

@pytest.mark.parametrize("path, api_key, expected", [
    ("/v1", KEY, {"authorization": f"Bearer {KEY}"}),
    ("/openai/deployments/dep?api-version=2024-10-21", KEY, {"api-key": KEY}),
    ("/v1", None, {}),
])
def test_llm_client_sends_the_key_as_the_provider_expects(fake_llm, make_client, path, api_key, expected):
    make_client(f"http://127.0.0.1:{fake_llm.port}{path}", api_key).complete(MESSAGES, 50)
    headers = fake_llm.requests[0].headers
    assert {name: headers[name] for name in ("authorization", "api-key") if name in headers} == expected


def test_llm_client_keeps_the_azure_path_and_api_version(fake_llm, make_client):
    make_client(f"http://127.0.0.1:{fake_llm.port}/openai/deployments/dep?api-version=2024-10-21").complete(
        MESSAGES, 50)
    assert fake_llm.requests[0].path == "/openai/deployments/dep/chat/completions?api-version=2024-10-21"


def test_llm_client_asks_for_a_stream_with_usage(fake_llm, client):
    client.complete(MESSAGES, 50)
    client.complete(MESSAGES, 60, temperature=0.2, extra={"top_p": 0.9})
    first, second = (request.body for request in fake_llm.requests)
    assert first == {"model": "fake-model", "messages": MESSAGES, "max_tokens": 50, "stream": True,
                     "stream_options": {"include_usage": True}}
    assert (second["max_tokens"], second["temperature"], second["top_p"]) == (60, 0.2, 0.9)


# -- streaming ------------------------------------------------------------------------------------

def test_llm_client_streams_token_by_token(fake_llm, client):
    events = list(client.stream_chat(MESSAGES, 50))
    assert [event.text for event in events if event.kind == "content"] == fake_llm.pieces(50)[0]
    assert events[-2:] == [StreamEvent("finish", finish_reason="stop"),
                           StreamEvent("usage", usage={"prompt_tokens": 6, "completion_tokens": 7,
                                                       "total_tokens": 13})]


@pytest.mark.parametrize("settings", [
    {}, {"send_done": False}, {"crlf": True}, {"keepalive": True}, {"chunked": False}, {"ignore_stream": True},
    {"first_token_delay": 0.05, "token_delay": 0.005}, {"crlf": True, "chunked": False, "send_done": False},
], ids=lambda settings: ",".join(settings) or "default")
def test_llm_client_reads_every_stream_variant(fake_llm, client, settings):
    for name, value in settings.items():
        setattr(fake_llm, name, value)
    completion = client.complete(MESSAGES, 50)
    assert (completion.text, completion.finish_reason, completion.usage["completion_tokens"]) == (REPLY, "stop", 7)


@pytest.mark.parametrize("chunked", [True, False])
def test_llm_client_yields_tokens_as_they_arrive(fake_llm, client, chunked):
    fake_llm.chunked, fake_llm.tokens, fake_llm.token_delay = chunked, 6, 0.1
    started = time.monotonic()
    events = client.stream_chat(MESSAGES, 50)
    assert next(events).text == "word0"
    assert time.monotonic() - started < 0.3
    assert len(list(events)) == 7  # five more words, finish, usage


@pytest.mark.parametrize("send_usage, usage", [(True, {"prompt_tokens": 6, "completion_tokens": 3,
                                                        "total_tokens": 9}), (False, None)])
def test_llm_client_usage_comes_from_the_server_or_is_none(fake_llm, client, send_usage, usage):
    fake_llm.send_usage, fake_llm.reply = send_usage, "Three word reply"
    assert client.complete(MESSAGES, 50) == Completion("Three word reply", "stop", usage)


def test_llm_client_reports_a_reply_cut_by_max_tokens(client):
    completion = client.complete(MESSAGES, 3)
    assert (completion.text, completion.finish_reason) == ("Hello! How can", "length")


@pytest.mark.parametrize("field", ["reasoning_content", "reasoning"])
def test_llm_client_keeps_reasoning_apart(fake_llm, client, field):
    fake_llm.reasoning, fake_llm.reasoning_field = "Let me think.", field
    completion = client.complete(MESSAGES, 50)
    assert (completion.reasoning, completion.text) == ("Let me think.", REPLY)


def test_llm_client_closing_the_stream_closes_the_connection(fake_llm, client):
    fake_llm.tokens, fake_llm.token_delay = 200, 0.01
    events = client.stream_chat(MESSAGES, 500)
    assert [next(events).text, next(events).text] == ["word0", " word1"]
    events.close()
    assert fake_llm.client_gone.wait(2)
    assert fake_llm.disconnects == 1


def test_llm_client_closing_a_paced_stream_closes_the_socket_not_back_to_the_pool(fake_llm, make_client):
    """Paced reads go around http.client (agents/paced_read.py): closing must still close the socket,
    so the server stops generating, and the next request must get a fresh connection."""
    fake_llm.tokens, fake_llm.token_delay = 400, 0.01
    client = make_client(read_interval=0.05)
    events = client.stream_chat(MESSAGES, 500)
    assert [next(events).text, next(events).text] == ["word0", " word1"]
    events.close()
    assert fake_llm.client_gone.wait(2) and fake_llm.disconnects == 1
    fake_llm.tokens, fake_llm.token_delay = 3, 0
    assert client.complete(MESSAGES, 50).text == "word0 word1 word2"
    assert fake_llm.disconnects == 1


# -- retries --------------------------------------------------------------------------------------

@pytest.mark.parametrize("fault", [Fault.http(429), Fault.http(500), Fault.http(502), Fault.http(503),
                                   Fault.reset(), Fault.disconnect(after=0)],
                         ids=["429", "500", "502", "503", "reset", "closed-after-headers"])
def test_llm_client_retries_before_the_first_byte(fake_llm, client, sleeps, fault):
    fake_llm.fail_next(fault)
    assert client.complete(MESSAGES, 50).text == REPLY
    assert (len(fake_llm.requests), len(sleeps)) == (2, 1)


@pytest.mark.parametrize("retry_after, low, high", [
    ("2", 2.0, 2.0), ("0.25", 0.25, 0.25), ("600", 20.0, 20.0), ("0", 0.0, 0.0),
    ("an HTTP date 5 s ahead", 3.0, 5.0),
])
def test_llm_client_honours_retry_after(fake_llm, client, sleeps, retry_after, low, high):
    if retry_after.startswith("an HTTP date"):
        retry_after = format_datetime(datetime.now(UTC) + timedelta(seconds=5), usegmt=True)
    fake_llm.fail_next(Fault.http(429, retry_after=retry_after))
    client.complete(MESSAGES, 50)
    assert low <= sleeps[0] <= high


def test_llm_client_backs_off_exponentially_with_jitter(fake_llm, client, sleeps):
    fake_llm.fail_next(*[Fault.http(503)] * 3)
    client.complete(MESSAGES, 50)
    assert [0.25 <= sleeps[0] <= 0.5, 0.5 <= sleeps[1] <= 1.0, 1.0 <= sleeps[2] <= 2.0] == [True] * 3


def test_llm_client_caps_backoff(fake_llm, make_client, sleeps):
    fake_llm.fail_next(*[Fault.http(500)] * 2)
    make_client(backoff_base=10, backoff_max=12).complete(MESSAGES, 50)
    assert all(delay <= 12 for delay in sleeps) and sleeps[1] >= 6


def test_llm_client_gives_up_after_max_retries(fake_llm, client, sleeps):
    fake_llm.fail_next(*[Fault.http(503, retry_after="1")] * 4)
    with pytest.raises(LLMUnavailable) as raised:
        client.complete(MESSAGES, 50)
    assert (raised.value.attempts, raised.value.status, raised.value.retry_after) == (4, 503, 1.0)
    assert (len(fake_llm.requests), sleeps) == (4, [1.0, 1.0, 1.0])


def test_llm_client_gives_up_when_nothing_listens(make_client, sleeps):
    with pytest.raises(LLMUnavailable, match="Could not connect") as raised:
        make_client(f"http://127.0.0.1:{free_port()}/v1", max_retries=2).complete(MESSAGES, 50)
    assert (raised.value.attempts, len(sleeps)) == (3, 2)


def test_llm_client_does_not_retry_after_bytes_streamed(fake_llm, client, sleeps):
    fake_llm.fail_next(Fault.disconnect(after=2))
    received = []
    with pytest.raises(LLMStreamError, match="closed the connection") as raised:
        received.extend(event.text for event in client.stream_chat(MESSAGES, 50))
    assert received == ["Hello!", " How"] and raised.value.partial == "Hello! How"
    assert (len(fake_llm.requests), sleeps) == (1, [])


def test_llm_client_does_not_retry_a_server_that_hangs(fake_llm, make_client, sleeps):
    fake_llm.fail_next(Fault.hang(seconds=3))
    started = time.monotonic()
    with pytest.raises(LLMUnavailable, match="did not answer within 0.3 s"):
        make_client(read_timeout=0.3).complete(MESSAGES, 50)
    assert time.monotonic() - started < 1.5
    assert (len(fake_llm.requests), sleeps) == (1, [])


def test_llm_client_read_timeout_mid_stream_is_a_stream_error(fake_llm, make_client, sleeps):
    fake_llm.fail_next(Fault.hang(seconds=3, after=2))
    with pytest.raises(LLMStreamError, match="stopped sending for 0.3 s") as raised:
        make_client(read_timeout=0.3).complete(MESSAGES, 50)
    assert (raised.value.partial, sleeps) == ("Hello! How", [])


# -- errors from the server -----------------------------------------------------------------------

def test_llm_client_raises_an_error_sent_mid_stream(fake_llm, client):
    fake_llm.fail_next(Fault.error_chunk("The upstream provider is overloaded", after=1))
    with pytest.raises(LLMStreamError, match="upstream provider is overloaded") as raised:
        client.complete(MESSAGES, 50)
    assert raised.value.partial == "Hello!"


@pytest.mark.parametrize("fault", [Fault.empty_stream(), Fault.empty_stream(done=True)], ids=["no-events", "done-only"])
@pytest.mark.parametrize("read_interval", [0, 0.05])
def test_llm_client_empty_stream_is_an_error_not_an_empty_reply(fake_llm, make_client, sleeps, fault, read_interval):
    fake_llm.fail_next(fault)
    with pytest.raises(EmptyStream, match="without sending a reply") as raised:
        make_client(read_interval=read_interval).complete(MESSAGES, 50)
    assert (raised.value.partial, len(fake_llm.requests), sleeps) == ("", 1, [])  # the same request would fail the same


def test_llm_client_over_a_llama_cpp_window_is_an_empty_stream(fake_llm, client, sleeps):
    fake_llm.n_ctx = 8  # "Hello there" is 2 words + 4 of chat format: 6 tokens, leaving 2 for the reply
    assert client.complete(MESSAGES, 50) == Completion("Hello! How", "length",
                                                       {"prompt_tokens": 6, "completion_tokens": 2, "total_tokens": 8})
    fake_llm.n_ctx = 6
    with pytest.raises(EmptyStream):
        client.complete(MESSAGES, 50)
    assert (len(fake_llm.requests), sleeps) == (2, [])


def test_llm_client_over_a_llama_cpp_window_unstreamed_is_a_context_error(fake_llm, client):
    fake_llm.n_ctx, fake_llm.ignore_stream = 6, True
    with pytest.raises(ContextLengthExceeded, match="maximum context length is 6 tokens") as raised:
        client.complete(MESSAGES, 50)
    assert (raised.value.limit, raised.value.status) == (6, 400)


@pytest.mark.parametrize("after", [0, 3])
def test_llm_client_old_vllm_flat_error_mid_stream_is_an_error(fake_llm, client, sleeps, after):
    fake_llm.fail_next(Fault.vllm_flat_error(f"engine died, key {KEY}", after=after))
    with pytest.raises(LLMStreamError, match="error mid-reply: engine died") as raised:
        client.complete(MESSAGES, 50)
    assert raised.value.partial == "".join(["Hello!", " How", " can"][:after])
    assert KEY not in str(raised.value) and "key ***" in raised.value.message and sleeps == []


def test_llm_client_skips_garbage_between_chunks(fake_llm, client, caplog):
    fake_llm.fail_next(Fault.garbage(("<html>", "not json"), after=2))
    assert client.complete(MESSAGES, 50).text == REPLY
    assert "skipped 2 unreadable stream events" in caplog.text


@pytest.mark.parametrize("fault, kind, words", [
    (Fault.garbage(only=True), LLMStreamError, "unreadable"),
    (Fault.html(), LLMBadRequest, "web page"),
    (Fault.html(404), LLMBadRequest, "HTML page"),
    (Fault.http(404, message="The model `gpt-9` does not exist"), LLMBadRequest, "`gpt-9` does not exist"),
    (Fault.http(400, message="Invalid 'messages[0].role'"), LLMBadRequest, "Invalid 'messages[0].role'"),
    (Fault.http(301, message="Moved"), LLMBadRequest, "redirects are not followed"),
])
def test_llm_client_does_not_retry_answers_that_would_not_change(fake_llm, client, sleeps, fault, kind, words):
    fake_llm.fail_next(fault)
    with pytest.raises(kind, match=re.escape(words)):
        client.complete(MESSAGES, 50)
    assert (len(fake_llm.requests), sleeps) == (1, [])


def test_llm_client_detects_context_length(fake_llm, client, sleeps):
    fake_llm.fail_next(Fault.context_length(limit=4096))
    with pytest.raises(ContextLengthExceeded) as raised:
        client.complete(MESSAGES, 50)
    assert (raised.value.limit, raised.value.status, len(fake_llm.requests), sleeps) == (4096, 400, 1, [])


@pytest.mark.parametrize("status", [401, 403])
def test_llm_client_never_shows_or_logs_the_key(fake_llm, client, caplog, status):
    caplog.set_level(logging.DEBUG)
    fake_llm.fail_next(Fault.http(503), Fault.http(status, message=f"Incorrect API key provided: {KEY}"))
    with pytest.raises(LLMBadRequest, match="rejected the API key") as raised:
        client.complete(MESSAGES, 50)
    assert KEY not in raised.value.message + caplog.text + repr(client)


def test_llm_client_redacts_the_key_from_errors_mid_stream(fake_llm, client):
    fake_llm.fail_next(Fault.error_chunk(f"bad token {KEY}", after=1))
    with pytest.raises(LLMStreamError) as raised:
        client.complete(MESSAGES, 50)
    assert KEY not in str(raised.value) and "bad token ***" in raised.value.message


@pytest.mark.parametrize("message, dropped, added", [
    ("Unrecognized request argument supplied: stream_options", "stream_options", None),
    ("Unsupported parameter: 'max_tokens' is not supported with this model. Use 'max_completion_tokens' instead.",
     "max_tokens", "max_completion_tokens"),
])
def test_llm_client_drops_a_parameter_the_server_rejects(fake_llm, client, sleeps, message, dropped, added):
    fake_llm.fail_next(Fault.http(400, message=message))
    assert client.complete(MESSAGES, 50).text == REPLY
    client.complete(MESSAGES, 50)
    first, second, third = (request.body for request in fake_llm.requests)
    assert dropped in first and dropped not in second and dropped not in third
    assert added is None or second[added] == third[added] == 50
    assert sleeps == []


def test_llm_client_uses_a_given_session_and_leaves_it_open(fake_llm):
    import requests
    with requests.Session() as session:
        session.headers["X-Trace"] = "abc"
        LLMClient(fake_llm.url, model="m", session=session).close()
        LLMClient(fake_llm.url, model="m", session=session).complete(MESSAGES, 50)
    assert fake_llm.requests[0].headers["x-trace"] == "abc"


def test_llm_client_reports_a_base_url_it_cannot_use(sleeps):
    with pytest.raises(LLMBadRequest, match="check OPENAI_BASE_URL"), \
            LLMClient("http:///v1", model="m", sleep=sleeps.append) as client:
        client.complete(MESSAGES, 50)
    assert sleeps == []
