"""Versioned schema of the SQLite store. Append new versions; never edit an applied one."""

from datetime import datetime

OWNER = "'u' || hex({col})"  # one FTS token per user, whatever characters the id has
RANK_WEIGHTS = "1.0, 0.0"  # bm25 column weights: the text counts, the owner token does not


def owner_token(user_id: str) -> str:
    """The FTS token that scopes a search to one user (same as the SQL `OWNER`)."""
    return "u" + user_id.encode().hex().upper()


def match_expression(user_id: str, words: list[str], operator: str = "AND", prefix: bool = False,
                     column: str | None = None) -> str:
    """A safe MATCH for a `_full_text` index: the user's owner token AND the words.

    Every word is quoted, so user input is never FTS5 syntax; `column` keeps the words off the
    owner column (a word equal to an owner token then matches nothing).
    """
    quoted = ['"' + word.replace('"', '""') + '"' for word in words]
    if prefix:
        quoted[-1] += " *"
    scope = f"{column} : " if column else ""
    return f'owner : "{owner_token(user_id)}" AND {scope}({f" {operator} ".join(quoted)})'


def iso(moment: datetime) -> str:
    """Timestamps are stored as ISO-8601 text with milliseconds, which sorts by time."""
    return moment.isoformat(timespec="milliseconds")


CORE_TABLES = """
CREATE TABLE conversations (
    id INTEGER PRIMARY KEY,
    conversation_id TEXT NOT NULL UNIQUE,
    user_id TEXT NOT NULL,
    title TEXT NOT NULL DEFAULT '',
    summary TEXT,
    summary_last_message_id TEXT,
    summary_tokens INTEGER NOT NULL DEFAULT 0,
    total_tokens INTEGER NOT NULL DEFAULT 0,
    message_count INTEGER NOT NULL DEFAULT 0,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE UNIQUE INDEX conversation_user_idx ON conversations(conversation_id, user_id);
CREATE INDEX conversations_user_updated_idx ON conversations(user_id, updated_at DESC);
CREATE INDEX conversations_created_at_idx ON conversations(created_at DESC);
CREATE TABLE messages (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    message_id TEXT NOT NULL UNIQUE,
    conversation_id TEXT NOT NULL REFERENCES conversations(conversation_id) ON DELETE CASCADE,
    user_id TEXT NOT NULL,
    parent_message_id TEXT,
    role TEXT NOT NULL CHECK (role IN ('user', 'assistant', 'system')),
    content TEXT NOT NULL,
    created_at TEXT NOT NULL,
    tokens INTEGER NOT NULL DEFAULT 0 CHECK (tokens >= 0),
    agent TEXT,
    finish_reason TEXT
);
CREATE INDEX messages_conversation_idx ON messages(conversation_id, seq);
CREATE INDEX messages_created_at_idx ON messages(created_at);
"""

def _full_text(name: str, table: str, column: str, rowid: str) -> str:
    """An external-content FTS5 index over table.column, kept in sync by triggers.

    The `owner` column holds one token per user, so a search can be scoped to one user.
    """
    owner_new, owner_old = OWNER.format(col="new.user_id"), OWNER.format(col="old.user_id")
    delete = (f"INSERT INTO {name}({name}, rowid, {column}, owner) "
              f"VALUES ('delete', old.{rowid}, old.{column}, {owner_old});")
    insert = f"INSERT INTO {name}(rowid, {column}, owner) VALUES (new.{rowid}, new.{column}, {owner_new});"
    return f"""
CREATE VIEW {name}_source AS
    SELECT {rowid}, {column}, {OWNER.format(col='user_id')} AS owner FROM {table};
CREATE VIRTUAL TABLE {name} USING fts5(
    {column}, owner, content='{name}_source', content_rowid='{rowid}',
    tokenize='porter unicode61 remove_diacritics 2', prefix='2 3');
INSERT INTO {name}({name}, rank) VALUES ('rank', 'bm25({RANK_WEIGHTS})');
CREATE TRIGGER {name}_insert AFTER INSERT ON {table} BEGIN
    {insert}
END;
CREATE TRIGGER {name}_delete AFTER DELETE ON {table} BEGIN
    {delete}
END;
CREATE TRIGGER {name}_update AFTER UPDATE OF {column} ON {table} BEGIN
    {delete}
    {insert}
END;
"""


