"""Fuzzing every Socket.IO event the server handles (Hypothesis; Flask-SocketIO's test client in
threading mode; no model endpoint, so a send that gets through is answered by the no-endpoint
banner or the math agent).

For each example, sent by one user (the "attacker"): the handler never raises; it acks
`{"ok": true, ...}` in the event's shape or `{"ok": false, "message"}` (also emitted as `error`);
the socket stays connected; a reply it started completes. And a second user (the "victim"),
connected the whole time, finds none of their stored data changed and still gets an answer to a
valid message afterwards.
"""
from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from agents.math.agent import shutdown as stop_math_worker
from agents.turn import NOT_CONFIGURED
from app import socketio
from web import generations

LIFECYCLE_EVENTS = {"connect", "disconnect"}
EVENT_KEYS = {
    "send_message": ("message", "conversation_id", "client_message_id", "document_id", "model",
                     "parent_message_id", "edit_of"),
    "regenerate": ("conversation_id", "message_id", "model"),
    "join_conversation": ("conversation_id",),
    "stop_generation": ("conversation_id",),
    "heartbeat": (),
}
BUDGET = {"send_message": 150, "regenerate": 80, "join_conversation": 50, "stop_generation": 50, "heartbeat": 30}
CONNECT_BUDGET = 25
SEQUENCE_BUDGET = 60  # lists of 2 to 8 events each
SUCCESS_KEYS = {
    "send_message": {"ok", "conversation_id", "message_id", "reply_id", "duplicate"},
    "regenerate": {"ok", "conversation_id", "message_id", "reply_id"},
    "join_conversation": {"ok", "conversation_id", "generating"},
    "stop_generation": {"ok", "stopping", "message_id"},
    "heartbeat": {"ok"},
}
REFUSAL_KEYS = {"ok", "message", "retry_after"}
FUZZ = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
REPLY_WAIT_S = 15.0


# -- strategies ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Ref:
    """An id known only once the app runs (a user's conversation, message or upload)."""

    name: str


REF_NAMES = [f"{who}.{what}" for who in ("attacker", "victim")
             for what in ("conversation", "user_message", "reply", "document")]
VALID_MESSAGES = ["hello", "Tell me about walruses", "What is 6 x 7?", "/math 2^10", "Solve 2x + 5 = 15",
                  "/ask walrus tusks", "/file summarise it", "/chat hi", "/math", "  padded  "]
SPECIAL_TEXT = ["", " ", "\t\n", "\x00", "a\x00b", "\ud800", "x\udfffy", "\udbff\udfff", "\ufeff", "\ufffe",
                "\u202eevil\u202c", "مرحبا بالعالم", "שלום עולם", "👩‍👩‍👧‍👦🏳️‍🌈", "\u200b\u2028\u2029",
                "<script>alert(1)</script>", '{"$ne": null}', "' OR 1=1 --", "../../etc/passwd", "%00",
                "NaN", "null", "c-1", "gpt-4o-mini", "conversation:x", "user:x"]
HUGE_PIECES = ["x", "é", "😀", "\u202eRTL ", "\x00", "\ud800", "hello world ", "a\n"]


def _repeat(piece: str, size: int) -> str:
    """`piece` repeated to about `size` bytes of UTF-8 (200_000 single bytes is the message limit)."""
    return piece * max(1, size // len(piece.encode("utf-8", "surrogatepass")))


huge_text = st.builds(_repeat, st.sampled_from(HUGE_PIECES),
                      st.sampled_from([199_999, 200_000, 200_001]) | st.integers(1_000, 200_001))
small_text = st.text(st.characters(exclude_categories=()), max_size=30)  # surrogates included
any_text = st.one_of(small_text, st.sampled_from(SPECIAL_TEXT), st.sampled_from(VALID_MESSAGES), huge_text)
uuid_text = st.uuids().map(str) | st.uuids().map(lambda u: str(u).upper()) | st.uuids().map(lambda u: u.hex)
ids = st.one_of(st.builds(Ref, st.sampled_from(REF_NAMES)), uuid_text)


def json_values(binary: bool = True):
    """Anything a Socket.IO client can send: JSON (NaN too: python-socketio clients send it),
    binary attachments, ids of both users, nested several levels deep."""
    scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), small_text,
                        st.sampled_from(SPECIAL_TEXT), ids, *([st.binary(max_size=8)] if binary else []))
    nested = st.recursive(scalars, lambda kids: st.lists(kids, max_size=3)
                          | st.dictionaries(st.text(max_size=8), kids, max_size=3), max_leaves=10)
    deep = st.builds(_nest, scalars, st.lists(st.booleans(), min_size=4, max_size=30))
    return st.one_of(scalars, nested, deep, huge_text)


