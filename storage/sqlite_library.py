"""Uploaded documents (chunks searchable with FTS5), background jobs and the model cache, on SQLite.

A mixin of SqliteStore: it uses the store's `_db()` (this thread's connection) and `_write()`
(a BEGIN IMMEDIATE transaction, retried while another writer holds the lock). Every query names
the user, so another user's ids match nothing.
"""
from __future__ import annotations

import json
import sqlite3
from datetime import datetime

from .base import (
    NotFound,
    Record,
    job_changes,
    new_id,
    query_terms,
    utcnow,
    validate_cache_value,
    validate_chunk_meta,
    validate_document,
)
from .sqlite_images import size_total
from .sqlite_migrations import RANK_WEIGHTS, iso, match_expression

_DOCUMENT_COLUMNS = ("document_id, user_id, conversation_id, file_name, content_hash, chunk_count, "
                     "tokens, created_at")
_JOB_COLUMNS = ("job_id, user_id, kind, conversation_id, status, done, total, result, error, "
                "created_at, updated_at")


class SqliteLibrary:
    """The documents, jobs and cache half of SqliteStore."""

    # -- documents ---------------------------------------------------------------------------
    def add_document(self, user_id: str, file_name: str, content_hash: str, chunks: list[str],
                     chunk_tokens: list[int], conversation_id: str | None = None, size_bytes: int = 0,
                     chunk_meta: list[dict | None] | None = None) -> Record:
        """One transaction, so a document is never seen without its chunks (or twice)."""
        validate_document(chunks, chunk_tokens)
        validate_chunk_meta(chunks, chunk_meta)
        metas = [None if m is None else json.dumps(m) for m in chunk_meta or [None] * len(chunks)]
        with self._write() as db:
            if conversation_id is not None and not _owns_conversation(db, user_id, conversation_id):
                raise NotFound(conversation_id)
            known = db.execute("SELECT document_id FROM documents WHERE user_id = ? AND content_hash = ?",
                               (user_id, content_hash)).fetchone()
            if known:
                db.execute("UPDATE documents SET file_name = ? WHERE document_id = ?", (file_name, known[0]))
                return _document(db, user_id, known[0])
            document_id = new_id()
            db.execute(f"INSERT INTO documents ({_DOCUMENT_COLUMNS}, size_bytes) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                       (document_id, user_id, conversation_id, file_name, content_hash, len(chunks),
                        sum(chunk_tokens), iso(utcnow()), max(0, size_bytes)))
            db.executemany("INSERT INTO document_chunks (document_id, user_id, idx, content, tokens, meta) "
                           "VALUES (?, ?, ?, ?, ?, ?)",
                           ((document_id, user_id, i, text, n, meta) for i, (text, n, meta) in
                            enumerate(zip(chunks, chunk_tokens, metas, strict=False))))
            return _document(db, user_id, document_id)

    def upload_bytes(self, user_id: str | None) -> int:
        """Documents and the images attached to messages (sqlite_images.py)."""
        return size_total(self._db(), "documents", user_id) + self.image_bytes(user_id)

    def get_document(self, user_id: str, document_id: str) -> Record | None:
        return _document(self._db(), user_id, document_id)

    def list_documents(self, user_id: str, limit: int = 50) -> list[Record]:
        rows = self._db().execute(f"SELECT {_DOCUMENT_COLUMNS} FROM documents WHERE user_id = ? "
                                  "ORDER BY created_at DESC, id DESC LIMIT ?", (user_id, max(limit, 0)))
        return [_document_record(row) for row in rows]

    def document_chunks(self, user_id: str, document_id: str) -> list[Record]:
        rows = self._db().execute("SELECT document_id, idx, content, tokens, meta FROM document_chunks "
                                  "WHERE document_id = ? AND user_id = ? ORDER BY idx", (document_id, user_id))
        return [_chunk_record(row) for row in rows]

    def search_chunks(self, user_id: str, query: str, limit: int = 5) -> list[Record]:
        """bm25 (negated, so higher is better) over the user's chunks holding any query word."""
        words, _ = query_terms(query)
        if not words or limit <= 0:
            return []
        match = match_expression(user_id, words, "OR", column="content")
        rows = self._db().execute(
            "SELECT c.document_id, c.idx, c.content, c.tokens, c.meta, d.file_name, top.score FROM "
            f"(SELECT rowid, bm25(document_chunks_fts, {RANK_WEIGHTS}) AS score FROM document_chunks_fts "
            " WHERE document_chunks_fts MATCH ? ORDER BY score LIMIT ?) top "
            "JOIN document_chunks c ON c.rowid = top.rowid JOIN documents d ON d.document_id = c.document_id "
            "ORDER BY top.score, c.rowid", (match, limit))
        return [{**_chunk_record(row), "file_name": row["file_name"], "score": -row["score"]} for row in rows]

    def delete_document(self, user_id: str, document_id: str) -> bool:
        """Its chunks go by ON DELETE CASCADE, and with them their full-text entries."""
        with self._write() as db:
            cursor = db.execute("DELETE FROM documents WHERE document_id = ? AND user_id = ?",
                                (document_id, user_id))
        return cursor.rowcount == 1

    def _delete_conversation_documents(self, db: sqlite3.Connection, user_id: str, conversation_id: str) -> None:
        """Part of delete_conversation's transaction."""
        db.execute("DELETE FROM documents WHERE conversation_id = ? AND user_id = ?", (conversation_id, user_id))

    # -- background jobs -----------------------------------------------------------------------
    def create_job(self, user_id: str, kind: str, conversation_id: str | None = None) -> Record:
        job_id, now = new_id(), iso(utcnow())
        with self._write() as db:
            db.execute("INSERT INTO jobs (job_id, user_id, kind, conversation_id, created_at, updated_at) "
                       "VALUES (?, ?, ?, ?, ?, ?)", (job_id, user_id, kind, conversation_id, now, now))
            return _job(db, user_id, job_id)

    def update_job(self, user_id: str, job_id: str, *, status: str | None = None,
                   done: int | None = None, total: int | None = None,
                   result: dict | None = None, error: str | None = None) -> bool:
        changes = job_changes(status, done, total, result, error)
        if "result" in changes:
            changes["result"] = json.dumps(changes["result"])
        changes["updated_at"] = iso(utcnow())
        assignments = ", ".join(f"{name} = ?" for name in changes)  # fixed names, never user input
        with self._write() as db:
            cursor = db.execute(f"UPDATE jobs SET {assignments} WHERE job_id = ? AND user_id = ?",
                                (*changes.values(), job_id, user_id))
        return cursor.rowcount == 1

    def get_job(self, user_id: str, job_id: str) -> Record | None:
        return _job(self._db(), user_id, job_id)

    # -- model output cache --------------------------------------------------------------------
    def cache_get(self, user_id: str, key: str) -> str | None:
        row = self._db().execute("SELECT value FROM model_cache WHERE user_id = ? AND key = ?",
                                 (user_id, key)).fetchone()
        return row[0] if row else None

    def cache_put(self, user_id: str, key: str, value: str) -> None:
        validate_cache_value(value)
        with self._write() as db:
            db.execute("INSERT INTO model_cache (user_id, key, value, created_at) VALUES (?, ?, ?, ?) "
                       "ON CONFLICT (user_id, key) DO UPDATE SET value = excluded.value, "
                       "created_at = excluded.created_at", (user_id, key, value, iso(utcnow())))


