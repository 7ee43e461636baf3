"""Versioned schema of the SQLite store. Append new versions; never edit an applied one."""

OWNER = "'u' || hex({col})"  # one FTS token per user, whatever characters the id has
RANK_WEIGHTS = "1.0, 0.0"  # bm25 column weights: the text counts, the owner token does not

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

MIGRATIONS: list[tuple[int, str, str]] = [
    (1, "conversations and messages tables with their indexes", CORE_TABLES),
    (2, "ranked full-text search over messages and titles (FTS5)", FULL_TEXT),
]
