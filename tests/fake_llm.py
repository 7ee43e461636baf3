"""A fake OpenAI-compatible endpoint on 127.0.0.1 that speaks real SSE, for tests and benchmarks.

    with FakeLLM(reply="Hi there") as fake:
        fake.fail_next(Fault.http(429, retry_after="1"), Fault.disconnect(after=2))
        client = LLMClient(fake.url, "sk-test", model="fake-model")

Settings are plain attributes, changeable between requests. Every request is recorded
(`fake.requests`) with its parsed JSON body and lower-cased headers. A client that goes away
mid-stream is counted in `fake.disconnects` and sets `fake.client_gone`.

`n_ctx` makes it behave like llama-cpp-python's server with that context window (prompt tokens
counted roughly, as words): a prompt that does not fit gets a 400 when not streaming but HTTP 200
and an empty body when streaming; a reply is cut ("length") where prompt + reply would pass n_ctx.
"""
from __future__ import annotations

import re
import threading
from collections import deque
from dataclasses import dataclass, field
from typing import Self

import pytest
from fake_llm_server import FakeHandler, FakeServer, prompt_tokens

VLLM_ERROR_TYPE = "InternalServerError"
IMAGE_REFUSAL = "image input is not supported by this model"  # what a text-only server answers (400)
CONTEXT_MESSAGE = ("This model's maximum context length is {limit} tokens. However, your messages resulted in "
                   "{asked} tokens. Please reduce the length of the messages.")


@dataclass
class Fault:
    """One misbehaviour for the next chat request; build with the class methods."""

    kind: str
    status: int = 0
    headers: dict = field(default_factory=dict)
    body: dict | None = None
    after: int | None = None
    seconds: float = 0.0
    lines: tuple[str, ...] = ()

    @classmethod
    def http(cls, status: int, retry_after: str | None = None, message: str = "Service unavailable") -> Fault:
        """Answer with an HTTP error (429, 500, 503...) in OpenAI's JSON shape."""
        headers = {"Retry-After": retry_after} if retry_after is not None else {}
        body = {"error": {"message": message, "type": "server_error", "code": None}}
        return cls("http", status=status, headers=headers, body=body)

    @classmethod
    def html(cls, status: int = 200) -> Fault:
        """A web page where the API should be (a wrong base URL, a captive portal)."""
        return cls("html", status=status)

    @classmethod
    def context_length(cls, limit: int = 4096, asked: int = 5000) -> Fault:
        """OpenAI's 400 for a prompt that does not fit the window."""
        body = {"error": {"message": CONTEXT_MESSAGE.format(limit=limit, asked=asked),
                          "type": "invalid_request_error", "param": "messages", "code": "context_length_exceeded"}}
        return cls("http", status=400, body=body)

    @classmethod
    def image_refused(cls) -> Fault:
        """A text-only model's 400 for a request with image_url parts (see FakeLLM.text_only)."""
        body = {"error": {"message": IMAGE_REFUSAL, "type": "invalid_request_error", "param": "messages",
                          "code": None}}
        return cls("http", status=400, body=body)

    @classmethod
    def hang(cls, seconds: float = 5.0, after: int | None = None) -> Fault:
        """Accept, then say nothing: before the headers (after=None) or after `after` tokens."""
        return cls("hang", seconds=seconds, after=after)

    @classmethod
    def reset(cls) -> Fault:
        """Close the connection without answering."""
        return cls("reset")

    @classmethod
    def disconnect(cls, after: int = 2) -> Fault:
        """Send the headers and `after` tokens, then drop the connection mid-body."""
        return cls("disconnect", after=after)

    @classmethod
    def garbage(cls, lines: tuple[str, ...] = ("<html>not json</html>",), after: int = 0,
                only: bool = False) -> Fault:
        """Insert `data:` events that are not JSON after `after` tokens; `only` sends nothing else."""
        return cls("garbage_only" if only else "garbage", after=after, lines=lines)

    @classmethod
    def error_chunk(cls, message: str = "The upstream provider is overloaded", after: int = 1) -> Fault:
        """An `{"error": {...}}` event after `after` tokens, then the end of the stream."""
        return cls("error_chunk", after=after, body={"error": {"message": message, "type": "server_error"}})

    @classmethod
    def empty_stream(cls, done: bool = False) -> Fault:
        """HTTP 200 with SSE headers and no event (or only `data: [DONE]`), then a clean end: what
        llama-cpp-python's server sends for a streaming request over its context window."""
        return cls("empty", lines=("data: [DONE]",) if done else ())

    @classmethod
    def vllm_flat_error(cls, message: str = "CUDA out of memory", after: int = 1) -> Fault:
        """vLLM before 0.10.1 mid-stream: a flat `{"object": "error", ...}` event (no `error` key)
        after `after` tokens, then `data: [DONE]` and a clean end."""
        body = {"object": "error", "message": message, "type": VLLM_ERROR_TYPE, "param": None, "code": 500}
        return cls("flat_error", after=after, body=body)

    @classmethod
    def interrupted(cls, after: int = 2) -> Fault:
        """llama-cpp-python's server cutting a reply for a newer request (its default
        interrupt_requests): `after` tokens, then `data: [DONE]` and a clean end, no finish reason."""
        return cls("interrupted", after=after)


