"""Socket abuse (issue 12): event floods, connection exhaustion, sockets that can never be served,
and sockets left behind by a log-out. The attacks run for real: a bare WebSocket client floods
gunicorn (eventlet and gevent) from 127.0.0.2 while a page on 127.0.0.1 keeps being served."""
from __future__ import annotations

import os
import socket
import statistics
import subprocess
import threading
import time
import uuid

import pytest
import requests
from raw_socketio import HEARTBEAT, JOIN, RawSocket, Refused
from test_chat_e2e import Page
from test_gunicorn import GUNICORN, ROOT, start_gunicorn  # noqa: F401  (a fixture)

from app import socketio
from web.socket_guard import SLOW_DOWN, ConnectionCap, TokenBucket
from web.socket_transport import YieldingSocket

WORKERS = ["eventlet", "gevent"]
FLOODER = "127.0.0.2"
POLL = "/socket.io/?EIO=4&transport=polling"
# The guard's settings in the gunicorn tests: the default rate, a small cap per address.
GUARD = {"RATELIMIT_ENABLED": "true", "SOCKET_EVENTS_PER_S": "20", "SOCKET_EVENT_BURST": "60",
         "MAX_SOCKETS_PER_IP": "5"}
FLOOD_S = 5.0
DROPPED, CUT = 'chat_rate_limited_total{scope="socket_events"}', 'chat_socket_refused_total{reason="flooding"}'
P99_BOUND_S = 0.5  # generous: a shared CI machine; the benchmark's target is 200 ms


# -- units --------------------------------------------------------------------------------------

def test_token_bucket_allows_a_burst_then_the_rate():
    bucket = TokenBucket(rate=20, burst=60, now=0.0)
    assert all(bucket.take(0.0) for _ in range(60))
    assert not bucket.take(0.0)
    assert bucket.take(0.05) and not bucket.take(0.05)  # one token per 1/20 s
    assert sum(bucket.take(100.0) for _ in range(100)) == 60  # never more saved than the burst


def test_connection_cap_counts_per_address_and_in_all():
    cap = ConnectionCap(per_address=2, total=3)
    assert [cap.acquire("a"), cap.acquire("a"), cap.acquire("a")] == [None, None, "address_cap"]
    assert [cap.acquire("b"), cap.acquire("c")] == [None, "instance_cap"]
    cap.release("a")
    assert cap.acquire("c") is None and cap.counts == {"a": 1, "b": 1, "c": 1}


def test_socket_guard_lifts_rate_and_address_cap_without_rate_limits(make_app):
    guard = make_app(RATELIMIT_ENABLED=False, MAX_SOCKETS=5).extensions["chat_socket_guard"]
    assert (guard.rate, guard.cap.per_address, guard.cap.limit) == (0, 0, 5)  # the instance cap stays


def test_connection_cap_of_zero_is_no_limit():
    cap = ConnectionCap(per_address=0, total=0)
    assert {cap.acquire("a") for _ in range(1000)} == {None}


def test_socket_transport_yields_before_each_read_and_can_be_cut():
    left, right = socket.socketpair()
    slept = []
    wrapped = YieldingSocket(left, slept.append)
    right.sendall(b"frame")
    assert (wrapped.recv(10), slept) == (b"frame", [0])
    wrapped.abort()
    with pytest.raises(OSError):
        wrapped.recv(10)
    assert right.recv(10) == b""  # the peer sees the connection end
    left.close()
    right.close()


def test_socket_transport_is_installed_on_the_apps_engineio_server(app):
    """It replaces an entry of Engine.IO's private driver table: this fails if an upgrade moves it."""
    eio = app.extensions["socketio"].server.eio
    assert eio._async["websocket"].__name__ == "FairWebSocket"


# -- the Engine.IO handshake, through Flask's test client (polling transport) ----------------------

def handshake(client, address: str = "127.0.0.1"):
    return client.get(POLL, environ_base={"REMOTE_ADDR": address})


def browser(app, address: str = "127.0.0.1"):
    """A client that loaded the page: it has a session cookie."""
    client = app.test_client()
    client.get("/", environ_base={"REMOTE_ADDR": address})
    return client


def session_id(opened) -> str:
    """The Engine.IO session id in a handshake's answer."""
    return opened.get_data(as_text=True).split('"sid":"')[1].split('"')[0]


def close(client, opened) -> None:
    """Send Engine.IO's close packet for the session `opened` answered."""
    client.post(f"{POLL}&sid={session_id(opened)}", data="1")


def test_socket_handshake_without_session_cookie_is_refused(app):
    refused = handshake(app.test_client())
    assert refused.status_code == 401 and "Load the page first" in refused.get_json()
    assert handshake(browser(app)).status_code == 200


def test_socket_handshake_past_the_address_cap_is_refused_until_one_closes(make_app):
    app = make_app(MAX_SOCKETS_PER_IP=2, RATELIMIT_ENABLED=True)
    client = browser(app)
    first, second = handshake(client), handshake(client)
    assert (first.status_code, second.status_code, handshake(client).status_code) == (200, 200, 401)
    assert handshake(browser(app, "10.0.0.9"), "10.0.0.9").status_code == 200  # another address
    close(client, first)
    assert handshake(client).status_code == 200


