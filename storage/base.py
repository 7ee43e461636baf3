"""The ConversationStore interface both stores implement, and the records they return.

Records are plain dicts (JSON-ready apart from datetimes), so routes, agents and tests
never depend on which store is in use. Every method takes the user id: a conversation
that belongs to someone else is indistinguishable from one that does not exist.
"""
from __future__ import annotations

import re
import uuid
from abc import ABC, abstractmethod
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

import threads

from .snippets import around_terms

ROLES = ("user", "assistant", "system")
FINISH_REASONS = ("stop", "length", "stopped", "error", "content_filter", "tool_calls")
JOB_STATUSES = ("pending", "processing", "done", "error")
Record = dict[str, Any]


ANY_CHECKPOINT: Any = object()  # set_summary without a compare-and-set


class NotFound(LookupError):
    """The conversation does not exist for this user."""


class AccountExists(ValueError):
    """The username is taken (usernames are compared case-insensitively)."""


def new_id() -> str:
    return str(uuid.uuid4())


def utcnow() -> datetime:
    """Millisecond precision: what both SQLite text and BSON dates keep."""
    now = datetime.now(UTC)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


def as_utc(moment: datetime) -> datetime:
    """The same instant in UTC; a naive datetime (BSON dates without tz_aware, mongomock) is UTC."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


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
        """Remove the conversation, all its messages and the documents uploaded into it."""

    @abstractmethod
    def clear_messages(self, user_id: str, conversation_id: str) -> bool:
        """Empty the conversation (the user asked for a reset); totals and summary go too.

        Documents uploaded into the conversation stay.
        """

    def start_conversation(self, user_id: str, title: str, content: str, **message) -> tuple[Record, Record]:
        """A new conversation and its first user message (`message`: append_message's keywords).
        One call, so that a store run off the event loop (agents/offload.py) makes one trip for both:
        each trip to its thread was ~35 ms at p50 of a loaded instance's time to first token. A
        message_id already stored creates nothing: its own conversation and it are returned."""
        validate_message("user", content, message.get("finish_reason"), message.get("meta"))  # before creating
        existing = self.get_message(user_id, message["message_id"]) if message.get("message_id") else None
        if existing is not None:
            return self.get_conversation(user_id, existing["conversation_id"]), existing
        conversation = self.create_conversation(user_id, title)
        return conversation, self.append_message(user_id, conversation["conversation_id"], "user", content, **message)

    def append_user_message(self, user_id: str, conversation_id: str, content: str, **message) -> Record:
        """A turn's user message: append_message with role "user". Named apart so that an off-loop
        store may write this one on the event loop itself (SqliteStore.LOOP_WRITES): the reply waits
        for it, while other writes (imports, a file's analysis) can be long."""
        return self.append_message(user_id, conversation_id, "user", content, **message)

    @abstractmethod
    def append_message(self, user_id: str, conversation_id: str, role: str, content: str, *,
                       tokens: int = 0, parent_message_id: str | None = None,
                       agent: str | None = None, finish_reason: str | None = None,
                       message_id: str | None = None, meta: dict | None = None) -> Record:
        """One insert plus a counter bump on the conversation; raises NotFound.

        Passing an existing message_id returns the stored message unchanged (idempotent re-send).
        `meta` is a small JSON-ready dict stored with the message (routing decision, citations)
        and returned as the record's `meta` (None when not given).
        """

    @abstractmethod
    def get_message(self, user_id: str, message_id: str) -> Record | None:
        """One of the user's messages by id (None for another user's or a missing one)."""

    @abstractmethod
    def list_messages(self, user_id: str, conversation_id: str) -> list[Record]:
        """Every message of the conversation in the order they were appended."""

    @abstractmethod
    def set_summary(self, user_id: str, conversation_id: str, content: str,
                    last_message_id: str, tokens: int, *, extends: Any = ANY_CHECKPOINT) -> bool:
        """Store the rolling summary checkpoint: text, the last message it covers, its size.

        With `extends` (the checkpoint's last_message_id the new summary was made from, None for
        none) it is a compare-and-set: False, nothing written, when the stored checkpoint has
        moved meanwhile, so two racing compactions never store two summaries for one checkpoint.
        """

    def branch_since(self, user_id: str, conversation_id: str, leaf_id: str,
                     checkpoint_id: str | None = None) -> list[Record]:
        """What a turn reads: threads.thread's path to `leaf_id`, oldest first, starting at the
        checkpoint message (included, so the caller sees where the summary ends) when it is on the
        path, else the whole path; [] for an unknown leaf. Stores override this with an indexed
        walk whose cost grows with the path since the checkpoint, not with the conversation."""
        return threads.since(threads.thread(self.list_messages(user_id, conversation_id), leaf_id), checkpoint_id)

    @abstractmethod
    def get_pinned_facts(self, user_id: str, conversation_id: str) -> list[str] | None:
        """Facts the user pinned to the conversation, in order (None: no such conversation)."""

    @abstractmethod
    def set_pinned_facts(self, user_id: str, conversation_id: str, facts: list[str]) -> bool:
        """Replace the pinned facts; every later request carries them verbatim in its system prompt."""

    @abstractmethod
    def search(self, user_id: str, query: str, limit: int = 20) -> list[Record]:
        """Ranked full-text search over the user's messages and titles, one hit per conversation.

        Each hit: conversation_id, title, created_at, updated_at, score (higher is better),
        message_id (best-matching message, None when only the title matched), snippet and
        highlights ([start, end) offsets of matched words inside snippet).
        """

    # -- uploaded documents, searchable by chunk (the knowledge agent) ---------------------
    @abstractmethod
    def add_document(self, user_id: str, file_name: str, content_hash: str, chunks: list[str],
                     chunk_tokens: list[int], conversation_id: str | None = None, size_bytes: int = 0,
                     chunk_meta: list[dict | None] | None = None) -> Record:
        """Store an uploaded file's text as ordered chunks, indexed for full-text search.
        `size_bytes` (the upload's size) counts towards upload_bytes, for quotas. `chunk_meta`,
        one small dict (or None) per chunk, says where a chunk is in its document
        ({"pages": [3, 4]}, {"headings": ["Methods"]}); chunk records carry it as `meta`.

        The same content_hash again for the same user returns the existing document (its
        file_name updated to the newest one, everything else as first stored) instead of a
        duplicate. Record: document_id, user_id, conversation_id, file_name, content_hash,
        chunk_count, tokens (sum), created_at. Raises NotFound when conversation_id is given
        and is not one of the user's conversations; ValueError when the lists disagree.
        """

    @abstractmethod
    def upload_bytes(self, user_id: str | None) -> int:
        """The size of the uploads stored for one user (None: for everyone), for upload quotas."""

    @abstractmethod
    def get_document(self, user_id: str, document_id: str) -> Record | None: ...

    @abstractmethod
    def list_documents(self, user_id: str, limit: int = 50) -> list[Record]:
        """Newest first."""

    @abstractmethod
    def document_chunks(self, user_id: str, document_id: str) -> list[Record]:
        """The document's chunks in order: document_id, index (0-based), content, tokens, and
        meta when the chunk was stored with one."""

    @abstractmethod
    def search_chunks(self, user_id: str, query: str, limit: int = 5) -> list[Record]:
        """Best-matching chunks of the user's documents, best first: document_id, file_name,
        index, content, tokens, score (higher is better). Any query word may match (OR).

        Only the words of the query count (see query_terms): punctuation and search syntax
        are ignored, and a query without words returns [].
        """

    @abstractmethod
    def delete_document(self, user_id: str, document_id: str) -> bool: ...

    # -- vectors (semantic/): one per message and per upload chunk, written in the background ------
    @abstractmethod
    def vector_backlog(self, kind: str, after: Any, limit: int) -> list[Record]:
        """Items of `kind` ('message' or 'chunk') stored after position `after` (None: from the
        first) that have no vector yet, oldest first: pos (opaque: pass it back as `after`), key
        (for put_vectors) and text."""

    @abstractmethod
    def vector_start(self, kind: str) -> Any:
        """Where a live indexer starts: the newest item with a vector or, when none has one, the
        newest item (an old store is back-filled by `init_db.py --embed`, not at start-up)."""

    @abstractmethod
    def put_vectors(self, kind: str, items: list[tuple[Any, bytes]]) -> int:
        """Store (key, vector bytes) pairs, replacing; an item deleted meanwhile gets none (a
        vector never outlives its message or chunk). Returns how many were stored."""

    @abstractmethod
    def vector_counts(self, kind: str) -> tuple[int, int]:
        """(items with a vector, all items), for the back-fill's progress."""

    @abstractmethod
    def search_vectors(self, user_id: str, vector, limit: int = 20, candidates: int = 10000,
                       query: str = "") -> list[Record]:
        """The user's messages nearest to `vector` (cosine over the newest `candidates` vectors),
        one hit per conversation, in search()'s shape; score is the cosine. Highlights mark the
        words of `query` the snippet happens to hold (often none: that is the point)."""

    @abstractmethod
    def search_chunk_vectors(self, user_id: str, vector, limit: int = 5, candidates: int = 10000) -> list[Record]:
        """The user's upload chunks nearest to `vector`, in search_chunks()'s shape."""

    # -- background jobs: pending -> processing -> done | error ---------------------
    @abstractmethod
    def create_job(self, user_id: str, kind: str, conversation_id: str | None = None) -> Record:
        """Record: job_id, user_id, kind, conversation_id, status ('pending'), done (0),
        total (0), result (None, else a JSON-ready dict), error (None, else text),
        created_at, updated_at."""

    @abstractmethod
    def update_job(self, user_id: str, job_id: str, *, status: str | None = None,
                   done: int | None = None, total: int | None = None,
                   result: dict | None = None, error: str | None = None) -> bool:
        """Change the given fields (None leaves a field as it is) and updated_at.

        False for another user's or a missing job; ValueError for a status not in JOB_STATUSES.
        """

    @abstractmethod
    def get_job(self, user_id: str, job_id: str) -> Record | None: ...

    # -- cache of model outputs by content hash, per user (a repeated upload costs nothing) ----
    @abstractmethod
    def cache_get(self, user_id: str, key: str) -> str | None: ...

    @abstractmethod
    def cache_put(self, user_id: str, key: str, value: str) -> None:
        """Insert or replace."""

    # -- accounts: a username and password bound to the user id every record is scoped by ------
    @abstractmethod
    def create_account(self, username: str, password_hash: str, user_id: str) -> Record:
        """Raises AccountExists when the (lower-cased) username is taken."""

    @abstractmethod
    def get_account(self, username: str) -> Record | None: ...

    @abstractmethod
    def move_user_data(self, from_user_id: str, to_user_id: str) -> int:
        """Give every record of one user id to another, in one step (an anonymous browser's
        conversations join the account it logs in to); returns the conversations moved. Documents
        and cached results the target already has are dropped instead of duplicated."""

    # -- invites: single-use registration codes an admin hands out (REGISTRATION=invite) -----------
    @abstractmethod
    def create_invite(self, code_key: str, created_by: str, expires_at: datetime) -> Record:
        """Store an invite by its key (a hash of the code; the code itself is never stored).
        Record: code_key, created_by, created_at, expires_at, used_at (None), used_by (None)."""

    @abstractmethod
    def consume_invite(self, code_key: str, username: str, now: datetime | None = None) -> bool:
        """Mark an unused, unexpired invite used by `username`, atomically: of two parallel calls
        with one code only one gets True. False for an unknown, used or expired code."""

    @abstractmethod
    def release_invite(self, code_key: str, username: str) -> bool:
        """Undo consume_invite by this username (its registration failed after all)."""

    @abstractmethod
    def get_invite(self, code_key: str) -> Record | None: ...

    # -- images attached to user messages (stored before the message, which names them by id) ----
    @abstractmethod
    def add_image(self, user_id: str, message_id: str, file_name: str, mime: str, width: int, height: int,
                  data: bytes) -> Record:
        """Store re-encoded image bytes for the user message `message_id` (which may not exist yet).
        Record: image_id, message_id, file_name, mime, width, height, size_bytes, created_at."""

    @abstractmethod
    def get_image(self, user_id: str, image_id: str, data: bool = True) -> Record | None:
        """The image (with its bytes under `data` unless data=False); None for another user's."""

    @abstractmethod
    def message_images(self, user_id: str, message_ids: list[str]) -> list[Record]:
        """The images of these messages, without their bytes, oldest first."""

    @abstractmethod
    def delete_image(self, user_id: str, image_id: str) -> bool: ...

    @abstractmethod
    def sweep_images(self, user_id: str, before: datetime) -> int:
        """Delete the user's images stored before `before` whose message was never stored (or is gone)."""

    @abstractmethod
    def image_bytes(self, user_id: str | None) -> int:
        """Bytes of the user's images (everyone's with None); part of upload_bytes, for quotas."""

    def close(self) -> None:  # noqa: B027 - optional: a store without connections keeps this no-op
        """Release connections (optional)."""


def validate_chunk_meta(chunks: list[str], chunk_meta: list[dict | None] | None) -> None:
    """None, or one dict (or None) per chunk."""
    if chunk_meta is None:
        return
    if len(chunk_meta) != len(chunks) or not all(m is None or isinstance(m, dict) for m in chunk_meta):
        raise ValueError("chunk_meta must hold one dict or None per chunk")


def validate_message(role: str, content: str, finish_reason: str | None, meta: dict | None = None) -> None:
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}")
    if not isinstance(content, str):
        raise ValueError("content must be a string")  # noqa: TRY004 - bad input is a ValueError (a 400) here
    if finish_reason is not None and finish_reason not in FINISH_REASONS:
        raise ValueError(f"finish_reason must be one of {', '.join(FINISH_REASONS)}")
    if meta is not None and not isinstance(meta, dict):
        raise ValueError("meta must be a dict or None")


def validate_document(chunks: list[str], chunk_tokens: list[int]) -> None:
    """One non-negative token count per text chunk, checked before anything is written."""
    if len(chunks) != len(chunk_tokens):
        raise ValueError("chunks and chunk_tokens must have the same length")
    if not all(isinstance(chunk, str) for chunk in chunks):
        raise ValueError("every chunk must be a string")
    if not all(isinstance(n, int) and n >= 0 for n in chunk_tokens):
        raise ValueError("chunk token counts must be integers >= 0")


def validate_cache_value(value: str) -> None:
    if not isinstance(value, str):
        raise ValueError("a cached value must be a string")  # noqa: TRY004 - as every validation error


def job_changes(status: str | None, done: int | None, total: int | None,
                result: dict | None, error: str | None) -> dict[str, Any]:
    """The fields update_job was given (None means unchanged), validated."""
    if status is not None and status not in JOB_STATUSES:
        raise ValueError(f"status must be one of {', '.join(JOB_STATUSES)}")
    for name, value in (("done", done), ("total", total)):
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 0):
            raise ValueError(f"{name} must be an integer >= 0")
    if result is not None and not isinstance(result, dict):
        raise ValueError("result must be a dict or None")
    fields = {"status": status, "done": done, "total": total, "result": result, "error": error}
    return {name: value for name, value in fields.items() if value is not None}


