"""Socket.IO events (the public contract, extended). Each returns its ack; replies stream to a room
per conversation, so every tab of the user sees them (and every worker, with Redis)."""
from __future__ import annotations

import logging
import uuid

from flask import current_app, g, request, session
from flask_socketio import ConnectionRefusedError, SocketIO, emit, join_room

import logs
import metrics
import threads
import utils
from agents import compaction, titler
from agents.turn import TurnDeps, run_turn
from storage.sqlite_store import is_busy

from . import errors, generations, quotas, sessions, socket_sessions
from .context import LOGIN_NEEDED, current_user_id, get_store, login_missing
from .inflight import claim, live_snapshot
from .socket_emitter import SocketEmitter, conversation_room

log = logging.getLogger("chat.socket")
MAX_CLIENT_ID = 100
BUSY = "A reply is still being generated in this conversation. Stop it or wait for it."


def user_room(user_id: str) -> str:
    """Every tab of one user: file-job progress goes here, whichever conversation is open."""
    return f"user:{user_id}"


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
        conversation_id = _owned_conversation_id(data)
        if conversation_id is None:
            return _refuse("Conversation not found.")
        join_room(conversation_room(conversation_id))
        return {"ok": True, "conversation_id": conversation_id,
                "generating": live_snapshot(_inflight(), conversation_id, _is_stored())}

    @socketio.on("send_message")
    @logs.bind_request_id()
    def on_send_message(data=None, *_):
        """Store the user's message, then generate the reply in the background; acks the ids."""
        return _send_message(socketio, data)

    @socketio.on("regenerate")
    @logs.bind_request_id()
    def on_regenerate(data=None, *_):
        """Answer a user message again: the new reply is a sibling of the old (‹ 1/2 › on the page)."""
        return _regenerate(socketio, data)

    @socketio.on("stop_generation")
    @logs.bind_request_id()
    def on_stop(data=None, *_):
        """Stop the conversation's reply wherever it is generated; the partial reply is kept."""
        conversation_id = _owned_conversation_id(data)
        if conversation_id is None:
            return _refuse("Conversation not found.")
        reply_id = _inflight().request_stop(conversation_id)
        return {"ok": True, "stopping": reply_id is not None, "message_id": reply_id}

    @socketio.on_error_default
    def on_error(error):
        """An event that failed (the database busy, Redis down) answers a clear refusal, not silence."""
        return _refuse(_failure_message(error))


def _send_message(socketio: SocketIO, data) -> dict:
    """Plain send continues the newest message; `parent_message_id` continues another branch;
    `edit_of` makes the message a sibling of the user message it edits."""
    if not isinstance(data, dict):
        return _refuse("The message payload must be an object.")
    text, client_id = data.get("message"), data.get("client_message_id")
    if not isinstance(text, str) or not text.strip():
        return _refuse("The message must be non-empty text.")
    if len(text) > utils.MAX_MESSAGE_CHARS or "\x00" in text or not utils.storable(text):
        return _refuse(f"The message must be at most {utils.MAX_MESSAGE_CHARS} characters of text; "
                       "upload longer text as a file.")
    if client_id is not None and not _short_id(client_id):
        return _refuse(f"client_message_id must be a string of 1 to {MAX_CLIENT_ID} characters.")
    store, user_id = get_store(), current_user_id()
    document_id = data.get("document_id")
    if document_id is not None and (not _short_id(document_id) or store.get_document(user_id, document_id) is None):
        return _refuse("The attached file was not found.")
    model, refusal = _picked_model(data)
    if refusal:
        return refusal
    refusal = _over_limit(user_id) or quotas.message_refusal(user_id, text)  # storage quota: web/quotas.py
    if refusal:
        return refusal
    resent = _resent(store, user_id, client_id)
    if resent:
        return resent
    if data.get("conversation_id") is None:
        if data.get("parent_message_id") is not None or data.get("edit_of") is not None:
            return _refuse("A new conversation has no messages to continue or edit.")
        conversation_id = store.create_conversation(user_id, titler.first_line_title(text))["conversation_id"]
    else:
        conversation_id = _owned_conversation_id(data)
        if conversation_id is None:
            return _refuse("Conversation not found.")
    placement, refusal = _placement(store, user_id, conversation_id, data)
    if refusal:
        return refusal
    message_id = _message_id(user_id, client_id)
    reply_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"reply:{message_id}"))
    join_room(conversation_room(conversation_id))
    ack = {"ok": True, "conversation_id": conversation_id, "message_id": message_id, "reply_id": reply_id}
    if _already_answered(store, user_id, conversation_id, reply_id):
        return {**ack, "duplicate": True}
    if not claim(_inflight(), conversation_id, reply_id, _is_stored()):
        return _refuse(BUSY)
    try:
        store.append_message(user_id, conversation_id, "user", text, tokens=utils.message_tokens("user", text),
                             message_id=message_id, **placement)
    except Exception:
        _inflight().finish(conversation_id, reply_id)  # else the conversation would stay "busy"
        raise
    metrics.user_message_stored()
    _start_generation(socketio, user_id, conversation_id, message_id, reply_id, document_id, model)
    return ack


