"""Adaptive coalescing (web/flush_pacer.py, web/socket_emitter.py): STREAM_FLUSH_MS while the event
loop keeps up, up to STREAM_FLUSH_MAX_MS while it lags, and the first chunk never waits."""
from __future__ import annotations

import itertools

import pytest

from web import flush_pacer
from web.inflight import MemoryInflight
from web.socket_emitter import SocketEmitter


class RecordingSocketIO:
    """What the emitter needs of Flask-SocketIO: emit (recorded) and background tasks (not run)."""

    server = None

    def __init__(self) -> None:
        self.emitted: list[tuple[str, dict]] = []
        self.tasks: list = []

    def emit(self, event, payload, to=None) -> None:
        self.emitted.append((event, payload))

    def start_background_task(self, target, *args) -> None:
        self.tasks.append(target)

    def sleep(self, seconds) -> None:
        pass

    def chunks(self) -> list[str]:
        return [payload["chunk"] for event, payload in self.emitted if event == "response_chunk"]


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize("lag_s, expected_ms", [(0.0, 50), (0.01, 70), (0.05, 150), (0.1, 250), (5.0, 250)])
def test_adaptive_flush_interval_grows_with_lag_up_to_the_maximum(lag_s, expected_ms):
    assert flush_pacer.interval_s(50, 250, lag_s) == pytest.approx(expected_ms / 1000)


def test_adaptive_flush_maximum_below_base_keeps_the_base():
    assert flush_pacer.interval_s(80, 20, 1.0) == pytest.approx(0.08)


def test_adaptive_flush_lag_rises_at_once_and_decays_back():
    lag = flush_pacer.LoopLag()
    lag.note(0.2)
    assert lag.seconds == 0.2
    lag.note(0.05)  # a smaller lag right after a big one does not hide it yet
    assert lag.seconds == pytest.approx(0.2 * flush_pacer.DECAY)
    for _ in range(20):
        lag.note(-0.001)  # on-time wake-ups (sleep may even return a hair early)
    assert lag.seconds < 0.001
    assert flush_pacer.interval_s(50, 250, lag.seconds) == pytest.approx(0.05, abs=0.002)


def emitter(flush_ms=50, flush_max_ms=250) -> tuple[SocketEmitter, RecordingSocketIO, Clock]:
    socketio, clock = RecordingSocketIO(), Clock()
    return SocketEmitter(socketio, MemoryInflight(), "c1", "r1", flush_ms, flush_max_ms, clock=clock), socketio, clock


def test_adaptive_flush_one_probe_per_process_and_none_when_fixed():
    first, socketio, _ = emitter()
    second = SocketEmitter(socketio, MemoryInflight(), "c2", "r2", 50, 250)
    assert first.lag is second.lag and len(socketio.tasks) == 1
    fixed, socketio, _ = emitter(50, 50)
    assert fixed.lag is None and socketio.tasks == []


def test_adaptive_flush_first_chunk_is_never_delayed_under_load():
    reply, socketio, _ = emitter()
    reply.lag.note(10.0)  # the loop is far behind
    reply.chunk("Hello")
    assert socketio.chunks() == ["Hello"]


def test_adaptive_flush_coalesces_longer_under_lag_and_returns_to_base():
    reply, socketio, clock = emitter()
    reply.chunk("a")
    reply.lag.note(0.1)  # 250 ms now
    clock.now += 0.1
    reply.chunk("b")
    clock.now += 0.1
    reply.chunk("c")
    assert socketio.chunks() == ["a"]  # 200 ms: past 50 ms, not yet 250 ms
    clock.now += 0.06
    reply.chunk("d")
    assert socketio.chunks() == ["a", "bcd"]
    for _ in range(30):
        reply.lag.note(0.0)  # the loop caught up
    clock.now += 0.06
    reply.chunk("e")
    assert socketio.chunks() == ["a", "bcd", "e"]  # back to 50 ms
    reply.done("r1", "stop")
    assert socketio.emitted[-1][0] == "response_done"


# -- in a browser: large batches still look smooth (static/js/reveal.js) -------------------------

VISIBLE_UPDATES = """() => { window.visibleUpdates = new Promise((resolve) => {
  const times = [];
  let length = 0;
  const started = performance.now();
  const sample = (now) => {
    const bodies = document.querySelectorAll('.message.assistant .message-body');
    const text = bodies.length ? bodies[bodies.length - 1].textContent : '';
    if (text.length !== length) { length = text.length; times.push(now); }
    if (document.body.dataset.replyDone === 'yes' && now - times[times.length - 1] > 500) resolve(times);
    else if (now - started > 30000) resolve(times);
    else requestAnimationFrame(sample);
  };
  requestAnimationFrame(sample);
}); }"""