FULL_TEXT = _full_text("messages_fts", "messages", "content", "seq") + _full_text(
    "titles_fts", "conversations", "title", "id")

# Version 3. The status CHECK spells out base.JOB_STATUSES as they were when it was applied.
LIBRARY_TABLES = """
ALTER TABLE messages ADD COLUMN meta TEXT CHECK (meta IS NULL OR json_valid(meta));
CREATE TABLE documents (
    id INTEGER PRIMARY KEY,
    document_id TEXT NOT NULL UNIQUE,
    user_id TEXT NOT NULL,
    conversation_id TEXT,
    file_name TEXT NOT NULL,
    content_hash TEXT NOT NULL,
    chunk_count INTEGER NOT NULL DEFAULT 0 CHECK (chunk_count >= 0),
    tokens INTEGER NOT NULL DEFAULT 0 CHECK (tokens >= 0),
    created_at TEXT NOT NULL,
    UNIQUE (user_id, content_hash)
);
CREATE INDEX documents_user_created_idx ON documents(user_id, created_at DESC);
CREATE INDEX documents_conversation_idx ON documents(conversation_id, user_id);
CREATE TABLE document_chunks (
    rowid INTEGER PRIMARY KEY,
    document_id TEXT NOT NULL REFERENCES documents(document_id) ON DELETE CASCADE,
    user_id TEXT NOT NULL,
    idx INTEGER NOT NULL CHECK (idx >= 0),
    content TEXT NOT NULL,
    tokens INTEGER NOT NULL DEFAULT 0 CHECK (tokens >= 0),
    UNIQUE (document_id, idx)
);
CREATE TABLE jobs (
    id INTEGER PRIMARY KEY,
    job_id TEXT NOT NULL UNIQUE,
    user_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    conversation_id TEXT,
    status TEXT NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'processing', 'done', 'error')),
    done INTEGER NOT NULL DEFAULT 0 CHECK (done >= 0),
    total INTEGER NOT NULL DEFAULT 0 CHECK (total >= 0),
    result TEXT CHECK (result IS NULL OR json_valid(result)),
    error TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE INDEX jobs_user_idx ON jobs(user_id, created_at DESC);
CREATE TABLE model_cache (
    user_id TEXT NOT NULL,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    created_at TEXT NOT NULL,
    PRIMARY KEY (user_id, key)
) WITHOUT ROWID;
""" + _full_text("document_chunks_fts", "document_chunks", "content", "rowid")



def _reindex_owner(name: str, table: str, column: str, rowid: str) -> str:
    """Re-index a row of a `_full_text` index when its user_id changes (accounts adopt records)."""
    owner_new, owner_old = OWNER.format(col="new.user_id"), OWNER.format(col="old.user_id")
    return f"""
CREATE TRIGGER {name}_owner AFTER UPDATE OF user_id ON {table} BEGIN
    INSERT INTO {name}({name}, rowid, {column}, owner) VALUES ('delete', old.{rowid}, old.{column}, {owner_old});
    INSERT INTO {name}(rowid, {column}, owner) VALUES (new.{rowid}, new.{column}, {owner_new});
END;
"""


ACCOUNTS = """
CREATE TABLE accounts (
    username_key TEXT PRIMARY KEY,
    username TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    user_id TEXT NOT NULL UNIQUE,
    created_at TEXT NOT NULL
);
""" + _reindex_owner("messages_fts", "messages", "content", "seq") + _reindex_owner(
    "titles_fts", "conversations", "title", "id") + _reindex_owner(
    "document_chunks_fts", "document_chunks", "content", "rowid")

