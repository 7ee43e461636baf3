"""Logging: JSON and text lines, a request id on each, PII and secrets redacted, rotation, idempotence."""
import json
import logging
import re
import subprocess
import sys
import textwrap
import threading
from datetime import datetime
from pathlib import Path

import pytest

import logs
from config import ConfigError, TestConfig

ROOT = Path(__file__).resolve().parent.parent
log = logging.getLogger("chat.test_logs")


@pytest.fixture
def configure(tmp_path):
    """Configure logging from TestConfig overrides; back to the plain test setup afterwards."""
    def apply(**overrides):
        config = TestConfig(tmp_path / "instance", **overrides).validate()
        logs.configure(config)
        return config
    yield apply
    logs.configure(TestConfig(tmp_path / "instance"))


@pytest.fixture
def probed_app(make_app, tmp_path):
    """An app (JSON logs) with one extra route that logs a line, an extra field and a traceback."""
    def build(**overrides):
        app = make_app(LOG_FORMAT="json", **overrides)

        def probe():
            log.info("probe for %s", "alice@example.com", extra={"conversation_id": "c-1", "opaque": object()})
            try:
                raise RuntimeError("boom with key sk-abcdefghijklmnopqrstuvwx")
            except RuntimeError:
                log.exception("probe failed")
            return "ok"
        app.add_url_rule("/probe", view_func=probe)
        return app
    yield build
    logs.configure(TestConfig(tmp_path / "instance"))


def json_lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def test_logs_json_lines_carry_the_request_id_of_the_response(probed_app, capsys):
    client = probed_app().test_client()
    capsys.readouterr()
    response = client.get("/probe", headers={"X-Request-ID": "edge-42.a_b"})
    lines = json_lines(capsys.readouterr().err)
    assert response.headers["X-Request-ID"] == "edge-42.a_b"
    assert [line["message"] for line in lines] == ["probe for [email]", "probe failed"]
    assert {line["request_id"] for line in lines} == {"edge-42.a_b"}
    first, failed = lines
    assert datetime.fromisoformat(first["ts"]).utcoffset().total_seconds() == 0
    assert (first["level"], first["logger"], first["conversation_id"]) == ("INFO", "chat.test_logs", "c-1")
    assert "opaque" not in first and "exc_info" not in first
    assert "RuntimeError: boom with key [secret]" in failed["exc_info"] and failed["level"] == "ERROR"


@pytest.mark.parametrize("incoming", ["", "two words", "x" * 65, "<script>", "a/b", "id;drop"])
def test_logs_unsafe_request_id_is_replaced(probed_app, capsys, incoming):
    client = probed_app().test_client()
    capsys.readouterr()
    given = client.get("/probe", headers={"X-Request-ID": incoming}).headers["X-Request-ID"]
    assert re.fullmatch(r"[0-9a-f]{32}", given)
    assert {line["request_id"] for line in json_lines(capsys.readouterr().err)} == {given}


def test_logs_request_ids_differ_per_request_and_end_with_it(probed_app, capsys):
    client = probed_app().test_client()
    first, second = (client.get("/health").headers["X-Request-ID"] for _ in range(2))
    assert first != second
    capsys.readouterr()
    log.warning("between requests")
    assert json_lines(capsys.readouterr().err)[0]["request_id"] == "-"


def test_logs_text_format(configure, capsys):
    configure(LOG_FORMAT="text")
    with logs.bind_request_id("req-1"):
        log.info("hello %s", "world")
    line = capsys.readouterr().err.strip()
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} INFO \[req-1\] chat\.test_logs: hello world", line)


def test_logs_malformed_call_does_not_raise(tmp_path):
    """In a subprocess: pytest's own capture handler fails a test on any logging error."""
    code = (f"import logging, logs, config; logs.configure(config.TestConfig({str(tmp_path)!r})); "
            "logging.getLogger('x').warning('count %d for %s', 'sk-abcdefghijklmnopqrstuvwx')")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60,
                          check=False)
    assert done.returncode == 0 and done.stderr.endswith("x: count %d for %s (unformattable arguments)\n")


@pytest.mark.parametrize("text, expected", [
    ("mail alice.smith+tag@example.co.uk now", "mail [email] now"),
    ("call +44 20 7946 0958 or +1 (555) 123-4567", "call [phone] or [phone]"),
    ("us 555-123-4567, 555.123.4567, uk 020 7946 0958", "us [phone], [phone], uk [phone]"),
    ("fr 06 12 34 56 78 or 0612345678, de +4915112345678", "fr [phone] or [phone], de [phone]"),
    ("key sk-proj-abcDEF1234567890abcdef_XYZ", "key [secret]"),
    ("old key sk-abcdefghijklmnop1234.", "old key [secret]."),
    ("Authorization: Bearer eyJhbGciOi.abc.def", "Authorization: Bearer [secret]"),
    ("sent bearer abc123token", "sent bearer [secret]"),
    ("api-key: shortkey, API_KEY=xyz", "api-key: [secret], API_KEY=[secret]"),
    ('{"api_key": "abc", "password": "hunter2"}', '{"api_key": "[secret]", "password": "[secret]"}'),
    ("token=0123456789abcdef0123456789abcdef", "token=[secret]"),
    ("secret=QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo0123456789==", "secret=[secret]"),
    ("mongodb://user:pw1234@db.example.com:27017/chat", "mongodb://user:[secret]@db.example.com:27017/chat"),
    ("İstanbul office, API_KEY=xyz", "İstanbul office, API_KEY=[secret]"),  # "İ".lower() is two characters
])
def test_logs_redacts(text, expected):
    assert logs.Redactor([])(text) == expected


