"""The replies (and upload analyses) this process is running now: for the in-flight gauge, the
per-user cap, and stopping replies cleanly at shutdown (gunicorn.conf.py's worker_exit)."""
from __future__ import annotations

import threading
import time

_lock = threading.Lock()
_running: dict[str, tuple[str, str]] = {}  # reply_id -> (user_id, conversation_id)


def started(reply_id: str, user_id: str, conversation_id: str) -> None:
    with _lock:
        _running[reply_id] = (user_id, conversation_id)


def try_start(work_id: str, user_id: str, limit: int | None) -> bool:
    """Count other model work (an upload's analysis) against the per-user cap: checked and counted
    in one step, so concurrent requests cannot all pass. It has no conversation to stop."""
    with _lock:
        if limit is not None and sum(1 for owner, _ in _running.values() if owner == user_id) >= limit:
            return False
        _running[work_id] = (user_id, "")
        return True


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
        if conversation_id:  # upload jobs have none: they end by themselves
            inflight.request_stop(conversation_id)
    deadline = time.monotonic() + seconds
    while count() and time.monotonic() < deadline:
        socketio.sleep(0.05)  # under eventlet/gevent this lets the replies run to their stop
    return len(running)
