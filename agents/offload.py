"""The one module that knows the async mode (docs/ARCHITECTURE.md decision 6).

- `pauser` gives long pure-Python work (chunking a large file) a function to call often: it
  yields to the event loop every few milliseconds. Measured under gunicorn's eventlet worker,
  this kept the longest stall lower than moving the work to a real thread, where the GIL
  hand-over (every 5 ms, several per request) piled up to 60-110 ms stalls.
- `run_blocking` / `off_loop` put calls into C libraries that block without holding the GIL
  (sqlite3) on a real thread, so the worker keeps serving its other clients meanwhile.
- `wait_for` waits for a background task, whichever kind of thread the mode made it.
- `bounded_map` runs I/O-bound calls (one model call per chunk) concurrently, at most `size`
  in flight, using the mode's own kind of thread.
In threading mode all of this is plain threads or direct calls.
"""
from __future__ import annotations

import functools
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")
MODES = ("threading", "eventlet", "gevent")
_mode = "threading"


def configure(async_mode: str) -> None:
    """Called once by create_app with Flask-SocketIO's resolved async mode."""
    global _mode
    if async_mode not in MODES:
        raise ValueError(f"unknown async mode {async_mode!r}")
    _mode = async_mode


def mode() -> str:
    return _mode


def wait_for(task) -> None:
    """Until a task from socketio.start_background_task has ended: a thread or a gevent greenlet
    (join), or an eventlet green thread (wait, which raises what the task raised)."""
    (getattr(task, "join", None) or task.wait)()


def pauser(slice_s: float = 0.004) -> Callable[[], None]:
    """A function to call between small steps of long CPU work: yields to the loop once per slice."""
    if _mode == "threading":
        return lambda: None
    if _mode == "eventlet":
        from eventlet import sleep
    else:
        from gevent import sleep
    last = [time.perf_counter()]

    def pause() -> None:
        now = time.perf_counter()
        if now - last[0] >= slice_s:
            sleep(0)
            last[0] = time.perf_counter()
    return pause


def run_blocking(function: Callable[..., R], *args) -> R:
    """function(*args) on a real thread, the caller's green thread waiting without blocking the hub."""
    if _mode == "eventlet":
        from eventlet import tpool
        return tpool.execute(function, *args)
    if _mode == "gevent":
        import gevent
        return gevent.get_hub().threadpool.apply(function, args)
    return function(*args)


class OffLoop:
    """Runs every method of the wrapped object on a real thread: for blocking libraries (sqlite3)
    that would otherwise stall an eventlet or gevent worker for the length of each call.

    With a `twin` (SqliteStore.loop_twin), the quick reads and the turn's writes it names
    (LOOP_READS, LOOP_WRITES) run on the loop itself: cheaper than the hop to a thread. One that
    fails with LOOP_RETRY (busy) runs on a thread.
    """

    def __init__(self, target, twin=None) -> None:
        self._target, self._twin = target, twin

    def __getattr__(self, name: str):
        value = getattr(self._target, name)
        if not callable(value):
            return value
        if self._twin is not None and (name in self._twin.LOOP_READS or name in self._twin.LOOP_WRITES):
            return _on_loop_first(getattr(self._twin, name), value, self._twin.LOOP_RETRY)

        @functools.wraps(value)
        def call(*args, **kwargs):
            return run_blocking(functools.partial(value, *args, **kwargs))
        return call


def _on_loop_first(quick, value, retry: tuple[type[BaseException], ...]):
    @functools.wraps(value)
    def call(*args, **kwargs):
        try:
            return quick(*args, **kwargs)
        except retry:
            return run_blocking(functools.partial(value, *args, **kwargs))
    return call


def off_loop(target, twin=None):
    """The target itself in threading mode, else an OffLoop around it (see OffLoop for `twin`)."""
    return target if _mode == "threading" else OffLoop(target, twin)


def bounded_map(function: Callable[[T], R], items: Iterable[T], size: int) -> list[R]:
    """[function(item) ...] in order, at most `size` running at once; the first exception propagates."""
    items = list(items)
    size = max(1, min(size, len(items) or 1))
    if _mode == "eventlet":
        import eventlet
        return list(eventlet.GreenPool(size).imap(function, items))
    if _mode == "gevent":
        import gevent.pool
        return list(gevent.pool.Pool(size).imap(function, items))
    with ThreadPoolExecutor(max_workers=size, thread_name_prefix="chat-pool") as pool:
        return list(pool.map(function, items))
