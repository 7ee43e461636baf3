"""The sockets each browser session opened, so that logging out disconnects them: otherwise they
stay in the account's rooms (user:<id>, conversation:<id>) and keep receiving its replies.

Per process, like the sockets themselves. The instance answering POST /logout is the one that
holds the session's sockets, because an instance is chosen per browser (docs/ARCHITECTURE.md decision 9;
deploy/nginx.conf's ip_hash, the ingress's affinity cookie).
"""
from __future__ import annotations

from flask import Flask, current_app, session


class SessionSockets:
    """session id -> the Socket.IO sids opened under it."""

    def __init__(self) -> None:
        self.by_session: dict[str, set[str]] = {}
        self.session_of: dict[str, str] = {}

    def track(self, sid: str, session_id: str | None) -> None:
        if session_id:
            self.by_session.setdefault(session_id, set()).add(sid)
            self.session_of[sid] = session_id

    def forget(self, sid: str) -> None:
        session_id = self.session_of.pop(sid, None)
        sids = self.by_session.get(session_id, set())
        sids.discard(sid)
        if not sids:
            self.by_session.pop(session_id, None)

    def take(self, session_id: str | None) -> set[str]:
        """Stop tracking the session's sockets and hand back their sids."""
        sids = self.by_session.pop(session_id, set()) if session_id else set()
        for sid in sids:
            self.session_of.pop(sid, None)
        return sids


def init_app(app: Flask) -> None:
    app.extensions["chat_session_sockets"] = SessionSockets()


def track_socket(sid: str) -> None:
    """At a socket's connect: remember it under the session it was opened with."""
    current_app.extensions["chat_session_sockets"].track(sid, _session_id())


def forget_socket(sid: str) -> None:
    current_app.extensions["chat_session_sockets"].forget(sid)


def disconnect_session_sockets() -> int:
    """Disconnect every socket opened under this request's session (they leave all their rooms);
    call before the session id changes. Returns how many were disconnected."""
    sids = current_app.extensions["chat_session_sockets"].take(_session_id())
    server = current_app.extensions["socketio"].server
    for sid in sids:
        server.disconnect(sid, namespace="/")
    return len(sids)


def _session_id() -> str | None:
    """Flask-Session's server-side session id (what the session cookie names)."""
    return getattr(session, "sid", None)
