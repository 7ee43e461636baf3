"""Pages and the routes only the page uses: /search, /vendor, /models, /stats."""
import pytest
from test_socket_events import browser, chat_app, sock, wait_for  # noqa: F401  (fixtures)

from web.pages import marked_parts


def test_search_page_marks_matches_and_links_to_the_message(make_app):
    client = make_app().test_client()
    cid = client.post("/start_conversation", json={"title": "<b>Trip</b>"}).get_json()["conversation_id"]
    client.post("/add_few_shot_example", json={"conversation_id": cid, "user_prompt": "Visiting Zanzibar <script>x</script>",
                                               "assistant_response": "Lovely in June."})
    page = client.get("/search?q=zanzibar").get_data(as_text=True)
    assert "<mark>Zanzibar</mark>" in page
    assert "&lt;script&gt;" in page and "<script>x" not in page
    assert "&lt;b&gt;Trip&lt;/b&gt;" in page
    assert f"/?c={cid}&amp;m=" in page
    assert "1 conversation found" in page


def test_search_page_without_a_query_shows_only_the_form(client):
    page = client.get("/search").get_data(as_text=True)
    assert 'id="search-query"' in page and "found for" not in page


def test_marked_parts_ignores_spans_outside_or_overlapping():
    assert marked_parts("hello world", [[0, 5]]) == [("hello", True), (" world", False)]
    assert marked_parts("abc", [[0, 2], [1, 3], [2, 99]]) == [("ab", True), ("c", False)]


def test_vendor_serves_only_the_listed_files(client):
    with client.get("/vendor/marked.umd.js") as response:  # a file response: closed when done
        assert response.status_code == 200 and b"marked" in response.data[:2000]
        assert "javascript" in response.content_type
    for name in ("package.json", "..%2Fpackage.json", "../../config.py", "axe.min.js"):
        answer = client.get(f"/vendor/{name}")
        assert answer.status_code == 404 and answer.get_json()["message"]


def test_models_lists_the_endpoints_models_with_the_configured_one_first(make_app, fake_llm):
    fake_llm.models = ["zeta-model", "alpha-model"]
    client = make_app(OPENAI_BASE_URL=fake_llm.url, MODEL="fake-model").test_client()
    assert client.get("/models").get_json() == {
        "models": ["fake-model", "alpha-model", "zeta-model"], "default": "fake-model", "configured": True}
    fake_llm.models = []
    assert "zeta-model" in client.get("/models").get_json()["models"]  # cached for a minute


def test_models_falls_back_to_the_configured_model_when_the_list_fails(make_app):
    client = make_app(OPENAI_BASE_URL="http://127.0.0.1:9/v1", MODEL="my-model").test_client()
    assert client.get("/models").get_json() == {"models": ["my-model"], "default": "my-model", "configured": True}


def test_models_without_an_endpoint_is_empty(client):
    assert client.get("/models").get_json() == {"models": [], "default": None, "configured": False}


def test_stats_counts_replies_latency_and_tokens_per_agent(sock, browser):
    first = sock.emit("send_message", {"message": "Hello"}, callback=True)
    wait_for(sock, "response_done")
    sock.emit("send_message", {"message": "What is 2 + 2?", "conversation_id": first["conversation_id"]},
              callback=True)
    wait_for(sock, "response_done")
    stats = browser.get(f"/stats/{first['conversation_id']}").get_json()
    assert stats["message_count"] == 4 and stats["total_tokens"] > 0
    rows = {row["agent"]: row for row in stats["agents"]}
    assert set(rows) == {"chat", "math"}
    for row in rows.values():
        assert row["replies"] == 1 and row["tokens"] > 0
        assert isinstance(row["avg_latency_ms"], int) and row["max_latency_ms"] >= row["avg_latency_ms"] >= 0


def test_stats_of_another_users_conversation_is_not_found(sock, chat_app):
    ack = sock.emit("send_message", {"message": "Hello"}, callback=True)
    wait_for(sock, "response_done")
    stranger = chat_app.test_client()
    stranger.get("/")
    response = stranger.get(f"/stats/{ack['conversation_id']}")
    assert response.status_code == 404 and response.get_json()["message"] == "Conversation not found."


@pytest.mark.parametrize("path", ["/", "/search?q=x"])
def test_pages_load_no_script_or_style_from_another_origin(client, path):
    page = client.get(path).get_data(as_text=True)
    assert "http://" not in page.replace("http://127.0.0.1", "") and "https://" not in page
