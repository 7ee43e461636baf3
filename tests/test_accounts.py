"""Accounts: register, log in, log out; the anonymous history follows; fixation and guessing fail."""
import pytest

from app import socketio
from web import login_throttle

PASSWORD = "correct horse battery"


def sid_of(client) -> str:
    cookie = client.get_cookie("session")
    return cookie.value if cookie else ""


def register(client, username="alice", password=PASSWORD):
    return client.post("/register", json={"username": username, "password": password})


def login(client, username="alice", password=PASSWORD):
    return client.post("/login", json={"username": username, "password": password})


def titles(client) -> list[str]:
    return [c["title"] for c in client.get("/list_conversations").get_json()["conversations"]]


def test_accounts_register_keeps_this_browsers_conversations(client):
    client.post("/start_conversation", json={"title": "Before the account"})
    answer = register(client)
    assert answer.status_code == 201
    body = answer.get_json()
    assert (body["username"], bool(body["csrf_token"])) == ("alice", True)
    assert titles(client) == ["Before the account"]
    assert client.get("/account").get_json() == {"authenticated": True, "username": "alice",
                                                 "auth_required": False, "registration": "open"}


def test_accounts_log_in_elsewhere_brings_that_browsers_anonymous_history(app, client):
    register(client)
    client.post("/start_conversation", json={"title": "From the laptop"})
    phone = app.test_client()
    phone.post("/start_conversation", json={"title": "From the phone, before logging in"})
    assert login(phone).status_code == 200
    assert sorted(titles(phone)) == ["From the laptop", "From the phone, before logging in"]
    assert sorted(titles(client)) == sorted(titles(phone))


def test_accounts_log_in_gives_a_new_session_id(app):
    browser = app.test_client()
    register(browser, "bob")
    browser.post("/logout", json={})
    browser.get("/")
    before = sid_of(browser)
    login(browser, "bob")
    assert before and sid_of(browser) != before
    attacker = app.test_client()  # holds the id planted before log-in: it is not the account
    attacker.set_cookie("session", before)
    assert attacker.get("/account").get_json()["authenticated"] is False


def test_accounts_log_out_starts_a_fresh_anonymous_identity(client):
    register(client)
    client.post("/start_conversation", json={"title": "Private"})
    assert client.post("/logout", json={}).status_code == 200
    assert client.get("/account").get_json()["authenticated"] is False
    assert titles(client) == []
    login(client)
    assert titles(client) == ["Private"]


@pytest.mark.parametrize("body, status, words", [
    ({"username": "al", "password": PASSWORD}, 400, "3 to 40"),
    ({"username": "alice<script>", "password": PASSWORD}, 400, "3 to 40"),
    ({"username": "alice", "password": "short"}, 400, "8 to 200"),
    ({"username": "alice", "password": "x" * 201}, 400, "8 to 200"),
    ({"username": ["alice"], "password": PASSWORD}, 400, "3 to 40"),
    ({"username": "alice", "password": None}, 400, "8 to 200"),
])
def test_accounts_bad_input_is_a_clear_400(client, body, status, words):
    for route in ("/register", "/login"):
        answer = client.post(route, json=body)
        assert answer.status_code == status and words in answer.get_json()["message"]


def test_accounts_a_taken_username_is_409_whatever_the_case(app, client):
    register(client)
    answer = register(app.test_client(), "ALICE")
    assert answer.status_code == 409 and "taken" in answer.get_json()["message"]


def test_accounts_wrong_password_and_unknown_user_answer_alike(app, client):
    register(client)
    wrong = login(app.test_client(), password="not the password")
    unknown = login(app.test_client(), username="nobody")
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.get_json() == unknown.get_json() == {"message": "Wrong username or password."}


def test_accounts_failed_log_ins_make_the_next_try_wait_longer(app, client, monkeypatch):
    now = [1000.0]
    app.extensions["chat_login_throttle"].clock = lambda: now[0]
    register(client)
    guesser = app.test_client()
    statuses = [login(guesser, password=f"guess number {n}").status_code for n in range(3)]
    assert statuses == [401, 401, 401]
    waited = login(guesser)  # even the right password waits now
    assert waited.status_code == 429 and waited.headers["Retry-After"] == "2"
    assert waited.get_json()["retry_after"] == 2.0
    now[0] += 2.1
    assert login(guesser, password="guess number 4").status_code == 401
    assert login(guesser).status_code == 429  # the fourth failure: 4 s now
    now[0] += 4.1
    assert login(guesser).status_code == 200
    assert [login_throttle.delay_for(n) for n in (0, 2, 3, 4, 5, 30)] == [0, 0, 2, 4, 8, 300]


def test_accounts_form_posts_work_without_javascript(client):
    page = client.get("/register")
    assert page.status_code == 200 and b'name="csrf_token"' in page.data
    answer = client.post("/register", data={"username": "carol", "password": PASSWORD})
    assert answer.status_code == 303 and answer.headers["Location"] == "/"
    assert b"carol" in client.get("/").data and b"Log out" in client.get("/").data
    failed = client.post("/login", data={"username": "carol", "password": "wrong password"})
    assert failed.status_code == 401 and b"Wrong username or password." in failed.data
    assert client.get("/login").status_code == 200


def test_accounts_required_keeps_everything_but_the_way_in_closed(make_app):
    app = make_app(AUTH_REQUIRED=True, REGISTRATION="open")
    browser = app.test_client()
    assert browser.get("/", headers={"Accept": "text/html"}).headers["Location"] == "/login"
    refused = browser.get("/list_conversations")
    assert refused.status_code == 401 and refused.get_json()["message"] == "Log in to use this app."
    assert browser.get("/health/live").status_code == 200
    assert browser.get("/login").status_code == 200
    socket = socketio.test_client(app, flask_test_client=browser)
    assert not socket.is_connected()
    assert register(browser).status_code == 201
    assert browser.get("/list_conversations").status_code == 200
    socket = socketio.test_client(app, flask_test_client=browser)
    assert socket.is_connected()
    socket.disconnect()


def test_accounts_throttle_falls_back_to_this_process_while_redis_is_away():
    import redis

    from web.login_throttle import LoginThrottle
    away = redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.2)
    throttle = LoginThrottle(away, clock=lambda: 1000.0)
    waits = [throttle.reserve("alice", "203.0.113.9") for _ in range(4)]
    assert waits[:3] == [0.0, 0.0, 0.0] and waits[3] == 2.0
    throttle.succeeded("alice", "203.0.113.9")
    assert throttle.reserve("alice", "203.0.113.9") == 0.0  # the pair was forgotten
