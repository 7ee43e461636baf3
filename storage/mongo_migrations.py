"""Versioned schema of the MongoDB store. Append new versions; never edit an applied one.

Each step is idempotent on its own (a second worker racing the first does no harm); the
store records the version in `schema_migrations` once the step has run.
"""
from __future__ import annotations

import copy
from collections.abc import Callable

from pymongo import ASCENDING, DESCENDING, TEXT
from pymongo.database import Database
from pymongo.errors import CollectionInvalid, OperationFailure

from .base import FINISH_REASONS, JOB_STATUSES, ROLES

_STRING = {"bsonType": "string"}
_OPTIONAL_STRING = {"bsonType": ["string", "null"]}
_INTEGER = {"bsonType": ["int", "long"]}  # Python ints encode as int32 or int64 by size
_DATE = {"bsonType": "date"}

CONVERSATION_SCHEMA = {"$jsonSchema": {
    "bsonType": "object",
    "required": ["conversation_id", "user_id", "title", "total_tokens", "message_count",
                 "created_at", "updated_at"],
    "properties": {
        "conversation_id": _STRING,
        "user_id": _STRING,
        "title": _STRING,
        "summary": {"anyOf": [{"bsonType": "null"},
                              {"bsonType": "object", "required": ["content", "last_message_id", "tokens"],
                               "properties": {"content": _STRING, "last_message_id": _OPTIONAL_STRING,
                                              "tokens": _INTEGER}}]},
        "total_tokens": _INTEGER,
        "message_count": _INTEGER,
        "created_at": _DATE,
        "updated_at": _DATE,
    },
}}

MESSAGE_SCHEMA = {"$jsonSchema": {
    "bsonType": "object",
    "required": ["message_id", "conversation_id", "user_id", "role", "content", "created_at",
                 "tokens", "seq"],
    "properties": {
        "message_id": _STRING,
        "conversation_id": _STRING,
        "user_id": _STRING,
        "parent_message_id": _OPTIONAL_STRING,
        "role": {"enum": list(ROLES)},
        "content": _STRING,
        "created_at": _DATE,
        "tokens": {**_INTEGER, "minimum": 0},
        "agent": _OPTIONAL_STRING,
        "finish_reason": {"enum": [*FINISH_REASONS, None]},
        "seq": {**_INTEGER, "minimum": 1},
    },
}}

# -- version 3: message meta, documents and their chunks, jobs, the model cache ----------------
_COUNT = {**_INTEGER, "minimum": 0}
_OPTIONAL_OBJECT = {"bsonType": ["object", "null"]}

MESSAGE_SCHEMA_V3 = copy.deepcopy(MESSAGE_SCHEMA)  # version 1's, plus the optional meta dict
MESSAGE_SCHEMA_V3["$jsonSchema"]["properties"]["meta"] = _OPTIONAL_OBJECT

DOCUMENT_SCHEMA = {"$jsonSchema": {
    "bsonType": "object",
    "required": ["document_id", "user_id", "file_name", "content_hash", "chunk_count", "tokens", "created_at"],
    "properties": {
        "document_id": _STRING,
        "user_id": _STRING,
        "conversation_id": _OPTIONAL_STRING,
        "file_name": _STRING,
        "content_hash": _STRING,
        "chunk_count": _COUNT,
        "tokens": _COUNT,
        "created_at": _DATE,
    },
}}

CHUNK_SCHEMA = {"$jsonSchema": {
    "bsonType": "object",
    "required": ["document_id", "user_id", "idx", "content", "tokens"],
    "properties": {
        "document_id": _STRING,
        "user_id": _STRING,
        "idx": _COUNT,
        "content": _STRING,
        "tokens": _COUNT,
    },
}}

JOB_SCHEMA = {"$jsonSchema": {
    "bsonType": "object",
    "required": ["job_id", "user_id", "kind", "status", "done", "total", "created_at", "updated_at"],
    "properties": {
        "job_id": _STRING,
        "user_id": _STRING,
        "kind": _STRING,
        "conversation_id": _OPTIONAL_STRING,
        "status": {"enum": list(JOB_STATUSES)},
        "done": _COUNT,
        "total": _COUNT,
        "result": _OPTIONAL_OBJECT,
        "error": _OPTIONAL_STRING,
        "created_at": _DATE,
        "updated_at": _DATE,
    },
}}

CACHE_SCHEMA = {"$jsonSchema": {
    "bsonType": "object",
    "required": ["user_id", "key", "value", "created_at"],
    "properties": {"user_id": _STRING, "key": _STRING, "value": _STRING, "created_at": _DATE},
}}

_NAMESPACE_EXISTS = 48


