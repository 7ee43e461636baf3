"""Concurrent chats through real gunicorn on 127.0.0.1: eventlet, gevent and threading side by side,
or the deployed topology: nginx in front of two gunicorn eventlet instances sharing Redis.

    .venv/bin/python benchmarks/load_bench.py [--clients 1000] [--ramp 10] [--tokens 200] [--token-ms 20]
                                              [--modes eventlet,gevent,threading] [--redis URL]
    .venv/bin/python benchmarks/load_bench.py --topology nginx2 --redis redis://127.0.0.1:6379/12 [--ramp 0]
    .venv/bin/python benchmarks/load_bench.py --modes eventlet --redis URL --sweep 200,400,600,800,1000

--topology nginx2 starts Debian's nginx with a config generated from deploy/nginx.conf (per-address
limits lifted: every simulated user comes from 127.0.0.1) in front of two instances sharing
--redis and one SQLite file; --sweep runs the ramped load at each N in turn and reports the
largest N whose added time to first chunk stays under --target-ms at p99. Every process this
starts (fake model, gunicorn masters, nginx) is stopped by its pid at the end.

N simulated chats (benchmarks/bench_chats.py: python-socketio clients, or --client lean; websocket
transport, all in this one process) each load the page for a session, connect, start a
conversation at a random moment within --ramp seconds of the last connection, and stream a
--tokens reply that the fake model server (asyncio, its own process) sends at --token-ms per token. Every loop is bounded: a chat that has not finished
--timeout seconds after it started counts as a failure.

Printed per worker type: success rate; time to first chunk minus the fake server's own time to
first token (measured directly beforehand), p50/p95/p99; p99 gap between chunks of one reply;
the most replies streaming at once; the server's peak RSS and CPU, and that CPU per chat (server
CPU seconds while chatting / chats: run it at two --tokens to split a turn's fixed cost from
the cost per token).
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "benchmarks"))
from bench_chats import CLIENTS, ChatRecord
from conftest import free_port
from fake_llm_process import stop_process
from spy import Spy
from topology import Nginx, children

GUNICORN = Path(sys.executable).with_name("gunicorn")
CONNECT_BATCH = 50
SETTINGS: dict[str, str] = {}  # --set NAME=VALUE: app settings for every instance started


# -- processes ---------------------------------------------------------------------------------

def start_fake(tokens: int, token_delay: float) -> tuple[str, subprocess.Popen]:
    process = subprocess.Popen([sys.executable, str(ROOT / "tests" / "fake_llm_async.py"),
                                json.dumps({"tokens": tokens, "token_delay": token_delay})],
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd=ROOT)
    port = int(process.stdout.readline())
    return f"http://127.0.0.1:{port}/v1", process


PROFILED_CONFIG = """
import cProfile
exec(open({config!r}).read())
_profile, _post_worker_init = cProfile.Profile(), post_worker_init

def post_worker_init(worker):
    _post_worker_init(worker)
    _profile.enable()

def worker_exit(server, worker):
    _profile.disable()
    _profile.dump_stats({out!r})
