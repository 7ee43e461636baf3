"""Hybrid ranking: RRF itself, /search_conversations' mode parameter, the search page's marking,
per-user scoping through the route, and the knowledge agent finding a paraphrased answer."""
import pytest

import utils
from agents.emitter import RecordingEmitter
from agents.turn import run_turn
from semantic import hybrid, indexer, model

BREAD = ("How long should sourdough dough proof before baking?", "Usually four to six hours at room temperature.")
TAXES = ("When is the deadline to file income tax returns?", "In most years it is the fifteenth of April.")


def _embed(store):
    step = indexer.Indexer(store, model.shared(), start={"message": None, "chunk": None})
    while step.step():
        pass


def _conversation(client, exchange):
    """A new conversation of client's holding one exchange."""
    client.post("/start_conversation", json={})
    return client.post("/add_few_shot_example", json={"user_prompt": exchange[0],
                                                      "assistant_response": exchange[1]}).get_json()["conversation_id"]


@pytest.fixture
def library(app, client):
    """Two of client's conversations, embedded."""
    ids = {"bread": _conversation(client, BREAD), "taxes": _conversation(client, TAXES)}
    _embed(app.extensions["chat_store"].get())
    return ids


def _search(client, q, **args):
    return client.get("/search_conversations", query_string={"q": q, **args})


# -- reciprocal rank fusion --------------------------------------------------------------------

def test_rrf_sums_one_over_k_plus_rank():
    scores = hybrid.rrf([["a", "b"], ["b", "c"]])
    assert scores == pytest.approx({"a": 1 / 61, "b": 1 / 62 + 1 / 61, "c": 1 / 62})


def test_fuse_prefers_the_keyword_record_and_says_how_each_matched():
    keyword = [{"id": "a", "snippet": "kw a"}, {"id": "b", "snippet": "kw b"}]
    semantic = [{"id": "b", "snippet": "vec b"}, {"id": "c", "snippet": "vec c"}]
    fused = hybrid.fuse(keyword, semantic, lambda hit: hit["id"], limit=3)
    assert [(h["id"], h["snippet"], h["match"]) for h in fused] == [
        ("b", "kw b", "both"), ("a", "kw a", "keyword"), ("c", "vec c", "meaning")]
    assert fused[0]["score"] == pytest.approx(1 / 62 + 1 / 61, abs=1e-6)


# -- the route ---------------------------------------------------------------------------------

def test_search_finds_a_paraphrase_by_meaning_only_in_hybrid_and_semantic_modes(client, library):
    query = "fermented loaf rising time"
    assert _search(client, query, mode="keyword").get_json()["conversations"] == []
    for mode in ("hybrid", "semantic", None):
        rows = _search(client, query, **({"mode": mode} if mode else {})).get_json()["conversations"]
        assert rows[0]["conversation_id"] == library["bread"] and rows[0]["match"] == "meaning"
        assert rows[0]["message_id"] and rows[0]["snippet"]
        assert library["taxes"] not in [row["conversation_id"] for row in rows]  # below MIN_SIMILARITY


def test_hybrid_keeps_keyword_snippets_and_marks_both(client, library):
    rows = _search(client, "sourdough").get_json()["conversations"]
    assert rows[0]["conversation_id"] == library["bread"] and rows[0]["match"] == "both"
    snippet, (start, end) = rows[0]["snippet"], rows[0]["highlights"][0]
    assert snippet[start:end].lower() == "sourdough"


@pytest.mark.parametrize("mode", ["", "HYBRID", "vector", "keyword,semantic", "x" * 600])
def test_search_rejects_an_unknown_mode_with_json(client, mode):
    response = _search(client, "bread", mode=mode)
    assert response.status_code == 400
    assert "mode" in response.get_json()["message"] and "hybrid, keyword, semantic" in response.get_json()["message"]


def test_semantic_mode_without_the_model_is_a_clear_503_and_hybrid_falls_back(make_app):
    app = make_app(EMBEDDINGS=False)
    client = app.test_client()
    cid = _conversation(client, BREAD)
    refused = _search(client, "bread", mode="semantic")
    assert refused.status_code == 503 and "mode=keyword" in refused.get_json()["message"]
    rows = _search(client, "sourdough").get_json()["conversations"]
    assert [(row["conversation_id"], row["match"]) for row in rows] == [(cid, "keyword")]


def test_search_by_meaning_never_finds_another_users_conversations(app, client, other_client, library):
    _conversation(other_client, ("Which bakery sells rye?", "The one on the corner."))
    _embed(app.extensions["chat_store"].get())
    for mode in ("semantic", "hybrid"):
        theirs = _search(other_client, "fermented loaf rising time", mode=mode).get_json()["conversations"]
        assert not {row["conversation_id"] for row in theirs} & set(library.values())


def test_search_page_marks_results_matched_by_meaning(client, library):
    page = client.get("/search", query_string={"q": "fermented loaf rising time"}).get_data(as_text=True)
    assert "Matched by meaning" in page and library["bread"] in page
    assert '<option value="hybrid" selected>' in page
    keyword = client.get("/search", query_string={"q": "sourdough", "mode": "keyword"}).get_data(as_text=True)
    assert "Matched by meaning" not in keyword and '<option value="keyword" selected>' in keyword


# -- the knowledge agent ---------------------------------------------------------------------------

def test_knowledge_agent_answers_a_paraphrased_question_with_the_right_citation(turn_deps, fake_llm):
    deps = turn_deps()
    deps.store.add_document("alice", "handbook.pdf", "h1", [
        "Staff may carry over at most five days of unused annual leave into the next calendar year.",
        "The office network requires a badge at the front entrance after 7 pm.",
        "Expense reports must be submitted within thirty days with receipts attached."],
        [20, 14, 12], chunk_meta=[{"pages": [4]}, {"pages": [9]}, {"pages": [12]}])
    _embed(deps.store)
    question = "/ask can I keep holidays I did not take for January?"
    cid = deps.store.create_conversation("alice")["conversation_id"]
    mid = deps.store.append_message("alice", cid, "user", question, tokens=utils.message_tokens("user", question))
    before = len(fake_llm.requests)
    reply = run_turn(deps, "alice", cid, mid["message_id"], "reply-1", RecordingEmitter(), lambda: False)
    assert reply.meta["routing"]["agent"] == "knowledge"
    assert reply.meta["citations"][0] == {"document_id": reply.meta["citations"][0]["document_id"],
                                          "file_name": "handbook.pdf", "chunk": 1, "pages": [4], "location": "p. 4"}
    system = fake_llm.requests[before].body["messages"][0]["content"]
    assert system.index("[handbook.pdf, p. 4]") < system.index("unused annual leave")
    assert reply.text.endswith("Sources: handbook.pdf (p. 4)") or "handbook.pdf (p. 4)" in reply.text
