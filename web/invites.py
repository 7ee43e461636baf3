"""Who may register: REGISTRATION=open|invite|closed, the admin account, and single-use invites.

The admin is the account named ADMIN_USERNAME; with ADMIN_PASSWORD it is created on the first
request a worker serves (AccountExists leaves an existing one and its password alone). Nobody
can register that name. The admin posts to /admin/invites for a code that works once until it
expires; the store keeps only the code's SHA-256, so a leaked database holds no usable codes.
"""
from __future__ import annotations

import hashlib
import logging
import secrets
import threading
import uuid
from datetime import timedelta

from flask import Blueprint, abort, current_app, jsonify, request, session

from storage.base import AccountExists, utcnow

from .context import NO_IDENTITY_ENDPOINTS, get_store
from .passwords import hash_password
from .validation import json_body

bp = Blueprint("invites", __name__)
log = logging.getLogger("chat.invites")
EXPIRY_DAYS = (1, 90, 7)  # least, most, default
NOT_ADMIN = "Only the administrator can create invites."
_admin_lock = threading.Lock()


@bp.post("/admin/invites")
def create_invite():
    """The admin asks for a code to hand to one person; it is shown here once and never again."""
    if not is_admin():
        abort(403, NOT_ADMIN)
    days = _expiry_days(json_body(required=False))
    code = secrets.token_urlsafe(18)
    expires_at = utcnow() + timedelta(days=days)
    get_store().create_invite(code_key(code), session["username"], expires_at)
    log.info("invite created, valid for %d day(s)", days)
    return jsonify(message=f"Invite created: it works once, for {days} day(s).", code=code,
                   expires_at=expires_at.isoformat()), 201


def code_key(code: str) -> str:
    """What the store keeps instead of the code."""
    return hashlib.sha256(code.encode()).hexdigest()


def is_admin() -> bool:
    admin = current_app.config["CHAT"].ADMIN_USERNAME
    return bool(admin) and session.get("username", "").lower() == admin.lower()


def reserved(username: str) -> bool:
    """The admin's name cannot be registered: it belongs to whoever set ADMIN_USERNAME."""
    admin = current_app.config["CHAT"].ADMIN_USERNAME
    return bool(admin) and username.lower() == admin.lower()


def ensure_admin_account() -> None:
    """Once per worker, before its first request: create ADMIN_USERNAME with ADMIN_PASSWORD."""
    config = current_app.config["CHAT"]
    if current_app.extensions.get("chat_admin_ready") or not (config.ADMIN_USERNAME and config.ADMIN_PASSWORD) \
            or request.endpoint in NO_IDENTITY_ENDPOINTS:  # probes never wait on it
        return
    with _admin_lock:
        if current_app.extensions.get("chat_admin_ready"):
            return
        try:
            get_store().create_account(config.ADMIN_USERNAME, hash_password(config.ADMIN_PASSWORD),
                                       str(uuid.uuid4()))
            log.info("admin account created")
        except AccountExists:
            pass  # made by an earlier start (or another worker): its password stays as it is
        current_app.extensions["chat_admin_ready"] = True


def _expiry_days(body: dict) -> int:
    least, most, default = EXPIRY_DAYS
    days = body.get("expires_in_days", default)
    if isinstance(days, bool) or not isinstance(days, int) or not least <= days <= most:
        abort(400, f"'expires_in_days' must be a whole number from {least} to {most}.")
    return days
