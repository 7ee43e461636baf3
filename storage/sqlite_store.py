"""The embedded default store: SQLite with FTS5, one file in instance/."""
from __future__ import annotations

import json
import sqlite3
import threading
import time
import types
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

from instance_files import private_database

from .base import (
    ANY_CHECKPOINT,
    ConversationStore,
    NotFound,
    Record,
    best_per_conversation,
    new_id,
    query_terms,
    utcnow,
    validate_message,
)
from .snippets import END, START, from_markers
from .sqlite_accounts import SqliteAccounts
from .sqlite_branch import SqliteBranch
from .sqlite_images import SqliteImages
from .sqlite_library import SqliteLibrary
from .sqlite_migrations import MIGRATIONS, RANK_WEIGHTS, match_expression
from .sqlite_migrations import iso as _iso
from .sqlite_pins import SqlitePins
from .sqlite_vectors import SqliteVectors

_CONVERSATION_COLUMNS = ("conversation_id, user_id, title, summary, summary_last_message_id, "
                         "summary_tokens, total_tokens, message_count, created_at, updated_at")
JOURNAL_SIZE_LIMIT = 32 * 1024 * 1024  # the WAL is cut back to this after each checkpoint that resets it
CHECKPOINT_WAIT_MS = 2000  # compact_journal waits this long for readers, then leaves it to the next one
_MESSAGE_COLUMNS = ("message_id, conversation_id, user_id, parent_message_id, role, content, "
                    "created_at, tokens, agent, finish_reason, meta")


