"""An attacker's tries: other users' ids everywhere, forged requests, traversal, huge bodies,
code through the math agent, and the API key looked for in every page, answer and log line.

Browser-side XSS (messages, titles, file names, search queries) is in tests/test_browser.py.
"""
import io
import logging
import os
import re
import time

import pytest
import requests
from browser_support import LiveApp

from app import socketio

KEY = "sk-live-SECRET0123456789abcdefXYZ"
NOBODY = "00000000-0000-0000-0000-000000000000"
ID_ARGUMENTS = {"conversation_id", "job_id", "document_id", "message_id"}
SKIP_RULES = {"/vendor/<name>", "/static/<path:filename>"}


@pytest.fixture
def victim(app):
    """A user with a conversation, a reply, a finished upload job: every kind of id to steal."""
    browser = app.test_client()
    cid = browser.post("/add_few_shot_example", json={"user_prompt": "my secret plan",
                                                      "assistant_response": "keep it safe"}).get_json()["conversation_id"]
    messages = browser.get(f"/load_conversation/{cid}").get_json()["conversation"]
    job = browser.post("/upload_file", data={"file": (io.BytesIO(b"private notes"), "notes.txt"),
                                             "conversation_id": cid}).get_json()["job_id"]
    done = finished_job(browser, job)
    return {"browser": browser, "conversation_id": cid, "message_id": messages[0]["message_id"],
            "reply_id": messages[1]["message_id"], "job_id": job, "document_id": done["document_id"]}


def finished_job(browser, job_id: str) -> dict:
    for _ in range(200):
        job = browser.get(f"/jobs/{job_id}").get_json()
        if job["status"] in ("done", "error"):
            return job
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} did not finish")


def victim_view(victim) -> dict:
    return victim["browser"].get(f"/load_conversation/{victim['conversation_id']}").get_json()


def id_routes(app):
    for rule in app.url_map.iter_rules():
        if rule.rule in SKIP_RULES or not set(rule.arguments) & ID_ARGUMENTS:
            continue
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            yield rule, method


def test_security_every_route_with_an_id_hides_other_users_records(app, victim):
    before = victim_view(victim)
    thief, tried = app.test_client(), 0
    for rule, method in id_routes(app):
        for stolen_or_missing in ("stolen", "missing"):
            values = {name: victim.get(name, victim["conversation_id"]) if stolen_or_missing == "stolen" else NOBODY
                      for name in rule.arguments}
            answer = thief.open(rule.build(values)[1], method=method, json={"title": "mine now"})
            tried += 1
            assert answer.status_code == 404, (rule.rule, method, answer.status_code)
            assert "secret plan" not in answer.get_data(as_text=True)
    assert tried >= 12 and victim_view(victim) == before


@pytest.mark.parametrize("route, body_for", [
    ("/reset_conversation", lambda v: {"conversation_id": v["conversation_id"]}),
    ("/save_history", lambda v: {"conversation_id": v["conversation_id"]}),
    ("/add_few_shot_example", lambda v: {"conversation_id": v["conversation_id"], "user_prompt": "a",
                                         "assistant_response": "b"}),
])
def test_security_ids_in_bodies_are_checked_too(app, victim, route, body_for):
    before = victim_view(victim)
    answer = app.test_client().post(route, json=body_for(victim))
    assert answer.status_code == 404 and answer.get_json() == {"message": "Conversation not found."}
    assert victim_view(victim) == before


def test_security_an_upload_into_another_users_conversation_is_refused(app, victim):
    before = victim_view(victim)
    answer = app.test_client().post("/upload_file", data={"file": (io.BytesIO(b"planted"), "x.txt"),
                                                          "conversation_id": victim["conversation_id"]})
    assert answer.status_code == 404
    assert victim_view(victim) == before


