"""Rate limits: HTTP per browser and per IP, messages per user, replies generating at once."""
import pytest
from test_socket_events import wait_for

from app import socketio
from config import Config, ConfigError


def limited_app(make_app, **settings):
    return make_app(RATELIMIT_ENABLED=True, **settings)


def test_http_per_browser_limit_answers_429_json_with_retry_time(make_app):
    client = limited_app(make_app, RATELIMIT_PER_USER="3 per minute").test_client()
    assert [client.get("/list_conversations").status_code for _ in range(3)] == [200, 200, 200]
    refused = client.get("/list_conversations")
    body = refused.get_json()
    assert refused.status_code == 429 and body["message"].startswith("Too many requests: at most 3 per 1 minute")
    assert 1 <= body["retry_after"] <= 61 and int(refused.headers["Retry-After"]) >= 1
    assert client.get("/health").status_code == 200 and client.get("/metrics").status_code == 200  # exempt


def test_http_per_ip_limit_counts_every_browser_of_that_address(make_app):
    app = limited_app(make_app, RATELIMIT_PER_USER="100 per minute", RATELIMIT_PER_IP="4 per minute")
    first, second = app.test_client(), app.test_client()
    codes = [first.get("/list_conversations").status_code, second.get("/list_conversations").status_code,
             first.get("/list_conversations").status_code, second.get("/list_conversations").status_code,
             second.get("/list_conversations").status_code]
    assert codes == [200, 200, 200, 200, 429]


def test_trusted_proxy_gives_each_client_address_its_own_budget(make_app):
    app = limited_app(make_app, RATELIMIT_PER_USER="100 per minute", RATELIMIT_PER_IP="2 per minute",
                      TRUSTED_PROXIES=1)
    client = app.test_client()

    def get(ip):
        return client.get("/list_conversations", headers={"X-Forwarded-For": ip}).status_code
    assert [get("10.0.0.1"), get("10.0.0.1"), get("10.0.0.1")] == [200, 200, 429]
    assert get("10.0.0.2") == 200


def test_limits_are_shared_through_redis(make_app, redis_url, tmp_path):
    from app import create_app
    from config import TestConfig
    settings = {"RATELIMIT_ENABLED": True, "RATELIMIT_PER_IP": "3 per minute", "RATELIMIT_PER_USER": "100 per minute",
                    "REDIS_URL": redis_url}
    one = create_app(TestConfig(tmp_path / "one", **settings)).test_client()
    two = create_app(TestConfig(tmp_path / "two", **settings)).test_client()
    codes = [one.get("/health/live").status_code]  # exempt, not counted
    codes += [one.get("/get_config").status_code, two.get("/get_config").status_code,
              one.get("/get_config").status_code, two.get("/get_config").status_code]
    assert codes == [200, 200, 200, 200, 429]


def test_disabled_limits_let_everything_through(make_app):
    client = make_app(RATELIMIT_ENABLED=False, RATELIMIT_PER_USER="1 per minute").test_client()
    assert {client.get("/get_config").status_code for _ in range(5)} == {200}


@pytest.fixture
def limited_sock(make_app, fake_llm):
    def connect(**settings):
        app = limited_app(make_app, OPENAI_BASE_URL=fake_llm.url, **settings)
        http = app.test_client()
        http.get("/")
        return socketio.test_client(app, flask_test_client=http), http
    return connect


def test_message_rate_limit_refuses_without_storing(limited_sock):
    sock, http = limited_sock(RATELIMIT_MESSAGES="2 per minute")
    first = sock.emit("send_message", {"message": "one"}, callback=True)
    wait_for(sock, "response_done")
    cid = first["conversation_id"]
    sock.emit("send_message", {"message": "two", "conversation_id": cid}, callback=True)
    wait_for(sock, "response_done")
    refused = sock.emit("send_message", {"message": "three", "conversation_id": cid}, callback=True)
    assert refused["ok"] is False and refused["message"].startswith("Too many messages: at most 2 per 1 minute")
    assert 1 <= refused["retry_after"] <= 60
    contents = [m["content"] for m in http.get(f"/load_conversation/{cid}").get_json()["conversation"]]
    assert "three" not in contents
    refused_regenerate = sock.emit("regenerate", {"conversation_id": cid, "message_id": first["reply_id"]},
                                   callback=True)
    assert refused_regenerate["ok"] is False and "Too many messages" in refused_regenerate["message"]
    sock.disconnect()


def test_concurrent_generation_cap_per_user(limited_sock, fake_llm):
    fake_llm.tokens, fake_llm.token_delay = 100, 0.02
    sock, _ = limited_sock(MAX_CONCURRENT_GENERATIONS=1)
    first = sock.emit("send_message", {"message": "long one"}, callback=True)
    assert first["ok"]
    busy = sock.emit("send_message", {"message": "another conversation"}, callback=True)
    assert busy["ok"] is False and "already have 1 replies being generated" in busy["message"]
    wait_for(sock, "response_done", seconds=10)
    sock.get_received()
    assert sock.emit("send_message", {"message": "now it fits"}, callback=True)["ok"] is True
    wait_for(sock, "response_done", seconds=10)
    sock.disconnect()


@pytest.mark.parametrize("name", ["RATELIMIT_PER_USER", "RATELIMIT_PER_IP", "RATELIMIT_MESSAGES"])
def test_a_bad_rate_names_the_setting(monkeypatch, name):
    monkeypatch.setenv(name, "lots")
    with pytest.raises(ConfigError, match=name):
        Config().validate()


def test_message_limit_per_address_is_shared_by_fresh_cookies(limited_sock):
    """A fresh cookie is a fresh user id, not a fresh allowance: anonymous messages count per address."""
    settings = {"RATELIMIT_MESSAGES": "100 per minute", "RATELIMIT_MESSAGES_PER_IP": "3 per minute"}
    first, _ = limited_sock(**settings)
    sent = [first.emit("send_message", {"message": f"one {n}"}, callback=True)["ok"] for n in range(2)]
    wait_for(first, "response_done")
    app = first.app
    second_http = app.test_client()  # a second fresh cookie from the same address
    second_http.get("/")
    second = socketio.test_client(app, flask_test_client=second_http)
    sent.append(second.emit("send_message", {"message": "three"}, callback=True)["ok"])
    refused = second.emit("send_message", {"message": "four"}, callback=True)
    assert sent == [True, True, True] and refused["ok"] is False
    assert refused["message"].startswith("Too many messages from this address: at most 3 per 1 minute")
    second_http.post("/register", json={"username": "dora", "password": "correct horse battery"})
    signed_in = socketio.test_client(app, flask_test_client=second_http)  # accounts count per user only
    assert signed_in.emit("send_message", {"message": "five"}, callback=True)["ok"] is True
    for sock in (first, second, signed_in):
        sock.disconnect()


def test_a_bad_message_rate_per_address_names_the_setting(monkeypatch):
    monkeypatch.setenv("RATELIMIT_MESSAGES_PER_IP", "lots")
    with pytest.raises(ConfigError, match="RATELIMIT_MESSAGES_PER_IP"):
        Config().validate()
