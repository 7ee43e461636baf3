"""Accounts: register, log in, log out. Optional: without AUTH_REQUIRED anonymous use goes on.

Every record is scoped by a user id (docs/ARCHITECTURE.md decision 5). An account is a username and password
bound to one user id. Registering from an anonymous session keeps that session's id, so its
conversations are simply the account's; logging in from one moves the anonymous records to the
account. Both start a new session id (no session fixation) and a new CSRF token, which JSON
callers get back in the answer. Forms post here too, so the pages work without JavaScript.
Who may register is web/invites.py's business; failed log-ins are slowed by web/login_throttle.py.
"""
from __future__ import annotations

import logging
import re
import uuid

from flask import Blueprint, abort, current_app, g, jsonify, redirect, render_template, request, session, url_for
from flask_wtf.csrf import generate_csrf

import utils
from storage.base import AccountExists

from . import invites
from .context import get_store
from .login_throttle import LoginThrottle
from .passwords import hash_password, password_matches
from .socket_sessions import disconnect_session_sockets

bp = Blueprint("accounts", __name__)
log = logging.getLogger("chat.accounts")
USERNAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{2,39}")
PASSWORD_LENGTH = (8, 200)
INVITE_LENGTH = 100
CLOSED = "Registration is closed. Ask the administrator for an account."
BAD_INVITE = "That invite code is not valid: it may be mistyped, used already or expired."
TAKEN = "That username is taken. Choose another or log in."


def init_app(app) -> None:
    app.extensions["chat_login_throttle"] = LoginThrottle(app.config.get("SESSION_REDIS"))
    app.register_blueprint(bp)
    app.register_blueprint(invites.bp)
    app.before_request(invites.ensure_admin_account)


@bp.get("/login")
def login_page():
    return _page("login", None), 200


@bp.get("/register")
def register_page():
    return _page("register", None), 200


@bp.get("/account")
def account():
    """Who this browser is: the page shows it; scripts check it."""
    config = current_app.config["CHAT"]
    return jsonify(authenticated="username" in session, username=session.get("username"),
                   auth_required=config.AUTH_REQUIRED, registration=config.registration_mode)


@bp.post("/register")
def register():
    """Open, by invite or closed (REGISTRATION); an invite is used up before anything else is
    answered, so a caller without one learns nothing, not even which names are taken."""
    mode = current_app.config["CHAT"].registration_mode
    if mode == "closed":
        return _refuse("register", 403, CLOSED)
    username, password = _credentials("register")
    invite = invites.code_key(_invite_code()) if mode == "invite" else None
    store = get_store()
    if invite is not None and not store.consume_invite(invite, username):
        return _refuse("register", 403, BAD_INVITE)
    if not _create_account(store, username, password, invite):
        return _refuse("register", 409, TAKEN)
    _start_session(username, store.get_account(username)["user_id"])
    log.info("account registered")
    return _welcome(201, "Account created; you are logged in.")


def _create_account(store, username: str, password: str, invite: str | None) -> bool:
    """False when the name is taken (or is the admin's); the invite is then given back."""
    anonymous = session.get("user_id") if "username" not in session else None
    try:
        if invites.reserved(username):
            raise AccountExists(username)
        store.create_account(username, hash_password(password), anonymous or str(uuid.uuid4()))
        return True
    except AccountExists:
        if invite is not None:
            store.release_invite(invite, username)  # still good for another name
        return False


@bp.post("/login")
def login():
    username, password = _credentials("login")
    throttle: LoginThrottle = current_app.extensions["chat_login_throttle"]
    address = request.remote_addr or "?"
    wait = throttle.reserve(username, address)  # counted as a failure before the check: no parallel guesses
    if wait > 0:
        return _refuse("login", 429, f"Too many failed log-ins. Try again in {wait:.0f} s.", retry_after=wait)
    store = get_store()
    found = store.get_account(username)
    if not password_matches(found["password_hash"] if found else None, password):
        log.info("log-in failed")
        return _refuse("login", 401, "Wrong username or password.")
    throttle.succeeded(username, address)
    if "username" not in session and session.get("user_id"):
        moved = store.move_user_data(session["user_id"], found["user_id"])
        log.info("log-in moved %d anonymous conversation(s) to the account", moved)
    _start_session(found["username"], found["user_id"])
    return _welcome(200, "You are logged in.")


@bp.post("/logout")
def logout():
    """A new, empty session: the next request gets a fresh anonymous identity."""
    disconnect_session_sockets()  # else they stay in the account's rooms (web/socket_sessions.py)
    _new_session()
    session["user_id"] = str(uuid.uuid4())
    if request.is_json:
        return jsonify(message="You are logged out.", csrf_token=generate_csrf())
    return redirect(url_for("pages.index"), 303)


def _credentials(mode: str) -> tuple[str, str]:
    body = request.get_json(silent=True) if request.is_json else request.form
    if not hasattr(body, "get"):
        abort(400, "Request body must be a JSON object.")
    username, password = body.get("username"), body.get("password")
    if not isinstance(username, str) or not USERNAME.fullmatch(username.strip()):
        abort(_refuse(mode, 400, "Usernames are 3 to 40 letters, digits, '.', '_' or '-', starting with a "
                                 "letter or digit."))
    if not isinstance(password, str) or not PASSWORD_LENGTH[0] <= len(password) <= PASSWORD_LENGTH[1] \
            or not utils.storable(password):
        abort(_refuse(mode, 400, f"Passwords are {PASSWORD_LENGTH[0]} to {PASSWORD_LENGTH[1]} characters."))
    return username.strip(), password


def _invite_code() -> str:
    """The invite code a registration must bring when REGISTRATION=invite."""
    body = request.get_json(silent=True) if request.is_json else request.form
    code = body.get("invite") if hasattr(body, "get") else None
    if not isinstance(code, str) or not code.strip() or len(code) > INVITE_LENGTH or not utils.storable(code):
        abort(_refuse("register", 400, "An invite code is needed to register: ask the administrator for one."))
    return code.strip()


def _start_session(username: str, user_id: str) -> None:
    _new_session()
    session.update(user_id=user_id, username=username)


def _new_session() -> None:
    """A new session id (the old one is deleted from the store) with nothing in it, not even
    the CSRF token, so nothing learned before this request works after it."""
    current_app.session_interface.regenerate(session)
    session.clear()
    session.permanent = True
    g.pop("csrf_token", None)


def _welcome(status: int, message: str):
    if request.is_json:
        return jsonify(message=message, username=session["username"], csrf_token=generate_csrf()), status
    return redirect(url_for("pages.index"), 303)


def _refuse(mode: str, status: int, message: str, retry_after: float | None = None):
    if request.is_json:
        body = {"message": message, **({"retry_after": round(retry_after, 1)} if retry_after else {})}
        response = jsonify(body)
    else:
        response = current_app.make_response(_page(mode, message))
    response.status_code = status
    if retry_after:
        response.headers["Retry-After"] = str(int(retry_after + 0.999))
    return response


def _page(mode: str, error: str | None) -> str:
    """The log-in or registration page; the latter asks for an invite, or says it is closed."""
    return render_template("account.html", mode=mode, error=error,
                           registration=current_app.config["CHAT"].registration_mode)