def _regenerate(socketio: SocketIO, data) -> dict:
    conversation_id = _owned_conversation_id(data)
    if conversation_id is None:
        return _refuse("Conversation not found.")
    model, refusal = _picked_model(data)
    if refusal:
        return refusal
    store, user_id = get_store(), current_user_id()
    target = _message_in(store, user_id, conversation_id, data.get("message_id"))
    if target is None:
        return _refuse("The message to regenerate was not found in this conversation.")
    if target["role"] != "user":
        parent_id = threads.parents(store.list_messages(user_id, conversation_id)).get(target["message_id"])
        target = _message_in(store, user_id, conversation_id, parent_id)
        if target is None or target["role"] != "user":
            return _refuse("Only a reply to a message of yours can be regenerated.")
    refusal = _over_limit(user_id)
    if refusal:
        return refusal
    reply_id = str(uuid.uuid4())
    join_room(conversation_room(conversation_id))
    if not claim(_inflight(), conversation_id, reply_id, _is_stored()):
        return _refuse(BUSY)
    _start_generation(socketio, user_id, conversation_id, target["message_id"], reply_id, None, model)
    return {"ok": True, "conversation_id": conversation_id, "message_id": target["message_id"], "reply_id": reply_id}


def _over_limit(user_id: str) -> dict | None:
    """The message rate and concurrent-reply limits (web/limits.py): the refusal to send, or None."""
    refusal = current_app.extensions["chat_message_limits"].refusal(user_id, request.remote_addr)
    if refusal:
        emit("error", {"message": refusal["message"]}, to=request.sid)
    return refusal


def _placement(store, user_id: str, conversation_id: str, data: dict) -> tuple[dict, dict | None]:
    """Where a new user message goes in the conversation's tree: append_message's keywords."""
    parent_id, edit_of = data.get("parent_message_id"), data.get("edit_of")
    if edit_of is not None:
        edited = _message_in(store, user_id, conversation_id, edit_of)
        if edited is None or edited["role"] != "user":
            return {}, _refuse("The message to edit was not found in this conversation.")
        parent = threads.parents(store.list_messages(user_id, conversation_id)).get(edit_of)
        return {"parent_message_id": parent, "meta": {"edit_of": edit_of}}, None
    if parent_id is not None:
        if _message_in(store, user_id, conversation_id, parent_id) is None:
            return {}, _refuse("The message to continue from was not found in this conversation.")
        return {"parent_message_id": parent_id}, None
    return {}, None


def _picked_model(data: dict) -> tuple[str | None, dict | None]:
    """The model the page picked, if it is one the endpoint offers."""
    model = data.get("model")
    if model is None:
        return None, None
    if not _short_id(model) or model not in current_app.extensions["chat_providers"].models():
        return None, _refuse("That model is not offered by the endpoint; pick another.")
    return model, None


def _message_in(store, user_id: str, conversation_id: str, message_id) -> dict | None:
    if not _short_id(message_id):
        return None
    found = store.get_message(user_id, message_id)
    return found if found and found["conversation_id"] == conversation_id else None


def _short_id(value) -> bool:
    return isinstance(value, str) and 0 < len(value) <= MAX_CLIENT_ID and utils.storable(value)




def _start_generation(socketio, user_id, conversation_id, message_id, reply_id, document_id, model) -> None:
    app = current_app._get_current_object()
    socketio.start_background_task(logs.carry(_generate), app, socketio, user_id, conversation_id, message_id, reply_id,
                                   document_id, model)


