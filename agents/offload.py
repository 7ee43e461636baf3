"""The one module that knows the async mode (DESIGN decision 6).

`run_blocking` moves CPU-bound work (tokenising a large file) onto a real OS thread, so an
eventlet or gevent worker keeps serving its other clients meanwhile; `bounded_map` runs
I/O-bound calls (one model call per chunk) concurrently with at most `size` in flight, using
the mode's own kind of thread. In threading mode both are plain threads.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Iterable, TypeVar

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


def run_blocking(function: Callable[..., R], *args) -> R:
    """function(*args) on a real thread, the caller's green thread waiting without blocking the hub."""
    if _mode == "eventlet":
        from eventlet import tpool
        return tpool.execute(function, *args)
    if _mode == "gevent":
        import gevent
        return gevent.get_hub().threadpool.apply(function, args)
    return function(*args)


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
