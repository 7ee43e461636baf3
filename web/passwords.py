"""Password hashing off the event loop (docs/ARCHITECTURE.md decisions 6 and 10): scrypt takes tens of milliseconds of
CPU, which under eventlet or gevent would stall every other user of the worker meanwhile. The
hash runs on a real thread (hashlib releases the GIL while it works); in threading mode directly.
"""
from __future__ import annotations

from werkzeug.security import check_password_hash, generate_password_hash

from agents import offload

# Checked against when the username is unknown, so both answers take as long.
UNKNOWN_USER_HASH = generate_password_hash("not-a-password-anyone-has")


def hash_password(password: str) -> str:
    """The salted hash to store; the password itself is never kept or logged."""
    return offload.run_blocking(generate_password_hash, password)


def password_matches(stored_hash: str | None, password: str) -> bool:
    """True when the password is right; an unknown user (None) costs the same and is False."""
    matches = offload.run_blocking(check_password_hash, stored_hash or UNKNOWN_USER_HASH, password)
    return matches and stored_hash is not None
