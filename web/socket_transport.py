"""Fair reading of WebSocket frames, so one flooding socket cannot take the whole worker.

Under gevent (and threading), Engine.IO reads WebSockets through simple-websocket, whose reader
greenlet loops `sock.recv(4096)` and parses every frame into an unbounded list. A gevent socket
only yields when no data is waiting, so a client that keeps the socket full keeps that loop
running and every other client of the worker waits: /health/live stalled ~17 s in the issue.
Here each read first lets the other greenlets run: a flooder gets one 4 KiB read per turn of
the event loop like everyone else, and the socket guard behind it sees its events and cuts it.
Eventlet's own WebSocket reads in the request's greenlet, where the guard yields (socket_guard).

Engine.IO has no public hook for its WebSocket class, so this replaces the entry of the
server's private driver table (a copy; the module-level table stays untouched).
"""
from __future__ import annotations

import socket
from collections.abc import Callable

SOCKET_KEYS = ("gunicorn.socket", "werkzeug.socket")


class YieldingSocket:
    """A socket whose every recv first yields to the event loop, and that can be cut."""

    def __init__(self, sock, sleep: Callable[[float], None]) -> None:
        self._sock, self._sleep, self.aborted = sock, sleep, False

    def recv(self, *args):
        self._sleep(0)
        if self.aborted:
            raise OSError("connection cut by the socket guard")
        return self._sock.recv(*args)

    def abort(self) -> None:
        """End the TCP connection now, whatever the WebSocket library is doing with it."""
        self.aborted = True
        try:
            self._sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def __getattr__(self, name: str):
        return getattr(self._sock, name)


class Transport:
    """The open WebSockets of one Engine.IO server, by Engine.IO session id."""

    def __init__(self) -> None:
        self.sockets: dict[str, YieldingSocket] = {}

    def abort(self, eio_sid: str) -> bool:
        """Cut the session's WebSocket; False when it has none here (polling, or already gone)."""
        sock = self.sockets.get(eio_sid)
        if sock is not None:
            sock.abort()
        return sock is not None


def fair_websocket_class(base: type, transport: Transport, sleep: Callable[[float], None]) -> type:
    """`base` (Engine.IO's WebSocket WSGI class) reading through a YieldingSocket."""

    class FairWebSocket(base):
        def __init__(self, handler, server, *args, **kwargs):
            super().__init__(handler, server, *args, **kwargs)
            # Engine.IO passes its Socket's bound handler: that Socket knows the session id.
            self.eio_sid = getattr(getattr(handler, "__self__", None), "sid", None)

        def __call__(self, environ, start_response):
            key = next((key for key in SOCKET_KEYS if environ.get(key) is not None), None)
            if key is None:
                return super().__call__(environ, start_response)
            wrapped = environ[key] = YieldingSocket(environ[key], sleep)
            transport.sockets[self.eio_sid] = wrapped
            try:
                return super().__call__(environ, start_response)
            finally:
                transport.sockets.pop(self.eio_sid, None)

    return FairWebSocket


def install(eio_server) -> Transport:
    """Make this Engine.IO server read WebSockets fairly, and able to cut one."""
    transport = Transport()
    drivers = getattr(eio_server, "_async", None)
    if drivers and drivers.get("websocket") is not None:
        eio_server._async = {**drivers, "websocket": fair_websocket_class(drivers["websocket"], transport,
                                                                          eio_server.sleep)}
    return transport
