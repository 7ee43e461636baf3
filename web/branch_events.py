"""The conversation as a tree: regenerate answers a user message again as a sibling reply, and a new
message may continue another branch (parent_message_id) or edit one of the user's messages (edit_of)."""
from __future__ import annotations

import uuid

from flask_socketio import SocketIO, join_room

import threads

from .context import current_user_id, get_store
from .generation import start_generation
from .inflight import claim
from .socket_common import inflight, is_stored, message_in, over_limit, owned_conversation_id, picked_model, refuse
from .socket_emitter import conversation_room

BUSY = "A reply is still being generated in this conversation. Stop it or wait for it."


def regenerate(socketio: SocketIO, data) -> dict:
    conversation_id = owned_conversation_id(data)
    if conversation_id is None:
        return refuse("Conversation not found.")
    model, refusal = picked_model(data)
    if refusal:
        return refusal
    store, user_id = get_store(), current_user_id()
    target = message_in(store, user_id, conversation_id, data.get("message_id"))
    if target is None:
        return refuse("The message to regenerate was not found in this conversation.")
    if target["role"] != "user":
        parent_id = threads.parents(store.list_messages(user_id, conversation_id)).get(target["message_id"])
        target = message_in(store, user_id, conversation_id, parent_id)
        if target is None or target["role"] != "user":
            return refuse("Only a reply to a message of yours can be regenerated.")
    refusal = over_limit(user_id)
    if refusal:
        return refusal
    reply_id = str(uuid.uuid4())
    join_room(conversation_room(conversation_id))
    if not claim(inflight(), conversation_id, reply_id, is_stored()):
        return refuse(BUSY)
    start_generation(socketio, user_id, conversation_id, target["message_id"], reply_id, None, model)
    return {"ok": True, "conversation_id": conversation_id, "message_id": target["message_id"], "reply_id": reply_id}


def placement(store, user_id: str, conversation_id: str, data: dict) -> tuple[dict, dict | None]:
    """Where a new user message goes in the conversation's tree: append_message's keywords."""
    parent_id, edit_of = data.get("parent_message_id"), data.get("edit_of")
    if edit_of is not None:
        edited = message_in(store, user_id, conversation_id, edit_of)
        if edited is None or edited["role"] != "user":
            return {}, refuse("The message to edit was not found in this conversation.")
        parent = threads.parents(store.list_messages(user_id, conversation_id)).get(edit_of)
        return {"parent_message_id": parent, "meta": {"edit_of": edit_of}}, None
    if parent_id is not None:
        if message_in(store, user_id, conversation_id, parent_id) is None:
            return {}, refuse("The message to continue from was not found in this conversation.")
        return {"parent_message_id": parent_id}, None
    return {}, None
