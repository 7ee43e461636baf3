"""Replies whose instance was killed mid-reply: stored by a surviving instance, never lost silently.

While an instance generates a reply it keeps a lease in Redis (`orphans:replies:<instance>`, one
field per reply: who asked, in which conversation, answering which message). An instance that
shuts down cleanly stores its replies itself (gunicorn.conf.py). One that is killed stops its
heartbeat (web/room_presence.py); the first surviving instance to notice takes its leases with
one RENAME (so only one does), stores each reply's text so far (read from the in-flight state
every instance shares) as `error`, releases the conversation and tells its tabs.
"""
from __future__ import annotations

import json
import logging

import redis

import utils
from agents import offload

LEASES_KEY = "orphans:replies:"
TAKEN_KEY = "orphans:taken:"
INTERRUPTED = "The server generating this reply stopped; the text above is what was received."

log = logging.getLogger("chat.orphans")


def lease(socketio, reply_id: str, owner: dict):
    """Record that this instance generates `reply_id` (owner: user_id, conversation_id, message_id).
    Written by a task of its own, returned for `release`: the reply does not wait for it (each
    round trip before the first token cost ~40 ms at p50 on a loaded instance)."""
    presence = _presence(socketio)
    if presence:
        return socketio.start_background_task(_quietly, lambda: presence.redis.hset(
            LEASES_KEY + presence.instance_id, reply_id, json.dumps(owner)))
    return None


def release(socketio, reply_id: str, leasing=None) -> None:
    """The reply no longer needs a survivor; `leasing` is lease()'s task, finished first (at once,
    unless the reply ended before its lease was written) so the lease is never written after."""
    presence = _presence(socketio)
    if presence:
        if leasing is not None:
            offload.wait_for(leasing)
        _quietly(lambda: presence.redis.hdel(LEASES_KEY + presence.instance_id, reply_id))


def sweeper(app):
    """The heartbeat's task: adopt the leases of every instance that stopped beating."""
    def sweep(presence) -> None:
        for dead in presence.dead_instances():
            taken = f"{TAKEN_KEY}{dead}:{presence.instance_id}"
            try:
                presence.redis.rename(LEASES_KEY + dead, taken)
            except redis.ResponseError:  # no leases, or another instance took them first
                presence.forget(dead)
                continue
            for reply_id, owner in presence.redis.hgetall(taken).items():
                store_interrupted(app, reply_id.decode(), json.loads(owner))
            presence.redis.delete(taken)
            presence.forget(dead)
    return sweep


def store_interrupted(app, reply_id: str, owner: dict) -> None:
    """Store the reply's text so far as `error` (a no-op if it was stored after all), free the
    conversation for the next message, and end the reply on every tab."""
    inflight, socketio = app.extensions["chat_inflight"], app.extensions["socketio"]
    conversation_id = owner["conversation_id"]
    snapshot = inflight.snapshot(conversation_id) or {}
    text = snapshot.get("text", "") if snapshot.get("message_id") == reply_id else ""
    store = app.extensions["chat_store"].get()
    store.append_message(owner["user_id"], conversation_id, "assistant", text,
                         tokens=utils.message_tokens("assistant", text), parent_message_id=owner["message_id"],
                         agent="chat", finish_reason="error", message_id=reply_id, meta={"notice": INTERRUPTED})
    inflight.finish(conversation_id, reply_id)
    log.warning("Stored reply %s of a stopped instance as error (%d characters)", reply_id, len(text))
    socketio.emit("response_done", {"message_id": reply_id, "finish_reason": "error", "agent": "chat",
                                    "meta": {"notice": INTERRUPTED}, "conversation_id": conversation_id},
                  to=f"conversation:{conversation_id}")


def _presence(socketio):
    return getattr(getattr(socketio.server, "manager", None), "presence", None)


def _quietly(action) -> None:
    try:
        action()
    except redis.RedisError as error:
        log.warning("Reply lease not written: %s", type(error).__name__)
