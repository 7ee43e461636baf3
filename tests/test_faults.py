"""Fault injection: the model endpoint, Redis and SQLite misbehave, and nothing is lost.

Every case goes through the real socket flow and checks what a user would see: a clear `error`
event (or refusal), their message stored exactly once, any partial reply stored with its finish
reason, no duplicate after a retry, and never an HTTP 500. The module counts the cases, the
messages lost and the 500s seen, prints them (`pytest -s`) and asserts the totals at the end.
"""
from __future__ import annotations

import itertools
import sqlite3
import subprocess
import threading
import time
from collections import Counter
from typing import NamedTuple, Self

import pytest
import redis
import requests
from fake_llm import Fault
from test_chat_e2e import Page, wait_until
from test_gunicorn import Gunicorn
from test_socket_events import payloads, wait_for

from agents.providers import Providers
from app import socketio

TALLY = Counter(cases=0, lost=0, http_500=0)
FAST_ENDPOINT = {"read_timeout": 1.5, "backoff_base": 0.05}  # the client's 60 s / 0.5 s have no setting
REPLY = ["Hello!", " How", " can", " I", " help", " you", " today?"]  # the fake's default reply, as tokens


@pytest.fixture(scope="module", autouse=True)
def fault_summary():
    """Print the module's totals after its last case, and hold them to zero losses and zero 500s."""
    yield
    print(f"\nfault cases run: {TALLY['cases']}, messages lost: {TALLY['lost']}, "
          f"HTTP 500 responses: {TALLY['http_500']}")
    assert TALLY["cases"] > 0 and TALLY["lost"] == 0 and TALLY["http_500"] == 0, dict(TALLY)


def record_case(stored: list[dict], sent: list[str], replies: dict[str, str], http_500: int) -> None:
    """Count one case: a sent message not stored exactly once, or a reply (id -> text the user
    saw) not stored with at least that text, is lost."""
    users = Counter(m["content"] for m in stored if m["role"] == "user")
    kept = {m["message_id"]: m["content"] for m in stored if m["role"] == "assistant"}
    lost = sum(users[text] != 1 for text in sent)
    lost += sum(not kept.get(reply_id, "\0").startswith(seen) for reply_id, seen in replies.items())
    TALLY.update(cases=1, lost=lost, http_500=http_500)
    assert lost == 0 and http_500 == 0, (users, sent, replies)


def is_500(status: int) -> bool:
    """A server fault: any 5xx but 503, the clear 'unavailable, retry' answer."""
    return status >= 500 and status != 503


class Tab:
    """One browser on an in-process app: its HTTP client, its socket, and the 500s the app answered."""

    def __init__(self, app, http=None) -> None:
        self.app = app
        self.http = http or app.test_client()
        self.http.get("/")
        self.sock = socketio.test_client(app, flask_test_client=self.http)
        self.errors_500 = app.config.setdefault("SEEN_500", [])

    def send(self, text: str, conversation_id: str | None = None, client_id: str | None = None) -> dict:
        payload = {"message": text, "client_message_id": client_id or text[:100]}
        if conversation_id:
            payload["conversation_id"] = conversation_id
        return self.sock.emit("send_message", payload, callback=True)

    def stored(self, conversation_id: str) -> list[dict]:
        return self.http.get(f"/load_conversation/{conversation_id}").get_json()["conversation"]


def watched_app(make_app, **settings):
    """An app whose every 5xx answer but 503 is recorded in app.config['SEEN_500']."""
    app = make_app(**settings)
    seen = app.config["SEEN_500"] = []

    @app.after_request
    def remember(response):
        if is_500(response.status_code):
            seen.append(response.status_code)
        return response
    return app


# -- the model endpoint ------------------------------------------------------------------------

class EndpointCase(NamedTuple):
    faults: tuple
    finish: str               # the stored reply's finish_reason
    error: str | None         # words of the error event; None: the user sees no error
    kept: int                 # tokens of the reply the user gets (and that are stored)
    posts: int                # chat requests the endpoint receives (retries included)
    min_s: float = 0.0        # the least time the turn takes (a Retry-After honoured)


