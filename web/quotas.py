"""Per-user quotas (docs/ARCHITECTURE.md decision 10): upload bytes, stored conversation bytes, imports at once.

Every check is a reservation (web/reservations.py): the amount is held first, atomically, then
what is already stored is measured, and the request is refused (its hold given back) when
stored + held passes the limit. Holding before measuring is what makes it safe under concurrency:
work that stores its bytes and then gives its hold back may be counted twice for a moment, but
never missed, and two requests racing for the last room see each other's holds.
"""
from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass

from flask import Flask, current_app

from .context import get_store
from .reservations import MemoryLedger, RedisLedger

log = logging.getLogger("chat.quotas")
MB = 1024 * 1024
JOB_HOLD_S = 3600  # an upload whose job has not stored it yet (agents/file_jobs.ORPHAN_AGE_S)
IMPORT_HOLD_S = 600  # an import being stored
MESSAGE_HOLD_S = 60  # a message between its check and its INSERT: never given back, it expires
UNAVAILABLE = "Quotas cannot be checked right now, so nothing was stored. Please try again in a moment."
_lock = threading.Lock()
Release = Callable[[], None]


class QuotaExceeded(Exception):
    """A refusal with its HTTP status (413 for room, 429 for work already running, 503 for Redis down)."""

    def __init__(self, message: str, status: int = 413, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.message, self.status, self.retry_after = message, status, retry_after


@dataclass(frozen=True)
class Limit:
    """One scope's limit: `used` measures what is already stored, `refusal` words a refusal."""

    scope: str
    limit: float
    refusal: Callable[[int], str]
    used: Callable[[], int] = lambda: 0
    status: int = 413


def ledger(app: Flask | None = None):
    """The app's ledger: Redis when REDIS_URL is set (shared by every worker), else this process's."""
    app = app or current_app._get_current_object()
    found = app.extensions.get("chat_quota_ledger")
    if found is None:
        with _lock:
            found = app.extensions.get("chat_quota_ledger")
            if found is None:
                client = app.config.get("SESSION_REDIS")
                found = app.extensions["chat_quota_ledger"] = (  # a message's hold is on its reply's path
                    RedisLedger(getattr(client, "direct", client)) if client else MemoryLedger())
    return found


def reserve(book, limits: list[Limit], amount: int, ttl_s: float) -> Release:
    """Hold `amount` in every scope or raise QuotaExceeded for the first limit it would pass;
    returns the function that gives the hold back (once; later calls do nothing)."""
    try:
        hold, held = book.hold([limit.scope for limit in limits], amount, ttl_s)
    except Exception as error:  # Redis down: refuse clearly rather than let everything through
        log.warning("Quota hold failed: %s", type(error).__name__)
        raise QuotaExceeded(UNAVAILABLE, 503, 5) from error
    release = _once(book, hold)
    try:
        for limit, total in zip(limits, held, strict=False):
            used = limit.used() + total - amount  # everything except this request
            if used + amount > limit.limit:
                raise QuotaExceeded(limit.refusal(used), limit.status, 1 if limit.status == 429 else None)
    except BaseException:
        release()
        raise
    return release


def hold_upload(store, user_id: str, size: int, config) -> Release:
    """The user's upload quota and the server's total, counting uploads whose job is still running."""
    quota, total = config.UPLOAD_QUOTA_MB * MB, config.UPLOAD_TOTAL_MB * MB
    mine = Limit(f"upload:{user_id}", quota, lambda used: (
        f"Your uploads use {used / MB:.1f} MB of your {config.UPLOAD_QUOTA_MB:g} MB; this file needs "
        f"{size / MB:.1f} MB more. Delete conversations with uploads you no longer need."),
        lambda: store.upload_bytes(user_id))
    everyone = Limit("upload:all", total, lambda used: (
        "This server's upload storage is full. Ask its administrator, or try again later."),
        lambda: store.upload_bytes(None))
    return reserve(ledger(), [mine, everyone], size, JOB_HOLD_S)


def hold_import_slot(user_id: str, config) -> Release:
    """One import at a time per user, IMPORTS_AT_ONCE for the whole server (429 otherwise)."""
    slots = [Limit(f"import:{user_id}", 1, lambda _: "Another import of yours is still running. Try again "
                   "once it has finished.", status=429),
             Limit("import:all", config.IMPORTS_AT_ONCE, lambda _: "The server is busy with other imports. "
                   "Try again in a moment.", status=429)]
    return reserve(ledger(), slots, 1, IMPORT_HOLD_S)


def hold_storage(store, user_id: str, size: int, config, what: str) -> Release:
    """Room for `size` more bytes of messages in the user's storage quota (413 otherwise)."""
    return reserve(ledger(), [_storage(store, user_id, size, config, what)], size, IMPORT_HOLD_S)


def message_refusal(user_id: str, text: str) -> dict | None:
    """Before a user message is stored (socket `send_message`): None, or the acknowledgement that
    refuses it. The hold is not given back: it expires once the message has surely been stored."""
    config, size = current_app.config["CHAT"], len(text.encode("utf-8", "surrogatepass"))
    try:
        reserve(ledger(), [_storage(get_store(), user_id, size, config, "This message")], size, MESSAGE_HOLD_S)
    except QuotaExceeded as error:
        return {"ok": False, "message": error.message, **({"retry_after": error.retry_after}
                                                          if error.retry_after else {})}
    return None


def _storage(store, user_id: str, size: int, config, what: str) -> Limit:
    """The storage quota on the user's stored messages (imports are messages too)."""
    return Limit(f"storage:{user_id}", config.STORAGE_QUOTA_MB * MB, lambda used: (
        f"Your conversations use {_mb(used)} MB of your {config.STORAGE_QUOTA_MB:g} MB of storage; "
        f"{what.lower()} needs {_mb(size)} MB more. Delete conversations you no longer need, then try again."),
        lambda: store.storage_bytes(user_id))


def _mb(size: int) -> str:
    return f"{size / MB:.1f}" if size >= MB // 10 else f"{size / MB:.3f}"


def _once(book, hold) -> Release:
    """Give the hold back once; a failure is logged, never raised (callers are `finally` blocks),
    and the hold then simply expires."""
    done = threading.Event()

    def release() -> None:
        if done.is_set():
            return
        done.set()
        try:
            book.release(hold)
        except Exception as error:  # noqa: BLE001 - the hold expires by itself; releasing it must not fail the request
            log.warning("Quota hold not given back (it will expire): %s", type(error).__name__)
    return release
