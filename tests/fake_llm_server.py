"""The HTTP side of FakeLLM: a threaded server and a handler that writes chunked SSE like OpenAI's.

Reads its settings and faults from the FakeLLM it serves (`server.fake`); see fake_llm.py.
"""
from __future__ import annotations

import json
import re
import socket
import socketserver
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class FakeServer(ThreadingHTTPServer):
    """Tracks open connections so stop() can close them instead of waiting for them."""

    daemon_threads = True
    block_on_close = False
    request_queue_size = 1024  # benchmarks open many connections at once
    fake = None  # the FakeLLM served; set by FakeLLM.start()

    def __init__(self, *args) -> None:
        self.open_connections: set[socket.socket] = set()
        super().__init__(*args)

    def server_bind(self) -> None:
        """Bind without HTTPServer's reverse DNS lookup of the host, which can be slow."""
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = self.server_address[:2]

    def process_request(self, request, client_address) -> None:
        self.open_connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request) -> None:
        self.open_connections.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        for connection in list(self.open_connections):
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def handle_error(self, request, client_address) -> None:
        """Clients that hang up are expected here; stay quiet."""


class FakeHandler(BaseHTTPRequestHandler):
    """One connection: GET /v1/models, POST .../chat/completions as JSON or SSE, faults applied."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # as real servers do; else each small write waits on a delayed ACK
    timeout = 10
    server: FakeServer

    def log_message(self, *args) -> None:
        """Quiet: tests read `fake.requests` instead."""

    @property
    def fake(self):
        return self.server.fake

    def do_GET(self) -> None:
        self._record(None)
        if self.path.split("?")[0].rstrip("/").endswith("/models"):
            names = [self.fake.model] + self.fake.models
            self._json(200, {"object": "list", "data": [{"id": name, "object": "model", "owned_by": "fake"}
                                                        for name in names]})
        else:
            self._json(404, {"error": {"message": f"Unknown path {self.path}", "type": "not_found"}})

    def do_POST(self) -> None:
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        try:
            body = json.loads(raw)
        except ValueError:
            body = None
        self._record(body)
        if not self.path.split("?")[0].endswith("/chat/completions"):
            return self._json(404, {"error": {"message": f"Unknown path {self.path}", "type": "not_found"}})
        if not isinstance(body, dict):
            return self._json(400, {"error": {"message": "Body is not JSON", "type": "invalid_request_error"}})
        fault = self.fake.take_fault()
        if fault and self._early_fault(fault):
            return
        if self.fake.over_window(body):
            return self._over_window(body)
        if body.get("stream") and not self.fake.ignore_stream:
            return self._stream(body, fault)
        pieces, finish = self.fake.pieces(_max_tokens(body), body)
        self._json(200, _completion(self.fake, "".join(pieces), finish, body, len(pieces)))

    def _record(self, body) -> None:
        headers = {name.lower(): value for name, value in self.headers.items()}
        self.fake.record(self.command, self.path, headers, body)

    def _early_fault(self, fault) -> bool:
        """Faults that happen before any body is sent; True when the request is answered."""
        if fault.kind == "http":
            self._json(fault.status, fault.body, fault.headers)
        elif fault.kind == "html":
            self._send(fault.status, b"<!DOCTYPE html><html><body>Welcome</body></html>", "text/html")
        elif fault.kind == "reset":
            self.close_connection = True
        elif fault.kind == "hang" and fault.after is None:
            self.fake.stopping.wait(fault.seconds)
            self.close_connection = True
        else:
            return False
        return True

    def _over_window(self, body: dict) -> None:
        """llama-cpp-python's answers to a prompt that does not fit: 400 unstreamed, 200 and nothing streamed."""
        if body.get("stream") and not self.fake.ignore_stream:
            return self._stream(body, _EMPTY)
        asked, limit = prompt_tokens(body, self.fake.token_ratio), self.fake.n_ctx
        message = (f"This model's maximum context length is {limit} tokens. However, you requested "
                   f"{asked + (_max_tokens(body) or 0)} tokens ({asked} in the messages, {_max_tokens(body)} in "
                   "the completion). Please reduce the length of the messages or completion.")
        self._json(400, {"error": {"message": message, "type": "invalid_request_error", "param": "messages",
                                   "code": "context_length_exceeded"}})

    def _json(self, status: int, payload: dict, headers: dict | None = None) -> None:
        self._send(status, json.dumps(payload).encode(), "application/json", headers)

    def _send(self, status: int, data: bytes, content_type: str, headers: dict | None = None) -> None:
        self.send_response(status)
        for name, value in {"Content-Type": content_type, "Content-Length": str(len(data)),
                            **(headers or {})}.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def _stream(self, body: dict, fault) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream; charset=utf-8")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding" if self.fake.chunked else "Connection",
                         "chunked" if self.fake.chunked else "close")
        self.end_headers()
        self.close_connection = not self.fake.chunked
        try:
            if self._send_events(body, fault) and self.fake.chunked:
                self.wfile.write(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            self.fake.client_left()
            self.close_connection = True

    def _send_events(self, body: dict, fault) -> bool:
        """Write the stream; False when a fault cut it short (no terminating chunk then)."""
        fake, sent = self.fake, 0
        if fault and fault.kind in ("garbage_only", "empty"):
            return self._write_all([line if fault.kind == "empty" else f"data: {line}" for line in fault.lines])
        if fake.keepalive:
            self._write_all([": OPENROUTER PROCESSING"])
        fake.stopping.wait(fake.first_token_delay)
        for event, is_token in _events(fake, body):
            if fault and fault.after == sent:
                if fault.kind != "garbage":
                    return self._cut(fault)
                self._write_all([f"data: {line}" for line in fault.lines])
                fault = None
            self._write_all([event])
            if is_token:
                sent += 1
                fake.stopping.wait(fake.token_delay)
        return True

    def _cut(self, fault) -> bool:
        """End the stream early, as the fault says: an error event, a stall, or just a dropped connection;
        True when it ends cleanly (vLLM's flat error is followed by [DONE] and the last chunk)."""
        if fault.kind == "flat_error":
            return self._write_all([f"data: {json.dumps(fault.body)}", "data: [DONE]"])
        if fault.kind == "interrupted":
            return self._write_all(["data: [DONE]"])
        if fault.kind == "error_chunk":
            self._write_all([f"data: {json.dumps(fault.body)}"])
        elif fault.kind == "hang":
            self.fake.stopping.wait(fault.seconds)
        self.close_connection = True
        return False

    def _write_all(self, events: list[str]) -> bool:
        if not events:
            return True
        newline = "\r\n" if self.fake.crlf else "\n"
        data = "".join(event + newline * 2 for event in events).encode()
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data) if self.fake.chunked else data)
        self.wfile.flush()
        return True


