"""Every error answers JSON `{"message": ...}` with its status; nothing leaks internals."""
from __future__ import annotations

import logging

from flask import Flask, current_app, jsonify, request
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from storage.sqlite_store import is_busy

from .quotas import QuotaExceeded

log = logging.getLogger("chat.errors")
STORE_BUSY = "The database is busy right now, so nothing was saved. Please try again in a moment."


def init_app(app: Flask) -> None:
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(QuotaExceeded, _quota)
    app.register_error_handler(RecursionError, _too_deep)
    app.register_error_handler(Exception, _unexpected)


def _http_error(error: HTTPException):
    message = error.description if error.description and not _is_default(error) else error.name + "."
    if isinstance(error, RequestEntityTooLarge) and _is_default(error):  # werkzeug's own, not ours
        config = current_app.config["CHAT"]
        image = request.path.startswith("/images")
        message = too_large_message("The request", config.IMAGE_MAX_MB if image else config.MAX_FILE_SIZE_MB,
                                    "image " if image else "upload ")
    return jsonify(message=message), error.code


def too_large_message(what: str, limit_mb: float, kind: str = "") -> str:
    """Name the limit really passed: the body's, or, for a body under it, the form parser's (a
    text field held in memory, or too many parts)."""
    length, limit = request.content_length, request.max_content_length
    if length is not None and limit is not None and length <= limit:
        field_kb = (request.max_form_memory_size or 0) // 1024
        return (f"A form field is larger than {field_kb} KB, or the form has more than {request.max_form_parts} "
                "parts. Send the content as a file, or as a JSON body.")
    return f"{what} is larger than the {limit_mb:g} MB {kind}limit."


def _quota(error: QuotaExceeded):
    """A quota or a limit on work at once: 413/429/503 with a message saying what to do."""
    body = {"message": error.message}
    headers = {}
    if error.retry_after:
        body["retry_after"] = error.retry_after
        headers["Retry-After"] = str(error.retry_after)
    return jsonify(body), error.status, headers


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