ENDPOINT_CASES = {
    "429-retry-after-then-success": EndpointCase((Fault.http(429, retry_after="0.6"),), "stop", None, 7, 2, 0.6),
    "429-persisting": EndpointCase((Fault.http(429, retry_after="0.2"),) * 4, "error", "rate limiting", 0, 4, 0.6),
    "500-then-success": EndpointCase((Fault.http(500),), "stop", None, 7, 2),
    "500-persisting": EndpointCase((Fault.http(500),) * 4, "error", "unavailable (HTTP 500)", 0, 4),
    "connection-reset": EndpointCase((Fault.reset(),) * 4, "error", "Could not connect", 0, 4),
    "read-timeout-before-first-token": EndpointCase((Fault.hang(10),), "error", "did not answer within", 0, 1),
    "silent-after-headers": EndpointCase((Fault.hang(10, after=0),), "error", "stopped sending", 0, 1),
    "hang-mid-stream": EndpointCase((Fault.hang(10, after=3),), "error", "stopped sending", 3, 1),
    "disconnect-mid-stream": EndpointCase((Fault.disconnect(after=3),), "error", "closed the connection", 3, 1),
    "garbage-body": EndpointCase((Fault.garbage(only=True),), "error", "not look like an OpenAI", 0, 1),
    "garbage-line-mid-stream": EndpointCase((Fault.garbage(after=2),), "stop", None, 7, 1),
    "html-page": EndpointCase((Fault.html(),), "error", "web page", 0, 1),
    "error-chunk-mid-stream": EndpointCase((Fault.error_chunk(after=3),), "error", "error mid-reply", 3, 1),
    "vllm-flat-error-mid-stream": EndpointCase((Fault.vllm_flat_error(after=3),), "error", "error mid-reply", 3, 1),
    "empty-stream-then-success": EndpointCase((Fault.empty_stream(),), "stop", None, 7, 2),  # re-planned tighter
    "empty-stream-persisting": EndpointCase((Fault.empty_stream(), Fault.empty_stream(done=True)), "error",
                                            "returned nothing", 0, 2),
}


@pytest.fixture
def tab(make_app, fake_llm):
    """A browser on an app served by the fake endpoint, with short read timeouts and backoff."""
    app = watched_app(make_app, OPENAI_BASE_URL=fake_llm.url, MAX_TOKENS=4096, REPLY_TOKENS=256)
    app.extensions["chat_providers"] = Providers(app.config["CHAT"], sleep=socketio.sleep,
                                                 client_options=FAST_ENDPOINT)
    page = Tab(app)
    yield page
    page.sock.disconnect()


def chat_posts(fake_llm) -> int:
    return sum(r.method == "POST" for r in fake_llm.requests)


@pytest.mark.parametrize("name", list(ENDPOINT_CASES))
def test_faults_endpoint_failure_keeps_message_and_partial_reply(name, tab, fake_llm):
    case = ENDPOINT_CASES[name]
    fake_llm.fail_next(*case.faults)
    started = time.monotonic()
    ack = tab.send(f"Question about {name}")
    events = wait_for(tab.sock, "response_done", 20)
    assert ack["ok"] and time.monotonic() - started >= case.min_s
    streamed = "".join(c["chunk"] for c in payloads(events, "response_chunk"))
    assert streamed == "".join(REPLY[:case.kept]) and chat_posts(fake_llm) == case.posts
    errors = payloads(events, "error")
    assert [(e["message_id"], case.error in e["message"]) for e in errors] == (
        [(ack["reply_id"], True)] if case.error else [])
    assert payloads(events, "response_done")[0]["finish_reason"] == case.finish
    reply = tab.stored(ack["conversation_id"])[-1]
    assert (reply["message_id"], reply["content"], reply["finish_reason"]) == (ack["reply_id"], streamed, case.finish)
    replies = {ack["reply_id"]: streamed, **retry(tab, ack, f"Question about {name}")}
    stored = tab.stored(ack["conversation_id"])
    assert len(stored) == 1 + len(replies)  # the message once, each reply once
    record_case(stored, [f"Question about {name}"], replies, len(tab.errors_500))


