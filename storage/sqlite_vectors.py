"""SqliteStore's vectors: one BLOB per message and per chunk, in tables beside FTS5 (migration 11).

A vector row references its message (or chunk) with ON DELETE CASCADE, so deleting a message,
a conversation or a document deletes its vectors in the same transaction, and a trigger keeps
its user_id in step when an account adopts the records. Ranking is vectors.top_k over the user's
newest rows, read by the (user_id, item) index.
"""
from __future__ import annotations

from typing import Any

from .base import Record, vector_hits
from .sqlite_library import _chunk_record
from .vectors import check_kind, top_k

# kind -> (the table holding the text, its integer key, the vectors' table); fixed names only
_TABLES = {"message": ("messages", "seq", "message_vectors"), "chunk": ("document_chunks", "rowid", "chunk_vectors")}


def _tables(kind: str) -> tuple[str, str, str]:
    check_kind(kind)
    return _TABLES[kind]


class SqliteVectors:
    """The vectors half of SqliteStore."""

    def vector_backlog(self, kind: str, after: Any, limit: int) -> list[Record]:
        source, key, vectors = _tables(kind)
        rows = self._db().execute(
            f"SELECT s.{key}, s.content FROM {source} s WHERE s.{key} > ? "
            f"AND NOT EXISTS (SELECT 1 FROM {vectors} v WHERE v.item = s.{key}) ORDER BY s.{key} LIMIT ?",
            (after or 0, max(limit, 0)))
        return [{"pos": row[0], "key": row[0], "text": row[1]} for row in rows]

    def vector_start(self, kind: str) -> Any:
        source, key, vectors = _tables(kind)
        db = self._db()
        newest = db.execute(f"SELECT max(item) FROM {vectors}").fetchone()[0]
        if newest is None:
            newest = db.execute(f"SELECT max({key}) FROM {source}").fetchone()[0]
        return newest or 0

    def put_vectors(self, kind: str, items: list[tuple[Any, bytes]]) -> int:
        source, key, vectors = _tables(kind)
        stored = 0
        with self._write() as db:
            for item, blob in items:
                cursor = db.execute(f"INSERT OR REPLACE INTO {vectors} (item, user_id, vec) "
                                    f"SELECT {key}, user_id, ? FROM {source} WHERE {key} = ?", (bytes(blob), item))
                stored += cursor.rowcount
        return stored

    def vector_counts(self, kind: str) -> tuple[int, int]:
        source, _, vectors = _tables(kind)
        db = self._db()
        return (db.execute(f"SELECT count(*) FROM {vectors}").fetchone()[0],
                db.execute(f"SELECT count(*) FROM {source}").fetchone()[0])

    def _nearest(self, table: str, user_id: str, vector, k: int, candidates: int) -> list[tuple[int, float]]:
        cursor = self._db().cursor()
        cursor.row_factory = None  # plain tuples: a heavy user's scan reads tens of thousands of rows
        rows = cursor.execute(f"SELECT item, vec FROM {table} WHERE user_id = ? ORDER BY item DESC LIMIT ?",
                              (user_id, max(candidates, 0))).fetchall()
        return [(rows[i][0], score) for i, score in top_k(vector, [row[1] for row in rows], k)]

    def search_vectors(self, user_id: str, vector, limit: int = 20, candidates: int = 10000,
                       query: str = "") -> list[Record]:
        nearest = self._nearest("message_vectors", user_id, vector, limit * 4, candidates)
        if not nearest:
            return []
        db = self._db()
        marks = ", ".join("?" * len(nearest))
        found = {row[0]: row for row in db.execute(
            f"SELECT seq, message_id, conversation_id, content FROM messages WHERE seq IN ({marks}) AND user_id = ?",
            (*[item for item, _ in nearest], user_id))}
        hits = [{"conversation_id": found[item][2], "message_id": found[item][1], "score": score,
                 "text": found[item][3]} for item, score in nearest if item in found]
        return vector_hits(self, user_id, hits, limit, query)

    def search_chunk_vectors(self, user_id: str, vector, limit: int = 5, candidates: int = 10000) -> list[Record]:
        nearest = self._nearest("chunk_vectors", user_id, vector, limit, candidates)
        if not nearest:
            return []
        marks = ", ".join("?" * len(nearest))
        found = {row["rowid"]: row for row in self._db().execute(
            "SELECT c.rowid, c.document_id, c.idx, c.content, c.tokens, c.meta, d.file_name FROM document_chunks c "
            f"JOIN documents d ON d.document_id = c.document_id WHERE c.rowid IN ({marks}) AND c.user_id = ?",
            (*[item for item, _ in nearest], user_id))}
        return [{**_chunk_record(found[item]), "file_name": found[item]["file_name"], "score": round(score, 6)}
                for item, score in nearest if item in found]
