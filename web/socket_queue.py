"""Socket.IO's Redis queue, publishing only what another instance needs.

python-socketio's RedisManager publishes every emit to every instance, each of which decodes it
and looks for local members: with every reply chunk that is most of a busy instance's work for
nothing. This manager emits straight to local sockets when the room has no member on another
live instance (web/room_presence.py), and through the queue only when it does.

No chunk is lost to a tab joining on another instance mid-reply: the joining instance records
its presence before it reads the reply's text so far, and the emitter appends each flush to that
text before it asks for presence, so a flush either is in the text read or sees the member (and
then publishes it to the other instances: publish_to_others). A flush asks for presence in the
same Redis script that appends its text (presence_key), which keeps that order and saves a round
trip per flush. This instance's own tabs get the flush before that round trip: a local tab that
joins meanwhile reads the text after it (its read queues behind the append on the same connection).
"""
from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import redis
from socketio import RedisManager

from .redis_batch import BatchingRedis
from .room_presence import RoomPresence

log = logging.getLogger("chat.presence")


class PresenceRedisManager(RedisManager):
    """RedisManager plus presence for the rooms whose names start with one of `prefixes` (other
    rooms, and sockets of other instances, always go through the queue); `on_beat` runs with each
    heartbeat (the orphan sweep)."""

    def __init__(self, url: str, ttl_s: float, prefixes: tuple[str, ...],
                 on_beat: Callable[[RoomPresence], None] | None = None) -> None:
        super().__init__(url)
        self.prefixes = prefixes
        self.presence = RoomPresence(BatchingRedis.from_url(url, socket_timeout=2, socket_connect_timeout=2,
                                                           health_check_interval=30), self.host_id, ttl_s)
        self.on_beat = on_beat
        self._later = threading.local()  # presence_later's rooms, per (green) thread

    def initialize(self) -> None:
        super().initialize()
        self.server.start_background_task(self._heartbeat)

    def _heartbeat(self) -> None:
        while True:
            self.presence.beat(self._local_rooms())
            if self.on_beat:
                try:
                    self.on_beat(self.presence)
                except redis.RedisError as error:
                    log.warning("Orphaned replies not checked: %s", type(error).__name__)
                except Exception:
                    log.exception("Heartbeat task failed")
            self.server.sleep(self.presence.ttl_s / 3)

    def _local_rooms(self) -> list[str]:
        return [room for rooms in list(self.rooms.values()) for room in list(rooms) if self._tracked(room)]

    def _tracked(self, room) -> bool:
        return isinstance(room, str) and room.startswith(self.prefixes)

    def emit(self, event, data, namespace=None, room=None, skip_sid=None, callback=None, to=None, **kwargs):
        room, namespace = to or room, namespace or "/"
        if callback is None and not kwargs.get("ignore_queue") and self._local_only(namespace, room):
            kwargs["ignore_queue"] = True
        return super().emit(event, data, namespace=namespace, room=room, skip_sid=skip_sid, callback=callback,
                            **kwargs)

    def _local_only(self, namespace: str, room) -> bool:
        """A socket of this instance, or a named room no other live instance has a member in."""
        if isinstance(room, str) and self.is_sid_room(namespace, room):
            return True
        return self._tracked(room) and not self.presence.remote(room)

    def presence_key(self, room) -> str | None:
        """The Redis hash naming the instances with members in `room`, for a caller that reads it in
        its own round trip (web/socket_emitter.py); None for rooms without presence."""
        return self.presence.room_key(room) if self._tracked(room) else None

    def remote(self, room: str) -> bool:
        """Whether a live instance other than this one has a member in `room`, read now (True when
        Redis cannot answer: the emit then publishes, as it would without presence)."""
        return self.presence.remote(room)

    def remote_among(self, room: str, members: list[bytes]) -> bool:
        """`remote`, given the members read from presence_key(room) in the caller's own round trip."""
        try:
            return self.presence.remote_among(room, members)
        except redis.RedisError as error:
            log.warning("Room presence not readable: %s", type(error).__name__)
            return True

    def publish_to_others(self, event: str, data, room: str, namespace: str = "/") -> None:
        """The emit's message on the queue without emitting it here: for a caller that already sent
        it to this instance's sockets (web/socket_emitter.py). The other instances handle it as any
        published emit; this one skips its own messages. (Fields as PubSubManager.emit writes them.)"""
        self._publish({"method": "emit", "event": event, "data": [data], "binary": False, "namespace": namespace,
                       "room": room, "skip_sid": None, "callback": None, "host_id": self.host_id})

    def basic_enter_room(self, sid, namespace, room, eio_sid=None):
        first = self._tracked(room) and room not in self.rooms.get(namespace, {})
        super().basic_enter_room(sid, namespace, room, eio_sid=eio_sid)
        if first:
            later = getattr(self._later, "rooms", None)
            if later is None:
                self.presence.joined(room)
            else:
                later.append((namespace, room))

    @contextmanager
    def presence_later(self) -> Iterator[list]:
        """Rooms entered inside are joined at once, but their presence is not written: they are
        listed for the caller to `announce` off its path. Only for a room whose replies can only come
        from this instance for now (a conversation just created here): no other instance needs to
        see the member yet, and no reply's text is read after the join."""
        self._later.rooms = rooms = []
        try:
            yield rooms
        finally:
            self._later.rooms = None

    def announce(self, rooms: list) -> None:
        """Write the presence presence_later held back, unless the members left meanwhile."""
        for namespace, room in rooms:
            self.presence.joined(room)
            if room not in self.rooms.get(namespace, {}):  # left before this ran: leave no member behind
                self.presence.left(room)

    def basic_leave_room(self, sid, namespace, room):
        super().basic_leave_room(sid, namespace, room)
        if self._tracked(room) and room not in self.rooms.get(namespace, {}):
            self.presence.left(room)