def retry(tab: Tab, ack: dict, text: str) -> dict[str, str]:
    """What the page offers after a failure: re-sending (a no-op) and Regenerate (a new reply)."""
    again = tab.send(text, ack["conversation_id"])
    assert again["duplicate"] is True and again["message_id"] == ack["message_id"]
    redo = tab.sock.emit("regenerate", {"conversation_id": ack["conversation_id"],
                                        "message_id": ack["message_id"]}, callback=True)
    done = payloads(wait_for(tab.sock, "response_done", 20), "response_done")[0]
    assert redo["ok"] and (done["message_id"], done["finish_reason"]) == (redo["reply_id"], "stop")
    return {redo["reply_id"]: "".join(REPLY)}


def test_faults_stop_while_endpoint_is_silent_keeps_partial_as_stopped(tab, fake_llm):
    fake_llm.fail_next(Fault.hang(10, after=3))
    ack = tab.send("Tell me something slowly")
    events = wait_for(tab.sock, "response_chunk", 10)
    stop = tab.sock.emit("stop_generation", {"conversation_id": ack["conversation_id"]}, callback=True)
    events += wait_for(tab.sock, "response_done", 20)
    assert stop["stopping"] is True and payloads(events, "error") == []  # the user asked for this end
    assert payloads(events, "response_done")[0]["finish_reason"] == "stopped"
    reply = tab.stored(ack["conversation_id"])[-1]
    shown = "".join(c["chunk"] for c in payloads(events, "response_chunk"))
    # Stop can land before the last of the three tokens is read (reads are paced): what is kept is
    # exactly what the page was sent, at least the first token, never more than the endpoint sent.
    assert (reply["content"], reply["finish_reason"]) == (shown, "stopped")
    assert shown.startswith(REPLY[0]) and "".join(REPLY[:3]).startswith(shown)
    record_case(tab.stored(ack["conversation_id"]), ["Tell me something slowly"],
                {ack["reply_id"]: shown}, len(tab.errors_500))


def test_faults_stop_closes_the_upstream_connection_at_once(tab, fake_llm):
    """Stop ends generation on the server too: the endpoint sees the client leave right after it."""
    fake_llm.tokens, fake_llm.token_delay = 400, 0.01
    ack = tab.send("Count to four hundred")
    events = wait_for(tab.sock, "response_chunk", 10)
    stop = tab.sock.emit("stop_generation", {"conversation_id": ack["conversation_id"]}, callback=True)
    stopped_at = time.monotonic()
    events += wait_for(tab.sock, "response_done", 10)
    assert stop["stopping"] is True and fake_llm.client_gone.wait(2) and fake_llm.disconnects == 1
    assert time.monotonic() - stopped_at < 2.5  # well before the 4 s the whole reply takes
    shown = "".join(c["chunk"] for c in payloads(events, "response_chunk"))
    reply = tab.stored(ack["conversation_id"])[-1]
    assert (reply["content"], reply["finish_reason"]) == (shown, "stopped") and len(shown.split()) < 400
    record_case(tab.stored(ack["conversation_id"]), ["Count to four hundred"], {ack["reply_id"]: shown},
                len(tab.errors_500))


def test_faults_over_a_llama_cpp_window_is_a_clear_error_then_regenerate_works(tab, fake_llm):
    """llama.cpp answers a streamed prompt longer than its window with HTTP 200 and nothing else."""
    fake_llm.n_ctx = 20
    text = "Summarise this for me: " + "words " * 40
    ack = tab.send(text)
    events = wait_for(tab.sock, "response_done", 20)
    errors = payloads(events, "error")
    assert [e["message_id"] for e in errors] == [ack["reply_id"]] and "returned nothing" in errors[0]["message"]
    assert payloads(events, "response_done")[0]["finish_reason"] == "error" and chat_posts(fake_llm) == 2
    reply = tab.stored(ack["conversation_id"])[-1]
    assert (reply["message_id"], reply["content"], reply["finish_reason"]) == (ack["reply_id"], "", "error")
    fake_llm.n_ctx = None  # a bigger window (or a shorter message): Regenerate answers
    replies = {ack["reply_id"]: "", **retry(tab, ack, text)}
    record_case(tab.stored(ack["conversation_id"]), [text], replies, len(tab.errors_500))