class SqliteStore(SqliteAccounts, SqliteBranch, SqliteImages, SqliteLibrary, SqlitePins, SqliteVectors,
                  ConversationStore):
    """One connection per thread; writes are short transactions, busy waits are retried.

    Documents, jobs and the model cache live in SqliteLibrary (sqlite_library.py).
    """

    backend = "sqlite"
    # Indexed reads of one row or a bounded few, which an eventlet/gevent worker's event loop runs
    # itself through loop_twin() (agents/offload.py): each takes well under a millisecond, while
    # the hop to a thread costs the loop a turn and a GIL hand-over, ~100-300 ms of waiting each on
    # a loaded worker. A chat turn makes 18 store calls; 15 are these.
    LOOP_READS = frozenset({"get_message", "get_conversation", "message_images", "get_pinned_facts",
                            "branch_since", "storage_bytes", "list_documents", "get_document"})
    # The writes that start a turn, run on the loop likewise (~0.3 ms at p50, ~6 ms at p99 when a
    # commit checkpoints the WAL): the reply waits for them, and the hop to a thread was one of the
    # longest waits before its first token. Each is one transaction that never yields halfway.
    LOOP_WRITES = frozenset({"start_conversation", "append_user_message"})
    LOOP_RETRY = (sqlite3.OperationalError,)  # e.g. busy: run on a thread instead
    LOOP_BUSY_TIMEOUT_S = 0.0  # the loop never waits for a lock (another instance's write): a thread does

    def __init__(self, path: Path | str, search_candidates: int = 2000, busy_timeout_s: float = 10.0,
                 one_connection: bool = False):
        self.path = str(path)
        self.search_candidates = search_candidates
        self.busy_timeout_s = busy_timeout_s
        # one_connection: for loop_twin, whose callers are green threads of one OS thread
        self._local = types.SimpleNamespace() if one_connection else threading.local()
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            private_database(self.path)  # 0600 before SQLite creates it, and so its -wal and -shm

    def loop_twin(self) -> SqliteStore:
        """A store on the same file for LOOP_READS and LOOP_WRITES on the event loop's own thread: one
        connection shared by its green threads (a call never yields halfway, so two never use it at
        once) and no busy wait (a call that meets a lock raises and is run on a thread instead)."""
        return SqliteStore(self.path, self.search_candidates, self.LOOP_BUSY_TIMEOUT_S, one_connection=True)

    # -- connection and transactions -------------------------------------------------------
    def _db(self) -> sqlite3.Connection:
        db = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(self.path, timeout=self.busy_timeout_s, isolation_level=None,
                                 check_same_thread=False)
            db.row_factory = sqlite3.Row
            # switching a new file to WAL takes an exclusive lock that SQLite's busy handler does
            # not always wait for (several instances opening one fresh file at once)
            self._until_not_busy(lambda: db.execute("PRAGMA journal_mode=WAL"))
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute(f"PRAGMA journal_size_limit={JOURNAL_SIZE_LIMIT}")
            db.execute("PRAGMA foreign_keys=ON")
            self._local.db = db
        return db

    def _until_not_busy(self, statement: Callable[[], object]) -> None:
        """Run statement, again while another connection holds the lock, up to the busy timeout."""
        deadline = time.monotonic() + self.busy_timeout_s
        while True:
            try:
                statement()
                return
            except sqlite3.OperationalError as error:
                if not is_busy(error) or time.monotonic() > deadline:
                    raise
                time.sleep(0.01)

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """BEGIN IMMEDIATE, retried while another writer holds the lock."""
        db = self._db()
        self._until_not_busy(lambda: db.execute("BEGIN IMMEDIATE"))
        try:
            yield db
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def close(self) -> None:
        db = getattr(self._local, "db", None)
        if db is not None:
            db.close()
            self._local.db = None

    def ping(self) -> bool:
        try:
            return self._db().execute("SELECT 1").fetchone()[0] == 1
        except sqlite3.Error:
            return False

    def compact_journal(self) -> bool:
        """After a big write (an import, an upload): checkpoint the WAL and truncate it to zero, so
        it does not stay the size of the biggest burst. Waits briefly for readers; True if done."""
        db = self._db()
        db.execute(f"PRAGMA busy_timeout={CHECKPOINT_WAIT_MS}")
        try:
            busy = db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]
        except sqlite3.OperationalError as error:
            if not is_busy(error):
                raise
            busy = 1
        finally:
            db.execute(f"PRAGMA busy_timeout={int(self.busy_timeout_s * 1000)}")
        return busy == 0

    def storage_bytes(self, user_id: str) -> int:
        """UTF-8 bytes of the user's stored messages, for the storage quota: a counter kept per
        conversation by append_message, so this is one indexed sum, not a scan of the messages."""
        row = self._db().execute("SELECT COALESCE(SUM(content_bytes), 0) FROM conversations WHERE user_id = ?",
                                 (user_id,)).fetchone()
        return int(row[0])

    # -- schema ------------------------------------------------------------------------------
    def migrate(self, apply: bool = True) -> list[str]:
        db = self._db()
        db.execute("CREATE TABLE IF NOT EXISTS schema_migrations ("
                   "version INTEGER PRIMARY KEY, description TEXT NOT NULL, applied_at TEXT NOT NULL)")
        done = {row[0] for row in db.execute("SELECT version FROM schema_migrations")}
        pending = [(v, d, sql) for v, d, sql in MIGRATIONS if v not in done]
        if apply:
            for version, description, sql in pending:
                with self._write() as tx:  # another process may have applied it since we looked
                    if tx.execute("SELECT 1 FROM schema_migrations WHERE version = ?", (version,)).fetchone():
                        continue
                    for statement in _statements(sql):
                        tx.execute(statement)
                    tx.execute("INSERT INTO schema_migrations VALUES (?, ?, ?)",
                               (version, description, _iso(utcnow())))
        return [f"{version:04d} {description}" for version, description, _ in pending]

    # -- conversations -------------------------------------------------------------------------
    def create_conversation(self, user_id: str, title: str = "") -> Record:
        cid = new_id()
        with self._write() as db:
            self._insert_conversation(db, user_id, cid, title)
        return self.get_conversation(user_id, cid)

    def start_conversation(self, user_id: str, title: str, content: str, **message) -> tuple[Record, Record]:
        """One transaction here (ConversationStore's is two): run on the event loop, a busy lock at
        its start sends the whole call to a thread, with nothing written twice."""
        validate_message("user", content, message.get("finish_reason"), message.get("meta"))
        with self._write() as db:
            existing = self._message(db, user_id, message["message_id"]) if message.get("message_id") else None
            if existing is not None:
                return self._conversation_in(db, user_id, existing["conversation_id"]), existing
            cid = new_id()
            self._insert_conversation(db, user_id, cid, title)
            stored = self._insert_message(db, user_id, cid, "user", content, **message)
            return self._conversation_in(db, user_id, cid), stored

    @staticmethod
    def _insert_conversation(db: sqlite3.Connection, user_id: str, cid: str, title: str) -> None:
        now = _iso(utcnow())
        db.execute("INSERT INTO conversations (conversation_id, user_id, title, created_at, updated_at) "
                   "VALUES (?, ?, ?, ?, ?)", (cid, user_id, title, now, now))

    @staticmethod
    def _conversation_in(db: sqlite3.Connection, user_id: str, conversation_id: str) -> Record | None:
        row = db.execute(f"SELECT {_CONVERSATION_COLUMNS} FROM conversations WHERE conversation_id = ? "
                         "AND user_id = ?", (conversation_id, user_id)).fetchone()
        return _conversation(row) if row else None

    def get_conversation(self, user_id: str, conversation_id: str) -> Record | None:
        return self._conversation_in(self._db(), user_id, conversation_id)

    def list_conversations(self, user_id: str, limit: int = 100, offset: int = 0) -> list[Record]:
        rows = self._db().execute(f"SELECT {_CONVERSATION_COLUMNS} FROM conversations WHERE user_id = ? "
                                  "ORDER BY updated_at DESC, id DESC LIMIT ? OFFSET ?",
                                  (user_id, limit, offset))
        return [_conversation(row) for row in rows]

    def rename_conversation(self, user_id: str, conversation_id: str, title: str) -> bool:
        with self._write() as db:
            cursor = db.execute("UPDATE conversations SET title = ?, updated_at = ? "
                                "WHERE conversation_id = ? AND user_id = ?",
                                (title, _iso(utcnow()), conversation_id, user_id))
        return cursor.rowcount == 1

    def delete_conversation(self, user_id: str, conversation_id: str) -> bool:
        with self._write() as db:
            self._delete_conversation_images(db, user_id, conversation_id)
            db.execute("DELETE FROM messages WHERE conversation_id = ? AND user_id = ?",
                       (conversation_id, user_id))
            self._delete_conversation_documents(db, user_id, conversation_id)
            cursor = db.execute("DELETE FROM conversations WHERE conversation_id = ? AND user_id = ?",
                                (conversation_id, user_id))
        return cursor.rowcount == 1

    def clear_messages(self, user_id: str, conversation_id: str) -> bool:
        with self._write() as db:
            cursor = db.execute("UPDATE conversations SET total_tokens = 0, message_count = 0, content_bytes = 0, "
                                "summary = NULL, "
                                "summary_last_message_id = NULL, summary_tokens = 0, updated_at = ? "
                                "WHERE conversation_id = ? AND user_id = ?",
                                (_iso(utcnow()), conversation_id, user_id))
            if cursor.rowcount == 1:
                self._delete_conversation_images(db, user_id, conversation_id)
                db.execute("DELETE FROM messages WHERE conversation_id = ?", (conversation_id,))
        return cursor.rowcount == 1

    def set_summary(self, user_id: str, conversation_id: str, content: str,
                    last_message_id: str, tokens: int, *, extends=ANY_CHECKPOINT) -> bool:
        check = "" if extends is ANY_CHECKPOINT else " AND summary_last_message_id IS ?"
        with self._write() as db:
            cursor = db.execute("UPDATE conversations SET summary = ?, summary_last_message_id = ?, "
                                "summary_tokens = ? WHERE conversation_id = ? AND user_id = ?" + check,
                                (content, last_message_id, tokens, conversation_id, user_id)
                                + (() if extends is ANY_CHECKPOINT else (extends,)))
        return cursor.rowcount == 1

    # -- messages ------------------------------------------------------------------------------
    def append_message(self, user_id, conversation_id, role, content, *, tokens=0, parent_message_id=None,
                       agent=None, finish_reason=None, message_id=None, meta=None) -> Record:
        validate_message(role, content, finish_reason, meta)
        with self._write() as db:
            existing = self._message(db, user_id, message_id) if message_id else None
            if existing:
                return existing
            return self._insert_message(db, user_id, conversation_id, role, content, tokens=tokens,
                                        parent_message_id=parent_message_id, agent=agent,
                                        finish_reason=finish_reason, message_id=message_id, meta=meta)

    def _insert_message(self, db: sqlite3.Connection, user_id, conversation_id, role, content, *, tokens=0,
                        parent_message_id=None, agent=None, finish_reason=None, message_id=None, meta=None) -> Record:
        """The counters' bump and the insert, inside the caller's transaction."""
        message_id = message_id or new_id()
        now = _iso(utcnow())
        bumped = db.execute("UPDATE conversations SET message_count = message_count + 1, "
                            "total_tokens = total_tokens + ?, content_bytes = content_bytes + ?, updated_at = ? "
                            "WHERE conversation_id = ? AND user_id = ?",
                            (tokens, content_bytes(content), now, conversation_id, user_id))
        if bumped.rowcount != 1:
            raise NotFound(conversation_id)
        db.execute(f"INSERT INTO messages ({_MESSAGE_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                   (message_id, conversation_id, user_id, parent_message_id, role, content, now,
                    tokens, agent, finish_reason, None if meta is None else json.dumps(meta)))
        return self._message(db, user_id, message_id)

    def get_message(self, user_id: str, message_id: str) -> Record | None:
        return self._message(self._db(), user_id, message_id)

    def list_messages(self, user_id: str, conversation_id: str) -> list[Record]:
        rows = self._db().execute(f"SELECT {_MESSAGE_COLUMNS} FROM messages "
                                  "WHERE conversation_id = ? AND user_id = ? ORDER BY seq",
                                  (conversation_id, user_id))
        return [_message(row) for row in rows]

    def branch_since(self, user_id: str, conversation_id: str, leaf_id: str,
                     checkpoint_id: str | None = None) -> list[Record]:
        """One recursive query (sqlite_branch.py): O(path since the checkpoint)."""
        rows = self._branch_rows(user_id, conversation_id, leaf_id, checkpoint_id, _MESSAGE_COLUMNS)
        return [_message(row) for row in reversed(rows)]

    def _message(self, db: sqlite3.Connection, user_id: str, message_id: str) -> Record | None:
        row = db.execute(f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE message_id = ? AND user_id = ?",
                         (message_id, user_id)).fetchone()
        return _message(row) if row else None

    # -- search --------------------------------------------------------------------------------
    def search(self, user_id: str, query: str, limit: int = 20) -> list[Record]:
        """bm25 over only the newest `search_candidates` matches of this user's messages.

        Capping what gets ranked keeps a common word fast for a user with 100k messages;
        the cap applies per query, so rare words still search the whole history.
        """
        words, prefix = query_terms(query)
        if not words:
            return []
        match = match_expression(user_id, words, "AND", prefix)
        db = self._db()
        hits = self._message_hits(db, match, limit * 4) + self._title_hits(db, match, limit)
        hits.sort(key=lambda hit: hit["score"], reverse=True)
        return self._with_conversations(db, user_id, best_per_conversation(hits, limit))

    def _message_hits(self, db, match: str, n: int) -> list[Record]:
        floor = db.execute("SELECT min(rowid) FROM (SELECT rowid FROM messages_fts WHERE messages_fts MATCH ? "
                           "ORDER BY rowid DESC LIMIT ?)", (match, self.search_candidates)).fetchone()[0]
        if floor is None:
            return []
        # One explicit bm25 (FTS5's own `ORDER BY rank` computes it twice, and each computation
        # counts every document holding the term), and snippets only for the top n rows. The `+`
        # keeps `rowid IN` a filter on one scan instead of n lookups (slow for prefix queries).
        rows = db.execute(
            f"WITH top AS MATERIALIZED (SELECT rowid, bm25(messages_fts, {RANK_WEIGHTS}) AS score "
            " FROM messages_fts WHERE messages_fts MATCH ?1 AND rowid >= ?2 ORDER BY score LIMIT ?3) "
            "SELECT m.message_id, m.conversation_id, top.score, f.snip FROM "
            f"(SELECT rowid, snippet(messages_fts, 0, '{START}', '{END}', '…', 16) AS snip FROM messages_fts "
            "  WHERE messages_fts MATCH ?1 AND rowid >= ?2 AND +rowid IN (SELECT rowid FROM top)) f "
            "JOIN top ON top.rowid = f.rowid JOIN messages m ON m.seq = f.rowid ORDER BY top.score",
            (match, floor, n))
        return [{"conversation_id": r[1], "message_id": r[0], "score": -r[2], "marked": r[3]} for r in rows]

    def _title_hits(self, db, match: str, n: int) -> list[Record]:
        rows = db.execute("SELECT c.conversation_id, f.rank, f.snip FROM "
                          f"(SELECT rowid, rank, snippet(titles_fts, 0, '{START}', '{END}', '…', 16) AS snip "
                          " FROM titles_fts WHERE titles_fts MATCH ? ORDER BY rank LIMIT ?) f "
                          "JOIN conversations c ON c.id = f.rowid ORDER BY f.rank", (match, n))
        return [{"conversation_id": r[0], "message_id": None, "score": -r[1], "marked": r[2]} for r in rows]

    def _with_conversations(self, db, user_id: str, hits: list[Record]) -> list[Record]:
        results = []
        for hit in hits:
            conversation = self.get_conversation(user_id, hit["conversation_id"])
            if conversation is None:
                continue
            snippet, highlights = from_markers(hit["marked"])
            results.append({"conversation_id": hit["conversation_id"], "title": conversation["title"],
                            "created_at": conversation["created_at"], "updated_at": conversation["updated_at"],
                            "score": round(hit["score"], 6), "message_id": hit["message_id"],
                            "snippet": snippet, "highlights": highlights})
        return results


