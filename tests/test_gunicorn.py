"""Production serving for real: `gunicorn -c gunicorn.conf.py app:app` with the eventlet (default)
and gevent workers, graceful shutdown, and two instances sharing Socket.IO rooms through Redis."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from conftest import free_port
from test_chat_e2e import Page, wait_until

ROOT = Path(__file__).resolve().parent.parent
GUNICORN = Path(sys.executable).with_name("gunicorn")


class Gunicorn:
    """One gunicorn instance on a free port, started with the project's config file; stopped by pid."""

    def __init__(self, home: Path, instance: Path, log: Path, **settings) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        env = {"PATH": os.environ["PATH"], "HOME": str(home), "HOST": "127.0.0.1", "PORT": str(self.port),
               "INSTANCE_PATH": str(instance), "MAX_TOKENS": "4096", "REPLY_TOKENS": "512", "AUTO_TITLE": "false",
               "GRACEFUL_TIMEOUT": "3", **{name: str(value) for name, value in settings.items()}}
        self.log = log
        with log.open("wb") as sink:
            self.process = subprocess.Popen([str(GUNICORN), "-c", "gunicorn.conf.py", "app:app"], cwd=ROOT,
                                            env=env, stdout=sink, stderr=subprocess.STDOUT)
        try:
            self._wait_until_up()
        except BaseException:
            self.stop(seconds=10)  # never leave a crash-looping master behind
            raise

    def _wait_until_up(self, seconds: float = 60) -> None:
        """The master listens before its worker has booted: a connection can wait, so retry timeouts too."""
        deadline = time.monotonic() + seconds
        while True:
            assert self.process.poll() is None, self.output()
            try:
                if requests.get(self.base + "/health/live", timeout=5).status_code == 200:
                    return
            except requests.RequestException:
                pass
            assert time.monotonic() < deadline, f"gunicorn did not answer in {seconds}s:\n{self.output()}"
            time.sleep(0.1)

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self, sig=signal.SIGTERM, seconds: float = 30) -> None:
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout=seconds)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=seconds)


@pytest.fixture
def start_gunicorn(tmp_path):
    started = []

    def start(name="a", **settings) -> Gunicorn:
        home = tmp_path / f"home-{name}"
        home.mkdir()
        server = Gunicorn(home, tmp_path / "instance", tmp_path / f"gunicorn-{name}.log", **settings)
        started.append(server)
        return server
    yield start
    for server in started:
        server.stop()


@pytest.mark.parametrize("worker", ["eventlet", "gevent"])
def test_gunicorn_serves_chat_with_each_worker_class(start_gunicorn, fake_llm, worker, tmp_path):
    fake_llm.tokens, fake_llm.token_delay = 30, 0.005
    server = start_gunicorn(WORKER_CLASS=worker, OPENAI_BASE_URL=fake_llm.url)
    assert requests.get(server.base + "/health/ready", timeout=5).json()["status"] == "ready"
    page = Page(server.base)
    ack = page.sio.call("send_message", {"message": "Hello"}, timeout=10)
    assert page.done.wait(10)
    assert page.chunks() == "".join(fake_llm.pieces(None)[0])
    assert page.stored(ack["conversation_id"])[-1]["finish_reason"] == "stop"
    page.sio.disconnect()
    metrics = requests.get(server.base + "/metrics", timeout=5).text
    assert 'chat_messages_total{agent="chat",finish_reason="stop",role="assistant"} 1.0' in metrics
    server.stop()
    assert list((tmp_path / "home-a").iterdir()) == []  # no control socket or other files under $HOME
    assert f"Using worker: {worker}" in server.output()


