"""Branches of a conversation: regenerating a reply or editing a message adds a sibling, and the
conversation becomes a tree. A thread is one path through it, from the first message to a leaf.

Messages are stored in creation order. A message's parent is, in order of precedence:
1. its `parent_message_id` when that message exists (replies, and messages sent on a branch);
2. for an edit (`meta.edit_of`), the parent of the message it edits (so a first message can be
   edited too: both are roots);
3. otherwise the message stored just before it. Plain sends store no parent, so a linear
   conversation needs no bookkeeping and older data reads as one thread.
Pure functions over store records (dicts with message_id, parent_message_id, meta).
"""
from __future__ import annotations

from collections.abc import Iterable


def parents(messages: list[dict]) -> dict[str, str | None]:
    """Every message id mapped to its resolved parent id (None for a root)."""
    ids = {m["message_id"] for m in messages}
    resolved: dict[str, str | None] = {}
    previous: str | None = None
    for message in messages:
        resolved[message["message_id"]] = _parent(message, ids, resolved, previous)
        previous = message["message_id"]
    return resolved


def _parent(message: dict, ids: set[str], resolved: dict[str, str | None], previous: str | None) -> str | None:
    explicit = message.get("parent_message_id")
    if explicit in ids and explicit != message["message_id"]:
        return explicit
    edit_of = (message.get("meta") or {}).get("edit_of")
    if edit_of in resolved:  # edits come after what they edit, so it is resolved already
        return resolved[edit_of]
    return previous


def thread(messages: list[dict], leaf_id: str | None = None) -> list[dict]:
    """The path from the root to `leaf_id` (default: the newest message), oldest first.

    An unknown leaf gives an empty list, so a caller never continues someone else's branch.
    """
    if not messages:
        return []
    by_id = {m["message_id"]: m for m in messages}
    leaf_id = messages[-1]["message_id"] if leaf_id is None else leaf_id
    if leaf_id not in by_id:
        return []
    parent_of = parents(messages)
    path, seen, at = [], set(), leaf_id
    while at is not None and at not in seen:  # `seen` guards against a corrupt cycle
        seen.add(at)
        path.append(by_id[at])
        at = parent_of[at]
    path.reverse()
    return path


def with_parents(messages: Iterable[dict]) -> list[dict]:
    """Copies of the messages with `parent_message_id` set to the resolved parent, for the API:
    the page and exports then need no rules of their own."""
    messages = list(messages)
    parent_of = parents(messages)
    return [{**m, "parent_message_id": parent_of[m["message_id"]]} for m in messages]


def since(path: list[dict], checkpoint_id: str | None) -> list[dict]:
    """The end of a path from its newest occurrence of `checkpoint_id` (the whole path without it)."""
    for index in range(len(path) - 1, -1, -1):
        if path[index]["message_id"] == checkpoint_id:
            return path[index:]
    return path
