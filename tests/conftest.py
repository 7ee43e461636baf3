"""Shared fixtures: stores, app -> client -> socket client, a real Redis when needed."""
from __future__ import annotations

import contextlib
import os
import uuid

import pytest
from fake_llm import fake_llm  # noqa: F401  (the fake model endpoint, shared by every test module)

MONGOMOCK_SKIP = "mongomock does not implement {what}; runs against a real MongoDB when MONGODB_URI is set"
STORE_KINDS = ["sqlite", "mongomock"] + (["mongodb"] if os.environ.get("MONGODB_URI") else [])


def _make_store(kind: str, tmp_path):
    if kind == "sqlite":
        from storage.sqlite_store import SqliteStore
        return SqliteStore(tmp_path / "contract.sqlite3")
    import mongomock
    import pymongo

    from storage.mongo_store import MongoStore
    if kind == "mongomock":
        return MongoStore(mongomock.MongoClient(), "chat_contract", mock=True)
    client = pymongo.MongoClient(os.environ["MONGODB_URI"], serverSelectionTimeoutMS=5000)
    return MongoStore(client, f"chat_contract_{uuid.uuid4().hex[:12]}")


def migrated_store(kind: str, tmp_path):
    """Yield a fresh, migrated store of one kind; drop what it made afterwards."""
    made = _make_store(kind, tmp_path)
    made.migrate()
    yield made
    if kind == "mongodb":
        made.client.drop_database(made.db.name)
    made.close()


@pytest.fixture(params=STORE_KINDS)
def store(request, tmp_path):
    """A fresh, migrated store of each kind."""
    yield from migrated_store(request.param, tmp_path)


@pytest.fixture(params=[kind for kind in STORE_KINDS if kind != "sqlite"])
def mongo_store(request, tmp_path):
    """A fresh, migrated MongoDB store (mongomock, and the real server with MONGODB_URI)."""
    yield from migrated_store(request.param, tmp_path)


@pytest.fixture
def search_store(store):
    """The store, for cases needing full-text search (mongomock has no $text)."""
    if getattr(store, "mock", False):
        pytest.skip(MONGOMOCK_SKIP.format(what="$text search or textScore"))
    return store


# -- the app -----------------------------------------------------------------------------------

@pytest.fixture
def make_app(tmp_path):
    """Build an app on a private instance folder; keyword overrides become settings."""
    from app import create_app
    from config import TestConfig

    def build(**overrides):
        return create_app(TestConfig(tmp_path / "instance", **overrides))
    return build


@pytest.fixture
def app(make_app):
    return make_app()


@pytest.fixture
def other_client(app):
    """A second browser with its own cookie jar, i.e. another anonymous user."""
    return app.test_client()


@pytest.fixture
def conversation_id(client):
    """A conversation of `client` holding one few-shot exchange."""
    body = client.post("/add_few_shot_example", json={"user_prompt": "Tell me about walruses",
                                                      "assistant_response": "Walruses have tusks."}).get_json()
    return body["conversation_id"]


# -- real Redis ----------------------------------------------------------------------------------

REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


@pytest.fixture
def redis_url():
    """The machine's Redis (database 15, flushed). In CI a missing Redis fails instead of skipping."""
    import redis
    client = redis.from_url(REDIS_URL)
    try:
        client.ping()
    except redis.ConnectionError:
        if os.environ.get("CI") or os.environ.get("REQUIRE_REDIS"):
            pytest.fail(f"Redis is required (CI) but not reachable at {REDIS_URL}")
        pytest.skip(f"no Redis at {REDIS_URL}")
    client.flushdb()
    yield REDIS_URL
    client.flushdb()


def page_session(base: str):
    """A requests.Session that loaded the page like a browser: it has the session cookie and
    sends the page's CSRF token (`<meta name="csrf-token">`) on every request."""
    import re

    import requests
    browser = requests.Session()
    page = browser.get(base + "/", timeout=10)
    token = re.search(r'<meta name="csrf-token" content="([^"]+)"', page.text)
    if token:
        browser.headers["X-CSRFToken"] = token[1]
    browser.first_page = page
    return browser


