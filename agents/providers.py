"""Which endpoint and model each agent uses, with a fallback endpoint and circuit breakers.

Every agent (chat, knowledge, file, summary, router) talks to the primary endpoint unless
AGENT_ENDPOINTS / AGENT_MODELS give it its own; FALLBACK_BASE_URL, when set, is tried next.
An endpoint that keeps failing is skipped for BREAKER_RESET_S (pybreaker; its state lives in
Redis when there is one, so every worker skips it, read at most once a second per process:
agents/breakers.py), instead of making every message wait through its timeouts and
retries first.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace

import pybreaker
import requests

import metrics
from agents.breakers import CachedRedisStorage, SharedBreaker
from agents.llm_client import (
    ContextLengthExceeded,
    EmptyStream,
    LLMBadRequest,
    LLMClient,
    LLMError,
    LLMUnavailable,
    collect,
    pooled_session,
)
from agents.sse import StreamEvent
from agents.vision import TextOnlyModels

log = logging.getLogger("chat.providers")
AGENTS = ("chat", "knowledge", "file", "summary", "router", "vision")
MODEL_LIST_TTL_S = 60
ENDPOINT_STATUSES = (401, 403, 404)  # the endpoint itself is wrong or gone: worth trying the next one
ALL_DOWN = ("The model endpoints are not answering right now, so I cannot reply. Your message is "
            "saved; please try again in a minute.")


@dataclass(frozen=True)
class Endpoint:
    name: str  # "primary", "fallback" or "<agent>" for an agent's own endpoint
    base_url: str
    api_key: str | None
    model: str


def _not_the_endpoints_fault(error: BaseException) -> bool:
    """Errors that say nothing about the endpoint's health (pybreaker's `exclude`); an empty
    stream is how llama.cpp says the prompt is too long, so it counts as that."""
    if isinstance(error, (ContextLengthExceeded, EmptyStream)):
        return True
    return isinstance(error, LLMBadRequest) and error.status not in ENDPOINT_STATUSES


class Providers:
    """Built once per app; hands each turn clients that fail over in order."""

    def __init__(self, config, redis_client=None, sleep: Callable[[float], object] | None = None,
                 client_options: dict | None = None) -> None:
        self.config = config
        self.client_options = {**({"sleep": sleep} if sleep else {}),
                               "read_interval": config.STREAM_FLUSH_MS / 1000, **(client_options or {})}
        self._redis = redis_client
        self._breakers: dict[str, pybreaker.CircuitBreaker] = {}
        self._sessions: dict[str, requests.Session] = {}
        self._models: tuple[float, list[str]] | None = None
        self.text_only = TextOnlyModels(redis_client)  # models a server refused an image for (vision.py)

    def endpoints(self, agent: str) -> list[Endpoint]:
        """The agent's endpoints in the order they are tried (empty: none configured)."""
        config = self.config
        own_url = config.AGENT_ENDPOINTS.get(agent)
        base_url = own_url or config.OPENAI_BASE_URL
        default_model = (config.SUMMARY_MODEL if agent == "summary" else None) or config.MODEL
        model = config.AGENT_MODELS.get(agent) or default_model
        found = []
        if base_url:
            key = config.AGENT_API_KEYS.get(agent) or (None if own_url else config.OPENAI_API_KEY)
            found.append(Endpoint(agent if own_url else "primary", base_url, key, model))
        if config.FALLBACK_BASE_URL:
            found.append(Endpoint("fallback", config.FALLBACK_BASE_URL, config.FALLBACK_API_KEY,
                                  config.FALLBACK_MODEL or model))
        return found

    def client(self, agent: str, model: str | None = None) -> FailoverClient | None:
        """`model` (the page's pick) replaces the first endpoint's model; a fallback keeps its own."""
        endpoints = self.endpoints(agent)
        if not endpoints:
            return None
        if model:
            endpoints[0] = replace(endpoints[0], model=model)
        return FailoverClient([(endpoint, self._client(endpoint), self.breaker(endpoint))
                               for endpoint in endpoints])

    def models(self) -> list[str]:
        """What the page may pick for chat: the primary endpoint's list (cached for a minute),
        else only the configured model. Empty when no endpoint is configured."""
        endpoints = self.endpoints("chat")
        if not endpoints:
            return []
        configured = endpoints[0].model
        cached = self._models
        if cached is None or time.monotonic() - cached[0] > MODEL_LIST_TTL_S:
            client = self._client(endpoints[0])
            try:
                listed = client.models()
            except LLMError as error:
                log.info("Model list unavailable: %s", error.message)
                listed = []
            finally:
                client.close()
            cached = self._models = (time.monotonic(), listed)
        return [configured] + [name for name in cached[1] if name != configured]

    def breaker(self, endpoint: Endpoint) -> pybreaker.CircuitBreaker:
        """One breaker per endpoint URL, shared by every agent that uses it."""
        if endpoint.base_url not in self._breakers:
            storage = None
            if self._redis is not None:
                storage = CachedRedisStorage(pybreaker.STATE_CLOSED, self._redis,
                                             namespace=f"chat:breaker:{endpoint.base_url}")
            self._breakers[endpoint.base_url] = SharedBreaker(
                fail_max=self.config.BREAKER_FAIL_MAX, reset_timeout=self.config.BREAKER_RESET_S,
                exclude=[_not_the_endpoints_fault], state_storage=storage, name=endpoint.name,
                throw_new_error_on_trip=False)
        return self._breakers[endpoint.base_url]

    def status(self) -> dict:
        """For /health: each endpoint of the chat agent, its breaker state, and which is in use."""
        endpoints = self.endpoints("chat")
        states = {}
        for endpoint in endpoints:
            try:
                states[endpoint.name] = self.breaker(endpoint).current_state
            except Exception as error:  # noqa: BLE001 - a Redis outage must not break /health
                log.warning("Breaker state unavailable: %s", type(error).__name__)
                states[endpoint.name] = "unknown"
        in_use = next((name for name, state in states.items() if state != pybreaker.STATE_OPEN), None)
        return {"endpoints": [{"name": e.name, "model": e.model, "circuit": states[e.name]} for e in endpoints],
                "in_use": in_use}

    def _client(self, endpoint: Endpoint) -> LLMClient:
        """A client per turn over one kept-alive session per endpoint URL: a connection (and against
        HTTPS its TLS handshake) is reused by the next turn instead of made anew each time."""
        session = self._sessions.get(endpoint.base_url)
        if session is None:
            session = self._sessions[endpoint.base_url] = pooled_session()
        return LLMClient(endpoint.base_url, endpoint.api_key, model=endpoint.model, session=session,
                         **self.client_options)


