"""Provider fallback and circuit breakers, against two fake endpoints."""
import time
from typing import ClassVar

import pybreaker
import pytest
import redis
from fake_llm import FakeLLM, Fault

from agents.llm_client import ContextLengthExceeded, LLMStreamError, LLMUnavailable
from agents.llm_errors import EmptyStream
from agents.providers import ALL_DOWN, Providers
from config import TestConfig

MESSAGES = [{"role": "user", "content": "Hi"}]
NO_RETRY = {"max_retries": 0, "read_timeout": 5}


@pytest.fixture
def backup():
    with FakeLLM(reply="From the backup.") as fake:
        yield fake


def _providers(tmp_path, primary_url, fallback_url=None, redis_client=None, **overrides):
    settings = {"OPENAI_BASE_URL": primary_url, "FALLBACK_BASE_URL": fallback_url, "BREAKER_FAIL_MAX": 2,
                "FALLBACK_MODEL": "backup-model" if fallback_url else None, "BREAKER_RESET_S": 60}
    config = TestConfig(tmp_path, **{**settings, **overrides})
    return Providers(config, redis_client, client_options=NO_RETRY)


def _ask(providers, agent="chat"):
    client = providers.client(agent)
    try:
        return client.complete(MESSAGES, max_tokens=20), client.used
    finally:
        client.close()


def test_primary_answers_when_healthy(tmp_path, fake_llm, backup):
    completion, used = _ask(_providers(tmp_path, fake_llm.url, backup.url))
    assert completion.text == fake_llm.reply and used.name == "primary"
    assert backup.requests == []


def test_failing_primary_falls_back_with_the_fallback_model(tmp_path, fake_llm, backup):
    fake_llm.fail_next(Fault.http(503))
    completion, used = _ask(_providers(tmp_path, fake_llm.url, backup.url))
    assert completion.text == "From the backup." and used.name == "fallback"
    assert backup.requests[-1].body["model"] == "backup-model"


def test_open_circuit_skips_the_dead_primary(tmp_path, fake_llm, backup):
    providers = _providers(tmp_path, fake_llm.url, backup.url)
    fake_llm.fail_next(*[Fault.http(500)] * 10)
    for _ in range(5):
        assert _ask(providers)[1].name == "fallback"
    assert len(fake_llm.requests) == 2  # BREAKER_FAIL_MAX, then the primary is not tried again
    status = providers.status()
    assert status["in_use"] == "fallback"
    assert {e["name"]: e["circuit"] for e in status["endpoints"]} == {"primary": "open", "fallback": "closed"}


def test_circuit_half_opens_after_the_reset_time(tmp_path, fake_llm, backup):
    providers = _providers(tmp_path, fake_llm.url, backup.url, BREAKER_RESET_S=0.2)
    fake_llm.fail_next(Fault.http(500), Fault.http(500))
    _ask(providers), _ask(providers)
    assert _ask(providers)[1].name == "fallback"  # open
    time.sleep(0.3)
    assert _ask(providers)[1].name == "primary"  # the trial call succeeded: closed again
    assert providers.status()["in_use"] == "primary"


def test_everything_down_is_a_clear_message(tmp_path, fake_llm, backup):
    fake_llm.fail_next(Fault.http(503))
    backup.fail_next(Fault.http(503))
    with pytest.raises(LLMUnavailable) as raised:
        _ask(_providers(tmp_path, fake_llm.url, backup.url))
    assert raised.value.message == ALL_DOWN


def test_single_endpoint_keeps_its_own_error(tmp_path, fake_llm):
    fake_llm.fail_next(Fault.http(503))
    with pytest.raises(LLMUnavailable) as raised:
        _ask(_providers(tmp_path, fake_llm.url))
    assert raised.value.status == 503


def test_no_failover_once_the_reply_has_started(tmp_path, fake_llm, backup):
    fake_llm.tokens = 20
    fake_llm.fail_next(Fault.disconnect(after=3))
    with pytest.raises(LLMStreamError):
        _ask(_providers(tmp_path, fake_llm.url, backup.url))
    assert backup.requests == []


@pytest.mark.parametrize("fault, error", [(Fault.context_length, ContextLengthExceeded),
                                          (Fault.empty_stream, EmptyStream)],  # llama.cpp's over-window answer
                         ids=["context-length", "empty-stream"])
def test_a_too_long_conversation_is_not_the_endpoints_fault(tmp_path, fake_llm, backup, fault, error):
    """The turn re-plans tighter; no fallback, and the breaker stays closed."""
    providers = _providers(tmp_path, fake_llm.url, backup.url)
    for _ in range(3):
        fake_llm.fail_next(fault())
        with pytest.raises(error):
            _ask(providers)
    assert backup.requests == [] and providers.status()["in_use"] == "primary"


def test_wrong_key_on_the_primary_falls_back(tmp_path, fake_llm, backup):
    fake_llm.fail_next(Fault.http(401, message="Incorrect API key"))
    assert _ask(_providers(tmp_path, fake_llm.url, backup.url))[1].name == "fallback"


