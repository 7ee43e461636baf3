"""The conversation routes of the public contract, plus rename and delete."""
from __future__ import annotations

import json
import logging

from flask import Blueprint, Response, abort, current_app, jsonify, request, session

import utils
from semantic import hybrid

from . import shapes
from .context import current_user_id, get_store, owned_conversation
from .validation import int_arg, json_body, optional_string, required_string

bp = Blueprint("conversations", __name__)
log = logging.getLogger("chat.conversations")
MAX_TITLE = 200
MAX_QUERY = 500


@bp.post("/start_conversation")
def start_conversation():
    """Create a conversation and make it the session's current one."""
    title = optional_string(json_body(required=False), "title", MAX_TITLE) or ""
    return jsonify(message="New conversation started.", conversation_id=_start(title))


@bp.post("/reset_conversation")
def reset_conversation():
    """Clear the history of the given (or current) conversation."""
    conversation_id = _target_conversation_id()
    if conversation_id is None:
        abort(400, "No active conversation to reset.")
    owned_conversation(conversation_id)
    get_store().clear_messages(current_user_id(), conversation_id)
    return jsonify(message="Conversation has been reset successfully!")


@bp.get("/list_conversations")
def list_conversations():
    limit = int_arg("limit", default=100, lo=1, hi=500)
    offset = int_arg("offset", default=0, lo=0, hi=10**9)
    records = get_store().list_conversations(current_user_id(), limit=limit, offset=offset)
    return jsonify(conversations=[shapes.conversation_summary(r) for r in records])


@bp.get("/load_conversation/<conversation_id>")
def load_conversation(conversation_id: str):
    """Return the whole history and make it the session's current conversation."""
    record = owned_conversation(conversation_id)
    messages = get_store().list_messages(current_user_id(), conversation_id)
    session["conversation_id"] = conversation_id
    return jsonify(shapes.conversation(record, messages))


@bp.patch("/conversations/<conversation_id>")
def rename_conversation(conversation_id: str):
    title = required_string(json_body(), "title", MAX_TITLE)
    owned_conversation(conversation_id)
    get_store().rename_conversation(current_user_id(), conversation_id, title)
    return jsonify(message="Conversation renamed.", conversation_id=conversation_id, title=title)


@bp.delete("/conversations/<conversation_id>")
def delete_conversation(conversation_id: str):
    owned_conversation(conversation_id)
    get_store().delete_conversation(current_user_id(), conversation_id)
    if session.get("conversation_id") == conversation_id:
        session.pop("conversation_id")
    return jsonify(message="Conversation deleted.", conversation_id=conversation_id)


@bp.post("/save_history")
def save_history():
    """Send the conversation as a JSON download; nothing is written on the server."""
    conversation_id = _target_conversation_id()
    if conversation_id is None:
        abort(400, "No active conversation to save.")
    record = owned_conversation(conversation_id)
    export = shapes.conversation(record, get_store().list_messages(current_user_id(), conversation_id))
    stamp = record["updated_at"].strftime("%Y%m%d_%H%M%S")
    file_name = f"{stamp}_{conversation_id}_conversation_history.json"
    return Response(json.dumps(export, ensure_ascii=False, indent=2), mimetype="application/json",
                    headers={"Content-Disposition": f'attachment; filename="{file_name}"'})


@bp.get("/search_conversations")
def search_conversations():
    query = request.args.get("q", "")
    if not query.strip():
        abort(400, "Query parameter 'q' is required.")
    if len(query) > MAX_QUERY:
        abort(400, f"Query parameter 'q' must be at most {MAX_QUERY} characters.")
    limit = int_arg("limit", default=20, lo=1, hi=100)
    mode = request.args.get("mode", "hybrid")
    if mode not in hybrid.MODES:
        abort(400, f"Query parameter 'mode' must be one of {', '.join(hybrid.MODES)}.")
    try:
        hits = hybrid.search_conversations(get_store(), current_app.config["CHAT"], current_user_id(), query,
                                           mode, limit)
    except hybrid.SemanticUnavailable as error:
        abort(503, f"{error}; use mode=keyword.")
    return jsonify(conversations=[shapes.search_hit(h) for h in hits])


@bp.post("/add_few_shot_example")
def add_few_shot_example():
    """Append a user/assistant example pair; starts a conversation when none is active."""
    body = json_body()
    prompt, response = body.get("user_prompt"), body.get("assistant_response")
    if not (isinstance(prompt, str) and prompt.strip() and isinstance(response, str) and response.strip()):
        abort(400, "Both 'user_prompt' and 'assistant_response' are required.")
    if len(prompt) + len(response) > utils.MAX_MESSAGE_CHARS:
        abort(400, f"The example must be at most {utils.MAX_MESSAGE_CHARS} characters.")
    conversation_id = _target_conversation_id(body) or _start("")
    owned_conversation(conversation_id)
    store, user_id = get_store(), current_user_id()
    asked = store.append_message(user_id, conversation_id, "user", prompt,
                                 tokens=utils.message_tokens("user", prompt))
    store.append_message(user_id, conversation_id, "assistant", response,
                         tokens=utils.message_tokens("assistant", response),
                         parent_message_id=asked["message_id"], agent="few_shot", finish_reason="stop")
    return jsonify(message="Few-shot example added successfully!", conversation_id=conversation_id)


def _start(title: str) -> str:
    conversation_id = get_store().create_conversation(current_user_id(), title)["conversation_id"]
    session["conversation_id"] = conversation_id
    log.info("New conversation started with ID: %s", conversation_id)
    return conversation_id


def _target_conversation_id(body: dict | None = None) -> str | None:
    """The conversation a request names (JSON body or ?conversation_id=), else the session's current one."""
    body = body if body is not None else json_body(required=False)
    named = optional_string(body, "conversation_id", 100) or request.args.get("conversation_id")
    return named or session.get("conversation_id")
