"""Two browsers, two anonymous users: neither can see or touch the other's conversations."""
import pytest

ROUTES = [
    ("get", "/load_conversation/{cid}", None),
    ("patch", "/conversations/{cid}", {"title": "mine now"}),
    ("delete", "/conversations/{cid}", None),
    ("post", "/reset_conversation", {"conversation_id": "{cid}"}),
    ("post", "/save_history", {"conversation_id": "{cid}"}),
    ("post", "/add_few_shot_example", {"conversation_id": "{cid}", "user_prompt": "a", "assistant_response": "b"}),
]


def _call(client, method, path, body, cid):
    if body is not None:
        body = {key: value.format(cid=cid) for key, value in body.items()}
    return getattr(client, method)(path.format(cid=cid), json=body)


@pytest.mark.parametrize("method, path, body", ROUTES)
def test_isolation_other_users_id_is_404_like_a_missing_one(client, other_client, conversation_id,
                                                            method, path, body):
    stolen = _call(other_client, method, path, body, conversation_id)
    missing = _call(other_client, method, path, body, "00000000-0000-0000-0000-000000000000")
    assert stolen.status_code == missing.status_code == 404
    assert stolen.get_json() == missing.get_json() == {"message": "Conversation not found."}
    owner_view = client.get(f"/load_conversation/{conversation_id}").get_json()
    assert owner_view["message_count"] == 2 and owner_view["title"] == ""


def test_isolation_search_never_returns_other_users_text(client, other_client, conversation_id):
    other_client.post("/add_few_shot_example", json={"user_prompt": "walruses too", "assistant_response": "yes"})
    mine = client.get("/search_conversations?q=walruses").get_json()["conversations"]
    theirs = other_client.get("/search_conversations?q=tusks").get_json()["conversations"]
    assert [hit["conversation_id"] for hit in mine] == [conversation_id]
    assert theirs == []


def test_isolation_search_by_meaning_never_returns_other_users_text(app, client, other_client, conversation_id):
    from semantic import indexer, model
    other_client.post("/add_few_shot_example", json={"user_prompt": "seals too", "assistant_response": "yes"})
    run = indexer.Indexer(app.extensions["chat_store"].get(), model.shared(), start={"message": None, "chunk": None})
    while run.step():
        pass
    for mode in ("semantic", "hybrid"):
        theirs = other_client.get(f"/search_conversations?q=big+marine+mammals+with+ivory&mode={mode}").get_json()
        assert conversation_id not in [hit["conversation_id"] for hit in theirs["conversations"]]
    mine = client.get("/search_conversations?q=big+marine+mammals+with+ivory&mode=semantic").get_json()
    assert [hit["conversation_id"] for hit in mine["conversations"]] == [conversation_id]


def test_isolation_list_shows_only_own_conversations(client, other_client, conversation_id):
    assert other_client.get("/list_conversations").get_json()["conversations"] == []


def test_isolation_session_cookie_is_httponly_and_lax(client):
    cookie = client.get("/").headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie
