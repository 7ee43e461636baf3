"""What can go wrong talking to a model endpoint, as exceptions whose `message` a user may read.

Messages never contain the API key, nor a piece of it: 401/403 bodies are not echoed (OpenAI's
quotes part of the key), and any other server text is redacted first and shortened after, so a cut
cannot leave the start of a key that redaction no longer recognises.
"""
from __future__ import annotations

import json
import re

DETAIL_LIMIT = 300
MIN_SECRET_CHARS = 4  # a shorter "key" would blank ordinary words
CONTEXT_PATTERN = re.compile(
    r"context[ _-]?(length|window|size)|maximum context|too many tokens|prompt is too long|"
    r"input is too long|reduce the length of the (messages|prompt|input)|"
    r"exceeds the maximum number of tokens|tokens? \+ .*must be <=", re.IGNORECASE)
LIMIT_PATTERN = re.compile(r"(?:context (?:length|window|size)|n_ctx)\D{0,30}?(\d[\d,]*)", re.IGNORECASE)
RETRYABLE_STATUSES = frozenset({408, 409, 429})


class LLMError(Exception):
    """Base class; `partial` holds the reply text received before the failure, if any."""

    def __init__(self, message: str, *, status: int | None = None, partial: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.partial = partial


class LLMUnavailable(LLMError):
    """Unreachable, timed out, overloaded or rate limited, after the allowed retries."""

    def __init__(self, message: str, *, status: int | None = None, retry_after: float | None = None,
                 attempts: int = 1) -> None:
        super().__init__(message, status=status)
        self.retry_after = retry_after
        self.attempts = attempts


class ContextLengthExceeded(LLMError):
    """The prompt plus max_tokens does not fit the model's window; `limit` when the server said it."""

    def __init__(self, message: str, *, status: int | None = None, limit: int | None = None) -> None:
        super().__init__(message, status=status)
        self.limit = limit


class LLMBadRequest(LLMError):
    """The endpoint refused the request (wrong key, unknown model, bad parameter): retrying won't help."""


class LLMStreamError(LLMError):
    """The reply broke after it started: an error event mid-stream, a cut connection, or garbage."""


class EmptyStream(LLMError):
    """The stream ended with no text and no finish reason: a failure, never an empty reply
    (llama.cpp's server answers an over-window streaming request so, with HTTP 200)."""

    def __init__(self, message: str = "The model endpoint ended the stream without sending a reply.") -> None:
        super().__init__(message)


def is_error_object(chunk: dict) -> bool:
    """An error where a chunk should be: `{"error": ...}`, or old vLLM's flat `{"object": "error", ...}`."""
    return bool(chunk.get("error")) or chunk.get("object") == "error"


def redact(text: str, secret: str | None) -> str:
    """The text with the secret blanked out (servers sometimes quote the key they were sent), and
    also a start of it left at the very end, where an earlier cut may have split it."""
    if not secret or len(secret) < MIN_SECRET_CHARS:
        return text
    text = text.replace(secret, "***")
    for size in range(min(len(secret) - 1, len(text)), MIN_SECRET_CHARS - 1, -1):
        if text.endswith(secret[:size]):
            return text[:-size] + "***"
    return text


def shorten(text: str) -> str:
    """At most DETAIL_LIMIT characters; only ever applied to text already redacted."""
    return text[:DETAIL_LIMIT]


def error_detail(payload, secret: str | None = None) -> tuple[str, str, dict]:
    """(message, code/type, error object) from any error shape servers send, JSON or text;
    the message redacted, then shortened."""
    if isinstance(payload, str):
        if payload.lstrip().startswith("<"):
            return "an HTML page instead of an API answer (check OPENAI_BASE_URL)", "", {}
        try:
            payload = json.loads(payload)
        except (ValueError, RecursionError):  # not JSON, or nested too deep to parse
            return shorten(redact(payload.strip(), secret)), "", {}
    error = (payload.get("error") or payload) if isinstance(payload, dict) else payload  # flat: old vLLM
    if not isinstance(error, dict):
        return shorten(redact(str(error), secret)), "", {}
    message = error.get("message") or error.get("detail") or error.get("msg") or json.dumps(error)
    code = " ".join(str(error.get(key)) for key in ("code", "type") if error.get(key) is not None)
    return shorten(redact(str(message), secret)), redact(code, secret), error


def is_context_error(message: str, code: str = "") -> bool:
    """Liberal match for 'the prompt is too long' across OpenAI, vLLM, llama.cpp, Ollama, LM Studio."""
    return bool(CONTEXT_PATTERN.search(f"{message} {code}")) or "exceed_context_size" in code


def context_limit(message: str, error: dict) -> int | None:
    """The window size the server reported, e.g. 'maximum context length is 8192 tokens'."""
    if isinstance(error.get("n_ctx"), int):
        return error["n_ctx"]
    match = LIMIT_PATTERN.search(message)
    return int(match.group(1).replace(",", "")) if match else None


def error_for_status(status: int, body: str, *, secret: str | None = None,
                     retry_after: float | None = None) -> LLMError:
    """The exception for a non-2xx answer; LLMUnavailable ones are worth retrying."""
    message, code, error = error_detail(redact(body, secret), secret)  # the body may end mid-key: read limit
    if status < 400:
        return LLMBadRequest(f"The model endpoint answered with an unexpected HTTP {status}; "
                             "check OPENAI_BASE_URL (redirects are not followed).", status=status)
    if status in (401, 403):
        return LLMBadRequest(f"The model endpoint rejected the API key (HTTP {status}). "
                             "Check OPENAI_API_KEY and that the key may use this model.", status=status)
    if is_context_error(message, code):
        return ContextLengthExceeded(f"The conversation is too long for the model: {message}",
                                     status=status, limit=context_limit(message, error))
    if status in RETRYABLE_STATUSES or status >= 500:
        busy = "is rate limiting requests" if status == 429 else "is unavailable"
        return LLMUnavailable(f"The model service {busy} (HTTP {status}). Please try again in a moment.",
                              status=status, retry_after=retry_after)
    return LLMBadRequest(f"The model endpoint refused the request (HTTP {status}): {message}", status=status)


def stream_error(payload, secret: str | None = None) -> LLMError:
    """The exception for an error object that arrived inside an already started stream."""
    message, code, error = error_detail(payload, secret)
    message = message or "unknown error"
    if is_context_error(message, code):
        return ContextLengthExceeded(f"The conversation is too long for the model: {message}",
                                     limit=context_limit(message, error))
    return LLMStreamError(f"The model endpoint reported an error mid-reply: {message}")