def test_socket_handshake_past_the_instance_cap_is_refused(make_app):
    app = make_app(MAX_SOCKETS=2)
    answers = [handshake(browser(app, f"10.0.0.{i}"), f"10.0.0.{i}").status_code for i in range(3)]
    assert answers == [200, 200, 401]
    assert app.test_client().get("/health/live").status_code == 200


def test_socket_handshake_not_logged_in_is_refused_when_auth_is_required(make_app):
    app = make_app(AUTH_REQUIRED=True, REGISTRATION="open")
    anonymous = browser(app)
    assert handshake(anonymous).status_code == 401
    member = app.test_client()
    member.post("/register", json={"username": "walrus", "password": "long enough password"})
    assert handshake(member).status_code == 200


def test_socket_refused_at_connect_loses_its_transport(app):
    client = app.test_client()
    client.set_cookie("session", uuid.uuid4().hex)  # a cookie, but no session behind it
    sid = session_id(handshake(client))
    client.post(f"{POLL}&sid={sid}", data="40")
    refusal = client.get(f"{POLL}&sid={sid}").get_data(as_text=True)
    assert refusal.startswith("44") and "Load the page first" in refusal
    assert client.get(f"{POLL}&sid={sid}").get_data(as_text=True) == "1"  # Engine.IO's close packet
    assert sid not in app.extensions["socketio"].server.eio.sockets


@pytest.fixture
def frozen(make_app):
    """Rate limits on, the socket guard's clock stopped: no token comes back during a test."""
    app = make_app(RATELIMIT_ENABLED=True)
    app.extensions["chat_socket_guard"].clock = lambda: 1000.0
    return app


def test_socket_events_over_the_rate_are_dropped_and_the_page_told_once(frozen):
    app, client = frozen, browser(frozen)
    sid = session_id(handshake(client))
    client.post(f"{POLL}&sid={sid}", data="40")
    for batch in range(5):  # 80 events with acks: the burst (60, the connect included) gets through
        client.post(f"{POLL}&sid={sid}", data="\x1e".join(f'42{batch * 16 + i}["heartbeat"]' for i in range(16)))
    received: list[str] = []
    while (acked := sum(p.startswith("43") for p in received)) < 59 or (
            acked == 59 and not any('"error"' in p for p in received)):  # all in, or too many acks
        received += client.get(f"{POLL}&sid={sid}").get_data(as_text=True).split("\x1e")
    acks = [p for p in received if p.startswith("43")]
    assert sorted(acks) == sorted(f'43{i}[{{"ok":true}}]' for i in range(59))  # in order of arrival
    assert [p for p in received if '"error"' in p] == [f'42["error",{{"message":"{SLOW_DOWN}"}}]']
    assert sid in app.extensions["socketio"].server.eio.sockets  # 20 over the rate: dropped, not cut


def test_socket_flood_over_polling_is_dropped_then_closed(frozen):
    app, client = frozen, browser(frozen)
    sid = session_id(handshake(client))
    client.post(f"{POLL}&sid={sid}", data="40")
    dropped, cut = (metric(client, DROPPED), metric(client, CUT))
    sockets = app.extensions["socketio"].server.eio.sockets
    for _ in range(20):  # Engine.IO takes at most 16 packets per request
        client.post(f"{POLL}&sid={sid}", data="\x1e".join([HEARTBEAT] * 16))
        if sid not in sockets:
            break
    assert sid not in sockets
    assert (metric(client, DROPPED) - dropped, metric(client, CUT) - cut) == (120, 1)  # 60 let through
    assert client.post(f"{POLL}&sid={sid}", data="\x1e".join([HEARTBEAT] * 16)).status_code == 400  # not a 500


def metric(client, name: str) -> float:
    for line in client.get("/metrics").get_data(as_text=True).splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return 0.0


# -- logging out --------------------------------------------------------------------------------

def test_logout_disconnects_the_sockets_of_the_old_session(app):
    http = browser(app)
    sock = socketio.test_client(app, flask_test_client=http)
    other = socketio.test_client(app, flask_test_client=browser(app))  # another browser stays
    conversation = http.post("/add_few_shot_example", json={"user_prompt": "Hi", "assistant_response": "Hello"})
    conversation_id = conversation.get_json()["conversation_id"]
    assert sock.emit("join_conversation", {"conversation_id": conversation_id}, callback=True)["ok"]
    sid = sock.eio_sid and app.extensions["socketio"].server.manager.sid_from_eio_sid(sock.eio_sid, "/")
    http.post("/logout")
    assert not sock.is_connected() and other.is_connected()
    rooms = app.extensions["socketio"].server.manager.rooms.get("/", {})
    assert [room for room, members in rooms.items() if sid in members] == []


# -- real floods through gunicorn ---------------------------------------------------------------

