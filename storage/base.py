"""The ConversationStore interface both stores implement, and the records they return.

Records are plain dicts (JSON-ready apart from datetimes), so routes, agents and tests
never depend on which store is in use. Every method takes the user id: a conversation
that belongs to someone else is indistinguishable from one that does not exist.
"""
from __future__ import annotations

import re
import uuid
from abc import ABC, abstractmethod
from datetime import datetime, timezone
from typing import Any, Iterable

ROLES = ("user", "assistant", "system")
FINISH_REASONS = ("stop", "length", "stopped", "error", "content_filter", "tool_calls")
Record = dict[str, Any]


class NotFound(LookupError):
    """The conversation does not exist for this user."""


def new_id() -> str:
    return str(uuid.uuid4())


def utcnow() -> datetime:
    """Millisecond precision: what both SQLite text and BSON dates keep."""
    now = datetime.now(timezone.utc)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


_WORD = re.compile(r"\w+", re.UNICODE)


def query_terms(query: str, limit: int = 16) -> tuple[list[str], bool]:
    """Words of a search box query, and whether the last one is a prefix (`hel*`)."""
    words = _WORD.findall(query.lower())[:limit]
    return words, bool(words) and query.rstrip().endswith("*")


class ConversationStore(ABC):
    """Conversations and their messages, one message per row/document."""

    backend: str = ""

    @abstractmethod
    def migrate(self, apply: bool = True) -> list[str]:
        """Apply (or, with apply=False, list) pending migrations; returns what was (or would be) done."""

    @abstractmethod
    def ping(self) -> bool:
        """True when the database answers."""

    @abstractmethod
    def create_conversation(self, user_id: str, title: str = "") -> Record: ...

    @abstractmethod
    def get_conversation(self, user_id: str, conversation_id: str) -> Record | None: ...

    @abstractmethod
    def list_conversations(self, user_id: str, limit: int = 100, offset: int = 0) -> list[Record]:
        """Newest activity first."""

    @abstractmethod
    def rename_conversation(self, user_id: str, conversation_id: str, title: str) -> bool: ...

    @abstractmethod
    def delete_conversation(self, user_id: str, conversation_id: str) -> bool:
        """Remove the conversation and all its messages."""

    @abstractmethod
    def clear_messages(self, user_id: str, conversation_id: str) -> bool:
        """Empty the conversation (the user asked for a reset); totals and summary go too."""

    @abstractmethod
    def append_message(self, user_id: str, conversation_id: str, role: str, content: str, *,
                       tokens: int = 0, parent_message_id: str | None = None,
                       agent: str | None = None, finish_reason: str | None = None,
                       message_id: str | None = None) -> Record:
        """One insert plus a counter bump on the conversation; raises NotFound.

        Passing an existing message_id returns the stored message unchanged (idempotent re-send).
        """

    @abstractmethod
    def get_message(self, user_id: str, message_id: str) -> Record | None:
        """One of the user's messages by id (None for another user's or a missing one)."""

    @abstractmethod
    def list_messages(self, user_id: str, conversation_id: str) -> list[Record]:
        """Every message of the conversation in the order they were appended."""

    @abstractmethod
    def set_summary(self, user_id: str, conversation_id: str, content: str,
                    last_message_id: str, tokens: int) -> bool:
        """Store the rolling summary checkpoint: text, the last message it covers, its size."""

    @abstractmethod
    def search(self, user_id: str, query: str, limit: int = 20) -> list[Record]:
        """Ranked full-text search over the user's messages and titles, one hit per conversation.

        Each hit: conversation_id, title, created_at, updated_at, score (higher is better),
        message_id (best-matching message, None when only the title matched), snippet and
        highlights ([start, end) offsets of matched words inside snippet).
        """

    def close(self) -> None:
        """Release connections (optional)."""


def validate_message(role: str, content: str, finish_reason: str | None) -> None:
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}")
    if not isinstance(content, str):
        raise ValueError("content must be a string")
    if finish_reason is not None and finish_reason not in FINISH_REASONS:
        raise ValueError(f"finish_reason must be one of {', '.join(FINISH_REASONS)}")


def best_per_conversation(hits: Iterable[Record], limit: int) -> list[Record]:
    """Keep the first (best) hit of each conversation, in rank order, up to limit."""
    seen: dict[str, Record] = {}
    for hit in hits:
        if hit["conversation_id"] not in seen:
            seen[hit["conversation_id"]] = hit
            if len(seen) == limit:
                break
    return list(seen.values())