class _Empty:
    """The fault-like marker for an over-window streaming request: no events, a clean end."""

    kind, lines, after = "empty", (), None


_EMPTY = _Empty()


def prompt_tokens(body: dict, token_ratio: float | None = None) -> int:
    """The prompt's size as a real server would report it: counted as words (good enough for a
    fake), or with `token_ratio` as the app's own tiktoken count times that (another tokenizer)."""
    if token_ratio is not None:
        import utils  # the app's tokenizer, only for this knob
        texts = [{**m, "content": _text_of(m.get("content"))} for m in body.get("messages", [])]
        return round(utils.request_tokens(texts) * token_ratio)
    return sum(len(str(message.get("content", "")).split()) + 4 for message in body.get("messages", []))


def _text_of(content) -> str:
    """A message's text; of content parts (text and image_url), the text parts."""
    if isinstance(content, list):
        return " ".join(part.get("text", "") for part in content if isinstance(part, dict))
    return str(content or "")


def _max_tokens(body: dict) -> int | None:
    return body.get("max_tokens") or body.get("max_completion_tokens")


def _events(fake, body: dict):
    """(SSE event line, is it a token) in the order OpenAI sends them."""
    pieces, finish = fake.pieces(_max_tokens(body), body)
    reasoning = re.findall(r"\s*\S+", fake.reasoning or "")
    with_usage = bool((body.get("stream_options") or {}).get("include_usage")) and fake.send_usage
    chunk = _chunker(fake, with_usage)
    yield chunk({"role": "assistant", "content": ""}), False
    for piece in reasoning:
        yield chunk({fake.reasoning_field: piece}), True
    for piece in pieces:
        yield chunk({"content": piece}), True
    yield chunk({}, finish), False
    if with_usage:
        usage = _usage(body, len(pieces) + len(reasoning), fake.token_ratio)
        yield "data: " + json.dumps({**_envelope(fake), "choices": [], "usage": usage}), False
    if fake.send_done:
        yield "data: [DONE]", False


def _chunker(fake, with_usage: bool):
    def chunk(delta: dict, finish: str | None = None) -> str:
        payload = {**_envelope(fake), "choices": [{"index": 0, "delta": delta, "logprobs": None,
                                                   "finish_reason": finish}]}
        return "data: " + json.dumps({**payload, "usage": None} if with_usage else payload)
    return chunk


def _envelope(fake) -> dict:
    return {"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": int(time.time()),
            "model": fake.model, "system_fingerprint": "fp_fake"}


def _usage(body: dict, completion_tokens: int, token_ratio: float | None = None) -> dict:
    """Counts a real server would report (see prompt_tokens)."""
    prompt = prompt_tokens(body, token_ratio)
    return {"prompt_tokens": prompt, "completion_tokens": completion_tokens,
            "total_tokens": prompt + completion_tokens}


def _completion(fake, text: str, finish: str, body: dict, tokens: int) -> dict:
    message = {"role": "assistant", "content": text}
    if fake.reasoning:
        message[fake.reasoning_field] = fake.reasoning
    return {"id": "chatcmpl-fake", "object": "chat.completion", "created": int(time.time()), "model": fake.model,
            "choices": [{"index": 0, "message": message, "finish_reason": finish, "logprobs": None}],
            "usage": _usage(body, tokens, fake.token_ratio)}