"""


def start_server(mode: str, fake_url: str, instance: Path, clients: int, redis_url: str | None,
                 profile: str | None = None, name: str = ""):
    port = free_port()
    env = {"PATH": os.environ["PATH"], "HOME": str(instance), "HOST": "127.0.0.1", "PORT": str(port),
           "INSTANCE_PATH": str(instance), "OPENAI_BASE_URL": fake_url, "MODEL": "fake-model",
           "MAX_TOKENS": "8192", "REPLY_TOKENS": "512", "AUTO_TITLE": "false", "RATELIMIT_ENABLED": "false",
           "LOG_LEVEL": "WARNING", "GRACEFUL_TIMEOUT": "3", **({"REDIS_URL": redis_url} if redis_url else {}),
           **SETTINGS}
    if mode == "threading":  # gthread: one thread per connection, the app in threading mode
        env["ASYNC_MODE"] = "threading"
        plain = instance / "gthread.conf.py"  # gunicorn would otherwise read ./gunicorn.conf.py (eventlet)
        plain.write_text("")
        command = [str(GUNICORN), "-c", str(plain), "app:app", "-k", "gthread", "--threads", str(clients + 100), "--workers", "1",
                   "--bind", f"127.0.0.1:{port}", "--no-control-socket", "--timeout", "300",
                   "--graceful-timeout", "3"]
    else:
        env["WORKER_CLASS"] = mode
        config = ROOT / "gunicorn.conf.py"
        if profile:  # the same settings, with the worker under cProfile (dumped when it exits)
            config = instance / "profiled.conf.py"
            config.write_text(PROFILED_CONFIG.format(config=str(ROOT / "gunicorn.conf.py"),
                                                     out=str(Path(profile + name).resolve())))
        command = [str(GUNICORN), "-c", str(config), "app:app"]
    log_path = instance / f"{mode}{name}.log"
    log = open(log_path, "wb")  # noqa: SIM115 - the server writes to it until the benchmark stops it
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    import requests
    while True:
        try:
            if requests.get(base + "/health/live", timeout=5).status_code == 200:
                return base, process
        except requests.RequestException:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            stop_process(process)
            raise SystemExit(f"{mode} server did not start: see {log_path}")
        time.sleep(0.2)


class ProcessSampler:
    """Peak RSS and CPU seconds of server processes (gunicorn masters, nginx) and their children, from /proc."""

    def __init__(self, *roots: int) -> None:
        self.roots, self.peak_rss = roots, 0
        self.cpu_start, self.wall_start = self.cpu(), time.monotonic()
        self.cpu_end = 0.0

    def pids(self) -> list[int]:
        found = []
        for pid in self.roots:
            found += [pid, *children(pid)]
        return found

    def cpu(self) -> float:
        total = 0.0
        for pid in self.pids():
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
            except (FileNotFoundError, IndexError):
                pass
        return total

    def sample(self) -> None:
        rss = 0
        for pid in self.pids():
            try:
                for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                    if line.startswith("VmRSS:"):
                        rss += int(line.split()[1]) * 1024
            except FileNotFoundError:
                pass
        self.peak_rss = max(self.peak_rss, rss)

    def cpu_percent(self) -> float:
        return 100 * (self.cpu() - self.cpu_start) / max(time.monotonic() - self.wall_start, 1e-9)


class RedisCpu(ProcessSampler):
    """The Redis server's CPU seconds (INFO cpu), for the same window: it shares the cores too."""

    def __init__(self, url: str | None) -> None:
        import redis
        self.client = redis.Redis.from_url(url) if url else None
        super().__init__()

    def cpu(self) -> float:
        if self.client is None:
            return 0.0
        info = self.client.info("cpu")
        return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


# -- the load ------------------------------------------------------------------------------------

async def fake_baseline(fake_url: str, samples: int = 20) -> float:
    """The fake server's own time to first token, measured directly (median)."""
    times = []
    async with aiohttp.ClientSession() as http:
        for _ in range(samples):
            started = time.monotonic()
            async with http.post(fake_url + "/chat/completions", json={"model": "m", "stream": True, "messages": [],
                                                                        "max_tokens": 5}) as response:
                async for line in response.content:
                    if b'"content": "word' in line or b'"content": " word' in line:
                        times.append(time.monotonic() - started)
                        break
                async for _ in response.content:
                    pass
    return statistics.median(times)


async def run_load(base: str, clients: int, ramp: float, tokens: int, timeout: float, sampler: ProcessSampler,
                   others: dict[str, ProcessSampler], spy: Spy | None = None, client: str = "socketio"):
    """Connect every client, then chat; CPU and the optional py-spy cover the chatting only."""
    http_sessions = [aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) for _ in range(clients)]
    chats = [CLIENTS[client](base, tokens) for _ in range(clients)]
    connect_failures = 0
    for start in range(0, clients, CONNECT_BATCH):
        batch = range(start, min(start + CONNECT_BATCH, clients))
        results = await asyncio.gather(*(chats[i].connect(http_sessions[i]) for i in batch), return_exceptions=True)
        connect_failures += sum(1 for r in results if isinstance(r, Exception))
        sampler.sample()
    connected = [c for c in chats if c.connected]
    sampling = asyncio.create_task(_sample_forever(sampler))
    lags: list[float] = []
    probing = asyncio.create_task(_probe_lag(lags))
    started, own_cpu = time.monotonic(), time.process_time()
    for measured in (sampler, *others.values()):  # CPU while chatting, not while connecting
        measured.cpu_start, measured.wall_start = measured.cpu(), time.monotonic()
    if spy:
        spy.start()
    await asyncio.gather(*(c.run(random.uniform(0, ramp), timeout) for c in connected))
    elapsed = time.monotonic() - started
    cpu = sampler.cpu_percent()
    for measured in others.values():
        measured.cpu_end = measured.cpu_percent()
    if spy:
        spy.stop()
    load_cpu = 100 * (time.process_time() - own_cpu) / elapsed
    sampling.cancel()
    probing.cancel()
    for chat in connected:
        await chat.disconnect()
    for http in http_sessions:
        await http.close()
    return chats, connect_failures, elapsed, cpu, load_cpu, lags


