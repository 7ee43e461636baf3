"""Context preparation: this project's budget vs a naive manage_token_limits (pop, re-count, recurse).

    .venv/bin/python benchmarks/context_bench.py [--quick]

That algorithm is re-implemented as the baseline (its summariser replaced by a
constant-size fake, as ours is). Prints, for both, on the same generated conversations:
1. time to prepare the next turn's context at MAX_TOKENS=128000 with 1,000 and 10,000
   messages of history;
2. summariser calls over 1,000 turns of 60-token messages at MAX_TOKENS=8000;
3. how often each fails to produce a fitting context over random 300-message histories;
4. a turn's whole preparation (store reads, branch, budget: chat_agent._plan) through the real
   SQLite store, with 100 and with 100,000 messages stored in one conversation, against reading
   the whole conversation as turns did before (list_messages, then threads.thread).
Loops are bounded; it stops by itself.
"""
from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import threads
import utils
from agents import chat_agent
from agents.calibration import Calibration
from agents.emitter import RecordingEmitter
from agents.providers import Providers
from agents.turn_types import AgentClients, Turn, TurnDeps
from config import TestConfig
from storage.sqlite_store import SqliteStore
from utils import Budget, assemble_context

REPLY_TOKENS = 800
SYSTEM = "You are a helpful assistant."
FAKE_SUMMARY = "Summary:" + " a" * 48  # about 50 tokens, smaller than one 60-token message


class SeedLoopsForever(Exception):
    """The baseline's recursion made no progress (we stop it instead of hanging)."""


def seed_manage_token_limits(history, max_tokens, reply_tokens, summarise, depth=0, max_depth=50):
    """The naive way: pop oldest, re-count everything after each pop, recurse."""
    if depth > max_depth:
        raise SeedLoopsForever()
    total = sum(utils.count_tokens(turn["content"]) for turn in history)
    if total >= max_tokens - reply_tokens:
        to_summarise = []
        while total >= max_tokens - reply_tokens and len(history) > 1:
            to_summarise.append(history.pop(0))
            total = sum(utils.count_tokens(turn["content"]) for turn in history)
        if to_summarise:
            history.insert(0, summarise(to_summarise))
            total = sum(utils.count_tokens(turn["content"]) for turn in history)
            if total >= max_tokens - reply_tokens:
                return seed_manage_token_limits(history, max_tokens, reply_tokens, summarise, depth + 1, max_depth)
    return history, total


def seed_summariser(counter):
    def summarise(messages):
        counter[0] += 1
        return {"role": "system", "content": FAKE_SUMMARY}
    return summarise


def our_summariser(counter):
    def summarise(text, max_tokens):
        counter[0] += 1
        return FAKE_SUMMARY
    return summarise


def words(rng, tokens):
    return " ".join(rng.choice(("the", "model", "budget", "token", "reply", "summary", "chat")) for _ in range(tokens))


def stored(role, content, index):
    return {"message_id": f"m{index}", "role": role, "content": content,
            "tokens": utils.message_tokens(role, content)}


def conversation(rng, count, low=40, high=200):
    return [stored("user" if i % 2 == 0 else "assistant", words(rng, rng.randint(low, high)), i)
            for i in range(count)]


def prepare_ours(history, summary, new_text, budget, counter):
    """What one turn costs us: count the new message once, then assemble from stored counts."""
    history.append(stored("user", new_text, len(history)))
    plan = assemble_context(history, summary, SYSTEM, budget, our_summariser(counter))
    return plan.new_summary or summary


def seed_steady_state(history, max_tokens):
    """Where the baseline stands after running a while: a summary plus the newest messages under the limit.

    (Its older messages are gone: the baseline pops them out of the stored history.)
    """
    kept, total = [], utils.count_tokens(FAKE_SUMMARY)
    for message in reversed(history):
        size = utils.count_tokens(message["content"])
        if total + size >= max_tokens - REPLY_TOKENS - 250:
            break
        kept.insert(0, {"role": message["role"], "content": message["content"]})
        total += size
    return [{"role": "system", "content": FAKE_SUMMARY}] + kept