def _with_validator(db: Database, name: str, schema: dict, mock: bool) -> None:
    """Create the collection with its validator, or attach the validator if it already exists."""
    if mock:  # mongomock rejects validator options and collMod: create the collection plainly
        if name not in db.list_collection_names():
            db.create_collection(name)
        return
    try:
        db.create_collection(name, validator=schema)
    except CollectionInvalid:  # pymongo saw it listed already
        db.command("collMod", name, validator=schema)
    except OperationFailure as error:  # created by a concurrent migrate since pymongo checked
        if error.code != _NAMESPACE_EXISTS:
            raise
        db.command("collMod", name, validator=schema)


def _collections(db: Database, mock: bool) -> None:
    _with_validator(db, "conversations", CONVERSATION_SCHEMA, mock)
    _with_validator(db, "messages", MESSAGE_SCHEMA, mock)


def _indexes(db: Database, mock: bool) -> None:
    # Text indexes lead with user_id, so every $text query must (and does) name one user:
    # ranking only ever looks at that user's documents. mongomock keeps them as metadata.
    conversations, messages = db["conversations"], db["messages"]
    conversations.create_index([("conversation_id", ASCENDING), ("user_id", ASCENDING)],
                               name="conversation_user_idx", unique=True)
    # _id breaks ties between equal updated_at, so paging never repeats or skips a conversation.
    conversations.create_index([("user_id", ASCENDING), ("updated_at", DESCENDING), ("_id", DESCENDING)],
                               name="user_updated_idx")
    conversations.create_index([("created_at", DESCENDING)], name="created_at_idx")
    conversations.create_index([("user_id", ASCENDING), ("title", TEXT)], name="title_text_idx",
                               default_language="english")
    messages.create_index([("message_id", ASCENDING)], name="message_id_idx", unique=True)
    messages.create_index([("conversation_id", ASCENDING), ("seq", ASCENDING)], name="conversation_seq_idx")
    messages.create_index([("created_at", ASCENDING)], name="messages_created_at_idx")
    # The prefix-search fallback reads a user's newest messages through this one.
    messages.create_index([("user_id", ASCENDING), ("created_at", DESCENDING)], name="user_created_idx")
    messages.create_index([("user_id", ASCENDING), ("content", TEXT)], name="content_text_idx",
                          default_language="english")


def _library(db: Database, mock: bool) -> None:
    _with_validator(db, "messages", MESSAGE_SCHEMA_V3, mock)
    for name, schema in (("documents", DOCUMENT_SCHEMA), ("document_chunks", CHUNK_SCHEMA),
                         ("jobs", JOB_SCHEMA), ("model_cache", CACHE_SCHEMA)):
        _with_validator(db, name, schema, mock)
    documents, chunks = db["documents"], db["document_chunks"]
    documents.create_index([("document_id", ASCENDING)], name="document_id_idx", unique=True)
    documents.create_index([("user_id", ASCENDING), ("content_hash", ASCENDING)],
                           name="user_content_hash_idx", unique=True)
    documents.create_index([("user_id", ASCENDING), ("created_at", DESCENDING), ("_id", DESCENDING)],
                           name="documents_user_created_idx")
    documents.create_index([("user_id", ASCENDING), ("conversation_id", ASCENDING)],
                           name="documents_conversation_idx")
    chunks.create_index([("document_id", ASCENDING), ("idx", ASCENDING)], name="document_idx_idx", unique=True)
    chunks.create_index([("user_id", ASCENDING), ("content", TEXT)], name="chunk_text_idx",
                        default_language="english")
    db["jobs"].create_index([("user_id", ASCENDING), ("job_id", ASCENDING)], name="user_job_idx", unique=True)
    db["model_cache"].create_index([("user_id", ASCENDING), ("key", ASCENDING)], name="user_key_idx",
                                   unique=True)


def _accounts(db: Database, mock: bool) -> None:
    db["accounts"].create_index([("username_key", ASCENDING)], name="username_key_idx", unique=True)
    db["accounts"].create_index([("user_id", ASCENDING)], name="account_user_idx", unique=True)


def _invites(db: Database, mock: bool) -> None:
    db["invites"].create_index([("code_key", ASCENDING)], name="invite_code_idx", unique=True)


def _content_bytes(db: Database, mock: bool) -> None:
    """Count what existing conversations hold; append_message keeps the count from then on."""
    totals: dict[str, int] = {}
    for doc in db["messages"].find({}, {"conversation_id": 1, "content": 1}):
        size = len(doc.get("content", "").encode("utf-8", "surrogatepass"))
        totals[doc["conversation_id"]] = totals.get(doc["conversation_id"], 0) + size
    for conversation in db["conversations"].find({"content_bytes": {"$exists": False}}, {"conversation_id": 1}):
        db["conversations"].update_one({"_id": conversation["_id"]},
                                       {"$set": {"content_bytes": totals.get(conversation["conversation_id"], 0)}})


