"""Logging for the whole process: one format, a request id on every line, PII and secrets redacted.

`configure(config)` (re)builds our handlers on the root logger; they are tagged, so handlers added
by others (pytest's caplog) stay. `init_app(app)` gives each HTTP request an id; Socket.IO events
and background tasks get theirs from `bind_request_id()` and `carry()`, as nothing hooks them.
"""
from __future__ import annotations

import contextlib
import contextvars
import functools
import json
import logging
import re
import string
import sys
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from logging.handlers import RotatingFileHandler
from urllib.parse import unquote, urlparse

from flask import Flask, Response, g, request

import access_log

TEXT_FORMAT = "%(asctime)s %(levelname)s [%(request_id)s] %(name)s: %(message)s"
REQUEST_ID_HEADER = "X-Request-ID"
SAFE_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")
MIN_SECRET_CHARS = 4  # a shorter configured "secret" would blank ordinary words everywhere
OURS = "_chat_logs"  # the tag on handlers configure() added, and may therefore remove
RESERVED = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime", "request_id"}

_request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)

# Secrets named in the line. Each pattern is tried only where one of its anchor words starts
# (one scan of the lowercased line finds them all), so a line without any costs a few microseconds.
_AUTHORIZATION = re.compile(r"""(authorization["']?\s*[:=]\s*["']?(?:(?:bearer|basic|token)\s+)?)[^\s"',;]+""", re.IGNORECASE)
_BEARER = re.compile(r"\b(bearer)\s+[A-Za-z0-9._~+/=-]+", re.IGNORECASE)
_KEY_OR_PASSWORD = re.compile(r"""(api[-_ ]?key|passw(?:or)?d|passphrase)(["']?\s*[:=]\s*["']?)[^\s"',;&]+""", re.IGNORECASE)
_LONG_SECRET = re.compile(r"""(key|token|secret)(["']?\s*[:=]\s*["']?)"""
                          r"(?![0-9a-f]{8}-[0-9a-f]{4}-)[A-Za-z0-9+/_.~-]{32,}={0,2}", re.IGNORECASE)  # not a UUID
_SK = re.compile(r"\bsk[-_][A-Za-z0-9_-]{16,}")
_BY_ANCHOR = {
    "authorization": (_AUTHORIZATION, r"\1[secret]"), "bearer": (_BEARER, r"\1 [secret]"),
    **dict.fromkeys(("api", "passw", "passphrase"), (_KEY_OR_PASSWORD, r"\1\2[secret]")),
    **dict.fromkeys(("key", "token", "secret"), (_LONG_SECRET, r"\1\2[secret]")),
    **dict.fromkeys(("sk-", "sk_"), (_SK, "[secret]")),
}
_ANCHORS = re.compile("|".join(map(re.escape, _BY_ANCHOR)))
_ASCII_LOWER = str.maketrans(string.ascii_uppercase, string.ascii_lowercase)
_AT = (  # both need an "@": credentials in a URI first (user:pw@host), then emails
    (re.compile(r"(://[^\s/:@]*:)[^\s/@]+@"), r"\1[secret]@"),
    (re.compile(r"(?<![\w.%+-])[\w.%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b"), "[email]"),
)
_DIGIT_RUN = re.compile(r"\d(?:[ ().-]{0,2}\d){8,}")  # 9+ closely spaced digits: where a phone number can be
_PHONE = re.compile(r"""
    (?<![\w.:/+-])                          # not inside a word, number, version, time, path or id
    (?!\d{4}-\d\d-\d\d)                     # an ISO date
    (?!\d{1,3}(?:\.\d{1,3}){3}(?!\d))       # an IPv4 address
    (?: \+\d{1,3}+(?:[ .-]?\(?\d{1,4}+\)?){2,6}   # +44 20 7946 0958, +1 (555) 123-4567, +4915112345678
      | \(?\d{2,5}+\)?(?:[ .-]\d{2,4}+){2,4}     # (555) 123-4567, 555.123.4567, 020 7946 0958, 06 12 34 56 78
      | 0\d{8,10} )                             # 0612345678: ungrouped needs the national trunk 0
    (?![\w:-]|\.\d)                         # not followed by more of a number, time or id
""", re.VERBOSE)


