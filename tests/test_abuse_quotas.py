"""Issue 12: quotas that hold under concurrency, bounded model calls per file, storage quota,
imports one at a time, a WAL that shrinks back. Concurrent requests go to a real threaded HTTP
server on a free port (and, with Redis, to two app instances sharing Redis and the database)."""
import io
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import pytest
import requests
from conftest import serving

from app import socketio

MB = 1024 * 1024
PIECE = 870_000  # 0.83 MB: two fit in 2 MB, three do not


def browser(base: str) -> requests.Session:
    """A browser that has loaded the page, so it has its session (and anonymous user id)."""
    session = requests.Session()
    session.get(base + "/", timeout=10)
    return session


def text_file(number: int, size: int = PIECE) -> bytes:
    """Distinct contents (the store keeps one copy of identical files per user)."""
    line = f"File {number}: the quick brown fox jumps over the lazy dog.\n".encode()
    return (line * (size // len(line) + 1))[:size]


def upload(session: requests.Session, base: str, number: int, size: int = PIECE) -> requests.Response:
    files = {"file": (f"f{number}.txt", io.BytesIO(text_file(number, size)), "text/plain")}
    return session.post(base + "/upload_file", files=files, timeout=60)


def all_at_once(calls: list) -> list:
    """Run the calls on as many threads, released together."""
    start = threading.Barrier(len(calls))

    def run(call):
        start.wait(timeout=10)
        return call()
    with ThreadPoolExecutor(len(calls)) as pool:
        return list(pool.map(run, calls))


def wait_jobs_done(app, seconds: float = 60.0) -> None:
    """Until no upload job is pending or processing (the store is shared by every instance)."""
    store, deadline = app.extensions["chat_store"].get(), time.monotonic() + seconds
    while time.monotonic() < deadline:
        busy = store._db().execute("SELECT COUNT(*) FROM jobs WHERE status IN ('pending', 'processing')").fetchone()
        if busy[0] == 0:
            return
        time.sleep(0.05)
    raise AssertionError("upload jobs still running")


@pytest.fixture(params=["memory", "redis"])
def instances(request, make_app, tmp_path):
    """Without Redis: one app (the app without Redis runs as one process). With Redis: two app
    instances sharing Redis and the SQLite file, as two gunicorn workers would."""
    def build(**settings):
        if request.param == "memory":
            return [make_app(**settings)]
        url = request.getfixturevalue("redis_url")
        shared = {"REDIS_URL": url, "SQLITE_PATH": str(tmp_path / "shared.sqlite3"), **settings}
        return [make_app(**shared), make_app(**shared)]
    return build


@contextmanager
def served(apps):
    with serving(apps[0]) as first:
        if len(apps) == 1:
            yield [first]
            return
        with serving(apps[1]) as second:
            yield [first, second]


# -- 6: quotas raced ---------------------------------------------------------------------------

def test_quota_concurrent_uploads_stay_within_the_server_cap(instances):
    apps = instances(UPLOAD_TOTAL_MB=2)
    with served(apps) as bases:
        people = [browser(bases[0]) for _ in range(4)]
        for person in people:  # the same browsers on the other instance: same cookie, same user
            for base in bases[1:]:
                person.get(base + "/", timeout=10)
        answers = all_at_once([lambda n=n: upload(people[n % 4], bases[n % len(bases)], n) for n in range(20)])
        accepted = [a for a in answers if a.status_code == 202]
        refused = [a for a in answers if a.status_code == 413]
        assert 1 <= len(accepted) <= 2 and len(accepted) + len(refused) == 20, f"{len(accepted)} of 20 accepted"
        assert all("storage is full" in a.json()["message"] for a in refused)
        wait_jobs_done(apps[0])
    assert apps[0].extensions["chat_store"].get().upload_bytes(None) <= 2 * MB


def test_quota_concurrent_uploads_stay_within_the_users_quota(instances):
    apps = instances(UPLOAD_QUOTA_MB=2)
    with served(apps) as bases:
        first = browser(bases[0])
        for session_base in bases[1:]:  # the same browser on the other instance: same cookie, same user
            first.get(session_base + "/", timeout=10)
        answers = all_at_once([lambda n=n: upload(first, bases[n % len(bases)], n) for n in range(12)])
        accepted = [a for a in answers if a.status_code == 202]
        assert 1 <= len(accepted) <= 2, f"{len(accepted)} of 12 accepted"
        assert all("of your 2 MB" in a.json()["message"] for a in answers if a.status_code == 413)
        wait_jobs_done(apps[0])
        other = browser(bases[0])
        assert upload(other, bases[0], 99).status_code == 202  # another user still has room
        wait_jobs_done(apps[0])


def test_quota_a_failed_job_gives_its_hold_back(make_app, fake_llm):
    from fake_llm import Fault
    app = make_app(OPENAI_BASE_URL=fake_llm.url, UPLOAD_QUOTA_MB=0.0015)  # 1,572 bytes: one file of 1,000
    fake_llm.fail_next(*[Fault.http(400, message="model not found")] * 3)
    with serving(app) as base:
        session = browser(base)
        first = upload(session, base, 1, 1000)
        assert first.status_code == 202
        wait_jobs_done(app)
        assert session.get(f"{base}/jobs/{first.json()['job_id']}", timeout=10).json()["status"] == "error"
        session.delete(f"{base}/conversations/{first.json()['conversation_id']}", timeout=10)
        assert upload(session, base, 2, 1000).status_code == 202  # nothing left held by the failed job
        wait_jobs_done(app)


def test_quota_holds_expire_when_their_process_died():
    from web.reservations import MemoryLedger
    ledger = MemoryLedger()
    ledger.hold(["upload:all"], 500, ttl_s=0.05)  # never released: its worker died
    time.sleep(0.1)
    _, held = ledger.hold(["upload:all"], 100, ttl_s=60)
    assert held == [100]


# -- 7: cost amplification ----------------------------------------------------------------------

def test_cost_a_long_upload_makes_at_most_file_max_model_calls(make_app, fake_llm):
    from test_uploads import post_upload, wait_for_job
    app = make_app(OPENAI_BASE_URL=fake_llm.url, CHUNK_SIZE_TOKENS=300, CHUNK_OVERLAP_TOKENS=0,
                   FILE_MAX_MODEL_CALLS=12, FILE_WORKERS=8)
    client = app.test_client()
    body = wait_for_job(client, post_upload(client, "long.txt", text_file(1, 200_000)).get_json()["job_id"], 60)
    assert body["status"] == "done" and body["chunks"] > 100
    assert len(fake_llm.requests) <= 12 and body["model_calls"] == len(fake_llm.requests)
    assert body["analysed_chunks"] == len(fake_llm.requests) - 1
    assert f"of its {body['chunks']} parts were analysed" in body["analysis"]
    store = app.extensions["chat_store"].get()
    assert len(store.document_chunks(client_user(client), body["document_id"])) == body["chunks"]  # all stored


def client_user(client) -> str:
    with client.session_transaction() as session:
        return session["user_id"]


def test_cost_uploads_count_against_the_concurrent_work_limit(make_app, fake_llm):
    from test_uploads import post_upload, wait_for_job
    fake_llm.first_token_delay = 1.5
    app = make_app(OPENAI_BASE_URL=fake_llm.url, RATELIMIT_ENABLED=True, MAX_CONCURRENT_GENERATIONS=1)
    client = app.test_client()
    first = post_upload(client, "a.txt", b"first file")
    assert first.status_code == 202
    second = post_upload(client, "b.txt", b"second file")
    assert second.status_code == 429 and second.get_json()["retry_after"] == 1
    assert second.get_json()["message"].startswith("You already have 1 replies")
    wait_for_job(client, first.get_json()["job_id"])
    assert post_upload(client, "b.txt", b"second file").status_code == 202  # the slot was given back


def test_cost_uploads_count_against_the_message_rate(make_app):
    from test_uploads import post_upload
    client = make_app(RATELIMIT_ENABLED=True, RATELIMIT_MESSAGES="2 per minute").test_client()
    codes = [post_upload(client, f"{n}.txt", f"file {n}".encode()).status_code for n in range(3)]
    assert codes == [202, 202, 429]


# -- 9: storage quota, imports one at a time, a bounded WAL -------------------------------------

def conversation(number: int, size: int, messages: int = 10) -> dict:
    part = size // messages
    body = [{"role": "user" if i % 2 == 0 else "assistant", "content": f"{number}/{i} " + "x" * part}
            for i in range(messages)]
    return {"title": f"Imported {number}", "conversation": body, "export_version": 1}


def post_import(session, base: str, payload) -> requests.Response:
    data = json.dumps(payload).encode()
    return session.post(base + "/import_conversations", files={"file": ("c.json", io.BytesIO(data))}, timeout=120)


def test_storage_import_over_quota_is_a_clear_413(make_app):
    app = make_app(STORAGE_QUOTA_MB=0.05)  # 52,428 bytes
    client = app.test_client()
    data = json.dumps([conversation(1, 30_000)]).encode()
    assert client.post("/import_conversations", data={"file": (io.BytesIO(data), "c.json")}).status_code == 200
    refused = client.post("/import_conversations", data={"file": (io.BytesIO(data), "c.json")})
    assert refused.status_code == 413
    message = refused.get_json()["message"]
    assert "of your 0.05 MB of storage" in message and "this import needs 0.029 MB" in message
    assert len(client.get("/list_conversations").get_json()["conversations"]) == 1  # nothing half-stored


def test_storage_quota_refuses_a_message_over_it(make_app):
    app = make_app(STORAGE_QUOTA_MB=0.01)  # 10,485 bytes
    http = app.test_client()
    http.get("/")
    data = json.dumps(conversation(1, 10_000, messages=2)).encode()
    assert http.post("/import_conversations", data={"file": (io.BytesIO(data), "c.json")}).status_code == 200
    sock = socketio.test_client(app, flask_test_client=http)
    ack = sock.emit("send_message", {"message": "x" * 2000}, callback=True)
    sock.disconnect()
    assert ack["ok"] is False and "of your 0.01 MB of storage" in ack["message"]
    assert "this message needs" in ack["message"]


def test_storage_imports_run_one_at_a_time_per_user(instances):
    apps = instances()
    with served(apps) as bases:
        session = browser(bases[0])
        for base in bases[1:]:
            session.get(base + "/", timeout=10)
        payload = [conversation(n, 400_000, messages=200) for n in range(10)]  # 4 MB, 2,000 messages
        answers = all_at_once([lambda n=n: post_import(session, bases[n % len(bases)], payload) for n in range(3)])
    codes = sorted(a.status_code for a in answers)
    assert codes.count(200) >= 1 and codes.count(429) >= 1 and set(codes) <= {200, 429}
    refused = next(a for a in answers if a.status_code == 429)
    assert "Another import of yours is still running" in refused.json()["message"]


def test_storage_imports_at_once_for_the_server(make_app):
    app = make_app(IMPORTS_AT_ONCE=1)
    with serving(app) as base:
        people = [browser(base) for _ in range(3)]
        payload = [conversation(n, 400_000, messages=200) for n in range(10)]
        answers = all_at_once([lambda s=s, p=payload: post_import(s, base, p) for s in people])
    codes = [a.status_code for a in answers]
    assert codes.count(200) >= 1 and codes.count(429) >= 1
    assert any("busy with other imports" in a.json()["message"] for a in answers if a.status_code == 429)


def test_storage_wal_stays_bounded_after_big_imports(make_app, tmp_path):
    app = make_app(IMPORTS_AT_ONCE=4)
    wal = tmp_path / "instance" / "chat.sqlite3-wal"
    with serving(app) as base:
        people = [browser(base) for _ in range(4)]
        for round_ in range(2):
            payload = [conversation(round_ * 10 + n, 300_000, messages=100) for n in range(10)]  # 3 MB each
            answers = all_at_once([lambda s=s, p=payload: post_import(s, base, p) for s in people])
            assert [a.status_code for a in answers] == [200] * 4
    assert wal.stat().st_size <= 1 * MB, f"WAL is {wal.stat().st_size / MB:.1f} MB"
