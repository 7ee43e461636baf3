"""The parent side of reading a document: one `python -m documents.worker` per file, killed at its deadline.

Only subprocess.Popen, selectors and os.read: under eventlet or gevent those are the monkey-patched
cooperative versions, so while a worker parses a PDF the server goes on serving (the parsing is in
another process, so it does not hold this one's GIL either). At most DOCUMENT_WORKERS run at once
per server process; a job waits its turn, and every turn is bounded by DOCUMENT_TIMEOUT_S.
"""
from __future__ import annotations

import json
import logging
import os
import selectors
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from .limits import MB, Limits, Refused
from .sections import Section

log = logging.getLogger("chat.documents")
ROOT = Path(__file__).resolve().parent.parent  # the folder holding documents/, the worker's cwd
COMMAND = [sys.executable, "-m", "documents.worker"]
GRACE_S = 2.0  # the worker stops itself at the deadline; it is killed if still running this much later
STOPPED = "Reading {name} needed more time or memory than allowed, so it was stopped."
_gates: dict[int, threading.BoundedSemaphore] = {}
_gates_lock = threading.Lock()


class _Late(Exception):
    """The worker was still running at the deadline."""


@dataclass(frozen=True)
class Extracted:
    sections: list[Section]
    pages: int | None = None  # PDFs: the page count
    pages_without_text: int = 0


def extract(path: Path, kind: str, name: str, limits: Limits, workers: int = 2) -> Extracted:
    """The document's text by section; Refused with the user's message when it cannot be read."""
    request = {"path": str(path), "kind": kind, "name": name, "limits": limits.as_dict()}
    with _gate(workers):
        reply = _run(request, limits.timeout_s + GRACE_S, 2 * limits.max_text_bytes + MB)
    if reply is None:
        raise Refused(STOPPED.format(name=name))
    if not reply.get("ok"):
        if reply.get("error"):
            log.warning("Reading a %s failed: %s", kind, reply["error"])
        raise Refused(str(reply.get("message") or STOPPED.format(name=name)))
    return _extracted(reply, name)


def _gate(workers: int) -> threading.BoundedSemaphore:
    """One semaphore per size, made on first use (after monkey-patching, so it is cooperative)."""
    with _gates_lock:
        return _gates.setdefault(workers, threading.BoundedSemaphore(max(1, workers)))


def _run(request: dict, timeout_s: float, max_bytes: int) -> dict | None:
    """The worker's JSON answer, or None when it was late, died or said too much. No secrets in its
    environment: it gets PATH only."""
    process = subprocess.Popen(COMMAND, cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                               stderr=subprocess.DEVNULL, close_fds=True, env={"PATH": os.defpath})
    try:
        process.stdin.write(json.dumps(request).encode())
        process.stdin.close()
        output = _read_all(process, time.monotonic() + timeout_s, max_bytes)
        reply = json.loads(output)
        return reply if isinstance(reply, dict) else None
    except (_Late, ValueError, OSError):
        return None
    finally:
        if process.poll() is None:
            process.kill()
        process.wait()
        process.stdout.close()


def _read_all(process: subprocess.Popen, deadline: float, max_bytes: int) -> bytes:
    """stdout until EOF, waiting with select (never a blocking read) until the deadline."""
    parts, size = [], 0
    with selectors.DefaultSelector() as selector:  # looked up now, so monkey-patching applies
        selector.register(process.stdout, selectors.EVENT_READ)
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not selector.select(remaining):
                raise _Late
            block = os.read(process.stdout.fileno(), 1 << 16)
            if not block:
                return b"".join(parts)
            size += len(block)
            if size > max_bytes:
                raise ValueError("the worker's answer is too large")
            parts.append(block)


def _extracted(reply: dict, name: str) -> Extracted:
    """The answer's sections, checked: text strings, with an int page or a str heading."""
    sections = []
    for item in reply.get("sections") or []:
        text, page, heading = item.get("text"), item.get("page"), item.get("heading")
        if not isinstance(text, str) or not (page is None or isinstance(page, int)) \
                or not (heading is None or isinstance(heading, str)):
            raise Refused(STOPPED.format(name=name))
        sections.append(Section(text, page, heading))
    pages = reply.get("pages")
    return Extracted(sections, pages if isinstance(pages, int) else None, int(reply.get("pages_without_text") or 0))
