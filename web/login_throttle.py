"""Growing delays after failed log-ins, reserved atomically before the password is checked.

Three counters per attempt: the (username, address) pair, the address, and the username. After a
counter's free failures, each further attempt must wait 2, 4, 8 ... seconds (at most MAX_DELAY_S)
from its last failure. The username's counter has a much higher allowance and only slows
addresses that have failed themselves, so nobody can lock the owner out by failing on purpose.

`reserve` checks every counter and counts the attempt as a failure in one atomic step (a Lua
script in Redis, a lock in this process without it): of N parallel guesses only the free ones
are checked. `succeeded` gives the reservation back. Not a rate limit on requests (Flask-Limiter
does those): a penalty that grows with each wrong password.
"""
from __future__ import annotations

import threading
import time

import redis

FREE_FAILURES = 3  # per (username, address) pair
FREE_PER_ADDRESS = 10  # every username tried from one address
FREE_PER_USERNAME = 50  # every address trying one username; slows only addresses that failed
MAX_DELAY_S = 300
FORGET_AFTER_S = 3600
PREFIX = "login_failures:"

# KEYS: pair, address, username. ARGV: now, ttl, max delay, then each key's free failures.
# Returns the seconds still to wait (a string: Lua numbers become integers), "0" once reserved.
_RESERVE = """
local now, ttl, cap = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local wait, failed = 0, 0
for i, key in ipairs(KEYS) do
  local row = redis.call('HMGET', key, 'f', 't')
  local f, t, free = tonumber(row[1]) or 0, tonumber(row[2]) or 0, tonumber(ARGV[3 + i])
  if i < #KEYS then failed = failed + f end
  if f >= free and (i < #KEYS or failed > 0) then
    wait = math.max(wait, math.min(cap, 2 ^ (f - free + 1)) - (now - t))
  end
end
if wait > 0 then return tostring(wait) end
for _, key in ipairs(KEYS) do
  redis.call('HINCRBY', key, 'f', 1)
  redis.call('HSET', key, 't', ARGV[1])
  redis.call('EXPIRE', key, ttl)
end
return '0'
"""
# KEYS: pair, address, username. The pair is forgotten; the others lose the reserved failure.
_SUCCEEDED = """
redis.call('DEL', KEYS[1])
for i = 2, #KEYS do
  if (tonumber(redis.call('HGET', KEYS[i], 'f')) or 0) > 0 then redis.call('HINCRBY', KEYS[i], 'f', -1) end
end
return 0
"""


def delay_for(failures: int, free: int = FREE_FAILURES) -> float:
    """Seconds to wait after the last failure before the next try is heard."""
    if failures < free:
        return 0.0
    return float(min(MAX_DELAY_S, 2 ** (failures - free + 1)))


def counters(username: str, address: str) -> list[tuple[str, int]]:
    """The keys an attempt counts against, with their free failures; the username's comes last."""
    user = username.lower()
    return [(f"pair:{user}|{address}", FREE_FAILURES), (f"ip:{address}", FREE_PER_ADDRESS),
            (f"user:{user}", FREE_PER_USERNAME)]


class LoginThrottle:
    def __init__(self, redis_client=None, clock=time.time) -> None:
        self._redis, self.clock = redis_client, clock  # tests may stop time
        self._memory: dict[str, tuple[int, float]] = {}
        self._lock = threading.Lock()
        if redis_client is not None:
            self._reserve_script = redis_client.register_script(_RESERVE)
            self._succeeded_script = redis_client.register_script(_SUCCEEDED)

    def reserve(self, username: str, address: str) -> float:
        """0 when this attempt may be checked (it counts as a failure until `succeeded`), else the wait."""
        keys = counters(username, address)
        if self._redis is not None:
            try:
                args = [self.clock(), FORGET_AFTER_S, MAX_DELAY_S, *(free for _, free in keys)]
                return max(0.0, float(self._reserve_script([PREFIX + k for k, _ in keys], args)))
            except redis.RedisError:
                pass  # fall back to this process's memory while Redis is away
        with self._lock:
            return self._reserve_in_memory(keys)

    def succeeded(self, username: str, address: str) -> None:
        """The password was right: forget the pair's failures and give the reservation back."""
        keys = [key for key, _ in counters(username, address)]
        if self._redis is not None:
            try:
                self._succeeded_script([PREFIX + key for key in keys])
                return
            except redis.RedisError:
                pass
        with self._lock:
            self._memory.pop(keys[0], None)
            for key in keys[1:]:
                failures, last = self._memory.get(key, (0, 0.0))
                self._memory[key] = (max(0, failures - 1), last)

    def _reserve_in_memory(self, keys: list[tuple[str, int]]) -> float:
        """The Lua script's rule, for one process; the caller holds the lock."""
        now, wait, failed = self.clock(), 0.0, 0
        for index, (key, free) in enumerate(keys):
            failures, last = self._memory.get(key, (0, 0.0))
            last_key = index == len(keys) - 1
            failed += 0 if last_key else failures
            if not last_key or failed:
                wait = max(wait, delay_for(failures, free) - (now - last))
        if wait > 0:
            return wait
        if len(self._memory) > 100_000:  # bounded: the oldest half goes
            for stale in list(self._memory)[:50_000]:
                del self._memory[stale]
        for key, _ in keys:
            self._memory[key] = (self._memory.get(key, (0, 0.0))[0] + 1, now)
        return 0.0
