"""Abuse through real gunicorn on 127.0.0.1: does a second client stay served?

    .venv/bin/python benchmarks/abuse_bench.py [--modes eventlet,gevent] [--scenarios events,conns,global]
                                               [--seconds 30] [--runs 3] [--conns 1000] [--set NAME=VALUE ...]

Scenarios (each against a fresh server, the fake model server in its own process):
- idle: no flood, the baseline;
- events: one socket from 127.0.0.2 sends `heartbeat` and `join_conversation` at full speed for
  --seconds (reconnecting whenever the server drops it, as a script would);
- conns: 127.0.0.2 opens --conns WebSockets with a session cookie and as many without, holding
  them for --seconds (past the per-address cap);
- global: --conns WebSockets spread over 127.0.0.2..127.0.0.101 against MAX_SOCKETS=--global-cap
  (past the instance-wide cap, below WORKER_CONNECTIONS).
Meanwhile a second client on 127.0.0.1 (its chat socket connected before the flood) probes
/health/live every 20 ms and runs a chat turn every 5 s. Printed per run: its /health/live
p50/p99/max and failures, its chat turns' time to first chunk and how many completed, what
the flooder achieved, and the load average; then the median of --runs runs.
Every flood is bounded in time and count and targets 127.0.0.1 only; servers stop by pid.
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "benchmarks"))
from fake_llm_process import start_fake_llm, stop_process
from raw_socketio import HEARTBEAT, JOIN, RawSocket, Refused
from test_chat_e2e import Page
from test_gunicorn import Gunicorn

FLOODER_SOURCE = "127.0.0.2"


# -- the flooder (run as a child process so its CPU is not the probe's) ---------------------------

def flood_events(port: int, cookie: str, seconds: float) -> dict:
    """Full speed from one socket; reconnect when dropped, until the time is up."""
    stats = {"sent": 0, "connections": 0, "dropped_by_server": 0, "refused": 0}
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            sock = RawSocket.open("127.0.0.1", port, cookie=cookie, source=FLOODER_SOURCE, timeout=2)
        except (Refused, OSError):
            stats["refused"] += 1
            time.sleep(0.05)
            continue
        stats["connections"] += 1
        try:
            stats["sent"] += sock.flood([HEARTBEAT, JOIN], deadline - time.monotonic())
        except ConnectionError as error:
            stats["dropped_by_server"] += 1
            stats["sent"] += int(str(error).split()[2])
        finally:
            sock.close()
    return stats


def flood_connections(port: int, cookie: str, count: int, sources: list[str], seconds: float) -> dict:
    """Open `count` sockets with the cookie and `count` without, round-robin over `sources`, and
    hold every transport the server lets open, even when Socket.IO refused the connect."""
    held, stats = [], {"opened": 0, "refused_at_handshake": 0, "refused_at_connect": 0, "errors": 0}
    deadline = time.monotonic() + seconds
    for i in range(2 * count):
        if time.monotonic() > deadline:
            break
        try:
            sock = RawSocket.open("127.0.0.1", port, cookie=cookie if i % 2 == 0 else None,
                                  source=sources[(i // 2) % len(sources)], timeout=5, connect=False)
        except Refused:
            stats["refused_at_handshake"] += 1
            continue
        except OSError:
            stats["errors"] += 1
            continue
        held.append(sock)
        try:
            sock.send("40")
            sock.await_connect()
            stats["opened"] += 1
        except Refused:
            stats["refused_at_connect"] += 1
        except OSError:
            stats["errors"] += 1
    time.sleep(max(0.0, deadline - time.monotonic()))
    stats["transports_still_open_at_end"] = sum(sock.still_open() for sock in held)
    for sock in held:
        sock.close()
    return stats


def session_cookie(base: str, source: str) -> str:
    """Load the page once from `source`, as the attacker would, for a session cookie."""
    session = requests.Session()
    adapter = requests.adapters.HTTPAdapter()
    adapter.init_poolmanager(1, 1, source_address=(source, 0))
    session.mount("http://", adapter)
    session.get(base + "/", timeout=10)
    return "; ".join(f"{k}={v}" for k, v in session.cookies.items())


def start_flooder(scenario: str, base: str, seconds: float, conns: int) -> subprocess.Popen:
    arguments = json.dumps({"scenario": scenario, "base": base, "seconds": seconds, "conns": conns})
    return subprocess.Popen([sys.executable, __file__, "--flooder", arguments], stdout=subprocess.PIPE, cwd=ROOT)


def run_flooder(arguments: dict) -> None:
    base, seconds = arguments["base"], arguments["seconds"]
    port = int(base.rsplit(":", 1)[1])
    cookie = session_cookie(base, FLOODER_SOURCE)
    if arguments["scenario"] == "idle":
        time.sleep(seconds)
        stats = {}
    elif arguments["scenario"] == "events":
        stats = flood_events(port, cookie, seconds)
    else:
        sources = [FLOODER_SOURCE] if arguments["scenario"] == "conns" else [f"127.0.0.{i}" for i in range(2, 102)]
        stats = flood_connections(port, cookie, arguments["conns"], sources, seconds)
    print(json.dumps(stats), flush=True)


# -- the second client --------------------------------------------------------------------------

class HealthProbe(threading.Thread):
    """GET /health/live every 20 ms, each on a new connection as a new client's would be; a
    failure or timeout counts as its timeout (2 s)."""

    def __init__(self, base: str) -> None:
        super().__init__(daemon=True)
        self.base, self.times, self.failures = base, [], 0
        self.stopping = threading.Event()

    def run(self) -> None:
        while not self.stopping.is_set():
            started = time.monotonic()
            try:
                ok = requests.get(self.base + "/health/live", timeout=2,
                                  headers={"Connection": "close"}).status_code == 200
            except requests.RequestException:
                ok = False
            self.times.append(time.monotonic() - started if ok else 2.0)
            self.failures += not ok
            self.stopping.wait(0.02)


def chat_turn(page: Page, text: str, timeout: float = 20) -> tuple[float | None, bool]:
    """(time to first chunk, completed) of one turn on an open page."""
    page.events.clear()
    page.done.clear()
    started = time.monotonic()
    try:
        ack = page.sio.call("send_message", {"message": text}, timeout=timeout)
    except Exception as error:  # noqa: BLE001 - a failed turn is counted, whatever failed
        print(f"chat turn failed: {error!r}", file=sys.stderr)
        return None, False
    if not ack.get("ok"):
        print(f"chat turn refused: {ack}", file=sys.stderr)
        return None, False
    first = None
    while time.monotonic() - started < timeout and not page.done.is_set():
        if first is None and any(event == "response_chunk" for event, _ in list(page.events)):
            first = time.monotonic() - started
        time.sleep(0.005)
    return first, page.done.is_set()


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))] if ordered else float("nan")


# -- one run ------------------------------------------------------------------------------------

def one_run(mode: str, scenario: str, args, fake_url: str, workdir: Path) -> dict:
    settings = dict(WORKER_CLASS=mode, OPENAI_BASE_URL=fake_url, MODEL="fake-model", LOG_LEVEL="WARNING",
                    RATELIMIT_ENABLED="true", **dict(item.split("=", 1) for item in args.set))
    if scenario == "global":
        settings.update(MAX_SOCKETS=str(args.global_cap), WORKER_CONNECTIONS=str(args.global_cap + 500))
    home = Path(tempfile.mkdtemp(dir=workdir))
    server = Gunicorn(home, home / "instance", home / "gunicorn.log", **settings)
    try:
        return measure(server, scenario, args)
    finally:
        server.stop()


def measure(server: Gunicorn, scenario: str, args) -> dict:
    page = Page(server.base)
    chat_turn(page, "warm up")
    probe = HealthProbe(server.base)
    probe.start()
    flooder = start_flooder(scenario, server.base, args.seconds, args.conns)
    turns, deadline = [], time.monotonic() + args.seconds
    time.sleep(min(3.0, args.seconds / 3))  # let the flood get going
    while time.monotonic() < deadline - 1:
        turns.append(chat_turn(page, f"turn {len(turns)}"))
        time.sleep(max(0.0, min(5.0, deadline - time.monotonic() - 1)))
    out, _ = flooder.communicate(timeout=args.seconds + 120)
    probe.stopping.set()
    probe.join()
    page.sio.disconnect()
    firsts = [first for first, _ in turns if first is not None]
    return {"health_p50_ms": 1000 * percentile(probe.times, 50), "health_p99_ms": 1000 * percentile(probe.times, 99),
            "health_max_ms": 1000 * max(probe.times), "health_probes": len(probe.times),
            "health_failures": probe.failures, "chat_turns": len(turns),
            "chat_completed": sum(done for _, done in turns),
            "ttfc_median_ms": 1000 * statistics.median(firsts) if firsts else float("nan"),
            "ttfc_max_ms": 1000 * max(firsts) if firsts else float("nan"),
            "flooder": json.loads(out or "{}"), "loadavg": Path("/proc/loadavg").read_text().split()[:3]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--modes", default="eventlet,gevent")
    parser.add_argument("--scenarios", default="idle,events,conns,global")
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--conns", type=int, default=1000, help="sockets the flooder tries to open (each kind)")
    parser.add_argument("--global-cap", type=int, default=600, help="MAX_SOCKETS in the global scenario")
    parser.add_argument("--set", action="append", default=[], help="a server setting, NAME=VALUE")
    parser.add_argument("--flooder", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.flooder:
        return run_flooder(json.loads(args.flooder))
    fake_url, fake = start_fake_llm(tokens=40, token_delay=0.01)
    try:
        with tempfile.TemporaryDirectory() as workdir:
            for mode in args.modes.split(","):
                for scenario in args.scenarios.split(","):
                    report(mode, scenario, [one_run(mode, scenario, args, fake_url, Path(workdir))
                                            for _ in range(args.runs)])
    finally:
        stop_process(fake)


def report(mode: str, scenario: str, runs: list[dict]) -> None:
    for number, run in enumerate(runs, 1):
        print(f"{mode:8} {scenario:7} run {number}: {json.dumps(run)}", flush=True)
    numeric = [key for key, value in runs[0].items() if isinstance(value, (int, float))]
    medians = {key: round(statistics.median(run[key] for run in runs), 1) for key in numeric}
    print(f"{mode:8} {scenario:7} MEDIAN of {len(runs)}: {json.dumps(medians)}", flush=True)


if __name__ == "__main__":
    main()
