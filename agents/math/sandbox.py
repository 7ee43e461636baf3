"""The parent side of one math sandbox: a worker process spoken to over pipes (pool shares them).

Only subprocess.Popen, selectors and os.read, no threads: under eventlet or gevent those are the
monkey-patched cooperative versions, so a green thread waiting for an answer lets the server run.
The worker starts on first use or start() (importing sympy once, about half a second, not counted
against the caller's timeout), serves one request at a time under a lock, and is killed by its pid
when an answer is late; the next request, or start(), runs a fresh one.
"""
from __future__ import annotations

import itertools
import json
import os
import selectors
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from .limits import MathRefused

ROOT = Path(__file__).resolve().parents[2]  # the folder holding agents/, the worker's cwd
STARTUP_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 2.0
MAX_REPLY_BYTES = 1 << 20
TOO_SLOW = ("That calculation took too long (over {:g} s), so I stopped it. Try smaller numbers or a "
            "simpler expression.")
CRASHED = ("The calculation stopped before it finished (it needed more memory or time than I allow). "
           "Try smaller numbers or a simpler expression.")


class _Late(Exception):
    """No reply by the deadline."""


class _Broken(Exception):
    """The worker closed its pipe, or sent something that is not one JSON line."""


class Sandbox:
    """A lazily started `python -m agents.math.worker`; request() is safe to call from many threads."""

    def __init__(self, command: Sequence[str] | None = None) -> None:
        self.command = list(command or [sys.executable, "-m", "agents.math.worker"])
        self._process: subprocess.Popen | None = None
        self._owner = os.getpid()  # after a fork the child starts its own worker
        self._buffer = b""
        self._ids = itertools.count(1)
        self._lock = threading.Lock()  # green under eventlet/gevent monkey-patching

    @property
    def pid(self) -> int | None:
        """The running worker's pid, or None when there is none."""
        process = self._process
        return process.pid if process is not None and process.poll() is None else None

    def request(self, payload: dict, timeout_s: float) -> dict:
        """The worker's reply to one request; MathRefused when it is late or dies (it is then killed)."""
        with self._lock:
            process = self._running()
            ident = next(self._ids)
            try:
                self._send(process, {**payload, "id": ident, "timeout_s": timeout_s})
                deadline = time.monotonic() + timeout_s
                while True:
                    reply = self._receive(process, deadline)
                    if reply.get("id") == ident:
                        return reply
            except _Late:
                self._stop(kill=True)
                raise MathRefused(TOO_SLOW.format(timeout_s)) from None
            except _Broken:
                self._stop(kill=True)
                raise MathRefused(CRASHED) from None

    def start(self) -> None:
        """Have a worker ready now (pool replaces a killed one before anyone waits on it)."""
        with self._lock:
            self._running()

    def close(self) -> None:
        """Stop the worker if it is running (it exits by itself when its stdin closes)."""
        with self._lock:
            self._stop(kill=False)

    def _running(self) -> subprocess.Popen:
        if self._owner != os.getpid():  # the pipes belong to the parent process's worker: leave them
            self._process, self._buffer, self._owner = None, b"", os.getpid()
        if self._process is not None and self._process.poll() is None:
            return self._process
        self._stop(kill=True)
        try:  # no secrets in the worker's environment: it gets PATH only
            self._process = subprocess.Popen(self.command, cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                             stderr=subprocess.DEVNULL, close_fds=True, env={"PATH": os.defpath})
            if not self._receive(self._process, time.monotonic() + STARTUP_TIMEOUT_S).get("ready"):
                raise _Broken
        except (_Late, _Broken, OSError):
            self._stop(kill=True)
            raise MathRefused("The calculator could not start; please try again later.") from None
        return self._process

    def _send(self, process: subprocess.Popen, payload: dict) -> None:
        try:
            process.stdin.write(json.dumps(payload).encode() + b"\n")
            process.stdin.flush()
        except (BrokenPipeError, OSError, ValueError):
            raise _Broken from None

    def _receive(self, process: subprocess.Popen, deadline: float) -> dict:
        """One JSON line, waiting with select (never a blocking read) until the deadline."""
        while b"\n" not in self._buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise _Late
            with selectors.DefaultSelector() as selector:  # looked up now, so monkey-patching applies
                selector.register(process.stdout, selectors.EVENT_READ)
                if not selector.select(remaining):
                    raise _Late
            chunk = os.read(process.stdout.fileno(), 65536)
            if not chunk or len(self._buffer) + len(chunk) > MAX_REPLY_BYTES:
                raise _Broken
            self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        try:
            reply = json.loads(line)
        except ValueError:
            raise _Broken from None
        if not isinstance(reply, dict):
            raise _Broken
        return reply

    def _stop(self, kill: bool) -> None:
        """Kill (or ask, by closing stdin) the worker by its own Popen, reap it, close the pipes."""
        process, self._process, self._buffer = self._process, None, b""
        if process is None:
            return
        try:
            if kill:
                process.kill()
            process.stdin.close()
        except OSError:
            pass
        try:
            process.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        process.stdout.close()