def _owns_conversation(db: sqlite3.Connection, user_id: str, conversation_id: str) -> bool:
    return db.execute("SELECT 1 FROM conversations WHERE conversation_id = ? AND user_id = ?",
                      (conversation_id, user_id)).fetchone() is not None


def _document(db: sqlite3.Connection, user_id: str, document_id: str) -> Record | None:
    row = db.execute(f"SELECT {_DOCUMENT_COLUMNS} FROM documents WHERE document_id = ? AND user_id = ?",
                     (document_id, user_id)).fetchone()
    return _document_record(row) if row else None


def _job(db: sqlite3.Connection, user_id: str, job_id: str) -> Record | None:
    row = db.execute(f"SELECT {_JOB_COLUMNS} FROM jobs WHERE job_id = ? AND user_id = ?",
                     (job_id, user_id)).fetchone()
    if row is None:
        return None
    record = dict(row)
    record["created_at"] = datetime.fromisoformat(record["created_at"])
    record["updated_at"] = datetime.fromisoformat(record["updated_at"])
    record["result"] = None if record["result"] is None else json.loads(record["result"])
    return record


def _document_record(row: sqlite3.Row) -> Record:
    record = dict(row)
    record["created_at"] = datetime.fromisoformat(record["created_at"])
    return record


def _chunk_record(row: sqlite3.Row) -> Record:
    record = {"document_id": row["document_id"], "index": row["idx"], "content": row["content"],
              "tokens": row["tokens"]}
    if row["meta"] is not None:  # where the chunk is in its document (pages, headings)
        record["meta"] = json.loads(row["meta"])
    return record
