"""Replies being generated: the partial text and stop requests, where every worker can read them.

With REDIS_URL the state lives in Redis (appended once per flush, not per token); without it,
in this process's memory, which is enough for a single worker.
"""
from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import NamedTuple

import redis

from .append_batch import STORE_WAIT_S, AppendBatch

TTL_SECONDS = 3600
log = logging.getLogger("chat.inflight")


class Appended(NamedTuple):
    """What the round trip that stored a flush's text also answered: whether Stop was requested
    (None when Redis failed) and, when asked for a room's presence key, the instances with members
    in the room (None when not asked or Redis failed)."""

    stopped: bool | None
    room_members: list[bytes] | None = None


class MemoryInflight:
    shared = False  # in this process: every call answers at once

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_conversation: dict[str, str] = {}
        self._text: dict[str, list[str]] = {}
        self._stops: set[str] = set()

    def start(self, conversation_id: str, reply_id: str) -> bool:
        """Claim the conversation for one reply; False when another reply is in flight."""
        with self._lock:
            if conversation_id in self._by_conversation:
                return False
            self._by_conversation[conversation_id], self._text[reply_id] = reply_id, []
            return True

    def append(self, reply_id: str, text: str, room_key: str | None = None) -> Appended:
        """Store the text; answers whether Stop was requested (the emitter asks both at once). No
        presence without Redis: there is no other instance."""
        with self._lock:
            self._text.setdefault(reply_id, []).append(text)
            return Appended(reply_id in self._stops)

    def append_soon(self, reply_id: str, text: str, room_key: str | None,
                    answered: Callable[[Appended], None]) -> threading.Event:
        """`append`, its answer handed to `answered`; here at once (see RedisInflight.append_soon)."""
        answered(self.append(reply_id, text, room_key))
        stored = threading.Event()
        stored.set()
        return stored

    def snapshot(self, conversation_id: str) -> dict | None:
        with self._lock:
            reply_id = self._by_conversation.get(conversation_id)
            return None if reply_id is None else {"message_id": reply_id, "text": "".join(self._text[reply_id])}

    def request_stop(self, conversation_id: str) -> str | None:
        with self._lock:
            reply_id = self._by_conversation.get(conversation_id)
            if reply_id:
                self._stops.add(reply_id)
            return reply_id

    def stop_requested(self, reply_id: str) -> bool:
        return reply_id in self._stops

    def finish(self, conversation_id: str, reply_id: str) -> None:
        with self._lock:
            if self._by_conversation.get(conversation_id) == reply_id:
                del self._by_conversation[conversation_id]
            self._text.pop(reply_id, None)
            self._stops.discard(reply_id)


FINISH_SCRIPT = """
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
redis.call('DEL', KEYS[2], KEYS[3])
"""


