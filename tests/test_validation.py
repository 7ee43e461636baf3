"""Bad input gets a 4xx with a JSON message and changes nothing."""
import json

import pytest

BAD_BODIES = [
    ("post", "/add_few_shot_example", "not json", 400),
    ("post", "/add_few_shot_example", "[1, 2]", 400),
    ("post", "/add_few_shot_example", '{"user_prompt": 5, "assistant_response": "x"}', 400),
    ("post", "/add_few_shot_example", '{"user_prompt": "", "assistant_response": "x"}', 400),
    ("post", "/start_conversation", '{"title": 7}', 400),
    ("post", "/start_conversation", '{"title": "' + "t" * 201 + '"}', 400),
    ("post", "/start_conversation", '{"title": "a\\u0000b"}', 400),
    ("post", "/start_conversation", "{broken", 400),
    ("post", "/reset_conversation", '{"conversation_id": ["x"]}', 400),
    ("patch", "/conversations/{cid}", '{"title": ""}', 400),
    ("patch", "/conversations/{cid}", '{"name": "x"}', 400),
    ("patch", "/conversations/{cid}", "null", 400),
]


@pytest.mark.parametrize("method, path, raw, status", BAD_BODIES)
def test_validation_bad_json_bodies(client, conversation_id, method, path, raw, status):
    before = client.get(f"/load_conversation/{conversation_id}").get_json()
    response = getattr(client, method)(path.format(cid=conversation_id), data=raw,
                                       content_type="application/json")
    assert response.status_code == status
    assert isinstance(response.get_json()["message"], str)
    assert client.get(f"/load_conversation/{conversation_id}").get_json() == before


@pytest.mark.parametrize("query", ["limit=0", "limit=501", "limit=abc", "offset=-1"])
def test_validation_list_paging_arguments(client, query):
    response = client.get(f"/list_conversations?{query}")
    assert response.status_code == 400 and "message" in response.get_json()


def test_validation_too_long_few_shot_example(client):
    response = client.post("/add_few_shot_example", json={"user_prompt": "x" * 200_001, "assistant_response": "y"})
    assert response.status_code == 400


@pytest.mark.parametrize("cid", ["..\\..\\windows", "x" * 300, "%00", "' OR 1=1 --"])
def test_validation_strange_conversation_ids_are_404(client, cid):
    response = client.get(f"/load_conversation/{cid}")
    assert response.status_code == 404 and response.get_json() == {"message": "Conversation not found."}


@pytest.mark.parametrize("method, path, body", [
    ("post", "/start_conversation", {"title": "\ud800"}),
    ("post", "/add_few_shot_example", {"user_prompt": "a\udfff", "assistant_response": "b"}),
    ("post", "/import_conversations", {"title": "x", "messages": [{"role": "user", "content": "\ud800"}]}),
    ("post", "/register", {"username": "alice", "password": "long enough \ud800"}),
    ("post", "/login", {"username": "alice", "password": "long enough \ud800"}),
])
def test_validation_unpaired_surrogates_are_a_clear_400(client, method, path, body):
    """JSON may escape a lone surrogate; no store can keep one (found by the socket fuzzing)."""
    answer = getattr(client, method)(path, data=json.dumps(body), content_type="application/json")
    assert answer.status_code == 400 and answer.get_json()["message"]
