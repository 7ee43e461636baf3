"""Which app instances have members in a Socket.IO room, kept in Redis so an instance can emit a
reply's chunks straight to its own sockets when no other instance needs them.

`presence:room:<room>` is a hash with one field per instance that has at least one local member
(written when its first local member joins, removed when its last leaves). Each instance also
keeps `presence:alive:<instance>` alive with a TTL: a field whose instance stopped beating (it was
killed) no longer counts, and is removed by the next instance that notices.
"""
from __future__ import annotations

import logging
import time

import redis

ROOM_KEY = "presence:room:"
ALIVE_KEY = "presence:alive:"
INSTANCES_KEY = "presence:instances"
ROOM_TTL_S = 24 * 3600  # a room key outlives any member; refreshed while a local member stays
LIVENESS_CACHE_S = 2.0

JOIN_SCRIPT = """
redis.call('HSET', KEYS[1], ARGV[1], 1)
redis.call('EXPIRE', KEYS[1], ARGV[2])
redis.call('SET', KEYS[2], 1, 'EX', ARGV[3])
"""

log = logging.getLogger("chat.presence")


class RoomPresence:
    """One instance's view: `joined`/`left` for its own members, `remote` for everyone else's."""

    def __init__(self, client: redis.Redis, instance_id: str, ttl_s: float) -> None:
        self.redis, self.instance_id, self.ttl_s = client, instance_id, ttl_s
        self._alive: dict[str, tuple[bool, float]] = {}  # other instance -> (alive, checked at)
        self._join = client.register_script(JOIN_SCRIPT)  # one command: batched with others' (redis_batch)

    def joined(self, room: str) -> None:
        """This instance's first member of `room` joined (and it is alive: a join may come before
        the first heartbeat)."""
        self._quietly(lambda: self._join(keys=[ROOM_KEY + room, ALIVE_KEY + self.instance_id],
                                         args=[self.instance_id, ROOM_TTL_S, self._ttl()]))

    def left(self, room: str) -> None:
        """This instance's last member of `room` left."""
        self._quietly(lambda: self.redis.hdel(ROOM_KEY + room, self.instance_id))

    def remote(self, room: str) -> bool:
        """Whether a live instance other than this one has a member in `room`. When Redis cannot
        answer, True: the caller then publishes, as it would without presence."""
        try:
            return self.remote_among(room, self.redis.hkeys(ROOM_KEY + room))
        except redis.RedisError as error:
            log.warning("Room presence not readable: %s", type(error).__name__)
            return True

    def remote_among(self, room: str, members: list[bytes]) -> bool:
        """`remote`, given the room's members as read from `room_key(room)` (a reply's flush reads
        them in the round trip that stores its text)."""
        others = [i.decode() for i in members if i.decode() != self.instance_id]
        dead = [other for other in others if not self._is_alive(other)]
        if dead:
            self.redis.hdel(ROOM_KEY + room, *dead)
        return len(dead) < len(others)

    @staticmethod
    def room_key(room: str) -> str:
        return ROOM_KEY + room

    def beat(self, rooms: list[str]) -> None:
        """Say this instance is alive (for ttl_s) and keep its rooms' keys from expiring."""
        pipe = self.redis.pipeline(transaction=False)
        pipe.set(ALIVE_KEY + self.instance_id, 1, ex=self._ttl())
        pipe.sadd(INSTANCES_KEY, self.instance_id)
        for room in rooms:  # (not HSET: a member leaving meanwhile would be written back)
            pipe.expire(ROOM_KEY + room, ROOM_TTL_S)
        self._quietly(pipe.execute)

    def dead_instances(self) -> list[str]:
        """Instances that beat once and stopped (killed, not shut down): their replies are orphans."""
        members = [i.decode() for i in self.redis.smembers(INSTANCES_KEY)]
        return [i for i in members if i != self.instance_id and not self.redis.exists(ALIVE_KEY + i)]

    def forget(self, instance_id: str) -> None:
        self.redis.srem(INSTANCES_KEY, instance_id)

    def stop(self) -> None:
        """A clean shutdown: this instance is gone at once, not after its TTL."""
        self._quietly(lambda: self.redis.pipeline(transaction=False).delete(ALIVE_KEY + self.instance_id)
                      .srem(INSTANCES_KEY, self.instance_id).execute())

    def _ttl(self) -> int:
        return max(1, round(self.ttl_s))

    def _is_alive(self, instance_id: str) -> bool:
        known = self._alive.get(instance_id)
        now = time.monotonic()
        if known is None or now - known[1] > LIVENESS_CACHE_S:
            known = (bool(self.redis.exists(ALIVE_KEY + instance_id)), now)
            self._alive[instance_id] = known
        return known[0]

    @staticmethod
    def _quietly(action) -> None:
        try:
            action()
        except redis.RedisError as error:
            log.warning("Room presence not written: %s", type(error).__name__)
