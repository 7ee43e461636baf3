"""The deployed topology for real: nginx (deploy/nginx.conf) in front of two gunicorn eventlet
instances sharing Redis and one SQLite file. Tabs are Socket.IO clients sharing a browser's cookies."""
from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import pytest
import requests
from test_chat_e2e import Page, wait_until
from test_gunicorn import start_gunicorn  # noqa: F401  (fixture)

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
from topology import Nginx, children, nginx_binary


@pytest.fixture
def topology(start_gunicorn, private_redis, fake_llm, tmp_path):
    """nginx on a free port in front of instances a and b; yields (nginx, {port: instance})."""
    if nginx_binary() is None:
        if os.environ.get("CI"):
            pytest.fail("nginx is required in CI (.ci/run installs Debian's nginx)")
        pytest.skip("nginx is not installed (apt-get install nginx)")
    settings = {"OPENAI_BASE_URL": fake_llm.url, "REDIS_URL": private_redis["url"], "INSTANCE_TTL_S": 2,
                "STREAM_FLUSH_MS": 20}
    instances = [start_gunicorn(name, **settings) for name in ("a", "b")]
    proxy = Nginx(tmp_path / "nginx", [i.port for i in instances]).start()
    yield proxy, {f"127.0.0.1:{i.port}": i for i in instances}
    proxy.stop()


def browser_on(proxy: Nginx) -> tuple[requests.Session, str]:
    """A new browser's cookie, and the instance (host:port) nginx sends it to."""
    http = requests.Session()
    http.get(proxy.base + "/", timeout=5)
    return http, http.get(proxy.base + "/", timeout=5).headers["X-Upstream"]


def kill(instance) -> None:
    """SIGKILL the gunicorn master and its worker: nothing gets to store or say anything."""
    worker = children(instance.process.pid)
    instance.process.send_signal(signal.SIGKILL)
    for pid in worker:
        os.kill(pid, signal.SIGKILL)
    instance.process.wait(10)


def test_topology_nginx_is_sticky_by_cookie_and_streams_to_every_tab(topology, fake_llm):
    proxy, instances = topology
    http, upstream = browser_on(proxy)
    assert all(browser_on_same(proxy, http) == upstream for _ in range(5))  # sticky: the cookie decides
    seen = {browser_on(proxy)[1] for _ in range(12)}  # other browsers spread over both instances
    assert seen == set(instances)
    fake_llm.tokens, fake_llm.token_delay = 40, 0.005
    tab_1 = Page(proxy.base, http=http)
    tab_2 = Page(proxy.base, http=http)
    ack = tab_1.sio.call("send_message", {"message": "Hello"}, timeout=10)
    assert tab_2.sio.call("join_conversation", {"conversation_id": ack["conversation_id"]}, timeout=10)["ok"]
    assert tab_1.done.wait(15) and tab_2.done.wait(15)
    assert tab_1.chunks() == "".join(fake_llm.pieces(None)[0]) and tab_1.chunks().endswith(tab_2.chunks())
    fake_llm.tokens, fake_llm.token_delay = 2000, 0.02
    tab_1.done.clear()
    tab_2.done.clear()
    ack = tab_1.sio.call("send_message", {"message": "Long", "conversation_id": ack["conversation_id"]}, timeout=10)
    wait_until(lambda: len(tab_2.chunks()) > 20)
    stop = tab_2.sio.call("stop_generation", {"conversation_id": ack["conversation_id"]}, timeout=10)
    assert stop == {"ok": True, "stopping": True, "message_id": ack["reply_id"]}
    assert tab_1.done.wait(10) and tab_2.done.wait(10)
    assert tab_1.stored(ack["conversation_id"])[-1]["finish_reason"] == "stopped"
    for tab in (tab_1, tab_2):
        tab.sio.disconnect()


def browser_on_same(proxy: Nginx, http: requests.Session) -> str:
    return http.get(proxy.base + "/health/live", timeout=5).headers["X-Upstream"]


def test_topology_nginx_killed_instance_loses_no_message(topology, fake_llm):
    """Kill the instance generating a reply: the other serves the reconnect and stores the reply as
    error with the text so far; the conversation goes on there."""
    proxy, instances = topology
    http, upstream = browser_on(proxy)
    fake_llm.tokens, fake_llm.token_delay = 2000, 0.02  # 40 s: far longer than the test
    tab = Page(proxy.base, http=http)
    ack = tab.sio.call("send_message", {"message": "A very long story"}, timeout=10)
    wait_until(lambda: len(tab.chunks()) > 100)
    kill(instances[upstream])
    received = tab.chunks()
    wait_until(lambda: not tab.sio.connected)
    again = Page(proxy.base, http=http)  # the page reconnects: nginx sends it to the survivor
    assert browser_on_same(proxy, http) != upstream
    again.sio.call("join_conversation", {"conversation_id": ack["conversation_id"]}, timeout=10)
    wait_until(lambda: again.done.is_set(), seconds=20)  # the survivor notices within INSTANCE_TTL_S
    done = [data for event, data in again.events if event == "response_done"][-1]
    assert done["message_id"] == ack["reply_id"] and done["finish_reason"] == "error"
    user, reply = again.stored(ack["conversation_id"])[-2:]
    assert user["content"] == "A very long story"
    assert reply["message_id"] == ack["reply_id"] and reply["finish_reason"] == "error"
    assert reply["content"].startswith(received[:100]) and len(reply["content"]) >= 100
    fake_llm.tokens, fake_llm.token_delay = 20, 0.005
    again.done.clear()
    follow = again.sio.call("send_message", {"message": "Go on", "conversation_id": ack["conversation_id"]},
                            timeout=10)
    assert follow["ok"], follow  # the conversation is not left "busy"
    assert again.done.wait(15)
    assert again.stored(ack["conversation_id"])[-1]["finish_reason"] == "stop"
    again.sio.disconnect()
