"""Uploaded documents (chunks searchable with $text), background jobs and the model cache, on MongoDB.

A mixin of MongoStore: it uses the store's `db` and `conversations`. Every query names the
user, so another user's ids match nothing. Collections and indexes: mongo_migrations version 3.
"""
from __future__ import annotations

import pymongo
from pymongo import ReturnDocument
from pymongo.collection import Collection
from pymongo.errors import DuplicateKeyError, PyMongoError

from .base import (
    NotFound,
    Record,
    as_utc,
    job_changes,
    new_id,
    query_terms,
    utcnow,
    validate_cache_value,
    validate_chunk_meta,
    validate_document,
)
from .mongo_images import size_total

_DOCUMENT_KEYS = ("document_id", "user_id", "conversation_id", "file_name", "content_hash", "chunk_count",
                  "tokens", "created_at")
_JOB_KEYS = ("job_id", "user_id", "kind", "conversation_id", "status", "done", "total", "result", "error",
             "created_at", "updated_at")
_TEXT_SCORE = {"$meta": "textScore"}


class MongoLibrary:
    """The documents, jobs and cache half of MongoStore."""

    @property
    def documents(self) -> Collection:
        return self.db["documents"]

    @property
    def doc_chunks(self) -> Collection:
        return self.db["document_chunks"]

    @property
    def jobs(self) -> Collection:
        return self.db["jobs"]

    @property
    def model_cache(self) -> Collection:
        return self.db["model_cache"]

    # -- documents ---------------------------------------------------------------------------
    def add_document(self, user_id: str, file_name: str, content_hash: str, chunks: list[str],
                     chunk_tokens: list[int], conversation_id: str | None = None, size_bytes: int = 0,
                     chunk_meta: list[dict | None] | None = None) -> Record:
        """The unique (user_id, content_hash) index decides a race between two equal uploads."""
        validate_document(chunks, chunk_tokens)
        validate_chunk_meta(chunks, chunk_meta)
        owned = {"conversation_id": conversation_id, "user_id": user_id}
        if conversation_id is not None and self.conversations.find_one(owned, {"_id": 1}) is None:
            raise NotFound(conversation_id)
        doc = {"document_id": new_id(), "user_id": user_id, "conversation_id": conversation_id,
               "file_name": file_name, "content_hash": content_hash, "chunk_count": len(chunks),
               "tokens": sum(chunk_tokens), "created_at": utcnow(), "size_bytes": max(0, size_bytes)}
        try:
            self.documents.insert_one(doc)
        except DuplicateKeyError:
            known = self.documents.find_one_and_update({"user_id": user_id, "content_hash": content_hash},
                                                       {"$set": {"file_name": file_name}},
                                                       return_document=ReturnDocument.AFTER)
            if known is None:  # deleted between the two calls: store it afresh
                return self.add_document(user_id, file_name, content_hash, chunks, chunk_tokens, conversation_id,
                                         size_bytes, chunk_meta)
            return _document(known)
        self._insert_chunks(doc, chunks, chunk_tokens, chunk_meta or [None] * len(chunks))
        return _document(doc)

    def _insert_chunks(self, doc: dict, chunks: list[str], chunk_tokens: list[int],
                       chunk_meta: list[dict | None]) -> None:
        """One batched insert_many; if it fails, the document goes too (no half-stored upload)."""
        if not chunks:
            return
        rows = [{"document_id": doc["document_id"], "user_id": doc["user_id"], "idx": i, "content": text,
                 "tokens": n, **({} if meta is None else {"meta": meta})}
                for i, (text, n, meta) in enumerate(zip(chunks, chunk_tokens, chunk_meta, strict=False))]
        try:
            self.doc_chunks.insert_many(rows, ordered=False)
        except PyMongoError:
            self.delete_document(doc["user_id"], doc["document_id"])
            raise

    def upload_bytes(self, user_id: str | None) -> int:
        """Documents and the images attached to messages (mongo_images.py)."""
        return size_total(self.documents, user_id) + self.image_bytes(user_id)

    def get_document(self, user_id: str, document_id: str) -> Record | None:
        doc = self.documents.find_one({"document_id": document_id, "user_id": user_id})
        return _document(doc) if doc else None

    def list_documents(self, user_id: str, limit: int = 50) -> list[Record]:
        if limit <= 0:  # limit(0) would mean "no limit"
            return []
        cursor = (self.documents.find({"user_id": user_id})
                  .sort([("created_at", pymongo.DESCENDING), ("_id", pymongo.DESCENDING)]).limit(limit))
        return [_document(doc) for doc in cursor]

    def document_chunks(self, user_id: str, document_id: str) -> list[Record]:
        cursor = (self.doc_chunks.find({"document_id": document_id, "user_id": user_id})
                  .sort("idx", pymongo.ASCENDING))
        return [_chunk(doc) for doc in cursor]

    def search_chunks(self, user_id: str, query: str, limit: int = 5) -> list[Record]:
        """$text ORs bare words, ranked by textScore. The words come from query_terms, so
        nothing in them is $text syntax (no quotes, no leading `-`)."""
        words, _ = query_terms(query)
        if not words or limit <= 0:
            return []
        where = {"user_id": user_id, "$text": {"$search": " ".join(words)}}
        fields = {"_id": 0, "document_id": 1, "idx": 1, "content": 1, "tokens": 1, "meta": 1, "score": _TEXT_SCORE}
        hits = list(self.doc_chunks.find(where, fields).sort([("score", _TEXT_SCORE)]).limit(limit))
        names = {doc["document_id"]: doc["file_name"] for doc in self.documents.find(
            {"user_id": user_id, "document_id": {"$in": [hit["document_id"] for hit in hits]}})}
        return [{**_chunk(hit), "file_name": names[hit["document_id"]], "score": hit["score"]}
                for hit in hits if hit["document_id"] in names]  # a document deleted meanwhile drops out

    def delete_document(self, user_id: str, document_id: str) -> bool:
        """The document first: once it is gone, search no longer returns its chunks."""
        if self.documents.delete_one({"document_id": document_id, "user_id": user_id}).deleted_count != 1:
            return False
        self.doc_chunks.delete_many({"document_id": document_id, "user_id": user_id})
        self.db["vectors"].delete_many({"document_id": document_id})
        return True

    def _delete_conversation_documents(self, user_id: str, conversation_id: str) -> None:
        owned = {"conversation_id": conversation_id, "user_id": user_id}
        ids = [doc["document_id"] for doc in self.documents.find(owned, {"document_id": 1})]
        if ids:
            self.documents.delete_many({"user_id": user_id, "document_id": {"$in": ids}})
            self.doc_chunks.delete_many({"user_id": user_id, "document_id": {"$in": ids}})
            self.db["vectors"].delete_many({"document_id": {"$in": ids}})

    # -- background jobs -----------------------------------------------------------------------
    def create_job(self, user_id: str, kind: str, conversation_id: str | None = None) -> Record:
        now = utcnow()
        doc = {"job_id": new_id(), "user_id": user_id, "kind": kind, "conversation_id": conversation_id,
               "status": "pending", "done": 0, "total": 0, "result": None, "error": None,
               "created_at": now, "updated_at": now}
        self.jobs.insert_one(doc)
        return _job(doc)

    def update_job(self, user_id: str, job_id: str, *, status: str | None = None,
                   done: int | None = None, total: int | None = None,
                   result: dict | None = None, error: str | None = None) -> bool:
        changes = job_changes(status, done, total, result, error)
        changes["updated_at"] = utcnow()
        outcome = self.jobs.update_one({"job_id": job_id, "user_id": user_id}, {"$set": changes})
        return outcome.matched_count == 1

    def get_job(self, user_id: str, job_id: str) -> Record | None:
        doc = self.jobs.find_one({"job_id": job_id, "user_id": user_id})
        return _job(doc) if doc else None

    # -- model output cache --------------------------------------------------------------------
    def cache_get(self, user_id: str, key: str) -> str | None:
        doc = self.model_cache.find_one({"user_id": user_id, "key": key}, {"value": 1})
        return doc["value"] if doc else None

    def cache_put(self, user_id: str, key: str, value: str) -> None:
        validate_cache_value(value)
        self.model_cache.update_one({"user_id": user_id, "key": key},
                                    {"$set": {"value": value, "created_at": utcnow()}}, upsert=True)


def _document(doc: dict) -> Record:
    record = {key: doc.get(key) for key in _DOCUMENT_KEYS}
    record["created_at"] = as_utc(doc["created_at"])
    return record


def _chunk(doc: dict) -> Record:
    record = {"document_id": doc["document_id"], "index": doc["idx"], "content": doc["content"],
              "tokens": doc["tokens"]}
    if doc.get("meta") is not None:  # where the chunk is in its document (pages, headings)
        record["meta"] = doc["meta"]
    return record


def _job(doc: dict) -> Record:
    record = {key: doc.get(key) for key in _JOB_KEYS}
    record["created_at"], record["updated_at"] = as_utc(doc["created_at"]), as_utc(doc["updated_at"])
    return record
