"""The summary and pinned facts in our JSON export, and back on import: the summary's checkpoint
is re-pointed at the fresh id of the message it named (dropped, to be rebuilt by the next
compaction, when that message was not imported)."""
from __future__ import annotations

from flask import abort

import utils
from agents import pins
from storage.base import ConversationStore

MAX_SUMMARY_CHARS = 20_000


def read(item: dict, messages: list[dict], number: int) -> tuple[dict | None, list[str]]:
    """(summary with fresh ids, pinned facts) of one exported conversation; 400 for malformed ones."""
    facts = item.get("pinned_facts", [])
    if not isinstance(facts, list) or len(facts) > pins.MAX_FACTS or not all(
            isinstance(f, str) and f.strip() and len(f) <= pins.MAX_FACT_CHARS for f in facts):
        abort(400, f"Conversation {number}: 'pinned_facts' must be a list of at most {pins.MAX_FACTS} "
                   f"non-empty strings of at most {pins.MAX_FACT_CHARS} characters.")
    return _summary(item.get("summary"), messages), [" ".join(f.split()) for f in facts]


def _summary(summary, messages: list[dict]) -> dict | None:
    if not isinstance(summary, dict):
        return None
    content, source = summary.get("content"), summary.get("last_message_id")
    if not isinstance(content, str) or not content.strip() or len(content) > MAX_SUMMARY_CHARS:
        return None
    fresh = next((m["message_id"] for m in messages if source and m.get("source_id") == source), None)
    if fresh is None:
        return None
    return {"content": content, "last_message_id": fresh,
            "tokens": utils.message_tokens("system", utils.SUMMARY_PREFIX + content)}


def restore(store: ConversationStore, user_id: str, conversation_id: str, summary: dict | None,
            facts: list[str]) -> None:
    if summary:
        store.set_summary(user_id, conversation_id, summary["content"], summary["last_message_id"], summary["tokens"])
    if facts:
        store.set_pinned_facts(user_id, conversation_id, facts)
