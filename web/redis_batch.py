"""A Redis client that sends the commands of concurrent callers together, one round trip for all.

Under load a worker has hundreds of replies streaming and turns starting, each making its own
small Redis calls (session read, quota, presence, claim, flushes...). Sent one by one, each
round trip costs a send and a receive system call and an event-loop wake-up: profiled with
py-spy, 35-40% of a loaded instance's event-loop samples were Redis round trips, most of it in
the send. Here the first caller yields to the event loop once, so that the green threads ready
with it queue behind it, then sends all queued as one pipeline (not a transaction: each command
keeps its own result or error); callers arriving while that round trip is under way queue, and
the next of them sends everything queued likewise. An idle worker sends each command on its own
as before; a busy one sends fewer, larger writes. The same idea as ioredis' auto-pipelining.

Only single commands are batched (scripts too: EVALSHA is one command); blocking ones are not
(UNBATCHED). `pipeline()`, `pubsub()` and locks go straight to the connection pool as usual. Give
the client a socket timeout: a stuck read holds up everyone queued behind it, not only its caller.
"""
from __future__ import annotations

import copy
import threading
import time

import redis

# commands that block or change the connection's state: one of them in a batch would hold up
# everyone queued behind it (no caller of ours sends them; this keeps it so)
UNBATCHED = frozenset({"BLPOP", "BRPOP", "BLMOVE", "BLMPOP", "BRPOPLPUSH", "BZPOPMIN", "BZPOPMAX", "BZMPOP",
                       "XREAD", "XREADGROUP", "WAIT", "WAITAOF", "SELECT", "WATCH", "MULTI", "SUBSCRIBE",
                       "PSUBSCRIBE", "MONITOR", "CLIENT"})


class _Call:
    __slots__ = ("args", "done", "error", "lead", "options", "result")

    def __init__(self, args: tuple, options: dict) -> None:
        self.args, self.options = args, options
        self.result = self.error = None
        self.done: threading.Lock | None = None  # held while queued; released once: answered, or handed the lead
        self.lead = False

    def queue(self) -> None:
        """A lock, not an Event: a third of the cost to make (it was 3.7% of a loaded worker)."""
        self.done = threading.Lock()
        self.done.acquire()

    def signal(self) -> None:
        self.done.release()


class BatchingRedis(redis.Redis):
    """redis.Redis whose single commands, issued concurrently by green threads or threads, share
    round trips. Works the same under eventlet (its monkey-patched Lock) and real threads."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._batch_lock = threading.Lock()
        self._queued: list[_Call] = []
        self._sending = False

    @property
    def direct(self) -> redis.Redis:
        """The same server and connection pool, without batching: for the few calls a reply's first
        token waits for (a quota hold, a claim). Queued behind another caller's round trip, such a
        call waited for that one, the hand-over and then its own; alone it waits for its own."""
        direct = self.__dict__.get("_direct")
        if direct is None:
            direct = self.__dict__["_direct"] = redis.Redis(connection_pool=self.connection_pool)
        return direct

    def execute_command(self, *args, **options):
        if str(args[0]).upper() in UNBATCHED:
            return super().execute_command(*args, **options)
        call = _Call(args, options)
        with self._batch_lock:
            if self._sending:
                call.queue()
                self._queued.append(call)
            else:
                self._sending = call.lead = True
        if not call.lead:
            self._wait(call)
        else:  # first come: let the other green threads ready now queue behind it first
            self._gather(call)
        if call.lead:  # first come, or handed the lead by the caller whose round trip just ended
            self._send(call)
        if call.error is not None:
            raise call.error
        return call.result

    def _wait(self, call: _Call) -> None:
        """Until the call was answered, or handed the lead. A caller killed while waiting (a green
        thread's GreenletExit) leaves the queue, or passes on a lead it was just handed."""
        try:
            call.done.acquire()
        except BaseException:
            with self._batch_lock:
                if call in self._queued:
                    self._queued.remove(call)
                    raise
            if call.lead:
                self._pass_lead()
            raise

    def _gather(self, call: _Call) -> None:
        """Yield once to the event loop before a first-come send: under load the green threads
        that woke with this one (paced reads of many replies share timer ticks) run first, and
        their commands go in this round trip instead of each in its own (most flushes went alone:
        their write was 10% of a loaded worker). Idle, it costs one pass of the loop. Under real
        threads it only lets another thread take the GIL."""
        try:
            time.sleep(0)
        except BaseException:  # killed while gathering: whoever queued meanwhile must not wait forever
            call.lead = False
            self._pass_lead()
            raise

    def _send(self, call: _Call) -> None:
        """Send `call` and all queued meanwhile, then hand the lead to the first caller queued
        behind this round trip, so no caller waits for more than one round trip before its own."""
        with self._batch_lock:
            calls, self._queued = [call, *self._queued], []
        try:
            if len(calls) == 1:
                self._one(call)
            else:
                self._many(calls)
        except BaseException:  # this green thread was killed mid-round-trip: the others' outcome is unknown
            for other in calls:
                if other is not call and other.error is None:
                    other.error = redis.ConnectionError("The round trip was interrupted (its sender was stopped).")
            raise
        finally:
            for answered in calls:
                answered.lead = False
                if answered is not call:  # the others wait; this one was signalled already, if queued
                    answered.signal()
            self._pass_lead()

    def _pass_lead(self) -> None:
        with self._batch_lock:
            if self._queued:
                following = self._queued.pop(0)
                following.lead = True
                following.signal()
            else:
                self._sending = False

    def _one(self, call: _Call) -> None:
        try:
            call.result = super().execute_command(*call.args, **call.options)
        except Exception as error:  # noqa: BLE001 - handed to the caller, raised in its own frame
            call.error = error

    def _many(self, calls: list[_Call]) -> None:
        pipe = self.pipeline(transaction=False)
        for call in calls:
            pipe.execute_command(*call.args, **call.options)
        try:
            results = pipe.execute(raise_on_error=False)
        except Exception as error:  # noqa: BLE001 - the connection failed: every caller gets it
            for call in calls:  # a copy each: one object raised in many frames would mix their tracebacks
                call.error = copy.copy(error)
            return
        for call, result in zip(calls, results, strict=True):
            if isinstance(result, Exception):
                call.error = result
            else:
                call.result = result
