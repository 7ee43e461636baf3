"""General chat: budget the context (summarising older turns when needed), then stream a reply.

The knowledge agent reuses it with extra system text (the retrieved excerpts).
"""
from __future__ import annotations

import logging

import metrics
import utils
from agents import breakdown, calibration_probe, compaction, vision
from agents.llm_client import ContextLengthExceeded, EmptyStream, LLMError
from agents.summariser import summariser
from agents.turn_types import Reply, Turn

log = logging.getLogger("chat.agent.chat")
TOO_LONG = "The model rejected the conversation as too long even after compacting it."
RETURNED_NOTHING = ("The model returned nothing: the conversation may be too long for it, even after compacting. "
                    "Start a new conversation, pick a model with a larger context window, or set this model's "
                    "window in MODEL_CONTEXT_WINDOWS.")


def answer(turn: Turn, agent: str = "chat", extra_system: str = "", via: str | None = None) -> Reply | None:
    """Stream the model's reply to the newest user message under the token budget; None (and an
    error event) when the message alone cannot fit, so nothing is stored for it. `via` names another
    agent whose client answers (the vision agent's, for a message with images)."""
    client = turn.clients.get(via or agent)
    model = client.model
    try:
        plan = _plan(turn, model, extra_system, tighter=False)
    except utils.MessageTooLarge as error:
        turn.emitter.error(_too_large(turn, model, error))
        return None
    text, finish, usage = _stream_with_retry(turn, client, extra_system, plan)
    used = getattr(client, "used", None)
    followups = []
    if plan.images:
        pass  # servers count images their own way (and the probe re-sends text only): learn from text alone
    elif usage and usage.get("prompt_tokens"):
        turn.deps.calibration.observe(model, usage["prompt_tokens"], plan.prompt_tokens)
    elif finish in ("stop", "length") and turn.deps.calibration.claim_probe(model):
        followups.append(calibration_probe.probe(turn.deps, agent, turn.clients.model, used, plan.messages,
                                                 plan.prompt_tokens, model))
    meta = {"model": used.model, "endpoint": used.name} if used else {}
    meta["context"] = breakdown.describe(plan, turn, model, usage)  # what went into this request
    return Reply(text, finish, plan.prompt_tokens, usage, (plan.summary or {}).get("tokens", 0),
                 agent=agent, meta=meta, followups=followups)


def _plan(turn: Turn, model: str, extra_system: str, tighter: bool) -> utils.ContextPlan:
    """Budget the branch since the summary checkpoint (what the store reads is O(that), not O(history)).
    Compaction runs after replies, in the background; a turn waits for it, or summarises inline, only
    when its request would not fit without a new summary."""
    deps = turn.deps
    budget = compaction.turn_budget(deps, model, tighter)
    system_prompt = compaction.system_prompt(deps, turn.user_id, turn.conversation_id, extra_system)
    conversation, history = compaction.read_branch(deps, turn.user_id, turn.conversation_id, turn.user_message_id)
    if (utils.request_size(history, conversation["summary"], system_prompt) > budget.prompt_room
            and compaction.wait(turn.conversation_id)):
        conversation, history = compaction.read_branch(deps, turn.user_id, turn.conversation_id,
                                                       turn.user_message_id)
    summary_client = turn.clients.get("summary")
    summary_window = deps.config.context_window(summary_client.model) if summary_client else None
    plan = utils.assemble_context(history, conversation["summary"], system_prompt, budget,
                                  summariser(summary_client, turn.emitter), summary_window, compact_early=False)
    if plan.new_summary:
        new, extends = plan.new_summary, (conversation["summary"] or {}).get("last_message_id")
        if not deps.store.set_summary(turn.user_id, turn.conversation_id, new["content"], new["last_message_id"],
                                      new["tokens"], extends=extends):
            log.info("A summary from the same checkpoint was stored first; this one serves this turn only")
    if plan.notice:
        turn.emitter.status("notice", plan.notice)
    return plan


