
"""What the person sees and steers of the model's context: each reply's stored breakdown adds up
to its prompt tokens, the meter's budget matches the next request, the summary can be read and
edited, pinned facts ride in every request through any number of compactions, and export/import
keep both. Socket.IO test client plus the fake model server (SSE)."""
import json
import time

import pytest
from test_socket_events import browser, sock  # noqa: F401  (the page's HTTP client and its socket, on chat_app)

import utils
from agents import pins

LONG_REPLY = " ".join(f"word{i}" for i in range(120))


@pytest.fixture
def chat_app(make_app, fake_llm):
    fake_llm.token_ratio = 1.0  # the fake reports the app's own exact count of what it was sent
    return make_app(OPENAI_BASE_URL=fake_llm.url, MAX_TOKENS=1024, REPLY_TOKENS=128, SUMMARY_TOKENS=120)


def say(sock, text: str, conversation_id: str | None = None) -> dict:
    """Send a message and wait for its reply to be stored; returns the acknowledgement."""
    payload = {"message": text, **({"conversation_id": conversation_id} if conversation_id else {})}
    ack = sock.emit("send_message", payload, callback=True)
    assert ack["ok"], ack
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if any(e["name"] == "response_done" for e in sock.get_received()):
            return ack
        time.sleep(0.02)
    raise AssertionError("no response_done")


def chat_requests(fake_llm) -> list[list[dict]]:
    """The messages of every reply request the fake received (not the summariser's)."""
    return [r.body["messages"] for r in fake_llm.requests
            if r.body and r.body.get("messages") and r.body["messages"][0]["content"].startswith("You are a helpful")]


def test_ux_breakdown_adds_up_exactly_to_the_stored_prompt_tokens_after_compaction(sock, browser, fake_llm):
    fake_llm.reply = LONG_REPLY
    ack = say(sock, "Start " + LONG_REPLY)
    cid = ack["conversation_id"]
    for turn in range(6):
        say(sock, f"Turn {turn} " + LONG_REPLY, cid)
    data = browser.get(f"/load_conversation/{cid}").get_json()
    assert data["summary"], "the conversation should have been compacted"
    replies = [m for m in data["conversation"] if m["role"] == "assistant"]
    compacted = [m for m in replies if m["meta"]["context"]["parts"]["summary"]]
    assert compacted, "some reply should have been made with the summary"
    for reply, sent in zip(replies, chat_requests(fake_llm), strict=False):
        context = reply["meta"]["context"]
        assert sum(context["parts"].values()) == context["prompt_tokens"] == reply["meta"]["usage"]["prompt_tokens"]
        assert context["prompt_tokens"] == utils.request_tokens(sent)  # to the token, recounted from the wire
        assert context["verbatim_count"] == len([m for m in sent if m["role"] != "system"]) - 1
        assert context["reported_prompt_tokens"] == context["prompt_tokens"]
        assert context["window"] == 1024 and context["reply_reserve"] == 128 and context["ratio"] == 1.0
    last = compacted[-1]["meta"]["context"]
    assert last["summary_through"] in {m["message_id"] for m in data["conversation"]}


def test_ux_pinned_fact_survives_five_compactions(sock, browser, fake_llm):
    fake_llm.reply = LONG_REPLY
    cid = say(sock, "Hello " + LONG_REPLY)["conversation_id"]
    fact = "My name is Ada and we use Postgres 16"
    assert browser.put(f"/conversations/{cid}/pins", json={"facts": [fact]}).status_code == 200
    checkpoints = set()
    for turn in range(40):
        say(sock, f"Turn {turn} " + LONG_REPLY, cid)
        summary = browser.get(f"/conversations/{cid}/summary").get_json()["summary"]
        if summary:
            checkpoints.add(summary["last_message_id"])
        if len(checkpoints) >= 5:
            break
    assert len(checkpoints) >= 5, f"only {len(checkpoints)} compactions"
    sent = chat_requests(fake_llm)[-1]
    assert sent[0]["content"].endswith(pins.PINS_HEADING + f"- {fact}")
    assert fact not in sent[1]["content"] or sent[1]["content"].startswith(utils.SUMMARY_PREFIX)
    reply = browser.get(f"/load_conversation/{cid}").get_json()["conversation"][-1]
    parts = reply["meta"]["context"]["parts"]
    assert parts["pinned"] > 0 and parts["summary"] > 0
    assert sum(parts.values()) == reply["meta"]["usage"]["prompt_tokens"]


def test_ux_budget_is_what_the_next_request_carries(sock, browser, fake_llm):
    fake_llm.reply = "A short answer."
    ack = say(sock, "What is the plan?")
    cid = ack["conversation_id"]
    browser.put(f"/conversations/{cid}/pins", json={"facts": ["We use Postgres 16"]})
    leaf = browser.get(f"/load_conversation/{cid}").get_json()["conversation"][-1]["message_id"]
    budget = browser.get(f"/conversations/{cid}/budget?leaf={leaf}").get_json()
    draft = "And the next step?"
    drafted = browser.post("/count_tokens", json={"text": draft}).get_json()["tokens"]
    say(sock, draft, cid)
    sent = chat_requests(fake_llm)[-1]
    carried = (budget["system_tokens"] + budget["pinned_tokens"] + budget["format_tokens"] + budget["summary_tokens"]
               + budget["verbatim_tokens"] + drafted)
    assert carried == utils.request_tokens(sent)
    assert budget["verbatim_count"] == 2 and budget["window"] == 1024 and budget["reply_tokens"] == 128
    assert browser.get("/budget").get_json()["verbatim_tokens"] == 0