def _nest(leaf, as_list: list[bool]):
    """`leaf` wrapped in len(as_list) levels of lists and {"conversation_id": ...} dicts."""
    for use_list in as_list:
        leaf = [leaf] if use_list else {"conversation_id": leaf}
    return leaf


values = json_values()


def _known(*whats: str):
    """Real ids: mostly the attacker's own (so requests get through), else the victim's (refused)."""
    return st.sampled_from([Ref(f"{who}.{what}") for who in ("attacker", "attacker", "victim") for what in whats])


PLAUSIBLE = {  # values that pass validation, so the success paths get fuzzed too
    "message": st.sampled_from(VALID_MESSAGES) | any_text,
    "conversation_id": st.none() | _known("conversation"),
    "message_id": _known("user_message", "reply"),
    "parent_message_id": st.none() | _known("user_message", "reply"),
    "edit_of": st.none() | _known("user_message"),
    "document_id": st.none() | _known("document"),
    "client_message_id": st.none() | st.sampled_from(["c-1", "c-2", "x" * 100, "x" * 101]),
    "model": st.none() | st.sampled_from(["gpt-4o-mini", ""]),
}
REQUIRED = {  # the keys a plausible payload always has, with values that can pass
    "send_message": {"message": PLAUSIBLE["message"]},
    "regenerate": {"conversation_id": _known("conversation"), "message_id": PLAUSIBLE["message_id"]},
    "join_conversation": {"conversation_id": _known("conversation")},
    "stop_generation": {"conversation_id": _known("conversation")},
    "heartbeat": {},
}


def payloads(event: str):
    """Mostly a dict of the event's keys, plausible (so some get through) with wild values for
    some optional keys and stray keys added; else every key wild or missing; else any value."""
    keys, required = EVENT_KEYS[event], REQUIRED[event]
    extra = st.dictionaries(st.text(max_size=12) | st.sampled_from(["__proto__", "$where", "ok"]), values, max_size=2)
    plausible = st.fixed_dictionaries(required, optional={key: PLAUSIBLE.get(key, ids) | values
                                                          for key in keys if key not in required})
    wild = st.fixed_dictionaries({}, optional={key: ids | values for key in keys})
    merged = {pick: st.builds(lambda stray, known: {**stray, **known}, extra, shape)
              for pick, shape in (("plausible", plausible), ("wild", wild))}
    return st.integers(0, 9).flatmap(lambda pick: merged["plausible"] if pick < 6
                                     else merged["wild"] if pick < 8 else values)


def event_args(event: str):
    """The event's arguments: usually one payload, sometimes none or several (a JS client may)."""
    return st.integers(0, 9).flatmap(lambda pick: payloads(event).map(lambda payload: (payload,)) if pick < 8
                                     else st.just(()) if pick == 8 else st.tuples(payloads(event), values))


steps = st.lists(st.sampled_from(sorted(EVENT_KEYS)).flatmap(
    lambda event: st.tuples(st.just(event), event_args(event))), min_size=2, max_size=8)
ODD_ARGS = [(), (None,), ({}, 1, {"conversation_id": Ref("attacker.conversation")})]
REGRESSIONS = {  # what this fuzzing found once, tried first on every run
    "send_message": [({"message": "a\ud800b"},), ({"message": "hi", "client_message_id": "\udfff"},),
                     ({"message": "hi", "conversation_id": "\udc00"},), ({"message": "hi", "document_id": "\udfff"},),
                     ({"message": "hi", "conversation_id": Ref("attacker.conversation"), "edit_of": "\udfff"},),
                     # a re-sent client_message_id must ack the conversation that holds it, creating none
                     ({"message": "again", "client_message_id": "resend-1"},),
                     ({"message": "again", "client_message_id": "resend-1"},),
                     ({"message": "again", "client_message_id": "resend-1",
                       "conversation_id": Ref("attacker.conversation")},)],
    "regenerate": [({"conversation_id": Ref("attacker.conversation"), "message_id": "\udfff"},)],
    "join_conversation": [({"conversation_id": "\ud800"},)],
    "stop_generation": [({"conversation_id": "\ud800"},)],
    "heartbeat": [],
}


# -- two users on one app -----------------------------------------------------------------------

