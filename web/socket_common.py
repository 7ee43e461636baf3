"""What every chat event checks before it acts: short ids, the conversation and message being the
user's own, the model offered, the rate limits; and the refusal every event answers with."""
from __future__ import annotations

from flask import current_app, request
from flask_socketio import emit

import utils

from .context import current_user_id, get_store

MAX_CLIENT_ID = 100


def short_id(value) -> bool:
    return isinstance(value, str) and 0 < len(value) <= MAX_CLIENT_ID and utils.storable(value)


def owned_conversation_id(data) -> str | None:
    conversation_id = data.get("conversation_id") if isinstance(data, dict) else None
    if not short_id(conversation_id):
        return None
    found = get_store().get_conversation(current_user_id(), conversation_id)
    return conversation_id if found else None


def message_in(store, user_id: str, conversation_id: str, message_id) -> dict | None:
    if not short_id(message_id):
        return None
    found = store.get_message(user_id, message_id)
    return found if found and found["conversation_id"] == conversation_id else None


def picked_model(data: dict) -> tuple[str | None, dict | None]:
    """The model the page picked, if it is one the endpoint offers."""
    model = data.get("model")
    if model is None:
        return None, None
    if not short_id(model) or model not in current_app.extensions["chat_providers"].models():
        return None, refuse("That model is not offered by the endpoint; pick another.")
    return model, None


def over_limit(user_id: str) -> dict | None:
    """The message rate and concurrent-reply limits (web/limits.py): the refusal to send, or None."""
    refusal = current_app.extensions["chat_message_limits"].refusal(user_id, request.remote_addr)
    if refusal:
        emit("error", {"message": refusal["message"]}, to=request.sid)
    return refusal


def inflight():
    return current_app.extensions["chat_inflight"]


def is_stored():
    """message_id -> whether this user's store holds it (a stale in-flight claim's reply is)."""
    store, user_id = get_store(), current_user_id()
    return lambda message_id: store.get_message(user_id, message_id) is not None



def refuse(message: str) -> dict:
    emit("error", {"message": message}, to=request.sid)
    return {"ok": False, "message": message}
