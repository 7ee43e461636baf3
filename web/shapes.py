"""The public contract's JSON shapes, built from store records."""
from __future__ import annotations

from datetime import UTC, datetime

import threads

MESSAGE_FIELDS = ("message_id", "role", "content", "created_at", "tokens", "agent", "finish_reason",
                  "parent_message_id", "meta")


def iso(moment: datetime | None) -> str | None:
    """UTC ISO-8601 with a Z, as the API has always answered."""
    if moment is None:
        return None
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def message(record: dict) -> dict:
    shaped = {field: record.get(field) for field in MESSAGE_FIELDS}
    shaped["created_at"] = iso(record["created_at"])
    return shaped


def conversation_summary(record: dict) -> dict:
    """One row of /list_conversations: the contract's fields plus title, activity and totals."""
    return {"conversation_id": record["conversation_id"], "title": record["title"],
            "created_at": iso(record["created_at"]), "updated_at": iso(record["updated_at"]),
            "message_count": record["message_count"], "total_tokens": record["total_tokens"]}


def conversation(record: dict, messages: list[dict]) -> dict:
    """/load_conversation: the contract's `conversation` list, with the conversation's own fields beside it.

    Every message carries its resolved parent (threads.py), so a reader sees the branches
    without knowing the storage rules."""
    shaped = conversation_summary(record)
    shaped["summary"] = record["summary"]
    shaped["conversation"] = [message(m) for m in threads.with_parents(messages)]
    return shaped


def search_hit(hit: dict) -> dict:
    shaped = dict(hit)
    shaped["created_at"], shaped["updated_at"] = iso(hit["created_at"]), iso(hit["updated_at"])
    return shaped
