"""The person steers the context: what the next request will carry (the meter), a draft's size,
the conversation's summary (read, edit) and its pinned facts."""
from __future__ import annotations

from flask import Blueprint, abort, current_app, jsonify, request

import utils
from agents import compaction, offload, pins, vision

from .context import current_user_id, get_store, owned_conversation
from .validation import json_body, optional_string

bp = Blueprint("steering", __name__)
MAX_ID = 100
MAX_MODEL = 200
MAX_SUMMARY_CHARS = 20_000


@bp.get("/budget")
def new_budget():
    """What the first request of a new conversation carries before the message."""
    return jsonify(_budget(None, []))


@bp.get("/conversations/<conversation_id>/budget")
def budget(conversation_id: str):
    """What the next request on the branch ending at ?leaf= carries before the new message (after
    the compaction that follows a reply, when one is running: it changes the answer)."""
    owned_conversation(conversation_id)
    compaction.wait(conversation_id, timeout=10)
    record = owned_conversation(conversation_id)
    leaf = _arg("leaf", MAX_ID)
    summary = record["summary"]
    checkpoint = summary["last_message_id"] if summary else None
    path = get_store().branch_since(current_user_id(), conversation_id, leaf, checkpoint) if leaf else []
    if leaf and not path:
        abort(404, "Message not found.")
    if path and checkpoint and path[0]["message_id"] == checkpoint:
        path = path[1:]  # the checkpoint itself is summarised
    path = vision.with_image_tokens(get_store(), current_user_id(), path, current_app.config["CHAT"].IMAGE_DETAIL)
    return jsonify(_budget(record, path))


def _budget(record: dict | None, tail: list[dict]) -> dict:
    config = current_app.config["CHAT"]
    model = _arg("model", MAX_MODEL) or _default_model()
    facts = get_store().get_pinned_facts(current_user_id(), record["conversation_id"]) if record else []
    system = utils.message_tokens("system", config.SYSTEM_PROMPT)
    pinned = utils.message_tokens("system", pins.with_pins(config.SYSTEM_PROMPT, facts)) - system
    summary = record["summary"] if record else None
    ratio = current_app.extensions["chat_calibration"].budget_ratio(model)
    window = config.context_window(model)
    room = utils.Budget(window, config.REPLY_TOKENS, ratio=ratio).prompt_room
    return {"model": model, "window": window, "reply_tokens": config.REPLY_TOKENS, "prompt_room": room,
            "ratio": ratio, "compact_at": config.COMPACT_AT, "system_tokens": system, "pinned_tokens": pinned,
            "format_tokens": utils.REPLY_PRIMING, "summary_tokens": summary["tokens"] if summary else 0,
            "summary_last_message_id": summary["last_message_id"] if summary else None,
            "verbatim_tokens": sum(m["tokens"] for m in tail), "verbatim_count": len(tail)}


def _default_model() -> str:
    endpoints = current_app.extensions["chat_providers"].endpoints("chat")
    return endpoints[0].model if endpoints else current_app.config["CHAT"].MODEL


def _arg(name: str, max_length: int) -> str | None:
    value = request.args.get(name)
    if value is not None and (not value or len(value) > max_length):
        abort(400, f"'{name}' must be 1 to {max_length} characters.")
    return value


@bp.post("/count_tokens")
def count_tokens():
    """A draft's size as a user message of the next request (the meter counts as you type)."""
    body = json_body()
    text = body.get("text")
    if not isinstance(text, str) or len(text) > utils.MAX_MESSAGE_CHARS:
        abort(400, f"'text' must be a string of at most {utils.MAX_MESSAGE_CHARS} characters.")
    return jsonify(tokens=offload.run_blocking(utils.message_tokens, "user", text))


@bp.get("/conversations/<conversation_id>/summary")
def get_summary(conversation_id: str):
    """The rolling summary (None before the first compaction) and the pinned facts."""
    record = owned_conversation(conversation_id)
    return jsonify(_summary_view(record))


def _summary_view(record: dict) -> dict:
    facts = get_store().get_pinned_facts(current_user_id(), record["conversation_id"]) or []
    base = utils.message_tokens("system", "")
    return {"summary": record["summary"], "pinned_facts": facts,
            "pinned_tokens": utils.message_tokens("system", pins.with_pins("", facts)) - base}


@bp.put("/conversations/<conversation_id>/summary")
def edit_summary(conversation_id: str):
    """Replace the summary's text; it covers the same messages and is used as written until the
    next compaction extends it. 409 when a compaction moved the checkpoint meanwhile."""
    owned_conversation(conversation_id)  # another user's conversation is a 404 whatever the body
    content = optional_string(json_body(), "content", MAX_SUMMARY_CHARS)
    if not content:
        abort(400, "'content' is required.")
    compaction.wait(conversation_id)  # a compaction in flight would extend the old text over the edit
    record = owned_conversation(conversation_id)
    summary = record["summary"]
    if summary is None:
        abort(409, "This conversation has no summary yet: nothing has been compacted.")
    tokens = utils.message_tokens("system", utils.SUMMARY_PREFIX + content)
    if not get_store().set_summary(current_user_id(), conversation_id, content, summary["last_message_id"],
                                   tokens, extends=summary["last_message_id"]):
        abort(409, "The summary changed while you edited it; reopen it and try again.")
    return jsonify(_summary_view(owned_conversation(conversation_id)))


@bp.put("/conversations/<conversation_id>/pins")
def set_pins(conversation_id: str):
    """Replace the pinned facts (each one line, at most pins.MAX_FACTS of them)."""
    record = owned_conversation(conversation_id)  # another user's conversation is a 404 whatever the body
    facts = _facts(json_body().get("facts"))
    get_store().set_pinned_facts(current_user_id(), conversation_id, facts)
    return jsonify(_summary_view(record))


def _facts(value) -> list[str]:
    if not isinstance(value, list) or len(value) > pins.MAX_FACTS:
        abort(400, f"'facts' must be a list of at most {pins.MAX_FACTS} strings.")
    facts = []
    for fact in value:
        if not isinstance(fact, str) or not fact.strip() or len(fact) > pins.MAX_FACT_CHARS or "\x00" in fact:
            abort(400, f"Each fact must be non-empty text of at most {pins.MAX_FACT_CHARS} characters.")
        facts.append(" ".join(fact.split()))  # one line each: a fact cannot forge the prompt's layout
    return facts
