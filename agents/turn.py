"""One turn after the user's message is stored: route it, let the agent answer, persist the reply.

Called from a background task; talks to the page only through an Emitter, so tests can run
it with a RecordingEmitter and the fake model server. The reply is stored whatever happens
(stop, endpoint error), with the routing decision in its meta.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Callable

import metrics
import utils
from agents import chat_agent, file_agent, knowledge_agent, vision
from agents.math import turn as math_turn
from agents.router import model_classifier, route
from agents.turn_types import AgentClients, Reply, Turn, TurnDeps

log = logging.getLogger("chat.turn")
NOT_CONFIGURED = ("No model endpoint is configured, so I can only do maths (try “/math 2^10” or "
                  "“solve 2x + 5 = 15”). Set OPENAI_BASE_URL (and OPENAI_API_KEY, MODEL) and restart "
                  "the app for everything else.")
DOCUMENT_NAMES_CHECKED = 50

__all__ = ["NOT_CONFIGURED", "TurnDeps", "run_turn"]


def run_turn(deps: TurnDeps, user_id: str, conversation_id: str, user_message_id: str, reply_id: str,
             emitter, stopped: Callable[[], bool], attachment: str | None = None,
             model: str | None = None) -> Reply | None:
    """Answer the stored user message `user_message_id` (a regenerated reply answers an older one:
    the reply becomes a sibling branch); returns what was stored (None if nothing). `model` is the
    page's pick for the chat and knowledge agents."""
    message = deps.store.get_message(user_id, user_message_id)
    if message is None:
        emitter.error("The message to answer was not found.")
        return None
    turn = Turn(deps, user_id, conversation_id, user_message_id, reply_id, emitter, stopped,
                AgentClients(deps.providers, model), attachment=attachment)
    try:
        decision = _route(turn, message["content"], deps.store.message_images(user_id, [user_message_id]))
        turn.text = decision.text
        emitter.routing(decision.public())
        reply = _answer(turn, decision)
        if reply is None:
            return None
        reply.meta = {"routing": decision.public(), **reply.meta,
                      "latency_ms": round((time.monotonic() - turn.started) * 1000)}
        return _finish(turn, reply)
    finally:
        turn.clients.close()


def _route(turn: Turn, text: str, images: list[dict]):
    deps = turn.deps
    names = [d["file_name"] for d in deps.store.list_documents(turn.user_id, DOCUMENT_NAMES_CHECKED)]
    router_client = turn.clients.get("router") if deps.config.ROUTER_LLM else None
    if images:
        turn.vision = vision.choose(deps.config, deps.providers, turn.clients.model)
    return route(text, attachment=turn.attachment, document_names=names,
                 classify=model_classifier(router_client) if router_client else None,
                 log_fields={"conversation_id": turn.conversation_id, "message_id": turn.user_message_id},
                 images=len(images), vision_model=turn.vision.model if turn.vision else None)


def _answer(turn: Turn, decision) -> Reply | None:
    if decision.agent == "math":
        reply = math_turn.answer(turn, explicit=decision.rule == "command")
        if reply is not None:
            return reply
    elif decision.agent == "file":
        return file_agent.answer_in_chat(turn)
    elif decision.agent == "knowledge":
        return knowledge_agent.answer(turn)
    if turn.clients.get("chat") is None:
        return turn.say(NOT_CONFIGURED, "system", finish_reason="error")
    if decision.rule == "command" and not turn.text.strip():
        return turn.say("Type a message after the command.", "system")
    if decision.rule == "image":
        if turn.vision.model is None:
            return turn.say(vision.NO_VISION_MODEL.format(model=turn.vision.asked), "system", finish_reason="error")
        return chat_agent.answer(turn, via=turn.vision.via)
    return chat_agent.answer(turn)


def _finish(turn: Turn, reply: Reply) -> Reply:
    """Persist the reply (even partial or empty on error), then report usage and done."""
    deps = turn.deps
    tokens = utils.message_tokens("assistant", reply.text)
    usage = reply.usage or {}
    prompt = usage.get("prompt_tokens") or reply.prompt_tokens
    completion = usage.get("completion_tokens") or utils.count_tokens(reply.text)
    if prompt:  # the page's per-turn chart reads this back after a reload
        reply.meta["usage"] = {"prompt_tokens": prompt, "completion_tokens": completion,
                               "summary_tokens": reply.summary_tokens}
    deps.store.append_message(turn.user_id, turn.conversation_id, "assistant", reply.text, tokens=tokens,
                              parent_message_id=turn.user_message_id, agent=reply.agent,
                              finish_reason=reply.finish_reason, message_id=turn.reply_id, meta=reply.meta)
    metrics.reply_stored(reply.agent, reply.finish_reason, prompt, completion if prompt else 0)
    conversation = deps.store.get_conversation(turn.user_id, turn.conversation_id)
    chat_model = turn.clients.model or next((e.model for e in deps.providers.endpoints("chat")), "")
    window = deps.config.context_window(chat_model)
    turn.emitter.usage({"total_tokens_used": conversation["total_tokens"], "prompt_tokens": prompt,
                        "completion_tokens": completion, "context_budget": window - deps.config.REPLY_TOKENS,
                        "context_window": window, "summary_tokens": reply.summary_tokens})
    turn.emitter.done(turn.reply_id, reply.finish_reason, {"agent": reply.agent, "meta": reply.meta})
    return reply
