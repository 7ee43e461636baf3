"""The flushes of every reply streaming in this process, stored in Redis by one script call per
pass of the event loop instead of one command each.

A flush appends its text to the reply's in-flight text and, in the same script, asks whether Stop
was pressed and which instances have a member in the reply's room (web/inflight.py). With
hundreds of replies streaming, those were hundreds of commands a second per instance, each
paying its own packing, parsing and hand-over between green threads (15% of a loaded instance's
event loop). Here a flush only queues its text and goes on; one background task sends everything
queued as one script call, then hands each flush its answer (`answered`). The texts of one reply
are queued, sent and answered in the order flushed, so a tab on another instance gets them in
order. `append` returns an event that is set once the flush is stored and answered: the reply's
last flush waits for it, so its end never overtakes its text; and a tab joining the reply's room
on this instance reads the text so far only once what was flushed before its join is stored
(`wait_stored`), since it was not in the room when those flushes were emitted here.
"""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

import redis

log = logging.getLogger("chat.inflight")

MAX_BATCH = 500  # flushes per script call: bounds how long one call holds Redis
STORE_WAIT_S = 10.0  # the longest anyone waits for a queued flush to be stored
SCRIPT = """
local answers = {}
for i = 2, #ARGV do
  local k = (i - 2) * 3
  local appended = redis.pcall('APPEND', KEYS[k + 1], ARGV[i])
  if type(appended) == 'table' and appended.err then
    answers[i - 1] = false  -- this flush failed (a key of another type): the others go on
  else
    redis.call('EXPIRE', KEYS[k + 1], ARGV[1])
    local stopped = redis.call('EXISTS', KEYS[k + 2])
    local members = KEYS[k + 3] ~= '' and redis.pcall('HKEYS', KEYS[k + 3]) or nil
    if type(members) == 'table' and members.err then members = nil end
    if members then answers[i - 1] = {stopped, members} else answers[i - 1] = {stopped} end
  end
end
return answers
"""


class _Flush:
    __slots__ = ("answered", "keys", "stored", "text")

    def __init__(self, keys: tuple[str, str, str], text: str, answered: Callable) -> None:
        self.keys, self.text, self.answered = keys, text, answered
        self.stored = threading.Event()


class AppendBatch:
    """Queued flushes, sent together by a task started when the first is queued (and ending when
    the queue is empty). `answer(reply)` turns the script's reply for one flush (None when Redis
    failed) into what its `answered` callback takes."""

    def __init__(self, client, ttl_s: int, answer: Callable, spawn: Callable | None = None) -> None:
        self._script = client.register_script(SCRIPT)
        self._ttl_s, self._answer = ttl_s, answer
        self._spawn = spawn or (lambda target: threading.Thread(target=target, daemon=True).start())
        self._lock = threading.Lock()
        self._queued: list[_Flush] = []
        self._sending = False
        self._last: dict[str, _Flush] = {}  # the last flush queued per text key, until it is stored
        self._sending_now: list[_Flush] = []  # the batch under way

    def append(self, keys: tuple[str, str, str], text: str, answered: Callable) -> threading.Event:
        """Queue one flush (keys: text, stop flag, room presence or ""); the event is set once
        `answered` has run."""
        flush = _Flush(keys, text, answered)
        with self._lock:
            self._queued.append(flush)
            self._last[keys[0]] = flush
            if self._sending:
                return flush.stored
            self._sending = True
        try:
            self._spawn(self._send_all)
        except BaseException:
            self._strand()
            raise
        return flush.stored

    def _send_all(self) -> None:
        try:
            while True:
                time.sleep(0)  # the flushes ready in this pass of the event loop queue first
                with self._lock:
                    batch, self._queued = self._queued[:MAX_BATCH], self._queued[MAX_BATCH:]
                    if not batch:
                        self._sending = False
                        return
                self._sending_now = batch
                self._send(batch)
                self._sending_now = []
        except BaseException:  # stopped (the worker exits): nobody may wait for a send that will not come
            self._strand()
            raise

    def _strand(self) -> None:
        """Give up on every flush not yet answered (they are not stored) and let the next one start anew."""
        with self._lock:
            stranded, self._queued, self._sending = self._sending_now + self._queued, [], False
            self._sending_now = []
        for flush in stranded:
            self._settle(flush)

    def _send(self, batch: list[_Flush]) -> None:
        try:
            replies = self._script(keys=[key for flush in batch for key in flush.keys],
                                   args=[self._ttl_s, *(flush.text for flush in batch)])
        except redis.RedisError as error:
            log.warning("In-flight text not saved: %s", type(error).__name__)
            replies = [None] * len(batch)
        except Exception:  # never leave the flushes waiting: the replies go on without it
            log.exception("In-flight text not saved")
            replies = [None] * len(batch)
        for flush, reply in zip(batch, replies, strict=True):
            try:
                flush.answered(self._answer(reply))
            except Exception:
                log.exception("A flush's answer failed")
            finally:
                self._settle(flush)

    def wait_stored(self, text_key: str, timeout_s: float) -> None:
        """Until every flush queued so far for this text key is stored (answered or failed)."""
        with self._lock:
            flush = self._last.get(text_key)
        if flush is not None:
            flush.stored.wait(timeout_s)

    def _settle(self, flush: _Flush) -> None:
        with self._lock:
            if self._last.get(flush.keys[0]) is flush:
                del self._last[flush.keys[0]]
        flush.stored.set()
