"""Compaction off the reply's path (agents/compaction.py), against the fake model server.

Budget here: MAX_TOKENS 4096, REPLY_TOKENS 256, so the prompt room is 3840 tokens and COMPACT_AT
(0.8) starts compaction at 3072. The summariser is made slow by a gate the test opens, so the
assertions are about order (who waited for whom), never about wall-clock time.
"""
import itertools
import threading

import pytest
from conftest import run_under_eventlet

import utils
from agents import compaction
from agents.emitter import RecordingEmitter
from agents.turn import run_turn
from app import socketio

ROOM = 4096 - 256
GATE_SECONDS = 10  # a gate nobody opens fails the test instead of hanging it


@pytest.fixture
def deps(turn_deps):
    return turn_deps()


class SlowSummariser:
    """The fake model's summariser answers: each waits at the gate; distinct texts, in call order."""

    def __init__(self, fake_llm, barrier: threading.Barrier | None = None):
        self.gate, self.barrier, self.count = threading.Event(), barrier, itertools.count(1)
        self.started = threading.Semaphore(0)
        fake_llm.responder = self.respond

    def respond(self, body: dict) -> str:
        if not is_summariser(body):
            return "A short reply."
        self.started.release()
        if self.barrier is not None:
            self.barrier.wait(GATE_SECONDS)  # both racers have read the same checkpoint
        assert self.gate.wait(GATE_SECONDS)
        return f"Summary number {next(self.count)}."


def is_summariser(body: dict) -> bool:
    return body["messages"][0]["content"].startswith("Summarise")


def summariser_calls(fake_llm) -> int:
    return sum(1 for r in fake_llm.requests if r.body and is_summariser(r.body))


def chat_requests(fake_llm) -> list[dict]:
    return [r.body for r in fake_llm.requests if r.body and not is_summariser(r.body)]


def add(store, cid, role, text) -> dict:
    return store.append_message("alice", cid, role, text, tokens=utils.message_tokens(role, text))


def fill(deps, cid, until: int) -> None:
    """Exchanges of ~130 tokens until the conversation's request would be about `until` tokens."""
    last = None
    for turn in itertools.count():
        history = deps.store.list_messages("alice", cid)
        if utils.request_size(history, None, deps.config.SYSTEM_PROMPT) > until:
            return
        last = add(deps.store, cid, "user", f"question {turn}" + " a" * 60)
        deps.store.append_message("alice", cid, "assistant", " b" * 60, parent_message_id=last["message_id"],
                                  tokens=utils.message_tokens("assistant", " b" * 60))


def ask(deps, cid, text="And now?"):
    """Store a user message and answer it as a turn does; (reply, emitter)."""
    mid = add(deps.store, cid, "user", text)["message_id"]
    emitter = RecordingEmitter()
    return run_turn(deps, "alice", cid, mid, f"reply-{mid}", emitter, lambda: False), emitter


def in_background(function, *args):
    thread = threading.Thread(target=function, args=args, daemon=True)
    thread.start()
    return thread


def test_compaction_crossing_turn_streams_at_once_and_compacts_after(deps, fake_llm):
    """A turn over COMPACT_AT that still fits sends without summarising; the summary is made after
    the reply, and the next turn sends it without calling the summariser."""
    SlowSummariser(fake_llm).gate.set()
    cid = deps.store.create_conversation("alice")["conversation_id"]
    fill(deps, cid, until=int(0.8 * ROOM) + 50)  # past the threshold, well inside the room
    reply, emitter = ask(deps, cid)
    assert reply.finish_reason == "stop" and summariser_calls(fake_llm) == 0
    assert "summarising" not in [detail["phase"] for kind, detail in emitter.events if kind == "status"]
    assert deps.store.get_conversation("alice", cid)["summary"] is None
    assert compaction.after_reply(deps, "alice", cid, reply_id_of(deps, cid), None, in_background)
    assert compaction.wait(cid, GATE_SECONDS)
    summary = deps.store.get_conversation("alice", cid)["summary"]
    assert summary and summary["content"] == "Summary number 1." and summariser_calls(fake_llm) == 1
    reply, emitter = ask(deps, cid, "One more?")
    sent = chat_requests(fake_llm)[-1]["messages"]
    assert sent[1]["content"] == utils.SUMMARY_PREFIX + "Summary number 1." and summariser_calls(fake_llm) == 1
    assert utils.request_size([], summary, "") < int(0.8 * ROOM)


