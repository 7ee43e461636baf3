"""The replies this process is generating now: for the in-flight gauge, the per-user cap, and
stopping them cleanly at shutdown (gunicorn.conf.py's worker_exit)."""
from __future__ import annotations

import threading
import time

_lock = threading.Lock()
_running: dict[str, tuple[str, str]] = {}  # reply_id -> (user_id, conversation_id)


def started(reply_id: str, user_id: str, conversation_id: str) -> None:
    with _lock:
        _running[reply_id] = (user_id, conversation_id)


def finished(reply_id: str) -> None:
    with _lock:
        _running.pop(reply_id, None)


def count(user_id: str | None = None) -> int:
    with _lock:
        return sum(1 for owner, _ in _running.values() if user_id is None or owner == user_id)


def finish_or_stop(app, let_finish_s: float, stop_s: float) -> int:
    """At shutdown: give replies in flight `let_finish_s` to end by themselves, then stop the rest
    (stored as `stopped`). Returns how many had to be stopped."""
    socketio = app.extensions["socketio"]
    deadline = time.monotonic() + let_finish_s
    while count() and time.monotonic() < deadline:
        socketio.sleep(0.1)
    return drain(app, stop_s)


def drain(app, seconds: float) -> int:
    """Ask every local reply to stop (the partial text is stored as `stopped`), then wait up to
    `seconds` for them to be stored. Returns how many were still running."""
    with _lock:
        running = dict(_running)
    if not running:
        return 0
    inflight, socketio = app.extensions["chat_inflight"], app.extensions["socketio"]
    for _, conversation_id in running.values():
        inflight.request_stop(conversation_id)
    deadline = time.monotonic() + seconds
    while count() and time.monotonic() < deadline:
        socketio.sleep(0.05)  # under eventlet/gevent this lets the replies run to their stop
    return len(running)
