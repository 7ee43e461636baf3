"""One chat turn after the user's message is stored: budget the context, stream, persist.

Called from a background task; talks to the page only through an Emitter, so tests can
run it with a RecordingEmitter and the fake model server.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Callable

import utils
from agents.calibration import Calibration
from agents.llm_client import ContextLengthExceeded, LLMClient, LLMError, LLMStreamError
from storage import ConversationStore

log = logging.getLogger("chat.turn")
NOT_CONFIGURED = ("No model endpoint is configured, so I cannot reply yet. Set OPENAI_BASE_URL "
                  "(and OPENAI_API_KEY, MODEL) and restart the app.")
SUMMARY_INSTRUCTIONS = ("Summarise this conversation so far for your own later reference: keep facts, "
                        "names, numbers, decisions and open questions. Be concise.")


@dataclass
class TurnDeps:
    store: ConversationStore
    config: object
    client: LLMClient | None
    summary_client: LLMClient | None
    calibration: Calibration


@dataclass
class TurnResult:
    message_id: str
    text: str
    finish_reason: str
    prompt_tokens: int
    completion_tokens: int


def run_turn(deps: TurnDeps, user_id: str, conversation_id: str, user_message_id: str,
             reply_id: str, emitter, stopped: Callable[[], bool]) -> TurnResult | None:
    """Answer the newest user message; the reply is stored whatever happens (stop, error)."""
    if deps.client is None:
        return _finish(deps, user_id, conversation_id, user_message_id, reply_id, emitter,
                       NOT_CONFIGURED, "error", 0, None, agent="system")
    model = deps.client.model
    try:
        plan = _plan(deps, user_id, conversation_id, model, emitter, tighter=False)
    except utils.MessageTooLarge as error:
        emitter.error(str(error))
        return None
    text, finish, usage = _stream_with_retry(deps, user_id, conversation_id, model, plan, emitter, stopped)
    if usage and usage.get("prompt_tokens"):
        deps.calibration.observe(model, usage["prompt_tokens"], plan.prompt_tokens)
    return _finish(deps, user_id, conversation_id, user_message_id, reply_id, emitter, text, finish,
                   plan.prompt_tokens, usage, plan=plan)


def _plan(deps: TurnDeps, user_id: str, conversation_id: str, model: str, emitter, tighter: bool):
    config = deps.config
    conversation = deps.store.get_conversation(user_id, conversation_id)
    history = deps.store.list_messages(user_id, conversation_id)
    ratio = deps.calibration.ratio(model) * (1.25 if tighter else 1.0)
    budget = utils.Budget(config.context_window(model), config.REPLY_TOKENS, compact_at=config.COMPACT_AT,
                          summary_tokens=config.SUMMARY_TOKENS, ratio=ratio)
    summary_window = config.context_window(deps.summary_client.model) if deps.summary_client else None
    plan = utils.assemble_context(history, conversation["summary"], config.SYSTEM_PROMPT, budget,
                                  _summariser(deps.summary_client, emitter), summary_window)
    if plan.summary_changed:
        deps.store.set_summary(user_id, conversation_id, plan.summary["content"],
                               plan.summary["last_message_id"], plan.summary["tokens"])
    if plan.notice:
        emitter.status("notice", plan.notice)
    return plan


def _summariser(client: LLMClient | None, emitter):
    if client is None:
        return None

    def summarise(text: str, max_tokens: int) -> str:
        emitter.status("summarising", "Summarising earlier messages to make room…")
        completion = client.complete([{"role": "system", "content": SUMMARY_INSTRUCTIONS},
                                      {"role": "user", "content": text}], max_tokens=max_tokens)
        if not completion.text.strip():
            raise LLMError("The summariser returned nothing.")
        return completion.text.strip()
    return summarise


def _stream_with_retry(deps, user_id, conversation_id, model, plan, emitter, stopped):
    """Stream once; on a context-length error before any text, re-plan tighter and try once more."""
    try:
        return _stream(deps.client, plan, deps.config.REPLY_TOKENS, emitter, stopped)
    except ContextLengthExceeded:
        log.warning("Context length exceeded for model %s; retrying with a tighter context", model)
    try:
        tighter = _plan(deps, user_id, conversation_id, model, emitter, tighter=True)
        return _stream(deps.client, tighter, deps.config.REPLY_TOKENS, emitter, stopped)
    except (ContextLengthExceeded, utils.MessageTooLarge):
        emitter.error("The model rejected the conversation as too long even after compacting it.")
        return "", "error", None


def _stream(client: LLMClient, plan, reply_tokens: int, emitter, stopped) -> tuple[str, str, dict | None]:
    parts, finish, usage = [], "stop", None
    emitter.status("waiting", "Waiting for the model…")
    stream = client.stream_chat(plan.messages, max_tokens=reply_tokens)
    try:
        for event in stream:
            if stopped():
                return "".join(parts), "stopped", usage
            if event.kind == "content":
                parts.append(event.text)
                emitter.chunk(event.text)
            elif event.kind == "usage":
                usage = event.usage
            elif event.kind == "finish" and event.finish_reason:
                finish = event.finish_reason
    except ContextLengthExceeded:
        if parts:
            raise LLMStreamError("The model stopped: the conversation is too long.", partial="".join(parts))
        raise
    except LLMError as error:
        emitter.error(error.message)
        return "".join(parts) or getattr(error, "partial", "") or "", "error", usage
    finally:
        stream.close()
    return "".join(parts), finish if finish in ("stop", "length", "content_filter") else "stop", usage


def _finish(deps, user_id, conversation_id, user_message_id, reply_id, emitter, text, finish,
            prompt_tokens, usage, plan=None, agent="chat") -> TurnResult:
    """Persist the reply (even partial or empty on error), then report usage and done."""
    tokens = utils.message_tokens("assistant", text)
    deps.store.append_message(user_id, conversation_id, "assistant", text, tokens=tokens,
                              parent_message_id=user_message_id, agent=agent, finish_reason=finish,
                              message_id=reply_id)
    completion = (usage or {}).get("completion_tokens") or utils.count_tokens(text)
    conversation = deps.store.get_conversation(user_id, conversation_id)
    emitter.usage({"total_tokens_used": conversation["total_tokens"],
                   "prompt_tokens": (usage or {}).get("prompt_tokens") or prompt_tokens,
                   "completion_tokens": completion,
                   "context_budget": deps.config.context_window(deps.client.model if deps.client else "")
                   - deps.config.REPLY_TOKENS,
                   "summary_tokens": (plan.summary or {}).get("tokens", 0) if plan else 0})
    emitter.done(reply_id, finish)
    return TurnResult(reply_id, text, finish, prompt_tokens, completion)
