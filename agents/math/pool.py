"""Math workers shared fairly: a few sandboxes, one question at a time per user, a bounded wait.

With one worker, a user sending slow sums (each up to the 1 s timeout) held every other user's
`2+2` behind them for 10 s and more. Now MATH_WORKERS sandboxes serve everyone; a user's second
question while the first runs is refused at once; a question that finds no free worker within
MATH_QUEUE_WAIT_S is told the calculator is busy; and a worker killed for being late is replaced
in the background, so nobody waits for its successor to start. Waiting is on a threading
Condition, which eventlet's and gevent's monkey-patching make cooperative.
"""
from __future__ import annotations

import atexit
import collections
import logging
import threading
import time
from collections.abc import Callable

from .limits import MathRefused
from .sandbox import Sandbox

log = logging.getLogger("chat.agent.math")
DEFAULT_WORKERS = 2          # MATH_WORKERS: one per core on the 2-core machine it was measured on
DEFAULT_QUEUE_WAIT_S = 3.0   # MATH_QUEUE_WAIT_S
ONE_AT_A_TIME = ("You already have a calculation running (or one that took too long is still being stopped); "
                 "please wait for it, then ask again.")
BUSY = ("The calculator is busy with other people's calculations right now; "
        "please try again in a few seconds.")


class Pool:
    """`workers` sandboxes, each lent to one request at a time; request() is safe from many threads."""

    def __init__(self, workers: int = DEFAULT_WORKERS, queue_wait_s: float = DEFAULT_QUEUE_WAIT_S,
                 factory: Callable[[], Sandbox] = Sandbox) -> None:
        self.workers, self.queue_wait_s = max(1, int(workers)), max(0.0, float(queue_wait_s))
        self._all = [factory() for _ in range(self.workers)]
        self._idle = list(self._all)  # a stack: the last one given back is the warmest
        self._users: set[str] = set()
        self._queue: collections.deque[object] = collections.deque()  # tickets of those waiting, in order
        self._free = threading.Condition()  # guards _idle, _users, _queue and _last
        self._last: Sandbox | None = None
        self._warmed = False

    @property
    def last_pid(self) -> int | None:
        """The pid of the worker that took the latest request, if it is still running."""
        return self._last.pid if self._last is not None else None

    def request(self, payload: dict, timeout_s: float, user: str | None = None) -> dict:
        """The worker's reply. MathRefused when `user` already has a question running, when no
        worker is free within queue_wait_s, or when the worker is late or dies (it is replaced)."""
        self._claim(user)
        try:
            sandbox = self._take()
        except MathRefused:
            self._give_back(None, user)
            raise
        try:
            return sandbox.request(payload, timeout_s)
        finally:
            self._give_back(sandbox, user)

    def close(self) -> None:
        """Stop every worker (one busy with a request finishes it first); each restarts on next use."""
        for sandbox in self._all:
            sandbox.close()

    def _claim(self, user: str | None) -> None:
        """One question at a time per user, so nobody holds more than one worker."""
        if user is None:
            return
        with self._free:
            if user in self._users:
                raise MathRefused(ONE_AT_A_TIME)
            self._users.add(user)

    def _take(self) -> Sandbox:
        """The warmest idle sandbox, first come first served (a user asking again right after an
        answer queues behind those already waiting), waiting at most queue_wait_s."""
        deadline, ticket = time.monotonic() + self.queue_wait_s, object()
        with self._free:
            self._queue.append(ticket)
            try:
                while not (self._idle and self._queue[0] is ticket):
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        log.warning("Math workers all busy for %g s; a question was turned away", self.queue_wait_s)
                        raise MathRefused(BUSY)
                    self._free.wait(remaining)
                sandbox = self._last = self._idle.pop()
            finally:
                self._queue.remove(ticket)
                self._free.notify_all()  # the next in line may now be first
            first, self._warmed = not self._warmed, True
        if first:  # the others start now, in the background, rather than when a second user needs one
            for other in self._all:
                if other is not sandbox:
                    _in_background(other.start)
        return sandbox

    def _give_back(self, sandbox: Sandbox | None, user: str | None) -> None:
        """Back to the stack, and the user free to ask again. One that was killed (late) or died
        starts afresh off the caller's path, its user still counted as busy until it is ready:
        otherwise their next question would take a second worker while this one restarts."""
        if sandbox is not None and sandbox.pid is None:
            _in_background(sandbox.start, then=lambda: self._push(sandbox, user))
        else:
            self._push(sandbox, user)

    def _push(self, sandbox: Sandbox | None, user: str | None) -> None:
        with self._free:
            self._users.discard(user)
            if sandbox is not None:
                self._idle.append(sandbox)
                self._free.notify_all()


def _in_background(start: Callable[[], None], then: Callable[[], None] = lambda: None) -> None:
    """Run start() then then() in a thread (a green one when monkey-patched); a start that fails is
    left for the next request, which tries again and tells its user the calculator could not start."""
    def run() -> None:
        try:
            start()
        except MathRefused:
            pass
        finally:
            then()
    threading.Thread(target=run, name="math-worker-start", daemon=True).start()


_pool = Pool()
_configuring = threading.Lock()


def configure(workers: int, queue_wait_s: float) -> None:
    """Use MATH_WORKERS and MATH_QUEUE_WAIT_S; a no-op unless they changed (then the pool is rebuilt)."""
    global _pool
    with _configuring:
        if (max(1, int(workers)), max(0.0, float(queue_wait_s))) == (_pool.workers, _pool.queue_wait_s):
            return
        old, _pool = _pool, Pool(workers, queue_wait_s)
    old.close()


def request(payload: dict, timeout_s: float, user: str | None = None) -> dict:
    """Ask the shared pool; see Pool.request."""
    return _pool.request(payload, timeout_s, user)


def worker_pid() -> int | None:
    """The pid of the worker that took the latest request (None before first use or after shutdown)."""
    return _pool.last_pid


def shutdown() -> None:
    """Stop the workers; the next request starts them again."""
    _pool.close()


atexit.register(shutdown)
