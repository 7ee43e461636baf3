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
