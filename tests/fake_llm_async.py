"""The fake model server on asyncio, for load: one process streams to thousands of clients with
the same SSE bytes as tests/fake_llm_server.py (it reuses its event generator), where the
thread-per-connection server would spend the machine's cores on thread switches.

    python tests/fake_llm_async.py '{"tokens": 200, "token_delay": 0.02}'   # prints its port

Serves until its standard input closes. Supports GET .../models and POST .../chat/completions
(streaming and not); no fault injection and no `n_ctx` (that is the threaded server's job).
"""
from __future__ import annotations

import asyncio
import json
import sys

from fake_llm import FakeLLM
from fake_llm_server import _completion, _events, _max_tokens

HEADERS = (b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
           b"Transfer-Encoding: chunked\r\n\r\n")


class AsyncFake:
    def __init__(self, fake: FakeLLM) -> None:
        if fake.n_ctx:  # replies are rendered once per request shape, not per prompt
            raise ValueError("n_ctx is only supported by the threaded fake (tests/fake_llm.py)")
        self.fake = fake
        self._rendered: dict[tuple, list[tuple[bytes, bool]]] = {}

    def events(self, body: dict) -> list[tuple[bytes, bool]]:
        """The stream as chunked-encoding frames, rendered once per distinct request shape."""
        key = (_max_tokens(body), bool((body.get("stream_options") or {}).get("include_usage")))
        if key not in self._rendered:
            frames = []
            for event, is_token in _events(self.fake, body):
                data = (event + "\n\n").encode()
                frames.append((b"%x\r\n%s\r\n" % (len(data), data), is_token))
            self._rendered[key] = frames
        return self._rendered[key]

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                request_line, *header_lines = head.decode("latin-1").split("\r\n")
                method, path = request_line.split(" ")[:2]
                headers = {k.strip().lower(): v.strip() for k, v in
                           (line.split(":", 1) for line in header_lines if ":" in line)}
                raw = await reader.readexactly(int(headers.get("content-length") or 0))
                if method == "GET" and path.split("?")[0].rstrip("/").endswith("/models"):
                    await self._json(writer, {"object": "list", "data": [{"id": self.fake.model, "object": "model"}]})
                elif method == "POST":
                    body = json.loads(raw or b"{}")
                    if body.get("stream"):
                        await self._stream(writer, body)
                    else:
                        pieces, finish = self.fake.pieces(_max_tokens(body), body)
                        await self._json(writer, _completion(self.fake, "".join(pieces), finish, body, len(pieces)))
                else:
                    await self._json(writer, {"error": {"message": "not found"}}, b"404 Not Found")
                if headers.get("connection", "").lower() == "close":
                    break
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
            pass
        finally:
            writer.close()

    async def _json(self, writer, payload: dict, status: bytes = b"200 OK") -> None:
        data = json.dumps(payload).encode()
        writer.write(b"HTTP/1.1 %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
                     % (status, len(data), data))
        await writer.drain()

    async def _stream(self, writer, body: dict) -> None:
        writer.write(HEADERS)
        if self.fake.first_token_delay:
            await asyncio.sleep(self.fake.first_token_delay)
        for frame, is_token in self.events(body):
            writer.write(frame)
            await writer.drain()
            if is_token and self.fake.token_delay:
                await asyncio.sleep(self.fake.token_delay)
        writer.write(b"0\r\n\r\n")
        await writer.drain()


async def serve(settings: dict) -> None:
    fake = AsyncFake(FakeLLM(**settings))
    server = await asyncio.start_server(fake.handle, "127.0.0.1", 0, backlog=4096, limit=1 << 20)
    print(server.sockets[0].getsockname()[1], flush=True)
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, sys.stdin.read)  # until the parent closes our stdin
    server.close()


if __name__ == "__main__":
    asyncio.run(serve(json.loads(sys.argv[1] if len(sys.argv) > 1 else "{}")))
