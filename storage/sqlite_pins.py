"""Pinned facts of a conversation (SQLite): a JSON list in conversations.pinned_facts (migration 9)."""
from __future__ import annotations

import json


class SqlitePins:
    """Mixed into SqliteStore; uses its `_db` and `_write`."""

    def get_pinned_facts(self, user_id: str, conversation_id: str) -> list[str] | None:
        row = self._db().execute("SELECT pinned_facts FROM conversations WHERE conversation_id = ? AND user_id = ?",
                                 (conversation_id, user_id)).fetchone()
        return None if row is None else json.loads(row[0])

    def set_pinned_facts(self, user_id: str, conversation_id: str, facts: list[str]) -> bool:
        with self._write() as db:
            cursor = db.execute("UPDATE conversations SET pinned_facts = ? WHERE conversation_id = ? AND user_id = ?",
                                (json.dumps(list(facts), ensure_ascii=False), conversation_id, user_id))
        return cursor.rowcount == 1