def bench_prepare_time(messages, turns, rng):
    """ms per turn for each approach, each starting from its steady state at 128k."""
    history = conversation(rng, messages)
    new_texts = [words(rng, rng.randint(40, 200)) for _ in range(turns)]
    budget, counter = Budget(128000, REPLY_TOKENS), [0]
    summary = prepare_ours(history, None, words(rng, 50), budget, counter)  # reach steady state
    ours = []
    for text in new_texts:
        start = time.perf_counter()
        summary = prepare_ours(history, summary, text, budget, counter)
        ours.append((time.perf_counter() - start) * 1000)
    seed_history = seed_steady_state(conversation(rng, messages), 128000)
    seed = []
    for text in new_texts[: max(3, turns // 10)]:  # the baseline is slow: fewer turns suffice
        start = time.perf_counter()
        seed_history.append({"role": "user", "content": text})
        try:  # first pass only: where the baseline would recurse forever we stop it (a lower bound)
            seed_manage_token_limits(seed_history, 128000, REPLY_TOKENS, seed_summariser([0]), max_depth=0)
        except SeedLoopsForever:
            seed_history[:] = seed_steady_state(seed_history[1:], 128000)
        seed.append((time.perf_counter() - start) * 1000)
    return statistics.median(ours), statistics.median(seed)


def bench_summariser_calls(turns, max_tokens, rng):
    seed_calls, our_calls, seed_loops = [0], [0], 0
    seed_history, history, summary = [], [], None
    budget = Budget(max_tokens, REPLY_TOKENS)
    for turn in range(turns):
        text = words(rng, 60)
        seed_history.append({"role": "user" if turn % 2 == 0 else "assistant", "content": text})
        try:
            seed_manage_token_limits(seed_history, max_tokens, REPLY_TOKENS, seed_summariser(seed_calls))
        except SeedLoopsForever:
            seed_loops += 1
            seed_history[:] = seed_steady_state(seed_history[1:], max_tokens)
        history.append(stored("user" if turn % 2 == 0 else "assistant", text, turn))
        if history[-1]["role"] == "user":
            plan = assemble_context(history, summary, SYSTEM, budget, our_summariser(our_calls))
            summary = plan.new_summary or summary
    return seed_calls[0], our_calls[0], seed_loops


def bench_failures(histories, rng):
    """Count histories for which an approach sends (or would send) a request over the limit."""
    seed_failures = our_failures = 0
    for _ in range(histories):
        max_tokens = rng.choice((2048, 4096, 8000))
        history = conversation(rng, 300, 5, 400)
        history[-1]["role"] = "user"
        try:
            _kept, total = seed_manage_token_limits([{"role": m["role"], "content": m["content"]} for m in history],
                                                   max_tokens, REPLY_TOKENS, seed_summariser([0]))
            seed_failures += total >= max_tokens - REPLY_TOKENS
        except (SeedLoopsForever, RecursionError):
            seed_failures += 1
        plan = assemble_context(history, None, SYSTEM, Budget(max_tokens, REPLY_TOKENS), our_summariser([0]))
        our_failures += utils.request_tokens(plan.messages) + REPLY_TOKENS > max_tokens
    return seed_failures, our_failures


def seeded_store(directory: str, count: int, rng) -> tuple[TurnDeps, str, str]:
    """A SQLite store with one conversation of `count` messages (user sends and replies to them, the
    newest a user message), bulk-inserted; (deps, conversation_id, newest message id)."""
    config = TestConfig(Path(directory), MAX_TOKENS=128000, REPLY_TOKENS=REPLY_TOKENS, MODEL="bench-model")
    store = SqliteStore(Path(directory) / f"turn-{count}.sqlite3")
    store.migrate()
    cid = store.create_conversation("bench")["conversation_id"]
    texts = [words(rng, rng.randint(40, 200)) for _ in range(64)]
    rows, asked = [], None
    for index in range(count):
        role, text = ("user" if (count - 1 - index) % 2 == 0 else "assistant"), texts[index % len(texts)]
        parent = asked if role == "assistant" else None
        asked = f"m{index}" if role == "user" else asked
        rows.append((f"m{index}", cid, "bench", parent, role, text, "2026-01-01T00:00:00.000+00:00",
                     utils.message_tokens(role, text)))
    with store._write() as db:  # one transaction: the benchmark's setup, not what it measures
        db.executemany("INSERT INTO messages (message_id, conversation_id, user_id, parent_message_id, role, "
                       "content, created_at, tokens) VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows)
        db.execute("UPDATE conversations SET message_count = ?, total_tokens = ? WHERE conversation_id = ?",
                   (count, sum(row[7] for row in rows), cid))
    return TurnDeps(store, config, Providers(config), Calibration()), cid, f"m{count - 1}"


def turn_prep_ms(deps: TurnDeps, cid: str, leaf: str, turns: int, whole: bool = False) -> tuple[float, float]:
    """Median wall and CPU ms of chat_agent._plan for the newest message (whole=True: the old
    whole-conversation read). CPU time leaves out waiting for a core on a loaded machine."""
    turn = Turn(deps, "bench", cid, leaf, "reply", RecordingEmitter(), lambda: False, AgentClients(deps.providers))
    wall, cpu = [], []
    for _ in range(turns):
        start, start_cpu = time.perf_counter(), time.process_time()
        if whole:
            conversation = deps.store.get_conversation("bench", cid)
            history = threads.thread(deps.store.list_messages("bench", cid), leaf)
            assemble_context(history, conversation["summary"], deps.config.SYSTEM_PROMPT,
                             Budget(128000, REPLY_TOKENS), None, compact_early=False)
        else:
            chat_agent._plan(turn, "bench-model", "", tighter=False)
        wall.append((time.perf_counter() - start) * 1000)
        cpu.append((time.process_time() - start_cpu) * 1000)
    return statistics.median(wall), statistics.median(cpu)


def bench_turn_reads(rng, quick: bool) -> None:
    """Section 4: three runs of each case; prints each run's median and the median of the three."""
    turns = 30 if quick else 200
    with tempfile.TemporaryDirectory() as directory:
        small = seeded_store(directory, 100, rng)
        large = seeded_store(directory, 100_000, rng)
        deps, cid, _leaf = large
        deps.store.set_summary("bench", cid, FAKE_SUMMARY, "m99898", utils.message_tokens("system", FAKE_SUMMARY))
        cases = [("100 messages, no summary (branch: 100)", small, False, turns),
                 ("100,000 messages, summary checkpoint 101 back", large, False, turns),
                 ("100 messages, whole-conversation read (before)", small, True, turns),
                 ("100,000 messages, whole-conversation read (before)", large, True, 3)]
        for label, (case_deps, case_cid, case_leaf), whole, n in cases:
            runs = [turn_prep_ms(case_deps, case_cid, case_leaf, n, whole) for _ in range(3)]
            walls, cpus = [wall for wall, _ in runs], [cpu for _, cpu in runs]
            print(f"   {label:<52} wall {' '.join(f'{r:8.3f}' for r in walls)}  median {statistics.median(walls):8.3f}"
                  f"   cpu median {statistics.median(cpus):8.3f} ms")
        for case_deps, _, _ in (small, large):
            case_deps.store.close()


def bench_in_memory(quick: bool, rng) -> None:
    """Sections 1 to 3: the budget over in-memory histories, against the baseline."""
    print("1. time to prepare the next turn's context, MAX_TOKENS=128000 (median ms per turn;"
          " the baseline's first pass only, a lower bound)")
    for messages in (1_000, 10_000):
        ours, seed = bench_prepare_time(messages, 20 if quick else 100, rng)
        print(f"   {messages:>6} messages: ours {ours:8.3f} ms   seed {seed:9.1f} ms   ratio {seed / ours:8.0f}x")
    turns = 300 if quick else 1000
    seed_calls, our_calls, seed_loops = bench_summariser_calls(turns, 8000, rng)
    print(f"2. summariser calls over {turns} turns of 60-token messages, MAX_TOKENS=8000:"
          f" ours {our_calls}   seed {seed_calls} (stuck in its endless recursion on {seed_loops} turns)"
          "   (target: ours <= 30)")
    histories = 5 if quick else 20
    seed_fail, our_fail = bench_failures(histories, rng)
    print(f"3. histories without a fitting context (of {histories} random 300-message histories):"
          f" ours {our_fail}   seed {seed_fail}   (target: ours 0)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer turns, for a smoke run")
    parser.add_argument("--turn-only", action="store_true", help="only section 4 (the store-backed turn)")
    args = parser.parse_args()
    rng = random.Random(2024)
    utils.count_tokens("warm up the encoder")
    if not args.turn_only:
        bench_in_memory(args.quick, rng)
    print(f"4. a turn's preparation through the SQLite store (chat_agent._plan, median ms of {30 if args.quick else 200}"
          " turns; target: under 3 ms at 100,000 messages, within 20% of the time at 100)")
    print(f"   load average before: {Path('/proc/loadavg').read_text().strip()}")
    bench_turn_reads(random.Random(7), args.quick)
    print(f"   load average after:  {Path('/proc/loadavg').read_text().strip()}")


if __name__ == "__main__":
    main()
