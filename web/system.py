"""`/get_config`, `/health` (+ `/health/live`, `/health/ready` for probes) and `/metrics`."""
from __future__ import annotations

import logging
import math
import threading
import time

import requests
from flask import Blueprint, Response, current_app, jsonify, request

import metrics
from agents.llm_http import endpoint_for, request_headers

from .context import get_store

bp = Blueprint("system", __name__)
log = logging.getLogger("chat.health")


class EndpointProbe:
    """/health's check of the model endpoint: at most one per ENDPOINT_PROBE_CACHE_S per process,
    one at a time. /health is anonymous and each probe is an upstream call made with the API key,
    so callers share the last result instead of causing calls at will."""

    def __init__(self, max_age_s: float) -> None:
        self.max_age_s = max_age_s
        self._lock = threading.Lock()
        self._result: dict = {}
        self._at = -math.inf

    def status(self, config) -> dict:
        """The cached result while fresh; else one caller probes and the others wait for it."""
        if not self._fresh():
            with self._lock:
                if not self._fresh():
                    self._result, self._at = _endpoint_status(config), time.monotonic()
        return dict(self._result)

    def _fresh(self) -> bool:
        return time.monotonic() - self._at < self.max_age_s


def _probe(config) -> EndpointProbe:
    """This app's probe cache, made on first use (an app may register this blueprint before its config)."""
    extensions = current_app.extensions
    if "chat_endpoint_probe" not in extensions:
        extensions.setdefault("chat_endpoint_probe", EndpointProbe(config.ENDPOINT_PROBE_CACHE_S))
    return extensions["chat_endpoint_probe"]


@bp.get("/get_config")
def get_config():
    """Limits and switches the page needs; never a secret or a URL."""
    config = current_app.config["CHAT"]
    return jsonify(max_tokens=config.MAX_TOKENS, reply_tokens=config.REPLY_TOKENS,
                   chunk_size_tokens=config.CHUNK_SIZE_TOKENS, max_file_size_mb=config.MAX_FILE_SIZE_MB,
                   allowed_extensions=sorted(config.ALLOWED_EXTENSIONS), model=config.MODEL,
                   endpoint_configured=bool(config.OPENAI_BASE_URL))


@bp.get("/health")
def health():
    """200 when the store (and Redis, if configured) answer; 503 otherwise."""
    config = current_app.config["CHAT"]
    store_ok = _store_ok()
    redis = _redis_status()
    endpoint = _probe(config).status(config)
    healthy = store_ok and redis.get("ok", True)
    body = {"status": "ok" if healthy else "unavailable",
            "store": {"backend": "mongodb" if config.MONGODB_URI else "sqlite", "ok": store_ok},
            "redis": redis, "endpoint": {**endpoint, **current_app.extensions["chat_providers"].status()}}
    return jsonify(body), 200 if healthy else 503


@bp.get("/health/live")
def live():
    """Liveness: the process answers. Dependencies are readiness's business: a database outage
    must take the pod out of the load balancer, not restart it."""
    return jsonify(status="alive")


@bp.get("/health/ready")
def ready():
    """Readiness: the store and (when configured) Redis answer. The model endpoint is left out:
    it is optional (history, search and maths work without it), and probing a paid API every few
    seconds per pod is traffic nobody wants. /health reports it."""
    store_ok, redis = _store_ok(), _redis_status()
    ok = store_ok and redis.get("ok", True)
    return jsonify(status="ready" if ok else "unavailable", store=store_ok, redis=redis), 200 if ok else 503


@bp.get("/metrics")
def prometheus_metrics():
    body, content_type = metrics.exposition()
    return Response(body, content_type=content_type)


@bp.after_app_request
def count_request(response):
    metrics.HTTP_REQUESTS.labels(method=request.method, status=str(response.status_code)).inc()
    return response


def _store_ok() -> bool:
    try:
        return get_store().ping()
    except Exception as error:  # noqa: BLE001 - a down database must answer 503, not 500
        log.warning("Store check failed: %s", type(error).__name__)
        return False


def _redis_status() -> dict:
    client = current_app.config.get("SESSION_REDIS")
    if client is None:
        return {"configured": False}
    try:
        return {"configured": True, "ok": bool(client.ping())}
    except Exception as error:  # noqa: BLE001 - a down Redis is reported by /health, not raised
        log.warning("Redis check failed: %s", type(error).__name__)
        return {"configured": True, "ok": False}


def _endpoint_status(config) -> dict:
    """The model endpoint is optional: its absence or failure never makes the app unhealthy."""
    if not config.OPENAI_BASE_URL:
        return {"configured": False, "reachable": False}
    headers = request_headers(endpoint_for(config.OPENAI_BASE_URL), config.OPENAI_API_KEY)  # Azure: api-key
    try:
        response = requests.get(config.OPENAI_BASE_URL.rstrip("/") + "/models", headers=headers,
                                timeout=config.ENDPOINT_TIMEOUT_S)
        return {"configured": True, "reachable": response.status_code < 500, "status_code": response.status_code}
    except requests.RequestException as error:
        return {"configured": True, "reachable": False, "error": type(error).__name__}