@pytest.mark.parametrize("text", [
    "at 2024-09-13T06:39:55.123Z and 2024-09-13 06:39:55,123 and 2024-09-13 06:39",
    "conversation 123e4567-e89b-12d3-a456-426614174000 and key=6fa459ea-ee8a-3ca4-894e-db77e160355e",
    "took 12.5 ms on port 5000 for 128000 tokens (10485760 bytes)",
    "host 192.168.100.200:5000, epoch 1726209595, float 0.30000000000000004",
    "max_tokens: 800, prompt_tokens=523, version 1.2.3, basic checks passed",
    "request_id=0123456789abcdef0123456789abcdef, sha 8d3f2a1b9c0e7f6a5b4c3d2e1f0a9b8c7d6e5f4a",
])
def test_logs_leaves_ordinary_text(text):
    assert logs.Redactor([])(text) == text


def test_logs_redacts_configured_secrets_wherever_they_appear(configure, capsys):
    configure(LOG_FORMAT="json", OPENAI_API_KEY="primary-key-1", FALLBACK_API_KEY="fallback-key-2",
              SECRET_KEY="session-signing-3", AGENT_API_KEYS={"file": "agent-key-4"},
              MONGODB_URI="mongodb://app:m0ng0%21pw@db:27017/chat", REDIS_URL="redis://:r3dis-pw@cache:6379/0")
    values = ["primary-key-1", "fallback-key-2", "session-signing-3", "agent-key-4", "m0ng0!pw", "m0ng0%21pw",
              "r3dis-pw"]
    log.info("values %s", " ".join(values), extra={"detail": "agent-key-4 in an extra"})
    line = json_lines(capsys.readouterr().err)[0]
    assert line["message"] == "values " + " ".join(["[secret]"] * len(values))
    assert line["detail"] == "[secret] in an extra"


def test_logs_rotate_under_the_instance_folder(configure, tmp_path):
    config = configure(LOG_FILE="logs/chat.log", LOG_MAX_BYTES=300, LOG_BACKUPS=2)
    for number in range(60):
        log.warning("line %d of the rotation test", number)
    folder = tmp_path / "instance" / "logs"
    assert config.log_path == folder / "chat.log"
    assert sorted(path.name for path in folder.iterdir()) == ["chat.log", "chat.log.1", "chat.log.2"]
    assert all(path.stat().st_size <= 300 for path in folder.iterdir())
    assert "line 59 of the rotation test" in (folder / "chat.log").read_text()


def test_logs_absolute_log_file_is_kept(tmp_path):
    assert TestConfig(tmp_path, LOG_FILE=str(tmp_path / "elsewhere.log")).log_path == tmp_path / "elsewhere.log"


def test_logs_configure_is_idempotent_and_keeps_other_handlers(configure, capsys, caplog):
    root, foreign = logging.getLogger(), logging.NullHandler()
    root.addHandler(foreign)
    try:
        configure(LOG_FILE="chat.log")
        configure(LOG_FILE="chat.log")
        ours = [handler for handler in root.handlers if getattr(handler, logs.OURS, False)]
        assert len(ours) == 2 and foreign in root.handlers
        configure()
        assert len([handler for handler in root.handlers if getattr(handler, logs.OURS, False)]) == 1
        log.info("once")
        assert capsys.readouterr().err.count("once") == 1
        assert [record.getMessage() for record in caplog.records] == ["once"]
    finally:
        root.removeHandler(foreign)


def test_logs_gunicorn_error_log_goes_through_our_handlers(configure, capsys):
    gunicorn_log = logging.getLogger("gunicorn.error")
    gunicorn_log.addHandler(logging.StreamHandler(sys.stdout))  # what gunicorn's own setup leaves
    gunicorn_log.propagate = False
    configure(LOG_FORMAT="json")
    gunicorn_log.warning("Worker timeout (pid:%s)", 42)
    captured = capsys.readouterr()
    assert json_lines(captured.err)[0]["logger"] == "gunicorn.error" and captured.out == ""


