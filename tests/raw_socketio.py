"""A bare Socket.IO-over-WebSocket client on a plain socket: what an abusive script does, at the
speed it can do it (python-socketio's client is far too slow to flood with).

    sock = RawSocket.open("127.0.0.1", port, cookie="session=...", source="127.0.0.2")
    sock.flood(HEARTBEAT, seconds=5)

Frames are masked as RFC 6455 asks of clients; the server's frames are read only as far as a
test needs (the handshake, the connect answer, whether the server closed).
"""
from __future__ import annotations

import base64
import os
import socket
import struct
import time

HEARTBEAT = '42["heartbeat"]'
JOIN = '42["join_conversation",{"conversation_id":"not-a-conversation"}]'


class Refused(Exception):
    """The server answered the handshake or the Socket.IO connect with a refusal."""


def frame(text: str) -> bytes:
    """One masked text frame (payloads under 64 KiB)."""
    payload = text.encode()
    mask = os.urandom(4)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    length = bytes([0x80 | len(payload)]) if len(payload) < 126 else b"\xfe" + struct.pack(">H", len(payload))
    return b"\x81" + length + mask + masked


class RawSocket:
    """One WebSocket carrying Engine.IO 4 / Socket.IO 5 packets."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock, self.buffer = sock, b""

    @classmethod
    def open(cls, host: str, port: int, cookie: str | None = None, source: str | None = None,
             timeout: float = 10, connect: bool = True) -> RawSocket:
        """Handshake, then (connect=True) join the default namespace; raises Refused if turned away."""
        sock = socket.create_connection((host, port), timeout=timeout,
                                        source_address=(source, 0) if source else None)
        raw = cls(sock)
        try:
            raw._upgrade(host, port, cookie)
            if raw.read_text()[:1] != "0":
                raise Refused("no Engine.IO open packet")
            if connect:
                raw.send("40")
                raw.await_connect()
        except BaseException:
            sock.close()
            raise
        return raw

    def _upgrade(self, host: str, port: int, cookie: str | None) -> None:
        key = base64.b64encode(os.urandom(16)).decode()
        lines = ["GET /socket.io/?EIO=4&transport=websocket HTTP/1.1", f"Host: {host}:{port}",
                 "Upgrade: websocket", "Connection: Upgrade", f"Sec-WebSocket-Key: {key}",
                 "Sec-WebSocket-Version: 13", *([f"Cookie: {cookie}"] if cookie else [])]
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        while b"\r\n\r\n" not in self.buffer:
            self._fill()
        head, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
        status = head.split(b"\r\n", 1)[0].decode(errors="replace")
        if " 101 " not in status + " ":
            raise Refused(status)

    def await_connect(self) -> None:
        """Skip events the connect handler emitted until the connect answer: 40 (in) or 44 (refused)."""
        while True:
            answer = self.read_text()
            if answer.startswith("40"):
                return
            if answer.startswith("44"):
                raise Refused(answer)

    def _fill(self) -> None:
        data = self.sock.recv(65536)
        if not data:
            raise ConnectionError("closed by the server")
        self.buffer += data

    def _take(self, count: int) -> bytes:
        while len(self.buffer) < count:
            self._fill()
        taken, self.buffer = self.buffer[:count], self.buffer[count:]
        return taken

    def read_text(self) -> str:
        """The next text frame's payload; a close frame raises ConnectionError."""
        while True:
            first, second = self._take(2)
            length = second & 0x7F
            if length == 126:
                (length,) = struct.unpack(">H", self._take(2))
            elif length == 127:
                (length,) = struct.unpack(">Q", self._take(8))
            payload = self._take(length)
            if first & 0x0F == 0x8:
                raise ConnectionError("close frame")
            if first & 0x0F == 0x1:
                return payload.decode()

    def send(self, text: str) -> None:
        self.sock.sendall(frame(text))

    def flood(self, packets: list[str], seconds: float, batch: int = 200) -> int:
        """Send the packets round and round as fast as the socket takes them; the count sent.
        Stops early (ConnectionError) when the server closes the connection."""
        block = b"".join(frame(packets[i % len(packets)]) for i in range(batch))
        sent, deadline = 0, time.monotonic() + seconds
        while time.monotonic() < deadline:
            try:
                self.sock.sendall(block)
            except TimeoutError:
                continue  # the server stopped reading for a while: keep pushing until the deadline
            except OSError as error:
                raise ConnectionError(f"closed after {sent} packets") from error
            sent += batch
        return sent

    def closed_by_server(self, seconds: float = 5) -> bool:
        """Whether the server ends the connection within `seconds` (reading and discarding frames)."""
        self.sock.settimeout(0.5)
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            try:
                self.read_text()
            except TimeoutError:
                continue
            except OSError:  # ConnectionError included: a close frame, a reset, end of stream
                return True
        return False

    def still_open(self) -> bool:
        """Whether the server has not ended the connection (reads whatever is waiting, without blocking)."""
        self.sock.setblocking(False)
        try:
            while self.sock.recv(65536):
                pass
            return False  # end of stream
        except BlockingIOError:
            return True
        except OSError:
            return False

    def close(self) -> None:
        self.sock.close()

