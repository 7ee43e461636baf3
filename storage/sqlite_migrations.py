"""Versioned schema of the SQLite store. Append new versions; never edit an applied one."""

OWNER = "'u' || hex({col})"  # one FTS token per user, whatever characters the id has

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

FULL_TEXT = f"""
CREATE VIEW messages_fts_source AS
    SELECT seq, content, {OWNER.format(col='user_id')} AS owner FROM messages;
CREATE VIRTUAL TABLE messages_fts USING fts5(
    content, owner, content='messages_fts_source', content_rowid='seq',
    tokenize='porter unicode61 remove_diacritics 2', prefix='2 3');
INSERT INTO messages_fts(messages_fts, rank) VALUES ('rank', 'bm25(1.0, 0.0)');
CREATE TRIGGER messages_fts_insert AFTER INSERT ON messages BEGIN
    INSERT INTO messages_fts(rowid, content, owner)
    VALUES (new.seq, new.content, {OWNER.format(col='new.user_id')});
END;
CREATE TRIGGER messages_fts_delete AFTER DELETE ON messages BEGIN
    INSERT INTO messages_fts(messages_fts, rowid, content, owner)
    VALUES ('delete', old.seq, old.content, {OWNER.format(col='old.user_id')});
END;
CREATE TRIGGER messages_fts_update AFTER UPDATE OF content ON messages BEGIN
    INSERT INTO messages_fts(messages_fts, rowid, content, owner)
    VALUES ('delete', old.seq, old.content, {OWNER.format(col='old.user_id')});
    INSERT INTO messages_fts(rowid, content, owner)
    VALUES (new.seq, new.content, {OWNER.format(col='new.user_id')});
END;
CREATE VIEW titles_fts_source AS
    SELECT id, title, {OWNER.format(col='user_id')} AS owner FROM conversations;
CREATE VIRTUAL TABLE titles_fts USING fts5(
    title, owner, content='titles_fts_source', content_rowid='id',
    tokenize='porter unicode61 remove_diacritics 2', prefix='2 3');
INSERT INTO titles_fts(titles_fts, rank) VALUES ('rank', 'bm25(1.0, 0.0)');
CREATE TRIGGER titles_fts_insert AFTER INSERT ON conversations BEGIN
    INSERT INTO titles_fts(rowid, title, owner) VALUES (new.id, new.title, {OWNER.format(col='new.user_id')});
END;
CREATE TRIGGER titles_fts_delete AFTER DELETE ON conversations BEGIN
    INSERT INTO titles_fts(titles_fts, rowid, title, owner)
    VALUES ('delete', old.id, old.title, {OWNER.format(col='old.user_id')});
END;
CREATE TRIGGER titles_fts_update AFTER UPDATE OF title ON conversations BEGIN
    INSERT INTO titles_fts(titles_fts, rowid, title, owner)
    VALUES ('delete', old.id, old.title, {OWNER.format(col='old.user_id')});
    INSERT INTO titles_fts(rowid, title, owner) VALUES (new.id, new.title, {OWNER.format(col='new.user_id')});
END;
"""

MIGRATIONS: list[tuple[int, str, str]] = [
    (1, "conversations and messages tables with their indexes", CORE_TABLES),
    (2, "ranked full-text search over messages and titles (FTS5)", FULL_TEXT),
]