def test_security_every_socket_event_refuses_other_users_ids(app, victim):
    before = victim_view(victim)
    http = app.test_client()
    http.get("/")
    thief = socketio.test_client(app, flask_test_client=http)
    cid, mid, rid = victim["conversation_id"], victim["message_id"], victim["reply_id"]
    tries = [
        ("join_conversation", {"conversation_id": cid}),
        ("stop_generation", {"conversation_id": cid}),
        ("send_message", {"message": "hi", "conversation_id": cid}),
        ("send_message", {"message": "hi", "parent_message_id": rid}),
        ("send_message", {"message": "hi", "edit_of": mid}),
        ("send_message", {"message": "hi", "document_id": victim["document_id"]}),
        ("regenerate", {"conversation_id": cid, "message_id": rid}),
        ("regenerate", {"message_id": rid}),
    ]
    for event, payload in tries:
        ack = thief.emit(event, payload, callback=True)
        assert ack["ok"] is False, (event, payload, ack)
    assert not [r for r in thief.get_received() if "secret" in str(r["args"])]
    assert thief.is_connected()
    assert victim_view(victim) == before


@pytest.mark.parametrize("name", ["../../etc/passwd.txt", "..\\..\\boot.ini.txt", "/etc/shadow.txt",
                                  "notes\x00.txt.txt", "....//....//x.txt"])
def test_security_file_names_cannot_reach_outside_the_upload_folder(app, client, tmp_path, name):
    answer = client.post("/upload_file", data={"file": (io.BytesIO(b"data"), name)})
    assert answer.status_code in (202, 400)
    if answer.status_code == 202:
        shown = answer.get_json()["file_name"]
        assert "/" not in shown and "\\" not in shown and ".." not in shown and "\x00" not in shown
    outside = [p for p in tmp_path.rglob("*") if p.is_file() and "instance" not in p.parts]
    assert outside == []


def test_security_an_oversized_json_body_is_a_clear_413(client):
    huge = b'{"message": "' + b"a" * (12 * 1024 * 1024) + b'"}'
    answer = client.post("/start_conversation", data=huge, content_type="application/json")
    assert answer.status_code == 413 and "limit" in answer.get_json()["message"]


def test_security_deeply_nested_json_is_a_clear_400(client):
    answer = client.post("/start_conversation", data="[" * 100_000 + "]" * 100_000,
                         content_type="application/json")
    assert answer.status_code == 400 and answer.get_json()["message"]


@pytest.mark.parametrize("attack", [
    "/math __import__('os').system('touch /tmp/pwned-by-math')",
    "/math ().__class__.__base__.__subclasses__()",
    "/math open('/etc/passwd').read()",
    "/math exec('import os')",
    "/math lambda: 1",
])
def test_security_the_math_agent_runs_no_code(app, attack, tmp_path):
    http = app.test_client()
    http.get("/")
    user = socketio.test_client(app, flask_test_client=http)
    ack = user.emit("send_message", {"message": attack}, callback=True)
    assert ack["ok"]
    reply = wait_for(user, "response_done")
    text = http.get(f"/load_conversation/{ack['conversation_id']}").get_json()["conversation"][-1]["content"]
    assert reply and "root:" not in text and "subclasses" not in text.lower().replace(attack.lower(), "")
    assert not os.path.exists("/tmp/pwned-by-math")


def wait_for(socket_client, event: str, tries: int = 200):
    for _ in range(tries):
        for received in socket_client.get_received():
            if received["name"] == event:
                return received["args"][0]
        time.sleep(0.05)
    return None


def test_security_the_api_key_is_nowhere_a_user_can_look(make_app, fake_llm, caplog):
    caplog.set_level(logging.DEBUG)
    fake_llm.reply = "Fine reply."
    app = make_app(OPENAI_BASE_URL=fake_llm.url, OPENAI_API_KEY=KEY, MODEL="fake-model")
    http = app.test_client()
    user = socketio.test_client(app, flask_test_client=(http.get("/") and http))
    ack = user.emit("send_message", {"message": "Hello there"}, callback=True)
    assert wait_for(user, "response_done")
    cid = ack["conversation_id"]
    pages = ["/", "/search?q=hello", "/get_config", f"/export/{cid}?format=json", f"/export/{cid}?format=md",
             f"/load_conversation/{cid}", "/models", "/health", "/metrics", "/list_conversations", "/account",
             f"/stats/{cid}", "/login", "/register"]
    seen = {path: http.get(path) for path in pages}
    assert all(answer.status_code == 200 for answer in seen.values()), {p: a.status_code for p, a in seen.items()}
    for path, answer in seen.items():
        assert KEY not in answer.get_data(as_text=True), path
        assert KEY[8:20] not in answer.get_data(as_text=True), path
    assert KEY not in str(user.get_received())
    assert KEY not in caplog.text and KEY[8:20] not in caplog.text
    assert fake_llm.requests and fake_llm.requests[-1].headers.get("authorization") == f"Bearer {KEY}"


