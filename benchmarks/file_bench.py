"""File analysis of a 5 MB text file through real gunicorn (eventlet worker) and the fake model server.

    .venv/bin/python benchmarks/file_bench.py [--mb 5] [--workers 16] [--delay 0.2]

Prints:
1. wall time of the analysis against the sequential time (every chunk call one after another at
   --delay seconds each) and the parallel efficiency against the ideal for the pool size:
   ideal = (ceil(chunk calls / pool) + reduce calls) * delay;
2. the model calls a second upload of the same file makes (target: none, all from the cache);
3. the longest stall of the server's event loop while the file is processed: a Socket.IO client
   sends a `heartbeat` every 10 ms and times each acknowledgement (target: under 50 ms).
Everything runs on 127.0.0.1 and stops by itself; the servers are stopped by their process id.
"""
from __future__ import annotations

import argparse
import math
import os
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import requests
import socketio

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
from conftest import free_port, page_session
from fake_llm_process import start_fake_llm, stop_process

WORDS = ["alpha", "budget", "contract", "delivery", "estimate", "forecast", "growth", "harbour", "invoice", "journey", "kernel", "ledger", "margin", "network", "orbit", "payment", "quarter", "revenue", "schedule", "target", "update", "vendor", "warehouse", "yield"]


def make_text(megabytes: float, seed: int = 7) -> bytes:
    """Varied paragraphs (numbered, shuffled words), so no two chunks are alike and the cache
    cannot help the first upload."""
    rng = random.Random(seed)
    parts, size, index = [], 0, 0
    while size < megabytes * 1024 * 1024:
        sentences = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(8, 16))).capitalize() + "."
                     for _ in range(rng.randint(3, 7))]
        paragraph = f"Section {index}. " + " ".join(sentences) + "\n\n"
        parts.append(paragraph)
        size += len(paragraph)
        index += 1
    return "".join(parts).encode()


