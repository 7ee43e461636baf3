"""Access logs without what people searched for: values in query strings are blanked.

`GET /search?q=...` carries a person's search terms in the URL, and gunicorn's access log and the
development server's request log (werkzeug, `python app.py`) would keep them. A filter on those
two loggers rewrites each record before any handler sees it: names stay, values go
(`/search?q=[redacted]`), for every path, since other query strings carry ids and tokens too.
"""
from __future__ import annotations

import logging
import re

LOGGERS = ("gunicorn.access", "werkzeug")
BLANK = "[redacted]"
# gunicorn's atoms that hold a request target, a query string or a URL (access_log_format names)
TARGET_ATOMS = ("r", "f", "{referer}i", "{raw_uri}e", "{request_uri}e")
QUERY_ATOMS = ("q", "{query_string}e")
_QUERY = re.compile(r"\?([^\s\x1b]*)")  # to a space or werkzeug's colour code (it decodes %22 to a quote)


def blank_query(query: str) -> str:
    """`a=1&b` as `a=[redacted]&[redacted]`: a part without "=" may itself be the secret."""
    parts = (part.partition("=") for part in query.split("&"))
    return "&".join(f"{name}={BLANK}" if equals else BLANK for name, equals, _ in parts) if query else query


def redact_queries(text: str) -> str:
    """Every `?query` in the text (a request line, a URL) with its values blanked."""
    return _QUERY.sub(lambda match: "?" + blank_query(match[1]), text) if "?" in text else text


class QueryFilter(logging.Filter):
    """Blanks query values in gunicorn's access atoms or in werkzeug's formatted request line."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, dict):  # gunicorn: the atoms access_log_format is filled from
            _blank_atoms(record.args)
            return True
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - leave a malformed call to the handler's own error reporting
            return True
        record.msg, record.args = redact_queries(message), None
        return True


def _blank_atoms(atoms: dict) -> None:
    for keys, blank in ((TARGET_ATOMS, redact_queries), (QUERY_ATOMS, blank_query)):
        for key in keys:
            if isinstance(atoms.get(key), str):
                atoms[key] = blank(atoms[key])


def install() -> None:
    """Put one QueryFilter on each access logger (idempotent; logs.configure calls it)."""
    for name in LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(existing, QueryFilter) for existing in logger.filters):
            logger.addFilter(QueryFilter())
