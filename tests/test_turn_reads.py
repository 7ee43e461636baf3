"""A turn reads only the branch since the summary checkpoint, never the whole conversation."""
import pytest

import utils
from agents.emitter import RecordingEmitter
from agents.turn import run_turn
from storage.sqlite_store import SqliteStore


class CountingStore(SqliteStore):
    """The real SQLite store, refusing whole-conversation reads and counting the messages it returns."""

    def __init__(self, path):
        super().__init__(path)
        self.branch_reads: list[int] = []

    def list_messages(self, user_id, conversation_id):
        raise AssertionError("a turn must not read the whole conversation")

    def branch_since(self, user_id, conversation_id, leaf_id, checkpoint_id=None):
        found = super().branch_since(user_id, conversation_id, leaf_id, checkpoint_id)
        self.branch_reads.append(len(found))
        return found


@pytest.fixture
def deps(turn_deps):
    return turn_deps(CountingStore)


def _exchanges(store, cid, count, parent=None) -> str | None:
    for turn in range(count):
        asked = store.append_message("alice", cid, "user", f"q{turn}", tokens=utils.message_tokens("user", f"q{turn}"),
                                     parent_message_id=parent)
        parent = store.append_message("alice", cid, "assistant", f"a{turn}", parent_message_id=asked["message_id"],
                                      tokens=utils.message_tokens("assistant", f"a{turn}"))["message_id"]
    return parent


def _turn(deps, cid, parent, text="And now?"):
    mid = deps.store.append_message("alice", cid, "user", text, tokens=utils.message_tokens("user", text),
                                    parent_message_id=parent)["message_id"]
    return run_turn(deps, "alice", cid, mid, f"reply-{mid}", RecordingEmitter(), lambda: False)


def test_turn_reads_only_the_branch_since_the_checkpoint(deps, fake_llm):
    cid = deps.store.create_conversation("alice")["conversation_id"]
    checkpoint = _exchanges(deps.store, cid, 500)
    deps.store.set_summary("alice", cid, "They said q0 to q499.", checkpoint, 12)
    parent = _exchanges(deps.store, cid, 3, parent=checkpoint)
    reply = _turn(deps, cid, parent)
    assert reply.finish_reason == "stop"
    assert deps.store.branch_reads == [1 + 6 + 1]  # the checkpoint, three exchanges, the new message
    sent = fake_llm.requests[-1].body["messages"]
    assert sent[1]["content"] == utils.SUMMARY_PREFIX + "They said q0 to q499."
    assert [m["content"] for m in sent[2:]] == ["q0", "a0", "q1", "a1", "q2", "a2", "And now?"]


def test_turn_reads_the_regenerated_branch_not_its_sibling(deps, fake_llm):
    """A message sent on an older branch is answered with that branch's messages only."""
    cid = deps.store.create_conversation("alice")["conversation_id"]
    first = _exchanges(deps.store, cid, 2)
    _exchanges(deps.store, cid, 2, parent=first)  # the newest branch
    reply = _turn(deps, cid, first, "Back to the start?")
    assert reply.finish_reason == "stop" and deps.store.branch_reads == [5]
    sent = [m["content"] for m in fake_llm.requests[-1].body["messages"][1:]]
    assert sent == ["q0", "a0", "q1", "a1", "Back to the start?"]