def start_server(port: int, workdir: Path, fake_url: str, pool: int) -> subprocess.Popen:
    env = {"PATH": os.environ["PATH"], "HOME": str(workdir), "INSTANCE_PATH": str(workdir / "instance"),
           "ASYNC_MODE": "eventlet", "OPENAI_BASE_URL": fake_url, "MODEL": "fake-model",
           "FILE_WORKERS": str(pool), "MAX_FILE_SIZE_MB": "6", "LOG_LEVEL": "WARNING"}
    gunicorn = Path(sys.executable).with_name("gunicorn")
    return subprocess.Popen([str(gunicorn), "--bind", f"127.0.0.1:{port}", "--worker-class", "eventlet",
                             "--workers", "1", "--no-control-socket", "--timeout", "300", "app:app"],
                            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def wait_until_up(base: str, process: subprocess.Popen, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit("server exited: " + process.stderr.read().decode()[-2000:])
        try:
            requests.get(base + "/health", timeout=1)
            return
        except requests.ConnectionError:
            time.sleep(0.1)
    raise SystemExit("server did not start")


class Pinger:
    """Sends a heartbeat every 10 ms and records each round trip (seconds) while `recording`."""

    def __init__(self, base: str, cookie: str) -> None:
        self.client = socketio.Client(reconnection=False)
        self.client.connect(base, headers={"Cookie": cookie}, transports=["websocket"], wait_timeout=10)
        self.samples: list[float] = []
        self.when: list[float] = []  # perf_counter at each recorded ping's start
        self.recording = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            started = time.perf_counter()
            self.client.call("heartbeat", timeout=10)
            if self.recording.is_set():
                self.samples.append(time.perf_counter() - started)
                self.when.append(started)
            time.sleep(max(0.0, 0.010 - (time.perf_counter() - started)))

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=15)
        self.client.disconnect()


def upload_and_wait(http: requests.Session, base: str, data: bytes, name: str, seconds: float = 900) -> tuple[dict, float]:
    started = time.perf_counter()
    response = http.post(base + "/upload_file", files={"file": (name, data, "text/plain")}, timeout=120)
    response.raise_for_status()
    print(f"{name}: the upload was answered (202, job id) in {(time.perf_counter() - started) * 1000:.0f} ms")
    job_id = response.json()["job_id"]
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        body = http.get(f"{base}/jobs/{job_id}", timeout=30).json()
        if body["status"] in ("done", "error"):
            return body, time.perf_counter() - started
        time.sleep(0.2)
    raise SystemExit(f"job {job_id} did not finish in {seconds} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--mb", type=float, default=5.0)
    parser.add_argument("--workers", type=int, default=16, help="FILE_WORKERS, the pool size")
    parser.add_argument("--delay", type=float, default=0.2, help="seconds the fake server takes per call")
    args = parser.parse_args()
    data = make_text(args.mb)
    fake_url, fake = start_fake_llm(reply="Notes: nothing unusual.", first_token_delay=args.delay)
    with tempfile.TemporaryDirectory() as tmp:
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        server = start_server(port, Path(tmp), fake_url, args.workers)
        try:
            wait_until_up(base, server)
            http = page_session(base)  # the cookie and the CSRF token, as the page has them
            cookie = "; ".join(f"{c.name}={c.value}" for c in http.cookies)
            pinger = Pinger(base, cookie)
            time.sleep(1.0)
            pinger.recording.set()
            time.sleep(1.0)
            idle = list(pinger.samples)
            pinger.samples.clear()
            pinger.when.clear()
            upload_started = time.perf_counter()
            first, wall = upload_and_wait(http, base, data, "report.txt")
            busy = list(pinger.samples)
            worst = sorted(zip(pinger.samples, pinger.when, strict=False), reverse=True)[:5]
            print("longest stalls (ms @ seconds after the upload started):",
                  ", ".join(f"{rtt * 1000:.0f} @ {at - upload_started:.2f}" for rtt, at in worst))
            pinger.recording.clear()
            second, wall_again = upload_and_wait(http, base, data, "report-copy.txt")
            pinger.stop()
        finally:
            stop_process(server)
            stop_process(fake)
        if first["status"] != "done":
            raise SystemExit(f"analysis failed: {first}")
        report(args, len(data), first, wall, second, wall_again, idle, busy)


def report(args, size, first, wall, second, wall_again, idle, busy) -> None:
    chunks, calls = first["chunks"], first["model_calls"]
    reduce_calls = calls - chunks
    sequential = calls * args.delay
    ideal = (math.ceil(chunks / args.workers) + reduce_calls) * args.delay
    print()
    print(f"file: {size / 1024 / 1024:.2f} MB, {chunks} chunks of <= 1000 tokens, pool {args.workers}, "
          f"fake model {args.delay * 1000:.0f} ms per call")
    print()
    print("| measure | value | target |")
    print("|---|---|---|")
    print(f"| model calls (map + reduce) | {chunks} + {reduce_calls} | |")
    print(f"| wall time, upload to done | {wall:.2f} s | |")
    print(f"| sequential time (calls x delay) | {sequential:.2f} s | |")
    print(f"| speed-up over sequential | {sequential / wall:.1f}x | |")
    print(f"| ideal for pool {args.workers} | {ideal:.2f} s | |")
    efficiency = ideal / wall
    print(f"| parallel efficiency (ideal / wall) | {efficiency:.2f} | >= 0.80 {'PASS' if efficiency >= 0.8 else 'FAIL'} |")
    saved = second["cached_calls"]
    print(f"| second upload: model calls / from cache | {second['model_calls']} / {saved} | 0 / all "
          f"{'PASS' if second['model_calls'] == 0 and saved == calls else 'FAIL'} |")
    print(f"| second upload wall time | {wall_again:.2f} s | |")
    worst = max(busy) * 1000
    print(f"| heartbeat round trip idle p50 / max | {statistics.median(idle) * 1000:.1f} / {max(idle) * 1000:.1f} ms | |")
    print(f"| heartbeat round trip during analysis p50 / p99 / max | {statistics.median(busy) * 1000:.1f} / "
          f"{statistics.quantiles(busy, n=100)[98] * 1000:.1f} / {worst:.1f} ms ({len(busy)} pings) | "
          f"max < 50 ms {'PASS' if worst < 50 else 'FAIL'} |")


if __name__ == "__main__":
    main()
