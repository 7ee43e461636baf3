"""`/export/<id>` (JSON, Markdown) and `/import_conversations` (our export, ChatGPT's conversations.json)."""
import io
import json
import re

import pytest
from test_uploads import post_file

import utils
from config import ConfigError, TestConfig

IMAGE = {"content_type": "image_asset_pointer", "asset_pointer": "file-service://file-abc", "width": 64}


def user_id(client) -> str:
    with client.session_transaction() as session:
        return session["user_id"]


def app_store(app):
    return app.extensions["chat_store"].get()


def post_import(client, payload, name="conversations.json"):
    data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return post_file(client, "/import_conversations", name, data)


def export(client, conversation_id, **params):
    return client.get(f"/export/{conversation_id}", query_string=params)


def shape(exported: dict) -> list[tuple]:
    """Roles, contents, agents and each message's parent as a position: the tree without its ids."""
    position = {m["message_id"]: n for n, m in enumerate(exported["conversation"])}
    return [(m["role"], m["content"], m["agent"], position.get(m["parent_message_id"]))
            for m in exported["conversation"]]


def conversation_count(client) -> int:
    return len(client.get("/list_conversations").get_json()["conversations"])


@pytest.fixture
def branched(app, client, conversation_id):
    """`conversation_id` with its reply regenerated (two sibling replies) and a follow-up on the second."""
    store, uid = app_store(app), user_id(client)
    asked, first = store.list_messages(uid, conversation_id)
    second = store.append_message(uid, conversation_id, "assistant", "Walruses:\n\n- tusks\n- *whiskers*",
                                  tokens=9, parent_message_id=asked["message_id"], agent="chat",
                                  finish_reason="stop")
    follow = store.append_message(uid, conversation_id, "user", "# How long?", tokens=5,
                                  parent_message_id=second["message_id"])
    client.patch(f"/conversations/{conversation_id}", json={"title": 'Walruses "and" \r\nfriends'})
    return {"id": conversation_id, "first": first["message_id"], "second": second["message_id"],
            "follow": follow["message_id"]}


# -- export ------------------------------------------------------------------------------------

def test_export_json_is_a_download_of_every_branch(client, branched):
    response = export(client, branched["id"])
    assert response.status_code == 200 and response.mimetype == "application/json"
    disposition = response.headers["Content-Disposition"]
    assert re.fullmatch(rf'attachment; filename="conversation_{branched["id"]}_\d{{8}}_\d{{6}}\.json"', disposition)
    body = json.loads(response.data)
    assert body["export_version"] == 1 and body["title"] == 'Walruses "and" \r\nfriends'
    assert shape(body) == [("user", "Tell me about walruses", None, None),
                           ("assistant", "Walruses have tusks.", "few_shot", 0),
                           ("assistant", "Walruses:\n\n- tusks\n- *whiskers*", "chat", 0),
                           ("user", "# How long?", None, 2)]


def test_export_json_round_trips_through_import(client, other_client, branched):
    original = json.loads(export(client, branched["id"]).data)
    response = post_import(client, original)
    assert response.status_code == 200
    body = response.get_json()
    assert body["message"] == "Imported 1 conversation(s)." and body["skipped"] == 0
    [made] = body["conversations"]
    assert made["title"] == 'Walruses "and" friends' and made["message_count"] == 4
    copy = json.loads(export(client, made["conversation_id"]).data)
    assert shape(copy) == shape(original)
    assert {m["message_id"] for m in copy["conversation"]}.isdisjoint(m["message_id"] for m in original["conversation"])
    assert [m["finish_reason"] for m in copy["conversation"]] == [None, "stop", "stop", None]
    assert conversation_count(client) == 2 and conversation_count(other_client) == 0


