"""Socket abuse guard (docs/ARCHITECTURE.md decision 10): an event rate limit per connection, a connection cap
per address and per instance, and no transport kept for a socket that can never be served.

It wraps the handlers of the Engine.IO server under Socket.IO, the earliest point the app sees:
- a handshake without a session cookie, over a cap, from an address cooling down after a flood,
  or (AUTH_REQUIRED) not logged in is answered 401 before Socket.IO knows of it: no transport,
  room or greenlet is ever made for it;
- each Engine.IO message takes a token from its connection's bucket before Socket.IO decodes it
  and starts a task for it, so a dropped event costs a dict lookup and a few float operations.
  The first drop tells the page once (`error`); a connection that keeps flooding has its TCP
  connection cut (socket_transport.py, which also keeps a flooder from hogging the reader) and
  its address waits COOLDOWN_S before it may connect again;
- a socket whose Socket.IO connect was refused is closed, instead of idling until ping timeout.
Counts are per process: one gunicorn worker is one instance (gunicorn.conf.py), and nginx's
limit_conn/limit_req (deploy/nginx.conf) bound an address across instances.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Callable

from flask import Flask, session
from socketio import Server
from werkzeug.http import parse_cookie

import metrics

from . import socket_transport

log = logging.getLogger("chat.socket_guard")
SLOW_DOWN = "Too many events from this page: some were ignored. Slow down."
NO_COOKIE = "Load the page first so the server can recognise this browser."
FLOOD_STRIKES = 2  # consecutive drops, in bursts, after which the connection is closed
YIELD_EVERY = 32  # dropped messages between two yields to the event loop
CLOSE_GRACE_S = 1.0  # a refused socket's time to receive the refusal before it is closed
COOLDOWN_S = 10.0  # an address whose socket was cut for flooding waits this long to connect again


class TokenBucket:
    """`rate` tokens a second, at most `burst` saved up; one token per event."""

    __slots__ = ("burst", "rate", "stamp", "tokens")

    def __init__(self, rate: float, burst: int, now: float) -> None:
        self.rate, self.burst, self.tokens, self.stamp = rate, burst, float(burst), now

    def take(self, now: float) -> bool:
        """Whether an event at `now` is within the rate."""
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        return False


class ConnectionCap:
    """Open connections per address and in all; a limit of 0 is no limit."""

    def __init__(self, per_address: int, total: int) -> None:
        self.per_address, self.limit = per_address, total
        self.counts: dict[str, int] = {}
        self.total = 0

    def acquire(self, address: str) -> str | None:
        """Count one more connection from `address`, or the reason it is refused (nothing counted)."""
        if self.limit and self.total >= self.limit:
            return "instance_cap"
        if self.per_address and self.counts.get(address, 0) >= self.per_address:
            return "address_cap"
        self.counts[address] = self.counts.get(address, 0) + 1
        self.total += 1
        return None

    def release(self, address: str) -> None:
        left = self.counts.get(address, 0) - 1
        if left > 0:
            self.counts[address] = left
        else:
            self.counts.pop(address, None)
        self.total = max(0, self.total - 1)


class _Connection:
    __slots__ = ("address", "bucket", "closing", "strikes")

    def __init__(self, address: str, bucket: TokenBucket | None) -> None:
        self.address, self.bucket, self.strikes, self.closing = address, bucket, 0, False


class SocketGuard:
    """The guard of one Socket.IO server; `install` puts it in front of its Engine.IO handlers."""

    def __init__(self, server: Server, config, cookie_name: str,
                 logged_in: Callable[[dict], bool] | None = None, clock: Callable[[], float] = time.monotonic):
        self.server, self.cookie_name, self.logged_in, self.clock = server, cookie_name, logged_in, clock
        limited = config.RATELIMIT_ENABLED  # false (benchmarks) lifts the rate and the per-address cap
        self.rate, self.burst = (config.SOCKET_EVENTS_PER_S if limited else 0), config.SOCKET_EVENT_BURST
        self.cap = ConnectionCap(config.MAX_SOCKETS_PER_IP if limited else 0, config.MAX_SOCKETS)
        self.trusted_proxies, self.warned_proxy = config.TRUSTED_PROXIES, False
        self.connections: dict[str, _Connection] = {}
        self.dropped = metrics.RATE_LIMITED.labels(scope="socket_events")
        self.ignored = 0
        self.cooling: dict[str, float] = {}  # address -> until when its handshakes are refused
        self.transport = socket_transport.Transport()  # init_app gives the server's own

    def install(self) -> None:
        eio = self.server.eio
        inner = {event: eio.handlers[event] for event in ("connect", "message", "disconnect")}
        eio.on("connect", lambda eio_sid, environ: self.on_connect(eio_sid, environ, inner["connect"]))
        eio.on("message", lambda eio_sid, data: self.on_message(eio_sid, data, inner["message"]))
        eio.on("disconnect", lambda eio_sid, reason=None: self.on_disconnect(eio_sid, reason, inner["disconnect"]))

    # -- connections ----------------------------------------------------------------------------

    def on_connect(self, eio_sid: str, environ: dict, inner: Callable):
        """An Engine.IO handshake: a refusal message (answered 401) or the inner handler's answer."""
        if self.cookie_name not in parse_cookie(environ.get("HTTP_COOKIE", "")):
            return self._refuse("no_cookie", NO_COOKIE)
        address = self._address(environ)
        if self.cooling.get(address, 0.0) > self.clock():
            return self._refuse("cooling_down", "This address sent too many events. Try again in a few seconds.")
        over = self.cap.acquire(address)
        if over:
            metrics.RATE_LIMITED.labels(scope="socket_connections").inc()
            return self._refuse(over, "Too many open connections. Close other tabs or try again later.")
        try:
            self.connections[eio_sid] = _Connection(address, self._bucket())
            if self.logged_in is not None and not self.logged_in(environ):
                self._forget(eio_sid)
                return self._refuse("not_logged_in", "Log in to use this app.")
            answer = inner(eio_sid, environ)
        except BaseException:
            self._forget(eio_sid)
            raise
        if answer is not None and answer is not True:  # refused inside: Engine.IO sends no disconnect
            self._forget(eio_sid)
        return answer

    def _address(self, environ: dict) -> str:
        """The client's address (ProxyFix has applied TRUSTED_PROXIES); warns once if a proxy
        seems to be in front while TRUSTED_PROXIES=0, since its address would then be everyone's."""
        if not self.warned_proxy and not self.trusted_proxies and "HTTP_X_FORWARDED_FOR" in environ:
            self.warned_proxy = True
            log.warning("Sockets arrive with X-Forwarded-For but TRUSTED_PROXIES=0: MAX_SOCKETS_PER_IP counts "
                        "the proxy's address for every client. Set TRUSTED_PROXIES=1 behind nginx.")
        return environ.get("REMOTE_ADDR") or "unknown"

    def _bucket(self) -> TokenBucket | None:
        return TokenBucket(self.rate, self.burst, self.clock()) if self.rate else None

    @staticmethod
    def _refuse(reason: str, message: str) -> str:
        metrics.SOCKETS_REFUSED.labels(reason=reason).inc()
        return message

    def on_disconnect(self, eio_sid: str, reason, inner: Callable) -> None:
        try:
            inner(eio_sid, reason)
        finally:
            self._forget(eio_sid)

    def _forget(self, eio_sid: str) -> None:
        connection = self.connections.pop(eio_sid, None)
        if connection is not None:
            self.cap.release(connection.address)

    # -- events ---------------------------------------------------------------------------------

    def on_message(self, eio_sid: str, data, inner: Callable) -> None:
        """Drop what is over the rate before Socket.IO decodes it; close a connection Socket.IO refused."""
        connection = self.connections.get(eio_sid)
        if connection is None:  # closed (or never admitted): what is still buffered is not read
            self._yield_now_and_then()
            return
        if not self._allowed(eio_sid, connection):
            return
        inner(eio_sid, data)
        if isinstance(data, str) and data[:1] == "0" and not self._joined(eio_sid, data):
            self._end(eio_sid)  # the connect handler refused: no transport kept open for nothing

    def _allowed(self, eio_sid: str, connection: _Connection) -> bool:
        if connection.bucket is None or connection.bucket.take(self.clock()):
            connection.strikes = 0
            return True
        self.dropped.inc()
        connection.strikes += 1
        if connection.strikes == 1:
            self._tell(eio_sid)
        elif connection.strikes >= FLOOD_STRIKES * self.burst and not connection.closing:
            connection.closing = True
            metrics.SOCKETS_REFUSED.labels(reason="flooding").inc()
            log.warning("Socket closed for flooding events (over %s/s)", self.rate)
            self._cool_down(connection.address)
            self._cut(eio_sid)
        self._yield_now_and_then()
        return False

    def _yield_now_and_then(self) -> None:
        """Under eventlet a flooding socket's reader never waits for data: let the others run now
        and then. Not at every drop: under gevent another greenlet parses the frames, and a
        yield per drop would let it parse a hundred more each time."""
        self.ignored += 1
        if self.ignored % YIELD_EVERY == 0:
            self.server.sleep(0)

    def _tell(self, eio_sid: str) -> None:
        sid = self.server.manager.sid_from_eio_sid(eio_sid, "/")
        if sid is not None:
            self.server.emit("error", {"message": SLOW_DOWN}, to=sid, ignore_queue=True)

    def _joined(self, eio_sid: str, data: str) -> bool:
        namespace = self.server.packet_class(encoded_packet=data).namespace or "/"
        return self.server.manager.sid_from_eio_sid(eio_sid, namespace) is not None

    def _cool_down(self, address: str) -> None:
        """Reconnecting must not buy a flooder a fresh burst every few milliseconds."""
        now = self.clock()
        if len(self.cooling) > 10_000:
            self.cooling = {a: until for a, until in self.cooling.items() if until > now}
        self.cooling[address] = now + COOLDOWN_S

    def _cut(self, eio_sid: str) -> None:
        """A flooder: cut its TCP connection at once (Engine.IO then ends the session itself)."""
        if not self.transport.abort(eio_sid):
            self._close_session(eio_sid)  # polling: no connection of its own to cut

    def _end(self, eio_sid: str) -> None:
        """A refused socket: close politely (the refusal goes out first), then cut what is left."""
        def end() -> None:
            self.server.sleep(CLOSE_GRACE_S)  # a polling client fetches the refusal meanwhile
            self._close_session(eio_sid)
            self.transport.abort(eio_sid)  # simple-websocket may miss a close while it reads
        self.server.start_background_task(end)

    def _close_session(self, eio_sid: str) -> None:
        """Engine.IO's disconnect() would wait for the client to read the close: it may never."""
        socket = self.server.eio.sockets.get(eio_sid)
        if socket is not None:
            socket.close(wait=False)
            # Forgotten at once: a closed socket still listed makes Engine.IO's POST path raise
            # KeyError (a 500); unlisted, the client's next request is a plain 400 "Invalid session".
            self.server.eio.sockets.pop(eio_sid, None)


def init_app(app: Flask, server: Server) -> SocketGuard:
    """Put the guard in front of this app's Socket.IO server."""
    config = app.config["CHAT"]
    guard = SocketGuard(server, config, app.config.get("SESSION_COOKIE_NAME", "session"),
                        logged_in=_logged_in(app) if config.AUTH_REQUIRED else None)
    guard.transport = socket_transport.install(server.eio)
    guard.install()
    app.extensions["chat_socket_guard"] = guard
    return guard


def _logged_in(app: Flask) -> Callable[[dict], bool]:
    """Reads the handshake's server-side session (one store read, after the cheap checks)."""
    def check(environ: dict) -> bool:
        with app.request_context(environ):
            return "username" in session
    return check
