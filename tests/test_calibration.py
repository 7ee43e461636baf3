"""The calibration ratio: learned from usage in the stream, or by a probe when a server streams
none (llama-cpp-python), and replies cut short without a finish reason are errors."""
import pytest
from fake_llm import Fault

import utils
from agents import calibration, llm_client
from agents.calibration import Calibration
from agents.emitter import RecordingEmitter
from agents.providers import Providers
from agents.turn import TurnDeps, run_turn
from config import TestConfig
from storage.sqlite_store import SqliteStore

FAST = {"max_retries": 0, "read_timeout": 5}


@pytest.fixture
def deps(tmp_path, fake_llm):
    store = SqliteStore(tmp_path / "calibration.sqlite3")
    store.migrate()
    config = TestConfig(tmp_path, MAX_TOKENS=4096, REPLY_TOKENS=64, OPENAI_BASE_URL=fake_llm.url, MODEL="fake-model")
    return TurnDeps(store, config, Providers(config, client_options=FAST), Calibration())


def _turn(deps, text="Tell me about tokenizers and why they differ between model families."):
    cid = deps.store.create_conversation("alice")["conversation_id"]
    message = deps.store.append_message("alice", cid, "user", text, tokens=utils.message_tokens("user", text))
    emitter = RecordingEmitter()
    reply = run_turn(deps, "alice", cid, message["message_id"], f"reply-{message['message_id']}", emitter,
                     lambda: False)
    return cid, reply, emitter


def _chat_requests(fake):
    return [r.body for r in fake.requests if r.method == "POST"]


def test_usage_in_the_stream_sets_the_ratio_without_a_probe(deps, fake_llm):
    fake_llm.token_ratio = 1.3
    _, reply, _ = _turn(deps)
    assert reply.usage and reply.followups == []
    assert deps.calibration.ratio("fake-model") == pytest.approx(1.3, abs=0.02)
    assert len(_chat_requests(fake_llm)) == 1


def test_a_server_without_usage_in_streams_is_probed_after_the_reply(deps, fake_llm):
    fake_llm.token_ratio, fake_llm.send_usage = 1.3, False
    _, reply, _ = _turn(deps)
    assert reply.usage is None and deps.calibration.ratio("fake-model") == 1.0  # nothing learned yet
    assert len(reply.followups) == 1
    reply.followups[0]()
    chat, probe = _chat_requests(fake_llm)
    assert probe["stream"] is False and probe["max_tokens"] == 1 and "stream_options" not in probe
    assert probe["messages"] == chat["messages"]  # the very prompt we counted
    assert deps.calibration.ratio("fake-model") == pytest.approx(1.3, abs=0.02)
    learned = deps.calibration.ratio("fake-model")  # the server says nothing more: the budget keeps headroom
    assert deps.calibration.budget_ratio("fake-model") == pytest.approx(learned * calibration.PROBED_HEADROOM)


def test_a_ratio_from_reported_usage_is_budgeted_as_it_is(deps, fake_llm):
    fake_llm.token_ratio = 1.3
    _turn(deps)
    assert deps.calibration.budget_ratio("fake-model") == deps.calibration.ratio("fake-model")


def test_probes_stop_after_a_few_replies_of_a_model(deps, fake_llm):
    fake_llm.token_ratio, fake_llm.send_usage = 1.2, False
    replies = [_turn(deps)[1] for _ in range(calibration.PROBES_PER_MODEL + 2)]
    assert [len(r.followups) for r in replies] == [1] * calibration.PROBES_PER_MODEL + [0, 0]


def test_a_failed_probe_changes_nothing(deps, fake_llm):
    fake_llm.token_ratio, fake_llm.send_usage = 1.5, False
    _, reply, _ = _turn(deps)
    fake_llm.fail_next(Fault.http(500))
    reply.followups[0]()  # logged, not raised
    assert deps.calibration.ratio("fake-model") == 1.0


def test_no_probe_for_a_reply_that_failed(deps, fake_llm):
    fake_llm.send_usage = False
    fake_llm.fail_next(Fault.disconnect(after=2))
    _, reply, _ = _turn(deps)
    assert reply.finish_reason == "error" and reply.followups == []


def test_a_reply_cut_short_without_a_finish_reason_is_an_error(deps, fake_llm, monkeypatch):
    """llama-cpp-python ends an interrupted reply with a clean [DONE] and no finish reason."""
    monkeypatch.setattr(llm_client, "_ENDPOINTS_THAT_FINISH", set())
    _turn(deps)  # the endpoint is seen sending finish reasons
    fake_llm.fail_next(Fault.interrupted(after=3))
    cid, reply, emitter = _turn(deps)
    assert reply.finish_reason == "error" and emitter.text() == reply.text != ""
    assert emitter.last("error") == llm_client.CUT_SHORT
    stored = deps.store.list_messages("alice", cid)[-1]
    assert stored["finish_reason"] == "error" and stored["content"] == reply.text


def test_an_endpoint_that_never_sends_finish_reasons_is_taken_at_its_word(deps, fake_llm, monkeypatch):
    monkeypatch.setattr(llm_client, "_ENDPOINTS_THAT_FINISH", set())
    fake_llm.finish_reason = None
    _, reply, emitter = _turn(deps)
    assert reply.finish_reason == "stop" and reply.text == fake_llm.reply
    assert emitter.last("error") is None


def test_prompt_tokens_reads_the_servers_count(fake_llm):
    fake_llm.token_ratio = 2.0
    messages = [{"role": "user", "content": "Count me, please."}]
    with llm_client.LLMClient(fake_llm.url, model="fake-model", max_retries=0) as client:
        assert client.prompt_tokens(messages) == round(utils.request_tokens(messages) * 2.0)


def test_the_app_probes_after_the_reply_is_done(make_app, fake_llm):
    """Through the socket: the probe goes out after response_done, and the app's ratio is learned."""
    import time

    from test_socket_events import wait_for

    from app import socketio
    fake_llm.token_ratio, fake_llm.send_usage = 1.25, False
    app = make_app(OPENAI_BASE_URL=fake_llm.url, MODEL="fake-model", MAX_TOKENS=4096, REPLY_TOKENS=64)
    browser = app.test_client()
    browser.get("/")
    sock = socketio.test_client(app, flask_test_client=browser)
    sock.emit("send_message", {"message": "How do tokenizers differ?"}, callback=True)
    wait_for(sock, "response_done")
    deadline = time.monotonic() + 10
    while len(_chat_requests(fake_llm)) < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    sock.disconnect()
    chat, probe = _chat_requests(fake_llm)
    assert chat["stream"] is True and probe["stream"] is False and probe["messages"] == chat["messages"]
    deadline = time.monotonic() + 5
    while app.extensions["chat_calibration"].ratio("fake-model") == 1.0 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert app.extensions["chat_calibration"].ratio("fake-model") == pytest.approx(1.25, abs=0.02)
