"""Growing delays after failed log-ins, per username and per client address.

After FREE_FAILURES failures in a row, each further attempt must wait 2, 4, 8 ... seconds (at most
MAX_DELAY_S) from the last failure; a success clears the username's count. Counts live in Redis
when the app has it (shared by every worker), else in this process. Not a rate limit on requests
(Flask-Limiter does those): a penalty that grows with each wrong password.
"""
from __future__ import annotations

import threading
import time

import redis

FREE_FAILURES = 3
MAX_DELAY_S = 300
FORGET_AFTER_S = 3600


def delay_for(failures: int) -> float:
    """Seconds to wait after the last failure before the next try is heard."""
    if failures < FREE_FAILURES:
        return 0.0
    return float(min(MAX_DELAY_S, 2 ** (failures - FREE_FAILURES + 1)))


class LoginThrottle:
    def __init__(self, redis_client=None, clock=time.time) -> None:
        self._redis, self._clock = redis_client, clock
        self._memory: dict[str, tuple[int, float]] = {}
        self._lock = threading.Lock()

    def wait_seconds(self, *keys: str) -> float:
        """How long these keys (username, address) must still wait; 0 when a try is allowed now."""
        now = self._clock()
        waits = [delay_for(failures) - (now - last) for failures, last in map(self._get, keys)]
        return max([0.0, *waits])

    def failed(self, *keys: str) -> None:
        for key in keys:
            failures, _ = self._get(key)
            self._set(key, failures + 1, self._clock())

    def succeeded(self, key: str) -> None:
        self._set(key, 0, 0.0)

    def _get(self, key: str) -> tuple[int, float]:
        if self._redis is not None:
            try:
                raw = self._redis.get("login_failures:" + key)
                if raw:
                    failures, last = raw.decode().split(":")
                    return int(failures), float(last)
                return 0, 0.0
            except redis.RedisError:
                pass  # fall back to this process's memory while Redis is away
        with self._lock:
            return self._memory.get(key, (0, 0.0))

    def _set(self, key: str, failures: int, last: float) -> None:
        if self._redis is not None:
            try:
                self._redis.set("login_failures:" + key, f"{failures}:{last}", ex=FORGET_AFTER_S)
                return
            except redis.RedisError:
                pass
        with self._lock:
            if len(self._memory) > 100_000:  # bounded: the oldest half goes
                for stale in list(self._memory)[:50_000]:
                    del self._memory[stale]
            self._memory[key] = (failures, last)
