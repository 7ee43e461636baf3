"""Regenerate and edit make branches; the model answers the branch being continued, only that."""
import pytest
from test_socket_events import browser, chat_app, payloads, sock, wait_for  # noqa: F401  (fixtures)


def send(sock, **payload):
    ack = sock.emit("send_message", payload, callback=True)
    assert ack["ok"] is True, ack
    wait_for(sock, "response_done")
    return ack


def prompts(fake_llm):
    """The user/assistant turns of each chat request the model received."""
    return [[(m["role"], m["content"]) for m in r.body["messages"] if m["role"] != "system"]
            for r in fake_llm.requests if r.body and "messages" in r.body]


def test_regenerate_adds_a_sibling_reply_answering_the_same_context(sock, browser, fake_llm):
    first = send(sock, message="Tell me a joke")
    fake_llm.reply = "A different joke"
    ack = sock.emit("regenerate", {"conversation_id": first["conversation_id"], "message_id": first["reply_id"]},
                    callback=True)
    assert ack["ok"] and ack["message_id"] == first["message_id"] and ack["reply_id"] != first["reply_id"]
    events = wait_for(sock, "response_done")
    assert "".join(c["chunk"] for c in payloads(events, "response_chunk")) == "A different joke"
    assert prompts(fake_llm)[-1] == [("user", "Tell me a joke")]
    stored = browser.get(f"/load_conversation/{first['conversation_id']}").get_json()["conversation"]
    replies = [m for m in stored if m["role"] == "assistant"]
    assert [m["parent_message_id"] for m in replies] == [first["message_id"]] * 2


def test_edit_makes_a_sibling_and_the_old_branch_is_not_in_the_prompt(sock, browser, fake_llm):
    first = send(sock, message="My name is Ada")
    second = send(sock, message="What is 2 plus cats?", conversation_id=first["conversation_id"])
    edited = send(sock, message="What is my name?", conversation_id=first["conversation_id"],
                  edit_of=second["message_id"])
    assert prompts(fake_llm)[-1] == [("user", "My name is Ada"), ("assistant", fake_llm.reply),
                                     ("user", "What is my name?")]
    stored = browser.get(f"/load_conversation/{first['conversation_id']}").get_json()["conversation"]
    by_id = {m["message_id"]: m for m in stored}
    assert by_id[edited["message_id"]]["parent_message_id"] == by_id[second["message_id"]]["parent_message_id"]


def test_editing_the_first_message_starts_a_fresh_root(sock, browser, fake_llm):
    first = send(sock, message="First try")
    send(sock, message="Second try", conversation_id=first["conversation_id"], edit_of=first["message_id"])
    assert prompts(fake_llm)[-1] == [("user", "Second try")]


def test_continuing_an_older_branch_uses_that_branch(sock, fake_llm):
    first = send(sock, message="Pick a colour")
    fake_llm.reply = "Green"
    sock.emit("regenerate", {"conversation_id": first["conversation_id"], "message_id": first["message_id"]},
              callback=True)
    wait_for(sock, "response_done")
    send(sock, message="Why that one?", conversation_id=first["conversation_id"], parent_message_id=first["reply_id"])
    assert prompts(fake_llm)[-1] == [("user", "Pick a colour"), ("assistant", "Hello! How can I help you today?"),
                                     ("user", "Why that one?")]


def test_model_pick_must_be_offered_and_reaches_the_endpoint(sock, fake_llm):
    fake_llm.models = ["other-model"]
    refused = sock.emit("send_message", {"message": "hi", "model": "not-offered"}, callback=True)
    assert refused["ok"] is False and "model" in refused["message"]
    send(sock, message="hi", model="other-model")
    assert fake_llm.requests[-1].body["model"] == "other-model"


@pytest.mark.parametrize("payload, words", [
    ({"message_id": "nope"}, "not found"),
    ({"message_id": 5}, "not found"),
])
def test_regenerate_rejects_bad_targets(sock, payload, words):
    first = send(sock, message="Hello")
    ack = sock.emit("regenerate", {"conversation_id": first["conversation_id"], **payload}, callback=True)
    assert ack["ok"] is False and words in ack["message"]


def test_regenerate_and_edit_refuse_another_users_messages(chat_app, sock):
    first = send(sock, message="Mine")
    from app import socketio
    stranger_http = chat_app.test_client()
    stranger_http.get("/")
    stranger = socketio.test_client(chat_app, flask_test_client=stranger_http)
    own = stranger.emit("send_message", {"message": "Theirs"}, callback=True)
    wait_for(stranger, "response_done")
    ack = stranger.emit("regenerate", {"conversation_id": own["conversation_id"], "message_id": first["reply_id"]},
                        callback=True)
    assert ack["ok"] is False
    ack = stranger.emit("send_message", {"message": "x", "conversation_id": own["conversation_id"],
                                         "edit_of": first["message_id"]}, callback=True)
    assert ack["ok"] is False and "edit" in ack["message"]
    ack = stranger.emit("send_message", {"message": "x", "conversation_id": own["conversation_id"],
                                         "parent_message_id": first["reply_id"]}, callback=True)
    assert ack["ok"] is False
    stranger.disconnect()
