"""The math sandbox process: `python -m agents.math.worker`, started and killed by sandbox.

It limits itself (1 GiB of address space, no child processes, and before each request a CPU-time
limit a little past the parent's timeout, as a backstop should the parent fail to kill it), says
it is ready, then answers one JSON line per JSON line on stdin until stdin closes. A request
carries normalised expression strings that are rebuilt here through the same whitelisting walker,
so a forged request gets no further than a user's text. A bad request gets an error answer and
the worker keeps serving.
"""
from __future__ import annotations

import json
import re
import resource
import sys
from collections.abc import Callable
from typing import BinaryIO

from .limits import MathRefused, NotMath
from .solve import solve
from .steps import arithmetic, differentiate, percentage, rewrite

MEMORY_BYTES = 1 << 30
CPU_SLACK_S = 2
MAX_REQUEST_BYTES = 64 * 1024
KINDS: dict[str, Callable[[list[str], str | None, str | None], dict]] = {
    "arithmetic": arithmetic, "percentage": percentage, "solve": solve, "differentiate": differentiate,
    "simplify": rewrite, "expand": rewrite, "factor": rewrite}
MODES = {"percentage": ("of", "increase", "decrease", "ratio")}
# one of each kind before saying ready: sympy imports parts of itself (sympy.physics.units, ...) on
# first use, and that should not count against the first user's timeout
WARM_UP = [{"kind": "arithmetic", "exprs": ["sqrt(2)+log(3)+asin(1)+round(2.5)"]},
           {"kind": "solve", "exprs": ["x**2-2", "0"]}, {"kind": "solve", "exprs": ["1/x+x", "2"]},
           {"kind": "simplify", "exprs": ["(x**2-1)/(x-1)"]}, {"kind": "factor", "exprs": ["x**3-x"]},
           {"kind": "expand", "exprs": ["(x+1)**2"]}, {"kind": "differentiate", "exprs": ["x*sin(x**2)"]}]


def handle(request: object) -> dict:
    """The answer to one request: {"ok": true, kind, result, answer, steps} or {"ok": false, reason: message}."""
    try:
        kind, exprs, var, mode = _validated(request)
        return {"ok": True, **KINDS[kind](exprs, var, mode)}
    except MathRefused as error:
        return {"ok": False, "refused": str(error)}
    except NotMath as error:
        return {"ok": False, "not_math": str(error)}
    except (MemoryError, RecursionError):
        return {"ok": False, "error": "That calculation needs more memory than I allow; try something smaller."}
    except Exception as error:  # noqa: BLE001 - sympy's own failures: NotImplementedError, ValueError, ...
        return {"ok": False, "error": f"I could not work that out ({type(error).__name__})."}


def _validated(request: object) -> tuple[str, list[str], str | None, str | None]:
    if not isinstance(request, dict) or not isinstance(request.get("kind"), str) or request["kind"] not in KINDS:
        raise MathRefused("That request is not one I understand.")
    kind, exprs, var = request["kind"], request.get("exprs"), request.get("var")
    if not isinstance(exprs, list) or not 1 <= len(exprs) <= 2 or not all(isinstance(e, str) for e in exprs):
        raise MathRefused("That request is not one I understand.")
    if var is not None and not (isinstance(var, str) and re.fullmatch(r"[a-z]", var)):
        raise MathRefused("A variable is a single letter.")
    if kind in ("solve", "percentage") and len(exprs) != 2:
        raise MathRefused("That request is not one I understand.")
    mode = request.get("mode") if kind in MODES else kind
    if kind in MODES and mode not in MODES[kind]:
        raise MathRefused("That request is not one I understand.")
    return kind, exprs, var, mode


def limit_memory() -> None:
    """At most MEMORY_BYTES of address space and no child processes."""
    for limit, value in ((resource.RLIMIT_AS, MEMORY_BYTES), (resource.RLIMIT_NPROC, 0)):
        _, hard = resource.getrlimit(limit)
        resource.setrlimit(limit, (value if hard == resource.RLIM_INFINITY else min(value, hard), hard))


def limit_cpu(timeout_s: float) -> None:
    """RLIMIT_CPU is a lifetime total, so each request moves the soft limit to now + its budget."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    soft = int(usage.ru_utime + usage.ru_stime + timeout_s + CPU_SLACK_S) + 1
    _, hard = resource.getrlimit(resource.RLIMIT_CPU)
    resource.setrlimit(resource.RLIMIT_CPU, (soft if hard == resource.RLIM_INFINITY else min(soft, hard), hard))


def warm_up() -> None:
    for request in WARM_UP:
        handle(request)


def serve(requests: BinaryIO, replies: BinaryIO,
          budget: Callable[[float], None] = limit_cpu) -> None:
    """Answer each line until EOF; `budget(timeout_s)` runs before each request (tests pass a no-op)."""
    _write(replies, {"ready": True})
    while True:
        line = requests.readline(MAX_REQUEST_BYTES + 1)
        if not line:
            return
        if not line.endswith(b"\n"):
            while line and not line.endswith(b"\n"):  # skip the rest of an oversized line
                line = requests.readline(MAX_REQUEST_BYTES)
            _write(replies, {"ok": False, "error": "That request is too large."})
            continue
        request = _decoded(line)
        budget(_timeout_of(request))
        reply = handle(request) if request is not None else {"ok": False, "error": "That request is not JSON."}
        reply["id"] = request.get("id") if isinstance(request, dict) else None
        _write(replies, reply)


def _decoded(line: bytes) -> object | None:
    try:
        return json.loads(line)
    except ValueError:
        return None


def _timeout_of(request: object) -> float:
    timeout = request.get("timeout_s") if isinstance(request, dict) else None
    return float(timeout) if isinstance(timeout, (int, float)) and 0 < timeout < 3600 else 1.0


def _write(replies: BinaryIO, reply: dict) -> None:
    replies.write(json.dumps(reply).encode() + b"\n")
    replies.flush()


def main() -> None:
    limit_memory()
    warm_up()
    serve(sys.stdin.buffer, sys.stdout.buffer)


if __name__ == "__main__":
    main()
