"""A question in words -> one validated request for the sandbox worker (web-process side).

"What's the square root of 144?" becomes {"kind": "arithmetic", "exprs": ["sqrt(144)"]};
"Solve 2x + 5 = 15" becomes {"kind": "solve", "exprs": ["2*x+5", "15"], "var": None}. Each
expression is normalised and validated here (parse, no sympy), so refusals are immediate
and the worker only receives what passed; it validates again anyway.
"""
from __future__ import annotations

import re

from .limits import MAX_TEXT_CHARS, MathRefused, NotMath
from .normalise import normalise
from .parse import check

_LEAD = re.compile(r"(?:(?:please|ok|okay|so|hey|hi|now|can you|could you|would you|will you|help me|"
                   r"i need to|i want to|tell me|show me)[ ,]+)*"
                   r"(?:(?:what(?:'s| is| are| does)|whats|how much is|calculate|compute|evaluate|work out|"
                   r"figure out|find|give me|determine)[ ,]+)*"
                   r"(?:the )?(?:(?:value|result|answer) (?:of|to) )?")
_TAIL_WORDS = ("please", "for me", "thanks", "thank you", "equals", "equal")
_N = r"-?\d[\d,]*(?:\.\d+)?"
_PERCENT = r" ?(?:%|percent|per cent)"
_INTENTS = [(kind, re.compile(pattern)) for kind, pattern in (
    ("solve", r"solve for (?P<var>[a-z]) ?[:,]? ?(?P<eq>.+)"),
    ("solve", r"solve\b ?:? ?(?P<eq>.+?)(?: ?,? for (?P<var>[a-z]))?"),
    ("solve", r"(?P<var>[a-z]) (?:if|when|given|given that|where|such that) (?P<eq>.+)"),
    ("rewrite", r"(?P<kind>simplify|expand|factori[sz]e|factor)\b ?:? ?(?P<expr>.+)"),
    ("differentiate", (r"(?:differentiate|derive|derivative of|d/d(?P<var0>[a-z]))\b ?:? ?(?P<expr>.+?)"
                      r"(?: (?:with respect to|wrt|w\.r\.t\.?) (?P<var>[a-z]))?")),
    ("of", rf"(?P<p>{_N}){_PERCENT} of (?P<base>{_N})"),
    ("change", rf"(?P<verb>increase|raise|decrease|reduce|lower) (?P<base>{_N}) by (?P<p>{_N}){_PERCENT}"),
    ("change", rf"(?P<base>{_N}) (?P<verb>increased|raised|decreased|reduced|lowered) by (?P<p>{_N}){_PERCENT}"),
    ("change", rf"(?P<base>{_N}) ?(?P<verb>\+|-|plus|minus) ?(?P<p>{_N}){_PERCENT}"),
    ("ratio", rf"(?P<part>{_N}) is what (?:percent|percentage|%) of (?P<base>{_N})"),
    ("ratio", rf"what (?:percent|percentage|%) of (?P<base>{_N}) is (?P<part>{_N})"),
)]
_UP = ("increase", "raise", "increased", "raised", "+", "plus")


def read_question(text: str) -> dict:
    """The request for `text`; MathRefused or NotMath (from normalise) when there is none to make."""
    if len(text) > MAX_TEXT_CHARS:
        raise MathRefused(f"That message is {len(text):,} characters long; a calculation can be up to "
                          f"{MAX_TEXT_CHARS:,} characters.")
    body = _strip_tail(_LEAD.sub("", " ".join(text.lower().replace("’", "'").split()), count=1))
    if not body:
        raise NotMath("There is no calculation in that text.")
    for kind, pattern in _INTENTS:
        match = pattern.fullmatch(body)
        if match:
            return _REQUESTS[kind](match.groupdict())
    if "=" in body:
        return _equation(body, None)
    return {"kind": "arithmetic", "exprs": [_expression(body)]}


def _strip_tail(body: str) -> str:
    """Drop a trailing "?", "=", "please" and the like, repeatedly, without a backtracking regex."""
    while True:
        stripped = body.rstrip(" ?.=")
        for word in _TAIL_WORDS:
            if stripped.endswith(" " + word):
                stripped = stripped[:-len(word) - 1]
        if stripped == body:
            return body
        body = stripped


def _expression(text: str) -> str:
    expr = normalise(text)
    check(expr)
    return expr


def _equation(text: str, var: str | None) -> dict:
    depth = 0
    for char in text:
        depth += (char == "(") - (char == ")")
        if char == "=" and depth > 0:
            raise MathRefused("An '=' inside brackets (a keyword argument like base=2) is not allowed; "
                              "write log(8, 2).")
    sides = text.replace("==", "=").split("=")
    if len(sides) > 2:
        raise MathRefused("An equation has exactly one '=' sign; I solve one equation at a time.")
    left, right = sides if len(sides) == 2 else (sides[0], "0")  # "solve x^2 - 4" means "= 0"
    return {"kind": "solve", "exprs": [_expression(left), _expression(right)], "var": var}


def _percentage(mode: str, first: str, second: str) -> dict:
    return {"kind": "percentage", "mode": mode, "exprs": [_expression(first), _expression(second)]}


_REQUESTS = {
    "solve": lambda g: _equation(g["eq"], g["var"]),
    "rewrite": lambda g: {"kind": "factor" if g["kind"].startswith("factor") else g["kind"],
                          "exprs": [_expression(g["expr"])]},
    "differentiate": lambda g: {"kind": "differentiate", "exprs": [_expression(g["expr"])],
                                "var": g["var"] or g["var0"]},
    "of": lambda g: _percentage("of", g["p"], g["base"]),
    "change": lambda g: _percentage("increase" if g["verb"] in _UP else "decrease", g["p"], g["base"]),
    "ratio": lambda g: _percentage("ratio", g["part"], g["base"]),
}