def reply_id_of(deps, cid) -> str:
    return deps.store.list_messages("alice", cid)[-1]["message_id"]


def test_compaction_turn_that_fits_does_not_wait_for_a_running_one(deps, fake_llm):
    slow = SlowSummariser(fake_llm)
    cid = deps.store.create_conversation("alice")["conversation_id"]
    fill(deps, cid, until=int(0.8 * ROOM) + 50)
    assert compaction.after_reply(deps, "alice", cid, reply_id_of(deps, cid), None, in_background)
    assert slow.started.acquire(timeout=GATE_SECONDS)  # the summariser is busy, and stays so
    reply, emitter = ask(deps, cid)
    assert reply.finish_reason == "stop" and emitter.text() == "A short reply."
    assert not slow.gate.is_set() and deps.store.get_conversation("alice", cid)["summary"] is None
    slow.gate.set()
    assert compaction.wait(cid, GATE_SECONDS)
    assert deps.store.get_conversation("alice", cid)["summary"]["content"] == "Summary number 1."


def test_compaction_turn_that_cannot_fit_waits_for_the_running_one(deps, fake_llm):
    """Over the room without a new summary: the turn waits for the background one instead of
    summarising the same checkpoint again, and sends it."""
    slow = SlowSummariser(fake_llm)
    cid = deps.store.create_conversation("alice")["conversation_id"]
    fill(deps, cid, until=int(0.8 * ROOM) + 50)
    assert compaction.after_reply(deps, "alice", cid, reply_id_of(deps, cid), None, in_background)
    assert slow.started.acquire(timeout=GATE_SECONDS)
    result = {}
    turn = in_background(lambda: result.update(zip(("reply", "emitter"), ask(deps, cid, "more " * 900), strict=False)))
    turn.join(0.3)  # time to misbehave: summarise inline or send an over-budget request
    assert turn.is_alive() and chat_requests(fake_llm) == [] and summariser_calls(fake_llm) == 1
    slow.gate.set()
    turn.join(GATE_SECONDS)
    assert result["reply"].finish_reason == "stop" and summariser_calls(fake_llm) == 1
    sent = chat_requests(fake_llm)[-1]
    assert sent["messages"][1]["content"] == utils.SUMMARY_PREFIX + "Summary number 1."
    assert utils.request_tokens(sent["messages"]) + sent["max_tokens"] <= 4096


def test_compaction_racing_compactions_store_one_summary_per_checkpoint(deps, fake_llm):
    """Two compactions of one checkpoint (two processes: the local claim cannot see the other) both
    summarise; the store keeps the first to arrive and refuses the second."""
    slow = SlowSummariser(fake_llm, threading.Barrier(2))
    cid = deps.store.create_conversation("alice")["conversation_id"]
    fill(deps, cid, until=int(0.8 * ROOM) + 50)
    leaf, results = reply_id_of(deps, cid), []
    racers = [in_background(lambda: results.append(compaction.compact(deps, "alice", cid, leaf, "fake-model")))
              for _ in range(2)]
    slow.gate.set()
    for racer in racers:
        racer.join(GATE_SECONDS)
    stored = [summary for summary in results if summary is not None]
    assert len(results) == 2 and len(stored) == 1 and summariser_calls(fake_llm) == 2
    assert deps.store.get_conversation("alice", cid)["summary"] == stored[0]


def test_compaction_one_per_conversation_at_a_time(deps, fake_llm):
    slow = SlowSummariser(fake_llm)
    cid = deps.store.create_conversation("alice")["conversation_id"]
    fill(deps, cid, until=int(0.8 * ROOM) + 50)
    leaf = reply_id_of(deps, cid)
    assert compaction.after_reply(deps, "alice", cid, leaf, None, in_background) is True
    assert compaction.after_reply(deps, "alice", cid, leaf, None, in_background) is False
    slow.gate.set()
    assert compaction.wait(cid, GATE_SECONDS) and summariser_calls(fake_llm) == 1


