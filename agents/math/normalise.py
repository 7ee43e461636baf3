"""Natural phrasing and typed symbols -> one Python-syntax expression, still untrusted text.

"65 x 3.11" leaves as "65*3.11", "square root of 144" as "sqrt(144)", "2x + 5" as "2*x+5",
"5 squared" as "5**2". parse trusts none of it. Ordinary English ("2 cats and 3 dogs")
raises NotMath; text that looks like code (quotes, underscores, x.real) raises MathRefused.
Every pattern here is linear: no nested quantifiers, whitespace collapsed first.
"""
from __future__ import annotations

import re

from .limits import ALIASES, CONSTANTS, FUNCTIONS, MAX_EXPRESSION_CHARS, MathRefused, NotMath, refuse

_SYMBOLS = str.maketrans({"×": "*", "✕": "*", "·": "*", "⋅": "*", "∗": "*", "÷": "/", "∕": "/", "−": "-",
                          "–": "-", "^": "**", "²": "**2", "³": "**3", "π": " pi ", "√": " sqrt ", "％": "%"})
_PHRASES = [(re.compile(pattern), replacement) for pattern, replacement in (
    (r"\b(?:the )?square root of\b", " sqrt "),
    (r"\b(?:the )?cube root of\b", " cbrt "),
    (r"\b(?:the )?(?:natural )?log(?:arithm)? of\b", " log "),
    (r"\b(?:the )?(sqrt|sin|cos|tan|factorial|exp|abs) of\b", r" \1 "),
    (r" ?\bsquared\b", "**2"),
    (r" ?\bcubed\b", "**3"),
    (r" ?\b(?:to the power of|raised to the power of|raised to|to the power)\b ?", "**"),
    (r"\b(?:multiplied by|times)\b", "*"),
    (r"\bdivided by\b", "/"),
    (r"\bplus\b", "+"),
    (r"\bminus\b", "-"),
    (r"\bmod(?:ulo)?\b", "%"),
    (r"\b(?:percent|per cent)\b", "%"),
)]
_TIMES_X = re.compile(r"(?<=\d) ?x ?(?=\.?\d)")                     # 65 x 3.11 -> 65*3.11
_THOUSANDS = re.compile(r"(?<![\d.,])\d{1,3}(?:,\d{3})+(?![\d,])")  # 1,000,000 (outside brackets)
_PERCENT = re.compile(r"(\d+(?:\.\d+)?) ?%(?! ?[\d(a-z.])")        # 50% -> (50/100); 10 % 3 stays
_ATTRIBUTE = re.compile(r"[a-z_)\]] ?\. ?[a-z_]")
_CODE = re.compile(r"[^0-9a-z+\-*/%().,\s]")
_FACTORIAL = re.compile(r"(?<![\w.])(\d+) ?!(?!=)")                # 5! -> factorial(5)
_TOKEN = re.compile(r"\d+(?:\.\d+)?|\.\d+|log(?:10|2)(?!\d)|[a-z]+|\*\*|//|\S")
_VALUE_KINDS = ("number", "variable", "constant", "close")


def normalise(text: str) -> str:
    """`text` as an expression for parse; NotMath when it is not a calculation at all."""
    if len(text) > MAX_EXPRESSION_CHARS:
        raise MathRefused(f"That expression is {len(text):,} characters long; I handle up to "
                          f"{MAX_EXPRESSION_CHARS:,} characters.")
    expr = " ".join(text.lower().translate(_SYMBOLS).split())
    for pattern, replacement in _PHRASES:
        expr = pattern.sub(replacement, expr)
    expr = _TIMES_X.sub("*", expr)
    if "(" not in expr:  # in log(8,100) the comma separates arguments
        expr = _THOUSANDS.sub(lambda match: match.group().replace(",", ""), expr)
    expr = _PERCENT.sub(r"(\1/100)", expr)
    expr = _FACTORIAL.sub(r"factorial(\1)", expr).replace("!", " ")  # any other ! ends a sentence
    if _ATTRIBUTE.search(expr):
        raise refuse("Attribute access (like x.real) is not allowed.")
    bad = _CODE.search(expr)
    if bad:
        raise refuse(f"I can't use the character {bad.group()!r} in a calculation.")
    return _join(_with_implicit_products(_classified(expr)))


def _classified(expr: str) -> list[tuple[str, str]]:
    """Tokens as (kind, text); unknown words make the text NotMath, unless called like f(...)."""
    found = [(match.group(), match.start(), match.end()) for match in _TOKEN.finditer(expr)]
    tokens: list[tuple[str, str]] = []
    for index, (text, start, _) in enumerate(found):
        following = found[index + 1][0] if index + 1 < len(found) else ""
        attached = index > 0 and found[index - 1][2] == start and tokens[-1][0] == "number"
        tokens.extend(_word(text, following, attached) if text[0].isalpha() else [_symbol(text)])
    if not any(kind in ("number", "function", "constant", "operator") for kind, _ in tokens):
        raise NotMath("There is no calculation in that text.")
    return tokens


def _word(word: str, following: str, attached: bool) -> list[tuple[str, str]]:
    word = ALIASES.get(word, word)
    if word in FUNCTIONS:
        return [("function", word)]
    if word in CONSTANTS:
        return [("constant", word)]
    if len(word) == 1 or (attached and len(word) <= 3):  # 2xy is 2*x*y
        return [("variable", letter) for letter in word]
    if following == "(":
        return [("function", word)]  # parse refuses it by name, e.g. open(...)
    raise NotMath(f"{word!r} is not part of a calculation.")


def _symbol(text: str) -> tuple[str, str]:
    if text[0].isdigit() or text[0] == ".":
        return "number", "0" + text if text[0] == "." else text
    return {"(": "open", ")": "close"}.get(text, "operator" if text in "+-*/%**//" else "other"), text


def _with_implicit_products(tokens: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """2x -> 2*x, 3(x+1) -> 3*(x+1), (a)(b) -> (a)*(b); sqrt 2 -> sqrt(2)."""
    out: list[tuple[str, str]] = []
    index = 0
    while index < len(tokens):
        kind, text = tokens[index]
        if out and out[-1][0] in _VALUE_KINDS and kind in ("number", "variable", "constant", "function", "open") \
                and not (out[-1][0] == "number" and kind == "number"):
            out.append(("operator", "*"))
        argument = _bare_argument(tokens, index + 1) if kind == "function" else []
        if argument:  # sqrt 2 -> sqrt(2), cbrt -27 -> cbrt(-27)
            out += [(kind, text), ("open", "("), *argument, ("close", ")")]
            index += 1 + len(argument)
            continue
        out.append((kind, text))
        index += 1
    return out


def _bare_argument(tokens: list[tuple[str, str]], start: int) -> list[tuple[str, str]]:
    """A function's argument written without brackets: one number, name or constant, maybe signed."""
    signed = start < len(tokens) and tokens[start] in (("operator", "-"), ("operator", "+"))
    atom = start + signed
    if atom < len(tokens) and tokens[atom][0] in ("number", "variable", "constant"):
        return tokens[start:atom + 1]
    return []


def _join(tokens: list[tuple[str, str]]) -> str:
    """Tokens back to text, a space only where two words or numbers would otherwise merge."""
    parts: list[str] = []
    for _, text in tokens:
        if parts and parts[-1][-1].isalnum() and text[0].isalnum():
            parts.append(" ")
        parts.append(text)
    return "".join(parts)
