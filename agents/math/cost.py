"""What evaluating a whitelisted tree could cost, bounded without evaluating it.

parse's walker asks here for every node: exact small values are folded with Fraction (so
the exponent in 9**9**9 is known to be 387420489), and everything else carries an upper bound on
its digits. Exponents above MAX_EXPONENT, factorials above MAX_FACTORIAL and numbers estimated
above MAX_DIGITS are refused before anything reaches sympy; whatever slips through meets the
worker's timeout.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction

from .limits import MAX_DIGITS, MAX_EXPONENT, MAX_FACTORIAL, MathRefused, refuse

FOLD_DIGITS = 60  # exact values are folded only while this small
LOG10_E = math.log10(math.e)


@dataclass(frozen=True)
class Cost:
    """What is known about a subtree's value without computing it."""

    digits: float                  # upper bound on the decimal digits of the exact value (num and den)
    value: Fraction | None = None  # the exact value, when it is a small rational
    symbolic: bool = False         # contains a variable


def binary_cost(op: str, a: Cost, b: Cost) -> Cost:
    if op == "**":
        return _checked(_power_cost(a, b))
    digits = a.digits + b.digits
    return _checked(Cost(digits, _fold(op, a.value, b.value) if digits <= FOLD_DIGITS else None,
                         a.symbolic or b.symbolic))


def call_cost(name: str, args: Sequence[Cost]) -> Cost:
    arg, symbolic = args[0], any(cost.symbolic for cost in args)
    if name == "factorial":
        return _checked(_factorial_cost(arg))
    if name == "round" and len(args) == 2:
        places = args[1].value
        if places is None or places.denominator != 1 or abs(places) > 100:
            raise refuse("round(x, n) needs a whole number of places n between -100 and 100.")
    if name == "exp":  # e**v has about 0.43 * v digits
        if arg.value is not None:
            return _checked(Cost(LOG10_E * float(abs(arg.value)) + 1, None, symbolic))
        digits = arg.digits + 1 if symbolic else LOG10_E * 10 ** min(arg.digits, 12) + 1
        return _checked(Cost(digits, None, symbolic))
    return _checked(Cost(max(cost.digits for cost in args) + 1, None, symbolic))


def _fold(op: str, a: Fraction | None, b: Fraction | None) -> Fraction | None:
    """The exact value of a small rational operation, or None (unknown, or division by zero)."""
    if a is None or b is None or (op in ("/", "%", "//") and b == 0):
        return None
    if op == "+":
        return a + b
    if op == "-":
        return a - b
    if op == "*":
        return a * b
    return a / b if op == "/" else a % b if op == "%" else Fraction(a // b)


def _power_cost(base: Cost, exponent: Cost) -> Cost:
    """Refuses exponents above MAX_EXPONENT (so 9**9**9 stops at 9**9) and results too long."""
    if exponent.value is not None:
        bound = abs(exponent.value)
    elif exponent.symbolic:
        bound = None  # 2**x stays unevaluated; expanding it later is the timeout's job
    else:
        bound = 10 ** min(exponent.digits, 12)  # e.g. 2**floor(pi*1000): bounded by its digits
    if bound is not None and bound > MAX_EXPONENT:
        shown = f"{exponent.value}" if exponent.value is not None else "that large"
        raise MathRefused(f"The exponent {shown[:40]} is too large: exponents are limited to "
                          f"±{MAX_EXPONENT}, and towers like 9^9^9 are refused.")
    digits = base.digits * max(float(bound), 1) if bound is not None else base.digits + exponent.digits
    value = None
    if digits <= FOLD_DIGITS and base.value is not None and exponent.value is not None \
            and exponent.value.denominator == 1 and (base.value != 0 or exponent.value >= 0):
        value = base.value ** int(exponent.value)
    return Cost(digits, value, base.symbolic or exponent.symbolic)


def _factorial_cost(arg: Cost) -> Cost:
    n = arg.value
    if n is None or n.denominator != 1 or not 0 <= n <= MAX_FACTORIAL:
        raise MathRefused(f"factorial needs a whole number from 0 to {MAX_FACTORIAL:,}; "
                          "larger ones are out of range.")
    digits = math.lgamma(int(n) + 1) / math.log(10) + 1
    return Cost(digits, Fraction(math.factorial(int(n))) if digits <= FOLD_DIGITS else None)


def _checked(size: Cost) -> Cost:
    if size.digits > MAX_DIGITS:
        raise MathRefused(f"That would make a number with more than {MAX_DIGITS:,} digits, "
                          "which is more than I work with.")
    return size