async def _probe_lag(lags: list[float], every_s: float = 0.01) -> None:
    """How late this process's own event loop wakes (ms): a chunk that arrives while it lags is
    timed late by as much, so this is the measurer's share of the time to first chunk."""
    while True:
        started = time.monotonic()
        await asyncio.sleep(every_s)
        lags.append((time.monotonic() - started - every_s) * 1000)


async def _sample_forever(sampler: ProcessSampler) -> None:
    while True:
        sampler.sample()
        await asyncio.sleep(0.5)


def percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * len(ordered)) - 1))]


def most_at_once(chats: list[ChatRecord]) -> int:
    events = sorted([(c.sent_at, 1) for c in chats if c.sent_at and c.last_at] +
                    [(c.last_at, -1) for c in chats if c.sent_at and c.last_at])
    level = best = 0
    for _, step in events:
        level += step
        best = max(best, level)
    return best


def report(mode: str, chats: list[ChatRecord], connect_failures: int, elapsed: float, cpu: float, load_cpu: float,
           peak_rss: int, baseline: float) -> dict:
    ok = [c for c in chats if c.ok]
    added = [(c.first_at - c.sent_at - baseline) * 1000 for c in chats if c.first_at]
    gaps = [g * 1000 for c in chats for g in c.gaps]
    errors: dict[str, int] = {}
    for chat in chats:
        if not chat.ok:
            key = chat.error or f"finish={chat.finish}, words={len(''.join(chat.text).split())}"
            errors[key] = errors.get(key, 0) + 1
    return {"mode": mode, "clients": len(chats), "success": 100 * len(ok) / len(chats), "connect_failures":
            connect_failures, "ttfc_p50": percentile(added, 50), "ttfc_p95": percentile(added, 95),
            "ttfc_p99": percentile(added, 99), "gap_p99": percentile(gaps, 99), "at_once": most_at_once(chats),
            "elapsed": elapsed, "cpu": cpu, "cpu_ms_per_chat": cpu * elapsed * 10 / max(len(chats), 1),
            "load_cpu": load_cpu, "rss_mb": peak_rss / 1024 / 1024, "errors": errors}


