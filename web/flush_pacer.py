"""How long a reply's chunks are coalesced: STREAM_FLUSH_MS while the process keeps up, longer
(up to STREAM_FLUSH_MAX_MS) while its event loop lags, back again as the lag goes.

Fewer, larger emits are what a loaded worker needs (an emit costs about the same whatever its
size); an idle one can afford the smoother 50 ms. The lag is measured by one task per process
that sleeps PROBE_S and notes how late it wakes: under eventlet or gevent that lateness is what
every other client waits too.
"""
from __future__ import annotations

import time

PROBE_S = 0.05
DECAY = 0.7  # per probe: a lag spike's effect halves in about 0.1 s once the loop keeps up again
GAIN = 2.0  # interval added per second of lag


class LoopLag:
    """The event loop's recent lag in seconds: rises at once with a late wake-up, decays after."""

    def __init__(self) -> None:
        self.seconds = 0.0

    def note(self, lag_s: float) -> None:
        self.seconds = max(max(lag_s, 0.0), self.seconds * DECAY)

    def probe(self, sleep) -> None:
        """Forever: sleep PROBE_S with the server's sleep and note how late it returned."""
        while True:
            started = time.monotonic()
            sleep(PROBE_S)
            self.note(time.monotonic() - started - PROBE_S)


def interval_s(base_ms: float, max_ms: float, lag_s: float) -> float:
    """The flush interval for this lag, between STREAM_FLUSH_MS and STREAM_FLUSH_MAX_MS."""
    return min(max(base_ms, max_ms), base_ms + GAIN * lag_s * 1000) / 1000


def read_interval_s(socketio, base_ms: float, max_ms: float) -> float:
    """How often a reply's model stream is read: every STREAM_FLUSH_MS, or every half flush
    interval while the loop lags (read at the flush interval itself, a read landing just before a
    flush is due would hold its text back a whole interval more)."""
    lag = getattr(socketio, "_chat_loop_lag", None)
    return max(base_ms / 1000, interval_s(base_ms, max_ms, lag.seconds if lag else 0.0) / 2)


def loop_lag(socketio) -> LoopLag:
    """The process's lag gauge, its probe started on first use (one per Socket.IO object)."""
    lag = getattr(socketio, "_chat_loop_lag", None)
    if lag is None:
        lag = socketio._chat_loop_lag = LoopLag()
        socketio.start_background_task(lag.probe, socketio.sleep)
    return lag
