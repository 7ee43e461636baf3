"""Compaction off the reply's path.

Once a reply is stored, if the next turn would cross COMPACT_AT the rolling summary is extended
in a background task, so that turn starts streaming at once. A turn waits for a summary only
when its request would not fit without one: for the background one if it is still running
here, else it summarises inline (utils.assemble_context with compact_early=False).

One summary per checkpoint: a claim per conversation keeps this process from running two
compactions of it at once, and set_summary(extends=...) (a compare-and-set in the store)
stores a summary only over the checkpoint it extended, so across processes too the first one
wins and a racer's is dropped. The claim is a threading.Event, which is green under
eventlet's and gevent's monkey-patching, so the same code serves every async mode.
"""
from __future__ import annotations

import logging
import threading
from collections.abc import Callable

import utils
from agents import pins, vision
from agents.summariser import summariser
from agents.turn_types import TurnDeps

log = logging.getLogger("chat.compaction")
WAIT_SECONDS = 120.0  # longest a turn that cannot fit without the summary waits for it
_lock = threading.Lock()
_running: dict[str, threading.Event] = {}


def turn_budget(deps: TurnDeps, model: str, tighter: bool = False) -> utils.Budget:
    """The budget of a turn answered by `model` (calibrated; `tighter` after a too-long refusal)."""
    config = deps.config
    ratio = deps.calibration.budget_ratio(model) * (1.25 if tighter else 1.0)
    return utils.Budget(config.context_window(model), config.REPLY_TOKENS, compact_at=config.COMPACT_AT,
                        summary_tokens=config.SUMMARY_TOKENS, ratio=ratio)


def system_prompt(deps: TurnDeps, user_id: str, conversation_id: str, extra_system: str = "") -> str:
    """A request's system prompt as the budget counts it: the configured one, the knowledge agent's
    excerpts, and the conversation's pinned facts."""
    prompt = deps.config.SYSTEM_PROMPT + ("\n\n" + extra_system if extra_system else "")
    return pins.with_pins(prompt, deps.store.get_pinned_facts(user_id, conversation_id))


def read_branch(deps: TurnDeps, user_id: str, conversation_id: str, leaf_id: str) -> tuple[dict | None, list[dict]]:
    """The conversation and its branch to `leaf_id` from the summary's checkpoint on: all a turn reads."""
    conversation = deps.store.get_conversation(user_id, conversation_id)
    if conversation is None:
        return None, []
    checkpoint = (conversation["summary"] or {}).get("last_message_id")
    history = deps.store.branch_since(user_id, conversation_id, leaf_id, checkpoint)
    return conversation, vision.with_image_tokens(deps.store, user_id, history, deps.config.IMAGE_DETAIL)


def after_reply(deps: TurnDeps, user_id: str, conversation_id: str, leaf_id: str, model: str | None,
                start_task: Callable) -> bool:
    """Start a background compaction when the next turn would cross COMPACT_AT; never raises."""
    try:
        model = model or _chat_model(deps)
        conversation, history = read_branch(deps, user_id, conversation_id, leaf_id)
        if (conversation is None or not deps.providers.endpoints("summary")
                or not _overflow(deps, model, conversation, history)):
            return False
        done = _claim(conversation_id)
        if done is None:
            return False  # one is running already
    except Exception:
        log.exception("Could not check whether to compact")
        return False
    try:
        start_task(_run, deps, user_id, conversation_id, leaf_id, model, done)
    except Exception:
        _release(conversation_id, done)
        log.exception("Could not start a background compaction")
        return False
    return True


def compact(deps: TurnDeps, user_id: str, conversation_id: str, leaf_id: str, model: str) -> dict | None:
    """Extend the summary over what the next turn would overflow; the summary stored, or None
    (nothing due, no summary model, or another compaction stored one from this checkpoint first)."""
    conversation, history = read_branch(deps, user_id, conversation_id, leaf_id)
    overflow = _overflow(deps, model, conversation, history) if conversation else []
    client = deps.providers.client("summary") if overflow else None
    if client is None:
        return None
    summary = conversation["summary"]
    try:
        new, _ = utils.extend_summary(summary, overflow, summariser(client), turn_budget(deps, model),
                                      deps.config.context_window(client.model))
    finally:
        client.close()
    extends = summary["last_message_id"] if summary else None
    stored = deps.store.set_summary(user_id, conversation_id, new["content"], new["last_message_id"],
                                    new["tokens"], extends=extends)
    return new if stored else None


def wait(conversation_id: str, timeout: float = WAIT_SECONDS) -> bool:
    """Wait for this process's background compaction of the conversation; False if none runs."""
    with _lock:
        done = _running.get(conversation_id)
    if done is None:
        return False
    done.wait(timeout)
    return True


def _run(deps: TurnDeps, user_id: str, conversation_id: str, leaf_id: str, model: str,
         done: threading.Event) -> None:
    try:
        compact(deps, user_id, conversation_id, leaf_id, model)
    except Exception:  # the next turn compacts inline if it must; nothing is lost
        log.exception("Background compaction failed")
    finally:
        _release(conversation_id, done)


def _claim(conversation_id: str) -> threading.Event | None:
    with _lock:
        if conversation_id in _running:
            return None
        _running[conversation_id] = done = threading.Event()
        return done


def _release(conversation_id: str, done: threading.Event) -> None:
    with _lock:
        if _running.get(conversation_id) is done:
            del _running[conversation_id]
    done.set()


def _overflow(deps: TurnDeps, model: str, conversation: dict, history: list[dict]) -> list[dict]:
    """What to fold now so the next turn (about as long as the newest user message) stays under COMPACT_AT."""
    headroom = next((m["tokens"] for m in reversed(history) if m["role"] == "user"), 0)
    prompt = system_prompt(deps, conversation["user_id"], conversation["conversation_id"])
    return utils.overflow_due(history, conversation["summary"], prompt, turn_budget(deps, model),
                              headroom)


def _chat_model(deps: TurnDeps) -> str:
    return next((endpoint.model for endpoint in deps.providers.endpoints("chat")), "")
