"""The branch a turn reads, walked in MongoDB in bounded pages (see threads.py for the rules).

A message's parent is its stored parent, an edited message's parent, or the message stored
just before it. The walk reads the conversation newest first in pages of PAGE messages from
the leaf (index conversation_seq_id_idx), and looks up by message_id any message outside what
it has read (a reply to an old message), so its cost grows with the path since the summary
checkpoint, not with the conversation.
"""
from __future__ import annotations

import pymongo

PAGE = 128
_ORDER = [("seq", pymongo.DESCENDING), ("_id", pymongo.DESCENDING)]


class BranchReader:
    """One walk's reads of one conversation, cached: messages by id, and each one's predecessor."""

    def __init__(self, messages, user_id: str, conversation_id: str):
        self.messages, self.owned = messages, {"conversation_id": conversation_id, "user_id": user_id}
        self.by_id: dict[str, dict | None] = {}
        self.before: dict[str, str | None] = {}  # message_id -> the one stored just before (None: first)

    def get(self, message_id) -> dict | None:
        if not isinstance(message_id, str):
            return None
        if message_id not in self.by_id:
            self.by_id[message_id] = self.messages.find_one({**self.owned, "message_id": message_id})
        return self.by_id[message_id]

    def previous(self, doc: dict) -> dict | None:
        if doc["message_id"] not in self.before:
            self._page_before(doc)
        return self.get(self.before[doc["message_id"]])

    def _page_before(self, doc: dict) -> None:
        earlier = {"$or": [{"seq": {"$lt": doc["seq"]}}, {"seq": doc["seq"], "_id": {"$lt": doc["_id"]}}]}
        page = list(self.messages.find({**self.owned, **earlier}).sort(_ORDER).limit(PAGE))
        for newer, older in zip([doc] + page, page + [None], strict=False):
            if older is None and len(page) == PAGE:
                break  # the page's oldest: its predecessor is on the next page
            self.before[newer["message_id"]] = older["message_id"] if older else None
            if older is not None:
                self.by_id.setdefault(older["message_id"], older)

    def parent(self, doc: dict) -> dict | None:
        """threads._parent, reading only what it needs."""
        while True:
            explicit = doc.get("parent_message_id")
            if explicit != doc["message_id"] and self.get(explicit) is not None:
                return self.get(explicit)
            edited = self.get((doc.get("meta") or {}).get("edit_of"))
            if edited is None or _position(edited) >= _position(doc):
                return self.previous(doc)
            doc = edited  # an edit's parent is the edited message's parent


def branch_docs(messages, user_id: str, conversation_id: str, leaf_id: str, checkpoint_id: str | None) -> list[dict]:
    """The path's documents, oldest first, from the checkpoint (when on it) to the leaf."""
    reader = BranchReader(messages, user_id, conversation_id)
    path, seen, at = [], set(), reader.get(leaf_id)
    while at is not None and at["message_id"] not in seen:  # `seen` guards against a corrupt cycle
        seen.add(at["message_id"])
        path.append(at)
        if at["message_id"] == checkpoint_id:
            break
        at = reader.parent(at)
    path.reverse()
    return path


def _position(doc: dict) -> tuple:
    """Where list_messages puts it."""
    return doc["seq"], doc["_id"]
