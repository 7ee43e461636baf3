"""Export a conversation as JSON or Markdown; import our own JSON export or a ChatGPT export.

An import is all or nothing: the whole payload is parsed and checked before anything is stored,
and a failure while storing deletes every conversation the request had created. Imported
messages get fresh ids (ids in a file could collide with other users' ids) and every non-root
message an explicit parent, so branches survive. A second root (an edited first message) is
stored with `meta.edit_of` pointing at the first root: threads.py would otherwise take a message
without a parent as a reply to the message stored just before it. An import holds the user's one
import slot and its size in their storage quota while it is stored (web/quotas.py), then asks the
store to cut its journal back (SQLite's WAL would otherwise stay the size of the biggest import).
"""
from __future__ import annotations

import heapq
import json
import math
import re
import uuid
from dataclasses import dataclass, field

from flask import Blueprint, Response, abort, current_app, jsonify, request
from werkzeug.exceptions import RequestEntityTooLarge

import threads
import utils
from storage.base import FINISH_REASONS, ROLES, ConversationStore, as_utc

from . import images, quotas, shapes, transfer_steering
from .context import current_user_id, get_store, owned_conversation
from .errors import too_large_message
from .validation import require_storable

bp = Blueprint("transfer", __name__)
EXPORT_VERSION = 1
MAX_CONVERSATIONS = 1000
MAX_MESSAGES = 20_000
MAX_TITLE = 200
AGENT_NAME = re.compile(r"[\w .:-]{1,64}")
HEADINGS = {"user": "You", "assistant": "Assistant", "system": "System"}


@dataclass
class Draft:
    """One conversation read from an import, with fresh ids, parents before children."""

    title: str
    messages: list[dict]
    summary: dict | None = None  # our export's summary and pinned facts (transfer_steering.py)
    pinned_facts: list[str] = field(default_factory=list)


# -- export ------------------------------------------------------------------------------------

@bp.get("/export/<conversation_id>")
def export_conversation(conversation_id: str):
    """Download a conversation: JSON (every branch, re-importable) or Markdown (one thread, to read)."""
    record = owned_conversation(conversation_id)
    kind = request.args.get("format", "json")
    if kind not in ("json", "md"):
        abort(400, "'format' must be json or md.")
    messages = get_store().list_messages(current_user_id(), conversation_id)
    found = images.references(get_store(), current_user_id(), messages)  # named and linked, never inlined
    if kind == "md":
        return _download(_markdown(record, _thread(messages), found), "text/markdown", record, kind)
    export = {**shapes.conversation(record, messages), "export_version": EXPORT_VERSION,
              "pinned_facts": get_store().get_pinned_facts(current_user_id(), conversation_id) or [],
              "images": found}
    return _download(json.dumps(export, ensure_ascii=False, indent=2), "application/json", record, kind)


def _thread(messages: list[dict]) -> list[dict]:
    """The thread ending at ?leaf= (default: the newest message); 404 for a leaf not in it."""
    leaf = request.args.get("leaf")
    path = threads.thread(messages, leaf)
    if leaf is not None and not path:
        abort(404, "Message not found.")
    return path


def _markdown(record: dict, messages: list[dict], found: list[dict]) -> str:
    """The title, then one section per message with its images linked; the rolling summary is
    internal and stays out."""
    sections = [f"# {_one_line(record['title']) or 'Untitled conversation'}"]
    for message in messages:
        speaker = HEADINGS[message["role"]]
        if message["role"] == "assistant" and message.get("agent"):
            speaker += f" ({message['agent']})"
        sections.append(f"### {speaker}\n*{shapes.iso(message['created_at'])}*\n\n{message['content']}"
                        + images.markdown_lines(found, message["message_id"]))
    return "\n\n".join(sections) + "\n"


def _download(body: str, mimetype: str, record: dict, extension: str) -> Response:
    """An attachment named from the id and last activity, never from the title (user text in a header)."""
    stamp = as_utc(record["updated_at"]).strftime("%Y%m%d_%H%M%S")
    safe_id = re.sub(r"[^A-Za-z0-9-]", "", record["conversation_id"])[:64]
    disposition = f'attachment; filename="conversation_{safe_id}_{stamp}.{extension}"'
    return Response(body, mimetype=mimetype, headers={"Content-Disposition": disposition})


# -- import ------------------------------------------------------------------------------------

@bp.post("/import_conversations")
def import_conversations():
    """Create conversations from a .json file (field `file`) or a JSON body; one import at a time
    per user (held before the payload is parsed: parsing is the costly part)."""
    store, user_id = get_store(), current_user_id()
    release = quotas.hold_import_slot(user_id, current_app.config["CHAT"])
    try:
        created, skipped = _import(store, user_id)
    finally:
        release()
    return jsonify(message=f"Imported {len(created)} conversation(s).", conversations=created, skipped=skipped)


