"""Circuit breakers whose state is shared through Redis without making every request wait on it.

pybreaker's CircuitRedisStorage reads the state from Redis on every call, inside the breaker's
process-wide lock, and writes the failure counter back to zero after every success. Under
eventlet a green thread holding that lock across a Redis round trip makes the others queue, and
a queued lock is handed on once per turn of the event loop: with 1,000 chats on two instances the
start of each reply waited behind it for up to 20 s, growing with every chat, far past what the
CPU explained. Here the breaker takes no lock (SharedBreaker), and the state and failure
counter are kept for STATE_TTL_S; a success writes the counter only when this process last saw failures, and
failures and state changes are written at once, as before. Another instance opening the circuit
is seen here within STATE_TTL_S.
"""
from __future__ import annotations

import time
from collections.abc import Callable

import pybreaker

STATE_TTL_S = 1.0


class CachedRedisStorage(pybreaker.CircuitRedisStorage):
    """pybreaker's Redis storage with the hot path (state read, counter reset) served from memory."""

    def __init__(self, state: str, redis_object, namespace: str | None = None, ttl_s: float = STATE_TTL_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(state, redis_object, namespace=namespace)
        self.ttl_s, self.clock = ttl_s, clock
        self._seen: tuple[float, str, int] | None = None  # (read at, state, failure counter)
        self._refreshing = False

    @property
    def state(self) -> str:
        """The cached state, read anew from Redis (with the failure counter) when older than ttl_s."""
        seen = self._seen
        if seen is not None and (self._refreshing or self.clock() - seen[0] < self.ttl_s):
            return seen[1]  # fresh, or another green thread is reading it now: no herd at each expiry
        self._refreshing = True
        try:
            now = self.clock()  # (the parent's getters fall back on their own when Redis is down)
            self._seen = (now, pybreaker.CircuitRedisStorage.state.fget(self), super().counter)
        finally:
            self._refreshing = False
        return self._seen[1]

    @state.setter
    def state(self, state: str) -> None:
        pybreaker.CircuitRedisStorage.state.fset(self, state)
        self._seen = None

    def reset_counter(self) -> None:
        """After a success: a write only when failures were counted when this process last looked
        (at the request's start, at most ttl_s before; a reply can stream for longer than that)."""
        seen = self._seen
        if seen is not None and seen[2] == 0:
            return
        super().reset_counter()
        if seen is not None:
            self._seen = (seen[0], seen[1], 0)

    def increment_counter(self) -> None:
        super().increment_counter()
        self._seen = None  # the next state read also reads the counter anew


class _NoLock:
    """A lock that never waits: see SharedBreaker."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc) -> None:
        return None


class SharedBreaker(pybreaker.CircuitBreaker):
    """pybreaker's breaker without its process-wide lock when its state lives in Redis.

    The lock cannot keep a state that several processes change consistent anyway (every write is
    idempotent: two requests opening the circuit at once open it once), and held across Redis
    round trips it made every request queue behind it (see the module's doc). With memory storage
    (no Redis) nothing blocks under the lock, so it stays.
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if isinstance(self._state_storage, CachedRedisStorage):
            self._lock = _NoLock()
