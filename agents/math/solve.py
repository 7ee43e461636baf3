"""Equations in one variable, with the steps a teacher would write (worker side).

Linear: move the constant, divide by the coefficient. Quadratic: standard form, discriminant,
formula, roots (exact, with decimals when irrational; complex roots said to be complex). Other
polynomial equations go to sympy.solve with the rearranged and factored form as the steps.
"""
from __future__ import annotations

import sympy

from .format import bracketed, describe, pretty
from .limits import MathRefused
from .steps import Read, answer

MAX_DEGREE = 4  # sympy has formulas up to here; beyond, roots are slow to even print


def solve(exprs: list[str], var: str | None, mode: str | None) -> dict:
    """exprs is [left side, right side]; var is the unknown when the user named it."""
    left, right = Read(exprs[0]), Read(exprs[1])
    names = left.names | right.names
    if not names:
        return _check(left, right)
    if var is not None and var not in names:
        raise MathRefused(f"{var} does not appear in that equation.")
    if var is None and len(names) > 1:
        raise MathRefused(f"That equation has {len(names)} unknowns ({', '.join(sorted(names))}); I solve for "
                          "one at a time, so say which, e.g. 'solve a*x + 3 = 7 for x'.")
    x = sympy.Symbol(var or names.pop())
    equation = _Equation(left, right, x)
    degree = equation.degree()
    if degree is not None and degree <= 0:
        return equation.no_unknown_left()
    if degree == 1:
        return equation.linear()
    if degree == 2 and equation.discriminant().is_extended_real and equation.discriminant().is_comparable:
        return equation.quadratic()
    return equation.general()


def _check(left: Read, right: Read) -> dict:
    """No variable at all: say whether the two sides are equal."""
    holds = sympy.simplify(left.value - right.value) == 0
    steps = [f"Left side: {left.echo} = {describe(left.value)[1]}",
             f"Right side: {right.echo} = {describe(right.value)[1]}",
             f"The two sides are {'equal' if holds else 'not equal'}."]
    return answer("check", "true" if holds else "false", "true" if holds else "false", steps)


