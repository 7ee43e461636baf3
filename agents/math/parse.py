"""The only door from text to math objects: a whitelisting walk over Python's AST.

Nothing here evaluates text. An expression (already normalised by normalise) is checked
for length, characters and bracket depth by counting, parsed with `ast.parse(mode="eval")`,
checked for size, and walked: only numbers, + - * / ** % //, unary + -, one-letter variables,
pi and e, and calls of whitelisted function names with positional arguments get through, each
handed to a Builder that makes the real object (sympy in the worker, display text here). On the
way cost bounds what evaluating the tree could cost: exponents, digits, factorials.
"""
from __future__ import annotations

import ast
import re
import warnings
from fractions import Fraction
from typing import Protocol

from .cost import Cost, binary_cost, call_cost
from .limits import (
    CONSTANTS,
    FUNCTIONS,
    MAX_BRACKET_DEPTH,
    MAX_EXPRESSION_CHARS,
    MAX_NODES,
    MAX_TREE_DEPTH,
    MathRefused,
    refuse,
)

_BAD_CHARACTER = re.compile(r"[^0-9a-z+\-*/%().,\s]")
_NUMBER = re.compile(r"\d+(?:\.\d+)?")
_VARIABLE = re.compile(r"[a-z]")
_BINARY = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/", ast.Pow: "**", ast.Mod: "%",
           ast.FloorDiv: "//"}
_UNARY = {ast.UAdd: "+", ast.USub: "-"}
_FORBIDDEN = {ast.Attribute: "Attribute access (like x.real) is not allowed.",
              ast.Subscript: "Indexing with [ ] is not allowed.",
              ast.Lambda: "Lambdas are not allowed.",
              ast.Starred: "Starred arguments (*args) are not allowed.",
              ast.Compare: "Comparisons (<, >, ==, is, in) are not allowed.",
              ast.BoolOp: "Logic (and, or) is not allowed.",
              ast.Tuple: "Several values separated by commas are not allowed.",
              ast.NamedExpr: "Assignments are not allowed.",
              ast.IfExp: "if/else is not allowed.",
              ast.JoinedStr: "Text in quotes is not allowed."}


class Builder(Protocol):
    """Makes objects from whitelisted pieces; the walker has already checked every argument."""

    def number(self, value: Fraction) -> object: ...

    def name(self, name: str) -> object: ...

    def unary(self, op: str, operand: object) -> object: ...

    def binary(self, op: str, left: object, right: object) -> object: ...

    def call(self, name: str, args: list) -> object: ...


def check_text(expr: str) -> None:
    """Length, characters and bracket depth, by counting, before anything parses the text."""
    if len(expr) > MAX_EXPRESSION_CHARS:
        raise MathRefused(f"That expression is {len(expr):,} characters long; I handle up to "
                          f"{MAX_EXPRESSION_CHARS:,} characters.")
    bad = _BAD_CHARACTER.search(expr)
    if bad:
        raise refuse(f"I can't use the character {bad.group()!r} in a calculation.")
    depth = 0
    for char in expr:
        depth += (char == "(") - (char == ")")
        if depth > MAX_BRACKET_DEPTH:
            raise MathRefused(f"Brackets are nested too deeply; I handle up to {MAX_BRACKET_DEPTH} levels.")
        if depth < 0:
            break
    if depth != 0:
        raise MathRefused("The brackets don't match: every '(' needs a ')'.")


def parse(expr: str, builder: Builder) -> object:
    """The object `builder` makes from `expr`, or MathRefused naming what is not allowed."""
    check_text(expr)
    return walk_source(expr, builder)


def walk_source(source: str, builder: Builder) -> object:
    """The AST layer alone: parse() runs check_text first; public so tests can prove each layer."""
    if len(source) > MAX_EXPRESSION_CHARS:  # deeper nesting than Python's parser allows is a SyntaxError
        raise MathRefused(f"That expression is too long; I handle up to {MAX_EXPRESSION_CHARS:,} characters.")
    tree = _syntax_tree(source)
    _check_shape(tree)
    return _Walker(source, builder).walk(tree)[0]


def _syntax_tree(source: str) -> ast.expr:
    try:
        with warnings.catch_warnings():  # "1(2)" and the like warn; they are refused below anyway
            warnings.simplefilter("ignore")
            return ast.parse(source, mode="eval").body
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        raise refuse("I couldn't read that as a formula.") from None


def _check_shape(tree: ast.expr) -> None:
    """Node count and depth, iteratively, so the recursive walk below stays shallow."""
    count, stack = 0, [(tree, 1)]
    while stack:
        node, depth = stack.pop()
        count += 1
        if count > MAX_NODES or depth > MAX_TREE_DEPTH:
            raise MathRefused(f"That formula is too big; I handle up to {MAX_NODES} numbers, names and "
                              f"operations, nested up to {MAX_TREE_DEPTH} deep.")
        stack.extend((child, depth + 1) for child in ast.iter_child_nodes(node)
                     if not isinstance(child, (ast.operator, ast.unaryop, ast.expr_context)))


