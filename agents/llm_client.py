"""A streaming chat-completions client for any OpenAI-compatible endpoint, on `requests`.

The endpoint is untrusted and unreliable (docs/ARCHITECTURE.md decision 8): requests are retried with
exponential backoff only while nothing of the reply has arrived; after that a failure raises
LLMStreamError carrying the text received so far. A stream that ends with no text and no finish
reason raises EmptyStream, not retried here (llama.cpp sends that for a prompt over its window:
the chat agent re-plans tighter). Closing the generator closes the HTTP response and its socket,
so a stop button cancels the upstream read and the server stops generating. The sleep function
is injectable so the app can pass `socketio.sleep` and tests need not wait.
"""
from __future__ import annotations

import http.cookiejar
import json
import logging
import random
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Self

import requests
import requests.adapters
import urllib3

from agents.llm_errors import (
    ContextLengthExceeded,
    EmptyStream,
    LLMBadRequest,
    LLMError,
    LLMStreamError,
    LLMUnavailable,
    error_for_status,
    redact,
)
from agents.llm_http import COMPAT_FIXES, endpoint_for, request_headers, retry_after_seconds
from agents.paced_read import paced_body
from agents.sse import StreamEvent, StreamStats, parse_completion, stream_events

log = logging.getLogger(__name__)

__all__ = [
    "Completion",
    "ContextLengthExceeded",
    "EmptyStream",
    "LLMBadRequest",
    "LLMClient",
    "LLMError",
    "LLMStreamError",
    "LLMUnavailable",
    "StreamEvent",
    "collect",
]

ERROR_BODY_LIMIT = 64 * 1024
CONNECTIONS_PER_HOST = 64
TRANSPORT_ERRORS = (requests.RequestException, urllib3.exceptions.HTTPError, OSError)
CUT_SHORT = ("The model server ended the reply without finishing it (a busy server may cut a reply short "
             "for another request). The partial reply is kept; regenerate it to try again.")
_ENDPOINTS_THAT_FINISH: set[str] = set()  # endpoint URLs seen sending a finish reason (per process)


@dataclass(frozen=True)
class Completion:
    """A whole reply; usage is None when the server sent none (the caller then counts locally)."""

    text: str
    finish_reason: str | None
    usage: dict | None
    reasoning: str = ""


class _Retry(Exception):
    """Internal: this attempt failed before any of the reply arrived, so another may be tried."""

    def __init__(self, error: LLMUnavailable) -> None:
        super().__init__(error.message)
        self.error = error


@dataclass
class _Progress:
    """What one attempt has received: body bytes (retry is allowed only at 0) and reply text."""

    received: int = 0
    text: list[str] = field(default_factory=list)


