"""The summariser agent: folds older turns into the rolling summary, on its own (cheaper) model.

Its model is AGENT_MODELS' `summary`, else SUMMARY_MODEL, else MODEL (agents/providers.py).
"""
from __future__ import annotations

from collections.abc import Callable

import metrics
from agents.llm_client import LLMError

SUMMARY_INSTRUCTIONS = ("Summarise this conversation so far for your own later reference: keep facts, "
                        "names, numbers, decisions and open questions. Be concise.")


def summariser(client, emitter=None) -> Callable[[str, int], str] | None:
    """The summarise(text, max_tokens) function utils.assemble_context calls, or None without a model.
    Without an emitter (a compaction in the background) nobody is told it is summarising."""
    if client is None:
        return None

    def summarise(text: str, max_tokens: int) -> str:
        if emitter is not None:
            emitter.status("summarising", "Summarising earlier messages to make room…")
        metrics.SUMMARISER_CALLS.inc()
        completion = client.complete([{"role": "system", "content": SUMMARY_INSTRUCTIONS},
                                      {"role": "user", "content": text}], max_tokens=max_tokens)
        if not completion.text.strip():
            raise LLMError("The summariser returned nothing.")
        return completion.text.strip()
    return summarise