class Probe(threading.Thread):
    """The other client: GET /health/live every 20 ms (a failure counts as 2 s)."""

    def __init__(self, base: str) -> None:
        super().__init__(daemon=True)
        self.base, self.times, self.stopping = base, [], threading.Event()

    def run(self) -> None:
        with requests.Session() as http:
            while not self.stopping.is_set():
                started = time.monotonic()
                try:
                    ok = http.get(self.base + "/health/live", timeout=2).status_code == 200
                except requests.RequestException:
                    ok = False
                self.times.append(time.monotonic() - started if ok else 2.0)
                self.stopping.wait(0.02)

    def p99(self) -> float:
        self.stopping.set()
        self.join()
        return statistics.quantiles(self.times, n=100)[98]


def flooder_cookie(base: str) -> str:
    with requests.Session() as http:
        adapter = requests.adapters.HTTPAdapter()
        adapter.init_poolmanager(1, 1, source_address=(FLOODER, 0))
        http.mount("http://", adapter)
        http.get(base + "/", timeout=10)
        return "; ".join(f"{k}={v}" for k, v in http.cookies.items())


def flood_events(port: int, cookie: str, result: dict) -> None:
    """Full speed from one socket for FLOOD_S, reconnecting when cut, as a script would."""
    deadline = time.monotonic() + FLOOD_S
    while time.monotonic() < deadline:
        try:
            sock = RawSocket.open("127.0.0.1", port, cookie=cookie, source=FLOODER, timeout=2)
        except (Refused, OSError):
            result["refused"] = result.get("refused", 0) + 1
            time.sleep(0.05)
            continue
        try:
            sock.flood([HEARTBEAT, JOIN], deadline - time.monotonic())
        except ConnectionError:
            result["cut"] = result.get("cut", 0) + 1
        finally:
            sock.close()


def leave(page: Page) -> None:
    page.sio.disconnect()
    page.http.close()


def chat_turn(page: Page) -> bool:
    page.done.clear()
    ack = page.sio.call("send_message", {"message": "Are you there?"}, timeout=10)
    return ack["ok"] and page.done.wait(10)


@pytest.mark.parametrize("worker", WORKERS)
def test_abuse_event_flood_is_cut_while_another_client_is_served(start_gunicorn, fake_llm, worker):
    fake_llm.tokens, fake_llm.token_delay = 20, 0.005
    server = start_gunicorn(WORKER_CLASS=worker, OPENAI_BASE_URL=fake_llm.url, **GUARD)
    page, cookie, flood = Page(server.base), flooder_cookie(server.base), {}
    probe = Probe(server.base)
    probe.start()
    flooder = threading.Thread(target=flood_events, args=(server.port, cookie, flood))
    flooder.start()
    time.sleep(1)
    assert chat_turn(page), "the other client's reply did not stream during the flood"
    flooder.join()
    leave(page)
    assert probe.p99() < P99_BOUND_S, sorted(probe.times)[-5:]
    assert flood.get("cut", 0) >= 1 and flood.get("refused", 0) >= 1  # cut, then cooled down
    metrics = requests.get(server.base + "/metrics", timeout=5).text
    assert 'chat_socket_refused_total{reason="flooding"}' in metrics


@pytest.mark.parametrize("worker", WORKERS)
def test_abuse_connection_flood_is_capped_while_another_client_is_served(start_gunicorn, fake_llm,
                                                                          worker):
    fake_llm.tokens, fake_llm.token_delay = 20, 0.005
    server = start_gunicorn(WORKER_CLASS=worker, OPENAI_BASE_URL=fake_llm.url, **GUARD)
    cookie, probe = flooder_cookie(server.base), Probe(server.base)
    probe.start()
    held, answers = [], []
    for i in range(60):  # 30 with the session cookie, 30 without
        try:
            held.append(RawSocket.open("127.0.0.1", server.port, cookie=cookie if i % 2 else None, source=FLOODER))
            answers.append("open" if i % 2 else "open without cookie")
        except Refused:
            answers.append("refused")
    page = Page(server.base)  # another address: still served
    assert chat_turn(page)
    leave(page)
    assert probe.p99() < P99_BOUND_S
    assert (answers.count("open"), answers.count("open without cookie")) == (int(GUARD["MAX_SOCKETS_PER_IP"]), 0)
    for sock in held:
        sock.close()


@pytest.mark.parametrize("worker", WORKERS)
def test_abuse_socket_refused_at_connect_is_closed_by_the_server(start_gunicorn, worker):
    server = start_gunicorn(WORKER_CLASS=worker)
    sock = RawSocket.open("127.0.0.1", server.port, cookie=f"session={uuid.uuid4().hex}", connect=False)
    sock.send("40")
    with pytest.raises(Refused, match="Load the page first"):
        sock.await_connect()
    try:
        assert sock.closed_by_server(seconds=5)
    finally:
        sock.close()


def test_gunicorn_refuses_a_socket_cap_that_leaves_no_room_for_http(tmp_path):
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "WORKER_CONNECTIONS": "100", "MAX_SOCKETS": "100"}
    done = subprocess.run([str(GUNICORN), "-c", "gunicorn.conf.py", "app:app"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode != 0 and "configuration error: MAX_SOCKETS" in done.stdout + done.stderr
