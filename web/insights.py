"""What the page shows beside the chat: the models to pick from and usage statistics."""
from __future__ import annotations

from collections import defaultdict

from flask import Blueprint, current_app, jsonify

from .context import current_user_id, get_store, owned_conversation

bp = Blueprint("insights", __name__)


@bp.get("/models")
def models():
    """The chat models the page may offer: the endpoint's /v1/models list (cached a minute),
    else the configured MODEL; empty with `configured: false` when there is no endpoint."""
    names = current_app.extensions["chat_providers"].models()
    return jsonify(models=names, default=names[0] if names else None, configured=bool(names))


@bp.get("/stats/<conversation_id>")
def conversation_stats(conversation_id: str):
    """Per agent: replies, average and worst latency, tokens; plus the conversation's totals."""
    record = owned_conversation(conversation_id)
    messages = get_store().list_messages(current_user_id(), conversation_id)
    return jsonify(conversation_id=conversation_id, total_tokens=record["total_tokens"],
                   message_count=record["message_count"], agents=agent_stats(messages),
                   summary_tokens=(record["summary"] or {}).get("tokens", 0))


def agent_stats(messages: list[dict]) -> list[dict]:
    """One row per agent that replied, busiest first."""
    rows: dict[str, dict] = defaultdict(lambda: {"replies": 0, "tokens": 0, "latencies": []})
    for message in messages:
        if message["role"] != "assistant":
            continue
        row = rows[message.get("agent") or "chat"]
        row["replies"] += 1
        row["tokens"] += message.get("tokens") or 0
        latency = (message.get("meta") or {}).get("latency_ms")
        if isinstance(latency, (int, float)):
            row["latencies"].append(latency)
    result = []
    for agent, row in rows.items():
        latencies = row.pop("latencies")
        row["avg_latency_ms"] = round(sum(latencies) / len(latencies)) if latencies else None
        row["max_latency_ms"] = max(latencies) if latencies else None
        result.append({"agent": agent, **row})
    return sorted(result, key=lambda r: (-r["replies"], r["agent"]))
