"""Atomic holds for quotas: hold an amount in several scopes at once and learn, in the same step,
what each scope now holds (this hold included).

Redis keeps the holds when REDIS_URL is set (a Lua script: one atomic step shared by every worker
and instance); otherwise this process keeps them under a lock (the app without Redis runs as one
process). Every hold expires, so a process that dies mid-job cannot leak one.
"""
from __future__ import annotations

import math
import threading
import time
import uuid
from dataclasses import dataclass

KEY_PREFIX = "chat-quota:"
# KEYS: one sorted set per scope, members "<id>:<amount>" scored by their expiry time.
# ARGV: now, expires_at, member, ttl seconds. Returns the amount held in each scope.
HOLD_SCRIPT = """
local held = {}
for i, key in ipairs(KEYS) do
  redis.call('ZREMRANGEBYSCORE', key, '-inf', ARGV[1])
  redis.call('ZADD', key, ARGV[2], ARGV[3])
  if redis.call('TTL', key) < tonumber(ARGV[4]) then redis.call('EXPIRE', key, ARGV[4]) end
  local total = 0
  for _, member in ipairs(redis.call('ZRANGE', key, 0, -1)) do
    total = total + tonumber(string.match(member, ':(%d+)$'))
  end
  held[i] = total
end
return held
"""


@dataclass(frozen=True)
class Hold:
    """One reservation: the scopes it counts in and its member name there."""

    scopes: tuple[str, ...]
    member: str


def _member(amount: int) -> str:
    return f"{uuid.uuid4().hex}:{max(0, int(amount))}"


class MemoryLedger:
    """This process's holds, for the app without Redis."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._scopes: dict[str, dict[str, tuple[int, float]]] = {}

    def hold(self, scopes: list[str], amount: int, ttl_s: float) -> tuple[Hold, list[int]]:
        """Add the hold to every scope; the totals each scope holds now, this hold included."""
        member, now = _member(amount), time.time()
        totals = []
        with self._lock:
            for scope in scopes:
                held = self._scopes.setdefault(scope, {})
                for expired in [key for key, (_, until) in held.items() if until <= now]:
                    del held[expired]
                held[member] = (max(0, int(amount)), now + ttl_s)
                totals.append(sum(size for size, _ in held.values()))
        return Hold(tuple(scopes), member), totals

    def release(self, hold: Hold) -> None:
        with self._lock:
            for scope in hold.scopes:
                self._scopes.get(scope, {}).pop(hold.member, None)


class RedisLedger:
    """Holds in Redis sorted sets, shared by every worker and instance."""

    def __init__(self, client) -> None:
        self.client = client
        self._script = client.register_script(HOLD_SCRIPT)

    def hold(self, scopes: list[str], amount: int, ttl_s: float) -> tuple[Hold, list[int]]:
        """Add the hold to every scope; the totals each scope holds now, this hold included."""
        member, now = _member(amount), time.time()
        totals = self._script(keys=[KEY_PREFIX + scope for scope in scopes],
                              args=[now, now + ttl_s, member, math.ceil(ttl_s)])
        return Hold(tuple(scopes), member), [int(total) for total in totals]

    def release(self, hold: Hold) -> None:
        pipe = self.client.pipeline()
        for scope in hold.scopes:
            pipe.zrem(KEY_PREFIX + scope, hold.member)
        pipe.execute()
