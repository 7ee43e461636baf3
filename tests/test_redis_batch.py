"""BatchingRedis against the machine's Redis: concurrent callers share round trips, each keeps its
own answer or error, scripts work, and under eventlet a killed waiter stalls nobody."""
import threading
import time

import pytest
import redis
from conftest import run_under_eventlet

from web.redis_batch import BatchingRedis


class CountingConnection(redis.Connection):
    """Counts the writes to Redis (a round trip each); the first one is slow, so callers pile up."""
    sends = 0

    def send_packed_command(self, command, check_health=True):
        CountingConnection.sends += 1
        if CountingConnection.sends == 1:
            time.sleep(0.2)
        return super().send_packed_command(command, check_health)


@pytest.fixture
def counted(redis_url):
    CountingConnection.sends = 0
    pool = redis.ConnectionPool.from_url(redis_url, connection_class=CountingConnection)
    client = BatchingRedis(connection_pool=pool)
    client.execute_command("PING")  # connection setup (SELECT) out of the count
    CountingConnection.sends = 1  # past the slow first write
    yield client
    pool.disconnect()


def _at_once(count: int, work) -> list:
    results, barrier = [None] * count, threading.Barrier(count)

    def run(index: int) -> None:
        barrier.wait()
        try:
            results[index] = work(index)
        except Exception as error:  # noqa: BLE001 - the test looks at it
            results[index] = error
    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    return results


def test_batching_redis_concurrent_callers_share_round_trips(counted):
    CountingConnection.sends = 0  # the next write is the slow one: everyone else queues behind it
    results = _at_once(40, lambda i: counted.incr("counter"))
    assert sorted(results) == list(range(1, 41))
    assert counted.get("counter") == b"40"
    assert CountingConnection.sends <= 4  # the slow one, then the queue in one or two pipelines (not 40)


def test_batching_redis_one_callers_error_is_its_own(counted):
    counted.set("text", "not a number")
    CountingConnection.sends = 0
    results = _at_once(10, lambda i: counted.incr("text" if i == 3 else f"n{i}"))
    assert isinstance(results[3], redis.ResponseError)
    assert [r for i, r in enumerate(results) if i != 3] == [1] * 9


def test_batching_redis_scripts_load_and_run_in_a_batch(counted):
    script = counted.register_script("return redis.call('INCRBY', KEYS[1], ARGV[1])")
    counted.script_flush()  # not loaded: the first calls get NOSCRIPT, load it, and retry
    CountingConnection.sends = 0
    results = _at_once(20, lambda i: script(keys=["total"], args=[1]))
    assert sorted(results) == list(range(1, 21))


def test_batching_redis_alone_sends_each_command_at_once(counted):
    for n in range(1, 6):
        assert counted.incr("solo") == n
    assert CountingConnection.sends == 1 + 5  # no pipeline, no waiting: one write per command


def test_batching_redis_connection_failure_reaches_every_caller_and_clears(redis_url):
    client = BatchingRedis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=0.5)
    results = _at_once(5, lambda i: client.get("k"))
    assert all(isinstance(r, redis.ConnectionError) for r in results)
    assert len({id(r) for r in results}) == 5  # each its own: tracebacks do not mix
    assert not client._sending and not client._queued  # the next caller leads again


SLOW_FIRST_WRITE = """
    import redis
    from web.redis_batch import BatchingRedis

    class SlowConnection(redis.Connection):  # the next `slow` writes take 100 ms: callers queue
        slow = 0

        def send_packed_command(self, command, check_health=True):
            if SlowConnection.slow:
                SlowConnection.slow -= 1
                eventlet.sleep(0.1)
            return super().send_packed_command(command, check_health)
    client = BatchingRedis(connection_pool=redis.ConnectionPool.from_url(sys.argv[1], connection_class=SlowConnection))
    client.set("k", 0)
    SlowConnection.slow = 1
"""

KILLED_WAITER = SLOW_FIRST_WRITE + """
    slow = eventlet.spawn(client.get, "k")
    eventlet.sleep(0.01)  # its round trip is under way
    victims = [eventlet.spawn(client.incr, "k") for _ in range(3)]
    survivors = [eventlet.spawn(client.incr, "k") for _ in range(3)]
    eventlet.sleep(0.01)
    for victim in victims:  # queued behind the slow one; killed (GreenletExit) before their turn
        victim.kill()
    slow.wait()
    assert sorted(s.wait() for s in survivors) == [1, 2, 3]
    assert client.incr("k") == 4 and not client._queued
    print("ok")
"""


def test_batching_redis_a_killed_waiter_stalls_nobody(redis_url, tmp_path):
    run_under_eventlet(KILLED_WAITER, tmp_path, redis_url)


KILLED_SENDER = SLOW_FIRST_WRITE + """
    client.get("k")
    SlowConnection.slow = 2  # the next caller leads alone and slowly; two queue, then are sent slowly too
    first = eventlet.spawn(client.incr, "k")
    eventlet.sleep(0.01)
    queued = [eventlet.spawn(client.incr, "k") for _ in range(2)]
    first.wait()  # its write done: the lead is handed to the first queued, which sends both
    eventlet.sleep(0.01)
    queued[0].kill()  # the sender, mid-round-trip: its batch-mate's outcome is unknown
    try:
        answer = queued[1].wait()
    except redis.ConnectionError:
        answer = "error"
    assert answer == "error", answer  # never a silent None
    assert int(client.get("k")) in (1, 2, 3) and not client._queued and not client._sending
    print("ok")
"""


def test_batching_redis_a_sender_killed_mid_round_trip_fails_its_batch_loudly(redis_url, tmp_path):
    run_under_eventlet(KILLED_SENDER, tmp_path, redis_url)


READY_TOGETHER = """
    import redis
    from web.redis_batch import BatchingRedis

    class CountingConnection(redis.Connection):
        writes = 0

        def send_packed_command(self, command, check_health=True):
            CountingConnection.writes += 1
            return super().send_packed_command(command, check_health)
    client = BatchingRedis(connection_pool=redis.ConnectionPool.from_url(sys.argv[1],
                                                                         connection_class=CountingConnection))
    client.set("k", 0)
    CountingConnection.writes = 0
    pool = eventlet.GreenPool(20)
    answers = list(pool.imap(lambda _: client.incr("k"), range(20)))  # green threads ready at once
    assert sorted(answers) == list(range(1, 21)), answers
    assert CountingConnection.writes == 1, CountingConnection.writes  # the first waited for the others
    print("ok")
"""


def test_batching_redis_green_threads_ready_together_share_one_round_trip(redis_url, tmp_path):
    run_under_eventlet(READY_TOGETHER, tmp_path, redis_url)


def test_batching_redis_direct_calls_do_not_queue_behind_a_round_trip(counted):
    """`direct` (a quota hold, a claim: calls a reply's first token waits for) shares the pool but
    not the queue: it does not wait for another caller's slow round trip."""
    CountingConnection.sends = 0  # the next write is the slow one (0.2 s)
    slow = threading.Thread(target=lambda: counted.incr("slow"))
    slow.start()
    time.sleep(0.05)  # the slow round trip is under way
    started = time.monotonic()
    assert counted.direct.set("claim", "r1", nx=True) is True
    assert time.monotonic() - started < 0.1  # not behind it
    slow.join(5)
    assert counted.direct is counted.direct and counted.direct.connection_pool is counted.connection_pool
    assert counted.get("slow") == b"1" and counted.get("claim") == b"r1"
