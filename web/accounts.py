"""Accounts: register, log in, log out. Optional: without AUTH_REQUIRED anonymous use goes on.

Every record is scoped by a user id (DESIGN decision 5). An account is a username and password
bound to one user id. Registering from an anonymous session keeps that session's id, so its
conversations are simply the account's; logging in from one moves the anonymous records to the
account. Both start a new session id (no session fixation) and a new CSRF token, which JSON
callers get back in the answer. Forms post here too, so the pages work without JavaScript.
"""
from __future__ import annotations

import logging
import re
import uuid

from flask import (Blueprint, abort, current_app, g, jsonify, redirect, render_template, request, session,
                   url_for)
from flask_wtf.csrf import generate_csrf
from werkzeug.security import check_password_hash, generate_password_hash

import utils
from storage.base import AccountExists
from .context import get_store
from .login_throttle import LoginThrottle

bp = Blueprint("accounts", __name__)
log = logging.getLogger("chat.accounts")
USERNAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{2,39}")
PASSWORD_LENGTH = (8, 200)
# Checked against when the username is unknown, so both answers take as long.
_UNKNOWN_USER_HASH = generate_password_hash("not-a-password-anyone-has")


def init_app(app) -> None:
    app.extensions["chat_login_throttle"] = LoginThrottle(app.config.get("SESSION_REDIS"))
    app.register_blueprint(bp)


@bp.get("/login")
def login_page():
    return render_template("account.html", mode="login", error=None), 200


@bp.get("/register")
def register_page():
    return render_template("account.html", mode="register", error=None), 200


@bp.get("/account")
def account():
    """Who this browser is: the page shows it; scripts check it."""
    return jsonify(authenticated="username" in session, username=session.get("username"),
                   auth_required=current_app.config["CHAT"].AUTH_REQUIRED)


@bp.post("/register")
def register():
    username, password = _credentials("register")
    store = get_store()
    anonymous = session.get("user_id") if "username" not in session else None
    try:
        store.create_account(username, generate_password_hash(password), anonymous or str(uuid.uuid4()))
    except AccountExists:
        return _refuse("register", 409, "That username is taken. Choose another or log in.")
    _start_session(username, store.get_account(username)["user_id"])
    log.info("account registered")
    return _welcome(201, "Account created; you are logged in.")


@bp.post("/login")
def login():
    username, password = _credentials("login")
    throttle: LoginThrottle = current_app.extensions["chat_login_throttle"]
    keys = ("user:" + username.lower(), "ip:" + (request.remote_addr or "?"))
    wait = throttle.wait_seconds(*keys)
    if wait > 0:
        return _refuse("login", 429, f"Too many failed log-ins. Try again in {wait:.0f} s.", retry_after=wait)
    store = get_store()
    found = store.get_account(username)
    if not check_password_hash(found["password_hash"] if found else _UNKNOWN_USER_HASH, password) or not found:
        throttle.failed(*keys)
        log.info("log-in failed")
        return _refuse("login", 401, "Wrong username or password.")
    throttle.succeeded(keys[0])
    if "username" not in session and session.get("user_id"):
        moved = store.move_user_data(session["user_id"], found["user_id"])
        log.info("log-in moved %d anonymous conversation(s) to the account", moved)
    _start_session(found["username"], found["user_id"])
    return _welcome(200, "You are logged in.")


@bp.post("/logout")
def logout():
    """A new, empty session: the next request gets a fresh anonymous identity."""
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
        response = current_app.make_response(render_template("account.html", mode=mode, error=message))
    response.status_code = status
    if retry_after:
        response.headers["Retry-After"] = str(int(retry_after + 0.999))
    return response