# -- a busy SQLite file ------------------------------------------------------------------------

BUSY_TIMEOUT_S = 1.0


class WriteLock:
    """BEGIN IMMEDIATE on the SQLite file from another connection, as another process's long write
    would: held until `seconds` pass or the block ends, whichever is first."""

    def __init__(self, path, seconds: float = 60.0) -> None:
        self.path, self.seconds = str(path), seconds
        self.locked, self.release = threading.Event(), threading.Event()
        self.thread = threading.Thread(target=self._hold, daemon=True)

    def _hold(self) -> None:
        db = sqlite3.connect(self.path, isolation_level=None)
        db.execute("BEGIN IMMEDIATE")
        self.locked.set()
        self.release.wait(self.seconds)
        db.execute("ROLLBACK")
        db.close()

    def __enter__(self) -> Self:
        self.thread.start()
        assert self.locked.wait(5)
        return self

    def __exit__(self, *exc_info) -> None:
        self.release.set()
        self.thread.join(5)


@pytest.fixture
def math_tab(make_app):
    """A browser on an app without an endpoint (the math agent answers), its store's busy timeout short:
    the store waits 10 s by default and has no setting for it, so the holder gets a store built here."""
    from storage.sqlite_store import SqliteStore
    app = watched_app(make_app)
    store = SqliteStore(app.config["CHAT"].sqlite_path, busy_timeout_s=BUSY_TIMEOUT_S)
    store.migrate()
    app.extensions["chat_store"].store = store
    page = Tab(app)
    yield page
    page.sock.disconnect()


def answered(tab: Tab, text: str, conversation_id: str | None = None) -> dict:
    """Send and wait for the reply; the ack."""
    ack = tab.send(text, conversation_id)
    assert ack["ok"], ack
    wait_for(tab.sock, "response_done", 10)
    return ack


def test_faults_sqlite_lock_shorter_than_busy_timeout_is_waited_out(math_tab):
    cid = answered(math_tab, "/math 1+1")["conversation_id"]
    with WriteLock(math_tab.app.config["CHAT"].sqlite_path, seconds=BUSY_TIMEOUT_S / 2):
        started = time.monotonic()
        ack = math_tab.send("/math 2+2", cid)
        waited = time.monotonic() - started
    assert ack["ok"] and BUSY_TIMEOUT_S / 4 < waited < BUSY_TIMEOUT_S * 2  # it waited for the lock, then stored
    wait_for(math_tab.sock, "response_done", 10)
    stored = math_tab.stored(cid)
    assert [m["role"] for m in stored] == ["user", "assistant"] * 2 and stored[-1]["content"].endswith("**4**")
    record_case(stored, ["/math 1+1", "/math 2+2"], {ack["reply_id"]: "1."}, len(math_tab.errors_500))


def test_faults_sqlite_lock_longer_than_busy_timeout_is_a_clear_error(math_tab):
    cid = answered(math_tab, "/math 1+1")["conversation_id"]
    math_tab.sock.get_received()
    with WriteLock(math_tab.app.config["CHAT"].sqlite_path):
        refused = [math_tab.send("/math 3+3", cid), math_tab.send("/math 5+5")]  # an old and a new conversation
        http = math_tab.http.post("/start_conversation", json={})
    errors = [e["message"] for e in payloads(math_tab.sock.get_received(), "error")]
    assert [r["ok"] for r in refused] == [False, False] and errors == [r["message"] for r in refused]
    assert all("database is busy" in message for message in errors)
    assert http.status_code == 503 and "database is busy" in http.get_json()["message"]
    again = answered(math_tab, "/math 3+3", cid)  # the page's retry, same client_message_id
    fresh = answered(math_tab, "/math 5+5")
    stored = math_tab.stored(cid)
    assert [m["content"] for m in stored if m["role"] == "user"] == ["/math 1+1", "/math 3+3"]
    assert next(m["content"] for m in math_tab.stored(fresh["conversation_id"])) == "/math 5+5"
    record_case(stored + math_tab.stored(fresh["conversation_id"]), ["/math 1+1", "/math 3+3", "/math 5+5"],
                {again["reply_id"]: "1.", fresh["reply_id"]: "1."}, len(math_tab.errors_500))