class Redactor:
    """Blanks configured secret values, then named secrets and keys, emails and phone numbers."""

    def __init__(self, secrets: list[str]) -> None:
        self.secrets = sorted({s for s in secrets if s and len(s) >= MIN_SECRET_CHARS}, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for secret in self.secrets:
            if secret in text:
                text = text.replace(secret, "[secret]")
        text = _replace(text, _named_secrets(text))
        if "@" in text:
            for pattern, replacement in _AT:
                text = pattern.sub(replacement, text)
        return _replace(text, _phone_numbers(text))


def _named_secrets(text: str) -> list[tuple[re.Match, str]]:
    """(match, replacement) for each secret found at an anchor word, in order and not overlapping."""
    lower = text.lower()
    if len(lower) != len(text):  # a character whose lowercase is longer: keep positions aligned
        lower = text.translate(_ASCII_LOWER)
    found, end = [], 0
    for anchor in _ANCHORS.finditer(lower):
        pattern, replacement = _BY_ANCHOR[anchor[0]]
        if anchor.start() >= end and (match := pattern.match(text, anchor.start())):
            found.append((match, replacement))
            end = match.end()
    return found


def _phone_numbers(text: str) -> list[tuple[re.Match, str]]:
    """Phone numbers of 9 to 15 digits, looked for only around runs of digits: from the 2 characters
    before a run (a "+(" prefix) to the 2 after it (read by the closing checks)."""
    found, end = [], 0
    for run in _DIGIT_RUN.finditer(text):
        for match in _PHONE.finditer(text, max(run.start() - 2, end), run.end() + 3):
            if 9 <= sum(char.isdigit() for char in match[0]) <= 15:
                found.append((match, "[phone]"))
                end = match.end()
    return found


def _replace(text: str, found: list[tuple[re.Match, str]]) -> str:
    """The text with each (ordered, non-overlapping) match replaced by its expanded replacement."""
    pieces, end = [], 0
    for match, replacement in found:
        pieces += [text[end:match.start()], match.expand(replacement)]
        end = match.end()
    return "".join(pieces) + text[end:] if pieces else text


def configured_secrets(config) -> list[str]:
    """The secret values in config: API keys, SECRET_KEY, passwords inside MONGODB_URI and REDIS_URL."""
    found = [config.OPENAI_API_KEY, config.FALLBACK_API_KEY, config.SECRET_KEY, *config.AGENT_API_KEYS.values()]
    for uri in (config.MONGODB_URI, config.REDIS_URL):
        password = urlparse(uri).password if uri else None
        found += [password, unquote(password)] if password else []
    return found


class RedactFilter(logging.Filter):
    """Rewrites the message (args merged), string extras and any traceback through a Redactor."""

    def __init__(self, redact: Redactor) -> None:
        super().__init__()
        self.redact = redact

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "_redacted", False):  # the file handler after the stderr one
            return True
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a malformed call must not raise in the caller, nor print its arguments
            message = f"{record.msg} (unformattable arguments)"
        record.msg, record.args = self.redact(message), None
        for key, value in _extras(record).items():
            if isinstance(value, str):
                setattr(record, key, self.redact(value))
        if record.exc_info:  # formatted afresh: a handler before ours may have cached it unredacted
            record.exc_text = self.redact(logging.Formatter().formatException(record.exc_info))
        if record.stack_info:
            record.stack_info = self.redact(record.stack_info)
        record._redacted = True
        return True


