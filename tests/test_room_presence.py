"""Room presence: chunks go through the Redis queue only when another instance has a member of the
conversation's room (web/room_presence.py, web/socket_queue.py)."""
from __future__ import annotations

import json
import threading
import types

import redis
from test_chat_e2e import Page, wait_until
from test_gunicorn import start_gunicorn  # noqa: F401  (fixture)

from web.room_presence import ALIVE_KEY, RoomPresence


class Published:
    """Counts the events published on Socket.IO's Redis channel, by event name."""

    def __init__(self, url: str, channel: str = "socketio") -> None:
        self.counts: dict[str, int] = {}
        self.stopped = threading.Event()
        self.pubsub = redis.Redis.from_url(url).pubsub(ignore_subscribe_messages=True)
        self.pubsub.subscribe(channel)
        self.thread = threading.Thread(target=self._listen, daemon=True)
        self.thread.start()

    def _listen(self) -> None:
        while not self.stopped.is_set():
            message = self.pubsub.get_message(timeout=0.1)
            if message:
                event = json.loads(message["data"]).get("event", "?")
                self.counts[event] = self.counts.get(event, 0) + 1

    def close(self) -> None:
        self.stopped.set()
        self.thread.join(5)
        self.pubsub.close()


def test_room_presence_sees_only_live_other_instances(private_redis):
    client = redis.Redis.from_url(private_redis["url"])
    a, b = RoomPresence(client, "a", ttl_s=30), RoomPresence(client, "b", ttl_s=30)
    a.joined("conversation:1")
    assert not a.remote("conversation:1") and b.remote("conversation:1")
    b.joined("conversation:1")
    assert a.remote("conversation:1")
    b.left("conversation:1")
    assert not a.remote("conversation:1")
    b.joined("conversation:2")
    client.delete(ALIVE_KEY + "b")  # b was killed: its heartbeat expired
    a = RoomPresence(client, "a", ttl_s=30)  # (a's view of who is alive is cached for a moment)
    assert not a.remote("conversation:2")
    assert client.hkeys("presence:room:conversation:2") == []  # the dead member was cleared
    assert b.remote("conversation:3") is False


def test_room_presence_unreadable_redis_means_publish(private_redis):
    presence = RoomPresence(redis.Redis.from_url("redis://127.0.0.1:1/0"), "a", ttl_s=30)
    presence.joined("conversation:1")  # logged, not raised
    assert presence.remote("conversation:1") is True


def test_room_presence_local_members_only_publish_no_chunks(start_gunicorn, private_redis, fake_llm):
    fake_llm.tokens, fake_llm.token_delay = 60, 0.01
    a = start_gunicorn("a", OPENAI_BASE_URL=fake_llm.url, REDIS_URL=private_redis["url"])
    start_gunicorn("b", OPENAI_BASE_URL=fake_llm.url, REDIS_URL=private_redis["url"])
    published = Published(private_redis["url"])
    tab_1, tab_2 = Page(a.base), None
    try:
        ack = tab_1.sio.call("send_message", {"message": "Hello"}, timeout=10)
        tab_2 = Page(a.base, http=tab_1.http)  # a second tab of the same user, on the same instance
        assert tab_2.sio.call("join_conversation", {"conversation_id": ack["conversation_id"]}, timeout=10)["ok"]
        assert tab_1.done.wait(15) and tab_2.done.wait(15)
        assert tab_1.chunks() == "".join(fake_llm.pieces(None)[0])
        assert tab_2.chunks() and tab_1.chunks().endswith(tab_2.chunks())
        assert published.counts.get("response_chunk", 0) == 0
        assert published.counts.get("response_done", 0) == 0, published.counts
    finally:
        published.close()
        for tab in (tab_1, tab_2):
            if tab:
                tab.sio.disconnect()