def _too_large(turn: Turn, model: str, error: utils.MessageTooLarge) -> str:
    """MessageTooLarge's words, or for a message with images the numbers that include them."""
    images = vision.with_image_tokens(turn.deps.store, turn.user_id, [
        {"message_id": turn.user_message_id, "role": "user", "tokens": 0}], turn.deps.config.IMAGE_DETAIL)[0]
    if not images.get("images"):
        return str(error)
    config = turn.deps.config
    return (f"Your message with {len(images['images'])} image(s) is {error.message_tokens} tokens, "
            f"{images['tokens']} of them for the images, but only {error.available} fit in {model}'s "
            f"{config.context_window(model)}-token context after reserving {config.REPLY_TOKENS} for the reply. "
            "Send fewer or smaller images, or a shorter text.")


def _stream_with_retry(turn: Turn, client, extra_system: str, plan):
    """Stream once; on a context-length error or an empty stream (llama.cpp's way of saying the
    prompt is too long) before any text, re-plan tighter and try once more."""
    reply_tokens = turn.deps.config.REPLY_TOKENS
    try:
        return _stream(client, plan, reply_tokens, turn)
    except (ContextLengthExceeded, EmptyStream) as error:
        log.warning("%s from model %s; retrying with a tighter context", type(error).__name__, client.model)
    try:
        tighter = _plan(turn, client.model, extra_system, tighter=True)
        return _stream(client, tighter, reply_tokens, turn)
    except (ContextLengthExceeded, utils.MessageTooLarge, EmptyStream) as error:
        metrics.error("llm_empty" if isinstance(error, EmptyStream) else "context_length")
        turn.emitter.error(RETURNED_NOTHING if isinstance(error, EmptyStream) else TOO_LONG)
        return "", "error", None


def _stream(client, plan, reply_tokens: int, turn: Turn) -> tuple[str, str, dict | None]:
    """Forward the reply to the page as it streams; a failure before any text that a tighter context
    may cure (too long, an empty stream) is raised for _stream_with_retry, any other is reported."""
    parts, finish, usage = [], "stop", None
    emitter = turn.emitter
    emitter.status("waiting", "Waiting for the model…")
    messages = _with_images(turn, client.model, plan)
    stream = client.stream_chat(messages, max_tokens=reply_tokens)
    try:
        for event in stream:
            if turn.stopped():
                return "".join(parts), "stopped", usage
            if event.kind == "content":
                parts.append(event.text)
                emitter.chunk(event.text)
            elif event.kind == "usage":
                usage = event.usage
            elif event.kind == "finish" and event.finish_reason:
                finish = event.finish_reason
    except LLMError as error:
        text = "".join(parts) or error.partial
        if turn.stopped():  # Stop was pressed while the endpoint was silent: that, not the timeout, ended it
            return text, "stopped", usage
        if isinstance(error, (ContextLengthExceeded, EmptyStream)) and not text:
            raise
        metrics.error(metrics.llm_error_kind(error))
        emitter.error(_refused_image(turn, client.model, error) if vision.image_count(messages) else error.message)
        return text, "error", usage
    finally:
        stream.close()  # closes the upstream connection: the server stops generating
    return "".join(parts), finish if finish in ("stop", "length", "content_filter") else "stop", usage


def _with_images(turn: Turn, model: str, plan) -> list[dict]:
    """The plan's messages with their images: as image parts for a model that takes them."""
    if not plan.images:
        return plan.messages
    deps = turn.deps
    chosen = turn.vision is not None and turn.vision.model == model and model not in deps.providers.text_only
    send = chosen or vision.accepts(model, deps.config.VISION_MODELS, deps.providers.text_only)
    return vision.request_messages(plan.messages, plan.images, send,
                                   lambda image_id: deps.store.get_image(turn.user_id, image_id),
                                   deps.config.IMAGE_DETAIL)


def _refused_image(turn: Turn, model: str, error) -> str:
    """A request with images failed: when the server refused the images, remember the model as
    text-only and say so; else the error's own message."""
    if not vision.is_refusal(error):
        return error.message
    turn.deps.providers.text_only.add(model)
    log.warning("Model %s refused an image; remembered as text-only", model)
    return vision.REFUSED.format(model=model, detail=error.message[:200])
