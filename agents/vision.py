"""Images in a turn: which models take them, what they cost, how they are sent.

- A model takes images when its name matches a VISION_MODELS pattern (fnmatch) and no server has
  refused an image for it since: a refusal (400 "image input is not supported" and the like) is
  remembered per model (in Redis when there is one, so every worker knows), and the user is told.
- An image costs what OpenAI bills for it: 85 tokens at low detail; at high (and auto, budgeted as
  high) the image is scaled to fit 2048x2048, then its shortest side to 768, and each 512-px tile
  adds 170. The cost is added to its message's stored token count when a turn reads the branch
  (agents/compaction.read_branch), so the budget, its calibration and compaction count images like
  text. Messages folded into the summary are not sent again: the summary carries what the model
  said they showed.
- Images go out as `image_url` content parts with base64 data URLs; to a text-only model a
  message's images are named in its text instead.
"""
from __future__ import annotations

import base64
import fnmatch
import logging
import math
import re
import threading
from dataclasses import dataclass

from agents.llm_errors import LLMBadRequest, LLMError

log = logging.getLogger("chat.vision")
LOW_DETAIL_TOKENS, TILE_TOKENS, TILE = 85, 170, 512
FIT_SIDE, SHORT_SIDE = 2048, 768
REFUSAL_PATTERN = re.compile(r"image|vision|multi-?modal|content[ _-]?(part|type)|does not support (this|the) "
                             r"content|unsupported content", re.IGNORECASE)
REFUSAL_STATUSES = (400, 415, 422)
REDIS_KEY = "chat:vision:text_only"
REFUSED = ("The model {model} does not accept images (the server said: {detail}). It is now remembered as "
           "text-only. Your message is saved: pick a model that takes images (VISION_MODELS, or "
           "AGENT_MODELS=vision=...) and regenerate the reply.")
NO_VISION_MODEL = ("Your message has images, but the model {model} does not accept images and no "
                   "vision model is configured. Your message is saved: pick a model that takes images, or ask "
                   "the administrator to set VISION_MODELS or AGENT_MODELS=vision=...")


def image_tokens(width: int, height: int, detail: str = "auto") -> int:
    """OpenAI's tile rule: low is 85; high (and auto, counted as high) is 85 + 170 per 512-px tile
    once the image fits 2048x2048 and its shortest side is at most 768."""
    if detail == "low":
        return LOW_DETAIL_TOKENS
    scale = min(1.0, FIT_SIDE / max(width, height))
    width, height = width * scale, height * scale
    scale = min(1.0, SHORT_SIDE / min(width, height))
    width, height = width * scale, height * scale
    return LOW_DETAIL_TOKENS + TILE_TOKENS * math.ceil(width / TILE) * math.ceil(height / TILE)


class TextOnlyModels:
    """Models a server refused an image for; shared through Redis when there is one."""

    def __init__(self, redis_client=None) -> None:
        self._redis = redis_client
        self._known: set[str] = set()
        self._lock = threading.Lock()

    def __contains__(self, model: str) -> bool:
        if model in self._known:
            return True
        if self._redis is not None:
            try:
                refused = bool(self._redis.sismember(REDIS_KEY, model))
            except Exception as error:  # noqa: BLE001 - Redis down: the patterns decide, the server corrects
                log.warning("Text-only models unavailable: %s", type(error).__name__)
                return False
            if refused:  # the set only grows (forgetting a model takes a restart): no need to ask again
                with self._lock:
                    self._known.add(model)
            return refused
        return False

    def add(self, model: str) -> None:
        with self._lock:
            self._known.add(model)
        if self._redis is not None:
            try:
                self._redis.sadd(REDIS_KEY, model)
            except Exception as error:  # noqa: BLE001 - remembered in this process at least
                log.warning("Text-only model not shared: %s", type(error).__name__)


def accepts(model: str, patterns: list[str], text_only: TextOnlyModels) -> bool:
    """The model's name matches a VISION_MODELS pattern and no server refused it an image."""
    lowered = model.lower()
    return any(fnmatch.fnmatchcase(lowered, pattern.lower()) for pattern in patterns) and model not in text_only


def is_refusal(error: LLMError) -> bool:
    """A server's answer that it does not take images (only asked when the request carried some)."""
    return isinstance(error, LLMBadRequest) and error.status in REFUSAL_STATUSES and bool(
        REFUSAL_PATTERN.search(error.message))


@dataclass(frozen=True)
class Choice:
    """Which client answers a message with images: `via` is the agent whose client is used (None:
    the chat agent's, with the page's pick); `model` None when no model here takes images."""

    via: str | None
    model: str | None
    asked: str  # the model the message would have gone to


def choose(config, providers, picked: str | None) -> Choice:
    """The page's pick (or the chat model) when it takes images, else the vision agent's model
    (AGENT_MODELS=vision=...), else none."""
    chat = picked or next((e.model for e in providers.endpoints("chat")), "")
    if accepts(chat, config.VISION_MODELS, providers.text_only):
        return Choice(None, chat, chat)
    if "vision" in config.AGENT_MODELS or "vision" in config.AGENT_ENDPOINTS:
        vision = next((e.model for e in providers.endpoints("vision")), "")
        if vision and vision not in providers.text_only:
            return Choice("vision", vision, chat)
    return Choice(None, None, chat)


def with_image_tokens(store, user_id: str, history: list[dict], detail: str) -> list[dict]:
    """The branch with each user message's images attached (`images`) and their cost added to its
    `tokens`: one query for the whole branch."""
    ids = [m["message_id"] for m in history if m["role"] == "user"]
    found: dict[str, list[dict]] = {}
    for image in store.message_images(user_id, ids) if ids else []:
        image["tokens"] = image_tokens(image["width"], image["height"], detail)
        found.setdefault(image["message_id"], []).append(image)
    if not found:
        return history
    return [{**m, "images": found[m["message_id"]], "tokens": m["tokens"] + sum(i["tokens"] for i in
                                                                             found[m["message_id"]])}
            if m["message_id"] in found else m for m in history]


def request_messages(messages: list[dict], images: dict[int, list[dict]], send: bool, load, detail: str) -> list[dict]:
    """`messages` with the images of the ones at `images`' indexes: as image_url parts (data URLs,
    bytes from `load(image_id)`) when `send`, else named in the text."""
    out = list(messages)
    for index, attached in images.items():
        text = messages[index]["content"]
        if not send:
            names = ", ".join(image["file_name"] for image in attached)
            out[index] = {**messages[index], "content": f"{text}\n\n[attached image(s), not shown to this model: "
                                                        f"{names}]"}
            continue
        parts = [{"type": "text", "text": text}]
        for image in attached:
            stored = load(image["image_id"])
            if stored is None:  # deleted since the branch was read
                continue
            url = f"data:{stored['mime']};base64,{base64.b64encode(stored['data']).decode('ascii')}"
            parts.append({"type": "image_url", "image_url": {"url": url, "detail": detail}})
        out[index] = {**messages[index], "content": parts}
    return out


def image_count(messages: list[dict]) -> int:
    """image_url parts in a request (0 for a text-only one)."""
    return sum(1 for m in messages if isinstance(m["content"], list)
               for part in m["content"] if part.get("type") == "image_url")