def test_room_presence_member_on_other_instance_gets_chunks_through_queue(start_gunicorn, private_redis,
                                                                          fake_llm):
    fake_llm.tokens, fake_llm.token_delay = 60, 0.01
    a = start_gunicorn("a", OPENAI_BASE_URL=fake_llm.url, REDIS_URL=private_redis["url"])
    b = start_gunicorn("b", OPENAI_BASE_URL=fake_llm.url, REDIS_URL=private_redis["url"])
    tab_a = Page(a.base)
    tab_b = Page(b.base, http=tab_a.http)  # same browser, so the same user (sessions are in Redis)
    published = Published(private_redis["url"])
    try:
        first = tab_a.sio.call("send_message", {"message": "Hello"}, timeout=10)
        assert tab_a.done.wait(15)
        tab_a.done.clear()
        assert tab_b.sio.call("join_conversation", {"conversation_id": first["conversation_id"]}, timeout=10)["ok"]
        published.counts.clear()
        ack = tab_a.sio.call("send_message", {"message": "Again", "conversation_id": first["conversation_id"]},
                             timeout=10)
        assert ack["ok"] and tab_a.done.wait(15) and tab_b.done.wait(15)
        expected = "".join(fake_llm.pieces(None)[0])
        assert tab_b.chunks() == expected and tab_a.chunks() == expected * 2
        wait_until(lambda: published.counts.get("response_done", 0) == 1)
        assert published.counts["response_chunk"] >= 1
    finally:
        published.close()
        tab_a.sio.disconnect()
        tab_b.sio.disconnect()


class PresenceManager:
    """The Socket.IO manager's presence side (web/socket_queue.py), over one instance's RoomPresence."""

    def __init__(self, presence: RoomPresence) -> None:
        self.presence = presence
        self.published: list[str] = []  # events sent to the other instances only

    def publish_to_others(self, event, data, room):
        self.published.append(event)

    def presence_key(self, room):
        return self.presence.room_key(room)

    def remote(self, room):
        return self.presence.remote(room)

    def remote_among(self, room, members):
        return self.presence.remote_among(room, members)


class RecordingSocketIO:
    """Records each emit as (event, emit options), for an instance whose presence is `presence`."""

    def __init__(self, presence: RoomPresence) -> None:
        self.server = types.SimpleNamespace(manager=PresenceManager(presence))
        self.emitted: list[tuple[str, dict]] = []

    def emit(self, event, payload, to=None, **kwargs):
        self.emitted.append((event, kwargs))


class _CountingRedis(redis.Redis):
    """A client that counts its round trips (a pipeline is one)."""

    round_trips = 0

    def execute_command(self, *args, **options):
        type(self).round_trips += 1
        return super().execute_command(*args, **options)

    def pipeline(self, transaction=True, shard_hint=None):
        pipe = super().pipeline(transaction, shard_hint)
        execute = pipe.execute

        def counted(*args, **kwargs):
            type(self).round_trips += 1
            return execute(*args, **kwargs)

        pipe.execute = counted
        return pipe


def test_room_presence_flushes_are_stored_together_in_one_round_trip_that_also_reads_presence(private_redis):
    """A reply's flush goes to this instance's tabs at once, and is queued to store its text, read
    Stop and read the room's presence; one task then sends the flushes of every reply queued
    meanwhile as one script call. A flush is published to the other instances only when another
    live instance has a member; the reply's end waits for its last flush to be stored."""
    from web.inflight import RedisInflight
    from web.socket_emitter import SocketEmitter

    client = _CountingRedis.from_url(private_redis["url"])
    here, there = RoomPresence(client, "here", ttl_s=30), RoomPresence(client, "there", ttl_s=30)
    sends: list = []  # the batch's sending task, run below when the test says (the event loop's next pass)
    socketio, inflight = RecordingSocketIO(here), RedisInflight(client, spawn=sends.append)
    emitter, other = (SocketEmitter(socketio, inflight, f"c{n}", f"r{n}", flush_ms=50) for n in (1, 2))
    here.joined("conversation:c1")
    inflight.append_soon("r0", "", None, lambda appended: None)  # loads the script into Redis (once per server)
    sends.pop()()
    _CountingRedis.round_trips = 0
    emitter.chunk("Hello")
    other.chunk("Hi")
    assert _CountingRedis.round_trips == 0 and len(socketio.emitted) == 2  # both sent here, neither waited
    assert socketio.emitted[0] == ("response_chunk", {"ignore_queue": True})
    assert len(sends) == 1  # one task sends both
    sends.pop()()
    assert _CountingRedis.round_trips == 1  # both stored, with Stop and presence, in one round trip
    assert client.get("inflight:text:r1") == b"Hello" and client.get("inflight:text:r2") == b"Hi"
    assert socketio.server.manager.published == []  # no one elsewhere: not published
    there.joined("conversation:c1")  # a tab of the same conversation on another instance
    emitter.chunk(" again")
    emitter.flush()
    sends.pop()()
    assert socketio.emitted[-1] == ("response_chunk", {"ignore_queue": True})  # here, and to the others:
    assert socketio.server.manager.published == ["response_chunk"]
    assert client.get("inflight:text:r1") == b"Hello again"
    _CountingRedis.round_trips = 0
    emitter.usage({"total_tokens_used": 3})  # informational: goes by the flush's read of presence
    assert _CountingRedis.round_trips == 0 and socketio.emitted[-1] == ("token_usage", {})
    there.left("conversation:c1")
    _CountingRedis.round_trips = 0
    emitter.done("r1", "stop")  # the end of the reply reads presence afresh: nobody elsewhere now
    assert _CountingRedis.round_trips == 1 and socketio.emitted[-1] == ("response_done", {"ignore_queue": True})


