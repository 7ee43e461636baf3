"""The public contract's REST routes with their JSON shapes, as a browser sees them."""
import json

import pytest


def test_index_renders_chat_page_with_banner(client):
    response = client.get("/")
    assert response.status_code == 200
    assert b"Chat Application" in response.data
    assert b"No model endpoint is configured" in response.data


def test_index_lists_conversations_without_banner_when_configured(make_app):
    client = make_app(OPENAI_BASE_URL="http://127.0.0.1:9/v1").test_client()
    client.post("/start_conversation", json={"title": "Walrus facts"})
    page = client.get("/").data
    assert b"Walrus facts" in page and b"No model endpoint" not in page


def test_start_conversation_returns_id(client):
    response = client.post("/start_conversation")
    assert response.status_code == 200
    body = response.get_json()
    assert body["message"] == "New conversation started."
    assert len(body["conversation_id"]) == 36


def test_start_conversation_with_title(client):
    cid = client.post("/start_conversation", json={"title": "  Plans  "}).get_json()["conversation_id"]
    assert client.get(f"/load_conversation/{cid}").get_json()["title"] == "Plans"


def test_reset_conversation_without_conversation(client):
    response = client.post("/reset_conversation")
    assert response.status_code == 400
    assert response.get_json()["message"] == "No active conversation to reset."


def test_reset_conversation_clears_history(client, conversation_id):
    response = client.post("/reset_conversation")
    assert response.get_json()["message"] == "Conversation has been reset successfully!"
    body = client.get(f"/load_conversation/{conversation_id}").get_json()
    assert body["conversation"] == [] and body["message_count"] == 0


def test_list_conversations_has_titles_and_updated_at(client, conversation_id):
    client.patch(f"/conversations/{conversation_id}", json={"title": "Walruses"})
    rows = client.get("/list_conversations").get_json()["conversations"]
    assert rows[0]["conversation_id"] == conversation_id
    assert rows[0]["title"] == "Walruses"
    assert rows[0]["updated_at"].endswith("Z") and rows[0]["created_at"].endswith("Z")
    assert rows[0]["message_count"] == 2


def test_load_conversation_returns_seed_shape(client, conversation_id):
    body = client.get(f"/load_conversation/{conversation_id}").get_json()
    assert [(m["role"], m["content"]) for m in body["conversation"]] == [
        ("user", "Tell me about walruses"), ("assistant", "Walruses have tusks.")]
    assert body["conversation"][1]["parent_message_id"] == body["conversation"][0]["message_id"]
    assert body["conversation"][0]["tokens"] > 0
    assert body["total_tokens"] == sum(m["tokens"] for m in body["conversation"])


def test_load_conversation_missing_is_404(client):
    response = client.get("/load_conversation/123e4567-e89b-12d3-a456-426614174000")
    assert response.status_code == 404
    assert response.get_json() == {"message": "Conversation not found."}


def test_save_history_is_a_download(client, conversation_id):
    response = client.post("/save_history", json={"conversation_id": conversation_id})
    assert response.status_code == 200
    disposition = response.headers["Content-Disposition"]
    assert disposition.startswith("attachment;") and conversation_id in disposition
    export = json.loads(response.data)
    assert export["conversation_id"] == conversation_id and len(export["conversation"]) == 2


def test_save_history_without_conversation_is_400(client):
    assert client.post("/save_history").status_code == 400


def test_search_conversations_finds_message_with_snippet(client, conversation_id):
    rows = client.get("/search_conversations?q=tusks").get_json()["conversations"]
    assert rows[0]["conversation_id"] == conversation_id
    assert rows[0]["score"] > 0
    start, end = rows[0]["highlights"][0]
    assert rows[0]["snippet"][start:end] == "tusks"
    assert rows[0]["message_id"]


@pytest.mark.parametrize("query, status", [("", 400), ("   ", 400), ("x" * 501, 400), ('"NEAR(', 200)])
def test_search_conversations_validates_query(client, query, status):
    response = client.get("/search_conversations", query_string={"q": query})
    assert response.status_code == status
    assert ("message" in response.get_json()) == (status == 400)


def test_add_few_shot_example_requires_both_fields(client):
    response = client.post("/add_few_shot_example", json={"user_prompt": "Define AI."})
    assert response.status_code == 400
    assert response.get_json()["message"] == "Both 'user_prompt' and 'assistant_response' are required."


def test_add_few_shot_example_appends_to_current_conversation(client, conversation_id):
    client.post("/add_few_shot_example", json={"user_prompt": "Define AI.", "assistant_response": "AI is..."})
    assert client.get(f"/load_conversation/{conversation_id}").get_json()["message_count"] == 4


def test_rename_and_delete_conversation(client, conversation_id):
    renamed = client.patch(f"/conversations/{conversation_id}", json={"title": "Tusks"})
    assert renamed.status_code == 200 and renamed.get_json()["title"] == "Tusks"
    deleted = client.delete(f"/conversations/{conversation_id}")
    assert deleted.get_json()["message"] == "Conversation deleted."
    assert client.get(f"/load_conversation/{conversation_id}").status_code == 404
    assert client.post("/reset_conversation").status_code == 400  # no longer current


def test_get_config_exposes_limits_not_secrets(make_app):
    client = make_app(OPENAI_BASE_URL="http://127.0.0.1:9/v1", OPENAI_API_KEY="sk-very-secret").test_client()
    body = client.get("/get_config").get_json()
    assert body["max_tokens"] == 128000 and body["reply_tokens"] == 800
    assert body["allowed_extensions"] == ["docx", "json", "md", "pdf", "txt"]
    assert body["endpoint_configured"] is True
    assert "sk-very-secret" not in json.dumps(body) and "127.0.0.1:9" not in json.dumps(body)


def test_unknown_route_and_method_answer_json(client):
    assert client.get("/no/such/page").get_json() == {"message": "Not Found."}
    response = client.get("/start_conversation")
    assert response.status_code == 405 and "message" in response.get_json()


def test_anonymous_identity_persists_across_requests(client, conversation_id):
    assert client.get("/list_conversations").get_json()["conversations"][0]["conversation_id"] == conversation_id
