"""send_message: validate, store the user's message once (a re-send with the same client_message_id is
answered, not stored twice), claim the conversation, start the reply."""
from __future__ import annotations

import contextlib
import logging
import uuid

import redis
from flask_socketio import SocketIO, join_room

import metrics
import utils
from agents import titler

from . import quotas
from .branch_events import BUSY, placement
from .context import current_user_id, get_store
from .generation import start_generation
from .inflight import holder_after_claim
from .socket_common import (
    MAX_CLIENT_ID,
    inflight,
    is_stored,
    over_limit,
    owned_conversation_id,
    picked_model,
    refuse,
    short_id,
)
from .socket_emitter import conversation_room

log = logging.getLogger("chat.socket")


def send_message(socketio: SocketIO, data) -> dict:
    """Plain send continues the newest message; `parent_message_id` continues another branch;
    `edit_of` makes the message a sibling of the user message it edits."""
    if not isinstance(data, dict):
        return refuse("The message payload must be an object.")
    text, client_id = data.get("message"), data.get("client_message_id")
    if not isinstance(text, str) or not text.strip():
        return refuse("The message must be non-empty text.")
    if len(text) > utils.MAX_MESSAGE_CHARS or "\x00" in text or not utils.storable(text):
        return refuse(f"The message must be at most {utils.MAX_MESSAGE_CHARS} characters of text; "
                       "upload longer text as a file.")
    if client_id is not None and not short_id(client_id):
        return refuse(f"client_message_id must be a string of 1 to {MAX_CLIENT_ID} characters.")
    store, user_id = get_store(), current_user_id()
    document_id = data.get("document_id")
    if document_id is not None and (not short_id(document_id) or store.get_document(user_id, document_id) is None):
        return refuse("The attached file was not found.")
    model, refusal = picked_model(data)
    if refusal:
        return refusal
    refusal = over_limit(user_id) or quotas.message_refusal(user_id, text)  # storage quota: web/quotas.py
    if refusal:
        return refusal
    resent = _resent(store, user_id, client_id)
    if resent:
        return resent
    if data.get("conversation_id") is None:
        if data.get("parent_message_id") is not None or data.get("edit_of") is not None:
            return refuse("A new conversation has no messages to continue or edit.")
        return _first_message(socketio, store, user_id, text, client_id, document_id, model)
    conversation_id = owned_conversation_id(data)
    if conversation_id is None:
        return refuse("Conversation not found.")
    where, refusal = placement(store, user_id, conversation_id, data)
    if refusal:
        return refusal
    message_id = _message_id(user_id, client_id)
    reply_id = _reply_id(message_id)
    join_room(conversation_room(conversation_id))
    ack = {"ok": True, "conversation_id": conversation_id, "message_id": message_id, "reply_id": reply_id}
    if client_id is not None and store.get_message(user_id, reply_id) is not None:
        return {**ack, "duplicate": True}  # a re-send whose first send has been answered
    holder = holder_after_claim(inflight(), conversation_id, reply_id, is_stored())
    if holder is not None:  # (asked after the claim, not before: one round trip less for every message)
        return {**ack, "duplicate": True} if holder == reply_id else refuse(BUSY)
    try:
        store.append_user_message(user_id, conversation_id, text, tokens=utils.message_tokens("user", text),
                                  message_id=message_id, **where)
    except Exception:
        inflight().finish(conversation_id, reply_id)  # else the conversation would stay "busy"
        raise
    metrics.user_message_stored()
    start_generation(socketio, user_id, conversation_id, message_id, reply_id, document_id, model)
    return ack


def _first_message(socketio: SocketIO, store, user_id: str, text: str, client_id: str | None,
                   document_id: str | None, model: str | None) -> dict:
    """A new conversation: it and the message are stored in one call. With the in-flight state in
    Redis, the claim and the room's presence are written by a task while the reply starts, not
    before: nobody else knows the conversation yet, so neither can be contested or needed sooner
    (each of those round trips was ~40 ms at p50 of a loaded instance's time to first token)."""
    message_id = _message_id(user_id, client_id)
    reply_id = _reply_id(message_id)
    conversation, _ = store.start_conversation(user_id, titler.first_line_title(text), text, message_id=message_id,
                                               tokens=utils.message_tokens("user", text))
    conversation_id = conversation["conversation_id"]
    manager = socketio.server.manager
    later = getattr(manager, "presence_later", None)
    with later() if later else contextlib.nullcontext([]) as rooms:
        join_room(conversation_room(conversation_id))
    claiming = None
    if inflight().shared or rooms:
        claiming = socketio.start_background_task(_announce, inflight(), manager, rooms, conversation_id, reply_id)
    else:
        inflight().start(conversation_id, reply_id)  # in this process's memory: no round trip to save
    metrics.user_message_stored()
    start_generation(socketio, user_id, conversation_id, message_id, reply_id, document_id, model, claiming)
    return {"ok": True, "conversation_id": conversation_id, "message_id": message_id, "reply_id": reply_id}


def _announce(shared, manager, rooms: list, conversation_id: str, reply_id: str) -> None:
    """The new conversation's claim and its room's presence (the reply waits for this task before
    it releases the claim)."""
    try:
        if not shared.start(conversation_id, reply_id):
            log.warning("A new conversation was claimed by another reply first")
        if rooms:
            manager.announce(rooms)
    except redis.RedisError as error:  # the reply goes on; its tabs here get it all the same
        log.warning("New conversation not announced: %s", type(error).__name__)


def _reply_id(message_id: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"reply:{message_id}"))


def _resent(store, user_id: str, client_id: str | None) -> dict | None:
    """The ack for a client_message_id already stored: its own conversation (a re-send without or
    with another conversation_id must not create an empty one or name the wrong one), or None."""
    message_id = _message_id(user_id, client_id) if client_id is not None else None
    stored = store.get_message(user_id, message_id) if message_id else None
    if stored is None:
        return None
    join_room(conversation_room(stored["conversation_id"]))
    return {"ok": True, "conversation_id": stored["conversation_id"], "message_id": message_id,
            "reply_id": _reply_id(message_id), "duplicate": True}


def _message_id(user_id: str, client_id: str | None) -> str:
    """Deterministic per user for a client id (idempotent re-sends), never colliding across users."""
    if client_id is None:
        return str(uuid.uuid4())
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"message:{user_id}:{client_id}"))