class RedisInflight:
    """Same contract, in Redis: `inflight:conv:<id>` -> reply id, `inflight:text:<reply>`, `inflight:stop:<reply>`."""

    shared = True  # every instance reads it; each call is a round trip

    def __init__(self, client, spawn: Callable | None = None) -> None:
        """`spawn(function)`: how a background task starts (the Socket.IO server's, under eventlet)."""
        self.redis = client
        self._claims = getattr(client, "direct", client)  # a claim is on its reply's path: redis_batch.direct
        self._finish = client.register_script(FINISH_SCRIPT)
        self._batch = AppendBatch(self._claims, TTL_SECONDS, _appended, spawn)

    def start(self, conversation_id: str, reply_id: str) -> bool:
        return bool(self._claims.set(f"inflight:conv:{conversation_id}", reply_id, nx=True, ex=TTL_SECONDS))

    def append(self, reply_id: str, text: str, room_key: str | None = None) -> Appended:
        """Best effort: only a tab joining mid-reply reads this, so a Redis outage must not end the reply.
        In the same script, asks whether Stop was requested and (with `room_key`) which instances
        have members in the reply's room: asked apart, each was one more round trip per flush (13% and
        7% of a loaded instance's samples). One script also keeps web/socket_queue.py's order, and is
        one command. This waits for it: append_soon (the emitter's flushes) does not, and both go by
        the same queue, so a reply's texts are stored in order whichever way they were sent."""
        answers: list[Appended] = []
        self.append_soon(reply_id, text, room_key, answers.append).wait(STORE_WAIT_S)
        return answers[0] if answers else Appended(None)

    def append_soon(self, reply_id: str, text: str, room_key: str | None,
                    answered: Callable[[Appended], None]) -> threading.Event:
        """`append` without waiting: the text is queued and stored with every other reply's queued
        in this pass of the event loop, by one script call (web/append_batch.py); `answered` gets
        what `append` would return, in flush order. The event is set once it has run."""
        keys = (f"inflight:text:{reply_id}", f"inflight:stop:{reply_id}", room_key or "")
        return self._batch.append(keys, text, answered)

    def snapshot(self, conversation_id: str) -> dict | None:
        reply_id = self.redis.get(f"inflight:conv:{conversation_id}")
        if reply_id is None:
            return None
        reply_id = reply_id.decode()
        self._batch.wait_stored(f"inflight:text:{reply_id}", STORE_WAIT_S)  # flushed here before the ask
        text = self.redis.get(f"inflight:text:{reply_id}") or b""
        return {"message_id": reply_id, "text": text.decode("utf-8", errors="replace")}

    def request_stop(self, conversation_id: str) -> str | None:
        reply_id = self.redis.get(f"inflight:conv:{conversation_id}")
        if reply_id is None:
            return None
        self.redis.set(f"inflight:stop:{reply_id.decode()}", 1, ex=TTL_SECONDS)
        return reply_id.decode()

    def stop_requested(self, reply_id: str) -> bool:
        """False while Redis is down: a Stop nobody can read must not end the reply either."""
        try:
            return bool(self.redis.exists(f"inflight:stop:{reply_id}"))
        except redis.RedisError as error:
            log.warning("Stop request not readable: %s", type(error).__name__)
            return False

    def finish(self, conversation_id: str, reply_id: str) -> None:
        """Release the claim (only if it is still this reply's) and the reply's text and Stop flag,
        in one round trip; if Redis is down the claim stays, and live_snapshot clears it once Redis
        is back."""
        try:
            self._finish(keys=[f"inflight:conv:{conversation_id}", f"inflight:text:{reply_id}",
                               f"inflight:stop:{reply_id}"], args=[reply_id])
        except redis.RedisError as error:
            log.warning("In-flight claim not released: %s", type(error).__name__)


def _appended(answers: list | None) -> Appended:
    """The append script's answer for one flush (None: Redis failed): Stop, then the room's
    members when a presence key was given and could be read."""
    if not answers:  # None (Redis failed) or False (this flush's keys failed in the batch script)
        return Appended(None)
    return Appended(bool(answers[0]), answers[1] if len(answers) > 1 else None)


def live_snapshot(inflight, conversation_id: str, is_stored: Callable[[str], bool]) -> dict | None:
    """The reply being generated, if any. A claim whose reply is already stored is stale (releasing it
    failed while Redis was down): it is cleared, instead of keeping the conversation busy for an hour."""
    snapshot = inflight.snapshot(conversation_id)
    if snapshot and is_stored(snapshot["message_id"]):
        inflight.finish(conversation_id, snapshot["message_id"])
        return None
    return snapshot


def claim(inflight, conversation_id: str, reply_id: str, is_stored: Callable[[str], bool]) -> bool:
    """Claim the conversation for one reply; False while another reply is really being generated."""
    return holder_after_claim(inflight, conversation_id, reply_id, is_stored) is None


def holder_after_claim(inflight, conversation_id: str, reply_id: str, is_stored: Callable[[str], bool]) -> str | None:
    """`claim`, telling on failure which reply holds the conversation (None: claimed; "" when the
    holder is not known: it was claimed again between two reads)."""
    if inflight.start(conversation_id, reply_id):
        return None
    snapshot = live_snapshot(inflight, conversation_id, is_stored)
    if snapshot is not None:
        return snapshot["message_id"]
    return None if inflight.start(conversation_id, reply_id) else ""
