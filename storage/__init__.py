"""Conversation stores: SQLite (embedded default) or MongoDB, chosen by configuration."""
from __future__ import annotations

from .base import ConversationStore, NotFound


def make_store(config) -> ConversationStore:
    """Build the store the configuration names; connects lazily on first use."""
    if config.MONGODB_URI:
        from .mongo_store import MongoStore
        return MongoStore.from_uri(config.MONGODB_URI, config.MONGODB_DB)
    from .sqlite_store import SqliteStore
    return SqliteStore(config.sqlite_path, search_candidates=config.SEARCH_CANDIDATES)


__all__ = ["ConversationStore", "NotFound", "make_store"]
