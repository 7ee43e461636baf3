"""The two ways the app is started, for real: `python app.py` and `gunicorn app:app`."""
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from conftest import free_port, page_session

ROOT = Path(__file__).resolve().parent.parent
GUNICORN = Path(sys.executable).with_name("gunicorn")


def _serve(command, tmp_path, port):
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "HOST": "127.0.0.1", "PORT": str(port),
           "INSTANCE_PATH": str(tmp_path / "instance")}
    return subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def _wait_for(url, process, seconds=30):
    """The first answer that is not 503: a server starting on a busy machine may still be migrating
    its store, and /health says so (503) until the store answers."""
    deadline, answer = time.monotonic() + seconds, None
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(process.stdout.read().decode())
        try:
            answer = requests.get(url, timeout=2)
            if answer.status_code != 503:
                return answer
        except requests.ConnectionError:
            pass
        time.sleep(0.1)
    if answer is not None:
        return answer
    raise AssertionError(f"{url} did not answer in {seconds}s")


@pytest.fixture
def served(tmp_path):
    """Start a server command on a free port; stop it by pid afterwards."""
    started = []

    def start(command_for_port):
        port = free_port()
        process = _serve(command_for_port(port), tmp_path, port)
        started.append(process)
        return f"http://127.0.0.1:{port}", process
    yield start
    for process in started:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=15)
        process.stdout.close()


def _exercise(base):
    """A browser's first steps: page, new conversation, list it."""
    browser = page_session(base)
    assert "Chat Application" in browser.first_page.text
    cid = browser.post(base + "/start_conversation", timeout=5).json()["conversation_id"]
    listed = browser.get(base + "/list_conversations", timeout=5).json()["conversations"]
    assert [c["conversation_id"] for c in listed] == [cid]


def test_servers_python_app_py_honours_host_and_port(served, tmp_path):
    base, process = served(lambda port: [sys.executable, "app.py"])
    assert _wait_for(base + "/health", process).json()["status"] == "ok"
    _exercise(base)
    assert (tmp_path / "instance" / "chat.sqlite3").exists()


def test_servers_gunicorn_finds_app(served, tmp_path):
    plain = tmp_path / "plain.conf.py"  # not ./gunicorn.conf.py, which gunicorn reads by default (eventlet)
    plain.write_text("")
    base, process = served(lambda port: [str(GUNICORN), "-c", str(plain), "--bind", f"127.0.0.1:{port}", "--worker-class", "gthread",
                                         "--threads", "4", "--no-control-socket", "app:app"])
    assert _wait_for(base + "/health", process).status_code == 200
    _exercise(base)
    assert not (tmp_path / ".gunicorn").exists()