# -- Redis stopped and started again -----------------------------------------------------------

OUTAGE_PATHS = ("/", "/health", "/health/ready", "/list_conversations", "/load_conversation/{cid}",
                "/search_conversations?q=story", "/get_config", "/start_conversation")
STORY, DURING_OUTAGE = "Tell me a long story", "Sent while Redis was down"


@pytest.fixture
def redis_app(tmp_path, private_redis, fake_llm):
    """Production serving (gunicorn, eventlet) with sessions, Socket.IO queue, in-flight replies, rate
    limits and breakers in the test's own Redis; and a way to start that Redis again on its port."""
    (tmp_path / "home").mkdir()
    server = Gunicorn(tmp_path / "home", tmp_path / "instance", tmp_path / "gunicorn.log",
                      REDIS_URL=private_redis["url"], OPENAI_BASE_URL=fake_llm.url, RATELIMIT_ENABLED="true")
    restarted = []

    def start_again():
        args = private_redis["process"].args
        restarted.append(subprocess.Popen(args, stdout=subprocess.DEVNULL))
        wait_until(lambda: _pings(private_redis["url"]), 10)
    yield server, start_again
    server.stop()
    for process in restarted:
        process.terminate()
        process.wait(timeout=10)


def _pings(url: str) -> bool:
    try:
        return bool(redis.from_url(url).ping())
    except redis.ConnectionError:
        return False


def stored_row(sqlite_path, message_id: str):
    """(content, finish_reason) of a message, read from the store's file directly (no session needed)."""
    with sqlite3.connect(sqlite_path) as db:
        return db.execute("SELECT content, finish_reason FROM messages WHERE message_id = ?", (message_id,)).fetchone()


def counting_session(seen: list) -> requests.Session:
    """A browser's HTTP session that notes every 5xx but 503 the server answers."""
    http = requests.Session()
    http.hooks["response"].append(lambda response, **_: seen.append(response.status_code)
                                  if is_500(response.status_code) else None)
    return http


def done_ids(page: Page) -> list[tuple[str, str]]:
    return [(event, data["message_id"]) for event, data in page.events if event == "response_done"]


def check_outage_answers(http: requests.Session, base: str, cid: str) -> None:
    """Every route answers at once with 200 or a clear JSON 503, never a 500 or a hang."""
    for path in OUTAGE_PATHS:
        started = time.monotonic()
        method = http.post if path == "/start_conversation" else http.get
        answer = method(base + path.format(cid=cid), timeout=10)
        assert time.monotonic() - started < 5 and answer.status_code in (200, 503), (path, answer.status_code)
        body = answer.json()
        assert answer.status_code == 200 or "Redis" in body.get("message", "") or body["redis"]["ok"] is False
    assert http.get(base + "/health/live", timeout=5).status_code == 200


def test_faults_redis_outage_answers_clearly_and_recovers_by_itself(redis_app, private_redis, fake_llm, tmp_path):
    fake_llm.tokens, fake_llm.token_delay = 100, 0.02
    server, start_redis_again = redis_app
    seen_500: list = []
    page = Page(server.base, http=counting_session(seen_500))
    ack = page.sio.call("send_message", {"message": STORY, "client_message_id": "story"}, timeout=10)
    wait_until(lambda: len(page.chunks()) > 20)
    redis.from_url(private_redis["url"]).save()  # a restart keeps the data, as a persistent Redis does
    private_redis["process"].terminate()
    private_redis["process"].wait(timeout=10)
    seen_before_outage = page.chunks()
    check_outage_answers(page.http, server.base, ack["conversation_id"])
    refused = page.sio.call("send_message", {"message": DURING_OUTAGE, "client_message_id": "outage",
                                             "conversation_id": ack["conversation_id"]}, timeout=10)
    assert refused["ok"] is False and "Sessions are unavailable" in refused["message"]
    sqlite_path = tmp_path / "instance" / "chat.sqlite3"
    wait_until(lambda: stored_row(sqlite_path, ack["reply_id"]) is not None, 20)  # stored while Redis is down
    assert stored_row(sqlite_path, ack["reply_id"]) == ("".join(fake_llm.pieces(None)[0]), "stop")
    start_redis_again()
    wait_until(lambda: page.http.get(server.base + "/health", timeout=5).status_code == 200, 30)
    wait_until(lambda: redis.from_url(private_redis["url"]).pubsub_channels() != [], 60)  # Socket.IO queue back
    again = page.sio.call("send_message", {"message": DURING_OUTAGE, "client_message_id": "outage",
                                           "conversation_id": ack["conversation_id"]}, timeout=10)
    assert again["ok"] is True, again
    wait_until(lambda: ("response_done", again["reply_id"]) in done_ids(page), 20)  # the Socket.IO queue works again
    stored = page.stored(ack["conversation_id"])
    assert [(m["role"], m["finish_reason"]) for m in stored] == [("user", None), ("assistant", "stop")] * 2
    page.sio.disconnect()
    full = "".join(fake_llm.pieces(None)[0])
    record_case(stored, [STORY, DURING_OUTAGE], {ack["reply_id"]: full, again["reply_id"]: full}, len(seen_500))
    assert full.startswith(seen_before_outage)


