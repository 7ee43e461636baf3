"""Server-side sessions: Redis when REDIS_URL is set, else files in instance/ (cachelib).

A Redis outage must not crash requests: reads and writes that fail mark the request, and
routes that need an identity answer 503 with a clear message until Redis is back.

A session id given up by log-in, registration or log-out is revoked: a tombstone in the same
store, kept as long as a session lives. A request still in flight with the old id (the threaded
server runs many at once) would otherwise write the session back when it ends, so a stolen
cookie would survive log-out and a planted one would follow its victim into the new account.
No revoked id is loaded or saved again.
"""
from __future__ import annotations

import logging

import redis
from cachelib.file import FileSystemCache
from flask import Flask, abort, current_app, g
from flask_session.cachelib import CacheLibSessionInterface
from flask_session.redis import RedisSessionInterface

from .redis_batch import BatchingRedis

log = logging.getLogger("chat.sessions")
UNAVAILABLE = "Sessions are unavailable right now (Redis is not answering). Please retry in a moment."
SESSION_OPTIONS = {"key_prefix": "session:", "permanent": True, "sid_length": 32}
REVOKED_PREFIX = "session-revoked:"
# Writes the session only while its id has no tombstone: one atomic step in Redis.
_SET_UNLESS_REVOKED = """
if redis.call('EXISTS', KEYS[2]) == 1 then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
return 1
"""


class RevokedSessionsMixin:
    """Session ids revoked by `regenerate` are never loaded or written back."""

    def regenerate(self, session) -> None:
        """Tombstone the old id first, then Flask-Session deletes it and picks a new one."""
        if session:
            self._revoke(self._get_store_id(session.sid))
        super().regenerate(session)

    def _lifetime_s(self) -> int:
        return int(current_app.permanent_session_lifetime.total_seconds())


class RevocableFileSessionInterface(RevokedSessionsMixin, CacheLibSessionInterface):
    """File sessions (cachelib): the tombstone is one more cache entry. A write is checked again
    after it lands, so a revocation racing it deletes it whichever finishes first."""

    def _revoke(self, store_id: str) -> None:
        self.cache.set(REVOKED_PREFIX + store_id, 1, timeout=self._lifetime_s())

    def _revoked(self, store_id: str) -> bool:
        return self.cache.has(REVOKED_PREFIX + store_id)

    def _retrieve_session_data(self, store_id: str):
        return None if self._revoked(store_id) else super()._retrieve_session_data(store_id)

    def _upsert_session(self, session_lifetime, session, store_id: str) -> None:
        if self._revoked(store_id):
            return
        super()._upsert_session(session_lifetime, session, store_id)
        if self._revoked(store_id):  # revoked meanwhile: whichever came last, nothing stays
            self._delete_session(store_id)


class ResilientRedisSessionInterface(RevokedSessionsMixin, RedisSessionInterface):
    """Flask-Session's Redis sessions, turning connection errors into a flag instead of a 500."""

    def _revoke(self, store_id: str) -> None:
        """The tombstone and the deletion in one transaction (regenerate deletes it again: harmless)."""
        try:
            with self.client.pipeline(transaction=True) as pipe:
                pipe.set(REVOKED_PREFIX + store_id, 1, ex=self._lifetime_s()).delete(store_id).execute()
        except redis.RedisError as error:
            _mark_unavailable(error)

    def _retrieve_session_data(self, store_id: str):
        try:
            return super()._retrieve_session_data(store_id)
        except redis.RedisError as error:
            _mark_unavailable(error)
            return None

    def _upsert_session(self, session_lifetime, session, store_id: str) -> None:
        try:
            self._set_unless_revoked(keys=[store_id, REVOKED_PREFIX + store_id],
                                     args=[self.serializer.encode(session), int(session_lifetime.total_seconds())])
        except redis.RedisError as error:
            _mark_unavailable(error)

    @property
    def _set_unless_revoked(self):
        if not hasattr(self, "_script"):
            self._script = self.client.register_script(_SET_UNLESS_REVOKED)
        return self._script

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
        client = BatchingRedis.from_url(config.REDIS_URL, socket_connect_timeout=2, socket_timeout=2)
        app.config["SESSION_REDIS"] = client
        app.session_interface = ResilientRedisSessionInterface(app, client=client, **SESSION_OPTIONS)
    else:
        cache = FileSystemCache(str(config.INSTANCE_PATH / "sessions"), threshold=100_000, mode=0o600)
        app.session_interface = RevocableFileSessionInterface(app, client=cache, **SESSION_OPTIONS)


def require_available_sessions(new_identity: bool) -> None:
    """Abort with 503 when the session store cannot keep who this browser is."""
    interface = _interface()
    if g.get("session_unavailable") or (new_identity and interface is not None and not interface.available()):
        abort(503, UNAVAILABLE)


def _interface() -> ResilientRedisSessionInterface | None:
    interface = current_app.session_interface
    return interface if isinstance(interface, ResilientRedisSessionInterface) else None