def _branch_order(db: Database, mock: bool) -> None:
    """The order list_messages and the branch walk (mongo_branch.py) read a conversation in, with
    its tie-break, so a page of the newest messages before one is a bounded index scan."""
    db["messages"].create_index([("conversation_id", ASCENDING), ("seq", ASCENDING), ("_id", ASCENDING)],
                                name="conversation_seq_id_idx")


CHUNK_SCHEMA_V9 = copy.deepcopy(CHUNK_SCHEMA)  # version 3's, plus where the chunk is in its document
CHUNK_SCHEMA_V9["$jsonSchema"]["properties"]["meta"] = _OPTIONAL_OBJECT


def _chunk_meta(db: Database, mock: bool) -> None:
    """Chunks may carry meta ({"pages": [3, 4]}, {"headings": [...]}), cited by the agents."""
    _with_validator(db, "document_chunks", CHUNK_SCHEMA_V9, mock)


CONVERSATION_SCHEMA_V8 = copy.deepcopy(CONVERSATION_SCHEMA)  # version 1's, plus the pinned facts
CONVERSATION_SCHEMA_V8["$jsonSchema"]["properties"]["pinned_facts"] = {"bsonType": "array", "items": _STRING}


def _pinned_facts(db: Database, mock: bool) -> None:
    """Facts the user pinned to a conversation (MongoPins); absent means none."""
    _with_validator(db, "conversations", CONVERSATION_SCHEMA_V8, mock)


IMAGE_SCHEMA = {"$jsonSchema": {
    "bsonType": "object",
    "required": ["image_id", "user_id", "message_id", "file_name", "mime", "width", "height", "size_bytes",
                 "data", "created_at"],
    "properties": {"image_id": _STRING, "user_id": _STRING, "message_id": _STRING, "file_name": _STRING,
                   "mime": _STRING, "width": _COUNT, "height": _COUNT, "size_bytes": _COUNT,
                   "data": {"bsonType": "binData"}, "created_at": _DATE},
}}


def _images(db: Database, mock: bool) -> None:
    """Images attached to user messages (storage/mongo_images.py), found by user and message."""
    _with_validator(db, "images", IMAGE_SCHEMA, mock)
    db["images"].create_index([("image_id", ASCENDING)], name="image_id_idx", unique=True)
    db["images"].create_index([("user_id", ASCENDING), ("message_id", ASCENDING)], name="images_user_message_idx")


MIGRATIONS: list[tuple[int, str, Callable[[Database, bool], None]]] = [
    (1, "conversations and messages collections with JSON-schema validators", _collections),
    (2, "indexes: ownership, ordering, created_at and per-user text search", _indexes),
    (3, "message meta; documents, chunks (per-user text search), jobs and the model cache", _library),
    (4, "accounts, unique by lower-cased username and by user id", _accounts),
    (5, "invites: single-use registration codes, unique by the code's hash", _invites),
    (6, "conversations.content_bytes, for the per-user storage quota", _content_bytes),
    (7, "messages by (conversation_id, seq, _id): a turn reads its branch in bounded pages", _branch_order),
    (8, "conversations may carry pinned_facts: facts sent verbatim with every request", _pinned_facts),
    (9, "document chunks may carry meta: their pages or headings, for citations", _chunk_meta),
]


def _vectors(db: Database, mock: bool) -> None:
    """One embedding per message and chunk (semantic/, mongo_vectors.py): a user's newest first for
    the bounded brute-force ranking, one per item, and by owner for deletes."""
    vectors = db["vectors"]
    vectors.create_index([("user_id", ASCENDING), ("kind", ASCENDING), ("pos", DESCENDING)], name="user_kind_pos_idx")
    vectors.create_index([("kind", ASCENDING), ("item", ASCENDING)], name="kind_item_idx", unique=True)
    vectors.create_index([("kind", ASCENDING), ("pos", DESCENDING)], name="kind_pos_idx")
    vectors.create_index([("conversation_id", ASCENDING)], name="vector_conversation_idx", sparse=True)
    vectors.create_index([("document_id", ASCENDING)], name="vector_document_idx", sparse=True)


MIGRATIONS.append((10, "vectors: one embedding per message and upload chunk, for search by meaning", _vectors))
# images (storage/mongo_images.py); appended after the vectors' version 10 so versions stay in order
MIGRATIONS.append((11, "images: pictures attached to user messages, re-encoded, per user", _images))
