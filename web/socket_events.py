"""Socket.IO events (the public contract, extended): registration, presence (connect, join, stop) and the
refusal for an event that failed. Each returns its ack; replies stream to a room per conversation, so every
tab of the user sees them (and every worker, with Redis). Sending is web/chat_events.py; regenerating and
editing, web/branch_events.py; the reply itself, web/generation.py."""
from __future__ import annotations

import logging

from flask import g, request, session
from flask_socketio import ConnectionRefusedError, SocketIO, emit, join_room

import logs
import metrics
from storage.sqlite_store import is_busy

from . import errors, sessions, socket_sessions
from .branch_events import regenerate
from .chat_events import send_message
from .context import LOGIN_NEEDED, login_missing
from .inflight import live_snapshot
from .socket_common import inflight, is_stored, owned_conversation_id, refuse
from .socket_emitter import conversation_room, user_room

__all__ = ["register", "user_room"]
log = logging.getLogger("chat.socket")


def register(socketio: SocketIO) -> None:
    """Attach the handlers; a handler's return value is the client's acknowledgement. A client may
    send an event with no payload or extra arguments: they default to None and are ignored, so it
    still gets its ack instead of a TypeError."""

    @socketio.on("connect")
    @logs.bind_request_id()
    def on_connect(auth=None):
        """Browser connects; needs the identity its HTTP session got on the first page load."""
        if "user_id" not in session:
            raise ConnectionRefusedError("Load the page first so the server can recognise this browser.")
        if login_missing():
            raise ConnectionRefusedError(LOGIN_NEEDED)
        join_room(user_room(session["user_id"]))
        socket_sessions.track_socket(request.sid)  # logging out disconnects it
        metrics.CONNECTIONS.inc()
        emit("response", {"data": "Connected"})

    @socketio.on("disconnect")
    def on_disconnect(reason=None):
        """A socket closes: forget it for log-out and count it out of the connections gauge."""
        socket_sessions.forget_socket(request.sid)
        metrics.CONNECTIONS.dec()

    @socketio.on("heartbeat")
    def on_heartbeat(data=None, *_):
        """A cheap round trip: the page's connection check, and the benchmarks' event-loop probe."""
        return {"ok": True}

    @socketio.on("join_conversation")
    @logs.bind_request_id()
    def on_join(data=None, *_):
        """A tab opens a conversation: join its room and get any reply still being generated."""
        conversation_id = owned_conversation_id(data)
        if conversation_id is None:
            return refuse("Conversation not found.")
        join_room(conversation_room(conversation_id))
        return {"ok": True, "conversation_id": conversation_id,
                "generating": live_snapshot(inflight(), conversation_id, is_stored())}

    @socketio.on("send_message")
    @logs.bind_request_id()
    def on_send_message(data=None, *_):
        """Store the user's message, then generate the reply in the background; acks the ids."""
        return send_message(socketio, data)

    @socketio.on("regenerate")
    @logs.bind_request_id()
    def on_regenerate(data=None, *_):
        """Answer a user message again: the new reply is a sibling of the old (‹ 1/2 › on the page)."""
        return regenerate(socketio, data)

    @socketio.on("stop_generation")
    @logs.bind_request_id()
    def on_stop(data=None, *_):
        """Stop the conversation's reply wherever it is generated; the partial reply is kept."""
        conversation_id = owned_conversation_id(data)
        if conversation_id is None:
            return refuse("Conversation not found.")
        reply_id = inflight().request_stop(conversation_id)
        return {"ok": True, "stopping": reply_id is not None, "message_id": reply_id}

    @socketio.on_error_default
    def on_error(error):
        """An event that failed (the database busy, Redis down) answers a clear refusal, not silence."""
        return refuse(_failure_message(error))


def _failure_message(error: Exception) -> str:
    """What the user reads when an event failed; outages are explained, anything else is logged."""
    if g.get("session_unavailable"):
        return sessions.UNAVAILABLE
    if is_busy(error):
        return errors.STORE_BUSY
    metrics.error("internal")
    log.error("Socket event failed", exc_info=error)
    return "Something went wrong on the server. Please try again in a moment."
