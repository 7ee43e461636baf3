"""The math agent under attack: code, huge numbers, deep nesting and slow sums are refused fast
and clearly; the sandbox worker is cut off when late, survives bad requests, and nothing
evaluates text. Runs against the real worker process; ordered so the last test sees its state."""
import builtins
import io
import json
import os
import sys
import time
from pathlib import Path

import pytest

from agents.math import worker as math_worker
from agents.math.agent import MathRefused, detect_math, shutdown, solve_math
from agents.math.parse import TextBuilder, check, walk_source
from agents.math.pool import request as sandbox_request
from agents.math.pool import worker_pid
from agents.math.sandbox import Sandbox


@pytest.fixture(scope="module", autouse=True)
def worker():
    """One sandbox worker for the module, stopped at the end."""
    yield
    shutdown()


@pytest.fixture
def warm():
    """A running worker, so timings measure the answer and not the start-up."""
    assert solve_math("1 + 1").result == "2"
    return worker_pid()


# -- refused in the web process, before anything is computed -------------------------------------------

HOSTILE = [
    ("__import__('os')", "character '_'"),
    ("__import__('os').system('id')", "Attribute access"),
    ("().__class__.__bases__", "Attribute access"),
    ("x.real", "Attribute access"),
    ("9**9**9", "exponent 387420489 is too large"),
    ("2**100000", "exponent 100000 is too large"),
    ("2^2^2^2^2", "exponent 65536 is too large"),
    ("(" * 10_000 + "1" + ")" * 10_000, "characters long"),
    ("1+" * 500_000 + "1", "characters long"),
    ("(" * 31 + "1" + ")" * 31, "nested too deeply"),
    ("what is " + "1+" * 600 + "1", "1,201 characters long"),
    ("factorial(10**6)", "factorial needs a whole number from 0 to 1,000"),
    ("factorial(1001)", "factorial needs a whole number from 0 to 1,000"),
    ("factorial(x)", "factorial needs a whole number"),
    ("lambda: 1", "character ':'"),
    ("(lambda x: x)(1)", "character ':'"),
    ("'abc'", "character \"'\""),
    ('"abc" * 3', "character '\"'"),
    ("log(8, base=2)", "keyword argument"),
    ("open('x')", "character \"'\""),
    ("open(1)", "open() is not a function I can use"),
    ("eval(1)", "eval() is not a function I can use"),
    ("globals()", "globals() is not a function I can use"),
    ("x[0]", "character '['"),
    ("exp(exp(20))", "more than 4,000 digits"),
    ("123456789^1000", "more than 4,000 digits"),
    ("(2^1000)^1000", "more than 4,000 digits"),
    ("1 + 1 = 2 = 2", "exactly one '='"),
    ("sqrt(1, 2)", "sqrt() takes 1 argument"),
]


@pytest.mark.parametrize("text, reason", HOSTILE)
def test_math_security_hostile_input_is_refused_fast_and_clearly(text, reason):
    started = time.monotonic()
    with pytest.raises(MathRefused) as refused:
        solve_math(text)
    assert time.monotonic() - started < 1.0
    message = str(refused.value)
    assert reason in message and message.endswith(".") and len(message) < 600


def test_math_security_a_megabyte_is_refused_in_milliseconds():
    text = "1+" * 500_000 + "1"
    started = time.monotonic()
    with pytest.raises(MathRefused, match="1,000,001 characters long"):
        solve_math(text)
    assert detect_math(text) == []
    assert time.monotonic() - started < 0.05


def test_math_security_refusals_do_not_start_the_worker():
    shutdown()
    for text, _ in HOSTILE:
        with pytest.raises(MathRefused):
            solve_math(text)
    assert worker_pid() is None


@pytest.mark.parametrize("source, reason", [
    ("__import__('os')", "__import__() is not a function I can use"),
    ("().__class__.__bases__", "Attribute access"),
    ("x.real", "Attribute access"),
    ("lambda: 1", "Lambdas are not allowed"),
    ("'abc'", "Text in quotes"),
    ("f'{x}'", "Text in quotes"),
    ("log(8, base=2)", "Keyword arguments"),
    ("sqrt(*a)", "Starred arguments"),
    ("x[0]", "Indexing"),
    ("[i for i in x]", "is not allowed"),
    ("x if y else z", "if/else"),
    ("(x := 1)", "Assignments"),
    ("x < 1", "Comparisons"),
    ("x and y", "Logic"),
    ("not x", "operator"),
    ("x << 2", "operator"),
    ("__class__", "I don't know the name '__class__'"),
    ("True", "Only plain decimal numbers"),
    ("1e400", "Only plain decimal numbers"),
    ("0x10", "Only plain decimal numbers"),
    ("sqrt", "sqrt is a function"),
    ("(1)(2)", "Only functions called by name"),
    ("1, 2", "Several values"),
])
def test_math_security_the_ast_walker_refuses_on_its_own(source, reason):
    """The AST layer without the text checks in front of it: each node type is refused by name."""
    with pytest.raises(MathRefused, match=reason.replace("(", r"\(").replace(")", r"\)")):
        walk_source(source, TextBuilder())


