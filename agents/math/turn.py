"""The math agent inside a chat turn: no model call, so it works with no endpoint configured."""
from __future__ import annotations

import logging

from agents.turn_types import Reply, Turn

from . import pool
from .agent import MathRefused, NotMath, solve_math

log = logging.getLogger("chat.agent.math")
NOT_READABLE = ("I could not read that as a calculation. Try an expression such as “(42 * 2) / 6”, "
                "“sqrt(144)”, “15% of 80”, “solve 2x + 5 = 15” or “derivative of x^3”.")


def answer(turn: Turn, explicit: bool) -> Reply | None:
    """The worked answer; None hands the message to general chat (a pattern matched, but it was
    not maths we can do, and there is a model that can talk about it)."""
    config = turn.deps.config
    pool.configure(config.MATH_WORKERS, config.MATH_QUEUE_WAIT_S)
    try:
        result = solve_math(turn.text, user=turn.user_id)
    except MathRefused as refusal:
        return turn.say(str(refusal), "math", {"math": {"refused": True}})
    except NotMath:
        if not explicit and turn.clients.get("chat") is not None:
            log.info("Math pattern matched but the text is not a calculation; handing over to chat")
            return None
        return turn.say(NOT_READABLE, "math", {"math": {"refused": True}})
    return turn.say(result.text, "math", {"math": {"kind": result.kind, "result": result.result}})
