"""In-flight replies: the same contract in memory and in the real Redis (shared by workers)."""
import pytest
import redis

from web.inflight import MemoryInflight, RedisInflight


@pytest.fixture(params=["memory", "redis"])
def inflight(request):
    if request.param == "memory":
        return MemoryInflight()
    return RedisInflight(redis.from_url(request.getfixturevalue("redis_url")))


def test_inflight_one_reply_per_conversation(inflight):
    assert inflight.start("c1", "r1") is True
    assert inflight.start("c1", "r2") is False
    assert inflight.start("c2", "r3") is True


def test_inflight_snapshot_has_the_partial_text(inflight):
    assert inflight.snapshot("c1") is None
    inflight.start("c1", "r1")
    inflight.append("r1", "Hel")
    inflight.append("r1", "lo ✓")
    assert inflight.snapshot("c1") == {"message_id": "r1", "text": "Hello ✓"}


def test_inflight_stop_reaches_the_reply(inflight):
    assert inflight.request_stop("c1") is None
    inflight.start("c1", "r1")
    assert inflight.stop_requested("r1") is False
    assert inflight.request_stop("c1") == "r1"
    assert inflight.stop_requested("r1") is True


def test_inflight_append_answers_whether_stop_was_requested(inflight):
    """One round trip per flush stores the text and reads the Stop flag (the emitter's stop check)."""
    inflight.start("c1", "r1")
    assert inflight.append("r1", "Hel").stopped is False
    inflight.request_stop("c1")
    assert inflight.append("r1", "lo").stopped is True


def test_inflight_finish_frees_the_conversation(inflight):
    inflight.start("c1", "r1")
    inflight.append("r1", "x")
    inflight.request_stop("c1")
    inflight.finish("c1", "r1")
    assert inflight.snapshot("c1") is None and inflight.stop_requested("r1") is False
    assert inflight.start("c1", "r2") is True


def test_inflight_two_workers_share_state_through_redis(redis_url):
    worker_a, worker_b = (RedisInflight(redis.from_url(redis_url)) for _ in range(2))
    worker_a.start("c1", "r1")
    worker_a.append("r1", "partial")
    assert worker_b.snapshot("c1") == {"message_id": "r1", "text": "partial"}
    worker_b.request_stop("c1")
    assert worker_a.stop_requested("r1")


def test_inflight_a_failed_claim_names_the_reply_holding_the_conversation(inflight):
    """send_message tells a re-send racing its first send (the same reply holds the conversation:
    a duplicate) from another reply (busy) after the claim, not with a read before it."""
    from web.inflight import claim, holder_after_claim

    def never_stored(message_id):
        return False

    assert holder_after_claim(inflight, "c1", "r1", never_stored) is None  # claimed
    assert holder_after_claim(inflight, "c1", "r1", never_stored) == "r1"  # the same reply again
    assert holder_after_claim(inflight, "c1", "r2", never_stored) == "r1" and not claim(inflight, "c1", "r2", never_stored)
    def stored(message_id):  # r1's release failed after it was stored
        return message_id == "r1"

    assert holder_after_claim(inflight, "c1", "r2", stored) is None  # the stale claim is cleared, r2 claims


def test_inflight_queued_flushes_of_many_replies_are_stored_in_one_round_trip(redis_url):
    """append_soon: each reply's flush is queued; one task stores them all with one script call and
    hands each its answer (Stop, presence), a reply's texts in the order flushed."""
    client = redis.from_url(redis_url)
    sends: list = []
    inflight = RedisInflight(client, spawn=sends.append)
    for conversation, reply in (("c1", "r1"), ("c2", "r2")):
        inflight.start(conversation, reply)
    client.hset("presence:room:conversation:c2", "there", 1)
    inflight.request_stop("c2")
    answers: list = []
    stored = [inflight.append_soon(reply, text, room, lambda appended, reply=reply: answers.append((reply, appended)))
              for reply, text, room in (("r1", "Hel", None), ("r2", "Hi", "presence:room:conversation:c2"),
                                        ("r1", "lo", None))]
    assert answers == [] and len(sends) == 1 and not any(event.is_set() for event in stored)
    commands = client.info("commandstats").get("cmdstat_evalsha", {}).get("calls", 0)
    sends.pop()()
    assert client.info("commandstats").get("cmdstat_evalsha", {}).get("calls", 0) - commands <= 2  # one call (+ a load)
    assert [(reply, appended.stopped, appended.room_members) for reply, appended in answers] == [
        ("r1", False, None), ("r2", True, [b"there"]), ("r1", False, None)]
    assert all(event.is_set() for event in stored)
    assert inflight.snapshot("c1")["text"] == "Hello" and inflight.snapshot("c2")["text"] == "Hi"
    inflight.append_soon("r1", "!", None, answers.append)
    assert len(sends) == 1  # the queue was emptied: the next flush starts a task again
    sends.pop()()
    assert inflight.snapshot("c1")["text"] == "Hello!"


def test_inflight_queued_flushes_are_answered_when_redis_is_down():
    """Best effort, as append: a flush queued while Redis is down is answered (Stop unknown) and the
    reply goes on; nobody waits forever."""
    sends: list = []
    inflight = RedisInflight(redis.Redis(port=1, socket_connect_timeout=0.2), spawn=sends.append)
    answers: list = []
    stored = inflight.append_soon("r1", "x", "presence:room:conversation:c1", answers.append)
    sends.pop()()
    assert stored.is_set() and answers == [(None, None)]


def test_inflight_memory_append_soon_answers_at_once():
    inflight = MemoryInflight()
    inflight.start("c1", "r1")
    answers: list = []
    assert inflight.append_soon("r1", "x", None, answers.append).is_set()
    assert answers == [(False, None)] and inflight.snapshot("c1")["text"] == "x"


def test_inflight_text_so_far_waits_for_this_processs_queued_flushes(redis_url):
    """A tab joining the room here was not sent the flushes emitted before its join: the text so far
    it reads includes them, stored first."""
    import threading

    sends: list = []
    inflight = RedisInflight(redis.from_url(redis_url), spawn=sends.append)
    inflight.start("c1", "r1")
    inflight.append_soon("r1", "Hello", None, lambda appended: None)
    sender = threading.Timer(0.2, lambda: sends.pop()())  # the task runs a while later
    sender.start()
    assert inflight.snapshot("c1") == {"message_id": "r1", "text": "Hello"}
    sender.join()


def test_inflight_a_flush_that_fails_in_the_batch_leaves_the_others_stored(redis_url):
    """One reply's keys failing in the script (a key of another type) fails that flush only."""
    client = redis.from_url(redis_url)
    sends: list = []
    inflight = RedisInflight(client, spawn=sends.append)
    inflight.start("c1", "r1")
    inflight.start("c2", "r2")
    client.hset("inflight:text:r1", "not", "text")
    answers: list = []
    for reply in ("r1", "r2"):
        inflight.append_soon(reply, "Hello", None, lambda appended, reply=reply: answers.append((reply, appended)))
    sends.pop()()
    assert answers == [("r1", (None, None)), ("r2", (False, None))]
    assert inflight.snapshot("c2")["text"] == "Hello"