@pytest.mark.parametrize("name, value", [
    ("LOG_FORMAT", "xml"), ("LOG_LEVEL", "LOUD"), ("LOG_MAX_BYTES", 0), ("LOG_BACKUPS", 0),
])
def test_logs_bad_settings_are_named(tmp_path, name, value):
    with pytest.raises(ConfigError, match=name):
        TestConfig(tmp_path, **{name: value}).validate()


def test_logs_bad_number_in_the_environment_is_named(monkeypatch, tmp_path):
    monkeypatch.setenv("LOG_MAX_BYTES", "10MB")
    with pytest.raises(ConfigError, match="LOG_MAX_BYTES"):
        TestConfig(tmp_path)


def test_logs_bind_request_id_as_block_and_decorator():
    with logs.bind_request_id("outer") as outer:
        with logs.bind_request_id("bad id!") as inner:
            assert inner != "bad id!" and logs.current_request_id() == inner
        assert outer == logs.current_request_id() == "outer"
    assert logs.current_request_id() is None

    @logs.bind_request_id()
    def handler():
        return logs.current_request_id()
    assert len({handler(), handler()}) == 2


def test_logs_carry_takes_the_id_into_a_thread():
    seen = {}
    with logs.bind_request_id("event-7"):
        plain = threading.Thread(target=lambda: seen.setdefault("plain", logs.current_request_id()))
        carried = threading.Thread(target=logs.carry(lambda: seen.setdefault("carried", logs.current_request_id())))
    for thread in (plain, carried):
        thread.start()
        thread.join()
    assert seen == {"plain": None, "carried": "event-7"}


GREENLETS = """
    import {setup}
    import logging, sys
    sys.path.insert(0, {root!r})
    import logs
    logging.basicConfig(level=logging.INFO, format="%(request_id)s %(message)s", stream=sys.stdout)
    logging.getLogger().handlers[0].addFilter(logs.RequestIdFilter())
    def task(name):
        with logs.bind_request_id(name):
            {sleep}(0.01)
            logging.info(name)
    def event():
        with logs.bind_request_id("event"):
            {spawn}(logs.carry(logging.info), "carried").{wait}()
            {spawn}(logging.info, "plain").{wait}()
    for green in [{spawn}(task, f"g{{n}}") for n in range(3)] + [{spawn}(event)]:
        green.{wait}()
"""


@pytest.mark.parametrize("setup, sleep, spawn, wait", [
    ("eventlet; eventlet.monkey_patch()", "eventlet.sleep", "eventlet.spawn", "wait"),
    ("gevent.monkey; gevent.monkey.patch_all(); import gevent", "gevent.sleep", "gevent.spawn", "join"),
])
def test_logs_request_ids_stay_apart_in_greenlets(setup, sleep, spawn, wait):
    code = textwrap.dedent(GREENLETS).format(setup=setup, sleep=sleep, spawn=spawn, wait=wait, root=str(ROOT))
    done = subprocess.run([sys.executable, "-W", "ignore", "-c", code], capture_output=True, text=True, timeout=60,
                          check=False)
    assert sorted(done.stdout.splitlines()) == ["- plain", "event carried", "g0 g0", "g1 g1", "g2 g2"], done.stderr


@pytest.mark.parametrize("line, expected", [
    ('"GET /search?q=penguin+diagnosis HTTP/1.1" 200 -', '"GET /search?q=[redacted] HTTP/1.1" 200 -'),
    ('"GET /search?q=a"b&page=2 HTTP/1.1" 200 -', '"GET /search?q=[redacted]&page=[redacted] HTTP/1.1" 200 -'),
    ('"\x1b[33mGET /?c=c0ffee HTTP/1.1\x1b[0m" 404 -', '"\x1b[33mGET /?c=[redacted] HTTP/1.1\x1b[0m" 404 -'),
    ('"GET /search?secret HTTP/1.1"', '"GET /search?[redacted] HTTP/1.1"'),
    ('"GET /static/app.css HTTP/1.1" 200 -', '"GET /static/app.css HTTP/1.1" 200 -'),
])
def test_logs_access_lines_lose_their_query_values(line, expected):
    from access_log import redact_queries
    assert redact_queries(line) == expected


def test_logs_gunicorn_access_atoms_lose_their_query_values():
    from access_log import QueryFilter
    atoms = {"r": "GET /search?q=penguin HTTP/1.1", "q": "q=penguin&page=2", "f": "http://h/search?q=penguin",
             "{referer}i": "http://h/search?q=penguin", "s": "200"}
    record = logging.LogRecord("gunicorn.access", logging.INFO, "", 0, "%(r)s %(q)s %(f)s %({referer}i)s %(s)s",
                               (atoms,), None)  # as gunicorn logs: one mapping of atoms
    assert QueryFilter().filter(record) and "penguin" not in record.getMessage()
    assert record.getMessage().startswith("GET /search?q=[redacted] HTTP/1.1 q=[redacted]&page=[redacted]")