@dataclass
class Recorded:
    """One request as the fake saw it."""

    method: str
    path: str
    headers: dict
    body: dict | None


class FakeLLM:
    """The server and its knobs; a context manager that starts and stops it."""

    def __init__(self, reply: str = "Hello! How can I help you today?", **settings) -> None:
        self.reply = reply
        self.tokens: int | None = None          # reply of this many words instead of `reply`
        self.token_delay = 0.0                  # seconds between tokens
        self.first_token_delay = 0.0            # seconds between headers and the first token
        self.send_done = True
        self.send_usage = True                  # only when the request asks with stream_options
        self.crlf = False
        self.chunked = True                     # False: HTTP/1.0 style, body ends when the connection closes
        self.keepalive = False                  # OpenRouter's ": OPENROUTER PROCESSING" comments first
        self.reasoning: str | None = None       # streamed before the reply, in `reasoning_field`
        self.reasoning_field = "reasoning_content"
        self.finish_reason = "stop"
        self.ignore_stream = False              # answer JSON even when asked to stream
        self.model = "fake-model"
        self.models: list[str] = []             # what GET /v1/models lists besides `model`
        self.responder = None                   # body -> reply text, instead of `reply` (per-request replies)
        self.n_ctx: int | None = None           # llama.cpp's context window (see the module's docstring)
        self.token_ratio: float | None = None   # report prompt tokens as tiktoken's count times this
        self.text_only = False                  # refuse requests with image_url parts like a text-only model
        for name, value in settings.items():
            if not hasattr(self, name):
                raise TypeError(f"FakeLLM has no setting {name!r}")
            setattr(self, name, value)
        self.requests: list[Recorded] = []
        self.faults: deque[Fault] = deque()
        self.disconnects = 0
        self.client_gone = threading.Event()
        self.stopping = threading.Event()
        self._lock = threading.Lock()
        self._server: FakeServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """The base URL a client is configured with (ends in /v1)."""
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    def fail_next(self, *faults: Fault) -> None:
        """Queue faults; each chat request takes the next one."""
        self.faults.extend(faults)

    def take_fault(self) -> Fault | None:
        """The fault for the request being handled, if any is queued (thread-safe)."""
        try:
            return self.faults.popleft()
        except IndexError:
            return None

    def start(self) -> FakeLLM:
        self._server = FakeServer(("127.0.0.1", 0), FakeHandler)
        self._server.fake = self
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.01},
                                        name="fake-llm", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop without waiting on hung or streaming handlers: they are woken and their sockets closed."""
        self.stopping.set()
        self._server.shutdown()
        self._server.close_connections()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    def pieces(self, max_tokens: int | None, body: dict | None = None) -> tuple[list[str], str]:
        """The reply as tokens (words with their leading space) and the finish reason."""
        text = " ".join(f"word{i}" for i in range(self.tokens)) if self.tokens is not None else self.reply
        if self.responder is not None and body is not None:
            text = self.responder(body)
        pieces = re.findall(r"\s*\S+", text)
        if self.n_ctx and body is not None:  # llama.cpp shortens max_tokens to what the window has left
            left = max(self.n_ctx - prompt_tokens(body, self.token_ratio), 0)
            max_tokens = min(max_tokens or self.n_ctx, left)
        if max_tokens and len(pieces) > max_tokens:
            return pieces[:max_tokens], "length"
        return pieces, self.finish_reason

    def over_window(self, body: dict) -> bool:
        """True when the prompt alone fills the window (llama-cpp-python: prompt tokens >= n_ctx)."""
        return bool(self.n_ctx) and prompt_tokens(body, self.token_ratio) >= self.n_ctx

    def record(self, method: str, path: str, headers: dict, body: dict | None) -> None:
        """Called by the handler for every request (before it takes its fault, so a text-only
        model's refusal of images goes first)."""
        self.requests.append(Recorded(method, path, headers, body))
        if self.text_only and image_parts(body):
            self.faults.appendleft(Fault.image_refused())

    def image_parts(self) -> list[dict]:
        """Every image_url content part the chat requests carried, in order."""
        return [part for request in self.requests for part in image_parts(request.body)]

    def client_left(self) -> None:
        """Called by the handler when a write finds the client gone."""
        with self._lock:
            self.disconnects += 1
        self.client_gone.set()


def image_parts(body: dict | None) -> list[dict]:
    """The image_url parts of a request body's messages (content given as a list of parts)."""
    messages = (body or {}).get("messages") if isinstance(body, dict) else None
    return [part for message in messages or [] if isinstance(message, dict) and isinstance(message.get("content"), list)
            for part in message["content"] if isinstance(part, dict) and part.get("type") == "image_url"]


@pytest.fixture
def fake_llm():
    """A running FakeLLM, stopped after the test."""
    with FakeLLM() as fake:
        yield fake