def _import(store: ConversationStore, user_id: str) -> tuple[list[dict], int]:
    """Parse and check the whole payload, hold its size in the storage quota, store it, and cut
    the journal back; returns what was created and how many conversations were skipped."""
    drafts = [_draft(item, number) for number, item in enumerate(_items(_payload()), 1)]
    kept = [draft for draft in drafts if draft is not None]
    _check_totals(kept, len(drafts) - len(kept))
    release = quotas.hold_storage(store, user_id, _bytes(kept), current_app.config["CHAT"], "This import")
    try:
        return _store_all(user_id, kept), len(drafts) - len(kept)
    finally:
        release()
        store.compact_journal()


@bp.url_value_preprocessor
def _import_limit(endpoint: str | None, values: dict | None) -> None:
    """Imports have their own size limit (IMPORT_MAX_MB). Set here, before every before_request
    hook: CSRF protection reads the form, and parsing it under the app's upload limit answered a
    5 MB import with a 413 that named the import limit."""
    if endpoint == "transfer.import_conversations":
        request.max_content_length = int(current_app.config["CHAT"].IMPORT_MAX_MB * 1024 * 1024)


@bp.errorhandler(RequestEntityTooLarge)
def _too_large(error: RequestEntityTooLarge):
    """413 naming the limit that was really passed: the import's, or a form field's."""
    return jsonify(message=too_large_message("The import", current_app.config["CHAT"].IMPORT_MAX_MB)), 413


def _payload():
    """The decoded JSON of the uploaded .json file, else of the request body."""
    upload = request.files.get("file")
    if upload is not None:
        if not (upload.filename or "").lower().endswith(".json"):
            abort(400, "The file must be a .json file.")
        raw = upload.read()
    elif request.is_json:
        raw = request.get_data(cache=False)
    else:
        abort(400, "Send a .json file in the 'file' field, or a JSON body.")
    try:
        payload = json.loads(raw)
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError too
        abort(400, "The import is not valid JSON.")
    require_storable(payload)
    return payload


def _items(payload) -> list:
    """The conversations of the payload: one object, or a list of them."""
    items = [payload] if isinstance(payload, dict) else payload
    if not isinstance(items, list):
        abort(400, "Expected a conversation export (an object) or a list of conversations.")
    if not items:
        abort(400, "Nothing to import: the list of conversations is empty.")
    if len(items) > MAX_CONVERSATIONS:
        abort(400, f"At most {MAX_CONVERSATIONS} conversations can be imported at once.")
    return items


def _draft(item, number: int) -> Draft | None:
    """One conversation; None (skipped) when it has no messages or one longer than MAX_MESSAGE_CHARS."""
    messages = _messages(item, number)
    if not messages or any(len(m["content"]) > utils.MAX_MESSAGE_CHARS for m in messages):
        return None
    title = _one_line(item.get("title")) if isinstance(item.get("title"), str) else ""
    return Draft(title[:MAX_TITLE] or "Imported conversation", messages,
                 *transfer_steering.read(item, messages, number))


def _messages(item, number: int) -> list[dict]:
    """The item's messages, parents first, read as a ChatGPT conversation or as our export; else 400."""
    if isinstance(item, dict) and isinstance(item.get("mapping"), dict):
        return _parents_first(_chatgpt_messages(item["mapping"]))
    if not (isinstance(item, dict) and isinstance(item.get("conversation"), list)):
        abort(400, f"Conversation {number} is neither an export of this app nor a ChatGPT conversation.")
    if item.get("export_version", EXPORT_VERSION) != EXPORT_VERSION:
        abort(400, f"Conversation {number} comes from another export format (this app reads version "
                   f"{EXPORT_VERSION}).")
    return _export_messages(item["conversation"])


def _check_totals(drafts: list[Draft], skipped: int) -> None:
    if not drafts:
        abort(400, f"Nothing to import: {skipped} conversation(s) skipped (no user or assistant messages, "
                   f"or a message longer than {utils.MAX_MESSAGE_CHARS} characters).")
    total = sum(len(draft.messages) for draft in drafts)
    if total > MAX_MESSAGES:
        abort(400, f"At most {MAX_MESSAGES} messages can be imported at once; this import has {total}.")


# -- our own export: file order is creation order, so parents come first ------------------------

def _export_messages(entries: list) -> list[dict]:
    """The kept messages, each under the fresh id of its nearest kept ancestor."""
    fresh: dict[str, str | None] = {}  # id in the file -> fresh id of it, or of its nearest kept ancestor
    messages = []
    for entry in map(_object, entries):
        parent = fresh.get(_text(entry.get("parent_message_id")))
        message = _export_message(entry, parent)
        if message is not None:
            message["source_id"] = _text(entry.get("message_id"))  # where a summary's checkpoint points
            messages.append(message)
        if _text(entry.get("message_id")):
            fresh[entry["message_id"]] = message["message_id"] if message else parent
    return messages


