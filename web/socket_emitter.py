"""The emitter seam between a reply being generated and the sockets of its conversation's room."""
from __future__ import annotations

import functools
import logging
import threading
import time

from flask_socketio import SocketIO

from agents import offload

from . import flush_pacer, orphans
from .append_batch import STORE_WAIT_S

PRESENCE_REUSE_S = 1.0  # how old a read of the room's presence an informational event may go by
FIRST_STOP_CHECK_S = 2.0  # before any text: reasoning or a silent model still sees Stop this soon
log = logging.getLogger("chat.socket")


def user_room(user_id: str) -> str:
    """Every tab of one user: file-job progress goes here, whichever conversation is open."""
    return f"user:{user_id}"


def conversation_room(conversation_id: str) -> str:
    return f"conversation:{conversation_id}"


class SocketEmitter:
    """Emits a reply to its conversation's room, coalescing chunks: every STREAM_FLUSH_MS, longer
    while the event loop lags (web/flush_pacer.py). While it runs, the reply is leased to this
    instance (web/orphans.py), so a surviving instance stores it if this one is killed."""

    def __init__(self, socketio: SocketIO, inflight, conversation_id: str, reply_id: str, flush_ms: int,
                 flush_max_ms: int | None = None, owner: dict | None = None, clock=time.monotonic):
        self.socketio, self.inflight, self.clock = socketio, inflight, clock
        self.flush_ms, self.flush_max_ms = flush_ms, max(flush_ms, flush_max_ms or flush_ms)
        self.lag = flush_pacer.loop_lag(socketio) if self.flush_max_ms > flush_ms else None
        self.conversation_id, self.reply_id = conversation_id, reply_id
        self.room = conversation_room(conversation_id)
        self.manager = getattr(getattr(socketio, "server", None), "manager", None)
        self.presence_key = getattr(self.manager, "presence_key", lambda room: None)(self.room)
        self._buffer: list[str] = []
        self._last_flush = self.clock()
        self._sent_any = False
        self._stop, self._stop_checked = False, self.clock()  # a reply just started has not been stopped
        self._remote: tuple[float, bool] | None = None  # (read at, another instance has a member)
        self._held: list[tuple[str, dict]] = []  # informational events waiting for a presence read
        self._informing, self._informing_lock = None, threading.Lock()
        self._storing = None  # set once the last queued flush is stored (web/append_batch.py)
        self._ended = False  # the reply's end went out without waiting any longer for its text
        self._leased = owner is not None
        self._leasing = (orphans.lease(socketio, reply_id, {**owner, "conversation_id": conversation_id})
                         if owner is not None else None)  # written in the background: see orphans.lease

    def interval_s(self) -> float:
        return flush_pacer.interval_s(self.flush_ms, self.flush_max_ms, self.lag.seconds if self.lag else 0.0)

    def stop_requested(self) -> bool:
        """Whether Stop was pressed, asked of the shared in-flight state at most once per two flush
        intervals: asked per token, it was most of a busy worker's Redis round trips. Every flush
        answers it in its own round trip, and a token that comes a whole interval after the last
        flush is flushed at once, so asking then too was a second round trip for the same answer
        (10% of a loaded instance's samples, whose reads of the model come late): this asks only
        when no flush answered for two intervals (a reasoning model's silence, tokens of no text)."""
        now = self.clock()
        due = 2 * self.interval_s()
        if not self._sent_any:  # the first text's flush answers at once; only a long silence asks apart
            due = max(due, FIRST_STOP_CHECK_S)
        if not self._stop and now - self._stop_checked >= due:
            self._stop_checked = now
            self._stop = self.inflight.stop_requested(self.reply_id) or self._stop  # a flush's answer may come meanwhile
        return self._stop

    def _emit(self, event: str, payload: dict, local_only: bool = False) -> None:
        """`local_only`: the caller already knows no other instance has a member in the room."""
        self.socketio.emit(event, {**payload, "conversation_id": self.conversation_id}, to=self.room,
                           **({"ignore_queue": True} if local_only else {}))

    def _local_only(self, max_age_s: float) -> bool:
        """Whether no other instance has a member in the room, as read within `max_age_s` (read
        again when older). Status, routing, progress and usage go by a read up to PRESENCE_REUSE_S
        old (a tab joining elsewhere just then misses one of those, and its page reads the reply's
        state when it joins); the end of a reply reads it fresh. False without presence: the
        Socket.IO manager then decides as usual."""
        if self.presence_key is None:
            return False
        if self._stale(max_age_s):
            self._remote = (self.clock(), self.manager.remote(self.room))
        return not self._remote[1]

    def _inform(self, event: str, payload: dict) -> None:
        """Status, routing, progress, usage: sent now when the room's presence was read lately, else
        by a task that reads it while the reply goes on (on a loaded instance that read was ~35 ms
        at p50 of every reply's time to first token). Held events go out in order; the page places
        a late routing badge on the message whenever it comes."""
        with self._informing_lock:
            if self._informing is None and not self._stale(PRESENCE_REUSE_S):
                self._emit(event, payload, self._local_only(PRESENCE_REUSE_S))
                return
            self._held.append((event, payload))
            if self._informing is None:
                self._informing = self.socketio.start_background_task(self._inform_held)

    def _inform_held(self) -> None:
        local_only = self._local_only(PRESENCE_REUSE_S)
        while True:
            with self._informing_lock:
                if not self._held:
                    self._informing = None
                    return
                event, payload = self._held.pop(0)
            self._emit(event, payload, local_only)

    def _stale(self, max_age_s: float) -> bool:
        """Whether emitting by presence would need a read first."""
        return self.presence_key is not None and (self._remote is None or self.clock() - self._remote[0] > max_age_s)

    def _informed(self) -> None:
        """Held events go before the reply's end."""
        informing = self._informing
        if informing is not None:
            try:
                offload.wait_for(informing)
            except Exception:  # an informational event failed: the reply's end still goes out
                log.exception("An informational event failed")

    def chunk(self, text: str) -> None:
        """The first text goes out at once (time to first chunk is what users feel); later text is
        sent at most every flush interval."""
        self._buffer.append(text)
        if not self._sent_any or self.clock() - self._last_flush >= self.interval_s():
            self._sent_any = True
            self.flush()

    def flush(self) -> None:
        self._last_flush = self.clock()
        if not self._buffer:
            return
        text, self._buffer = "".join(self._buffer), []
        payload = {"chunk": text, "message_id": self.reply_id}
        if self.presence_key is None:  # no presence: the text is stored, then the manager decides
            self._noted(self.inflight.append(self.reply_id, text))
            self._emit("response_chunk", payload)
            return
        # This instance's tabs first, without waiting for Redis (that round trip was ~50 ms at p50
        # of a loaded instance's time to first chunk); then the text is queued to be stored with
        # the room's presence read in the same script (with every other reply's flushes of this
        # pass of the loop: web/append_batch.py), and other instances get the chunk only if they
        # have a member. The order that matters is kept: see web/socket_queue.py.
        self._emit("response_chunk", payload, local_only=True)
        self._storing = self.inflight.append_soon(self.reply_id, text, self.presence_key,
                                                  functools.partial(self._stored, payload, self._last_flush))

    def _stored(self, payload: dict, flushed_at: float, appended) -> None:
        """A flush's text is stored: note Stop and the room's presence, and publish the text if
        another instance has a member in the room (None from Redis: it may have; publish)."""
        self._noted(appended, flushed_at)
        remote = appended.room_members is None or self.manager.remote_among(self.room, appended.room_members)
        self._remote = (flushed_at, remote)
        if remote and not self._ended:  # (stored after the reply's end gave up waiting: too late to send)
            self.manager.publish_to_others("response_chunk", {**payload, "conversation_id": self.conversation_id},
                                           self.room)

    def _flushed(self) -> None:
        """Wait until the last flush is stored (and published): the reply's end must not overtake it."""
        storing, self._storing = self._storing, None
        if storing is not None and not storing.wait(STORE_WAIT_S):
            self._ended = True
            log.warning("The reply's last text was not stored within %s s", STORE_WAIT_S)

    def _noted(self, appended, flushed_at: float | None = None):
        """The flush's round trip also answered whether Stop was pressed (None: Redis failed)."""
        if appended.stopped is not None:
            self._stop = self._stop or appended.stopped
            self._stop_checked = max(self._stop_checked, self._last_flush if flushed_at is None else flushed_at)
        return appended

    def status(self, phase: str, detail: str = "") -> None:
        self._inform("status", {"phase": phase, "detail": detail, "message_id": self.reply_id})

    def routing(self, decision: dict) -> None:
        self._inform("routing", {**decision, "message_id": self.reply_id})

    def progress(self, payload: dict) -> None:
        self._inform("file_progress", {**payload, "message_id": self.reply_id})

    def usage(self, payload: dict) -> None:
        self.flush()
        self._inform("token_usage", payload)

    def done(self, message_id: str, finish_reason: str, extra: dict | None = None) -> None:
        self.flush()
        self._flushed()
        self._release()
        self._informed()
        self._emit("response_done", {**(extra or {}), "message_id": message_id, "finish_reason": finish_reason},
                   self._local_only(0))

    def error(self, message: str) -> None:
        self.flush()
        self._flushed()
        self._release()
        self._informed()
        self._emit("error", {"message": message, "message_id": self.reply_id}, self._local_only(0))

    def _release(self) -> None:
        """The reply is stored (done) or has failed for good (error): no longer an orphan if we die."""
        if self._leased:
            self._leased = False
            orphans.release(self.socketio, self.reply_id, self._leasing)
