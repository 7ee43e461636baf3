"""Time to first token and tokens/s from a real model server: straight from llama.cpp vs through the app.

    make .venv-llm/.installed && .venv/bin/python benchmarks/real_llm_bench.py [--runs 5] [--tokens 64]

Starts llama.cpp's server (SmolLM2-135M, 1,024-token window, tests/llama_server.py) and
`python app.py` on free loopback ports, asks the same question RUNS times each way, prints the
median and spread, and stops both servers by pid. Through the app, tokens are the reply's
tokens as the app counts them (llama.cpp sends no usage in a stream).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import requests
import socketio

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
import llama_server as real

QUESTION = "Describe a walrus in a few sentences."
SYSTEM = "You are a helpful assistant."  # the app's default SYSTEM_PROMPT, so both ways ask the same


def free_port() -> int:
    import socket
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def direct(url: str, tokens: int) -> tuple[float, float, int]:
    """(seconds to the first content chunk, tokens/s after it) straight from the server."""
    body = {"model": real.ALIAS, "messages": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": QUESTION}], "max_tokens": tokens,
            "stream": True}
    began, first, count = time.monotonic(), None, 0
    with requests.post(url + "/chat/completions", json=body, stream=True, timeout=120) as answer:
        for line in answer.iter_lines():
            if not line.startswith(b"data: {"):
                continue
            delta = json.loads(line[6:])["choices"][0]["delta"].get("content")
            if delta:
                first, count = first or time.monotonic(), count + 1
    ended = time.monotonic()
    return first - began, (count - 1) / max(ended - first, 1e-9), count


def start_app(url: str, tokens: int, home: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = {"PATH": os.environ["PATH"], "HOME": str(home), "HOST": "127.0.0.1", "PORT": str(port),
           "INSTANCE_PATH": str(home / "instance"), "OPENAI_BASE_URL": url, "MODEL": real.ALIAS,
           "MAX_TOKENS": str(real.N_CTX), "REPLY_TOKENS": str(tokens), "AUTO_TITLE": "false",
           "RATELIMIT_ENABLED": "false"}
    process = subprocess.Popen([sys.executable, "app.py"], cwd=ROOT, env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            requests.get(base + "/health", timeout=1)
            return process, base
        except requests.ConnectionError:
            time.sleep(0.1)
    process.kill()
    raise RuntimeError("the app did not start")


def through_app(base: str) -> tuple[float, float, int]:
    """The same measure as `direct`, as a page sees it over Socket.IO."""
    http = requests.Session()
    http.get(base + "/", timeout=5)
    seen, done = {"first": None, "tokens": 0}, threading.Event()
    client = socketio.Client(reconnection=False)

    @client.on("*")
    def record(event, data=None):
        if event == "response_chunk" and seen["first"] is None:
            seen["first"] = time.monotonic()
        elif event == "token_usage":
            seen["tokens"] = data.get("completion_tokens") or 0
        elif event == "response_done":
            done.set()
    cookie = "; ".join(f"{k}={v}" for k, v in http.cookies.items())
    client.connect(base, headers={"Cookie": cookie}, transports=["websocket"], wait_timeout=10)
    began = time.monotonic()
    client.call("send_message", {"message": QUESTION}, timeout=10)
    done.wait(180)
    ended = time.monotonic()
    client.disconnect()
    return seen["first"] - began, (seen["tokens"] - 1) / max(ended - seen["first"], 1e-9), seen["tokens"]


def report(name: str, runs: list[tuple[float, float, int]]) -> None:
    ttft, rate, size = [r[0] for r in runs], [r[1] for r in runs], [r[2] for r in runs]
    print(f"{name:>13}: first token {statistics.median(ttft) * 1000:6.0f} ms (min {min(ttft) * 1000:.0f}, "
          f"max {max(ttft) * 1000:.0f}); {statistics.median(rate):5.1f} tokens/s (min {min(rate):.1f}, "
          f"max {max(rate):.1f}), {statistics.median(size)} tokens a reply, over {len(runs)} runs")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--tokens", type=int, default=64)
    args = parser.parse_args()
    if not real.installed():
        raise SystemExit("run `make .venv-llm/.installed` first")
    home = ROOT / "benchmarks" / ".data" / "real_llm"
    server = real.LlamaServer(free_port(), home / "llama_server.log").start()
    app = None
    try:
        direct(server.url, 8)  # warm-up: the first request loads the chat template
        report("direct", [direct(server.url, args.tokens) for _ in range(args.runs)])
        app, base = start_app(server.url, args.tokens, home)
        through_app(base)
        report("through app", [through_app(base) for _ in range(args.runs)])
    finally:
        if app is not None:
            app.terminate()
            app.wait(timeout=15)
        server.stop()


if __name__ == "__main__":
    main()
