"""One chat turn against the fake model server: budget, stream, persist, report."""
import pytest
from fake_llm import Fault
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import utils
from agents.calibration import Calibration
from agents.emitter import RecordingEmitter
from agents.providers import Providers
from agents.turn import NOT_CONFIGURED, TurnDeps, run_turn
from config import TestConfig
from storage.sqlite_store import SqliteStore

FAST = {"max_retries": 2, "backoff_base": 0.01, "read_timeout": 5}


@pytest.fixture
def deps(tmp_path, fake_llm):
    store = SqliteStore(tmp_path / "turn.sqlite3")
    store.migrate()
    config = TestConfig(tmp_path, MAX_TOKENS=4096, REPLY_TOKENS=256, OPENAI_BASE_URL=fake_llm.url,
                        MODEL="fake-model")
    return TurnDeps(store, config, Providers(config, client_options=FAST), Calibration())


def _ask(deps, text, cid=None):
    cid = cid or deps.store.create_conversation("alice")["conversation_id"]
    message = deps.store.append_message("alice", cid, "user", text, tokens=utils.message_tokens("user", text))
    return cid, message["message_id"]


def _run(deps, cid, mid, stopped=lambda: False):
    emitter = RecordingEmitter()
    result = run_turn(deps, "alice", cid, mid, f"reply-{mid}", emitter, stopped)
    return result, emitter


def test_turn_streams_and_persists_the_reply(deps, fake_llm):
    cid, mid = _ask(deps, "Hello?")
    result, emitter = _run(deps, cid, mid)
    assert emitter.text() == fake_llm.reply == result.text
    stored = deps.store.list_messages("alice", cid)[-1]
    assert stored["content"] == fake_llm.reply and stored["finish_reason"] == "stop"
    assert stored["agent"] == "chat" and stored["parent_message_id"] == mid
    assert stored["tokens"] == utils.message_tokens("assistant", fake_llm.reply)
    kinds = [kind for kind, _ in emitter.events]
    assert kinds[-2:] == ["usage", "done"]
    usage = dict(emitter.events)["usage"]
    assert usage["context_budget"] == 4096 - 256 and usage["completion_tokens"] > 0
    sent = fake_llm.requests[-1].body
    assert sent["messages"][-1] == {"role": "user", "content": "Hello?"} and sent["max_tokens"] == 256


def test_turn_stop_keeps_partial_reply_marked_stopped(deps, fake_llm):
    fake_llm.tokens, fake_llm.token_delay = 50, 0.01
    cid, mid = _ask(deps, "Count slowly")
    seen = []
    result, _ = _run(deps, cid, mid, stopped=lambda: seen.append(1) or len(seen) > 5)
    stored = deps.store.list_messages("alice", cid)[-1]
    assert stored["finish_reason"] == "stopped" and stored["content"] == result.text
    assert 0 < len(result.text.split()) < 50


def test_turn_error_mid_stream_keeps_partial_and_tells_user(deps, fake_llm):
    fake_llm.tokens = 30
    fake_llm.fail_next(Fault.disconnect(after=5))
    cid, mid = _ask(deps, "Go")
    result, emitter = _run(deps, cid, mid)
    assert result.finish_reason == "error" and result.text
    assert any(kind == "error" for kind, _ in emitter.events)
    assert deps.store.list_messages("alice", cid)[-1]["finish_reason"] == "error"
    assert len(deps.store.list_messages("alice", cid)) == 2  # no duplicate after the retry


def test_turn_context_length_error_replans_tighter_once(deps, fake_llm):
    fake_llm.fail_next(Fault.context_length(limit=4096))
    cid, mid = _ask(deps, "Hi")
    result, _ = _run(deps, cid, mid)
    assert result.finish_reason == "stop" and len(fake_llm.requests) == 2