class FailoverClient:
    """LLMClient's interface over several endpoints: the first that starts a reply serves it.

    Failing over happens only before the first event of a reply; after that the reply belongs
    to the endpoint that started it (a partial answer from one model is not continued by another).
    """

    def __init__(self, members: list[tuple[Endpoint, LLMClient, pybreaker.CircuitBreaker]]) -> None:
        self._members = members
        self.model = members[0][0].model
        self.used: Endpoint | None = None

    def stream_chat(self, messages, max_tokens: int, temperature: float | None = None,
                    extra: dict | None = None) -> Iterator[StreamEvent]:
        messages = list(messages)
        last_error: LLMError | None = None
        for endpoint, client, breaker in self._members:
            stream = client.stream_chat(messages, max_tokens, temperature, extra)
            started = time.monotonic()
            try:
                with breaker.calling():
                    first = next(stream, None)
            except pybreaker.CircuitBreakerError:
                log.info("Skipping endpoint %s: its circuit is open", endpoint.name)
                continue
            except (LLMUnavailable, LLMBadRequest) as error:
                if _not_the_endpoints_fault(error):
                    raise
                log.warning("Endpoint %s failed (%s); trying the next one", endpoint.name, error.message)
                last_error = error
                continue
            self.used = endpoint
            metrics.UPSTREAM_FIRST_EVENT.labels(endpoint=endpoint.name).observe(time.monotonic() - started)
            try:
                if first is not None:
                    yield first
                yield from stream
            finally:
                metrics.UPSTREAM_DURATION.labels(endpoint=endpoint.name).observe(time.monotonic() - started)
            return
        if last_error is not None and len(self._members) == 1:
            raise last_error
        raise LLMUnavailable(ALL_DOWN)

    def complete(self, messages, max_tokens: int, temperature: float | None = None, extra: dict | None = None):
        """The whole reply at once, through the same failover."""
        return collect(self.stream_chat(messages, max_tokens, temperature, extra))

    def prompt_tokens(self, messages, endpoint: Endpoint | None = None) -> int | None:
        """The server's count of a prompt, asked of `endpoint` (the one that served the reply) or
        the first; no failover: a count from another model would calibrate the wrong one."""
        for member, client, _ in self._members:
            if endpoint is None or member == endpoint:
                return client.prompt_tokens(messages)
        return None

    def close(self) -> None:
        for _, client, _ in self._members:
            client.close()
