"""Worked answers for each kind of question, computed with sympy inside the sandbox worker.

Each handler takes the request's already-normalised expressions, rebuilds them through the
whitelisting walker (parse) and returns {kind, result, answer, steps}: `result` is plain
text for programs, `answer` and `steps` are what the user reads. Equations are in solve.
"""
from __future__ import annotations

import sympy

from .format import SympyBuilder, bracketed, describe, pretty, rational_text
from .limits import MathRefused
from .parse import TextBuilder, parse

LOG_NOTE = "log is the natural logarithm (base e); write log10(x) or log(x, 10) for base 10."
MAX_TERMS_SHOWN = 8


class Read:
    """One expression rebuilt in the worker: the sympy value, how it was read, and its names."""

    def __init__(self, expr: str) -> None:
        self.builder = SympyBuilder()
        self.value: sympy.Expr = parse(expr, self.builder)
        self.echo: str = parse(expr, TextBuilder())[0]

    @property
    def names(self) -> set[str]:
        return self.builder.names

    def notes(self) -> list[str]:
        return [LOG_NOTE] if ("log", 1) in self.builder.calls else []


def answer(kind: str, result: str, shown: str, steps: list[str]) -> dict:
    return {"kind": kind, "result": result, "answer": shown, "steps": steps}


def arithmetic(exprs: list[str], var: str | None, mode: str | None) -> dict:
    """Read as: 65 × 3.11, then 65 × 3.11 = 202.15."""
    read = Read(exprs[0])
    if read.names:
        return rewrite(exprs, var, "simplify")
    result, shown = describe(read.value)  # no simplify(): it rewrites 1000*log(10) as log(10**1000)
    steps = [f"Read as: {read.echo}", *read.notes(), f"{read.echo} = {shown}"]
    return answer("arithmetic", result, shown, steps)


def percentage(exprs: list[str], var: str | None, mode: str | None) -> dict:
    """15% of 80 = 0.15 × 80 = 12; increase/decrease by a percentage; what percent one is of another."""
    first, second = (Read(expr).value for expr in exprs[:2])
    if mode == "ratio":  # first is what percent of second
        if second == 0:
            raise MathRefused("A percentage of zero is undefined: the second number can't be 0.")
        value = first / second * 100
        shown = f"{_number(value)}%"
        return answer("percentage", shown, shown, [f"{_number(first)} ÷ {_number(second)} × 100 = {shown}"])
    rate, part = first / 100, first / 100 * second
    steps = [f"{_number(first)}% of {_number(second)} = {_number(rate)} × {_number(second)} = {_number(part)}"]
    total = part
    if mode in ("increase", "decrease"):
        total = second + part if mode == "increase" else second - part
        steps.append(f"{_number(second)} {'+' if mode == 'increase' else '−'} {_number(part)} = {_number(total)}")
    return answer("percentage", describe(total)[0], _number(total), steps)


def _number(value: sympy.Expr) -> str:
    return rational_text(value) if value.is_Rational else describe(value)[1]


def rewrite(exprs: list[str], var: str | None, mode: str | None) -> dict:
    """simplify / expand / factor one expression (factor of a whole number gives its primes)."""
    read = Read(exprs[0])
    if mode == "factor" and read.value.is_Integer and abs(read.value) > 1:
        return _prime_factors(read)
    done = {"simplify": sympy.simplify, "expand": sympy.expand, "factor": sympy.factor}[mode](read.value)
    steps = [f"Read as: {read.echo}", *read.notes()]
    past = {"simplify": "Simplified", "expand": "Expanded", "factor": "Factored"}[mode]
    if done == read.value:
        steps.append(f"It is already {'as simple as it gets' if mode == 'simplify' else f'{mode}ed'}: "
                     f"{pretty(done)}")
    else:
        steps.append(f"{past}: {pretty(done)}")
    return answer(mode, sympy.sstr(done), pretty(done), steps)


def _prime_factors(read: Read) -> dict:
    number = int(read.value)
    factors = sympy.factorint(abs(number))
    product = " × ".join(f"{prime}^{power}" if power > 1 else str(prime) for prime, power in factors.items())
    product = f"-{product}" if number < 0 else product
    steps = [f"Read as: {read.echo}"]
    if len(factors) == 1 and max(factors.values()) == 1:
        steps.append(f"{abs(number)} is prime.")
    else:
        steps.append(f"Divide out primes from smallest to largest: {number} = {product}")
    return answer("factor", product, product, steps)


def differentiate(exprs: list[str], var: str | None, mode: str | None) -> dict:
    """d/dx term by term; names the product or chain rule when it is the one at work."""
    read = Read(exprs[0])
    symbol = sympy.Symbol(var or (min(read.names) if len(read.names) == 1 else "x"))
    if var is None and len(read.names) > 1:
        raise MathRefused(f"That has several variables ({', '.join(sorted(read.names))}); say which one, "
                          "e.g. 'differentiate x*y with respect to x'.")
    d = f"d/d{symbol}"
    derivative = sympy.diff(read.value, symbol)
    steps = [f"Read as: {d} [{read.echo}]", *read.notes(), *_rule_steps(read.value, symbol, d),
             f"{d} [{read.echo}] = {pretty(derivative)}"]
    return answer("differentiate", sympy.sstr(derivative), pretty(derivative), steps)


def _rule_steps(expr: sympy.Expr, symbol: sympy.Symbol, d: str) -> list[str]:
    if expr.is_Add:
        terms = expr.as_ordered_terms()[:MAX_TERMS_SHOWN]
        shown = ", ".join(f"{d} {bracketed(term)} = {pretty(sympy.diff(term, symbol))}" for term in terms)
        return [f"Differentiate term by term: {shown}"]
    _constant, variable = expr.as_independent(symbol, as_Add=False)
    factors = [factor for factor in sympy.Mul.make_args(variable) if factor.has(symbol)]
    if len(factors) >= 2:
        u, v = factors[0], sympy.Mul(*factors[1:])
        return [(f"Product rule, (uv)' = u'v + uv', with u = {pretty(u)} and v = {pretty(v)}: "
                f"u' = {pretty(sympy.diff(u, symbol))}, v' = {pretty(sympy.diff(v, symbol))}")]
    inner = variable.args[0] if variable.args and (variable.is_Function or variable.is_Pow) else None
    if inner is not None and inner != symbol and inner.has(symbol):
        return [(f"Chain rule, with the inner function u = {pretty(inner)} and u' = "
                f"{pretty(sympy.diff(inner, symbol))}")]
    return []