def _generate(app, socketio, user_id, conversation_id, message_id, reply_id, document_id=None,
              model=None) -> None:
    """Background task: the reply is stored even if every client has gone."""
    config, inflight = app.config["CHAT"], app.extensions["chat_inflight"]
    generations.started(reply_id, user_id, conversation_id)
    emitter = SocketEmitter(socketio, inflight, conversation_id, reply_id, config.STREAM_FLUSH_MS,
                            config.STREAM_FLUSH_MAX_MS, owner={"user_id": user_id, "message_id": message_id})
    deps = TurnDeps(app.extensions["chat_store"].get(), config, app.extensions["chat_providers"],
                    app.extensions["chat_calibration"])
    reply = None
    try:
        reply = run_turn(deps, user_id, conversation_id, message_id, reply_id, emitter,
                         stopped=emitter.stop_requested, attachment=document_id, model=model)
    except Exception:
        metrics.error("internal")
        log.exception("Generation failed")
        emitter.error("The reply failed unexpectedly. Your message is saved; please try again.")
    finally:
        inflight.finish(conversation_id, reply_id)
        generations.finished(reply_id)
    compaction.after_reply(deps, user_id, conversation_id, reply_id, model, socketio.start_background_task)
    if config.AUTO_TITLE:
        _retitle(socketio, deps, user_id, conversation_id)
    _run_followups(reply)


def _run_followups(reply) -> None:
    """The reply's after-turn jobs (a calibration probe); one failing never stops the next."""
    for job in reply.followups if reply is not None else ():
        try:
            job()
        except Exception:
            log.exception("An after-turn job failed")


def _retitle(socketio, deps: TurnDeps, user_id: str, conversation_id: str) -> None:
    """After the first exchange, a model-written title for every tab's sidebar (never fails the turn)."""
    try:
        title = titler.retitle(deps.store, deps.providers, user_id, conversation_id)
    except Exception:
        log.exception("Titling failed")
        return
    if title:
        socketio.emit("conversation_title", {"conversation_id": conversation_id, "title": title},
                      to=user_room(user_id))


def _resent(store, user_id: str, client_id: str | None) -> dict | None:
    """The ack for a client_message_id already stored: its own conversation (a re-send without or
    with another conversation_id must not create an empty one or name the wrong one), or None."""
    message_id = _message_id(user_id, client_id) if client_id is not None else None
    stored = store.get_message(user_id, message_id) if message_id else None
    if stored is None:
        return None
    join_room(conversation_room(stored["conversation_id"]))
    return {"ok": True, "conversation_id": stored["conversation_id"], "message_id": message_id,
            "reply_id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"reply:{message_id}")), "duplicate": True}


def _already_answered(store, user_id: str, conversation_id: str, reply_id: str) -> bool:
    """A re-sent message (same client_message_id) whose reply exists or is being generated."""
    snapshot = _inflight().snapshot(conversation_id)
    if snapshot and snapshot["message_id"] == reply_id:
        return True
    return store.get_message(user_id, reply_id) is not None


def _message_id(user_id: str, client_id: str | None) -> str:
    """Deterministic per user for a client id (idempotent re-sends), never colliding across users."""
    if client_id is None:
        return str(uuid.uuid4())
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"message:{user_id}:{client_id}"))


def _owned_conversation_id(data) -> str | None:
    conversation_id = data.get("conversation_id") if isinstance(data, dict) else None
    if not _short_id(conversation_id):
        return None
    found = get_store().get_conversation(current_user_id(), conversation_id)
    return conversation_id if found else None


def _inflight():
    return current_app.extensions["chat_inflight"]


def _is_stored():
    """message_id -> whether this user's store holds it (a stale in-flight claim's reply is)."""
    store, user_id = get_store(), current_user_id()
    return lambda message_id: store.get_message(user_id, message_id) is not None


def _failure_message(error: Exception) -> str:
    """What the user reads when an event failed; outages are explained, anything else is logged."""
    if g.get("session_unavailable"):
        return sessions.UNAVAILABLE
    if is_busy(error):
        return errors.STORE_BUSY
    metrics.error("internal")
    log.error("Socket event failed", exc_info=error)
    return "Something went wrong on the server. Please try again in a moment."


def _refuse(message: str) -> dict:
    emit("error", {"message": message}, to=request.sid)
    return {"ok": False, "message": message}
