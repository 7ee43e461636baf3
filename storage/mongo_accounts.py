"""Accounts on MongoDB, and moving an anonymous user's records to the account it logs in to.

A mixin of MongoStore. Without multi-document transactions (a standalone server has none) the
move is a sequence of update_many calls; each is idempotent, so a move cut short is finished by
the next log-in. An invite is consumed by one conditional find_one_and_update (atomic per document).
"""
from __future__ import annotations

from datetime import datetime

from pymongo.errors import DuplicateKeyError

from .base import AccountExists, Record, as_utc, utcnow

_ACCOUNT_KEYS = ("username", "password_hash", "user_id", "created_at")
_INVITE_KEYS = ("code_key", "created_by", "created_at", "expires_at", "used_at", "used_by")


class MongoAccounts:
    def create_account(self, username: str, password_hash: str, user_id: str) -> Record:
        doc = {"username_key": username.lower(), "username": username, "password_hash": password_hash,
               "user_id": user_id, "created_at": utcnow()}
        try:
            self.db["accounts"].insert_one(doc)
        except DuplicateKeyError as error:
            raise AccountExists(username) from error
        return self.get_account(username)

    def get_account(self, username: str) -> Record | None:
        doc = self.db["accounts"].find_one({"username_key": username.lower()})
        if doc is None:
            return None
        record = {key: doc[key] for key in _ACCOUNT_KEYS}
        record["created_at"] = as_utc(doc["created_at"])
        return record

    def move_user_data(self, from_user_id: str, to_user_id: str) -> int:
        if from_user_id == to_user_id:
            return 0
        change, mine = {"$set": {"user_id": to_user_id}}, {"user_id": from_user_id}
        moved = self.conversations.update_many(mine, change).modified_count
        for collection in (self.messages, self.jobs, self.db["images"], self.db["vectors"]):
            collection.update_many(mine, change)
        for document in list(self.documents.find(mine, {"document_id": 1, "content_hash": 1})):
            if self.documents.find_one({"user_id": to_user_id, "content_hash": document["content_hash"]}):
                self.delete_document(from_user_id, document["document_id"])  # the account has it already
                continue
            self.doc_chunks.update_many({"document_id": document["document_id"]}, change)
            self.documents.update_one({"document_id": document["document_id"]}, change)
        for cached in list(self.model_cache.find(mine)):
            if not self.model_cache.find_one({"user_id": to_user_id, "key": cached["key"]}):
                self.model_cache.update_one({"_id": cached["_id"]}, change)
        self.model_cache.delete_many(mine)
        return moved

    def create_invite(self, code_key: str, created_by: str, expires_at: datetime) -> Record:
        self.db["invites"].insert_one({"code_key": code_key, "created_by": created_by, "created_at": utcnow(),
                                       "expires_at": as_utc(expires_at), "used_at": None, "used_by": None})
        return self.get_invite(code_key)

    def consume_invite(self, code_key: str, username: str, now: datetime | None = None) -> bool:
        found = self.db["invites"].find_one_and_update(
            {"code_key": code_key, "used_at": None, "expires_at": {"$gt": as_utc(now or utcnow())}},
            {"$set": {"used_at": utcnow(), "used_by": username}})
        return found is not None

    def release_invite(self, code_key: str, username: str) -> bool:
        return self.db["invites"].update_one({"code_key": code_key, "used_by": username},
                                             {"$set": {"used_at": None, "used_by": None}}).modified_count == 1

    def get_invite(self, code_key: str) -> Record | None:
        doc = self.db["invites"].find_one({"code_key": code_key})
        if doc is None:
            return None
        record = {key: doc.get(key) for key in _INVITE_KEYS}
        for key in ("created_at", "expires_at", "used_at"):
            record[key] = as_utc(record[key]) if record[key] else None
        return record
