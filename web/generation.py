"""A reply's background task: run the turn, stream it to the conversation's room, then the after-reply
jobs (compaction, the title, the calibration probe). The reply is stored even if every client has gone."""
from __future__ import annotations

import logging

from flask import current_app

import logs
import metrics
from agents import compaction, offload, titler
from agents.turn import TurnDeps, run_turn

from . import generations
from .socket_emitter import SocketEmitter, user_room

log = logging.getLogger("chat.socket")


def start_generation(socketio, user_id, conversation_id, message_id, reply_id, document_id, model,
                     claiming=None) -> None:
    """`claiming`: the task writing the conversation's claim, if it is not written yet (a new
    conversation's: web/chat_events.py); the reply releases the claim only after it."""
    app = current_app._get_current_object()
    socketio.start_background_task(logs.carry(_generate), app, socketio, user_id, conversation_id, message_id, reply_id,
                                   document_id, model, claiming)


def _generate(app, socketio, user_id, conversation_id, message_id, reply_id, document_id=None,
              model=None, claiming=None) -> None:
    """Background task: the reply is stored even if every client has gone."""
    config, inflight = app.config["CHAT"], app.extensions["chat_inflight"]
    generations.started(reply_id, user_id, conversation_id)
    emitter = SocketEmitter(socketio, inflight, conversation_id, reply_id, config.STREAM_FLUSH_MS,
                            config.STREAM_FLUSH_MAX_MS, owner={"user_id": user_id, "message_id": message_id})
    deps = TurnDeps(app.extensions["chat_store"].get(), config, app.extensions["chat_providers"],
                    app.extensions["chat_calibration"])
    reply = None
    try:
        reply = run_turn(deps, user_id, conversation_id, message_id, reply_id, emitter,
                         stopped=emitter.stop_requested, attachment=document_id, model=model)
    except Exception:
        metrics.error("internal")
        log.exception("Generation failed")
        emitter.error("The reply failed unexpectedly. Your message is saved; please try again.")
    finally:
        if claiming is not None:
            offload.wait_for(claiming)
        inflight.finish(conversation_id, reply_id)
        generations.finished(reply_id)
    compaction.after_reply(deps, user_id, conversation_id, reply_id, model, socketio.start_background_task)
    if config.AUTO_TITLE:
        _retitle(socketio, deps, user_id, conversation_id)
    _run_followups(reply)


def _run_followups(reply) -> None:
    """The reply's after-turn jobs (a calibration probe); one failing never stops the next."""
    for job in reply.followups if reply is not None else ():
        try:
            job()
        except Exception:
            log.exception("An after-turn job failed")


def _retitle(socketio, deps: TurnDeps, user_id: str, conversation_id: str) -> None:
    """After the first exchange, a model-written title for every tab's sidebar (never fails the turn)."""
    try:
        title = titler.retitle(deps.store, deps.providers, user_id, conversation_id)
    except Exception:
        log.exception("Titling failed")
        return
    if title:
        socketio.emit("conversation_title", {"conversation_id": conversation_id, "title": title},
                      to=user_room(user_id))