def test_export_markdown_is_the_newest_thread_without_the_summary(app, client, branched):
    app_store(app).set_summary(user_id(client), branched["id"], "INTERNAL SUMMARY", branched["first"], 3)
    messages = client.get(f"/load_conversation/{branched['id']}").get_json()["conversation"]
    response = export(client, branched["id"], format="md")
    assert response.status_code == 200 and response.mimetype == "text/markdown"
    assert re.fullmatch(rf'attachment; filename="conversation_{branched["id"]}_\d{{8}}_\d{{6}}\.md"',
                        response.headers["Content-Disposition"])
    at = [m["created_at"] for m in messages]
    assert response.get_data(as_text=True) == (
        f'# Walruses "and" friends\n\n### You\n*{at[0]}*\n\nTell me about walruses\n\n'
        f"### Assistant (chat)\n*{at[2]}*\n\nWalruses:\n\n- tusks\n- *whiskers*\n\n"
        f"### You\n*{at[3]}*\n\n# How long?\n")
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", stamp) for stamp in at)


def test_export_markdown_follows_the_leaf_param(client, branched):
    text = export(client, branched["id"], format="md", leaf=branched["first"]).get_data(as_text=True)
    assert "### Assistant (few_shot)" in text and text.endswith("\n\nWalruses have tusks.\n")
    assert "whiskers" not in text and "How long?" not in text


def test_export_markdown_of_an_untitled_empty_conversation(client):
    conversation_id = client.post("/start_conversation").get_json()["conversation_id"]
    assert export(client, conversation_id, format="md").get_data(as_text=True) == "# Untitled conversation\n"


@pytest.mark.parametrize("params, status, message", [
    ({"format": "pdf"}, 400, "'format' must be json or md."),
    ({"format": "md", "leaf": "123e4567-e89b-12d3-a456-426614174000"}, 404, "Message not found."),
])
def test_export_rejects_bad_params(client, conversation_id, params, status, message):
    response = export(client, conversation_id, **params)
    assert response.status_code == status and response.get_json() == {"message": message}


@pytest.mark.parametrize("kind", ["json", "md"])
def test_export_other_users_conversation_is_404(other_client, conversation_id, kind):
    response = export(other_client, conversation_id, format=kind)
    assert response.status_code == 404 and response.get_json() == {"message": "Conversation not found."}


# -- import: ChatGPT ----------------------------------------------------------------------------

def node(node_id, parent, children, role=None, parts=(), at=None, content_type="text"):
    message = None if role is None else {
        "id": node_id, "author": {"role": role}, "create_time": at, "recipient": "all",
        "content": {"content_type": content_type, "parts": list(parts)}}
    return {"id": node_id, "message": message, "parent": parent, "children": children}


def chatgpt_conversation() -> dict:
    """A root, a system message, the first question edited (two roots once the system node goes), an image
    part beside text, an image-only message (its reply moves up to the nearest kept ancestor) and a tool call."""
    nodes = [node("root", None, ["sys"]),
             node("sys", "root", ["u1-edit", "u1"], "system", [""]),
             node("u1", "sys", ["a1"], "user", ["How tall are giraffes?"], 100.0),
             node("a1", "u1", ["u2"], "assistant", ["Up to 5.7 metres."], 101.0),
             node("u2", "a1", ["a2"], "user", [IMAGE, "What animal is this?"], 102.0, "multimodal_text"),
             node("a2", "u2", [], "assistant", ["A giraffe.", ""], 103.0),
             node("u1-edit", "sys", ["a1-edit"], "user", ["How tall are adult giraffes?"], 200.0),
             node("a1-edit", "u1-edit", ["u3"], "assistant", ["4.3 to 5.7 metres."], 201.0),
             node("u3", "a1-edit", ["tool"], "user", [IMAGE], 202.0, "multimodal_text"),
             node("tool", "u3", ["a3"], "assistant", ["search('okapi')"], 202.5),
             node("a3", "tool", [], "assistant", ["That is an okapi.", "It is related to giraffes."], None)]
    nodes[9]["message"]["recipient"] = "browser"
    return {"title": "  Giraffes  ", "create_time": 99.0, "current_node": "a3",
            "mapping": {n["id"]: n for n in nodes}}


