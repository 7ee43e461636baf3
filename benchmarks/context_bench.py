"""Context preparation: this project's budget vs the naive manage_token_limits of the original requirements.

    .venv/bin/python benchmarks/context_bench.py [--quick]

That algorithm is re-implemented as the baseline (its summariser replaced by a
constant-size fake, as ours is). Prints, for both, on the same generated conversations:
1. time to prepare the next turn's context at MAX_TOKENS=128000 with 1,000 and 10,000
   messages of history;
2. summariser calls over 1,000 turns of 60-token messages at MAX_TOKENS=8000;
3. how often each fails to produce a fitting context over random 300-message histories.
Loops are bounded; it stops by itself.
"""
from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import utils  # noqa: E402
from utils import Budget, assemble_context  # noqa: E402

REPLY_TOKENS = 800
SYSTEM = "You are a helpful assistant."
FAKE_SUMMARY = "Summary:" + " a" * 48  # about 50 tokens, smaller than one 60-token message


class SeedLoopsForever(Exception):
    """The baseline's recursion made no progress (we stop it instead of hanging)."""


def seed_manage_token_limits(history, max_tokens, reply_tokens, summarise, depth=0, max_depth=50):
    """Seed 001 §5, verbatim in logic: pop oldest, re-count everything after each pop, recurse."""
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
            kept, total = seed_manage_token_limits([{"role": m["role"], "content": m["content"]} for m in history],
                                                   max_tokens, REPLY_TOKENS, seed_summariser([0]))
            seed_failures += total >= max_tokens - REPLY_TOKENS
        except (SeedLoopsForever, RecursionError):
            seed_failures += 1
        plan = assemble_context(history, None, SYSTEM, Budget(max_tokens, REPLY_TOKENS), our_summariser([0]))
        our_failures += utils.request_tokens(plan.messages) + REPLY_TOKENS > max_tokens
    return seed_failures, our_failures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer turns, for a smoke run")
    args = parser.parse_args()
    rng = random.Random(2024)
    utils.count_tokens("warm up the encoder")
    print("1. time to prepare the next turn's context, MAX_TOKENS=128000 (median ms per turn;"
          " the baseline's first pass only, a lower bound)")
    for messages in (1_000, 10_000):
        ours, seed = bench_prepare_time(messages, 20 if args.quick else 100, rng)
        print(f"   {messages:>6} messages: ours {ours:8.3f} ms   seed {seed:9.1f} ms   ratio {seed / ours:8.0f}x")
    turns = 300 if args.quick else 1000
    seed_calls, our_calls, seed_loops = bench_summariser_calls(turns, 8000, rng)
    print(f"2. summariser calls over {turns} turns of 60-token messages, MAX_TOKENS=8000:"
          f" ours {our_calls}   seed {seed_calls} (stuck in its endless recursion on {seed_loops} turns)"
          "   (target: ours <= 30)")
    histories = 5 if args.quick else 20
    seed_fail, our_fail = bench_failures(histories, rng)
    print(f"3. histories without a fitting context (of {histories} random 300-message histories):"
          f" ours {our_fail}   seed {seed_fail}   (target: ours 0)")


if __name__ == "__main__":
    main()
