"""What the page's meter costs the server: `GET /conversations/<id>/budget` (the next request's
size on a branch) and `POST /count_tokens` (a draft, counted while it is typed).

Builds a conversation of --messages stored messages (alternating user/assistant, ~60 words
each) in a fresh SQLite instance folder, then times each route through Flask's test client
(no network): --runs rounds of --calls requests, printing the median of the rounds' per-call
medians in milliseconds, and the load average. The page calls /count_tokens at most once per
250 ms pause in typing, and /budget once per reply.

    .venv/bin/python benchmarks/steering_bench.py                 # 400 messages, 3 x 50 calls
    .venv/bin/python benchmarks/steering_bench.py --messages 2000
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
import utils
from app import create_app
from config import TestConfig
from web.context import get_store

WORDS = ["the", "budget", "keeps", "every", "request", "inside", "the", "window", "while", "the", "summary", "folds", "older", "turns"]


def build(app, messages: int) -> tuple[object, str, str]:
    client = app.test_client()
    client.get("/")
    with client.session_transaction() as session:
        user = session["user_id"]
    with app.app_context():
        store = get_store()
        cid = store.create_conversation(user, "bench")["conversation_id"]
        last = None
        for number in range(messages):
            role = "user" if number % 2 == 0 else "assistant"
            text = " ".join(WORDS[(number + i) % len(WORDS)] for i in range(60))
            last = store.append_message(user, cid, role, text, tokens=utils.message_tokens(role, text),
                                        parent_message_id=last["message_id"] if last else None)
    return client, cid, last["message_id"]


def median_ms(call, calls: int, runs: int) -> float:
    rounds = []
    for _ in range(runs):
        times = []
        for _ in range(calls):
            start = time.perf_counter()
            call()
            times.append((time.perf_counter() - start) * 1000)
        rounds.append(statistics.median(times))
    return statistics.median(rounds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=400)
    parser.add_argument("--calls", type=int, default=50)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    app = create_app(TestConfig(Path(tempfile.mkdtemp(prefix="steering-bench-"))))
    client, cid, leaf = build(app, args.messages)
    draft = " ".join(WORDS * 40)  # ~560 tokens
    figures = {
        f"GET budget ({args.messages} messages)": lambda: client.get(f"/conversations/{cid}/budget?leaf={leaf}"),
        "GET budget (new conversation)": lambda: client.get("/budget"),
        f"POST count_tokens ({len(draft)} chars)": lambda: client.post("/count_tokens", json={"text": draft}),
    }
    for name, call in figures.items():
        assert call().status_code == 200, name
        print(f"{name}: median {median_ms(call, args.calls, args.runs):.2f} ms")
    print("load average:", Path("/proc/loadavg").read_text().split()[:3])


if __name__ == "__main__":
    main()
