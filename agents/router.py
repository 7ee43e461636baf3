"""Pick the agent for a message, and say why.

Rules, in order: an explicit command (/math, /file, /ask, /chat), attached images (the chat agent
with a model that takes images), an attached file, a math pattern, a question about the user's
uploaded files, then (only if ROUTER_LLM is on) a one-word model classification, else general chat.
The classifier runs only when no rule matched, so clear cases cost no tokens. Each decision is
logged as one JSON line without the message text.
"""
from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field

from agents.math.agent import detect_math

log = logging.getLogger("chat.router")
COMMANDS = {"/math": "math", "/file": "file", "/ask": "knowledge", "/chat": "chat"}
_COMMAND = re.compile(r"^\s*(/[a-z]+)\b\s*", re.IGNORECASE)
_ABOUT_UPLOADS = re.compile(
    r"\b(?:files?|documents?|docs?|uploads?|uploaded|attachments?|attached|according to|"
    r"in (?:the|my) (?:text|notes|report|readme|spec|manual|pdf|data))\b", re.IGNORECASE)
CLASSIFIER_PROMPT = ("Classify the user's message for a router. Answer with exactly one word: "
                     "math (a calculation or equation), knowledge (a question about the user's "
                     "uploaded files), or chat (anything else).")


@dataclass(frozen=True)
class Decision:
    agent: str  # chat | math | file | knowledge
    rule: str  # command | image | attachment | math_pattern | about_uploads | classifier | default
    reasoning: str
    text: str  # the message without its command
    matches: list[str] = field(default_factory=list)
    execution_time_ms: float = 0.0

    def public(self) -> dict:
        """What the page and the stored message get (the text is already there)."""
        return {key: value for key, value in asdict(self).items() if key != "text"}


def route(text: str, *, attachment: str | None = None, document_names: Iterable[str] = (),
          classify: Callable[[str], str | None] | None = None, log_fields: dict | None = None,
          images: int = 0, vision_model: str | None = None) -> Decision:
    """The decision for one message; `classify` is the optional model classifier. `images` attached
    to the message go to the chat agent with `vision_model` (None: no model here takes images)."""
    started = time.perf_counter()
    decision = _decide(text, attachment, list(document_names), classify, images, vision_model)
    decision = Decision(**{**asdict(decision),
                           "execution_time_ms": round((time.perf_counter() - started) * 1000, 3)})
    log.info(json.dumps({"event": "route", **(log_fields or {}), **decision.public(),
                         "message_chars": len(text)}))
    return decision


def _decide(text: str, attachment: str | None, names: list[str], classify, images: int = 0,
            vision_model: str | None = None) -> Decision:
    command = _COMMAND.match(text)
    if command and command.group(1).lower() in COMMANDS:
        agent = COMMANDS[command.group(1).lower()]
        return Decision(agent, "command", f"The message starts with {command.group(1).lower()}.",
                        text[command.end():], [command.group(1).lower()])
    if images:
        if vision_model:
            return Decision("chat", "image", f"{images} image(s) attached: the chat agent answers with the "
                            f"vision model {vision_model}.", text, [vision_model])
        return Decision("chat", "image", f"{images} image(s) attached, but no configured model takes images.",
                        text, [])
    if attachment:
        return Decision("file", "attachment", "A file is attached to the message.", text, [attachment])
    math = detect_math(text)
    if math:
        return Decision("math", "math_pattern", "Mathematical patterns detected.", text, math)
    if names:
        mentioned = _mentions(text, names)
        if mentioned:
            return Decision("knowledge", "about_uploads", "The message asks about your uploaded files.",
                            text, mentioned)
    if classify is not None:
        return _classified(_safe_classify(classify, text), text, names)
    reason = "No math pattern and nothing about your uploads: general chat."
    return Decision("chat", "default", reason, text)


def _classified(label: str | None, text: str, names: list[str]) -> Decision:
    """The classifier's word, when it is usable; otherwise general chat, saying what the model answered
    (small models often answer with a sentence instead of one of the three words)."""
    if label in ("math", "chat") or (label == "knowledge" and names):
        return Decision(label, "classifier", f"The model classified the message as {label}.", text, [label])
    if label == "knowledge":
        reason = "The model classified the message as knowledge, but you have no uploads: general chat."
    elif label is None:
        reason = "The model's classification failed or was empty: general chat."
    else:
        reason = f"The model's classification ({label[:20]!r}) is not math, knowledge or chat: general chat."
    return Decision("chat", "default", reason, text, [label] if label else [])


def _mentions(text: str, names: list[str]) -> list[str]:
    """Upload words (file, document...) or one of the user's file names, with or without extension."""
    lowered = text.lower()
    found = [name for name in names if name.lower() in lowered or _stem_mentioned(name, lowered)]
    words = [match.group(0).lower() for match in _ABOUT_UPLOADS.finditer(text)]
    return list(dict.fromkeys(found + words))


def _stem_mentioned(name: str, lowered_text: str) -> bool:
    """`handbook` for handbook.md; stems under three letters would match too much."""
    stem = name.rsplit(".", 1)[0].lower()
    return len(stem) >= 3 and stem in lowered_text


def _safe_classify(classify, text: str) -> str | None:
    try:
        answer = (classify(text) or "").strip().lower()
    except Exception as error:  # noqa: BLE001 - the classifier is an optimisation: the rules' answer stands
        log.warning("Router classifier failed: %s", type(error).__name__)
        return None
    word = re.match(r"[a-z]+", answer)
    return word.group(0) if word else None


def model_classifier(client, max_chars: int = 2000) -> Callable[[str], str | None]:
    """A classify function over a chat client: one short, cheap completion per call."""
    def classify(text: str) -> str | None:
        completion = client.complete([{"role": "system", "content": CLASSIFIER_PROMPT},
                                      {"role": "user", "content": text[:max_chars]}], max_tokens=3,
                                     temperature=0)
        return completion.text
    return classify
