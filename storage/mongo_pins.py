"""Pinned facts of a conversation (MongoDB): an array field on its conversations document."""
from __future__ import annotations


class MongoPins:
    """Mixed into MongoStore; uses its `conversations` collection."""

    def get_pinned_facts(self, user_id: str, conversation_id: str) -> list[str] | None:
        doc = self.conversations.find_one({"conversation_id": conversation_id, "user_id": user_id},
                                          {"pinned_facts": 1})
        return None if doc is None else list(doc.get("pinned_facts") or [])

    def set_pinned_facts(self, user_id: str, conversation_id: str, facts: list[str]) -> bool:
        result = self.conversations.update_one({"conversation_id": conversation_id, "user_id": user_id},
                                               {"$set": {"pinned_facts": list(facts)}})
        return result.matched_count == 1