def best_per_conversation(hits: Iterable[Record], limit: int) -> list[Record]:
    """Keep the first (best) hit of each conversation, in rank order, up to limit."""
    seen: dict[str, Record] = {}
    for hit in hits:
        if hit["conversation_id"] not in seen:
            seen[hit["conversation_id"]] = hit
            if len(seen) == limit:
                break
    return list(seen.values())


def vector_hits(store, user_id: str, hits: list[Record], limit: int, query: str) -> list[Record]:
    """search_vectors()'s records: the best hit of each conversation, with its conversation's title
    and times, and a snippet around the query's words (both stores)."""
    hits = best_per_conversation(hits, limit)
    conversations = {hit["conversation_id"]: store.get_conversation(user_id, hit["conversation_id"]) for hit in hits}
    return hits_with_conversations(hits, conversations, query_terms(query)[0])


def hits_with_conversations(hits: list[Record], conversations: dict[str, Record | None],
                            words: list[str]) -> list[Record]:
    """search()'s records for ranked hits (conversation_id, message_id, score, text): the title and
    times from `conversations` (a hit whose conversation is gone meanwhile drops out), and a snippet
    around the query's words with their highlights."""
    results = []
    for hit in hits:
        conversation = conversations.get(hit["conversation_id"])
        if conversation is None:
            continue
        snippet, highlights = around_terms(hit["text"], words)
        results.append({"conversation_id": hit["conversation_id"], "title": conversation["title"],
                        "created_at": conversation["created_at"], "updated_at": conversation["updated_at"],
                        "score": round(hit["score"], 6), "message_id": hit["message_id"],
                        "snippet": snippet, "highlights": highlights})
    return results