@pytest.mark.parametrize("fault", [Fault.empty_stream(), Fault.empty_stream(done=True)], ids=["no-events", "done-only"])
def test_turn_empty_stream_replans_tighter_once(deps, fake_llm, fault):
    fake_llm.fail_next(fault)
    cid, mid = _ask(deps, "Hi")
    result, emitter = _run(deps, cid, mid)
    assert (result.text, result.finish_reason, len(fake_llm.requests)) == (fake_llm.reply, "stop", 2)
    assert "error" not in dict(emitter.events)


def test_turn_empty_stream_twice_is_a_clear_error_and_never_a_stored_success(deps, fake_llm):
    fake_llm.fail_next(Fault.empty_stream(), Fault.empty_stream(done=True))
    cid, mid = _ask(deps, "Hi")
    result, emitter = _run(deps, cid, mid)
    assert dict(emitter.events)["error"].startswith("The model returned nothing: the conversation may be too long")
    stored = deps.store.list_messages("alice", cid)
    assert [(m["role"], m["content"], m["finish_reason"]) for m in stored] == [("user", "Hi", None),
                                                                              ("assistant", "", "error")]
    assert (result.finish_reason, dict(emitter.events)["done"]["finish_reason"], len(fake_llm.requests)) == (
        "error", "error", 2)


def test_turn_over_a_llama_cpp_window_is_a_clear_error(deps, fake_llm):
    fake_llm.n_ctx = 20  # MAX_TOKENS says 4096: the server's real window is far smaller
    cid, mid = _ask(deps, "Tell me " + "more " * 30)
    _result, emitter = _run(deps, cid, mid)
    assert "returned nothing" in dict(emitter.events)["error"] and len(fake_llm.requests) == 2
    assert [(m["content"], m["finish_reason"]) for m in deps.store.list_messages("alice", cid)][1:] == [("", "error")]


def test_turn_vllm_flat_error_mid_stream_keeps_partial_marked_error(deps, fake_llm):
    fake_llm.fail_next(Fault.vllm_flat_error("CUDA out of memory", after=3))
    cid, mid = _ask(deps, "Go")
    result, emitter = _run(deps, cid, mid)
    assert (result.text, result.finish_reason) == ("Hello! How can", "error")
    assert "error mid-reply: CUDA out of memory" in dict(emitter.events)["error"]
    stored = deps.store.list_messages("alice", cid)[-1]
    assert (stored["content"], stored["finish_reason"]) == ("Hello! How can", "error")


@pytest.mark.parametrize("how", ["empty-stream", "llama-cpp-window"])
def test_turn_empty_summary_is_never_stored(deps, fake_llm, how):
    cid = deps.store.create_conversation("alice")["conversation_id"]
    for turn in range(40):  # far over the budget: the summariser is called first
        for role, text in (("user", f"question {turn}" + " a" * 150), ("assistant", " b" * 100)):
            deps.store.append_message("alice", cid, role, text, tokens=utils.message_tokens(role, text))
    _, mid = _ask(deps, "And now?", cid)
    if how == "empty-stream":
        fake_llm.fail_next(Fault.empty_stream(done=True))  # taken by the summariser's call
    else:
        fake_llm.n_ctx = 3000  # MAX_TOKENS says 4096: the summariser's ~3,300-token call is over the real window
    result, emitter = _run(deps, cid, mid)
    assert fake_llm.requests[0].body["messages"][0]["content"].startswith("Summarise")
    assert deps.store.get_conversation("alice", cid)["summary"] is None
    assert (result.text, result.finish_reason) == (fake_llm.reply, "stop") and "error" not in dict(emitter.events)
    notices = [detail for kind, detail in emitter.events if kind == "status" and detail["phase"] == "notice"]
    assert "could not be summarised" in notices[0]["detail"]  # the page says what was left out