def _flushed_with_a_member_elsewhere(url: str):
    """A reply that flushed "Hello" in a room with a member on another instance; its text is queued
    and the task that would store it is in `sends`, not run yet."""
    from web.inflight import RedisInflight
    from web.socket_emitter import SocketEmitter

    client = redis.Redis.from_url(url)
    here, there = RoomPresence(client, "here", ttl_s=30), RoomPresence(client, "there", ttl_s=30)
    sends: list = []
    socketio = RecordingSocketIO(here)
    emitter = SocketEmitter(socketio, RedisInflight(client, spawn=sends.append), "c1", "r1", flush_ms=50)
    there.joined("conversation:c1")
    emitter.chunk("Hello")
    return client, socketio, emitter, sends


def test_room_presence_a_reply_ends_only_after_its_last_flush_is_stored(private_redis):
    """The reply's end waits for its queued text: stored (and published) before response_done."""
    client, socketio, emitter, sends = _flushed_with_a_member_elsewhere(private_redis["url"])
    sender = threading.Timer(0.2, lambda: sends.pop()())  # the task runs a while later
    sender.start()
    publish = socketio.server.manager.publish_to_others
    socketio.server.manager.publish_to_others = lambda event, *args: (publish(event, *args),
                                                                       socketio.emitted.append(("published", {})))
    emitter.done("r1", "stop")
    sender.join()
    assert client.get("inflight:text:r1") == b"Hello"
    assert [event for event, _ in socketio.emitted] == ["response_chunk", "published", "response_done"]


def test_room_presence_a_flush_stored_after_the_reply_gave_up_waiting_is_not_published(private_redis, monkeypatch):
    """Redis too slow: the reply's end goes out after STORE_WAIT_S, and its late text is not sent
    to the other instances after that end."""
    from web import socket_emitter

    monkeypatch.setattr(socket_emitter, "STORE_WAIT_S", 0.05)
    _, socketio, emitter, sends = _flushed_with_a_member_elsewhere(private_redis["url"])
    emitter.done("r1", "stop")  # the text is not stored yet: gives up after 0.05 s
    sends.pop()()  # stored late
    assert socketio.emitted[-1][0] == "response_done" and socketio.server.manager.published == []


def test_room_presence_a_reply_lease_is_written_in_the_background_and_released_after(private_redis):
    """The reply does not wait for its orphan lease (web/orphans.py); a reply that ends before the
    lease was written still leaves no lease behind (release waits for it)."""
    import time

    from web import orphans

    presence = RoomPresence(redis.Redis.from_url(private_redis["url"]), "here", ttl_s=30)
    started: list[threading.Thread] = []

    class SocketIO(RecordingSocketIO):
        def start_background_task(self, target, *args):
            def late():  # a loaded event loop runs the task a while later
                time.sleep(0.2)
                target(*args)
            started.append(threading.Thread(target=late))
            started[-1].start()
            return started[-1]

    leases = orphans.LEASES_KEY + "here"
    began = time.monotonic()
    task = orphans.lease(SocketIO(presence), "r1", {"user_id": "u", "conversation_id": "c1", "message_id": "m1"})
    assert time.monotonic() - began < 0.1 and task is started[0]  # the reply goes on at once
    assert presence.redis.hkeys(leases) == []  # not written yet
    orphans.release(SocketIO(presence), "r1", task)  # the reply ended first: the release waits for the lease
    task.join()
    assert presence.redis.hkeys(leases) == []  # not written back after the release
    task = orphans.lease(SocketIO(presence), "r2", {"user_id": "u", "conversation_id": "c1", "message_id": "m2"})
    task.join()
    assert presence.redis.hkeys(leases) == [b"r2"]  # a reply under way has its lease


