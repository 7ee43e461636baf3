"""HTTP side of the app: blueprints, identity, JSON errors."""
from __future__ import annotations

import functools

from flask import Flask
from flask_socketio import SocketIO


def register(app: Flask) -> None:
    """Attach every blueprint, hook and socket event to the app."""
    import metrics
    from agents import offload
    from agents.calibration import Calibration
    from agents.file_jobs import sweep_orphans
    from agents.providers import Providers
    from semantic import indexer as semantic_indexer

    from . import (
        accounts,
        context,
        conversations,
        errors,
        flush_pacer,
        generations,
        images,
        inflight,
        insights,
        limits,
        openapi,
        pages,
        security,
        steering,
        system,
        transfer,
        uploads,
    )
    context.init_app(app)
    errors.init_app(app)
    security.init_app(app)
    accounts.init_app(app)
    limits.init_app(app, app.config["CHAT"])
    for module in (pages, conversations, uploads, system, insights, transfer, openapi, steering, images):
        app.register_blueprint(module.bp)
    redis_client = app.config.get("SESSION_REDIS")
    socketio = app.extensions["socketio"]
    app.extensions["chat_inflight"] = (inflight.RedisInflight(redis_client, spawn=socketio.start_background_task)
                                       if redis_client else inflight.MemoryInflight())
    app.extensions["chat_calibration"] = Calibration()
    config = app.config["CHAT"]
    # the model's stream is read as often as the page is sent text: less often while the loop lags
    read_interval = functools.partial(flush_pacer.read_interval_s, socketio, config.STREAM_FLUSH_MS,
                                      config.STREAM_FLUSH_MAX_MS)
    app.extensions["chat_providers"] = Providers(config, redis_client, sleep=socketio.sleep,
                                                 client_options={"read_interval": read_interval})
    offload.configure(socketio.async_mode)
    sweep_orphans(uploads.upload_folder(app.config["CHAT"]))
    pages.check_vendor_files()
    metrics.GENERATIONS.set_function(generations.count)
    semantic_indexer.init_app(app, busy=lambda: generations.count() > 0)  # embeds in the background, replies first


def register_socket_events(socketio: SocketIO) -> None:
    """Once per process, before the first init_app: Flask-SocketIO re-applies only handlers
    registered while it had no server, to every server a later init_app creates."""
    from . import socket_events
    if not getattr(socketio, "_chat_events", False):
        socket_events.register(socketio)
        socketio._chat_events = True
