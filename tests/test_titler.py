"""Titles from the first exchange: one short call to the summary model, never over a rename."""
import pytest
from fake_llm import Fault
from test_socket_events import payloads, wait_for

from agents import titler
from agents.providers import Providers
from app import socketio
from config import TestConfig
from storage.sqlite_store import SqliteStore


def responder(body):
    if "title of at most six words" in body["messages"][0]["content"]:
        return '"Title: Walrus Facts."'
    return "Walruses are large."


@pytest.fixture
def titled_sock(make_app, fake_llm):
    fake_llm.responder = responder
    app = make_app(OPENAI_BASE_URL=fake_llm.url, AUTO_TITLE=True)
    http = app.test_client()
    http.get("/")
    client = socketio.test_client(app, flask_test_client=http)
    yield client, http
    client.disconnect()


def title_requests(fake_llm):
    return [r for r in fake_llm.requests if r.body and "six words" in r.body["messages"][0]["content"]]


def test_the_first_exchange_gets_a_model_title_sent_to_the_page(titled_sock, fake_llm):
    sock, http = titled_sock
    ack = sock.emit("send_message", {"message": "tell me about walruses please"}, callback=True)
    events = wait_for(sock, "conversation_title")
    assert payloads(events, "conversation_title") == [{"conversation_id": ack["conversation_id"],
                                                       "title": "Walrus Facts"}]
    assert http.get(f"/load_conversation/{ack['conversation_id']}").get_json()["title"] == "Walrus Facts"
    request = title_requests(fake_llm)[0].body
    assert request["max_tokens"] == titler.TITLE_TOKENS
    assert "Walruses are large." in request["messages"][1]["content"]
    sock.emit("send_message", {"message": "more", "conversation_id": ack["conversation_id"]}, callback=True)
    wait_for(sock, "response_done")
    assert len(title_requests(fake_llm)) == 1


def test_a_renamed_conversation_keeps_its_name(titled_sock, fake_llm):
    sock, http = titled_sock
    cid = http.post("/start_conversation", json={"title": "Mine"}).get_json()["conversation_id"]
    sock.emit("send_message", {"message": "hello", "conversation_id": cid}, callback=True)
    wait_for(sock, "response_done")
    assert title_requests(fake_llm) == []
    assert http.get(f"/load_conversation/{cid}").get_json()["title"] == "Mine"


@pytest.mark.parametrize("raw, title", [
    ("Walrus Facts", "Walrus Facts"), ('"Quoted title."\n\nextra', "Quoted title"), ("# **Bold**", "Bold"),
    ("Title: x", "x"), ("   ", ""), ("a" * 100, "a" * titler.TITLE_CHARS)])
def test_clean_makes_one_short_line(raw, title):
    assert titler.clean(raw) == title


def test_first_line_title_is_cut_with_an_ellipsis():
    assert titler.first_line_title("  a\n b  ") == "a b"
    assert titler.first_line_title("w" * 70) == "w" * 60 + "…"


@pytest.mark.parametrize("fault", [Fault.empty_stream(), Fault.empty_stream(done=True)], ids=["no-events", "done-only"])
def test_an_empty_title_answer_keeps_the_first_line_title(tmp_path, fake_llm, fault):
    store = SqliteStore(tmp_path / "t.sqlite3")
    store.migrate()
    first = "tell me about walruses please"
    cid = store.create_conversation("alice", titler.first_line_title(first))["conversation_id"]
    store.append_message("alice", cid, "user", first, tokens=5)
    store.append_message("alice", cid, "assistant", "Walruses are large.", tokens=5, finish_reason="stop")
    fake_llm.fail_next(fault)
    providers = Providers(TestConfig(tmp_path, OPENAI_BASE_URL=fake_llm.url), client_options={"max_retries": 0})
    assert titler.retitle(store, providers, "alice", cid) is None and len(title_requests(fake_llm)) == 1
    assert store.get_conversation("alice", cid)["title"] == first
