"""Per-model ratio between the server's prompt_tokens and our tiktoken count.

Llama/Qwen-style models served by Ollama or vLLM tokenize differently; scaling our counts by
the observed ratio keeps the budget honest for them. Never below 1.0: undercounting is the
risk, overcounting only costs a little room.

Servers that send no usage in a stream (llama-cpp-python) are probed instead: see
agents/calibration_probe.py. Only a model's first PROBES_PER_MODEL replies are probed.
"""
from __future__ import annotations

import threading

SMOOTHING = 0.3
MAX_RATIO = 3.0
PROBES_PER_MODEL = 3
# A ratio learned by probing comes from a model's first few replies, and the server says nothing after:
# with llama.cpp serving SmolLM2 the ratio of single requests ranged 1.05 to 1.15 while the probes
# taught 1.054 to 1.074, and a full prompt then came out 7% over, prompt + reply past the window.
PROBED_HEADROOM = 1.10


class Calibration:
    def __init__(self) -> None:
        self._ratios: dict[str, float] = {}
        self._probes: dict[str, int] = {}
        self._lock = threading.Lock()

    def ratio(self, model: str) -> float:
        return self._ratios.get(model, 1.0)

    def budget_ratio(self, model: str) -> float:
        """The ratio the budget plans with: the learned one, with headroom when it was learned by
        probing (streams without usage) rather than from every reply's reported usage."""
        with self._lock:
            probed = model in self._probes
        return self.ratio(model) * (PROBED_HEADROOM if probed else 1.0)

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

    def claim_probe(self, model: str) -> bool:
        """True (and counted) while the model's streams carried no usage and it has been probed
        fewer than PROBES_PER_MODEL times in this process."""
        with self._lock:
            done = self._probes.get(model, 0)
            if done >= PROBES_PER_MODEL:
                return False
            self._probes[model] = done + 1
            return True
