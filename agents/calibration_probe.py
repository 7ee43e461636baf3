"""Calibration for servers whose streams carry no usage (llama-cpp-python's server is one).

Such a server still reports prompt_tokens for a request that is not streamed. After a reply whose
stream had none, the same messages go once more, not streamed and asking for one token, and the
server's count is blended into the model's ratio. It runs after the reply is stored and the
conversation is free again, and only for a model's first few replies (Calibration.claim_probe):
on a one-slot server every extra request waits for, or with llama-cpp-python's default
interrupt_requests cuts short, someone else's reply. Its prompt cache makes the repeated prefix cheap.
"""
from __future__ import annotations

import logging
from collections.abc import Callable

from agents.llm_errors import LLMError

log = logging.getLogger("chat.calibration")


def probe(deps, agent: str, picked_model: str | None, endpoint, messages: list[dict], counted: int,
          model: str) -> Callable[[], None]:
    """A job that asks the server that served a reply (`endpoint`) to count its prompt."""
    def run() -> None:
        client = deps.providers.client(agent, picked_model)
        if client is None:
            return
        try:
            reported = client.prompt_tokens(messages, endpoint)
        except LLMError as error:
            log.info("Calibration probe for model %s failed: %s", model, error.message)
            return
        finally:
            client.close()
        if reported:
            ratio = deps.calibration.observe(model, reported, counted)
            log.info("Calibration for model %s: we counted %d prompt tokens, the server %d; ratio now %.3f",
                     model, counted, reported, ratio)
    return run