class User:
    """One browser: the page load gives it an identity, then its socket stays connected."""

    def __init__(self, app) -> None:
        self.http = app.test_client()
        self.http.get("/")
        with self.http.session_transaction() as session:
            self.id = session["user_id"]
        self.sock = socketio.test_client(app, flask_test_client=self.http)
        assert self.sock.is_connected()
        self.log: list[dict] = []

    def received(self) -> list[dict]:
        """Every event this socket received since the log was last cleared."""
        self.log += self.sock.get_received()
        return self.log

    def wait_reply(self, reply_id: str) -> None:
        """Until the reply's response_done arrived and none of this user's replies is generating."""
        deadline = time.monotonic() + REPLY_WAIT_S
        while True:
            done = [e for e in self.received() if e["name"] == "response_done"
                    and e["args"][0]["message_id"] == reply_id]
            if done and generations.count(self.id) == 0:
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"reply {reply_id} never completed; got {[e['name'] for e in self.log]}")
            time.sleep(0.005)

    def converse(self, message: str, **fields) -> dict:
        self.log.clear()
        ack = self.sock.emit("send_message", {"message": message, **fields}, callback=True)
        assert ack["ok"] is True, ack
        self.wait_reply(ack["reply_id"])
        return ack


class World:
    """An attacker fuzzing the server and a victim whose data and service must not be affected."""

    def __init__(self, app) -> None:
        self.app, self.store = app, app.extensions["chat_store"].get()
        self.attacker, self.victim = User(app), User(app)
        self.refs = {**self._seed("attacker", self.attacker), **self._seed("victim", self.victim)}

    def _seed(self, name: str, user: User) -> dict:
        ack = user.converse(f"Tell me about walruses, says {name}")
        document = self.store.add_document(user.id, f"{name}.txt", f"hash-{name}",
                                           [f"Walruses have tusks ({name})."], [8])
        return {f"{name}.conversation": ack["conversation_id"], f"{name}.user_message": ack["message_id"],
                f"{name}.reply": ack["reply_id"], f"{name}.document": document["document_id"]}

    def resolve(self, value):
        if isinstance(value, Ref):
            return self.refs[value.name]
        if isinstance(value, dict):
            return {key: self.resolve(item) for key, item in value.items()}
        if isinstance(value, (list, tuple)):
            return type(value)(self.resolve(item) for item in value)
        return value

    def snapshot(self, user: User) -> dict:
        """Everything stored for the user: conversations, every message (with meta), uploads."""
        conversations = self.store.list_conversations(user.id, limit=1000)
        return {"conversations": conversations, "documents": self.store.list_documents(user.id, 1000),
                "messages": {c["conversation_id"]: self.store.list_messages(user.id, c["conversation_id"])
                             for c in conversations}}

    def attack(self, steps: list[tuple[str, tuple]]) -> list[str]:
        """Fuzzed events from the attacker, back to back (replies may still be generating), then
        the checks: what was accepted belongs to the attacker and its replies complete; the
        victim's data is untouched and the victim is still served. Returns the accepted events."""
        before = self.snapshot(self.victim)
        self._check_nothing_leaked()
        self.attacker.log.clear()
        acks = [(event, self._emit(event, args)) for event, args in steps]
        accepted = [(event, ack) for event, ack in acks if ack["ok"]]
        for event, ack in accepted:
            if event in ("send_message", "regenerate") and not ack.get("duplicate"):
                self.attacker.wait_reply(ack["reply_id"])
        for event, ack in accepted:
            self._check_success(event, ack)
        assert self.snapshot(self.victim) == before
        self.victim_still_served()
        self._check_nothing_leaked()
        return [event for event, _ in accepted]

    def _check_nothing_leaked(self) -> None:
        """No event the attacker's socket received names the victim's conversation or identity."""
        secrets = {self.refs["victim.conversation"], self.victim.id}
        leaked = [e for e in self.attacker.received() if any(secret in repr(e) for secret in secrets)]
        assert leaked == []

    def _emit(self, event: str, args: tuple) -> dict:
        """One event: a well-shaped ack, the socket still up, a refusal also emitted as `error`."""
        seen = len(self.attacker.received())
        ack = self.attacker.sock.emit(event, *self.resolve(args), callback=True)
        check_ack(event, ack)
        assert self.attacker.sock.is_connected()
        if not ack["ok"]:
            errors = [e["args"][0] for e in self.attacker.received()[seen:] if e["name"] == "error"]
            assert {"message": ack["message"]} in errors, errors
        return ack

    def _check_success(self, event: str, ack: dict) -> None:
        """Whatever the ack names is the attacker's; the messages a send or regenerate names are stored."""
        if "conversation_id" in ack:
            assert self.store.get_conversation(self.attacker.id, ack["conversation_id"]) is not None
        if event in ("send_message", "regenerate"):
            for key in ("message_id", "reply_id"):
                stored = self.store.get_message(self.attacker.id, ack[key])
                assert stored is not None and stored["conversation_id"] == ack["conversation_id"], (key, ack)
        if event == "join_conversation" and ack["generating"] is not None:
            assert set(ack["generating"]) >= {"message_id", "text"}

    def victim_still_served(self) -> None:
        """The victim, connected all along, sends a valid message and gets its reply."""
        ack = self.victim.converse("Are you still there?", conversation_id=self.refs["victim.conversation"])
        reply = self.store.get_message(self.victim.id, ack["reply_id"])
        assert reply["content"] == NOT_CONFIGURED and reply["role"] == "assistant"
        assert self.victim.sock.is_connected()

    def close(self) -> None:
        deadline = time.monotonic() + REPLY_WAIT_S
        while generations.count() and time.monotonic() < deadline:
            time.sleep(0.01)
        for user in (self.attacker, self.victim):
            if user.sock.is_connected():
                user.sock.disconnect()


