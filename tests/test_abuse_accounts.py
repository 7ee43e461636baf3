"""Attacks on accounts (issue 12): parallel password guesses, locking out someone else, sessions
written back after log-out or registration, registering on the operator's key, hashing that
stalls the event loop. Concurrency is real: threads against a threaded werkzeug server (what
`python app.py` runs), with and without the real Redis.
"""
import threading
import time
from pathlib import Path

import pytest
import requests
from conftest import run_under_eventlet, serving
from flask import session

ROOT = Path(__file__).resolve().parent.parent
PASSWORD = "correct horse battery"
ADMIN = {"ADMIN_USERNAME": "root", "ADMIN_PASSWORD": "admin pass phrase 9"}


def in_parallel(count: int, call) -> list:
    """call(n) for n in range(count), all released at once; the results in order."""
    start, results = threading.Barrier(count), [None] * count

    def run(n):
        start.wait()
        results[n] = call(n)
    threads = [threading.Thread(target=run, args=(n,)) for n in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    return results


@pytest.fixture(params=["memory", "redis"])
def shared(request):
    """Settings for throttles and sessions kept in this process (and files), or in the real Redis."""
    return {} if request.param == "memory" else {"REDIS_URL": request.getfixturevalue("redis_url")}


def credentials(username="alice", password=PASSWORD, **extra) -> dict:
    return {"username": username, "password": password, **extra}


# -- 3. parallel guesses ------------------------------------------------------------------------------

def frozen_clock(app) -> list[float]:
    now = [1000.0]
    app.extensions["chat_login_throttle"].clock = lambda: now[0]
    return now


def test_abuse_parallel_wrong_guesses_only_the_free_ones_are_checked(make_app, shared):
    app = make_app(**shared)
    frozen_clock(app)  # however slowly the machine answers, no delay runs out during the test
    with serving(app) as base:
        assert requests.post(base + "/register", json=credentials(), timeout=30).status_code == 201
        statuses = in_parallel(40, lambda n: requests.post(
            base + "/login", json=credentials(password=f"guess number {n}"), timeout=120).status_code)
    assert statuses.count(401) == 3, f"{statuses.count(401)} of 40 parallel guesses were checked"
    assert statuses.count(429) == 37


# -- 4. locking out someone else ----------------------------------------------------------------------

def from_address(app, address: str):
    client = app.test_client()
    client.environ_base["REMOTE_ADDR"] = address
    return client


def test_abuse_failing_on_purpose_does_not_lock_the_owner_out(make_app, shared):
    app = make_app(**shared)
    now = frozen_clock(app)
    assert from_address(app, "198.51.100.7").post("/register", json=credentials()).status_code == 201
    attacker = from_address(app, "203.0.113.66")
    for n in range(20):  # every one a real, checked failure: the attacker waits out each delay
        now[0] += 301
        assert attacker.post("/login", json=credentials(password=f"wrong guess {n}")).status_code == 401
    assert attacker.post("/login", json=credentials(password="one more try")).status_code == 429
    owner = from_address(app, "198.51.100.7")
    assert owner.post("/login", json=credentials()).status_code == 200


def test_abuse_many_addresses_guessing_one_name_are_slowed_but_not_the_owner(make_app, shared):
    app = make_app(**shared)
    frozen_clock(app)
    assert from_address(app, "198.51.100.7").post("/register", json=credentials()).status_code == 201
    for n in range(50):  # one guess from each of 50 addresses: each is within its own allowance
        guess = credentials(password=f"guess {n} here")
        assert from_address(app, f"10.0.1.{n}").post("/login", json=guess).status_code == 401
    again = from_address(app, "10.0.1.3").post("/login", json=credentials(password="guess again"))
    assert again.status_code == 429  # the username's ceiling: addresses that failed now wait
    assert from_address(app, "198.51.100.7").post("/login", json=credentials()).status_code == 200


# -- 5. sessions written back after log-out or registration ------------------------------------------

def slow_app(make_app, **settings):
    """The app plus one slow route that reads the session: a request still in flight."""
    app = make_app(**settings)

    @app.get("/slow-page")
    def slow_page():
        time.sleep(0.8)
        return {"user_id": session.get("user_id")}
    return app


def in_flight(base: str, cookie: str) -> threading.Thread:
    thread = threading.Thread(target=requests.get, args=(base + "/slow-page",),
                              kwargs={"cookies": {"session": cookie}, "timeout": 30})
    thread.start()
    time.sleep(0.3)
    return thread


def test_abuse_a_stolen_cookie_dies_at_log_out_despite_a_request_in_flight(make_app, shared):
    with serving(slow_app(make_app, **shared)) as base:
        registered = requests.post(base + "/register", json=credentials(), timeout=30)
        stolen = registered.cookies["session"]
        slow = in_flight(base, stolen)
        logout = requests.post(base + "/logout", json={}, cookies={"session": stolen}, timeout=30)
        assert logout.status_code == 200
        slow.join()
        thief = requests.get(base + "/account", cookies={"session": stolen}, timeout=30).json()
    assert thief["authenticated"] is False


def test_abuse_a_planted_cookie_does_not_follow_its_victim_into_the_account(make_app, shared):
    with serving(slow_app(make_app, **shared)) as base:
        planted = requests.get(base + "/account", timeout=30).cookies["session"]  # the attacker's own
        slow = in_flight(base, planted)  # the victim's page, loading with the planted cookie
        registered = requests.post(base + "/register", json=credentials(), cookies={"session": planted}, timeout=30)
        assert registered.status_code == 201
        requests.post(base + "/start_conversation", json={"title": "Victim's secret"},
                      cookies={"session": registered.cookies["session"]}, timeout=30)
        slow.join()
        seen = requests.get(base + "/list_conversations", cookies={"session": planted}, timeout=30).json()
    assert seen["conversations"] == []


# -- 8. who may register -------------------------------------------------------------------------------

def test_abuse_auth_required_closes_registration_by_default(make_app):
    app = make_app(AUTH_REQUIRED=True)
    browser = app.test_client()
    refused = browser.post("/register", json=credentials())
    assert refused.status_code == 403 and refused.get_json()["message"].startswith("Registration is closed")
    page = browser.get("/register").get_data(as_text=True)
    assert "Registration is closed" in page and 'name="password"' not in page
    assert "Create one" not in browser.get("/login").get_data(as_text=True)
    assert browser.get("/account").get_json()["registration"] == "closed"


def admin_client(app):
    admin = app.test_client()
    assert admin.post("/login", json=credentials(ADMIN["ADMIN_USERNAME"], ADMIN["ADMIN_PASSWORD"])).status_code == 200
    return admin


def new_invite(admin, **body) -> str:
    made = admin.post("/admin/invites", json=body)
    assert made.status_code == 201, made.get_json()
    return made.get_json()["code"]


def test_abuse_invite_registration_needs_a_code_that_works_once(make_app, caplog):
    caplog.set_level("DEBUG")
    app = make_app(REGISTRATION="invite", **ADMIN)
    code = new_invite(admin_client(app), expires_in_days=2)
    assert 'name="invite"' in app.test_client().get("/register").get_data(as_text=True)
    without = app.test_client().post("/register", json=credentials())
    assert without.status_code == 400 and "invite code is needed" in without.get_json()["message"]
    wrong = app.test_client().post("/register", json=credentials(invite="not-a-code"))
    assert wrong.status_code == 403 and "not valid" in wrong.get_json()["message"]
    assert app.test_client().post("/register", json=credentials(invite=code)).status_code == 201
    again = app.test_client().post("/register", json=credentials("bob", invite=code))
    assert again.status_code == 403
    assert ADMIN["ADMIN_PASSWORD"] not in caplog.text and code not in caplog.text


def test_abuse_a_taken_name_does_not_use_up_the_invite(make_app):
    app = make_app(REGISTRATION="invite", **ADMIN)
    code = new_invite(admin_client(app))
    taken = app.test_client().post("/register", json=credentials("ROOT", invite=code))  # the admin's name
    assert taken.status_code == 409
    form = app.test_client().post("/register", data=credentials("carol", invite=code))
    assert form.status_code == 303


def test_abuse_parallel_registrations_cannot_share_an_invite(make_app):
    app = make_app(REGISTRATION="invite", **ADMIN)
    code = new_invite(admin_client(app))
    with serving(app) as base:
        statuses = in_parallel(8, lambda n: requests.post(
            base + "/register", json=credentials(f"user{n}", invite=code), timeout=60).status_code)
    assert sorted(statuses) == [201] + [403] * 7


@pytest.mark.parametrize("settings, who, body, status, words", [
    ({"REGISTRATION": "invite", **ADMIN}, "anonymous", {}, 403, "Only the administrator"),
    ({"REGISTRATION": "invite", **ADMIN}, "user", {}, 403, "Only the administrator"),
    ({"REGISTRATION": "open"}, "user", {}, 403, "Only the administrator"),
    ({"REGISTRATION": "invite", **ADMIN}, "admin", {"expires_in_days": 0}, 400, "1 to 90"),
    ({"REGISTRATION": "invite", **ADMIN}, "admin", {"expires_in_days": "7"}, 400, "1 to 90"),
    ({"REGISTRATION": "invite", **ADMIN}, "admin", {"expires_in_days": True}, 400, "1 to 90"),
    ({"AUTH_REQUIRED": True, **ADMIN}, "anonymous", {}, 401, "Log in"),
])
def test_abuse_only_the_admin_creates_invites(make_app, settings, who, body, status, words):
    app = make_app(**settings)
    client = app.test_client()
    if who == "admin":
        client = admin_client(app)
    elif who == "user":
        app.config["CHAT"].REGISTRATION = "open"
        assert client.post("/register", json=credentials()).status_code == 201
    answer = client.post("/admin/invites", json=body)
    assert answer.status_code == status and words in answer.get_json()["message"]


def test_abuse_nobody_registers_the_admins_name(make_app):
    app = make_app(REGISTRATION="open", ADMIN_USERNAME="root")  # no password: not created, still reserved
    assert app.test_client().post("/register", json=credentials("Root")).status_code == 409


# -- 11b. hashing off the event loop -------------------------------------------------------------------

HASHING_UNDER_EVENTLET = """
    from web import passwords
    eventlet.sleep(0.01)
    ticks.clear()
    started = time.perf_counter()
    stored = passwords.hash_password("correct horse battery")
    assert passwords.password_matches(stored, "correct horse battery")
    assert not passwords.password_matches(None, "correct horse battery")
    took = time.perf_counter() - started
    gaps = [b - a for a, b in zip([started, *ticks], ticks)]
    longest = max(gaps or [took])
    # Three hashes: run on the hub, the longest stall would be at least a third of the time (a busy
    # machine stretches both, so the bound is relative).
    assert longest < took / 6, f"the hub stalled {longest:.3f} s in {took:.3f} s of hashing"
    print("ok")
"""


def test_abuse_password_hashing_does_not_stall_the_eventlet_hub(tmp_path):
    run_under_eventlet(HASHING_UNDER_EVENTLET, tmp_path)
