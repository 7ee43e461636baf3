"""What went into a request, part by part, from the context plan that built it; stored in the
reply's meta["context"] so the page shows it without counting anything again.

The parts add up exactly to the plan's prompt_tokens: the system prompt (its pinned facts apart),
the summary, the verbatim messages before the new one, the new message, and the chat format's
reply priming. The new message's size is the stored count (what the plan used); the verbatim part
is what the plan counted for the rest of the tail. `ratio` is the model's calibration as of this
reply (after its own report was blended in), the one the next request's budget uses.
"""
from __future__ import annotations

import utils
from agents import pins
from agents.turn_types import Turn


def describe(plan: utils.ContextPlan, turn: Turn, model: str, usage: dict | None) -> dict:
    """meta["context"] for the reply to `turn` made from `plan`."""
    config = turn.deps.config
    system_text = plan.messages[0]["content"]
    base, pinned_text = pins.split(system_text)
    system_total = utils.message_tokens("system", system_text)
    system = utils.message_tokens("system", base) if pinned_text else system_total
    summary = plan.summary["tokens"] if plan.summary else 0
    new_message = _new_message_tokens(turn, plan)
    parts = {"system": system, "pinned": system_total - system, "summary": summary,
             "new_message": new_message, "format": utils.REPLY_PRIMING}
    parts["verbatim"] = plan.prompt_tokens - sum(parts.values())
    tail = len(plan.messages) - 1 - (1 if plan.summary else 0)
    return {"parts": parts, "prompt_tokens": plan.prompt_tokens, "verbatim_count": max(0, tail - 1),
            "summary_through": plan.summary["last_message_id"] if plan.summary else None,
            "reply_reserve": config.REPLY_TOKENS, "window": config.context_window(model),
            "ratio": round(turn.deps.calibration.budget_ratio(model), 4), "model": model,
            "reported_prompt_tokens": (usage or {}).get("prompt_tokens")}


def _new_message_tokens(turn: Turn, plan: utils.ContextPlan) -> int:
    """The stored count of the message being answered (what the plan summed), else counted now; plus
    what its images cost (agents/vision.py), which the plan summed with it."""
    images = sum(image["tokens"] for image in plan.images.get(len(plan.messages) - 1, []))
    stored = turn.deps.store.get_message(turn.user_id, turn.user_message_id)
    if stored is not None and stored.get("tokens"):
        return stored["tokens"] + images
    last = plan.messages[-1]
    return utils.message_tokens(last["role"], last["content"]) + images
