"""Time to first chunk of a turn that crosses COMPACT_AT, with a summariser that takes 2 s.

    .venv/bin/python benchmarks/compaction_bench.py

Through run_turn, the real SQLite store and the fake model server (in this process: the
summariser's delay is a per-request responder). Prints the median of 3 runs for:
1. an ordinary turn (well under the threshold);
2. a turn that crosses the threshold (its request still fits): compaction is left to the
   background, after the reply;
3. the turn after it, while that background compaction is still running;
4. for contrast, the crossing turn summarising inline, as turns did before.
Target: 2 and 3 within ~100 ms of 1. Loops are bounded; it stops by itself.
"""
from __future__ import annotations

import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
from fake_llm import FakeLLM

import utils
from agents import compaction
from agents.calibration import Calibration
from agents.emitter import RecordingEmitter
from agents.providers import Providers
from agents.turn import TurnDeps, run_turn
from config import TestConfig
from storage.sqlite_store import SqliteStore

SUMMARISER_SECONDS = 2.0
ROOM = 4096 - 256


class FirstChunk(RecordingEmitter):
    """Records when the first chunk reached the page."""

    def __init__(self) -> None:
        super().__init__()
        self.started, self.first = time.perf_counter(), None

    def chunk(self, text: str) -> None:
        if self.first is None:
            self.first = time.perf_counter()
        super().chunk(text)

    def ms(self) -> float:
        return (self.first - self.started) * 1000


def respond(body: dict) -> str:
    if body["messages"][0]["content"].startswith("Summarise"):
        time.sleep(SUMMARISER_SECONDS)
        return "A summary of everything so far."
    return "A short reply."


def conversation(deps: TurnDeps, over_threshold: bool) -> str:
    """~130-token exchanges up to just past COMPACT_AT (or to half the room)."""
    cid = deps.store.create_conversation("bench")["conversation_id"]
    until, size, turn = (0.8 * ROOM + 50) if over_threshold else ROOM / 2, 0, 0
    while size <= until:
        for role, text in (("user", f"question {turn}" + " a" * 60), ("assistant", " b" * 60)):
            size += utils.message_tokens(role, text)
            deps.store.append_message("bench", cid, role, text, tokens=utils.message_tokens(role, text))
        turn += 1
    return cid


def turn_ms(deps: TurnDeps, cid: str, after=None) -> float:
    """Time to first chunk of one turn; `after(reply_id)` runs once the reply is stored (the hook)."""
    text = "And now?"
    mid = deps.store.append_message("bench", cid, "user", text, tokens=utils.message_tokens("user", text))["message_id"]
    emitter = FirstChunk()
    run_turn(deps, "bench", cid, mid, f"reply-{mid}", emitter, lambda: False)
    if after:
        after(f"reply-{mid}")
    return emitter.ms()


def background(function, *args) -> None:
    threading.Thread(target=function, args=args, daemon=True).start()


def one_run(deps: TurnDeps) -> dict[str, float]:
    figures = {"ordinary": turn_ms(deps, conversation(deps, False))}
    cid = conversation(deps, True)
    hook = lambda reply_id: compaction.after_reply(deps, "bench", cid, reply_id, None, background)
    figures["crossing"] = turn_ms(deps, cid, hook)
    figures["next, compaction running"] = turn_ms(deps, cid)
    compaction.wait(cid, 10 * SUMMARISER_SECONDS)
    figures["crossing, inline (before)"] = inline_turn_ms(deps)
    return figures


def inline_turn_ms(deps: TurnDeps) -> float:
    """The crossing turn as before: assemble_context summarising as soon as COMPACT_AT is crossed."""
    original = utils.assemble_context
    utils.assemble_context = lambda *args, **kwargs: original(*args, **{**kwargs, "compact_early": True})
    try:
        return turn_ms(deps, conversation(deps, True))
    finally:
        utils.assemble_context = original


def main() -> None:
    print(f"load average before: {Path('/proc/loadavg').read_text().strip()}")
    with FakeLLM(responder=respond) as fake, tempfile.TemporaryDirectory() as directory:
        config = TestConfig(Path(directory), MAX_TOKENS=4096, REPLY_TOKENS=256, OPENAI_BASE_URL=fake.url,
                            MODEL="fake-model")
        store = SqliteStore(Path(directory) / "bench.sqlite3")
        store.migrate()
        deps = TurnDeps(store, config, Providers(config), Calibration())
        runs = [one_run(deps) for _ in range(3)]
    print(f"time to first chunk, summariser {SUMMARISER_SECONDS:.0f} s (ms; 3 runs and their median):")
    for name in runs[0]:
        values = [run[name] for run in runs]
        print(f"   {name:<28} {' '.join(f'{v:8.1f}' for v in values)}   median {statistics.median(values):8.1f}")
    print(f"load average after:  {Path('/proc/loadavg').read_text().strip()}")


if __name__ == "__main__":
    main()
