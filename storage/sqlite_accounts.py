"""Accounts on SQLite, and moving an anonymous user's records to the account it logs in to.

A mixin of SqliteStore (uses its `_db()` and `_write()`). The full-text indexes carry an owner
token per row; migration 4's triggers re-index a row whose user_id changes. Invites are consumed
by one conditional UPDATE, so two registrations cannot share a code.
"""
from __future__ import annotations

import sqlite3
from datetime import datetime

from .base import AccountExists, Record, as_utc, utcnow
from .sqlite_migrations import iso

_OWNED_TABLES = ("conversations", "messages", "jobs", "images")


class SqliteAccounts:
    def create_account(self, username: str, password_hash: str, user_id: str) -> Record:
        key = username.lower()
        try:
            with self._write() as db:
                db.execute("INSERT INTO accounts (username_key, username, password_hash, user_id, created_at) "
                           "VALUES (?, ?, ?, ?, ?)", (key, username, password_hash, user_id, iso(utcnow())))
        except sqlite3.IntegrityError as error:
            raise AccountExists(username) from error
        return self.get_account(username)

    def get_account(self, username: str) -> Record | None:
        row = self._db().execute("SELECT username, password_hash, user_id, created_at FROM accounts "
                                 "WHERE username_key = ?", (username.lower(),)).fetchone()
        return dict(row) if row else None

    def move_user_data(self, from_user_id: str, to_user_id: str) -> int:
        if from_user_id == to_user_id:
            return 0
        with self._write() as db:
            moved = db.execute("UPDATE conversations SET user_id = ? WHERE user_id = ?",
                               (to_user_id, from_user_id)).rowcount
            for table in _OWNED_TABLES[1:]:
                db.execute(f"UPDATE {table} SET user_id = ? WHERE user_id = ?", (to_user_id, from_user_id))
            db.execute("UPDATE OR IGNORE documents SET user_id = ? WHERE user_id = ?", (to_user_id, from_user_id))
            db.execute("UPDATE document_chunks SET user_id = ? WHERE user_id = ? AND document_id IN "
                       "(SELECT document_id FROM documents WHERE user_id = ?)",
                       (to_user_id, from_user_id, to_user_id))
            db.execute("DELETE FROM documents WHERE user_id = ?", (from_user_id,))  # the target had them
            db.execute("UPDATE OR IGNORE model_cache SET user_id = ? WHERE user_id = ?", (to_user_id, from_user_id))
            db.execute("DELETE FROM model_cache WHERE user_id = ?", (from_user_id,))
        return moved

    def create_invite(self, code_key: str, created_by: str, expires_at: datetime) -> Record:
        with self._write() as db:
            db.execute("INSERT INTO invites (code_key, created_by, created_at, expires_at) VALUES (?, ?, ?, ?)",
                       (code_key, created_by, iso(utcnow()), iso(as_utc(expires_at))))
        return self.get_invite(code_key)

    def consume_invite(self, code_key: str, username: str, now: datetime | None = None) -> bool:
        with self._write() as db:
            return db.execute("UPDATE invites SET used_at = ?, used_by = ? WHERE code_key = ? AND used_at IS NULL "
                              "AND expires_at > ?", (iso(utcnow()), username, code_key,
                                                     iso(as_utc(now or utcnow())))).rowcount == 1

    def release_invite(self, code_key: str, username: str) -> bool:
        with self._write() as db:
            return db.execute("UPDATE invites SET used_at = NULL, used_by = NULL WHERE code_key = ? AND used_by = ?",
                              (code_key, username)).rowcount == 1

    def get_invite(self, code_key: str) -> Record | None:
        row = self._db().execute("SELECT * FROM invites WHERE code_key = ?", (code_key,)).fetchone()
        if row is None:
            return None
        record = dict(row)
        for key in ("created_at", "expires_at", "used_at"):
            record[key] = datetime.fromisoformat(record[key]) if record[key] else None
        return record