def test_import_chatgpt_keeps_the_whole_tree(client):
    response = post_import(client, [chatgpt_conversation()])
    assert response.status_code == 200
    [made] = response.get_json()["conversations"]
    assert made["title"] == "Giraffes" and made["message_count"] == 7
    copy = json.loads(export(client, made["conversation_id"]).data)
    assert shape(copy) == [("user", "How tall are giraffes?", None, None),
                           ("assistant", "Up to 5.7 metres.", "imported", 0),
                           ("user", "What animal is this?", None, 1),
                           ("assistant", "A giraffe.", "imported", 2),
                           ("user", "How tall are adult giraffes?", None, None),
                           ("assistant", "4.3 to 5.7 metres.", "imported", 4),
                           ("assistant", "That is an okapi.\n\nIt is related to giraffes.", "imported", 5)]
    assert all(m["finish_reason"] == ("stop" if m["role"] == "assistant" else None) for m in copy["conversation"])
    assert all(m["tokens"] == utils.message_tokens(m["role"], m["content"]) for m in copy["conversation"])
    assert not {"u1", "a1", "a3"} & {m["message_id"] for m in copy["conversation"]}


def test_import_chatgpt_skips_a_conversation_without_chat_messages(client):
    empty = {"title": "Nothing", "mapping": {"root": node("root", None, ["sys"]),
                                             "sys": node("sys", "root", [], "system", ["Be brief."])}}
    body = post_import(client, [empty, chatgpt_conversation()]).get_json()
    assert body["skipped"] == 1 and [c["title"] for c in body["conversations"]] == ["Giraffes"]


def test_import_accepts_a_json_body_and_untitled_conversations(client):
    response = client.post("/import_conversations", json={"conversation": [{"role": "user", "content": "hi"}]})
    assert response.status_code == 200
    assert response.get_json()["conversations"][0]["title"] == "Imported conversation"


# -- import: limits and bad input ---------------------------------------------------------------

def messages(count: int, length: int = 1) -> dict:
    return {"export_version": 1, "conversation": [{"role": "user", "content": "x" * length}] * count}


@pytest.mark.parametrize("payload, name, message", [
    (b"not json", "conversations.json", "The import is not valid JSON."),
    (b"[" * 100_000, "conversations.json", "The import is not valid JSON."),
    (b"\xff\xfe\x00garbage", "conversations.json", "The import is not valid JSON."),
    (b"[]", "conversations.txt", "The file must be a .json file."),
    ("a string", "conversations.json", "Expected a conversation export (an object) or a list of conversations."),
    ([], "conversations.json", "Nothing to import: the list of conversations is empty."),
    ({"messages": []}, "c.json", "Conversation 1 is neither an export of this app nor a ChatGPT conversation."),
    ([messages(1), 5], "c.json", "Conversation 2 is neither an export of this app nor a ChatGPT conversation."),
    ({**messages(1), "export_version": 2}, "c.json",
     "Conversation 1 comes from another export format (this app reads version 1)."),
    ({"conversation": [{"role": "tool", "content": "x"}, {"role": "user", "content": "  "}]}, "c.json",
     ("Nothing to import: 1 conversation(s) skipped (no user or assistant messages, or a message longer than "
     f"{utils.MAX_MESSAGE_CHARS} characters).")),
    (messages(1, utils.MAX_MESSAGE_CHARS + 1), "c.json",
     ("Nothing to import: 1 conversation(s) skipped (no user or assistant messages, or a message longer than "
     f"{utils.MAX_MESSAGE_CHARS} characters).")),
    ([messages(0)] * 1001, "c.json", "At most 1000 conversations can be imported at once."),
    ([messages(10_000), messages(10_001)], "c.json",
     "At most 20000 messages can be imported at once; this import has 20001."),
], ids=["not-json", "too-deep", "bad-bytes", "not-a-json-file", "string", "empty-list", "unknown-object",
        "unknown-item", "newer-version", "no-chat-messages", "over-long-message", "too-many-conversations",
        "too-many-messages"])
def test_import_rejects_bad_input_and_creates_nothing(client, payload, name, message):
    response = post_import(client, payload, name)
    assert response.status_code == 400 and response.get_json() == {"message": message}
    assert conversation_count(client) == 0


@pytest.mark.parametrize("request_kwargs, message", [
    ({"data": b"{", "content_type": "application/json"}, "The import is not valid JSON."),
    ({"data": {"other": "field"}}, "Send a .json file in the 'file' field, or a JSON body."),
    ({"data": b"[]", "content_type": "text/plain"}, "Send a .json file in the 'file' field, or a JSON body."),
], ids=["broken-json-body", "form-without-file", "plain-text-body"])
def test_import_rejects_requests_without_json(client, request_kwargs, message):
    response = client.post("/import_conversations", **request_kwargs)
    assert response.status_code == 400 and response.get_json() == {"message": message}
    assert conversation_count(client) == 0