def test_compaction_not_due_under_the_threshold(deps, fake_llm):
    cid = deps.store.create_conversation("alice")["conversation_id"]
    fill(deps, cid, until=1000)
    assert compaction.after_reply(deps, "alice", cid, reply_id_of(deps, cid), None, in_background) is False
    assert compaction.wait(cid) is False and fake_llm.requests == []


@pytest.fixture
def chat_app(make_app, fake_llm):
    return make_app(OPENAI_BASE_URL=fake_llm.url, MAX_TOKENS=4096, REPLY_TOKENS=256)


def test_compaction_socket_turns_never_wait_for_the_summariser(chat_app, fake_llm):
    """Through send_message: a long conversation gets its summary after replies (the hook in
    _generate); no turn shows the page a 'summarising' status, and every request fits."""
    fake_llm.responder = lambda body: "Summary." if is_summariser(body) else " b" * 60
    browser = chat_app.test_client()
    browser.get("/")
    sock = socketio.test_client(chat_app, flask_test_client=browser)
    cid, statuses = None, []
    for turn in range(40):
        ack = sock.emit("send_message", {"message": f"question {turn}" + " a" * 60,
                                         **({"conversation_id": cid} if cid else {})}, callback=True)
        cid = ack["conversation_id"]
        events = wait_for_done(sock)
        statuses += [e["args"][0]["phase"] for e in events if e["name"] == "status"]
        compaction.wait(cid, GATE_SECONDS)  # the next turn would not wait; this keeps the count exact
    sock.disconnect()
    assert "summarising" not in statuses and summariser_calls(fake_llm) >= 1
    for body in chat_requests(fake_llm):
        assert utils.request_tokens(body["messages"]) + body["max_tokens"] <= 4096
    assert any(body["messages"][1]["content"] == utils.SUMMARY_PREFIX + "Summary." for body in chat_requests(fake_llm))


def wait_for_done(sock, seconds: float = 10.0) -> list[dict]:
    events, done = [], threading.Event()
    for _ in range(int(seconds / 0.02)):
        events += sock.get_received()
        if any(e["name"] == "response_done" for e in events):
            return events
        done.wait(0.02)
    raise AssertionError(f"no response_done; got {[e['name'] for e in events]}")


WAIT_UNDER_EVENTLET = """
from agents import compaction
done = compaction._claim("c")
eventlet.spawn_after(0.2, compaction._release, "c", done)
started = time.perf_counter()
assert compaction.wait("c", 5) and 0.15 < time.perf_counter() - started < 2
during = [t for t in ticks if t >= started]
assert len(during) > 20 and max(b - a for a, b in zip(during, during[1:])) < 0.1, "the hub stalled"
assert compaction.wait("c") is False
print("ok")
"""


def test_compaction_wait_is_green_under_eventlet(tmp_path):
    """A turn waiting for a background compaction lets the worker serve everyone else meanwhile."""
    run_under_eventlet(WAIT_UNDER_EVENTLET, tmp_path)


def test_compaction_counts_pinned_facts_when_deciding_to_fold(deps, fake_llm):
    """Below the threshold without pins, over it with them: the background compaction starts
    because pinned facts ride in every request's system prompt."""
    SlowSummariser(fake_llm).gate.set()
    cid = deps.store.create_conversation("alice")["conversation_id"]
    fill(deps, cid, until=int(0.8 * ROOM) - 400)
    assert not compaction.after_reply(deps, "alice", cid, reply_id_of(deps, cid), None, in_background)
    deps.store.set_pinned_facts("alice", cid, [f"fact {n}: " + "pinned " * 60 for n in range(4)])
    assert compaction.after_reply(deps, "alice", cid, reply_id_of(deps, cid), None, in_background)
    assert compaction.wait(cid, GATE_SECONDS)
    assert deps.store.get_conversation("alice", cid)["summary"]["content"] == "Summary number 1."
