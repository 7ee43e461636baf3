"""/health/live, /health/ready and /metrics (Prometheus text format, prometheus_client)."""
from fake_llm import Fault
from prometheus_client.parser import text_string_to_metric_families
from test_socket_events import browser, chat_app, sock, wait_for  # noqa: F401  (fixtures)

from app import socketio


def samples(client) -> dict:
    """{(name, frozenset(labels)): value} from /metrics."""
    response = client.get("/metrics")
    assert response.status_code == 200 and response.content_type.startswith("text/plain")
    found = {}
    for family in text_string_to_metric_families(response.get_data(as_text=True)):
        for sample in family.samples:
            found[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return found


def value(found: dict, name: str, **labels) -> float:
    return found.get((name, frozenset(labels.items())), 0.0)


def test_liveness_answers_even_when_redis_is_down(make_app):
    client = make_app(REDIS_URL="redis://127.0.0.1:1/0").test_client()
    assert client.get("/health/live").get_json() == {"status": "alive"}
    ready = client.get("/health/ready")
    assert ready.status_code == 503 and ready.get_json()["redis"]["ok"] is False


def test_readiness_is_ok_without_a_model_endpoint(client):
    ready = client.get("/health/ready")
    assert ready.status_code == 200 and ready.get_json() == {"status": "ready", "store": True,
                                                             "redis": {"configured": False}}


def test_readiness_does_not_call_the_model_endpoint(make_app, fake_llm):
    client = make_app(OPENAI_BASE_URL=fake_llm.url).test_client()
    assert client.get("/health/ready").status_code == 200
    assert fake_llm.requests == []


def test_a_chat_turn_moves_the_counters(sock, browser, fake_llm):
    before = samples(browser)
    assert value(before, "chat_socket_connections") >= 1
    ack = sock.emit("send_message", {"message": "Hello"}, callback=True)
    wait_for(sock, "response_done")
    after = samples(browser)
    assert value(after, "chat_messages_total", role="user", agent="", finish_reason="") - value(
        before, "chat_messages_total", role="user", agent="", finish_reason="") == 1
    assert value(after, "chat_messages_total", role="assistant", agent="chat", finish_reason="stop") - value(
        before, "chat_messages_total", role="assistant", agent="chat", finish_reason="stop") == 1
    reply = browser.get(f"/load_conversation/{ack['conversation_id']}").get_json()["conversation"][-1]
    completion = value(after, "chat_tokens_total", direction="completion") - value(
        before, "chat_tokens_total", direction="completion")
    assert completion == reply["meta"]["usage"]["completion_tokens"] > 0
    assert value(after, "chat_tokens_total", direction="prompt") > value(before, "chat_tokens_total", direction="prompt")
    assert value(after, "chat_upstream_first_event_seconds_count", endpoint="primary") == value(
        before, "chat_upstream_first_event_seconds_count", endpoint="primary") + 1
    assert value(after, "chat_generations_in_flight") == 0
    assert value(after, "chat_http_requests_total", method="GET", status="200") > 0


def test_errors_are_counted_by_kind(sock, browser, fake_llm):
    before = samples(browser)
    fake_llm.fail_next(Fault.disconnect(after=2))
    sock.emit("send_message", {"message": "Hello"}, callback=True)
    wait_for(sock, "response_done")
    after = samples(browser)
    assert value(after, "chat_errors_total", kind="llm_stream") == value(before, "chat_errors_total",
                                                                          kind="llm_stream") + 1


def test_connections_gauge_follows_connect_and_disconnect(chat_app, browser):
    before = value(samples(browser), "chat_socket_connections")
    client = socketio.test_client(chat_app, flask_test_client=browser)
    assert value(samples(browser), "chat_socket_connections") == before + 1
    client.disconnect()
    assert value(samples(browser), "chat_socket_connections") == before


def test_summariser_calls_are_counted(tmp_path, fake_llm):
    from flask import Flask

    from agents.emitter import RecordingEmitter
    from agents.providers import Providers
    from agents.summariser import summariser
    from config import TestConfig
    from web import system
    client = Providers(TestConfig(tmp_path, OPENAI_BASE_URL=fake_llm.url)).client("summary")
    reader = Flask(__name__)
    reader.register_blueprint(system.bp)
    before = value(samples(reader.test_client()), "chat_summariser_calls_total")
    assert summariser(client, RecordingEmitter())("User: hi\nAssistant: hello", 50)
    assert value(samples(reader.test_client()), "chat_summariser_calls_total") == before + 1