def test_gunicorn_unknown_worker_class_is_a_clear_error(tmp_path):
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "WORKER_CLASS": "sync", "PORT": str(free_port())}
    done = subprocess.run([str(GUNICORN), "-c", "gunicorn.conf.py", "app:app"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode != 0 and "WORKER_CLASS must be eventlet or gevent" in done.stdout + done.stderr


def test_gunicorn_bad_setting_stops_at_once_with_the_settings_name(tmp_path):
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "PORT": str(free_port()), "REDIS_URL": "nope"}
    done = subprocess.run([str(GUNICORN), "-c", "gunicorn.conf.py", "app:app"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode != 0 and "configuration error: REDIS_URL" in done.stdout + done.stderr


def test_shutdown_stores_a_reply_still_generating_as_stopped(start_gunicorn, fake_llm):
    fake_llm.tokens, fake_llm.token_delay = 2000, 0.02  # 40 s: longer than the graceful period
    server = start_gunicorn(OPENAI_BASE_URL=fake_llm.url, GRACEFUL_TIMEOUT=1)
    page = Page(server.base)
    ack = page.sio.call("send_message", {"message": "A very long story"}, timeout=10)
    wait_until(lambda: len(page.chunks()) > 50)
    server.stop()
    assert server.process.returncode == 0
    log = server.output()
    assert "stored as stopped" in log, log
    restarted = start_gunicorn("b", OPENAI_BASE_URL=fake_llm.url)
    reader = Page(restarted.base, http=page.http)  # same browser: same session file, same user
    reply = reader.stored(ack["conversation_id"])[-1]
    assert reply["role"] == "assistant" and reply["finish_reason"] == "stopped"
    assert reply["content"].startswith(page.chunks()[:50]) and len(reply["content"].split()) < 2000
    reader.sio.disconnect()


def test_shutdown_lets_a_short_reply_finish(start_gunicorn, fake_llm):
    fake_llm.tokens, fake_llm.token_delay = 60, 0.02  # 1.2 s: well inside the graceful period
    server = start_gunicorn(OPENAI_BASE_URL=fake_llm.url, GRACEFUL_TIMEOUT=10)
    page = Page(server.base)
    ack = page.sio.call("send_message", {"message": "A short story"}, timeout=10)
    wait_until(lambda: page.chunks() != "")
    page.sio.disconnect()  # the graceful period ends early when no client is connected
    server.stop()
    restarted = start_gunicorn("b", OPENAI_BASE_URL=fake_llm.url)
    reader = Page(restarted.base, http=page.http)
    reply = reader.stored(ack["conversation_id"])[-1]
    assert reply["finish_reason"] == "stop" and reply["content"] == "".join(fake_llm.pieces(None)[0])
    reader.sio.disconnect()


def test_two_instances_share_rooms_and_stop_through_redis(start_gunicorn, private_redis, fake_llm):
    """A reply generated by instance A reaches a tab connected to instance B, and B's Stop stops it."""
    fake_llm.tokens, fake_llm.token_delay = 1000, 0.02
    a = start_gunicorn("a", OPENAI_BASE_URL=fake_llm.url, REDIS_URL=private_redis["url"])
    b = start_gunicorn("b", OPENAI_BASE_URL=fake_llm.url, REDIS_URL=private_redis["url"])
    tab_a = Page(a.base)
    tab_b = Page(b.base, http=tab_a.http)  # same browser, so the same user (sessions are in Redis)
    ack = tab_a.sio.call("send_message", {"message": "Stream to both"}, timeout=10)
    joined = tab_b.sio.call("join_conversation", {"conversation_id": ack["conversation_id"]}, timeout=10)
    assert joined["ok"] and joined["generating"]["message_id"] == ack["reply_id"]
    wait_until(lambda: len(tab_b.chunks()) > 20)  # chunks emitted in A's process, received through B
    stop = tab_b.sio.call("stop_generation", {"conversation_id": ack["conversation_id"]}, timeout=10)
    assert stop == {"ok": True, "stopping": True, "message_id": ack["reply_id"]}
    assert tab_a.done.wait(10) and tab_b.done.wait(10)
    done = next(data for event, data in tab_b.events if event == "response_done")
    assert done["finish_reason"] == "stopped"
    reply = tab_b.stored(ack["conversation_id"])[-1]
    assert reply["finish_reason"] == "stopped" and len(reply["content"].split()) < 1000
    for tab in (tab_a, tab_b):
        tab.sio.disconnect()
