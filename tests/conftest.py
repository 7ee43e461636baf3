"""Shared fixtures: stores, app -> client -> socket client, a real Redis when needed."""
from __future__ import annotations

import os
import uuid

import pytest

MONGOMOCK_SKIP = "mongomock does not implement {what}; runs against a real MongoDB when MONGODB_URI is set"
STORE_KINDS = ["sqlite", "mongomock"] + (["mongodb"] if os.environ.get("MONGODB_URI") else [])


def _make_store(kind: str, tmp_path):
    if kind == "sqlite":
        from storage.sqlite_store import SqliteStore
        return SqliteStore(tmp_path / "contract.sqlite3")
    import mongomock
    import pymongo
    from storage.mongo_store import MongoStore
    if kind == "mongomock":
        return MongoStore(mongomock.MongoClient(), "chat_contract", mock=True)
    client = pymongo.MongoClient(os.environ["MONGODB_URI"], serverSelectionTimeoutMS=5000)
    return MongoStore(client, f"chat_contract_{uuid.uuid4().hex[:12]}")


@pytest.fixture(params=STORE_KINDS)
def store(request, tmp_path):
    """A fresh, migrated store of each kind."""
    made = _make_store(request.param, tmp_path)
    made.migrate()
    yield made
    if request.param == "mongodb":
        made.client.drop_database(made.db.name)
    made.close()


@pytest.fixture
def search_store(store):
    """The store, for cases needing full-text search (mongomock has no $text)."""
    if getattr(store, "mock", False):
        pytest.skip(MONGOMOCK_SKIP.format(what="$text search or textScore"))
    return store