class LLMClient:
    """Streams chat completions from one OpenAI-compatible endpoint (OpenAI, Azure, Ollama, vLLM...)."""

    def __init__(self, base_url: str, api_key: str | None = None, *, model: str,
                 connect_timeout: float = 5, read_timeout: float = 60, max_retries: int = 3,
                 backoff_base: float = 0.5, backoff_max: float = 20,
                 session: requests.Session | None = None,
                 sleep: Callable[[float], object] = time.sleep,
                 read_interval: float | Callable[[], float] = 0.0) -> None:
        self.endpoint = endpoint_for(base_url)
        self.model = model
        self.timeout = (connect_timeout, read_timeout)
        self.max_retries, self.backoff_base, self.backoff_max = max_retries, backoff_base, backoff_max
        self.sleep = sleep
        self.read_interval = read_interval  # read the stream at most this often (see paced_read)
        self._api_key = api_key
        self._owns_session = session is None
        self._session = session or pooled_session()
        self._compat: set[str] = set()

    def __repr__(self) -> str:
        return f"LLMClient({self._log_url!r}, model={self.model!r})"

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def close(self) -> None:
        """Close the HTTP session if this client made it."""
        if self._owns_session:
            self._session.close()

    def stream_chat(self, messages: Iterable[dict], max_tokens: int, temperature: float | None = None,
                    extra: dict | None = None) -> Iterator[StreamEvent]:
        """Yield the reply as it streams; retried with backoff only while no byte of it has arrived.

        Nothing is sent before the first next(); closing the generator closes the connection.
        """
        body = self._body(messages, max_tokens, temperature, extra)
        for attempt in range(self.max_retries + 1):
            progress = _Progress()
            try:
                with self._open(body) as response:
                    yield from self._read(response, progress)
                return
            except _Retry as failure:
                if attempt == self.max_retries:
                    failure.error.attempts = attempt + 1
                    raise failure.error from failure.__cause__
                self._pause(attempt, failure.error)

    def complete(self, messages: Iterable[dict], max_tokens: int, temperature: float | None = None,
                 extra: dict | None = None) -> Completion:
        """The whole reply at once (for the summariser), built on stream_chat."""
        return collect(self.stream_chat(messages, max_tokens, temperature, extra))

    def prompt_tokens(self, messages: Iterable[dict]) -> int | None:
        """The server's own count of these messages as a prompt: one request, not streamed (servers
        that leave usage out of streams still report it here), asking for a single token. None when
        the server reports no usage; LLMError when the request fails."""
        body = {"model": self.model, "messages": list(messages), "max_tokens": 1, "stream": False}
        for name in self._compat:
            COMPAT_FIXES[name](body)
        try:
            with self._open(body) as response:
                payload = json.loads(_read_capped(response, ERROR_BODY_LIMIT))
        except _Retry as failure:
            raise failure.error from failure.__cause__
        except (ValueError, *TRANSPORT_ERRORS) as exc:
            raise LLMStreamError("The model endpoint's answer to a token count was unreadable.") from exc
        usage = payload.get("usage") if isinstance(payload, dict) else None
        count = usage.get("prompt_tokens") if isinstance(usage, dict) else None
        return count if isinstance(count, int) and not isinstance(count, bool) and count > 0 else None

    def models(self, timeout: float = 3.0) -> list[str]:
        """The endpoint's model ids (GET …/models), for the page's model picker; one quick try.

        Raises LLMError when the endpoint does not list models (Azure deployments, some proxies).
        """
        if self.endpoint.azure:
            raise LLMBadRequest("Azure deployments do not list models.")
        url = self.endpoint.url[: -len("/chat/completions")] + "/models"
        try:
            response = self._session.get(url, headers=request_headers(self.endpoint, self._api_key),
                                         timeout=(min(timeout, self.timeout[0]), timeout), allow_redirects=False)
            data = response.json().get("data") if response.status_code == 200 else None
        except (requests.RequestException, ValueError, AttributeError) as exc:
            raise LLMUnavailable("The model endpoint did not list its models.") from exc
        if not isinstance(data, list):
            raise LLMUnavailable(f"The model endpoint answered {response.status_code} to the model list.")
        return sorted({item["id"] for item in data if isinstance(item, dict) and isinstance(item.get("id"), str)})

    # -- one attempt ------------------------------------------------------------------------

    def _body(self, messages, max_tokens, temperature, extra) -> dict:
        body = {"model": self.model, "messages": list(messages), "max_tokens": max_tokens,
                "stream": True, "stream_options": {"include_usage": True}}
        if temperature is not None:
            body["temperature"] = temperature
        body.update(extra or {})
        for name in self._compat:
            COMPAT_FIXES[name](body)
        return body

    def _open(self, body: dict) -> requests.Response:
        """POST until the server answers 2xx; a bad answer becomes an LLMError (or _Retry)."""
        while True:
            response = self._post(body)
            if 200 <= response.status_code < 300:
                return response
            with response:
                error = self._error_for(response)
            if not self._downgrade(body, error):
                raise _Retry(error) if isinstance(error, LLMUnavailable) else error

    def _post(self, body: dict) -> requests.Response:
        """One POST; redirects are not followed, so the key never goes to another host."""
        headers = request_headers(self.endpoint, self._api_key)
        try:
            return self._session.post(self.endpoint.url, json=body, headers=headers, stream=True,
                                      timeout=self.timeout, allow_redirects=False)
        except requests.ReadTimeout as exc:  # the server has the request; asking again would pile on
            raise LLMUnavailable(f"The model endpoint did not answer within {self.timeout[1]:g} s.") from exc
        except (requests.ConnectionError, requests.Timeout) as exc:
            raise _Retry(LLMUnavailable("Could not connect to the model endpoint.")) from exc
        except requests.RequestException as exc:
            raise LLMBadRequest(f"Could not send the request to the model endpoint ({type(exc).__name__}); "
                                "check OPENAI_BASE_URL.") from exc

    def _error_for(self, response: requests.Response) -> LLMError:
        try:
            body = next(response.iter_content(ERROR_BODY_LIMIT), b"").decode("utf-8", "replace")
        except TRANSPORT_ERRORS:
            body = ""
        return error_for_status(response.status_code, body, secret=self._api_key,
                                retry_after=retry_after_seconds(response.headers))

    def _downgrade(self, body: dict, error: LLMError) -> bool:
        """Drop or rename a parameter the server says it does not support, once per client."""
        if not isinstance(error, LLMBadRequest) or error.status not in (400, 422):
            return False
        for name, fix in COMPAT_FIXES.items():
            if name not in self._compat and name in error.message and fix(body):
                log.warning("model endpoint %s: %s; retrying with the request adjusted", self._log_url,
                            error.message)
                self._compat.add(name)
                return True
        return False

    def _read(self, response: requests.Response, progress: _Progress) -> Iterator[StreamEvent]:
        """Events from an open response; transport failures mapped by how much had arrived."""
        try:
            for event in self._events(response, progress):
                if event.kind == "content":
                    progress.text.append(event.text)
                yield event
        except LLMError as error:
            error.message = redact(error.message, self._api_key)
            error.args, error.partial = (error.message,), "".join(progress.text)
            raise
        except TRANSPORT_ERRORS as exc:
            if progress.received == 0 and not _is_timeout(exc):
                raise _Retry(LLMUnavailable("The model endpoint closed the connection before replying.")) from exc
            reason = (f"stopped sending for {self.timeout[1]:g} s" if _is_timeout(exc)
                      else "closed the connection")
            raise LLMStreamError(f"The model endpoint {reason} in the middle of the reply.",
                                 partial="".join(progress.text)) from exc

    def _events(self, response: requests.Response, progress: _Progress) -> Iterator[StreamEvent]:
        content_type = response.headers.get("content-type", "").lower()
        if "text/html" in content_type:
            raise LLMBadRequest("The model endpoint answered with a web page, not a reply; check OPENAI_BASE_URL.")
        if "json" in content_type and "event-stream" not in content_type:  # the server ignored stream: true
            yield from parse_completion(response.content.decode("utf-8", "replace"))
            return
        stats = StreamStats()
        paced = paced_body(response, self.read_interval, self.sleep)
        for event in stream_events(_counted(paced or _arriving(response), progress), stats):
            if paced is not None:
                paced.start_pacing()  # the first event is out: from now on read every interval
            yield event
        if stats.skipped:
            log.warning("model endpoint %s: skipped %d unreadable stream events", self._log_url, stats.skipped)
        self._check_finished(stats)

    def _check_finished(self, stats: StreamStats) -> None:
        """A reply from an endpoint that has sent finish reasons before, ending without one, was cut
        short: llama-cpp-python's server does that (with a clean [DONE]) when a newer request
        interrupts it. Endpoints that never send finish reasons are taken at their word."""
        if stats.finished:
            _ENDPOINTS_THAT_FINISH.add(self._log_url)
        elif stats.replied and self._log_url in _ENDPOINTS_THAT_FINISH:
            raise LLMStreamError(CUT_SHORT)

    def _pause(self, attempt: int, error: LLMUnavailable) -> None:
        """Sleep before the next attempt: the server's Retry-After, else exponential backoff with jitter."""
        if error.retry_after is not None:
            delay = min(error.retry_after, self.backoff_max)
        else:
            delay = min(self.backoff_max, self.backoff_base * 2 ** attempt) * random.uniform(0.5, 1.0)
        log.warning("model endpoint %s: %s Retry %d of %d in %.2f s", self._log_url, error.message,
                    attempt + 1, self.max_retries, delay)
        self.sleep(delay)

    @property
    def _log_url(self) -> str:
        """The URL without its query, which some providers use for keys."""
        return self.endpoint.url.split("?", 1)[0]