def test_ux_math_reply_is_counted_in_the_next_request(sock, browser):
    cid = say(sock, "What is 6 x 7?")["conversation_id"]
    messages = browser.get(f"/load_conversation/{cid}").get_json()["conversation"]
    assert messages[-1]["agent"] == "math"
    budget = browser.get(f"/conversations/{cid}/budget?leaf={messages[-1]['message_id']}").get_json()
    assert budget["verbatim_tokens"] == sum(m["tokens"] for m in messages) > 0


def test_ux_summary_can_be_read_edited_and_is_used_as_written(sock, browser, fake_llm):
    fake_llm.reply = LONG_REPLY
    cid = say(sock, "Begin " + LONG_REPLY)["conversation_id"]
    while not browser.get(f"/conversations/{cid}/summary").get_json()["summary"]:
        say(sock, "More " + LONG_REPLY, cid)
    edited = "The user is planning a database migration to Postgres 16."
    answer = browser.put(f"/conversations/{cid}/summary", json={"content": edited})
    assert answer.status_code == 200
    assert answer.get_json()["summary"]["content"] == edited
    stored = browser.get(f"/conversations/{cid}/summary").get_json()["summary"]
    assert stored["content"] == edited and stored["tokens"] == utils.message_tokens("system", utils.SUMMARY_PREFIX + edited)
    fake_llm.reply = "ok"
    say(sock, "short", cid)
    sent = chat_requests(fake_llm)[-1]
    assert sent[1] == {"role": "system", "content": utils.SUMMARY_PREFIX + edited}


def test_ux_export_and_import_keep_the_summary_and_pins(sock, browser, fake_llm):
    fake_llm.reply = LONG_REPLY
    cid = say(sock, "Begin " + LONG_REPLY)["conversation_id"]
    while not browser.get(f"/conversations/{cid}/summary").get_json()["summary"]:
        say(sock, "More " + LONG_REPLY, cid)
    browser.put(f"/conversations/{cid}/pins", json={"facts": ["Deploys go out on Fridays"]})
    exported = json.loads(browser.get(f"/export/{cid}?format=json").data)
    assert exported["pinned_facts"] == ["Deploys go out on Fridays"]
    answer = browser.post("/import_conversations", json=exported).get_json()
    new_id = answer["conversations"][0]["conversation_id"]
    view = browser.get(f"/conversations/{new_id}/summary").get_json()
    assert view["pinned_facts"] == ["Deploys go out on Fridays"]
    assert view["summary"]["content"] == exported["summary"]["content"]
    imported = browser.get(f"/load_conversation/{new_id}").get_json()["conversation"]
    position = [m["content"] for m in exported["conversation"]].index(
        next(m["content"] for m in exported["conversation"] if m["message_id"] == exported["summary"]["last_message_id"]))
    assert view["summary"]["last_message_id"] == imported[position]["message_id"]


@pytest.mark.parametrize("path, method, body, status", [
    ("/conversations/{cid}/pins", "put", {"facts": "not a list"}, 400),
    ("/conversations/{cid}/pins", "put", {"facts": [""]}, 400),
    ("/conversations/{cid}/pins", "put", {"facts": ["x" * 501]}, 400),
    ("/conversations/{cid}/pins", "put", {"facts": ["a"] * 21}, 400),
    ("/conversations/{cid}/pins", "put", {"facts": [5]}, 400),
    ("/conversations/{cid}/summary", "put", {"content": ""}, 400),
    ("/conversations/{cid}/summary", "put", {"content": 7}, 400),
    ("/conversations/{cid}/summary", "put", {"content": "no summary yet"}, 409),
    ("/count_tokens", "post", {"text": 5}, 400),
    ("/count_tokens", "post", {"text": "x" * 200_001}, 400),
    ("/count_tokens", "post", ["text"], 400),
    ("/conversations/{cid}/budget?leaf=", "get", None, 400),
    ("/conversations/{cid}/budget?leaf=unknown", "get", None, 404),
    ("/conversations/missing/summary", "get", None, 404),
    ("/conversations/missing/pins", "put", {"facts": []}, 404),
])
def test_ux_steering_routes_validate_their_input(sock, browser, path, method, body, status):
    cid = say(sock, "What is 2 + 2?")["conversation_id"]
    answer = getattr(browser, method)(path.format(cid=cid), **({"json": body} if body is not None else {}))
    assert answer.status_code == status
    assert answer.get_json()["message"]


def test_ux_steering_routes_are_scoped_to_the_owner(sock, browser, chat_app):
    cid = say(sock, "What is 2 + 2?")["conversation_id"]
    stranger = chat_app.test_client()
    stranger.get("/")
    assert stranger.get(f"/conversations/{cid}/summary").status_code == 404
    assert stranger.put(f"/conversations/{cid}/pins", json={"facts": ["x"]}).status_code == 404
    assert stranger.get(f"/conversations/{cid}/budget").status_code == 404
    assert browser.get(f"/conversations/{cid}/summary").get_json()["pinned_facts"] == []


def test_ux_pins_store_contract(store):
    cid = store.create_conversation("alice")["conversation_id"]
    assert store.get_pinned_facts("alice", cid) == []
    assert store.set_pinned_facts("alice", cid, ["We use Postgres 16", "Name: Ada"])
    assert store.get_pinned_facts("alice", cid) == ["We use Postgres 16", "Name: Ada"]
    assert store.get_pinned_facts("bob", cid) is None
    assert store.set_pinned_facts("bob", cid, ["pwned"]) is False
    assert store.get_pinned_facts("alice", cid) == ["We use Postgres 16", "Name: Ada"]
