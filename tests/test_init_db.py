"""init_db.py: creates the schema, reports pending migrations, and is idempotent."""
import sqlite3

import pytest

import init_db


@pytest.fixture
def sqlite_env(monkeypatch, tmp_path):
    monkeypatch.setattr("config.load_dotenv", lambda *a, **k: None)
    monkeypatch.delenv("MONGODB_URI", raising=False)
    monkeypatch.setenv("INSTANCE_PATH", str(tmp_path))
    return tmp_path / "chat.sqlite3"


def _schema(path):
    with sqlite3.connect(path) as db:
        return sorted(db.execute("SELECT type, name, sql FROM sqlite_master").fetchall(), key=str)


def test_init_db_check_reports_pending_without_applying(sqlite_env, capsys):
    assert init_db.main(["--check"]) == 1
    out = capsys.readouterr().out
    assert "pending migration 0001" in out and "pending migration 0002" in out
    assert not any(row[1] == "messages" for row in _schema(sqlite_env))


def test_init_db_applies_then_is_idempotent(sqlite_env, capsys):
    assert init_db.main([]) == 0
    assert "applied migration 0002" in capsys.readouterr().out
    schema = _schema(sqlite_env)
    names = {row[1] for row in schema}
    assert {"conversations", "messages", "messages_fts", "titles_fts", "schema_migrations",
            "conversation_user_idx", "conversations_created_at_idx"} <= names
    assert init_db.main([]) == 0
    assert "up to date, nothing to do" in capsys.readouterr().out
    assert _schema(sqlite_env) == schema
    assert init_db.main(["--check"]) == 0


def test_init_db_keeps_existing_data(sqlite_env):
    from storage.sqlite_store import SqliteStore
    init_db.main([])
    store = SqliteStore(sqlite_env)
    cid = store.create_conversation("alice", "kept")["conversation_id"]
    init_db.main([])
    assert store.get_conversation("alice", cid)["title"] == "kept"


def test_init_db_refuses_bad_settings(sqlite_env, monkeypatch, capsys):
    monkeypatch.setenv("MAX_TOKENS", "10")
    assert init_db.main([]) == 2
    assert "MAX_TOKENS" in capsys.readouterr().err