def _export_message(entry: dict, parent: str | None) -> dict | None:
    role, content, agent = entry.get("role"), entry.get("content"), _text(entry.get("agent"))
    if role not in ROLES or not (isinstance(content, str) and content.strip()):
        return None
    finish_reason = entry.get("finish_reason") if entry.get("finish_reason") in FINISH_REASONS else None
    return _message(role, content, parent, agent if agent and AGENT_NAME.fullmatch(agent) else None, finish_reason)


# -- ChatGPT's conversations.json: a tree of nodes, many of them not chat messages --------------

def _chatgpt_messages(mapping: dict) -> list[dict]:
    """User/assistant messages of the whole tree in depth-first order, each under its nearest kept ancestor."""
    roots = [key for key, node in mapping.items() if _text(_object(node).get("parent")) not in mapping]
    stack, seen, kept = [(key, None) for key in reversed(roots)], set(), []
    while stack:  # a loop, not recursion: a long conversation is a deep tree
        key, parent = stack.pop()
        if key in seen:
            continue
        seen.add(key)
        node = _object(mapping[key])
        message = _chatgpt_message(node.get("message"), parent)
        if message is not None:
            kept.append({**message, "order": len(kept)})
            parent = message["message_id"]
        children = node.get("children") if isinstance(node.get("children"), list) else []
        stack.extend((child, parent) for child in reversed(children) if _text(child) in mapping)
    return kept


def _chatgpt_message(message, parent: str | None) -> dict | None:
    """A visible user or assistant message with text; None for system, tool calls and images only."""
    message = _object(message)
    if message.get("recipient", "all") != "all":
        return None
    role, parts = _object(message.get("author")).get("role"), _object(message.get("content")).get("parts")
    text = "\n\n".join(p for p in parts if isinstance(p, str) and p.strip()) if isinstance(parts, list) else ""
    if role not in ("user", "assistant") or not text:
        return None
    created = message.get("create_time")
    finite = isinstance(created, (int, float)) and not isinstance(created, bool) and math.isfinite(created)
    return {**_message(role, text, parent), "time": created if finite else None}


def _parents_first(messages: list[dict]) -> list[dict]:
    """Oldest first by create_time (unknown: its parent's), ties by tree order, never a child before its parent."""
    children: dict[str | None, list[dict]] = {}
    for message in messages:
        children.setdefault(message["parent_message_id"], []).append(message)
    ordered, ready = [], []

    def release(parent_id: str | None, floor: float) -> None:
        for child in children.get(parent_id, []):
            heapq.heappush(ready, (floor if child["time"] is None else child["time"], child["order"], child))

    release(None, 0.0)
    while ready:
        at, _, message = heapq.heappop(ready)
        ordered.append(message)
        release(message["message_id"], at)
    return ordered


# -- storing -----------------------------------------------------------------------------------

def _store_all(user_id: str, drafts: list[Draft]) -> list[dict]:
    """Store every draft; on any failure delete what this request created, then re-raise."""
    store, made = get_store(), []
    try:
        for draft in drafts:
            made.append(store.create_conversation(user_id, draft.title))
            _append_all(store, user_id, made[-1]["conversation_id"], draft.messages)
            transfer_steering.restore(store, user_id, made[-1]["conversation_id"], draft.summary, draft.pinned_facts)
    except Exception:
        for record in made:
            store.delete_conversation(user_id, record["conversation_id"])
        raise
    return [{"conversation_id": record["conversation_id"], "title": record["title"],
             "message_count": len(draft.messages)} for record, draft in zip(made, drafts, strict=False)]


def _bytes(drafts: list[Draft]) -> int:
    """What the import will add to the user's stored messages (store.storage_bytes counts the same)."""
    return sum(len(m["content"].encode("utf-8", "surrogatepass")) for draft in drafts for m in draft.messages)


def _append_all(store: ConversationStore, user_id: str, conversation_id: str, messages: list[dict]) -> None:
    first_root = messages[0]["message_id"]
    for m in messages:
        later_root = m["parent_message_id"] is None and m["message_id"] != first_root
        store.append_message(user_id, conversation_id, m["role"], m["content"],
                             tokens=utils.message_tokens(m["role"], m["content"]),
                             parent_message_id=m["parent_message_id"], agent=m["agent"],
                             finish_reason=m["finish_reason"], message_id=m["message_id"],
                             meta={"edit_of": first_root} if later_root else None)


# -- small helpers -----------------------------------------------------------------------------

def _message(role: str, content: str, parent: str | None, agent: str | None = None,
             finish_reason: str | None = None) -> dict:
    """A message ready to store under a fresh id; an assistant's defaults are agent "imported", "stop"."""
    if role == "assistant":
        agent, finish_reason = agent or "imported", finish_reason or "stop"
    return {"message_id": str(uuid.uuid4()), "parent_message_id": parent, "role": role, "content": content,
            "agent": agent, "finish_reason": finish_reason}


def _object(value) -> dict:
    return value if isinstance(value, dict) else {}


def _text(value) -> str | None:
    return value if isinstance(value, str) else None


def _one_line(text: str | None) -> str:
    return " ".join((text or "").replace("\x00", " ").split())
