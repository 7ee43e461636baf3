"""Per-model ratio between the server's prompt_tokens and our tiktoken count.

Llama/Qwen-style models served by Ollama or vLLM tokenize differently; scaling our counts by
the observed ratio keeps the budget honest for them. Never below 1.0: undercounting is the
risk, overcounting only costs a little room.
"""
from __future__ import annotations

import threading

SMOOTHING = 0.3
MAX_RATIO = 3.0


class Calibration:
    def __init__(self) -> None:
        self._ratios: dict[str, float] = {}
        self._lock = threading.Lock()

    def ratio(self, model: str) -> float:
        return self._ratios.get(model, 1.0)

    def observe(self, model: str, reported_prompt_tokens: int, counted_prompt_tokens: int) -> float:
        """Blend in one observation; returns the new ratio."""
        if reported_prompt_tokens <= 0 or counted_prompt_tokens <= 0:
            return self.ratio(model)
        seen = min(MAX_RATIO, reported_prompt_tokens / counted_prompt_tokens)
        with self._lock:
            previous = self._ratios.get(model)
            blended = seen if previous is None else previous + SMOOTHING * (seen - previous)
            self._ratios[model] = max(1.0, blended)
            return self._ratios[model]