def test_math_security_worker_side_walk_refuses_before_building():
    """In the worker the builder is sympy, which computes as it builds: costs are checked first."""
    from agents.math.format import SympyBuilder
    from agents.math.parse import parse
    started = time.monotonic()
    for source in ("9**9**9", "2**2**2**2**2", "factorial(10**6)", "factorial(999)**1000", "exp(exp(20))"):
        with pytest.raises(MathRefused):
            parse(source, SympyBuilder())
    assert time.monotonic() - started < 0.5


def test_math_security_limits_are_checked_by_counting_before_parsing():
    started = time.monotonic()
    for text in ("(" * 100_000, "-" * 999 + "1", "1+" * 450 + "1"):
        with pytest.raises(MathRefused):
            check(text)
    assert time.monotonic() - started < 0.1


# -- the worker process ---------------------------------------------------------------------------------

def test_math_security_a_worker_that_cannot_start_is_a_clear_refusal():
    broken = Sandbox([sys.executable, "-c", "pass"])
    with pytest.raises(MathRefused, match="could not start"):
        broken.request({"kind": "arithmetic", "exprs": ["1"]}, 1.0)
    assert broken.pid is None


def test_math_security_worker_refuses_forged_requests_itself(warm):
    """The worker validates again, so a request that skipped the web process's checks gets nowhere."""
    for exprs in (["__import__('os')"], ["().__class__"], ["9**9**9"], ["factorial(10**6)"]):
        reply = sandbox_request({"kind": "arithmetic", "exprs": exprs}, 1.0)
        assert reply["ok"] is False and reply["refused"]
    assert worker_pid() == warm


@pytest.mark.parametrize("payload", [
    {"kind": "nope", "exprs": ["1"]}, {"kind": "arithmetic", "exprs": "1"}, {"kind": "arithmetic"},
    {"kind": "arithmetic", "exprs": [1]}, {"kind": "solve", "exprs": ["x"]},
    {"kind": "percentage", "exprs": ["1", "2"]},
    {"kind": "differentiate", "exprs": ["x"], "var": "xx"}, {"kind": "arithmetic", "exprs": ["1"] * 3},
])
def test_math_security_worker_survives_bad_requests(warm, payload):
    reply = sandbox_request(payload, 1.0)
    assert reply["ok"] is False
    assert reply["refused"] in ("That request is not one I understand.", "A variable is a single letter.")
    assert solve_math("6 * 7").result == "42" and worker_pid() == warm


def test_math_security_worker_serve_loop_answers_every_line():
    """In process: junk, oversized and valid lines each get one reply, and the loop goes on."""
    lines = [b"not json\n", b"[1, 2]\n", b"x" * (math_worker.MAX_REQUEST_BYTES + 10) + b"\n",
             json.dumps({"id": 7, "kind": "arithmetic", "exprs": ["6*7"], "timeout_s": 5}).encode() + b"\n"]
    replies = io.BytesIO()
    budgets: list[float] = []
    math_worker.serve(io.BytesIO(b"".join(lines)), replies, budget=budgets.append)  # no rlimits on pytest
    answers = [json.loads(line) for line in replies.getvalue().splitlines()]
    assert answers[0] == {"ready": True} and len(answers) == 5
    assert [answer["ok"] for answer in answers[1:]] == [False, False, False, True]
    assert answers[4]["result"] == "42" and answers[4]["id"] == 7
    assert budgets == [1.0, 1.0, 5.0]  # the oversized line is skipped before any work


def test_math_security_worker_runs_with_limits_and_no_secrets(warm):
    limits = Path(f"/proc/{warm}/limits").read_text()
    address_space = next(line for line in limits.splitlines() if line.startswith("Max address space"))
    assert str(math_worker.MEMORY_BYTES) in address_space
    cpu = next(line for line in limits.splitlines() if line.startswith("Max cpu time"))
    assert "unlimited" not in cpu.split()[3]
    environment = Path(f"/proc/{warm}/environ").read_bytes().split(b"\0")
    assert [entry.split(b"=")[0] for entry in environment if entry] == [b"PATH"]
    command = Path(f"/proc/{warm}/cmdline").read_bytes().split(b"\0")
    assert command[:3] == [sys.executable.encode(), b"-m", b"agents.math.worker"]
    assert os.readlink(f"/proc/{warm}/cwd") == str(Path(math_worker.__file__).resolve().parents[2])