def test_agent_overrides_model_and_endpoint(tmp_path, fake_llm, backup):
    providers = _providers(tmp_path, fake_llm.url, OPENAI_API_KEY="sk-primary",
                           AGENT_MODELS={"file": "cheap-model"}, AGENT_ENDPOINTS={"summary": backup.url},
                           AGENT_API_KEYS={"summary": "sk-summary"})
    _ask(providers, "file")
    assert fake_llm.requests[-1].body["model"] == "cheap-model"
    completion, used = _ask(providers, "summary")
    assert completion.text == "From the backup." and used.name == "summary"
    assert backup.requests[-1].headers["authorization"] == "Bearer sk-summary"  # never the primary's key
    assert providers.endpoints("chat")[0].model == providers.config.MODEL


def test_no_endpoint_means_no_client(tmp_path):
    assert _providers(tmp_path, None).client("chat") is None


def test_breaker_state_is_shared_through_redis(tmp_path, fake_llm, backup, redis_url):
    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    worker_a = _providers(tmp_path, fake_llm.url, backup.url, redis_client=client)
    worker_b = _providers(tmp_path, fake_llm.url, backup.url, redis_client=client)
    fake_llm.fail_next(Fault.http(500), Fault.http(500))
    _ask(worker_a), _ask(worker_a)
    assert worker_b.status()["in_use"] == "fallback"  # the other worker skips the dead primary too
    assert _ask(worker_b)[1].name == "fallback" and len(fake_llm.requests) == 2
    assert worker_b.breaker(worker_b.endpoints("chat")[0]).current_state == pybreaker.STATE_OPEN
    client.flushdb()


class _CountingRedis(redis.Redis):
    commands: ClassVar[list[str]] = []

    def execute_command(self, *args, **options):
        type(self).commands.append(str(args[0]))
        return super().execute_command(*args, **options)


def test_breaker_healthy_requests_make_no_redis_round_trip(tmp_path, fake_llm, redis_url):
    """pybreaker's own Redis storage read the state inside the breaker's process-wide lock and
    reset the counter on every request: under load every reply's start queued behind that lock.
    Healthy requests now touch Redis at most once per STATE_TTL_S."""
    client = _CountingRedis.from_url(redis_url)
    client.flushdb()
    providers = _providers(tmp_path, fake_llm.url, redis_client=client)
    _ask(providers)
    _CountingRedis.commands.clear()
    for _ in range(20):
        _ask(providers)
    breaker_commands = [c for c in _CountingRedis.commands if c in ("GET", "SET", "INCR", "MGET")]
    assert len(breaker_commands) <= 2 * 2, _CountingRedis.commands  # a refresh (state + counter) per second
    client.flushdb()


def test_breaker_failures_still_count_at_once_and_open_is_seen_within_a_second(tmp_path, fake_llm, backup,
                                                                             redis_url):
    from agents.breakers import STATE_TTL_S
    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    worker_a = _providers(tmp_path, fake_llm.url, backup.url, redis_client=client)
    worker_b = _providers(tmp_path, fake_llm.url, backup.url, redis_client=client)
    assert _ask(worker_b)[1].name == "primary"  # b has read the (closed) state
    fake_llm.fail_next(Fault.http(500), Fault.http(500))
    _ask(worker_a), _ask(worker_a)  # two failures on a: the circuit opens
    assert worker_a.status()["in_use"] == "fallback"
    time.sleep(STATE_TTL_S + 0.1)
    assert _ask(worker_b)[1].name == "fallback" and len(fake_llm.requests) == 3
    client.flushdb()


def test_breaker_a_slow_redis_read_holds_up_no_other_request(redis_url):
    """While one request re-reads the shared state from a slow Redis, others go on with what was
    read last: the breaker has no lock, and only one re-read is in flight."""
    import threading

    from agents.breakers import CachedRedisStorage, SharedBreaker
    client = redis.Redis.from_url(redis_url)
    client.delete("chat:breaker:slow:state", "chat:breaker:slow:fail_counter")
    clock = [0.0]
    storage = CachedRedisStorage(pybreaker.STATE_CLOSED, client, namespace="chat:breaker:slow",
                                 clock=lambda: clock[0])
    breaker = SharedBreaker(fail_max=2, state_storage=storage)
    with breaker.calling():
        pass
    reading, release = threading.Event(), threading.Event()
    read_state = pybreaker.CircuitRedisStorage.state.fget

    def slow_state(self):
        reading.set()
        release.wait(5)
        return read_state(self)

    clock[0] = 10.0  # the cached state is stale
    original = pybreaker.CircuitRedisStorage.state
    pybreaker.CircuitRedisStorage.state = property(slow_state, original.fset)
    try:
        slow = threading.Thread(target=lambda: breaker.calling().__enter__())
        slow.start()
        assert reading.wait(5)
        started = time.monotonic()
        with breaker.calling():  # does not wait for the slow read
            pass
        assert time.monotonic() - started < 0.5
        release.set()
        slow.join(5)
    finally:
        pybreaker.CircuitRedisStorage.state = original
        client.delete("chat:breaker:slow:state", "chat:breaker:slow:fail_counter", "chat:breaker:slow:success_counter")
