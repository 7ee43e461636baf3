"""Small request parsers that answer 400 with a clear message instead of raising."""
from __future__ import annotations

from flask import abort, request

import utils


def json_body(required: bool = True) -> dict:
    """The request's JSON object; {} when optional and absent."""
    if not request.data and not required:
        return {}
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        abort(400, "Request body must be a JSON object.")
    require_storable(body)
    return body


def require_storable(value) -> None:
    """400 for text no store can keep (unpaired surrogates), before it reaches one."""
    if not utils.storable_json(value):
        abort(400, "Text must be valid Unicode (it has an unpaired surrogate).")


def required_string(body: dict, name: str, max_length: int) -> str:
    value = optional_string(body, name, max_length)
    if not value:
        abort(400, f"'{name}' is required.")
    return value


def optional_string(body: dict, name: str, max_length: int) -> str | None:
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        abort(400, f"'{name}' must be a string.")
    value = value.strip()
    if len(value) > max_length:
        abort(400, f"'{name}' must be at most {max_length} characters.")
    if "\x00" in value:
        abort(400, f"'{name}' must not contain NUL characters.")
    return value


def int_arg(name: str, default: int, lo: int, hi: int) -> int:
    raw = request.args.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        abort(400, f"'{name}' must be an integer.")
    if not lo <= value <= hi:
        abort(400, f"'{name}' must be between {lo} and {hi}.")
    return value
