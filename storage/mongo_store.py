"""The MongoDB store: `conversations` (title, summary, totals) and `messages` (one document each)."""
from __future__ import annotations

import re

import pymongo
from pymongo import ReturnDocument
from pymongo.errors import DuplicateKeyError, PyMongoError, WriteError

from .base import (
    ANY_CHECKPOINT,
    ConversationStore,
    NotFound,
    Record,
    as_utc,
    best_per_conversation,
    hits_with_conversations,
    new_id,
    query_terms,
    utcnow,
    validate_message,
)
from .mongo_accounts import MongoAccounts
from .mongo_branch import branch_docs
from .mongo_images import MongoImages
from .mongo_library import MongoLibrary
from .mongo_migrations import MIGRATIONS
from .mongo_pins import MongoPins
from .mongo_vectors import MongoVectors
from .sqlite_store import content_bytes

_CONVERSATION_KEYS = ("conversation_id", "user_id", "title", "total_tokens", "message_count",
                      "created_at", "updated_at", "summary")
_MESSAGE_KEYS = ("message_id", "conversation_id", "user_id", "parent_message_id", "role", "content",
                 "created_at", "tokens", "agent", "finish_reason", "meta")
_TEXT_SCORE = {"$meta": "textScore"}


class MongoStore(MongoAccounts, MongoImages, MongoLibrary, MongoPins, MongoVectors, ConversationStore):
    """pymongo is thread-safe and pools connections; nothing here talks to the server until used.

    Documents, jobs and the model cache live in MongoLibrary (mongo_library.py).
    """

    backend = "mongodb"

    def __init__(self, client, db_name: str, mock: bool = False, search_candidates: int = 2000):
        self.client = client
        self.db = client[db_name]
        self.mock = mock  # mongomock: no validators, no $text (see mongo_migrations and tests)
        self.search_candidates = search_candidates
        self.conversations = self.db["conversations"]
        self.messages = self.db["messages"]

    @classmethod
    def from_uri(cls, uri: str, db_name: str) -> MongoStore:
        """connect=False: MongoClient is not fork-safe, so the first query (in the worker) connects."""
        client = pymongo.MongoClient(uri, serverSelectionTimeoutMS=3000, connect=False, tz_aware=True)
        return cls(client, db_name)

    def close(self) -> None:
        self.client.close()

    def ping(self) -> bool:
        try:
            return bool(self.client.admin.command("ping").get("ok"))
        except PyMongoError:
            return False

    def compact_journal(self) -> bool:
        """Nothing to do: MongoDB manages its own journal (SQLite's WAL needs help, see there)."""
        return True

    def storage_bytes(self, user_id: str) -> int:
        """UTF-8 bytes of the user's stored messages, for the storage quota: a sum of the counters
        append_message keeps per conversation, not a scan of the messages."""
        rows = list(self.conversations.aggregate([{"$match": {"user_id": user_id}},
                                                  {"$group": {"_id": None, "bytes": {"$sum": "$content_bytes"}}}]))
        return int(rows[0]["bytes"]) if rows else 0

    # -- schema ------------------------------------------------------------------------------
    def migrate(self, apply: bool = True) -> list[str]:
        applied = self.db["schema_migrations"]
        done = {doc["_id"] for doc in applied.find({}, {"_id": 1})}
        pending = [(v, d, step) for v, d, step in MIGRATIONS if v not in done]
        if apply:
            for version, description, step in pending:
                step(self.db, self.mock)
                try:
                    applied.insert_one({"_id": version, "description": description, "applied_at": utcnow()})
                except DuplicateKeyError:  # another worker migrated concurrently; the steps are idempotent
                    pass
        return [f"{version:04d} {description}" for version, description, _ in pending]

    # -- conversations -------------------------------------------------------------------------
    def create_conversation(self, user_id: str, title: str = "") -> Record:
        now = utcnow()
        doc = {"conversation_id": new_id(), "user_id": user_id, "title": title, "summary": None,
               "total_tokens": 0, "message_count": 0, "content_bytes": 0, "created_at": now, "updated_at": now}
        self.conversations.insert_one(doc)
        return _conversation(doc)

    def get_conversation(self, user_id: str, conversation_id: str) -> Record | None:
        doc = self.conversations.find_one({"conversation_id": conversation_id, "user_id": user_id})
        return _conversation(doc) if doc else None

    def list_conversations(self, user_id: str, limit: int = 100, offset: int = 0) -> list[Record]:
        cursor = (self.conversations.find({"user_id": user_id})
                  .sort([("updated_at", pymongo.DESCENDING), ("_id", pymongo.DESCENDING)])
                  .skip(offset).limit(limit))
        return [_conversation(doc) for doc in cursor]

    def rename_conversation(self, user_id: str, conversation_id: str, title: str) -> bool:
        result = self.conversations.update_one({"conversation_id": conversation_id, "user_id": user_id},
                                               {"$set": {"title": title, "updated_at": utcnow()}})
        return result.matched_count == 1

    def delete_conversation(self, user_id: str, conversation_id: str) -> bool:
        """Conversation first: once it is gone no append can succeed, then its messages go."""
        result = self.conversations.delete_one({"conversation_id": conversation_id, "user_id": user_id})
        if result.deleted_count != 1:
            return False
        self._delete_conversation_images(user_id, conversation_id)
        self.messages.delete_many({"conversation_id": conversation_id, "user_id": user_id})
        self._delete_conversation_documents(user_id, conversation_id)
        self.vectors.delete_many({"conversation_id": conversation_id})
        return True

    def clear_messages(self, user_id: str, conversation_id: str) -> bool:
        result = self.conversations.update_one(
            {"conversation_id": conversation_id, "user_id": user_id},
            {"$set": {"total_tokens": 0, "message_count": 0, "content_bytes": 0, "summary": None,
                      "updated_at": utcnow()}})
        if result.matched_count != 1:
            return False
        self._delete_conversation_images(user_id, conversation_id)
        self.messages.delete_many({"conversation_id": conversation_id, "user_id": user_id})
        self.vectors.delete_many({"conversation_id": conversation_id})
        return True

    def set_summary(self, user_id: str, conversation_id: str, content: str,
                    last_message_id: str, tokens: int, *, extends=ANY_CHECKPOINT) -> bool:
        summary = {"content": content, "last_message_id": last_message_id, "tokens": int(tokens)}
        owned = {"conversation_id": conversation_id, "user_id": user_id}
        if extends is None:
            owned["$or"] = [{"summary": None}, {"summary.last_message_id": None}]
        elif extends is not ANY_CHECKPOINT:
            owned["summary.last_message_id"] = extends
        result = self.conversations.update_one(owned, {"$set": {"summary": summary}})
        return result.matched_count == 1

    # -- messages ------------------------------------------------------------------------------
    def append_message(self, user_id: str, conversation_id: str, role: str, content: str, *,
                       tokens: int = 0, parent_message_id: str | None = None, agent: str | None = None,
                       finish_reason: str | None = None, message_id: str | None = None,
                       meta: dict | None = None) -> Record:
        """Atomic counter bump (its new message_count is the message's seq), then one insert."""
        validate_message(role, content, finish_reason, meta)
        tokens = int(tokens)
        if tokens < 0:
            raise ValueError("tokens must be >= 0")
        message_id = message_id or new_id()
        existing = self.get_message(user_id, message_id)
        if existing:
            return existing
        owned = {"conversation_id": conversation_id, "user_id": user_id}
        now, size = utcnow(), content_bytes(content)
        bumped = self.conversations.find_one_and_update(
            owned, {"$inc": {"message_count": 1, "total_tokens": tokens, "content_bytes": size},
                    "$set": {"updated_at": now}},
            projection={"message_count": 1}, return_document=ReturnDocument.AFTER)
        if bumped is None:
            raise NotFound(conversation_id)
        doc = {"message_id": message_id, "conversation_id": conversation_id, "user_id": user_id,
               "parent_message_id": parent_message_id, "role": role, "content": content, "created_at": now,
               "tokens": tokens, "agent": agent, "finish_reason": finish_reason,
               "seq": bumped["message_count"], "meta": meta}
        try:
            self.messages.insert_one(doc)
        except WriteError as error:
            # Definitely not inserted: give the bump back. A duplicate message_id means a
            # concurrent re-send of the same message won the race (or another user owns the id).
            self.conversations.update_one(owned, {"$inc": {"message_count": -1, "total_tokens": -tokens,
                                                           "content_bytes": -size}})
            if isinstance(error, DuplicateKeyError):
                existing = self.get_message(user_id, message_id)
                if existing:
                    return existing
                raise ValueError("message_id is already in use") from error
            raise
        return _message(doc)

    def get_message(self, user_id: str, message_id: str) -> Record | None:
        doc = self.messages.find_one({"message_id": message_id, "user_id": user_id})
        return _message(doc) if doc else None

    def list_messages(self, user_id: str, conversation_id: str) -> list[Record]:
        cursor = (self.messages.find({"conversation_id": conversation_id, "user_id": user_id})
                  .sort([("seq", pymongo.ASCENDING), ("_id", pymongo.ASCENDING)]))
        return [_message(doc) for doc in cursor]

    def branch_since(self, user_id: str, conversation_id: str, leaf_id: str,
                     checkpoint_id: str | None = None) -> list[Record]:
        """A walk in bounded pages (mongo_branch.py): O(path since the checkpoint)."""
        return [_message(doc) for doc in branch_docs(self.messages, user_id, conversation_id, leaf_id, checkpoint_id)]

    # -- search --------------------------------------------------------------------------------
    def search(self, user_id: str, query: str, limit: int = 20) -> list[Record]:
        """$text ranking over the user's messages and titles; `word*` falls back to a regex scan.

        MongoDB ORs bare words, so a several-word query quotes each word: quoted phrases are
        ANDed (a case- and diacritic-insensitive substring check), at the cost of stemming,
        which a single bare word keeps ('runs' finds 'running'). $text has no prefix search,
        so a query ending in `*` matches every word at a word start with a regex, over the
        user's newest `search_candidates` messages only, ranked by how often the words occur.
        """
        words, prefix = query_terms(query)
        if not words:
            return []
        if prefix:
            hits = self._prefix_hits(user_id, words, limit)
        else:
            hits = self._text_hits(user_id, words, limit)
        hits.sort(key=lambda hit: hit["score"], reverse=True)
        return self._with_conversations(user_id, words, best_per_conversation(hits, limit))

    def _text_hits(self, user_id: str, words: list[str], limit: int) -> list[Record]:
        search = words[0] if len(words) == 1 else " ".join(f'"{word}"' for word in words)
        where = {"user_id": user_id, "$text": {"$search": search}}
        by_score = [("score", _TEXT_SCORE)]
        messages = self.messages.find(where, {"_id": 0, "message_id": 1, "conversation_id": 1, "content": 1,
                                              "score": _TEXT_SCORE}).sort(by_score).limit(limit * 4)
        titles = self.conversations.find(where, {"_id": 0, "conversation_id": 1, "title": 1,
                                                 "score": _TEXT_SCORE}).sort(by_score).limit(limit)
        return ([{"conversation_id": m["conversation_id"], "message_id": m["message_id"],
                  "score": m["score"], "text": m["content"]} for m in messages]
                + [{"conversation_id": c["conversation_id"], "message_id": None,
                    "score": c["score"], "text": c["title"]} for c in titles])

    def _prefix_hits(self, user_id: str, words: list[str], limit: int) -> list[Record]:
        # Server side `(^|\W)word` is a superset of a word-start match whether or not the
        # server's regex engine is Unicode-aware; Python's `\b` then checks exactly.
        server = [{"$regex": r"(?:^|\W)" + re.escape(word), "$options": "i"} for word in words]
        exact = [re.compile(r"\b" + re.escape(word), re.IGNORECASE) for word in words]
        counter = re.compile(r"\b(?:" + "|".join(map(re.escape, words)) + ")", re.IGNORECASE)
        messages = self.messages.aggregate([
            {"$match": {"user_id": user_id}}, {"$sort": {"created_at": pymongo.DESCENDING}},
            {"$limit": self.search_candidates},
            {"$match": {"$and": [{"content": pattern} for pattern in server]}}, {"$limit": limit * 4},
            {"$project": {"_id": 0, "message_id": 1, "conversation_id": 1, "content": 1}}])
        titles = self.conversations.find({"user_id": user_id, "$and": [{"title": p} for p in server]},
                                         {"_id": 0, "conversation_id": 1, "title": 1}).limit(limit * 4)
        hits = ([{"conversation_id": m["conversation_id"], "message_id": m["message_id"], "text": m["content"]}
                 for m in messages]
                + [{"conversation_id": c["conversation_id"], "message_id": None, "text": c["title"]}
                   for c in titles])
        hits = [hit for hit in hits if all(p.search(hit["text"]) for p in exact)]
        for hit in hits:
            hit["score"] = float(len(counter.findall(hit["text"])))
        return hits

    def _with_conversations(self, user_id: str, words: list[str], hits: list[Record]) -> list[Record]:
        ids = [hit["conversation_id"] for hit in hits]
        found = {doc["conversation_id"]: _conversation(doc) for doc in
                 self.conversations.find({"user_id": user_id, "conversation_id": {"$in": ids}})}
        return hits_with_conversations(hits, found, words)


def _conversation(doc: dict) -> Record:
    record = {key: doc.get(key) for key in _CONVERSATION_KEYS}
    record["created_at"], record["updated_at"] = as_utc(doc["created_at"]), as_utc(doc["updated_at"])
    summary = doc.get("summary")
    record["summary"] = ({"content": summary["content"], "last_message_id": summary["last_message_id"],
                          "tokens": summary["tokens"]} if summary else None)
    return record


def _message(doc: dict) -> Record:
    record = {key: doc.get(key) for key in _MESSAGE_KEYS}
    record["created_at"] = as_utc(doc["created_at"])
    return record
