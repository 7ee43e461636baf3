"""HTTP details of OpenAI-compatible endpoints: where to POST, how to send the key, how long to wait.

Also the parameters some servers reject, with the request that works instead.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from urllib.parse import urlsplit, urlunsplit


@dataclass(frozen=True)
class Endpoint:
    """Where to POST, and whether it is Azure (key in `api-key`, not `Authorization`)."""

    url: str
    azure: bool


def endpoint_for(base_url: str) -> Endpoint:
    """The chat-completions URL for a base URL; query (Azure's api-version) kept as given.

    Raises ValueError for a URL that is not http(s), so a misconfiguration fails at startup.
    """
    parts = urlsplit(base_url.strip())
    if parts.scheme not in ("http", "https"):
        raise ValueError(f"The model endpoint URL must start with http:// or https://, got {base_url!r}")
    host = (parts.hostname or "").lower()
    azure = host.endswith(".openai.azure.com") or "/openai/deployments/" in parts.path
    path = parts.path.rstrip("/")
    if azure and not path:
        path = "/openai/v1"  # a bare Azure resource URL: Azure's v1 API takes the model in the body
    if not path.endswith("/chat/completions"):
        path += "/chat/completions"
    return Endpoint(urlunsplit((parts.scheme, parts.netloc, path, parts.query, "")), azure)


def retry_after_seconds(headers: Mapping[str, str], now: datetime | None = None) -> float | None:
    """Seconds the server asked us to wait: `retry-after-ms`, or `Retry-After` as seconds or HTTP date."""
    try:
        return max(0.0, float(headers["retry-after-ms"]) / 1000)
    except (KeyError, ValueError):
        pass
    value = headers.get("retry-after", "").strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    when = when if when.tzinfo else when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def request_headers(endpoint: Endpoint, api_key: str | None) -> dict:
    """JSON in, SSE out, uncompressed (a compressing proxy would buffer the stream), and the key."""
    headers = {"Content-Type": "application/json", "Accept": "text/event-stream", "Accept-Encoding": "identity"}
    if api_key:
        headers.update({"api-key": api_key} if endpoint.azure else {"Authorization": f"Bearer {api_key}"})
    return headers


def _drop_stream_options(body: dict) -> bool:
    """Azure before api-version 2024-09-01 and some older servers reject stream_options."""
    return body.pop("stream_options", None) is not None


def _use_max_completion_tokens(body: dict) -> bool:
    """OpenAI's reasoning models reject max_tokens and ask for max_completion_tokens."""
    if "max_tokens" not in body:
        return False
    body["max_completion_tokens"] = body.pop("max_tokens")
    return True


# The word in a 400 answer that names the parameter, and the fix (remembered per client).
COMPAT_FIXES = {"stream_options": _drop_stream_options, "max_completion_tokens": _use_max_completion_tokens}