def test_import_skips_a_conversation_with_an_over_long_message(client):
    body = post_import(client, [messages(1, utils.MAX_MESSAGE_CHARS + 1), messages(2)]).get_json()
    assert body["skipped"] == 1 and [c["message_count"] for c in body["conversations"]] == [2]
    assert conversation_count(client) == 1


@pytest.mark.parametrize("as_file", [True, False], ids=["file", "json-body"])
def test_import_larger_than_import_max_mb_is_413(make_app, as_file):
    client = make_app(IMPORT_MAX_MB=0.001).test_client()
    payload = messages(1, 2000)
    response = post_import(client, payload) if as_file else client.post("/import_conversations", json=payload)
    assert response.status_code == 413
    assert response.get_json() == {"message": "The import is larger than the 0.001 MB limit."}
    assert conversation_count(client) == 0


def test_import_is_not_held_to_the_upload_limit(make_app):
    client = make_app(MAX_FILE_SIZE_MB=0.01).test_client()  # app-wide limit: 10 KB + 64 KB of form overhead
    response = post_import(client, messages(1, 150_000))
    assert response.status_code == 200 and response.get_json()["conversations"][0]["message_count"] == 1


def test_import_failing_midway_deletes_what_it_created(app, client, monkeypatch):
    store, real_append, calls = app_store(app), app_store(app).append_message, []

    def append_then_fail(*args, **kwargs):
        calls.append(args)
        if len(calls) == 4:
            raise OSError("disk full")
        return real_append(*args, **kwargs)
    monkeypatch.setattr(store, "append_message", append_then_fail)
    response = post_import(client, [messages(2), messages(3)])
    assert response.status_code == 500 and len(calls) == 4
    assert response.get_json() == {"message": "An error occurred while processing your request."}
    assert conversation_count(client) == 0


def test_import_max_mb_must_be_positive(tmp_path):
    with pytest.raises(ConfigError, match="IMPORT_MAX_MB must be a positive number"):
        TestConfig(tmp_path, IMPORT_MAX_MB=0.0).validate()


@pytest.mark.parametrize("as_file", [True, False], ids=["file", "json-body"])
def test_import_limit_holds_with_csrf_on_and_its_413_names_the_real_limit(make_app, as_file):
    """CSRF protection reads the form before the view: the import's own limit must already apply."""
    client = make_app(csrf_protection=True, MAX_FILE_SIZE_MB=0.01, IMPORT_MAX_MB=0.3).test_client()
    token = re.search(r'<meta name="csrf-token" content="([^"]+)"', client.get("/").get_data(as_text=True))[1]

    def send(payload):
        if as_file:
            data = {"file": (io.BytesIO(json.dumps(payload).encode()), "c.json")}
            return client.post("/import_conversations", data=data, headers={"X-CSRFToken": token})
        return client.post("/import_conversations", json=payload, headers={"X-CSRFToken": token})
    assert send(messages(1, 150_000)).status_code == 200  # over the 0.01 MB upload limit, under the import's
    refused = send(messages(1, 400_000))  # (bodies under 500 KB: the test client spools bigger ones to files)
    assert refused.status_code == 413
    assert refused.get_json() == {"message": "The import is larger than the 0.3 MB limit."}


def test_import_text_field_over_the_form_memory_limit_is_named(make_app):
    app = make_app()
    app.config["MAX_FORM_MEMORY_SIZE"] = 4096  # Flask's default is 500 KB
    response = app.test_client().post("/import_conversations",
                                      data={"note": "x" * 5000, "file": (io.BytesIO(b"[]"), "c.json")})
    assert response.status_code == 413 and "A form field is larger than" in response.get_json()["message"]


def test_import_cuts_the_sqlite_wal_back(make_app, tmp_path):
    client = make_app().test_client()
    payload = [messages(200, 10_000)]  # 2 MB of messages (a JSON body: the test client spools big forms to files)
    assert client.post("/import_conversations", json=payload).status_code == 200
    assert (tmp_path / "instance" / "chat.sqlite3-wal").stat().st_size == 0
