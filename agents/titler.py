"""Conversation titles: the first line of the first message at once, then (AUTO_TITLE) a short
title the summary model writes from the first exchange, as Open WebUI and ChatGPT do.

One small call per conversation: the exchange is cut to EXCHANGE_TOKENS and the reply to
TITLE_TOKENS. A user's own rename is never overwritten: only a title still equal to the
first-line title is replaced.
"""
from __future__ import annotations

import logging
import re

import utils
from agents.llm_client import LLMError

log = logging.getLogger("chat.titler")
TITLE_CHARS = 60
EXCHANGE_TOKENS = 400
TITLE_TOKENS = 20
INSTRUCTIONS = ("Write a title of at most six words for the conversation below. Answer with the title only: "
                "no quotes, no punctuation at the end.")


def first_line_title(text: str) -> str:
    """The title a conversation gets when it starts: its first words."""
    words = " ".join(text.split())
    return words[:TITLE_CHARS] + ("…" if len(words) > TITLE_CHARS else "")


def clean(raw: str) -> str:
    """The model's answer as a one-line title: no quotes, markdown or trailing dot."""
    line = next((part for part in raw.strip().splitlines() if part.strip()), "")
    for _ in range(2):  # quotes around "Title: x", or a Title: before quotes
        line = re.sub(r"^title\s*:\s*", "", line.strip(" \t\"'`*#_."), flags=re.IGNORECASE)
    return " ".join(line.split())[:TITLE_CHARS]


def retitle(store, providers, user_id: str, conversation_id: str) -> str | None:
    """After the first exchange: the new title, stored (None when nothing changed)."""
    conversation = store.get_conversation(user_id, conversation_id)
    if conversation is None or conversation["message_count"] != 2:
        return None
    messages = store.list_messages(user_id, conversation_id)
    if [m["role"] for m in messages] != ["user", "assistant"] or messages[1]["finish_reason"] != "stop":
        return None
    if conversation["title"] != first_line_title(messages[0]["content"]):
        return None  # renamed by the user, or imported
    client = providers.client("summary")
    if client is None:
        return None
    half = EXCHANGE_TOKENS // 2
    exchange = (f"User: {utils.truncate_tokens(messages[0]['content'], half)}\n"
                f"Assistant: {utils.truncate_tokens(messages[1]['content'], half)}")
    try:
        answer = client.complete([{"role": "system", "content": INSTRUCTIONS},
                                  {"role": "user", "content": exchange}], max_tokens=TITLE_TOKENS)
    except LLMError as error:
        log.info("No title for %s: %s", conversation_id, error.message)
        return None
    finally:
        client.close()
    title = clean(answer.text)
    if not title:
        return None
    store.rename_conversation(user_id, conversation_id, title)
    return title