class _Equation:
    def __init__(self, left: Read, right: Read, x: sympy.Symbol) -> None:
        self.x, self.name = x, str(x)
        self.left, self.right = sympy.expand(left.value), sympy.expand(right.value)
        self.steps = [f"Start with {left.echo} = {right.echo}", *left.notes(), *right.notes()]
        if f"{pretty(self.left)}={pretty(self.right)}".replace(" ", "") != f"{left.echo}={right.echo}".replace(" ", ""):
            self.steps.append(f"Expand and simplify both sides: {pretty(self.left)} = {pretty(self.right)}")
        self.difference = sympy.expand(self.left - self.right)
        try:
            self.poly: sympy.Poly | None = sympy.Poly(self.difference, x)
        except sympy.PolynomialError:
            self.poly = None

    def degree(self) -> int | None:
        """The polynomial degree when every coefficient is a number, else None."""
        if self.poly is None or not all(c.is_number for c in self.poly.all_coeffs()):
            return None
        return -1 if self.difference == 0 else self.poly.degree()

    def no_unknown_left(self) -> dict:
        """The x terms cancel: true for every x (2x = 2x) or for none (0x = 5)."""
        left_rest = self.left.as_independent(self.x, as_Add=True)[0]
        right_rest = self.right.as_independent(self.x, as_Add=True)[0]
        leaves = f"leaving {pretty(left_rest)} = {pretty(right_rest)}"
        if self.difference == 0:
            self.steps.append(f"The {self.name} terms are the same on both sides, {leaves}, which is always true.")
            return self._done(f"every {self.name} (the equation is always true)")
        self.steps.append(f"The {self.name} terms cancel, {leaves}, which is never true.")
        return self._done("no solution")

    def linear(self) -> dict:
        left_rest, left_x = self.left.as_independent(self.x, as_Add=True)
        right_rest, right_x = self.right.as_independent(self.x, as_Add=True)
        a = sympy.expand(left_x - right_x).coeff(self.x, 1)
        rhs = right_rest - left_rest
        collected = f"{pretty(a * self.x)} = {pretty(rhs)}"
        if right_x == 0 and left_x == a * self.x and left_rest != 0:
            subtract = bool(left_rest.is_positive) or not left_rest.is_number
            amount = pretty(left_rest if subtract else -left_rest)
            self.steps.append(f"{'Subtract' if subtract else 'Add'} {amount} {'from' if subtract else 'to'} "
                              f"both sides: {collected}")
        elif right_x != 0 or left_rest != 0:
            self.steps.append(f"Move the {self.name} terms to the left and the numbers to the right: {collected}")
        root = rhs / a
        if a == -1:
            self.steps.append(f"Multiply both sides by -1: {self.name} = {describe(root)[1]}")
        elif a != 1:
            self.steps.append(f"Divide both sides by {bracketed(a)}: {self.name} = {describe(root)[1]}")
        return self._roots([root])

    def discriminant(self) -> sympy.Expr:
        a, b, c = self.poly.all_coeffs()
        return sympy.expand(b ** 2 - 4 * a * c)

    def quadratic(self) -> dict:
        a, b, c = self.poly.all_coeffs()
        delta, x = self.discriminant(), self.name
        self.steps += [
            f"Standard form: {pretty(self.poly.as_expr())} = 0, with a = {pretty(a)}, b = {pretty(b)}, c = {pretty(c)}",
            f"Discriminant: Δ = b^2 - 4ac = {bracketed(b)}^2 - 4·{bracketed(a)}·{bracketed(c)} = {pretty(delta)}",
            f"Quadratic formula: {x} = (-b ± √Δ) / (2a) = ({pretty(-b)} ± √{bracketed(delta)}) / {bracketed(2 * a)}"]
        if delta.is_zero:
            root = -b / (2 * a)
            self.steps.append(f"Δ = 0, so there is one repeated root: {x} = {describe(root)[1]}")
            return self._roots([root])
        roots = sorted(((-b - sympy.sqrt(delta)) / (2 * a), (-b + sympy.sqrt(delta)) / (2 * a)),
                       key=lambda r: sympy.N(sympy.im(r)) if delta.is_negative else sympy.N(r))
        shown = " or ".join(f"{x} = {describe(root)[1]}" for root in roots)
        if delta.is_negative:
            self.steps.append(f"Δ < 0, so there are no real roots; the two complex roots are {shown}")
            return self._roots(roots, prefix="no real roots; complex roots ")
        self.steps.append(f"Δ > 0, so there are two real roots: {shown}")
        return self._roots(roots)

    def general(self) -> dict:
        """Other polynomial equations, and fractions of them, with sympy.solve.

        Equations in sin, log, 2^x and the like are refused: sympy solves those by guessing closed
        forms (nsimplify, which sympifies text that mpmath generates), and nothing here runs that."""
        numerator, denominator = sympy.fraction(sympy.together(self.difference))
        if not (numerator.is_polynomial(self.x) and denominator.is_polynomial(self.x)):
            raise MathRefused(f"I can solve equations that are polynomials in {self.name} (like 2x + 5 = 15 or "
                              "x^2 - 5x + 6 = 0), or fractions of them; not ones with the unknown inside sin, "
                              "log, roots or exponents.")
        if sympy.degree(numerator, self.x) > MAX_DEGREE:
            raise MathRefused(f"I solve polynomial equations up to degree {MAX_DEGREE}; this one has degree "
                              f"{sympy.degree(numerator, self.x)}.")
        self.steps.append(f"Rearrange: {pretty(self.difference)} = 0")
        factored = sympy.factor(numerator)
        if denominator != 1:
            self.steps.append(f"Over a common denominator: {bracketed(factored)} / {bracketed(denominator)} = 0")
        elif factored != numerator:
            self.steps.append(f"Factor: {pretty(factored)} = 0")
        roots = [root for root in sympy.solve(numerator, self.x) if denominator.subs(self.x, root) != 0]
        if not roots:
            self.steps.append("No value makes the numerator zero without making the denominator zero.")
            return self._done("no solution")
        self.steps.append("Solve: " + " or ".join(f"{self.name} = {describe(root)[1]}" for root in roots))
        return self._roots(roots)

    def _roots(self, roots: list, prefix: str = "") -> dict:
        plain = " or ".join(f"{self.name} = {describe(root)[0]}" for root in roots)
        shown = " or ".join(f"{self.name} = {describe(root)[1]}" for root in roots)
        return answer("solve", prefix + plain, prefix + shown, self.steps)

    def _done(self, result: str) -> dict:
        return answer("solve", result, result, self.steps)