# -- CSRF, headers, cookies, socket origin ---------------------------------------------------------

@pytest.fixture
def guarded(make_app):
    return make_app(csrf_protection=True)


def page_token(client) -> str:
    return re.search(r'<meta name="csrf-token" content="([^"]+)"', client.get("/").get_data(as_text=True))[1]


def test_security_every_state_changing_route_needs_the_csrf_token(guarded):
    browser = guarded.test_client()
    token = page_token(browser)
    changing = [(rule, method) for rule in guarded.url_map.iter_rules()
                for method in rule.methods & {"POST", "PUT", "PATCH", "DELETE"}]
    assert len(changing) >= 10
    # the signed value's first character changed: editing the signature's last characters may touch
    # only base64's unused bits and leave the token valid
    forged_token = ("B" if token[0] == "A" else "A") + token[1:]
    for rule, method in changing:
        path = rule.build({name: NOBODY for name in rule.arguments})[1]
        forged = browser.open(path, method=method, json={})
        assert forged.status_code == 400 and "CSRF" in forged.get_json()["message"], (rule.rule, method)
        wrong = browser.open(path, method=method, json={}, headers={"X-CSRFToken": forged_token})
        assert wrong.status_code == 400, (rule.rule, method)
    started = browser.post("/start_conversation", json={"title": "with the token"}, headers={"X-CSRFToken": token})
    assert started.status_code in (200, 201)


def test_security_a_token_from_another_session_does_not_work(guarded):
    mine, theirs = guarded.test_client(), guarded.test_client()
    stolen = page_token(theirs)
    page_token(mine)
    assert mine.post("/start_conversation", json={}, headers={"X-CSRFToken": stolen}).status_code == 400


def test_security_headers_forbid_inline_script_framing_and_sniffing(guarded):
    browser = guarded.test_client()
    for path in ("/", "/search", "/login", "/list_conversations", "/health"):
        headers = browser.get(path).headers
        policy = headers["Content-Security-Policy"]
        assert "script-src 'self'" in policy and "unsafe-inline" not in policy and "frame-ancestors 'none'" in policy
        assert headers["X-Content-Type-Options"] == "nosniff" and headers["Referrer-Policy"] == "same-origin"
    assert browser.get("/list_conversations").headers["Cache-Control"] == "no-store"


def test_security_no_inline_script_or_style_in_any_page(guarded):
    browser = guarded.test_client()
    for path in ("/", "/search?q=x", "/login", "/register"):
        html = browser.get(path).get_data(as_text=True)
        assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", html), path
        assert not re.search(r"\sstyle=|<style|\son[a-z]+=", html), path


def test_security_session_cookie_flags(make_app, tmp_path):
    for production, secure in ((False, False), (True, True)):
        overrides = {"APP_ENV": "production", "SECRET_KEY": "x" * 32} if production else {}
        browser = make_app(**overrides).test_client()
        cookie = browser.get("/").headers["Set-Cookie"]
        assert "HttpOnly" in cookie and "SameSite=Lax" in cookie
        assert ("Secure" in cookie) is secure


@pytest.fixture
def live_app(tmp_path):
    app = LiveApp(tmp_path / "instance", tmp_path, ALLOWED_ORIGINS="https://chat.example.org").start()
    yield app
    app.stop()


def test_security_socket_connections_from_other_origins_are_refused(live_app):
    handshake = live_app.base + "/socket.io/?EIO=4&transport=polling"
    browser = requests.Session()
    browser.get(live_app.base + "/")
    evil = browser.get(handshake, headers={"Origin": "https://evil.example"})
    assert evil.status_code == 400 and "origin" in evil.text.lower()
    assert browser.get(handshake, headers={"Origin": live_app.base}).status_code == 200
    assert browser.get(handshake, headers={"Origin": "https://chat.example.org"}).status_code == 200