def test_room_presence_informational_events_wait_for_presence_in_the_background(private_redis):
    """Routing and status before any presence read are sent by a task that reads it, in order,
    while the reply goes on; the reply's end goes out after them."""
    from web.inflight import RedisInflight
    from web.socket_emitter import SocketEmitter

    client = redis.Redis.from_url(private_redis["url"])
    here = RoomPresence(client, "here", ttl_s=30)
    tasks: list = []

    class SocketIO(RecordingSocketIO):
        def start_background_task(self, target, *args):
            tasks.append(threading.Thread(target=target, args=args))
            return tasks[-1]  # started below: the loop runs it once the reply's green thread yields

    socketio = SocketIO(here)
    emitter = SocketEmitter(socketio, RedisInflight(client), "c1", "r1", flush_ms=50)
    here.joined("conversation:c1")
    emitter.status("thinking")
    emitter.routing({"agent": "chat"})
    assert socketio.emitted == [] and len(tasks) == 1  # neither waited for Redis; one task reads it
    tasks[0].start()
    tasks[0].join()
    assert socketio.emitted == [("status", {"ignore_queue": True}), ("routing", {"ignore_queue": True})]
    emitter.status("writing")  # presence read lately: sent at once
    assert socketio.emitted[-1] == ("status", {"ignore_queue": True}) and len(tasks) == 1
    emitter.done("r1", "stop")
    assert socketio.emitted[-1][0] == "response_done"


def test_room_presence_this_instances_tabs_get_a_flush_before_its_round_trip(private_redis):
    """A flush is emitted to local sockets first; the round trip that stores its text comes after
    (a loaded instance's first chunk no longer waits for Redis)."""
    from web.inflight import RedisInflight
    from web.socket_emitter import SocketEmitter

    client = redis.Redis.from_url(private_redis["url"])
    here = RoomPresence(client, "here", ttl_s=30)
    socketio = RecordingSocketIO(here)
    emitted_before_append: list[int] = []

    class Inflight(RedisInflight):
        def append_soon(self, reply_id, text, room_key, answered):
            emitted_before_append.append(len(socketio.emitted))
            return super().append_soon(reply_id, text, room_key, answered)

    emitter = SocketEmitter(socketio, Inflight(client), "c1", "r1", flush_ms=50)
    emitter.chunk("Hello")
    assert emitted_before_append == [1] and socketio.emitted == [("response_chunk", {"ignore_queue": True})]
    emitter.done("r1", "stop")  # waits for the text to be stored
    assert client.get("inflight:text:r1") == b"Hello"  # stored right after


def test_room_presence_a_new_conversations_presence_is_written_after_its_join(private_redis):
    """presence_later: the socket is in the room at once, its instance's presence is written when
    the caller announces it, and a member gone by then leaves nothing behind."""
    from web.socket_queue import PresenceRedisManager

    client = redis.Redis.from_url(private_redis["url"])
    manager = PresenceRedisManager(private_redis["url"], ttl_s=30, prefixes=("conversation:",))
    with manager.presence_later() as rooms:
        manager.basic_enter_room("s1", "/", "conversation:c1", eio_sid="e1")
    assert rooms == [("/", "conversation:c1")] and "s1" in manager.rooms["/"]["conversation:c1"]
    assert client.hkeys("presence:room:conversation:c1") == []
    manager.announce(rooms)
    assert client.hkeys("presence:room:conversation:c1") == [manager.host_id.encode()]
    with manager.presence_later() as rooms:
        manager.basic_enter_room("s2", "/", "conversation:c2", eio_sid="e2")
    manager.basic_leave_room("s2", "/", "conversation:c2")
    manager.announce(rooms)
    assert client.hkeys("presence:room:conversation:c2") == []
    manager.basic_enter_room("s3", "/", "conversation:c3", eio_sid="e3")  # outside: written at once
    assert client.hkeys("presence:room:conversation:c3") == [manager.host_id.encode()]
