"""Sympy objects from the whitelisted tree, and back to text a person reads (worker side only).

Numbers are exact: "3.11" arrives as Fraction(311, 100) and becomes sympy.Rational(311, 100),
so 65 x 3.11 is exactly 202.15. Results are shown as a terminating decimal when there is one,
otherwise exact and approximate side by side ("1/3 ≈ 0.333333333333333").
"""
from __future__ import annotations

import re
from fractions import Fraction

import sympy

from .limits import MathRefused

_ZERO = sympy.Integer(0)

DECIMALS = 15          # significant digits of approximations
MAX_EXACT_PLACES = 30  # a terminating decimal longer than this is shown as a fraction

_JUXTAPOSE = re.compile(r"(?<![\w.^])(\d+(?:\.\d+)?)\*(?=[a-z(])")  # 2*x -> 2x, not 2^3*x
_FUNCTIONS = {"sqrt": sympy.sqrt, "sin": sympy.sin, "cos": sympy.cos, "tan": sympy.tan, "cot": sympy.cot,
              "sec": sympy.sec, "csc": sympy.csc, "asin": sympy.asin, "acos": sympy.acos, "atan": sympy.atan,
              "sinh": sympy.sinh, "cosh": sympy.cosh, "tanh": sympy.tanh, "exp": sympy.exp, "abs": sympy.Abs,
              "factorial": sympy.factorial, "floor": sympy.floor, "ceil": sympy.ceiling,
              "log": sympy.log, "log10": lambda x: sympy.log(x, 10), "log2": lambda x: sympy.log(x, 2)}

_OPERATORS = {"+": lambda a, b: a + b, "-": lambda a, b: a - b, "*": lambda a, b: a * b,
              "/": lambda a, b: a / b, "**": lambda a, b: a ** b, "%": sympy.Mod,
              "//": lambda a, b: sympy.floor(a / b)}


class SympyBuilder:
    """Builds sympy objects directly from the walker's pieces; never from text."""

    def __init__(self) -> None:
        self.names: set[str] = set()
        self.calls: set[tuple[str, int]] = set()

    def number(self, value: Fraction) -> sympy.Rational:
        return sympy.Rational(value.numerator, value.denominator)

    def name(self, name: str) -> sympy.Expr:
        if name == "pi":
            return sympy.pi
        if name == "e":
            return sympy.E
        self.names.add(name)
        return sympy.Symbol(name)

    def unary(self, op: str, operand: sympy.Expr) -> sympy.Expr:
        return -operand if op == "-" else operand

    def binary(self, op: str, left: sympy.Expr, right: sympy.Expr) -> sympy.Expr:
        return _OPERATORS[op](left, right)

    def call(self, name: str, args: list) -> sympy.Expr:
        self.calls.add((name, len(args)))
        if name == "cbrt":  # the real cube root: cube root of -27 is -3
            return sympy.real_root(args[0], 3) if args[0].is_real else sympy.cbrt(args[0])
        if name == "round":
            return _round(*args)
        return _FUNCTIONS[name](*args)


def _round(value: sympy.Expr, places: sympy.Expr = _ZERO) -> sympy.Expr:
    """Half away from zero, as people round (sympy and Python round half to even)."""
    if not value.is_number or not value.is_real:
        raise MathRefused("round() needs a real number, not an expression with variables.")
    scale = sympy.Integer(10) ** places
    return sympy.sign(value) * sympy.floor(abs(value) * scale + sympy.Rational(1, 2)) / scale


def pretty(expr: sympy.Basic) -> str:
    """x**2*cos(x) + 2*x*sin(x) -> x^2·cos(x) + 2x·sin(x)."""
    text = re.sub(r"\bI\b", "i", re.sub(r"\bE\b", "e", sympy.sstr(expr))).replace("**", "^")
    return _JUXTAPOSE.sub(r"\1", text).replace(")*(", ")(").replace("*", "·")


def is_undefined(value: sympy.Basic) -> bool:
    return bool(value.has(sympy.zoo, sympy.oo, -sympy.oo, sympy.nan))


def describe(value: sympy.Expr) -> tuple[str, str]:
    """(plain, shown): "202.15"; "1/3 ≈ 0.333333333333333"; "sqrt(2) ≈ 1.4142135623731"."""
    if is_undefined(value):
        return "undefined", "undefined"
    if value.free_symbols:
        return sympy.sstr(value), pretty(value)
    if value.is_Rational:
        text = rational_text(value)
        return text, text
    if all(part.is_Rational for part in value.as_real_imag()):  # 1 - 2i needs no approximation
        return sympy.sstr(value), pretty(value)
    estimate = approx(value)
    return f"{sympy.sstr(value)} ≈ {estimate}", f"{pretty(value)} ≈ {estimate}"


def rational_text(value: sympy.Rational) -> str:
    """202.15 exactly when the decimal ends; else 1/3 ≈ 0.333333333333333."""
    places = _decimal_places(value.q)
    if places is None or places > MAX_EXACT_PLACES:
        return f"{value.p}/{value.q} ≈ {approx(value)}"
    if places == 0:
        return str(value.p)
    digits = str(abs(value.p) * 10 ** places // value.q).rjust(places + 1, "0")
    return f"{'-' if value.p < 0 else ''}{digits[:-places]}.{digits[-places:]}"


def _decimal_places(denominator: int) -> int | None:
    """How many decimal places 1/denominator needs, or None when it never ends."""
    twos = fives = 0
    while denominator % 2 == 0:
        denominator, twos = denominator // 2, twos + 1
    while denominator % 5 == 0:
        denominator, fives = denominator // 5, fives + 1
    return max(twos, fives) if denominator == 1 else None


def approx(value: sympy.Expr) -> str:
    """A 15-digit decimal, with i for complex values."""
    real, imaginary = sympy.N(value, DECIMALS).as_real_imag()
    if imaginary == 0:
        return _float_text(real)
    sign = "-" if imaginary < 0 else "+"
    return f"{_float_text(real)} {sign} {_float_text(abs(imaginary))}i"


def _float_text(number: sympy.Expr) -> str:
    text = sympy.sstr(number, full_prec=False)
    return text.replace(".0e", "e").removesuffix(".0")


def bracketed(value: sympy.Expr) -> str:
    """A coefficient inside a formula: -5 -> (-5); 3/2 -> (3/2)."""
    text = pretty(value)
    return f"({text})" if text.startswith("-") or "/" in text or " " in text or "·" in text else text