class RequestIdFilter(logging.Filter):
    """Puts `request_id` on every record: the bound id, or "-" outside any request."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "request_id", None) is None:
            record.request_id = _request_id.get() or "-"
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, message, request_id, JSON-safe extras, exc_info."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {key: value for key, value in _extras(record).items() if _json_safe(value)}
        entry.update(ts=datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")
                     .replace("+00:00", "Z"), level=record.levelname, logger=record.name,
                     message=record.getMessage(), request_id=getattr(record, "request_id", "-"))
        if record.exc_info or record.exc_text:
            entry["exc_info"] = record.exc_text or self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack_info"] = record.stack_info
        return json.dumps(entry, ensure_ascii=False)


def _extras(record: logging.LogRecord) -> dict:
    """The fields a caller added with `extra=`."""
    return {key: value for key, value in vars(record).items() if key not in RESERVED and not key.startswith("_")}


def _json_safe(value) -> bool:
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError):
        return False
    return True


class StderrHandler(logging.StreamHandler):
    """Writes to whatever sys.stderr is when a line is logged (pytest's capsys swaps it per test)."""

    def __init__(self) -> None:
        logging.Handler.__init__(self)  # StreamHandler's would pin today's sys.stderr

    @property
    def stream(self):
        return sys.stderr


def configure(config) -> None:
    """(Re)build our handlers on the root logger; idempotent, and handlers we did not add stay."""
    root = logging.getLogger()
    for handler in [h for h in root.handlers if getattr(h, OURS, False)]:
        root.removeHandler(handler)
        handler.close()
    for handler in _handlers(config):
        root.addHandler(handler)
    root.setLevel(config.LOG_LEVEL)
    _route_gunicorn()
    access_log.install()  # search terms and other query values stay out of access logs


def _handlers(config) -> list[logging.Handler]:
    """stderr, plus the rotating LOG_FILE when set, sharing one formatter and the two filters."""
    formatter = JsonFormatter() if config.LOG_FORMAT == "json" else logging.Formatter(TEXT_FORMAT)
    redact = RedactFilter(Redactor(configured_secrets(config)))
    handlers: list[logging.Handler] = [StderrHandler()]
    if config.log_path:
        config.log_path.parent.mkdir(parents=True, exist_ok=True)
        handlers.append(RotatingFileHandler(config.log_path, maxBytes=config.LOG_MAX_BYTES,
                                            backupCount=config.LOG_BACKUPS, encoding="utf-8", delay=True))
    for handler in handlers:
        handler.setFormatter(formatter)
        handler.addFilter(RequestIdFilter())
        handler.addFilter(redact)
        setattr(handler, OURS, True)
    return handlers


def _route_gunicorn() -> None:
    """gunicorn's error log (worker boot, exit, timeouts) goes through our handlers: its own handlers
    are dropped and it propagates to the root; its level stays gunicorn's --log-level. Only the
    worker process configures, so the master's few lines keep gunicorn's format."""
    error_log = logging.getLogger("gunicorn.error")
    error_log.handlers = []
    error_log.propagate = True


def init_app(app: Flask) -> None:
    """Every HTTP request gets an id for its log lines, echoed in the X-Request-ID response header."""
    app.before_request(_start_request)
    app.after_request(_echo_request_id)
    app.teardown_request(_end_request)


def _start_request() -> None:
    """The client's (or proxy's) X-Request-ID when it is a short safe token, else a new one."""
    g.request_id_token = _request_id.set(_safe_or_new(request.headers.get(REQUEST_ID_HEADER)))


def _echo_request_id(response: Response) -> Response:
    response.headers[REQUEST_ID_HEADER] = _request_id.get() or "-"
    return response


def _end_request(error: BaseException | None = None) -> None:
    token = g.pop("request_id_token", None)
    if token is not None:
        with contextlib.suppress(ValueError):  # torn down in another context: nothing of ours to undo
            _request_id.reset(token)


def _safe_or_new(value: str | None) -> str:
    return value if value and SAFE_REQUEST_ID.fullmatch(value) else uuid.uuid4().hex


def current_request_id() -> str | None:
    """The id bound in this context (request, event or task), or None."""
    return _request_id.get()


@contextlib.contextmanager
def bind_request_id(value: str | None = None) -> Iterator[str]:
    """Within the block, log lines carry `value` (if a safe token) or a new id; yields the id.
    Also a decorator: `@logs.bind_request_id()` gives each call of the function a new id."""
    token = _request_id.set(_safe_or_new(value))
    try:
        yield _request_id.get()
    finally:
        _request_id.reset(token)


def carry(function: Callable) -> Callable:
    """`function` bound to the current request id, for start_background_task: new threads and
    greenlets start with an empty context, so they would otherwise log "-"."""
    request_id = current_request_id()

    @functools.wraps(function)
    def run(*args, **kwargs):
        with bind_request_id(request_id):
            return function(*args, **kwargs)
    return run
