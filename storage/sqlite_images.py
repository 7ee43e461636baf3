"""Images attached to user messages (SQLite): the re-encoded bytes in `images` (migration 12).

An image is stored before its message (the page uploads it, then sends the message whose id it
was given), so `message_id` may name a message that does not exist yet; images whose message never
came are swept (`sweep_images`).
"""
from __future__ import annotations

import sqlite3
from datetime import datetime

from .base import Record, as_utc, new_id, utcnow
from .sqlite_migrations import iso

_COLUMNS = "image_id, message_id, file_name, mime, width, height, size_bytes, created_at"


class SqliteImages:
    """Mixed into SqliteStore; uses its `_db` and `_write`."""

    def add_image(self, user_id: str, message_id: str, file_name: str, mime: str, width: int, height: int,
                  data: bytes) -> Record:
        image_id = new_id()
        with self._write() as db:
            db.execute("INSERT INTO images (image_id, user_id, message_id, file_name, mime, width, height, "
                       "size_bytes, data, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                       (image_id, user_id, message_id, file_name, mime, width, height, len(data), data,
                        iso(utcnow())))
        return self.get_image(user_id, image_id, data=False)

    def get_image(self, user_id: str, image_id: str, data: bool = True) -> Record | None:
        columns = _COLUMNS + (", data" if data else "")
        row = self._db().execute(f"SELECT {columns} FROM images WHERE image_id = ? AND user_id = ?",
                                 (image_id, user_id)).fetchone()
        return _image(row) if row else None

    def message_images(self, user_id: str, message_ids: list[str]) -> list[Record]:
        if not message_ids:
            return []
        marks = ", ".join("?" * len(message_ids))
        rows = self._db().execute(f"SELECT {_COLUMNS} FROM images WHERE user_id = ? AND message_id IN ({marks}) "
                                  "ORDER BY created_at, rowid", (user_id, *message_ids))
        return [_image(row) for row in rows]

    def delete_image(self, user_id: str, image_id: str) -> bool:
        with self._write() as db:
            return db.execute("DELETE FROM images WHERE image_id = ? AND user_id = ?",
                              (image_id, user_id)).rowcount == 1

    @staticmethod
    def _delete_conversation_images(db: sqlite3.Connection, user_id: str, conversation_id: str) -> None:
        """Inside the transaction that deletes the conversation's messages, before it does."""
        db.execute("DELETE FROM images WHERE user_id = ? AND message_id IN "
                   "(SELECT message_id FROM messages WHERE conversation_id = ? AND user_id = ?)",
                   (user_id, conversation_id, user_id))

    def sweep_images(self, user_id: str, before: datetime) -> int:
        with self._write() as db:
            return db.execute("DELETE FROM images WHERE user_id = ? AND created_at < ? AND message_id NOT IN "
                              "(SELECT message_id FROM messages WHERE user_id = ?)",
                              (user_id, iso(as_utc(before)), user_id)).rowcount

    def image_bytes(self, user_id: str | None) -> int:
        return size_total(self._db(), "images", user_id)


def size_total(db: sqlite3.Connection, table: str, user_id: str | None) -> int:
    """The sum of `table`'s size_bytes: one user's, or everyone's (None). `table` is ours, never input."""
    where, args = ("", ()) if user_id is None else (" WHERE user_id = ?", (user_id,))
    return int(db.execute(f"SELECT COALESCE(SUM(size_bytes), 0) FROM {table}{where}", args).fetchone()[0])


def _image(row: sqlite3.Row) -> Record:
    record = dict(row)
    record["created_at"] = datetime.fromisoformat(record["created_at"])
    if "data" in record:
        record["data"] = bytes(record["data"])
    return record