@contextlib.contextmanager
def serving(app):
    """The app behind werkzeug's threaded server on a free loopback port, shut down afterwards:
    real concurrent requests, in this process (so a test can look inside the app)."""
    import threading

    from werkzeug.serving import make_server
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


EVENTLET_PRELUDE = """
import eventlet
eventlet.monkey_patch()
import sys, time
sys.path.insert(0, ".")
from agents import offload
offload.configure("eventlet")
ticks = []
def ticker():
    while True:
        ticks.append(time.perf_counter())
        eventlet.sleep(0.002)
eventlet.spawn(ticker)
"""


def run_under_eventlet(body: str, tmp_path, *args: str) -> None:
    """Run `body` in a fresh interpreter on a monkey-patched eventlet hub where a ticker greenlet
    appends to `ticks` every 2 ms (a gap in it is a stall of the hub); the body prints "ok" at the end."""
    import subprocess
    import sys
    import textwrap
    from pathlib import Path
    result = subprocess.run([sys.executable, "-c", EVENTLET_PRELUDE + textwrap.dedent(body), *args],
                            cwd=Path(__file__).resolve().parent.parent, capture_output=True, text=True, timeout=60,
                            env={"PATH": os.environ["PATH"], "HOME": str(tmp_path)}, check=False)
    assert result.returncode == 0 and result.stdout.strip().endswith("ok"), result.stderr[-2000:]


def free_port() -> int:
    import socket
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def private_redis(tmp_path):
    """A redis-server of the test's own on a free port, stopped by its pid (never the machine's)."""
    import shutil
    import subprocess
    import time

    import redis
    binary = shutil.which("redis-server")
    if binary is None:
        if os.environ.get("CI"):
            pytest.fail("redis-server is required in CI")
        pytest.skip("redis-server is not installed")
    port = free_port()
    process = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                                "--appendonly", "no", "--dir", str(tmp_path)], stdout=subprocess.DEVNULL)
    url = f"redis://127.0.0.1:{port}/0"
    deadline = time.monotonic() + 10
    while True:
        try:
            redis.from_url(url).ping()
            break
        except redis.ConnectionError:
            if time.monotonic() > deadline:
                process.kill()
                raise
            time.sleep(0.05)
    yield {"url": url, "process": process}
    if process.poll() is None:
        process.terminate()
        process.wait(timeout=10)


# -- one turn's dependencies, for run_turn against the fake model ------------------------------

@pytest.fixture
def turn_deps(tmp_path, fake_llm):
    """make(store_class=SqliteStore) -> TurnDeps: a fresh, migrated store and a 4096-token window
    (256 for the reply) on the fake model."""
    from agents.calibration import Calibration
    from agents.providers import Providers
    from agents.turn import TurnDeps
    from config import TestConfig
    from storage.sqlite_store import SqliteStore

    def make(store_class=SqliteStore):
        store = store_class(tmp_path / "turn-deps.sqlite3")
        store.migrate()
        config = TestConfig(tmp_path, MAX_TOKENS=4096, REPLY_TOKENS=256, OPENAI_BASE_URL=fake_llm.url,
                            MODEL="fake-model")
        options = {"max_retries": 2, "backoff_base": 0.01, "read_timeout": 10}
        return TurnDeps(store, config, Providers(config, client_options=options), Calibration())
    return make


# -- a real model server (llama.cpp + SmolLM2-135M, `make .venv-llm/.installed`) -----------------

@pytest.fixture(scope="session")
def llama_server():
    """llama.cpp's server on a free port for the whole session, behind a recording Tap; its log
    is in artifacts/real_llm/. Skips without .venv-llm, but CI must run these tests: it fails there."""
    import llama_server as real
    if not real.installed():
        reason = "no real model server: run `make .venv-llm/.installed` (builds llama.cpp, ~10 min once)"
        if os.environ.get("CI"):
            pytest.fail(f"CI runs the real_llm tests; {reason}")
        pytest.skip(reason)
    log_path = real.ROOT / "artifacts" / "real_llm" / "llama_server.log"
    server = real.LlamaServer(free_port(), log_path).start()
    tap = real.Tap(server.port)
    server.tap, server.tap_url = tap, tap.url
    yield server
    tap.close()
    server.stop()
