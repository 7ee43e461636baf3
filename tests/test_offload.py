"""The async-mode adapter, in threading mode here and under a real eventlet hub in a subprocess."""
import os
import time
from pathlib import Path

import pytest
from conftest import run_under_eventlet

from agents import offload
from agents.file_jobs import sweep_orphans

ROOT = Path(__file__).resolve().parent.parent


def test_bounded_map_keeps_order_and_limits_concurrency():
    running, peak = [0], [0]

    def work(n):
        running[0] += 1
        peak[0] = max(peak[0], running[0])
        time.sleep(0.02)
        running[0] -= 1
        return n * n
    assert offload.bounded_map(work, range(12), 3) == [n * n for n in range(12)]
    assert peak[0] <= 3


def test_bounded_map_raises_the_first_error_and_handles_empty_input():
    def fail(n):
        raise ValueError(n)
    with pytest.raises(ValueError):
        offload.bounded_map(fail, [1, 2], 2)
    assert offload.bounded_map(fail, [], 4) == []


def test_threading_mode_calls_directly():
    target = object()
    assert offload.off_loop(target) is target
    assert offload.run_blocking(lambda a, b: a + b, 2, 3) == 5
    offload.pauser()()  # a no-op
    with pytest.raises(ValueError):
        offload.configure("asyncio")


OFFLOAD_UNDER_EVENTLET = """
    from storage.sqlite_store import SqliteStore
    started = time.perf_counter()
    assert offload.bounded_map(lambda n: eventlet.sleep(0.1) or n, range(8), 4) == list(range(8))
    assert 0.15 < time.perf_counter() - started < 0.35, "four at a time: two rounds of 0.1 s"
    store = offload.off_loop(SqliteStore(sys.argv[1]))
    assert store.backend == "sqlite" and store.migrate()
    cid = store.create_conversation("alice", "t")["conversation_id"]
    assert store.get_conversation("alice", cid)["title"] == "t"
    pause, count = offload.pauser(0.003), 0
    ticks.clear()
    busy_until = time.perf_counter() + 0.3
    while time.perf_counter() < busy_until:
        sum(range(2000))
        pause()
    gaps = [b - a for a, b in zip(ticks, ticks[1:])]
    assert len(ticks) > 20 and max(gaps) < 0.03, (len(ticks), max(gaps or [0]))
    print("ok")
"""


def test_under_eventlet_the_hub_keeps_running(tmp_path):
    run_under_eventlet(OFFLOAD_UNDER_EVENTLET, tmp_path, str(tmp_path / "e.sqlite3"))


QUICK_READS_ON_THE_LOOP = """
    import sqlite3
    from storage.sqlite_store import SqliteStore
    raw = SqliteStore(sys.argv[1])
    raw.migrate()
    store = offload.off_loop(raw, raw.loop_twin())
    hops = []
    real_run_blocking = offload.run_blocking
    offload.run_blocking = lambda function, *args: hops.append(function) or real_run_blocking(function, *args)
    cid = store.create_conversation("alice", "t")["conversation_id"]  # a write: on a thread
    assert len(hops) == 1
    message = store.append_message("alice", cid, "user", "hello", tokens=2)
    found = []
    pool = eventlet.GreenPool(50)
    for _ in range(200):  # green threads sharing the loop's one connection, never at once
        pool.spawn(lambda: found.append(store.get_message("alice", message["message_id"])["content"]))
    pool.waitall()
    assert found == ["hello"] * 200 and len(hops) == 2, len(hops)  # read on the loop: no hop
    assert store.get_conversation("alice", cid)["title"] == "t" and len(hops) == 2  # sees the thread's writes
    started, first = store.start_conversation("alice", "u", "hi", message_id="m1")  # a turn's writes: on the loop
    store.append_user_message("alice", started["conversation_id"], "more", parent_message_id="m1")
    assert len(hops) == 2 and [m["content"] for m in raw.list_messages("alice", started["conversation_id"])] == [
        "hi", "more"]
    other = sqlite3.connect(sys.argv[1], isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another instance is writing: the loop does not wait for it
    waited = eventlet.spawn(store.start_conversation, "alice", "v", "hello again")
    eventlet.sleep(0.1)
    assert len(hops) == 3 and not waited.dead  # on a thread, waiting for the lock, the loop running
    other.execute("COMMIT")
    assert waited.wait()[1]["content"] == "hello again" and len(raw.list_conversations("alice")) == 3
    twin = raw.loop_twin()

    def busy(*args):
        raise sqlite3.OperationalError("database is locked")
    twin.get_message = busy
    store = offload.off_loop(raw, twin)
    assert store.get_message("alice", message["message_id"])["content"] == "hello"  # busy: on a thread
    assert len(hops) == 4
    print("ok")
"""


def test_quick_reads_run_on_the_loop_and_fall_back_to_a_thread(tmp_path):
    run_under_eventlet(QUICK_READS_ON_THE_LOOP, tmp_path, str(tmp_path / "q.sqlite3"))


def test_sweep_removes_only_old_saved_uploads(tmp_path):
    old, fresh, other = tmp_path / "a.upload", tmp_path / "b.upload", tmp_path / "keep.txt"
    for path in (old, fresh, other):
        path.write_text("x")
    os.utime(old, (time.time() - 7200, time.time() - 7200))
    os.utime(other, (time.time() - 7200, time.time() - 7200))
    assert sweep_orphans(tmp_path) == 1
    assert not old.exists() and fresh.exists() and other.exists()
    assert sweep_orphans(tmp_path / "missing") == 0
