"""End to end: python-socketio's real client against `python app.py` on a real port,
replies from the fake model server over real SSE."""
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import requests
import socketio
from conftest import free_port

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def server(tmp_path, fake_llm):
    """The app served by `python app.py`, talking to the fake model; stopped by pid."""
    port = free_port()
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "HOST": "127.0.0.1", "PORT": str(port),
           "INSTANCE_PATH": str(tmp_path / "instance"), "OPENAI_BASE_URL": fake_llm.url, "MODEL": "fake-model",
           "MAX_TOKENS": "4096", "REPLY_TOKENS": "512"}
    process = subprocess.Popen([sys.executable, "app.py"], cwd=ROOT, env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            requests.get(base + "/health", timeout=1)
            break
        except requests.ConnectionError:
            assert process.poll() is None and time.monotonic() < deadline, "app did not start"
            time.sleep(0.1)
    yield base
    process.terminate()
    process.wait(timeout=15)


class Page:
    """A browser page: an HTTP session (cookie) plus a Socket.IO connection recording events."""

    def __init__(self, base: str, http: requests.Session | None = None):
        self.base, self.http = base, http or requests.Session()
        self.http.get(base + "/", timeout=5)
        self.events: list[tuple[str, dict]] = []
        self.done = threading.Event()
        self.sio = socketio.Client(reconnection=False)
        self.sio.on("*", self._record)
        cookie = "; ".join(f"{k}={v}" for k, v in self.http.cookies.items())
        self.sio.connect(base, headers={"Cookie": cookie}, transports=["websocket"], wait_timeout=10)

    def _record(self, event, data=None):
        self.events.append((event, data))
        if event == "response_done":
            self.done.set()

    def chunks(self) -> str:
        return "".join(data["chunk"] for event, data in self.events if event == "response_chunk")

    def stored(self, conversation_id: str) -> list[dict]:
        return self.http.get(f"{self.base}/load_conversation/{conversation_id}", timeout=5).json()["conversation"]


def wait_until(condition, seconds=10.0):
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_chat_e2e_reply_streams_in_order_and_is_stored(server, fake_llm):
    fake_llm.tokens, fake_llm.token_delay = 60, 0.005
    page = Page(server)
    ack = page.sio.call("send_message", {"message": "Hello!"}, timeout=10)
    assert page.done.wait(10)
    expected = fake_llm.pieces(None)[0]
    assert page.chunks() == "".join(expected)
    done = next(data for event, data in page.events if event == "response_done")
    assert done["finish_reason"] == "stop" and done["message_id"] == ack["reply_id"]
    assert page.stored(ack["conversation_id"])[-1]["content"] == page.chunks()
    page.sio.disconnect()


def test_chat_e2e_stop_keeps_partial_reply(server, fake_llm):
    fake_llm.tokens, fake_llm.token_delay = 400, 0.01
    page = Page(server)
    ack = page.sio.call("send_message", {"message": "Long one please"}, timeout=10)
    wait_until(lambda: len(page.chunks()) > 20)
    page.sio.call("stop_generation", {"conversation_id": ack["conversation_id"]}, timeout=10)
    assert page.done.wait(10)
    reply = page.stored(ack["conversation_id"])[-1]
    assert reply["finish_reason"] == "stopped"
    assert reply["content"].startswith(page.chunks()[:20]) and len(reply["content"].split()) < 400
    page.sio.disconnect()


def test_chat_e2e_disconnect_mid_stream_still_stores_full_reply(server, fake_llm):
    fake_llm.tokens, fake_llm.token_delay = 100, 0.01
    page = Page(server)
    ack = page.sio.call("send_message", {"message": "Then I leave"}, timeout=10)
    wait_until(lambda: page.chunks() != "")
    page.sio.disconnect()
    expected = "".join(fake_llm.pieces(None)[0])
    wait_until(lambda: page.stored(ack["conversation_id"])[-1]["content"] == expected)
    assert page.stored(ack["conversation_id"])[-1]["finish_reason"] == "stop"
