"""MongoStore's vectors: the `vectors` collection, one document per message or upload chunk.

Each holds its item's key, owner, conversation or document (for deletes) and `pos`, the item's
own `_id`, so the backlog walks the source collection in `_id` order and a search reads the
user's newest `candidates` vectors by index. Ranking is vectors.top_k, the same exact cosine
as SQLite's; `$vectorSearch` (Atlas only) is not used, so mongomock and plain servers run it.
"""
from __future__ import annotations

from typing import Any

import pymongo
from bson import ObjectId
from pymongo.collection import Collection

from .base import Record, vector_hits
from .mongo_library import _chunk
from .vectors import check_kind, top_k

_SCAN_PAGE = 500  # source items read per step while looking for ones without a vector


class MongoVectors:
    """The vectors half of MongoStore."""

    @property
    def vectors(self) -> Collection:
        return self.db["vectors"]

    def _source(self, kind: str) -> tuple[Collection, str]:
        """The collection holding the text and the field a vector's `item` names."""
        check_kind(kind)
        return (self.messages, "message_id") if kind == "message" else (self.doc_chunks, "_id")

    def vector_backlog(self, kind: str, after: Any, limit: int) -> list[Record]:
        source, key = self._source(kind)
        while limit > 0:
            where = {} if after is None else {"_id": {"$gt": ObjectId(after)}}
            page = list(source.find(where, {"_id": 1, key: 1, "content": 1})
                        .sort("_id", pymongo.ASCENDING).limit(_SCAN_PAGE))
            if not page:
                return []
            done = {doc["item"] for doc in self.vectors.find(
                {"kind": kind, "item": {"$in": [doc[key] for doc in page]}}, {"item": 1})}
            missing = [{"pos": str(doc["_id"]), "key": str(doc[key]), "text": doc["content"]}
                       for doc in page if doc[key] not in done]
            if missing:
                return missing[:limit]
            after = page[-1]["_id"]
        return []

    def vector_start(self, kind: str) -> Any:
        source, _ = self._source(kind)
        newest = self.vectors.find_one({"kind": kind}, {"pos": 1}, sort=[("pos", pymongo.DESCENDING)])
        if newest is None:
            newest = source.find_one({}, {"_id": 1}, sort=[("_id", pymongo.DESCENDING)])
            return None if newest is None else str(newest["_id"])
        return str(newest["pos"])

    def put_vectors(self, kind: str, items: list[tuple[Any, bytes]]) -> int:
        source, key = self._source(kind)
        owner = "conversation_id" if kind == "message" else "document_id"
        stored = 0
        for item, blob in items:
            item = item if kind == "message" else ObjectId(item)
            found = source.find_one({key: item}, {"_id": 1, "user_id": 1, owner: 1})
            if found is None:
                continue
            self.vectors.update_one({"kind": kind, "item": item},
                                    {"$set": {"user_id": found["user_id"], owner: found[owner], "pos": found["_id"],
                                              "v": bytes(blob)}}, upsert=True)
            if source.find_one({key: item}, {"_id": 1}) is None:  # deleted meanwhile: no orphan vector
                self.vectors.delete_one({"kind": kind, "item": item})
                continue
            stored += 1
        return stored

    def vector_counts(self, kind: str) -> tuple[int, int]:
        source, _ = self._source(kind)
        return self.vectors.count_documents({"kind": kind}), source.count_documents({})

    def _nearest(self, kind: str, user_id: str, vector, k: int, candidates: int) -> list[tuple[Any, float]]:
        if candidates <= 0:
            return []
        rows = list(self.vectors.find({"user_id": user_id, "kind": kind}, {"item": 1, "v": 1})
                    .sort("pos", pymongo.DESCENDING).limit(candidates))
        return [(rows[i]["item"], score) for i, score in top_k(vector, [bytes(row["v"]) for row in rows], k)]

    def search_vectors(self, user_id: str, vector, limit: int = 20, candidates: int = 10000,
                       query: str = "") -> list[Record]:
        nearest = self._nearest("message", user_id, vector, limit * 4, candidates)
        if not nearest:
            return []
        found = {doc["message_id"]: doc for doc in self.messages.find(
            {"user_id": user_id, "message_id": {"$in": [item for item, _ in nearest]}},
            {"_id": 0, "message_id": 1, "conversation_id": 1, "content": 1})}
        hits = [{"conversation_id": found[item]["conversation_id"], "message_id": item, "score": score,
                 "text": found[item]["content"]} for item, score in nearest if item in found]
        return vector_hits(self, user_id, hits, limit, query)

    def search_chunk_vectors(self, user_id: str, vector, limit: int = 5, candidates: int = 10000) -> list[Record]:
        nearest = self._nearest("chunk", user_id, vector, limit, candidates)
        if not nearest:
            return []
        chunks = {doc["_id"]: doc for doc in self.doc_chunks.find(
            {"user_id": user_id, "_id": {"$in": [item for item, _ in nearest]}})}
        names = {doc["document_id"]: doc["file_name"] for doc in self.documents.find(
            {"user_id": user_id, "document_id": {"$in": list({c["document_id"] for c in chunks.values()})}})}
        return [{**_chunk(chunks[item]), "file_name": names[chunks[item]["document_id"]], "score": round(score, 6)}
                for item, score in nearest if item in chunks and chunks[item]["document_id"] in names]
