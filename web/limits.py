"""Rate limits: HTTP requests per browser and per client IP (Flask-Limiter), and for
the socket: messages per user plus a cap on replies one user has generating at once (LibreChat's
CONCURRENT_MESSAGE_MAX). Anonymous users' messages also count per client address (a higher rate):
a fresh cookie is a fresh user id, but not a fresh address. Counted in Redis when REDIS_URL is set,
so every instance shares them; in memory otherwise. A counter store that fails lets requests through (logged): a Redis hiccup
must not lock everyone out. RATELIMIT_ENABLED=false turns all of it off (benchmarks).
"""
from __future__ import annotations

import logging
import math
import time

from flask import Flask, current_app, jsonify, request, session
from flask_limiter import ApplicationLimit, Limiter
from flask_limiter.errors import RateLimitExceeded
from limits import parse_many, storage, strategies
from werkzeug.middleware.proxy_fix import ProxyFix

import metrics

from . import generations
from .context import NO_IDENTITY_ENDPOINTS

log = logging.getLogger("chat.limits")


def init_app(app: Flask, config) -> None:
    if config.TRUSTED_PROXIES:  # the client's address is in X-Forwarded-For, set by our own proxies only
        hops = config.TRUSTED_PROXIES
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops)
    storage_uri = config.REDIS_URL or "memory://"
    limiter = Limiter(
        key_func=_client_ip, storage_uri=storage_uri, enabled=config.RATELIMIT_ENABLED, headers_enabled=True,
        strategy="moving-window", key_prefix="chat-limit", swallow_errors=True,
        application_limits=[
            ApplicationLimit(config.RATELIMIT_PER_USER, key_function=_browser, scope="user", exempt_when=_exempt),
            ApplicationLimit(config.RATELIMIT_PER_IP, key_function=_client_ip, scope="ip", exempt_when=_exempt)])
    limiter.init_app(app)
    app.extensions["chat_limiter"] = limiter
    app.extensions["chat_message_limits"] = MessageLimits(config, storage_uri)
    app.register_error_handler(RateLimitExceeded, _too_many_requests)


class MessageLimits:
    """The socket side: checked before a message is stored or a reply regenerated."""

    def __init__(self, config, storage_uri: str) -> None:
        self.enabled = config.RATELIMIT_ENABLED
        self.rates = parse_many(config.RATELIMIT_MESSAGES)
        self.address_rates = parse_many(config.RATELIMIT_MESSAGES_PER_IP)
        self.max_generating = config.MAX_CONCURRENT_GENERATIONS
        self.window = strategies.MovingWindowRateLimiter(storage.storage_from_string(storage_uri))

    def refusal(self, user_id: str, address: str | None = None) -> dict | None:
        """None to go ahead, else the acknowledgement to send: a clear message and retry_after.
        `address` (the client's, after ProxyFix) is counted too while the session has no account."""
        if not self.enabled:
            return None
        if generations.count(user_id) >= self.max_generating:
            metrics.RATE_LIMITED.labels(scope="concurrent").inc()
            return {"ok": False, "retry_after": 1,
                    "message": f"You already have {self.max_generating} replies being generated. "
                               "Wait for one to finish, or stop it, then send again."}
        counted = [(rate, "messages", user_id, "") for rate in self.rates]
        if address and "username" not in session:
            counted += [(rate, "messages-ip", address, " from this address") for rate in self.address_rates]
        for rate, scope, key, where in counted:
            wait = self._over(rate, scope, key)
            if wait:
                metrics.RATE_LIMITED.labels(scope="messages").inc()
                return {"ok": False, "retry_after": wait,
                        "message": f"Too many messages{where}: at most {rate}. Try again in {wait} s."}
        return None

    def _over(self, rate, scope: str, key: str) -> int:
        """0 when this message fits the rate (and is counted), else the seconds until it would."""
        try:
            if self.window.hit(rate, scope, key):
                return 0
            reset = self.window.get_window_stats(rate, scope, key).reset_time
        except Exception as error:  # noqa: BLE001 - the counter store is down: let the message through
            log.warning("Message rate limit not checked: %s", type(error).__name__)
            return 0
        return max(1, math.ceil(reset - time.time()))


def _browser() -> str:
    return session.get("user_id") or _client_ip()


def _client_ip() -> str:
    return request.remote_addr or "unknown"


def _exempt() -> bool:
    """Probes, metrics and static files: the same endpoints that need no identity."""
    return request.endpoint in NO_IDENTITY_ENDPOINTS


def _too_many_requests(error: RateLimitExceeded):
    """429 with the API's JSON error shape and when to retry (Flask-Limiter also sets Retry-After)."""
    metrics.RATE_LIMITED.labels(scope="http").inc()
    current = current_app.extensions["chat_limiter"].current_limit
    wait = max(1, math.ceil(current.reset_at - time.time())) if current else 1
    response = jsonify(message=f"Too many requests: at most {error.description}. Try again in {wait} s.",
                       retry_after=wait)
    response.status_code = 429
    return response