def test_math_security_slow_computation_is_cut_off_and_the_worker_replaced(warm):
    started = time.monotonic()
    with pytest.raises(MathRefused, match="took too long"):
        solve_math("expand (x + y + z + w)^40", timeout_s=0.3)
    assert time.monotonic() - started < 1.0
    assert not Path(f"/proc/{warm}").exists()  # killed by its pid and reaped
    assert solve_math("Solve 2x + 5 = 15").result == "x = 5"
    assert worker_pid() not in (None, warm)


# -- nothing evaluates text -----------------------------------------------------------------------------

QUESTIONS = [  # 8675309 marks the user's text: no evaluated source may contain it
    ("What is 8675309 x 3.11?", "26980210.99"),
    ("Solve 7x + 8675309 = 0", "x = -8675309/7 ≈ -1239329.85714286"),
    ("solve x^2 - 8675309 = 0", "x = -sqrt(8675309)"),
    ("solve x^3 = 8675309", "8675309**(1/3)"),
    ("solve 1/x = 8675309", "x = 1/8675309"),
    ("2x = 2x", "every x"),
    ("derivative of 8675309*x^2*sin(x)", "8675309"),
    ("factor x^2 - 8675309^2", "(x - 8675309)*(x + 8675309)"),
    ("simplify (x^2 - 1)/(x - 1)", "x + 1"),
    ("expand (x + 8675309)^2", "x**2 + 17350618*x + 75260986245481"),
    ("15% of 8675309", "1301296.35"),
    ("sqrt(2) + log(3) + asin(1) + cbrt(-27) + round(2.5) + floor(pi) + 8675309", "8675312 ≈"),
]


def _no_text_evaluation(monkeypatch) -> list[str]:
    """eval raises; exec, sympify and parse_expr raise on text; exec'd code is recorded."""
    import sympy
    from sympy.parsing import sympy_parser
    sympify_module = sys.modules["sympy.core.sympify"]
    executed: list[str] = []
    real_exec, real_sympify = builtins.exec, sympify_module.sympify

    def refuse(*args, **kwargs):
        raise AssertionError(f"evaluated {args[:1]!r}")

    def exec_recorded(source, *args, **kwargs):
        if isinstance(source, (str, bytes)):
            executed.append(source if isinstance(source, str) else source.decode())
        return real_exec(source, *args, **kwargs)

    def sympify_objects_only(value, *args, **kwargs):
        if isinstance(value, str):
            raise AssertionError(f"sympify({value!r})")  # noqa: TRY004 - the test fails here on purpose
        return real_sympify(value, *args, **kwargs)

    monkeypatch.setattr(builtins, "eval", refuse)
    monkeypatch.setattr(builtins, "exec", exec_recorded)
    for module in (sympy, sympify_module):
        monkeypatch.setattr(module, "sympify", sympify_objects_only)
    for module in (sympy, sympy_parser):
        monkeypatch.setattr(module, "parse_expr", refuse)
    return executed


def test_math_security_web_process_never_evaluates_text(monkeypatch, warm):
    executed = _no_text_evaluation(monkeypatch)
    for question, expected in QUESTIONS:
        assert expected in solve_math(question).result, question
    assert executed == []


def test_math_security_worker_handler_never_evaluates_text(monkeypatch):
    """The worker's request handler in this process, with the same traps, after the worker's own
    warm-up (sympy imports parts of itself on first use, sympifying its constants as it does). sympy
    also generates some code of its own with exec (monomial helpers): none of it carries user text."""
    from agents.math.question import read_question
    requests = [read_question(question) for question, _ in QUESTIONS]
    math_worker.warm_up()
    executed = _no_text_evaluation(monkeypatch)
    for (question, expected), request in zip(QUESTIONS, requests, strict=False):
        reply = math_worker.handle(request)
        assert reply["ok"] is True and expected in reply["result"], question
    assert not any("8675309" in source or "3.11" in source for source in executed)


def test_math_security_worker_answers_normally_after_all_that():
    assert solve_math("What is 65 x 3.11?").result == "202.15"
    pid = worker_pid()
    assert solve_math("Calculate (42 * 2) / 6").result == "14"
    assert solve_math("What's the square root of 144?").result == "12"
    assert worker_pid() == pid
