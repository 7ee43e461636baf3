"""Per-request context: who the user is, the process's store, and shared lookups."""
from __future__ import annotations

import threading
import uuid

from flask import Flask, abort, current_app, redirect, request, session, url_for

from agents import offload
from storage import ConversationStore, make_store

from .sessions import require_available_sessions

NO_IDENTITY_ENDPOINTS = {"system.health", "system.live", "system.ready", "system.prometheus_metrics",
                         "pages.vendor", "static"}
# Open to anyone even with AUTH_REQUIRED: the way in, and what the login page itself loads.
PUBLIC_ENDPOINTS = NO_IDENTITY_ENDPOINTS | {"accounts.login_page", "accounts.register_page", "accounts.login",
                                            "accounts.register", "accounts.logout", "accounts.account",
                                            "openapi.openapi"}
LOGIN_NEEDED = "Log in to use this app."
PAGES = {"pages.index", "pages.search_page"}  # redirected to /login; everything else answers 401

_lock = threading.Lock()


class _Holder:
    """The store of this process, built on first use (after gunicorn forks)."""

    def __init__(self, config) -> None:
        self.config = config
        self.store: ConversationStore | None = None

    def get(self) -> ConversationStore:
        if self.store is None:
            with _lock:
                if self.store is None:
                    store = make_store(self.config)
                    if self.config.AUTO_MIGRATE:
                        store.migrate()
                    # sqlite3 blocks the whole worker under eventlet/gevent (but for quick reads, see
                    # SqliteStore.LOOP_READS); pymongo is cooperative.
                    self.store = offload.off_loop(store, store.loop_twin()) if store.backend == "sqlite" else store
        return self.store


def init_app(app: Flask) -> None:
    app.extensions["chat_store"] = _Holder(app.config["CHAT"])
    app.before_request(ensure_identity)


def get_store() -> ConversationStore:
    return current_app.extensions["chat_store"].get()


def ensure_identity() -> None:
    """Give each browser an anonymous user id in its server-side session on first visit."""
    if request.endpoint in NO_IDENTITY_ENDPOINTS:
        return
    new_identity = "user_id" not in session
    require_available_sessions(new_identity)
    if new_identity:
        session["user_id"] = str(uuid.uuid4())
    if current_app.config["CHAT"].AUTH_REQUIRED and "username" not in session \
            and request.endpoint not in PUBLIC_ENDPOINTS:
        if request.method == "GET" and request.accept_mimetypes.accept_html and request.endpoint in PAGES:
            return redirect(url_for("accounts.login_page"))
        abort(401, LOGIN_NEEDED)


def login_missing() -> bool:
    """AUTH_REQUIRED is on and this session has not logged in (socket connects check this)."""
    return current_app.config["CHAT"].AUTH_REQUIRED and "username" not in session


def current_user_id() -> str:
    return session["user_id"]


def owned_conversation(conversation_id: str) -> dict:
    """The user's conversation, or 404 exactly as if it did not exist."""
    conversation = get_store().get_conversation(current_user_id(), conversation_id)
    if conversation is None:
        abort(404, "Conversation not found.")
    return conversation