INVITES = """
CREATE TABLE invites (
    code_key TEXT PRIMARY KEY,
    created_by TEXT NOT NULL,
    created_at TEXT NOT NULL,
    expires_at TEXT NOT NULL,
    used_at TEXT,
    used_by TEXT
);
"""

MIGRATIONS: list[tuple[int, str, str]] = [
    (1, "conversations and messages tables with their indexes", CORE_TABLES),
    (2, "ranked full-text search over messages and titles (FTS5)", FULL_TEXT),
    (3, "messages.meta; documents and their chunks (FTS5), jobs and the model cache", LIBRARY_TABLES),
    (4, "accounts; full-text rows re-indexed when their user_id changes", ACCOUNTS),
    (5, "documents.size_bytes, for upload quotas",
     "ALTER TABLE documents ADD COLUMN size_bytes INTEGER NOT NULL DEFAULT 0 CHECK (size_bytes >= 0);"),
    (6, "invites: single-use registration codes, kept by their hash", INVITES),
    (7, "conversations.content_bytes, for the per-user storage quota", """
ALTER TABLE conversations ADD COLUMN content_bytes INTEGER NOT NULL DEFAULT 0;
UPDATE conversations SET content_bytes = (SELECT COALESCE(SUM(length(CAST(m.content AS BLOB))), 0)
    FROM messages m WHERE m.conversation_id = conversations.conversation_id);
"""),
    (9, "conversations.pinned_facts: facts the user pinned, sent verbatim with every request",
     "ALTER TABLE conversations ADD COLUMN pinned_facts TEXT NOT NULL DEFAULT '[]' CHECK (json_valid(pinned_facts));"),
    (10, "document_chunks.meta: where a chunk is in its document (pages, headings), for citations",
     "ALTER TABLE document_chunks ADD COLUMN meta TEXT CHECK (meta IS NULL OR json_valid(meta));"),
]


# Version 11: a vector per message and per upload chunk (semantic/), beside the FTS5 indexes.
VECTORS = """
CREATE TABLE message_vectors (
    item INTEGER PRIMARY KEY REFERENCES messages(seq) ON DELETE CASCADE,
    user_id TEXT NOT NULL,
    vec BLOB NOT NULL
);
CREATE INDEX message_vectors_user_idx ON message_vectors(user_id, item);
CREATE TABLE chunk_vectors (
    item INTEGER PRIMARY KEY REFERENCES document_chunks(rowid) ON DELETE CASCADE,
    user_id TEXT NOT NULL,
    vec BLOB NOT NULL
);
CREATE INDEX chunk_vectors_user_idx ON chunk_vectors(user_id, item);
CREATE TRIGGER message_vectors_owner AFTER UPDATE OF user_id ON messages BEGIN
    UPDATE message_vectors SET user_id = new.user_id WHERE item = new.seq;
END;
CREATE TRIGGER chunk_vectors_owner AFTER UPDATE OF user_id ON document_chunks BEGIN
    UPDATE chunk_vectors SET user_id = new.user_id WHERE item = new.rowid;
END;
"""
MIGRATIONS.append((11, "message_vectors and chunk_vectors: one embedding per message and chunk, deleted with it",
                   VECTORS))

IMAGES = """
CREATE TABLE images (
    image_id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL,
    message_id TEXT NOT NULL,
    file_name TEXT NOT NULL,
    mime TEXT NOT NULL,
    width INTEGER NOT NULL CHECK (width > 0),
    height INTEGER NOT NULL CHECK (height > 0),
    size_bytes INTEGER NOT NULL CHECK (size_bytes >= 0),
    data BLOB NOT NULL,
    created_at TEXT NOT NULL
);
CREATE INDEX images_user_message_idx ON images(user_id, message_id);
"""
# images (storage/sqlite_images.py); appended after the vectors' version 11 so versions stay in order
MIGRATIONS.append((12, "images: pictures attached to user messages, re-encoded, per user", IMAGES))