def pooled_session() -> requests.Session:
    """Enough kept-alive connections for the file agent's concurrent chunk calls. No cookies: one
    session serves every user's requests to an endpoint (agents/providers.py)."""
    session = requests.Session()
    session.cookies.set_policy(http.cookiejar.DefaultCookiePolicy(allowed_domains=[]))
    adapter = requests.adapters.HTTPAdapter(pool_connections=4, pool_maxsize=CONNECTIONS_PER_HOST)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


def collect(events: Iterable[StreamEvent]) -> Completion:
    """A whole Completion from a stream of events."""
    texts: dict[str, list[str]] = {"content": [], "reasoning": []}
    usage = finish = None
    for event in events:
        if event.kind in texts:
            texts[event.kind].append(event.text)
        elif event.kind == "usage":
            usage = event.usage
        else:
            finish = event.finish_reason
    return Completion("".join(texts["content"]), finish, usage, "".join(texts["reasoning"]))


def _read_capped(response: requests.Response, limit: int) -> bytes:
    """A whole (small) body, or ValueError past `limit` bytes."""
    body = b""
    for part in response.iter_content(16 * 1024):
        body += part
        if len(body) > limit:
            raise ValueError("body too large")
    return body


def _arriving(response: requests.Response) -> Iterator[bytes]:
    """The body as it arrives: each HTTP chunk, or whatever is readable when the server sends no chunking."""
    raw = response.raw
    if getattr(raw, "chunked", True) or not hasattr(raw, "read1"):
        return response.iter_content(chunk_size=None)
    return iter(lambda: raw.read1(64 * 1024, decode_content=True), b"")


def _counted(source: Iterator[bytes], progress: _Progress) -> Iterator[bytes]:
    for chunk in source:
        progress.received += len(chunk)
        yield chunk


def _is_timeout(exc: BaseException) -> bool:
    """True for read timeouts however they are wrapped (requests wraps urllib3's in ConnectionError)."""
    for _ in range(10):
        if exc is None:
            break
        if isinstance(exc, (requests.Timeout, urllib3.exceptions.TimeoutError, TimeoutError)):
            return True
        exc = exc.args[0] if exc.args and isinstance(exc.args[0], BaseException) else exc.__context__
    return False
