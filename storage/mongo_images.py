"""Images attached to user messages (MongoDB): one document per image in `images` (migration 11).

Stored before their message exists (see storage/sqlite_images.py); swept when it never came.
"""
from __future__ import annotations

from datetime import datetime

from bson import Binary

from .base import Record, as_utc, new_id, utcnow

_FIELDS = {"_id": 0, "image_id": 1, "message_id": 1, "file_name": 1, "mime": 1, "width": 1, "height": 1,
           "size_bytes": 1, "created_at": 1}


class MongoImages:
    """Mixed into MongoStore; uses its `db` and `messages` collection."""

    @property
    def images(self):
        return self.db["images"]

    def add_image(self, user_id: str, message_id: str, file_name: str, mime: str, width: int, height: int,
                  data: bytes) -> Record:
        doc = {"image_id": new_id(), "user_id": user_id, "message_id": message_id, "file_name": file_name,
               "mime": mime, "width": width, "height": height, "size_bytes": len(data), "data": Binary(data),
               "created_at": utcnow()}
        self.images.insert_one(doc)
        return _image({key: doc[key] for key in _FIELDS if key != "_id"})

    def get_image(self, user_id: str, image_id: str, data: bool = True) -> Record | None:
        doc = self.images.find_one({"image_id": image_id, "user_id": user_id}, {**_FIELDS, "data": 1} if data
                                   else _FIELDS)
        return _image(doc) if doc else None

    def message_images(self, user_id: str, message_ids: list[str]) -> list[Record]:
        if not message_ids:
            return []
        cursor = self.images.find({"user_id": user_id, "message_id": {"$in": list(message_ids)}},
                                  _FIELDS).sort([("created_at", 1), ("_id", 1)])
        return [_image(doc) for doc in cursor]

    def delete_image(self, user_id: str, image_id: str) -> bool:
        return self.images.delete_one({"image_id": image_id, "user_id": user_id}).deleted_count == 1

    def _delete_conversation_images(self, user_id: str, conversation_id: str) -> None:
        """Before the conversation's messages go (their ids are how images are found)."""
        ids = self.messages.distinct("message_id", {"conversation_id": conversation_id, "user_id": user_id})
        if ids:
            self.images.delete_many({"user_id": user_id, "message_id": {"$in": ids}})

    def sweep_images(self, user_id: str, before: datetime) -> int:
        old = list(self.images.find({"user_id": user_id, "created_at": {"$lt": as_utc(before)}},
                                    {"image_id": 1, "message_id": 1}))
        if not old:
            return 0
        stored = {doc["message_id"] for doc in self.messages.find(
            {"user_id": user_id, "message_id": {"$in": [doc["message_id"] for doc in old]}}, {"message_id": 1})}
        gone = [doc["image_id"] for doc in old if doc["message_id"] not in stored]
        return self.images.delete_many({"user_id": user_id, "image_id": {"$in": gone}}).deleted_count if gone else 0

    def image_bytes(self, user_id: str | None) -> int:
        return size_total(self.images, user_id)


def size_total(collection, user_id: str | None) -> int:
    """The sum of the collection's size_bytes: one user's, or everyone's (None)."""
    match = {} if user_id is None else {"user_id": user_id}
    rows = list(collection.aggregate([{"$match": match}, {"$group": {"_id": None, "total": {"$sum": "$size_bytes"}}}]))
    return int(rows[0]["total"]) if rows else 0


def _image(doc: dict) -> Record:
    record = dict(doc)
    record["created_at"] = as_utc(record["created_at"])
    if "data" in record:
        record["data"] = bytes(record["data"])
    return record