def test_adaptive_flush_page_reveals_large_batches_at_a_steady_pace(tmp_path, fake_llm):
    """Batches every 250 ms (the most the server coalesces under load) still show as a steady stream:
    the p99 gap between visible updates stays far below the batch interval."""
    sync_api = pytest.importorskip("playwright.sync_api")
    from browser_support import LiveApp, launch_chromium
    fake_llm.tokens, fake_llm.token_delay = 120, 0.02  # 2.4 s of reply, ~10 batches
    app = LiveApp(tmp_path / "instance", tmp_path, OPENAI_BASE_URL=fake_llm.url, MODEL="fake-model",
                  STREAM_FLUSH_MS=250, STREAM_FLUSH_MAX_MS=250).start()
    try:
        with sync_api.sync_playwright() as playwright:
            browser = launch_chromium(playwright)
            page = browser.new_page(base_url=app.base)
            page.goto("/")
            sync_api.expect(page.locator("body")).to_have_attribute("data-connected", "true")
            page.evaluate(VISIBLE_UPDATES)  # samples every frame until told the reply is done
            page.fill("#message-input", "Tell me a story")
            page.keyboard.press("Enter")
            sync_api.expect(page.locator("#stop-button")).to_be_hidden(timeout=20_000)
            page.evaluate("() => { document.body.dataset.replyDone = 'yes'; }")
            times = page.evaluate("() => window.visibleUpdates")
            browser.close()
    finally:
        app.stop()
    gaps = sorted(b - a for a, b in itertools.pairwise(times))
    p99 = gaps[min(len(gaps) - 1, round(0.99 * len(gaps)))]
    print(f"visible updates: {len(times)}, p99 gap {p99:.0f} ms, largest {gaps[-1]:.0f} ms")
    assert len(times) > 30  # not ~10 jumps, one per batch
    assert p99 < 150


def test_adaptive_flush_a_flush_answers_the_stop_check_too():
    reply, _, clock = emitter()
    asked = []
    reply.inflight.stop_requested = lambda reply_id: asked.append(reply_id) or False
    reply.inflight.start("c1", "r1")
    reply.chunk("first")  # sent at once; the same round trip said: no Stop
    reply.inflight.request_stop("c1")
    clock.now += 0.06
    reply.chunk(" second")  # flushed: the append answers Stop
    assert reply.stop_requested() is True and asked == []  # no separate round trip


def test_adaptive_flush_stop_is_asked_once_per_two_intervals_not_per_token():
    reply, _, clock = emitter()
    asked = []
    reply.inflight.stop_requested = lambda reply_id: asked.append(reply_id) or len(asked) > 1
    reply.inflight.start("c1", "r1")
    reply.chunk("first")  # sent at once: its flush answered Stop
    for _ in range(20):  # tokens within one interval: no more round trips
        assert reply.stop_requested() is False
    clock.now += 0.06  # a token an interval late is flushed at once, and that flush answers
    assert reply.stop_requested() is False and asked == []
    clock.now += 0.05
    assert reply.stop_requested() is False and reply.stop_requested() is False  # asked once
    clock.now += 0.11
    assert reply.stop_requested() is True and reply.stop_requested() is True
    assert asked == ["r1", "r1"]


def test_adaptive_flush_buffered_text_lets_the_next_flush_answer_stop():
    """The stream asks for Stop before it hands over each token: with text waiting, the flush that
    token triggers answers it, so no separate round trip unless that flush is an interval late."""
    reply, _, clock = emitter()
    asked = []
    reply.inflight.stop_requested = lambda reply_id: asked.append(reply_id) or False
    reply.inflight.start("c1", "r1")
    reply.chunk("first")
    clock.now += 0.03
    reply.chunk(" second")  # buffered
    clock.now += 0.03
    assert reply.stop_requested() is False and asked == []  # the flush this token triggers will ask
    reply.chunk(" third")
    clock.now += 0.03
    reply.chunk(" fourth")  # buffered again, and no more tokens come (a silent model)
    clock.now += 0.06  # 0.09 s after the flush that answered last: not yet two intervals
    assert reply.stop_requested() is False and asked == []
    clock.now += 0.02
    assert reply.stop_requested() is False and asked == ["r1"]


def test_adaptive_flush_before_any_text_stop_is_asked_after_a_silence_only():
    """Before the first text nothing is asked (that text's flush answers at once, even when a busy
    worker took longer than an interval to get it); a model silent or reasoning for long still is."""
    from web.socket_emitter import FIRST_STOP_CHECK_S
    reply, _, clock = emitter()
    asked = []
    reply.inflight.stop_requested = lambda reply_id: asked.append(reply_id) or True
    clock.now += FIRST_STOP_CHECK_S / 2
    assert reply.stop_requested() is False and asked == []
    clock.now += FIRST_STOP_CHECK_S
    assert reply.stop_requested() is True and asked == ["r1"]
