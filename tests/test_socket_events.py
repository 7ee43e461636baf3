"""Socket events through Flask-SocketIO's test client (threading mode), with the fake model server."""
import time

import pytest

from app import socketio


@pytest.fixture
def chat_app(make_app, fake_llm):
    return make_app(OPENAI_BASE_URL=fake_llm.url, MAX_TOKENS=4096, REPLY_TOKENS=256)


@pytest.fixture
def browser(chat_app):
    http = chat_app.test_client()
    http.get("/")  # the page load gives the browser its identity
    return http


@pytest.fixture
def sock(chat_app, browser):
    client = socketio.test_client(chat_app, flask_test_client=browser)
    yield client
    if client.is_connected():
        client.disconnect()


def wait_for(sock, name, seconds=5.0):
    """Collect events until `name` arrives; returns all events received."""
    events, deadline = [], time.monotonic() + seconds
    while time.monotonic() < deadline:
        events += sock.get_received()
        if any(e["name"] == name for e in events):
            return events
        time.sleep(0.02)
    raise AssertionError(f"no {name} event; got {[e['name'] for e in events]}")


def payloads(events, name):
    return [e["args"][0] for e in events if e["name"] == name]


def test_socket_connect_without_page_load_is_refused(chat_app):
    assert not socketio.test_client(chat_app).is_connected()


def test_socket_send_message_streams_reply_and_stores_it(sock, browser, fake_llm):
    ack = sock.emit("send_message", {"message": "Hello there"}, callback=True)
    assert ack["ok"] is True
    events = wait_for(sock, "response_done")
    chunks = payloads(events, "response_chunk")
    assert "".join(c["chunk"] for c in chunks) == fake_llm.reply
    assert {c["message_id"] for c in chunks} == {ack["reply_id"]}
    done = payloads(events, "response_done")[0]
    assert {k: done[k] for k in ("message_id", "finish_reason", "conversation_id", "agent")} == {
        "message_id": ack["reply_id"], "finish_reason": "stop", "conversation_id": ack["conversation_id"],
        "agent": "chat"}
    assert done["meta"]["routing"]["rule"] == "default" and done["meta"]["endpoint"] == "primary"
    usage = payloads(events, "token_usage")[0]
    assert set(usage) >= {"total_tokens_used", "prompt_tokens", "completion_tokens", "context_budget",
                          "summary_tokens"}
    stored = browser.get(f"/load_conversation/{ack['conversation_id']}").get_json()
    assert [(m["role"], m["content"]) for m in stored["conversation"]] == [
        ("user", "Hello there"), ("assistant", fake_llm.reply)]
    assert stored["title"] == "Hello there"


def test_socket_resent_client_message_id_is_not_duplicated(sock, browser):
    first = sock.emit("send_message", {"message": "Once", "client_message_id": "c-1"}, callback=True)
    wait_for(sock, "response_done")
    again = sock.emit("send_message", {"message": "Once", "client_message_id": "c-1",
                                       "conversation_id": first["conversation_id"]}, callback=True)
    assert again["duplicate"] is True and again["message_id"] == first["message_id"]
    stored = browser.get(f"/load_conversation/{first['conversation_id']}").get_json()["conversation"]
    assert len(stored) == 2


@pytest.mark.parametrize("payload", [None, "text", [], {}, {"message": ""}, {"message": "   "}, {"message": 5},
                                     {"message": "x" * 200_001}, {"message": "a\x00b"},
                                     {"message": "hi", "client_message_id": 7},
                                     {"message": "hi", "client_message_id": "x" * 101},
                                     {"message": "hi", "conversation_id": "nope"},
                                     {"message": "hi", "conversation_id": {"$ne": None}}])
def test_socket_send_message_rejects_bad_payloads(sock, browser, payload):
    ack = sock.emit("send_message", payload, callback=True)
    assert ack["ok"] is False and ack["message"]
    assert payloads(sock.get_received(), "error")[0]["message"] == ack["message"]
    assert browser.get("/list_conversations").get_json()["conversations"] == []
    assert sock.is_connected()


def test_socket_other_users_conversation_is_not_found(chat_app, sock):
    ack = sock.emit("send_message", {"message": "mine"}, callback=True)
    wait_for(sock, "response_done")
    stranger_http = chat_app.test_client()
    stranger_http.get("/")
    stranger = socketio.test_client(chat_app, flask_test_client=stranger_http)
    for event, payload in [("send_message", {"message": "x", "conversation_id": ack["conversation_id"]}),
                           ("join_conversation", {"conversation_id": ack["conversation_id"]}),
                           ("stop_generation", {"conversation_id": ack["conversation_id"]})]:
        assert stranger.emit(event, payload, callback=True) == {"ok": False, "message": "Conversation not found."}
    assert payloads(stranger.get_received(), "response_chunk") == []
    stranger.disconnect()


def test_socket_stop_generation_keeps_partial_reply(sock, browser, fake_llm):
    fake_llm.tokens, fake_llm.token_delay = 200, 0.01
    ack = sock.emit("send_message", {"message": "Tell me a long story"}, callback=True)
    wait_for(sock, "response_chunk")
    stop = sock.emit("stop_generation", {"conversation_id": ack["conversation_id"]}, callback=True)
    assert stop == {"ok": True, "stopping": True, "message_id": ack["reply_id"]}
    done = payloads(wait_for(sock, "response_done"), "response_done")[0]
    assert done["finish_reason"] == "stopped"
    reply = browser.get(f"/load_conversation/{ack['conversation_id']}").get_json()["conversation"][-1]
    assert reply["finish_reason"] == "stopped" and 0 < len(reply["content"].split()) < 200


def test_socket_second_tab_joins_and_gets_partial_reply(chat_app, browser, sock, fake_llm):
    fake_llm.tokens, fake_llm.token_delay = 100, 0.01
    ack = sock.emit("send_message", {"message": "Stream please"}, callback=True)
    wait_for(sock, "response_chunk")
    time.sleep(0.1)
    tab = socketio.test_client(chat_app, flask_test_client=browser)
    joined = tab.emit("join_conversation", {"conversation_id": ack["conversation_id"]}, callback=True)
    assert joined["generating"]["message_id"] == ack["reply_id"] and joined["generating"]["text"]
    events = wait_for(tab, "response_done")
    rest = "".join(c["chunk"] for c in payloads(events, "response_chunk"))
    full = browser.get(f"/load_conversation/{ack['conversation_id']}").get_json()["conversation"][-1]["content"]
    assert full.startswith(joined["generating"]["text"]) and full.endswith(rest)
    tab.disconnect()


def test_socket_busy_conversation_refuses_a_second_message(sock, fake_llm):
    fake_llm.tokens, fake_llm.token_delay = 100, 0.01
    ack = sock.emit("send_message", {"message": "first"}, callback=True)
    busy = sock.emit("send_message", {"message": "second", "conversation_id": ack["conversation_id"]}, callback=True)
    assert busy["ok"] is False and "still being generated" in busy["message"]
    sock.emit("stop_generation", {"conversation_id": ack["conversation_id"]}, callback=True)
    wait_for(sock, "response_done")


def test_socket_heartbeat_acks(sock):
    assert sock.emit("heartbeat", callback=True) == {"ok": True}
    assert sock.emit("heartbeat", {"any": "payload"}, callback=True) == {"ok": True}
