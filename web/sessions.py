"""Server-side sessions: Redis when REDIS_URL is set, else files in instance/ (cachelib).

A Redis outage must not crash requests: reads and writes that fail mark the request, and
routes that need an identity answer 503 with a clear message until Redis is back.
"""
from __future__ import annotations

import logging

import redis
from cachelib.file import FileSystemCache
from flask import Flask, abort, g
from flask_session.cachelib import CacheLibSessionInterface
from flask_session.redis import RedisSessionInterface

log = logging.getLogger("chat.sessions")
UNAVAILABLE = "Sessions are unavailable right now (Redis is not answering). Please retry in a moment."
SESSION_OPTIONS = {"key_prefix": "session:", "permanent": True, "sid_length": 32}


class ResilientRedisSessionInterface(RedisSessionInterface):
    """Flask-Session's Redis sessions, turning connection errors into a flag instead of a 500."""

    def _retrieve_session_data(self, store_id: str):
        try:
            return super()._retrieve_session_data(store_id)
        except redis.RedisError as error:
            _mark_unavailable(error)
            return None

    def _upsert_session(self, *args, **kwargs) -> None:
        try:
            super()._upsert_session(*args, **kwargs)
        except redis.RedisError as error:
            _mark_unavailable(error)

    def _delete_session(self, store_id: str) -> None:
        try:
            super()._delete_session(store_id)
        except redis.RedisError as error:
            _mark_unavailable(error)

    def available(self) -> bool:
        try:
            return bool(self.client.ping())
        except redis.RedisError as error:
            _mark_unavailable(error)
            return False


def _mark_unavailable(error: Exception) -> None:
    log.warning("Session store unavailable: %s", type(error).__name__)
    g.session_unavailable = True


def init_app(app: Flask, config) -> None:
    app.config.update(SESSION_PERMANENT=True, PERMANENT_SESSION_LIFETIME=30 * 86400)
    if config.REDIS_URL:
        client = redis.from_url(config.REDIS_URL, socket_connect_timeout=2, socket_timeout=2)
        app.config["SESSION_REDIS"] = client
        app.session_interface = ResilientRedisSessionInterface(app, client=client, **SESSION_OPTIONS)
    else:
        cache = FileSystemCache(str(config.INSTANCE_PATH / "sessions"), threshold=100_000, mode=0o600)
        app.session_interface = CacheLibSessionInterface(app, client=cache, **SESSION_OPTIONS)


def require_available_sessions(new_identity: bool) -> None:
    """Abort with 503 when the session store cannot keep who this browser is."""
    interface = _interface()
    if g.get("session_unavailable") or (new_identity and interface is not None and not interface.available()):
        abort(503, UNAVAILABLE)


def _interface() -> ResilientRedisSessionInterface | None:
    from flask import current_app
    interface = current_app.session_interface
    return interface if isinstance(interface, ResilientRedisSessionInterface) else None