def test_turn_stop_closes_the_upstream_connection(deps, fake_llm):
    """Stop must end generation on the server: it sees the client leave (reads are paced here)."""
    fake_llm.tokens, fake_llm.token_delay = 400, 0.01
    cid, mid = _ask(deps, "Count slowly")
    seen = []
    result, _ = _run(deps, cid, mid, stopped=lambda: seen.append(1) or len(seen) > 5)
    assert result.finish_reason == "stopped" and deps.config.STREAM_FLUSH_MS > 0
    assert fake_llm.client_gone.wait(2) and fake_llm.disconnects == 1


def test_turn_without_endpoint_says_so(deps, tmp_path):
    deps.config.OPENAI_BASE_URL = None
    cid, mid = _ask(deps, "Anyone there?")
    result, _emitter = _run(deps, cid, mid)
    assert result.text == NOT_CONFIGURED and result.finish_reason == "error"


def test_turn_message_too_large_is_a_clear_error(deps, fake_llm):
    cid, mid = _ask(deps, " a" * 5000)
    result, emitter = _run(deps, cid, mid)
    assert result is None and "upload it as a file" in dict(emitter.events)["error"]
    assert fake_llm.requests == []


def test_turn_long_conversation_summarises_and_every_request_fits(deps, fake_llm):
    fake_llm.reply = " b" * 60
    cid = deps.store.create_conversation("alice")["conversation_id"]
    for turn in range(80):
        _, mid = _ask(deps, f"question {turn}" + " a" * 60, cid)
        _run(deps, cid, mid)
    summaries = [r for r in fake_llm.requests if r.body["messages"][0]["content"].startswith("Summarise")]
    assert summaries  # the summariser ran, through the same endpoint
    for body in (r.body for r in fake_llm.requests):  # chat and summariser requests alike
        assert utils.request_tokens(body["messages"]) + body["max_tokens"] <= 4096
    assert deps.store.get_conversation("alice", cid)["summary"] is not None
    assert len(deps.store.list_messages("alice", cid)) == 160  # history keeps every message


def test_turn_calibration_learns_from_reported_usage(deps, fake_llm):
    cid, mid = _ask(deps, "Hello?")
    _run(deps, cid, mid)
    assert deps.calibration.ratio("fake-model") >= 1.0


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                 HealthCheck.too_slow])
@given(sizes=st.lists(st.integers(0, 3000), min_size=1, max_size=400), window=st.integers(1024, 16384),
       reply=st.integers(16, 900))
def test_turn_property_requests_reaching_the_server_fit(tmp_path_factory, fake_llm, sizes, window, reply):
    """Random stored histories: what the fake server receives always fits, ends with the newest
    user message verbatim, and the history keeps every message."""
    store = SqliteStore(tmp_path_factory.mktemp("prop") / "p.sqlite3")
    store.migrate()
    config = TestConfig(tmp_path_factory.mktemp("cfg"), MAX_TOKENS=window, REPLY_TOKENS=min(reply, window - 64),
                        OPENAI_BASE_URL=fake_llm.url, MODEL="fake-model")
    deps = TurnDeps(store, config, Providers(config, client_options={"max_retries": 0, "read_timeout": 5}),
                    Calibration())
    cid = store.create_conversation("alice")["conversation_id"]
    for index, size in enumerate(sizes):
        role = "user" if index % 2 == 0 or index == len(sizes) - 1 else "assistant"
        store.append_message("alice", cid, role, " a" * size, tokens=utils.message_tokens(role, " a" * size))
    newest = store.list_messages("alice", cid)[-1]
    before = len(fake_llm.requests)
    _run(deps, cid, newest["message_id"])
    for request in fake_llm.requests[before:]:
        assert utils.request_tokens(request.body["messages"]) + request.body["max_tokens"] <= window
    chats = [r.body for r in fake_llm.requests[before:] if not r.body["messages"][0]["content"].startswith("Summ")]
    for body in chats:
        assert body["messages"][-1] == {"role": "user", "content": newest["content"]}
    assert len(store.list_messages("alice", cid)) == len(sizes) + (1 if chats else 0)
    store.close()
