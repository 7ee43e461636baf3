"""What the math agent accepts, in one place: limits, functions, and the two ways it says no.

Every limit is checked before anything is parsed or computed, so a refusal is immediate.
MAX_DIGITS stays under Python's 4,300-digit limit on converting integers to text.
"""
from __future__ import annotations

MAX_TEXT_CHARS = 2_000        # the whole message, before question words are stripped
MAX_EXPRESSION_CHARS = 1_000  # one expression, after they are stripped
MAX_BRACKET_DEPTH = 30
MAX_NODES = 400               # numbers, names, operations and calls in one expression
MAX_TREE_DEPTH = 100          # nesting of operations (1+2+...+100 is 100 deep)
MAX_EXPONENT = 1_000          # |exponent|, statically; so 9**9**9 stops at 9**9 = 387420489
MAX_DIGITS = 4_000            # estimated digits of any intermediate exact number
MAX_FACTORIAL = 1_000

# name -> (fewest, most) positional arguments
FUNCTIONS = {name: (1, 1) for name in (
    "sqrt", "cbrt", "sin", "cos", "tan", "cot", "sec", "csc", "asin", "acos", "atan",
    "sinh", "cosh", "tanh", "log10", "log2", "exp", "abs", "factorial", "floor", "ceil")}
FUNCTIONS.update(log=(1, 2), round=(1, 2))
ALIASES = {"ln": "log", "arcsin": "asin", "arccos": "acos", "arctan": "atan", "ceiling": "ceil",
           "fact": "factorial", "cuberoot": "cbrt", "squareroot": "sqrt"}
CONSTANTS = ("pi", "e")

ALLOWED = ("I can work with numbers, + − × ÷ ^ and %, brackets, one-letter variables, pi and e, "
           "and the functions " + ", ".join(sorted(FUNCTIONS)) + ".")


class MathRefused(Exception):
    """Read as math but not computed; str() is a sentence for the user: why, and what is allowed."""


class NotMath(Exception):
    """The text could not be read as a math question at all (the router falls back to chat)."""


def refuse(reason: str) -> MathRefused:
    """A refusal for something outside the grammar, telling the user what is inside it."""
    return MathRefused(f"{reason} {ALLOWED}")