def check_ack(event: str, ack) -> None:
    """A success in the event's shape, or a refusal with a message a person can read."""
    assert isinstance(ack, dict) and isinstance(ack.get("ok"), bool), ack
    if ack["ok"]:
        assert set(ack) <= SUCCESS_KEYS[event], ack
        assert event != "heartbeat" or ack == {"ok": True}
    else:
        assert set(ack) <= REFUSAL_KEYS, ack
        assert isinstance(ack["message"], str) and ack["message"].strip(), ack


def report(config, line: str) -> None:
    """A line on the terminal even while pytest captures output (module teardown)."""
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    capture = config.pluginmanager.get_plugin("capturemanager")
    if reporter is not None and capture is not None:
        with capture.global_and_fixture_disabled():
            reporter.write_line(line)


# -- fixtures and tests -------------------------------------------------------------------------

class Tally:
    """Fuzz examples run per event, and how many of them the server accepted (ok: true)."""

    def __init__(self) -> None:
        self.run, self.accepted = Counter(), Counter()

    def line(self) -> str:
        per_event = ", ".join(f"{event} {count} ({self.accepted[event]} accepted)"
                              for event, count in sorted(self.run.items()))
        return f"test_fuzz_socket: {sum(self.run.values())} fuzz examples run: {per_event}"


@pytest.fixture(scope="module")
def examples(request):
    """The module's tally, printed when the module ends."""
    tally = Tally()
    yield tally
    stop_math_worker()
    report(request.config, tally.line())


@pytest.fixture
def world(make_app):
    built = World(make_app())
    yield built
    built.close()


def test_fuzz_socket_every_handled_event_is_fuzzed(world):
    """A new socket event fails here until it is added to EVENT_KEYS (and so fuzzed)."""
    handled = set(socketio.server.handlers["/"])
    assert handled - LIFECYCLE_EVENTS == set(EVENT_KEYS)
    assert handled & LIFECYCLE_EVENTS == LIFECYCLE_EVENTS  # fuzzed by the connect test below


@pytest.mark.parametrize("event", sorted(EVENT_KEYS))
def test_fuzz_socket_event_acks_and_spares_other_users(world, examples, event):
    @settings(FUZZ, max_examples=BUDGET[event])
    @given(args=event_args(event))
    def attack(args):
        examples.run[event] += 1
        examples.accepted[event] += len(world.attack([(event, args)]))

    for args in reversed(ODD_ARGS + REGRESSIONS[event]):  # @example runs the outermost first
        attack = example(args=args)(attack)
    attack()
    assert examples.run[event] >= BUDGET[event]


def test_fuzz_socket_event_sequences_while_replies_generate(world, examples):
    """Events back to back without waiting for replies: stops, joins, regenerations and sends
    land while replies are generating (busy refusals, stopped replies, partial-reply snapshots)."""
    @settings(FUZZ, max_examples=SEQUENCE_BUDGET)
    @given(steps=steps)
    def attack(steps):
        examples.run["sequence"] += 1
        examples.accepted["sequence"] += bool(world.attack(steps))

    attack()
    assert examples.run["sequence"] >= SEQUENCE_BUDGET


def test_fuzz_socket_connect_with_any_auth(world, examples):
    """The auth payload is ignored: a page-loaded browser connects, one without a session is
    refused; connecting and disconnecting never disturbs the other user."""
    @settings(FUZZ, max_examples=CONNECT_BUDGET)
    @given(auth=st.none() | st.dictionaries(st.text(max_size=8), json_values(binary=False), max_size=3))
    def connect(auth):
        examples.run["connect"] += 1
        examples.accepted["connect"] += 1
        auth = world.resolve(auth)
        tab = socketio.test_client(world.app, flask_test_client=world.attacker.http, auth=auth)
        assert tab.is_connected() and [e["name"] for e in tab.get_received()] == ["response"]
        assert tab.emit("heartbeat", callback=True) == {"ok": True}
        tab.disconnect()
        assert not socketio.test_client(world.app, auth=auth).is_connected()
        world.victim_still_served()

    connect()
    assert examples.run["connect"] >= CONNECT_BUDGET
