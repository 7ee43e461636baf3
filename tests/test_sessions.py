"""Sessions: Redis when REDIS_URL is set (real Redis), else files in instance/."""
import redis


def test_sessions_filesystem_store_in_instance(app, client, tmp_path):
    client.get("/")
    files = list((tmp_path / "instance" / "sessions").iterdir())
    assert files, "a session file is written under instance/sessions"


def test_sessions_redis_keeps_identity_in_redis(make_app, redis_url):
    client = make_app(REDIS_URL=redis_url).test_client()
    cid = client.post("/start_conversation").get_json()["conversation_id"]
    keys = redis.from_url(redis_url).keys("session:*")
    assert len(keys) == 1
    assert client.get(f"/load_conversation/{cid}").status_code == 200


def test_sessions_redis_shared_between_two_workers(make_app, redis_url, tmp_path):
    """Two app instances (as two workers) on one Redis and one store see the same browser."""
    first = make_app(REDIS_URL=redis_url, SQLITE_PATH=str(tmp_path / "shared.sqlite3"))
    second = make_app(REDIS_URL=redis_url, SQLITE_PATH=str(tmp_path / "shared.sqlite3"))
    browser = first.test_client()
    cid = browser.post("/start_conversation").get_json()["conversation_id"]
    cookie = browser.get_cookie("session")
    other_worker = second.test_client()
    other_worker.set_cookie("session", cookie.value)
    assert other_worker.get(f"/load_conversation/{cid}").status_code == 200


def test_sessions_redis_outage_answers_503_then_recovers(make_app, private_redis):
    app = make_app(REDIS_URL=private_redis["url"])
    client = app.test_client()
    assert client.post("/start_conversation").status_code == 200
    private_redis["process"].terminate()
    private_redis["process"].wait(timeout=10)
    response = client.get("/list_conversations")
    assert response.status_code == 503
    assert "Sessions are unavailable" in response.get_json()["message"]
    assert app.test_client().post("/start_conversation").status_code == 503  # no identity without Redis
    health = client.get("/health")
    assert health.status_code == 503 and health.get_json()["redis"]["ok"] is False


def test_sessions_redis_revoked_id_keeps_a_tombstone_as_long_as_a_session_lives(make_app, redis_url):
    client = make_app(REDIS_URL=redis_url).test_client()
    client.post("/register", json={"username": "alice", "password": "correct horse battery"})
    old = client.get_cookie("session").value
    client.post("/logout", json={})
    server = redis.from_url(redis_url)
    assert server.get(f"session:{old}") is None
    assert 29 * 86400 < server.ttl(f"session-revoked:session:{old}") <= 30 * 86400
    thief = make_app(REDIS_URL=redis_url).test_client()
    thief.set_cookie("session", old)
    assert thief.get("/account").get_json()["authenticated"] is False
    assert server.get(f"session:{old}") is None  # the thief's request did not bring it back either


def test_sessions_file_store_refuses_a_revoked_id(app, client):
    client.post("/register", json={"username": "alice", "password": "correct horse battery"})
    old = client.get_cookie("session").value
    client.post("/logout", json={})
    interface = app.session_interface
    assert interface._revoked(f"session:{old}")
    with app.test_request_context():
        interface._upsert_session(app.permanent_session_lifetime, {"user_id": "x", "username": "alice"},
                                  f"session:{old}")
    assert interface._retrieve_session_data(f"session:{old}") is None
    assert interface.cache.get(f"session:{old}") is None