def content_bytes(content: str) -> int:
    """What a message's text weighs for the storage quota (SQLite's length(CAST(x AS BLOB)))."""
    return len(content.encode("utf-8", "surrogatepass"))


def is_busy(error: BaseException) -> bool:
    """Another writer holds the lock: worth waiting for (and, past the busy timeout, a retryable 503)."""
    return isinstance(error, sqlite3.OperationalError) and ("locked" in str(error) or "busy" in str(error))


def _statements(script: str) -> list[str]:
    """Split a migration into statements, keeping trigger bodies whole."""
    statements, current = [], []
    for line in script.strip().splitlines():
        current.append(line)
        joined = "\n".join(current)
        if line.rstrip().endswith(";") and sqlite3.complete_statement(joined):
            statements.append(joined)
            current = []
    return statements


def _conversation(row: sqlite3.Row) -> Record:
    record = dict(row)
    for key in ("created_at", "updated_at"):
        record[key] = datetime.fromisoformat(record[key])
    summary = {"content": record.pop("summary"), "last_message_id": record.pop("summary_last_message_id"),
               "tokens": record.pop("summary_tokens")}
    record["summary"] = summary if summary["content"] is not None else None
    return record


def _message(row: sqlite3.Row) -> Record:
    record = dict(row)
    record["created_at"] = datetime.fromisoformat(record["created_at"])
    record["meta"] = None if record["meta"] is None else json.loads(record["meta"])
    return record
