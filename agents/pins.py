"""Pinned facts: what the user asked the model to always know in a conversation. They ride in the
system prompt, so every request carries them word for word, the budget counts them as part of the
system prompt, and no compaction can fold them into the summary."""
from __future__ import annotations

PINS_HEADING = "\n\nFacts the user pinned (always true in this conversation):\n"
MAX_FACTS = 20
MAX_FACT_CHARS = 500


def with_pins(system_prompt: str, facts: list[str] | None) -> str:
    """The system prompt with the pinned facts appended (unchanged when there are none)."""
    if not facts:
        return system_prompt
    return system_prompt + PINS_HEADING + "\n".join(f"- {fact}" for fact in facts)


def split(system_prompt: str) -> tuple[str, str]:
    """(the prompt before the pins, the pins part) of a prompt made by with_pins."""
    at = system_prompt.rfind(PINS_HEADING)
    return (system_prompt, "") if at < 0 else (system_prompt[:at], system_prompt[at:])
