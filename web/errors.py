"""Every error answers JSON `{"message": ...}` with its status; nothing leaks internals."""
from __future__ import annotations

import logging

from flask import Flask, current_app, jsonify
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from storage.sqlite_store import is_busy

log = logging.getLogger("chat.errors")
STORE_BUSY = "The database is busy right now, so nothing was saved. Please try again in a moment."


def init_app(app: Flask) -> None:
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(RecursionError, _too_deep)
    app.register_error_handler(Exception, _unexpected)


def _http_error(error: HTTPException):
    message = error.description if error.description and not _is_default(error) else error.name + "."
    if isinstance(error, RequestEntityTooLarge) and _is_default(error):  # werkzeug's own, not ours
        limit = current_app.config["CHAT"].MAX_FILE_SIZE_MB
        message = f"The request is larger than the {limit:g} MB upload limit."
    return jsonify(message=message), error.code


def _is_default(error: HTTPException) -> bool:
    return error.description == type(error).description


def _too_deep(error: RecursionError):
    """JSON nested thousands deep makes the parser recurse too far: bad input, not our failure."""
    return jsonify(message="The request body is nested too deeply."), 400


def _unexpected(error: Exception):
    if is_busy(error):  # still locked after the store's busy timeout: retryable, not our fault
        log.warning("Store busy: %s", error)
        return jsonify(message=STORE_BUSY), 503, {"Retry-After": "1"}
    log.exception("Unhandled error: %s", type(error).__name__)
    return jsonify(message="An error occurred while processing your request."), 500