class _Walker:
    def __init__(self, source: str, builder: Builder) -> None:
        self.source, self.builder = source, builder

    def walk(self, node: ast.AST) -> tuple[object, Cost]:
        """The built object and what the walker knows of its value (cost) for one node."""
        if isinstance(node, ast.Constant):
            return self._number(node)
        if isinstance(node, ast.Name):
            return self._name(node.id)
        if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
            operand, cost = self.walk(node.operand)
            negated = isinstance(node.op, ast.USub) and cost.value is not None
            return self.builder.unary(_UNARY[type(node.op)], operand), \
                Cost(cost.digits, -cost.value if negated else cost.value, cost.symbolic)
        if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
            return self._binary(_BINARY[type(node.op)], node)
        if isinstance(node, ast.Call):
            return self._call(node)
        if isinstance(node, (ast.UnaryOp, ast.BinOp)):
            raise refuse("That operator (not, ~, &, |, <<, >>, @) is not allowed.")
        raise refuse(_FORBIDDEN.get(type(node), "That kind of expression (lists, sets, comprehensions, ...) "
                                                "is not allowed."))

    def _number(self, node: ast.Constant) -> tuple[object, Cost]:
        if isinstance(node.value, (str, bytes)):
            raise refuse("Text in quotes is not allowed.")
        text = ast.get_source_segment(self.source, node) or ""
        if not _NUMBER.fullmatch(text):
            raise refuse(f"Only plain decimal numbers like 42 or 3.14 are allowed, not {text[:20]!r}.")
        value = Fraction(text)  # exact: "3.11" is 311/100, never a float
        return self.builder.number(value), Cost(sum(char.isdigit() for char in text), value)

    def _name(self, name: str) -> tuple[object, Cost]:
        if name in FUNCTIONS:
            raise refuse(f"{name} is a function; write it with brackets, like {name}(2).")
        if name not in CONSTANTS and not _VARIABLE.fullmatch(name):
            raise refuse(f"I don't know the name {name[:30]!r}; variables are single letters.")
        return self.builder.name(name), Cost(1, None, name not in CONSTANTS)

    def _binary(self, op: str, node: ast.BinOp) -> tuple[object, Cost]:
        left, a = self.walk(node.left)
        right, b = self.walk(node.right)
        cost = binary_cost(op, a, b)  # before building: the builder may compute the value
        return self.builder.binary(op, left, right), cost

    def _call(self, node: ast.Call) -> tuple[object, Cost]:
        name = node.func.id if isinstance(node.func, ast.Name) else None
        if name is None:
            raise refuse("Only functions called by name, like sqrt(2), are allowed.")
        if name not in FUNCTIONS:
            raise refuse(f"{name[:30]}() is not a function I can use.")
        if node.keywords:
            raise refuse("Keyword arguments (like base=2) are not allowed; write log(8, 2).")
        low, high = FUNCTIONS[name]
        if not low <= len(node.args) <= high:
            raise refuse(f"{name}() takes {low if low == high else f'{low} or {high}'} argument"
                         f"{'' if high == 1 else 's'}.")
        walked = [self.walk(arg) for arg in node.args]
        cost = call_cost(name, [cost for _, cost in walked])  # likewise before building
        return self.builder.call(name, [obj for obj, _ in walked]), cost


# -- display text -------------------------------------------------------------------------------

_PRECEDENCE = {"+": 1, "-": 1, "*": 2, "/": 2, "%": 2, "//": 2, "neg": 3, "**": 4}
_ATOM = 5


class TextBuilder:
    """The expression as it was read, for the user to check: 65 × 3.11, 2x + 5, sqrt(144)."""

    def number(self, value: Fraction) -> tuple[str, int, bool]:
        return _decimal_text(value), _ATOM, True

    def name(self, name: str) -> tuple[str, int, bool]:
        return name, _ATOM, name in CONSTANTS

    def unary(self, op: str, operand: tuple) -> tuple[str, int, bool]:
        text, precedence, numeric = operand
        inner = text if precedence >= _PRECEDENCE["neg"] else f"({text})"
        return (f"-{inner}", _PRECEDENCE["neg"], numeric) if op == "-" else operand

    def binary(self, op: str, left: tuple, right: tuple) -> tuple[str, int, bool]:
        precedence = _PRECEDENCE[op]
        a = left[0] if left[1] > precedence or (left[1] == precedence and op != "**") else f"({left[0]})"
        b = right[0] if right[1] > precedence or (right[1] == precedence and op == "**") else f"({right[0]})"
        numeric = left[2] and right[2]
        if op == "*" and not numeric:
            juxtaposed = left[1] == _ATOM and left[0][-1].isdigit() and (b[0].isalpha() or b[0] == "(")
            return (f"{a}{b}" if juxtaposed else f"{a}·{b}"), precedence, numeric
        return f"{a}{'^' if op == '**' else f' {_SHOWN.get(op, op)} '}{b}", precedence, numeric

    def call(self, name: str, args: list) -> tuple[str, int, bool]:
        return f"{name}({', '.join(arg[0] for arg in args)})", _ATOM, all(arg[2] for arg in args)


_SHOWN = {"*": "×", "/": "/", "%": "mod", "//": "//"}


def _decimal_text(value: Fraction) -> str:
    """A literal's value back as written: 3.11, not 311/100 (literals are terminating decimals)."""
    places = 0
    while (value * 10 ** places).denominator != 1:
        places += 1
    digits = str(abs(value.numerator * 10 ** places // value.denominator)).rjust(places + 1, "0")
    sign = "-" if value < 0 else ""
    return f"{sign}{digits[:-places]}.{digits[-places:]}" if places else f"{sign}{digits}"


def check(expr: str) -> str:
    """Validate `expr` without computing anything; returns it as read (for messages and tests)."""
    return parse(expr, TextBuilder())[0]
