"""The math agent: exact answers with their steps, computed in a sandboxed subprocess.

detect_math is the router's cheap hint (regular expressions only). solve_math reads the question
(question -> normalise -> parse, in this process, no sympy and nothing that
evaluates text), then sends the validated request to a worker (pool lends out sandbox
processes fairly), which rebuilds it through the same whitelist and computes with sympy under a
timeout and resource limits.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from . import pool
from .limits import MAX_TEXT_CHARS, MathRefused, NotMath
from .question import read_question

__all__ = ["MathAnswer", "MathRefused", "NotMath", "detect_math", "shutdown", "solve_math"]

_FUNCTION_NAMES = ("sqrt|cbrt|sin|cos|tan|cot|sec|csc|asin|acos|atan|arcsin|arccos|arctan|sinh|cosh|tanh|"
                   "log|ln|log10|log2|exp|abs|factorial|floor|ceil|round")
_NUMBER = r"(?<![\d.,])\d[\d.,]*"  # the lookbehind starts a number only at its first digit
_OPERATOR = r"(?:[-+*/^×÷%]|x|times|plus|minus|divided by|multiplied by|mod)"
_QUESTION = re.compile(r"^(?:please )?(?:what(?:'s| is)|whats|how much is|calculate|compute|evaluate|work out)\b")
_MATH_CHARACTER = re.compile(r"[\d^*/+()=²³√-]")

# name -> the pattern (on the lowered text, whitespace collapsed to single spaces). A hint only:
# solve_math makes the real decision and raises NotMath for what only looked like math.
PATTERNS = {
    # the whole message is a sum ("2+2", "(42*2)/6 =", "5!") or a question about one ("What is 65 x 3.11?")
    "arithmetic": re.compile(rf"\d ?{_OPERATOR} ?[-+(]*\d|\d!"),
    # a known function applied to something numeric, or its name in words
    "function": re.compile(rf"\b(?:{_FUNCTION_NAMES})\( ?(?:[-\d(.√π]|x\b|pi\b)|\b(?:square|cube) root of\b|√ ?[\d(]"),
    "power": re.compile(r"(?:\d|\b[a-z]|\)) ?(?:\^|\*\*) ?[-(]?\d|\d (?:squared|cubed)\b|"
                        r"\bto the power of -?\d|[\da-z)][²³]"),
    "percentage": re.compile(rf"\d ?(?:%|percent|per cent) of {_NUMBER}|"
                             rf"\b(?:increase|decrease|raise|reduce|lower) {_NUMBER} by {_NUMBER} ?(?:%|percent)|"
                             rf"{_NUMBER} (?:increased|decreased|raised|reduced|lowered) by {_NUMBER} ?(?:%|percent)|"
                             rf"\bwhat (?:percent|percentage) of {_NUMBER} is {_NUMBER}|"
                             rf"{_NUMBER} is what (?:percent|percentage|%) of {_NUMBER}"),
    # "solve ..." with something to solve, or a linear-looking equation such as "2x + 5 = 15"
    "solve": re.compile(r"^(?:please )?solve\b[^=]{0,300}=|^(?:please )?solve(?: for [a-z])?:? [^a-z ]|"
                        r"(?<![a-z\d])\d*[a-z](?![a-z])(?:\^\d+)? ?[-+] ?\d+(?:\.\d+)? ?= ?-?\d"),
    # a leading command word; only counts when math characters follow (not "expand on that")
    "simplify": re.compile(r"^(?:please )?simplify\b"),
    "expand": re.compile(r"^(?:please )?expand\b"),
    "factor": re.compile(r"^(?:please )?(?:factor|factorise|factorize)\b"),
    "differentiate": re.compile(r"^(?:please )?(?:differentiate|derive)\b|\bderivative of\b|\bd/d[a-z]\b"),
}
_NEEDS_MATH_AFTER = ("simplify", "expand", "factor", "differentiate")
_WHOLE_SUM = re.compile(r"[-+(√]*\d[\d.,+\-*/^×÷()% x!]*[?=]? ?[?]?")
_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


@dataclass
class MathAnswer:
    """One worked answer: `text` is the Markdown reply (steps, then the answer in bold)."""

    text: str
    result: str
    kind: str
    steps: list[str]


def detect_math(text: str) -> list[str]:
    """Names of the math patterns the text matches ([] = not math). Regex only, cheap, no
    catastrophic backtracking; a text longer than MAX_TEXT_CHARS is never a calculation."""
    if len(text) > MAX_TEXT_CHARS:
        return []
    lowered = " ".join(text.lower().split())
    return [name for name, pattern in PATTERNS.items() if _counts(name, pattern.search(lowered), lowered)]


def _counts(name: str, match: re.Match | None, lowered: str) -> bool:
    if match is None:
        return False
    if name in _NEEDS_MATH_AFTER:
        return bool(_MATH_CHARACTER.search(lowered, match.end()))
    return _is_a_sum(lowered) if name == "arithmetic" else True


def _is_a_sum(lowered: str) -> bool:
    """Arithmetic counts when the message is only a sum, or asks what one is (not "call 555-1234")."""
    if _ISO_DATE.search(lowered):
        return False
    return bool(_WHOLE_SUM.fullmatch(lowered) or _QUESTION.match(lowered))


def solve_math(text: str, timeout_s: float = 1.0, user: str | None = None) -> MathAnswer:
    """Blocking. Raises MathRefused (with a sentence for the user) or NotMath; `user` gets one
    question at a time (None: no per-user limit)."""
    reply = pool.request(read_question(text), timeout_s, user)
    if not reply.get("ok"):
        if isinstance(reply.get("not_math"), str):
            raise NotMath(reply["not_math"])
        raise MathRefused(str(reply.get("refused") or reply.get("error") or "I could not work that out."))
    steps = [str(step) for step in reply.get("steps", [])]
    numbered = "\n".join(f"{number}. {step}" for number, step in enumerate(steps, 1))
    return MathAnswer(text=f"{numbered}\n\n**{reply['answer']}**", result=str(reply["result"]),
                      kind=str(reply["kind"]), steps=steps)


def shutdown() -> None:
    """Stop the sandbox workers (atexit also calls this); the next question starts them again."""
    pool.shutdown()