def timeline(chats: list[ChatRecord], baseline: float, window_s: float = 2.0) -> str:
    """Added time to first chunk by when the chat was sent: whether the lag grows as load builds
    or is there from the start (a serial bottleneck rather than too little CPU)."""
    sent = [c for c in chats if c.sent_at and c.first_at]
    if not sent:
        return "timeline: no chat got a first chunk"
    start = min(c.sent_at for c in sent)
    lines = ["sent at (s) | chats | ack p50 / p99 (ms) | added TTFC p50 / p99 (ms)"]
    buckets: dict[int, list[ChatRecord]] = {}
    for chat in sent:
        buckets.setdefault(int((chat.sent_at - start) // window_s), []).append(chat)
    for index in sorted(buckets):
        added = [(c.first_at - c.sent_at - baseline) * 1000 for c in buckets[index]]
        acks = [(c.acked_at - c.sent_at) * 1000 for c in buckets[index] if c.acked_at]
        lines.append(f"{index * window_s:5.0f}-{(index + 1) * window_s:<5.0f} | {len(added):5d} | "
                     f"{percentile(acks, 50):.0f} / {percentile(acks, 99):.0f} | "
                     f"{percentile(added, 50):.0f} / {percentile(added, 99):.0f}")
    return "\n".join(lines)


def print_table(rows: list[dict], args, baseline: float) -> None:
    print(f"\n{args.clients} clients, replies of {args.tokens} tokens at {args.token_ms} ms/token, "
          f"starts spread over {args.ramp} s, fake server's own first token {baseline * 1000:.1f} ms"
          f"{', Redis queue' if args.redis else ''}, topology {args.topology}, client {args.client}; load average {_loadavg()}\n")
    print("| worker | clients | success | added TTFC p50 / p95 / p99 (ms) | p99 gap (ms) | most streaming at once "
          "| wall (s) | server CPU (of it nginx) | server CPU per chat | load process CPU | its loop lag p99 (ms) "
          "| fake model CPU | Redis CPU | server peak RSS |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['mode']} | {r['clients']} | {r['success']:.1f}% | {r['ttfc_p50']:.0f} / {r['ttfc_p95']:.0f} / "
              f"{r['ttfc_p99']:.0f} | {r['gap_p99']:.0f} | {r['at_once']} | {r['elapsed']:.1f} | {r['cpu']:.0f}% "
              f"({r['nginx_cpu']:.0f}%) "
              f"| {r['cpu_ms_per_chat']:.1f} ms | {r['load_cpu']:.0f}% | {r['load_lag_p99']:.0f} | {r['fake_cpu']:.0f}% "
              f"| {r['redis_cpu']:.0f}% | {r['rss_mb']:.0f} MB |")
    for r in rows:
        if r["errors"] or r["connect_failures"]:
            print(f"{r['mode']}: connect failures {r['connect_failures']}, failed chats {r['errors']}")


def _loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def run_once(args, mode: str, clients: int, fake_url: str, baseline: float) -> dict:
    """One load run against a fresh server set (one instance, or nginx + two), all stopped by pid after."""
    with tempfile.TemporaryDirectory() as tmp:
        processes, proxy = [], None
        try:
            if args.topology == "nginx2":  # two instances, one SQLite file and one Redis, nginx in front
                for name in ("-a", "-b"):
                    processes.append(start_server(mode, fake_url, Path(tmp), clients, args.redis, args.profile, name))
                proxy = Nginx(Path(tmp) / "nginx", [int(base.rsplit(":", 1)[1]) for base, _ in processes],
                              limits=False).start()
                base, roots = proxy.base, [p.pid for _, p in processes] + [proxy.process.pid]
            else:
                processes.append(start_server(mode, fake_url, Path(tmp), clients, args.redis, args.profile))
                base, roots = processes[0][0], [processes[0][1].pid]
            sampler = ProcessSampler(*roots)
            others = {"fake_cpu": ProcessSampler(args.fake_pid), "redis_cpu": RedisCpu(args.redis),
                      "nginx_cpu": ProcessSampler(*([proxy.process.pid] if proxy else []))}
            spy = Spy(Path(args.py_spy), _workers(processes)) if args.py_spy else None
            try:
                chats, failures, elapsed, cpu, load_cpu, lags = asyncio.run(
                    run_load(base, clients, args.ramp, args.tokens, args.timeout, sampler, others, spy, args.client))
            finally:
                if spy:
                    spy.stop()
                    print(spy.report(), flush=True)
        finally:
            if proxy:
                proxy.stop()
            for _, process in processes:
                stop_process(process)
            _print_first_traceback(Path(tmp))
    label = mode if args.topology == "single" else f"nginx + 2 x {mode}"
    if args.timeline:
        print(timeline(chats, baseline), flush=True)
    row = report(label, chats, failures, elapsed, cpu, load_cpu, sampler.peak_rss, baseline)
    for name, measured in others.items():  # fake near 100%: the fake model, not the app, is the limit
        row[name] = measured.cpu_end
    row["load_lag_p99"] = percentile(lags, 99)
    return row


def _workers(processes) -> dict[str, int]:
    """The gunicorn worker of each instance (what py-spy samples), by instance name."""
    return {f"instance-{'ab'[i]}": pid for i, (_, master) in enumerate(processes) for pid in children(master.pid)[:1]}


def _print_first_traceback(folder: Path, lines: int = 40) -> None:
    """A failed chat's cause is in a server's log, which goes with the temporary folder: show it."""
    for log in sorted(folder.glob("*.log")):
        text = log.read_text(errors="replace")
        if "Traceback" in text:
            start = text.rfind("\n", 0, text.index("Traceback")) + 1
            print(f"first traceback in {log.name}:\n" + "\n".join(text[start:].splitlines()[:lines]), flush=True)
            return


def sweep(args, mode: str, fake_url: str, baseline: float) -> list[dict]:
    """Ramped runs at each N of --sweep, stopping at the first whose p99 added TTFC misses --target-ms."""
    rows = []
    for clients in [int(n) for n in args.sweep.split(",")]:
        rows.append(run_once(args, mode, clients, fake_url, baseline))
        print(json.dumps(rows[-1]), flush=True)
        if rows[-1]["ttfc_p99"] >= args.target_ms or rows[-1]["success"] < 100:
            break
    passing = [r["clients"] for r in rows if r["ttfc_p99"] < args.target_ms and r["success"] == 100]
    print(f"\n{mode}: largest N with 100% complete and p99 added TTFC < {args.target_ms:.0f} ms: "
          f"{max(passing) if passing else 'none of ' + args.sweep}")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--ramp", type=float, default=10.0, help="seconds over which chats start (0: all at once)")
    parser.add_argument("--tokens", type=int, default=200)
    parser.add_argument("--token-ms", type=float, default=20.0)
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds a chat may take")
    parser.add_argument("--modes", default="eventlet,gevent,threading", help="worker classes (nginx2: eventlet)")
    parser.add_argument("--topology", choices=("single", "nginx2"), default="single",
                        help="single: one gunicorn; nginx2: nginx + two gunicorn instances (needs --redis)")
    parser.add_argument("--redis", default=None, help="REDIS_URL for the Socket.IO queue (default: none)")
    parser.add_argument("--sweep", default=None, help="comma-separated client counts: find the largest that "
                                                      "keeps p99 added TTFC under --target-ms")
    parser.add_argument("--target-ms", type=float, default=250.0)
    parser.add_argument("--profile", default=None, help="write a cProfile of the (eventlet/gevent) worker here "
                                                        "(nginx2: one file per instance, suffixed -a and -b)")
    parser.add_argument("--py-spy", default=None, metavar="FOLDER",
                        help="sample each instance's worker with py-spy while loaded; prints the top functions "
                             "and keeps the raw stacks in FOLDER")
    parser.add_argument("--client", choices=tuple(CLIENTS), default="socketio",
                        help="socketio: python-socketio's AsyncClient per chat; lean: Engine.IO/Socket.IO spoken "
                             "over aiohttp's WebSocket (benchmarks/lean_chat.py), less of the machine for the measurer")
    parser.add_argument("--timeline", action="store_true",
                        help="print added time to first chunk per 2 s of send time")
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                        help="an app setting for the instances, e.g. --set EMBED_INDEXER=false (repeatable)")
    args = parser.parse_args()
    for setting in args.set:
        name, _, value = setting.partition("=")
        SETTINGS[name.strip()] = value.strip()
    if args.topology == "nginx2" and not args.redis:
        parser.error("--topology nginx2 needs --redis (the instances share it), e.g. redis://127.0.0.1:6379/12")
    if args.topology == "nginx2" and args.modes == parser.get_default("modes"):
        args.modes = "eventlet"
    print(f"load average before: {_loadavg()}", flush=True)
    fake_url, fake = start_fake(args.tokens, args.token_ms / 1000)
    args.fake_pid = fake.pid
    rows = []
    try:
        baseline = asyncio.run(fake_baseline(fake_url))
        for mode in args.modes.split(","):
            if args.sweep:
                rows += sweep(args, mode, fake_url, baseline)
                continue
            rows.append(run_once(args, mode, args.clients, fake_url, baseline))
            print(json.dumps(rows[-1]), flush=True)
    finally:
        stop_process(fake)
    print_table(rows, args, baseline)


if __name__ == "__main__":
    main()
