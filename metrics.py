"""Prometheus metrics: one set per process, served at /metrics.

Counters only ever go up; a test reads the difference around what it does. Label values are a
small fixed set (agents, finish reasons, error kinds), never ids or user text.
"""
from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, Counter, Gauge, Histogram, generate_latest

CONNECTIONS = Gauge("chat_socket_connections", "Socket.IO clients connected to this process")
GENERATIONS = Gauge("chat_generations_in_flight", "Replies this process is generating now")
MESSAGES = Counter("chat_messages_total", "Messages stored", ["role", "agent", "finish_reason"])
TOKENS = Counter("chat_tokens_total", "Model tokens", ["direction"])  # prompt (in) / completion (out)
SUMMARISER_CALLS = Counter("chat_summariser_calls_total", "Calls to the summariser model")
UPSTREAM_FIRST_EVENT = Histogram(
    "chat_upstream_first_event_seconds", "Model endpoint: request to first streamed event", ["endpoint"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60))
UPSTREAM_DURATION = Histogram(
    "chat_upstream_duration_seconds", "Model endpoint: request to end of stream", ["endpoint"],
    buckets=(0.1, 0.5, 1, 2, 5, 10, 30, 60, 120))
ERRORS = Counter("chat_errors_total", "Errors by kind", ["kind"])
HTTP_REQUESTS = Counter("chat_http_requests_total", "HTTP requests", ["method", "status"])
RATE_LIMITED = Counter("chat_rate_limited_total", "Requests and events refused by a rate limit", ["scope"])
# Socket handshakes turned away and floods cut off (web/socket_guard.py): no_cookie, not_logged_in,
# address_cap, instance_cap, cooling_down, flooding. Dropped events: RATE_LIMITED{scope="socket_events"}.
SOCKETS_REFUSED = Counter("chat_socket_refused_total", "Socket connections refused or closed by the guard", ["reason"])

ERROR_KINDS = ("llm_unavailable", "llm_bad_request", "llm_stream", "llm_empty", "context_length", "internal")


def error(kind: str) -> None:
    ERRORS.labels(kind=kind if kind in ERROR_KINDS else "internal").inc()


def llm_error_kind(error: Exception) -> str:
    """The error kind of a model-endpoint failure, by its class name (no import of the client)."""
    return {"LLMUnavailable": "llm_unavailable", "LLMBadRequest": "llm_bad_request", "LLMStreamError": "llm_stream",
            "ContextLengthExceeded": "context_length",
            "EmptyStream": "llm_empty"}.get(type(error).__name__, "internal")


def reply_stored(agent: str, finish_reason: str, prompt_tokens: int, completion_tokens: int) -> None:
    MESSAGES.labels(role="assistant", agent=agent, finish_reason=finish_reason).inc()
    TOKENS.labels(direction="prompt").inc(max(prompt_tokens or 0, 0))
    TOKENS.labels(direction="completion").inc(max(completion_tokens or 0, 0))


def user_message_stored() -> None:
    MESSAGES.labels(role="user", agent="", finish_reason="").inc()


def exposition() -> tuple[bytes, str]:
    return generate_latest(), CONTENT_TYPE_LATEST
