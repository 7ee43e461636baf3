"""Reading a stream at most every `interval` seconds: same text, fewer reads, first token at once."""
import itertools
import time

import pytest
import requests
from fake_llm import Fault, fake_llm  # noqa: F401  (fake_llm is a fixture)
from hypothesis import given
from hypothesis import strategies as st

from agents.llm_client import LLMClient, LLMStreamError
from agents.paced_read import PacedBody, _dechunked, _paced_reads, _Pacer

MESSAGES = [{"role": "user", "content": "Hello there"}]


def chunked(pieces: list[bytes], extension: bytes = b"") -> bytes:
    body = b"".join(b"%x%s\r\n%s\r\n" % (len(piece), extension, piece) for piece in pieces if piece)
    return body + b"0\r\nX-Trailer: ignored\r\n\r\n"


def split_at(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({0, len(data), *(cut % (len(data) + 1) for cut in cuts)})
    return [data[a:b] for a, b in itertools.pairwise(points)]


@given(pieces=st.lists(st.binary(min_size=1, max_size=40), max_size=12),
       cuts=st.lists(st.integers(min_value=0), max_size=20), extension=st.sampled_from([b"", b";name=value"]))
def test_paced_read_undoes_chunking_however_the_bytes_are_split(pieces, cuts, extension):
    reads = split_at(chunked(pieces, extension), cuts)
    assert b"".join(_dechunked(iter(reads))) == b"".join(pieces)


@pytest.mark.parametrize("body, problem", [
    (b"5\r\nhello\r\n", "ended in the middle"),           # no last chunk
    (b"5\r\nhel", "ended in the middle"),
    (b"zz\r\nhello\r\n0\r\n\r\n", "Bad chunk size"),
    (b"0x5\r\nhello\r\n0\r\n\r\n", "Bad chunk size"),
    (b"5\r\nhelloXX0\r\n\r\n", "does not end where its size says"),
    (b"1" * 2000, "too long"),
])
def test_paced_read_rejects_broken_chunking(body, problem):
    with pytest.raises(requests.exceptions.ChunkedEncodingError, match=problem):
        list(_dechunked(iter([body])))


class Reads:
    """A socket file whose read1 hands out the given pieces, one per call."""

    def __init__(self, pieces: list[bytes]):
        self.pieces = list(pieces)

    def read1(self, size: int) -> bytes:
        return self.pieces.pop(0) if self.pieces else b""


def test_paced_read_reads_at_once_until_pacing_starts():
    """A first event split over two reads is not held back; once the caller has it, reads are paced."""
    sleeps = []
    pacer = _Pacer(0.05, sleeps.append, clock=lambda: 100.0)
    reads = Reads([b"5\r\nwor", b"d0\r\n", b"6\r\n word1\r\n", b"0\r\n\r\n"])
    body = PacedBody(_dechunked(_paced_reads(reads, pacer)), pacer)
    pieces = iter(body)
    assert next(pieces) == b"word0" and sleeps == []
    body.start_pacing()
    assert next(pieces) == b" word1" and sleeps == [0.05]


class PacingSleep:
    """A real sleep that remembers how often pacing asked for one."""

    def __init__(self):
        self.calls = 0

    def __call__(self, seconds: float) -> None:
        self.calls += 1
        time.sleep(seconds)


@pytest.fixture
def paced(fake_llm):
    sleep = PacingSleep()
    client = LLMClient(fake_llm.url, None, model="fake-model", read_timeout=2, sleep=sleep, read_interval=0.05)
    yield client, sleep
    client.close()


@pytest.mark.parametrize("is_chunked", [True, False])
def test_paced_read_gives_the_same_reply_in_fewer_reads(fake_llm, paced, is_chunked):
    client, sleep = paced
    fake_llm.chunked, fake_llm.tokens, fake_llm.token_delay = is_chunked, 30, 0.01
    started = time.monotonic()
    events = client.stream_chat(MESSAGES, 100)
    first = next(events)
    assert first.text == "word0" and time.monotonic() - started < 0.3 and sleep.calls == 0
    rest = list(events)
    text = first.text + "".join(event.text for event in rest if event.kind == "content")
    assert text == "".join(fake_llm.pieces(100)[0])
    assert rest[-1].kind == "usage"
    assert 3 <= sleep.calls <= 12  # ~0.3 s of tokens read every 50 ms, not 30 reads


def test_paced_read_mid_stream_faults_keep_their_meaning(fake_llm, paced):
    client, _ = paced
    fake_llm.fail_next(Fault.disconnect(after=3))
    with pytest.raises(LLMStreamError, match="closed the connection") as raised:
        client.complete(MESSAGES, 50)
    assert raised.value.partial == "Hello! How can"


def test_paced_read_timeout_mid_stream_is_a_stream_error(fake_llm):
    fake_llm.fail_next(Fault.hang(seconds=3, after=2))
    with LLMClient(fake_llm.url, None, model="fake-model", read_timeout=0.3, sleep=time.sleep,
                   read_interval=0.05) as client, \
            pytest.raises(LLMStreamError, match="stopped sending for 0.3 s") as raised:
        client.complete(MESSAGES, 50)
    assert raised.value.partial == "Hello! How"


def test_paced_read_closing_the_stream_closes_the_connection(fake_llm, paced):
    client, _ = paced
    fake_llm.tokens, fake_llm.token_delay = 200, 0.01
    events = client.stream_chat(MESSAGES, 500)
    next(events)
    events.close()
    assert fake_llm.client_gone.wait(2)


def test_paced_read_follows_an_interval_that_grows_under_load(fake_llm):
    """The read interval may be a function (the page's flush interval, longer while the event loop
    lags): a loaded worker then wakes for the model's stream as rarely as it sends the page text."""
    intervals, sleep = [0.05], PacingSleep()
    client = LLMClient(fake_llm.url, None, model="fake-model", read_timeout=2, sleep=sleep,
                       read_interval=lambda: intervals[0])
    fake_llm.tokens, fake_llm.token_delay = 40, 0.01
    try:
        events = client.stream_chat(MESSAGES, 100)
        next(events)
        intervals[0] = 0.2  # the loop started lagging
        text = "word0" + "".join(event.text for event in events if event.kind == "content")
    finally:
        client.close()
    assert text == "".join(fake_llm.pieces(100)[0])
    assert 1 <= sleep.calls <= 4  # ~0.4 s of tokens read every 200 ms, not every 50 ms (~8)


def test_paced_read_hands_a_finished_connection_back_for_the_next_turn(fake_llm, tmp_path):
    """A paced stream read to its clean end leaves its kept-alive connection to the next request
    (Providers keeps one session per endpoint); one left early (Stop) is closed, never reused."""
    from agents.providers import Providers
    from config import TestConfig
    accepted = []
    server = fake_llm._server
    original = server.process_request
    server.process_request = lambda request, address: accepted.append(address) or original(request, address)
    providers = Providers(TestConfig(tmp_path, OPENAI_BASE_URL=fake_llm.url),
                          client_options={"read_interval": 0.02})
    fake_llm.tokens, fake_llm.token_delay = 10, 0.005
    expected = "".join(fake_llm.pieces(100)[0])
    for _ in range(3):  # three turns, each with its own client
        client = providers.client("chat")
        try:
            assert "".join(e.text for e in client.stream_chat(MESSAGES, 100) if e.kind == "content") == expected
        finally:
            client.close()
    assert len(accepted) == 1
    client = providers.client("chat")
    stream = client.stream_chat(MESSAGES, 100)
    next(stream)
    stream.close()  # Stop after the first token: this connection is closed
    client.close()
    client = providers.client("chat")
    assert "".join(e.text for e in client.stream_chat(MESSAGES, 100) if e.kind == "content") == expected
    client.close()
    assert len(accepted) == 2