# -- two tabs, one conversation, 1,000 messages ------------------------------------------------

MESSAGES_PER_TAB = 500
BUSY = "still being generated"


def send_all(tab: Tab, conversation_id: str, texts: list[str], busy: Counter, failures: list) -> None:
    """Send each text in order; while the conversation is busy with a reply, send it again (same id)."""
    try:
        for number, text in enumerate(texts):
            while True:
                ack = tab.send(text, conversation_id, client_id=f"{id(tab)}-{number}")
                if ack["ok"]:
                    break
                assert BUSY in ack["message"], ack
                busy.update(retries=1)
                time.sleep(0.002)
            tab.sock.get_received()  # the page would render these; here they only take memory
    except Exception as error:  # noqa: BLE001 - reported by the test, not lost in the thread
        failures.append(error)


def test_faults_two_tabs_sending_500_messages_each_lose_and_reorder_nothing(make_app):
    app = watched_app(make_app)
    tabs = [Tab(app), None]
    tabs[1] = Tab(app, http=tabs[0].http)  # a second tab of the same browser
    cid = tabs[0].http.post("/start_conversation", json={}).get_json()["conversation_id"]
    sent = [[f"/math {n}+{offset}" for n in range(MESSAGES_PER_TAB)] for offset in (1, 100000)]
    busy, failures = Counter(), []
    threads = [threading.Thread(target=send_all, args=(tab, cid, texts, busy, failures))
               for tab, texts in zip(tabs, sent, strict=False)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert failures == [] and not any(thread.is_alive() for thread in threads)
    wait_until(lambda: len(tabs[0].stored(cid)) == 4 * MESSAGES_PER_TAB, 20)
    stored = tabs[0].stored(cid)
    check_order(stored, sent)
    assert busy["retries"] > 0 and switches(stored, sent[0]) > MESSAGES_PER_TAB // 10  # they really contended
    for tab in tabs:
        tab.sock.disconnect()
    record_case(stored, sent[0] + sent[1], {}, len(tabs[0].errors_500))


def check_order(stored: list[dict], sent: list[list[str]]) -> None:
    """Each tab's messages in the order it sent them, each followed at once by its own reply."""
    users, replies = stored[0::2], stored[1::2]
    assert {m["role"] for m in users} == {"user"} and {m["role"] for m in replies} == {"assistant"}
    for user, reply in zip(users, replies, strict=False):
        a, b = user["content"].removeprefix("/math ").split("+")
        assert reply["parent_message_id"] == user["message_id"] and reply["content"].endswith(f"**{int(a) + int(b)}**")
    texts = [m["content"] for m in users]
    for own in sent:
        mine = set(own)
        assert [text for text in texts if text in mine] == own


def switches(stored: list[dict], first_tab: list[str]) -> int:
    """How often the stored user messages change from one tab's to the other's."""
    mine = set(first_tab)
    owners = [m["content"] in mine for m in stored if m["role"] == "user"]
    return sum(a != b for a, b in itertools.pairwise(owners))
