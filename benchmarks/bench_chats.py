"""The simulated chats of load_bench.py: each loads the page (its session cookie), connects a
socket, sends one message and records the reply's chunks as they arrive.

- `SocketioChat` (`--client socketio`, the default): python-socketio's AsyncClient, what the
  figures of earlier runs used.
- `LeanChat` (`--client lean`): Engine.IO 4 / Socket.IO 5 spoken over aiohttp's WebSocket. The
  load generator shares the machine's cores with what it measures: with python-socketio it used
  a quarter of a core for 1,000 chats and its own event loop lagged up to ~200 ms at p99, time it
  added to every figure it took. This one does only what a chat needs (the handshake, pongs, one
  acknowledged `send_message`, the reply's events), so the figures carry less of the measurer.
"""
from __future__ import annotations

import asyncio
import time

import aiohttp
import orjson
import socketio

MESSAGE = {"message": "Tell me a story"}


class Refused(Exception):
    """The server did not open the Engine.IO session or connect the namespace."""


class ChatRecord:
    """What one chat saw: when it sent, was acknowledged, got its first and last chunk, the gaps,
    the text and how it ended; `ok` is the verdict (finished with every word)."""

    def __init__(self, base: str, expected_words: int) -> None:
        self.base, self.expected_words = base, expected_words
        self.sent_at = self.acked_at = self.first_at = self.last_at = None
        self.gaps: list[float] = []
        self.text: list[str] = []
        self.finish: str | None = None
        self.error: str | None = None
        self.done = asyncio.Event()

    async def load_page(self, http: aiohttp.ClientSession) -> None:
        async with http.get(self.base + "/") as response:
            await response.read()

    def chunk(self, data) -> None:
        now = time.monotonic()
        if self.first_at is None:
            self.first_at = now
        else:
            self.gaps.append(now - self.last_at)
        self.last_at = now
        self.text.append(data["chunk"])

    def ended(self, data) -> None:
        self.finish = data.get("finish_reason")
        self.done.set()

    def failed(self, data) -> None:
        self.error = (data or {}).get("message", "error")
        self.done.set()

    async def run(self, delay: float, timeout: float) -> None:
        """Wait `delay`, send the message, then wait for the reply's end (a failure is recorded)."""
        await asyncio.sleep(delay)
        self.sent_at = time.monotonic()
        try:
            ack = await self.send(timeout)
            self.acked_at = time.monotonic()
            if not ack.get("ok"):
                self.error = ack.get("message")
                return
            await asyncio.wait_for(self.done.wait(), timeout)
        except (TimeoutError, socketio.exceptions.TimeoutError):
            self.error = "timeout"
        except Exception as error:  # noqa: BLE001 - a dropped connection counts as a failed chat
            self.error = type(error).__name__

    async def send(self, timeout: float) -> dict:
        raise NotImplementedError

    @property
    def ok(self) -> bool:
        return self.error is None and self.finish == "stop" and len("".join(self.text).split()) == self.expected_words


class SocketioChat(ChatRecord):
    def __init__(self, base: str, expected_words: int) -> None:
        super().__init__(base, expected_words)
        self.client = socketio.AsyncClient(reconnection=False)
        self.client.on("response_chunk", self._async(self.chunk))
        self.client.on("response_done", self._async(self.ended))
        self.client.on("error", self._async(self.failed))

    @staticmethod
    def _async(handler):
        async def handle(data=None) -> None:
            handler(data)
        return handle

    async def connect(self, http: aiohttp.ClientSession) -> None:
        await self.load_page(http)
        cookie = "; ".join(f"{c.key}={c.value}" for c in http.cookie_jar)
        await self.client.connect(self.base, headers={"Cookie": cookie}, transports=["websocket"], wait_timeout=30)

    async def send(self, timeout: float) -> dict:
        return await self.client.call("send_message", MESSAGE, timeout=timeout)

    @property
    def connected(self) -> bool:
        return self.client.connected

    async def disconnect(self) -> None:
        await self.client.disconnect()


class LeanChat(ChatRecord):
    def __init__(self, base: str, expected_words: int) -> None:
        super().__init__(base, expected_words)
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self._ack: asyncio.Future | None = None
        self._reading: asyncio.Task | None = None

    async def connect(self, http: aiohttp.ClientSession) -> None:
        """Open the socket (cookies from the page load) and connect the default namespace."""
        await self.load_page(http)
        self.ws = await http.ws_connect(self.base.replace("http", "ws", 1) + "/socket.io/?EIO=4&transport=websocket",
                                        timeout=aiohttp.ClientWSTimeout(ws_close=5), autoping=True)
        if not (await self.ws.receive_str(timeout=30)).startswith("0"):
            raise Refused("no Engine.IO open packet")
        await self.ws.send_str("40")
        while not (answer := await self.ws.receive_str(timeout=30)).startswith("40"):
            if answer == "2":
                await self.ws.send_str("3")
            elif answer.startswith("44"):
                raise Refused(answer[:200])  # else an event sent as it connected (the server's greeting)
        self._reading = asyncio.create_task(self._read())

    async def _read(self) -> None:
        handlers = {"response_chunk": self.chunk, "response_done": self.ended, "error": self.failed}
        async for message in self.ws:
            packet = message.data if message.type == aiohttp.WSMsgType.TEXT else ""
            if packet == "2":
                await self.ws.send_str("3")
            elif packet.startswith("42"):
                name, *data = orjson.loads(packet[2:])
                if name in handlers:
                    handlers[name](data[0] if data else None)
            elif packet.startswith("431") and self._ack is not None and not self._ack.done():
                self._ack.set_result(orjson.loads(packet[3:])[0])
        if not self.done.is_set():
            self.error = self.error or "ConnectionClosed"
            self.done.set()

    async def send(self, timeout: float) -> dict:
        self._ack = asyncio.get_running_loop().create_future()
        await self.ws.send_str("421" + orjson.dumps(["send_message", MESSAGE]).decode())
        return await asyncio.wait_for(self._ack, timeout)

    @property
    def connected(self) -> bool:
        return self.ws is not None and not self.ws.closed and self._reading is not None

    async def disconnect(self) -> None:
        if self.ws is not None:
            await self.ws.close()
        if self._reading is not None:
            self._reading.cancel()


CLIENTS = {"socketio": SocketioChat, "lean": LeanChat}
