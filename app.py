"""Application factory and the `python app.py` entry point.

`gunicorn app:app` finds `app` through the module-level __getattr__ below, so importing
this module builds nothing and connects to nothing.
"""
from __future__ import annotations

import gc
import logging
import sys

from flask import Flask
from flask_socketio import SocketIO

import logs
import utils
from config import Config, ConfigError

socketio = SocketIO()
log = logging.getLogger("chat")


def create_app(config: Config | None = None) -> Flask:
    """Build the app from a validated Config; no database is touched until first use."""
    config = (config or Config()).validate()
    logs.configure(config)
    app = Flask(__name__, instance_path=str(config.INSTANCE_PATH))
    app.config.update(config.flask_settings())
    app.config["CHAT"] = config
    from web import register, register_socket_events, sessions, socket_guard, socket_sessions
    logs.init_app(app)  # first, so every later hook and handler logs with the request id
    sessions.init_app(app, config)
    register_socket_events(socketio)
    # manage_session=False: socket handlers read the same server-side session as HTTP routes.
    # Origins: the page's own (None: engine.io compares Origin with Host) plus ALLOWED_ORIGINS.
    origins = _own_origin_or(config.ALLOWED_ORIGINS) if config.ALLOWED_ORIGINS else None
    socketio.init_app(app, client_manager=_client_manager(config, app), cors_allowed_origins=origins,
                      manage_session=False, async_mode=config.ASYNC_MODE, logger=False, engineio_logger=False)
    register(app)
    socket_guard.init_app(app, socketio.server)  # in front of Engine.IO: floods and caps (docs/ARCHITECTURE.md decision 10)
    socket_sessions.init_app(app)
    _settle()
    return app


def _settle() -> None:
    """Load the tokenizer now (~0.2 s) rather than in the first user's request, then move every
    object that lives as long as the process out of the garbage collector's scans: a full
    collection in a busy worker then takes ~1 ms instead of ~30 ms, which under eventlet or
    gevent is time every connected client waits (benchmarks/file_bench.py)."""
    utils.encoding()
    gc.freeze()


def _own_origin_or(allowed: list[str]):
    """An origin check accepting the request's own origin or one of `allowed`."""
    def check(origin: str, environ: dict) -> bool:
        own = f"{environ.get('wsgi.url_scheme', 'http')}://{environ.get('HTTP_HOST', '')}"
        return origin in allowed or origin == own
    return check


def _client_manager(config: Config, app: Flask):
    """Redis as Socket.IO's queue when configured, so rooms span instances, publishing only what
    another instance needs (web/socket_queue.py); its heartbeat stores the replies of instances
    that were killed (web/orphans.py). Explicit every time, because the shared SocketIO object
    would otherwise keep an earlier app's manager."""
    if not config.REDIS_URL:
        return None
    from web import orphans
    from web.socket_queue import PresenceRedisManager
    return PresenceRedisManager(config.REDIS_URL, config.INSTANCE_TTL_S, prefixes=("conversation:", "user:"),
                                on_beat=orphans.sweeper(app))


def _build_or_exit() -> Flask:
    try:
        return create_app()
    except ConfigError as error:
        print(f"configuration error: {error}", file=sys.stderr)
        raise SystemExit(2) from None


_app: Flask | None = None


def __getattr__(name: str):
    """Build `app` on first access (gunicorn's `app:app`), once per process."""
    global _app
    if name != "app":
        raise AttributeError(name)
    if _app is None:
        _app = _build_or_exit()
    return _app


if __name__ == "__main__":
    application = _build_or_exit()
    settings = application.config["CHAT"]
    log.info("Serving on http://%s:%s (store: %s)", settings.HOST, settings.PORT,
             "mongodb" if settings.MONGODB_URI else "sqlite")
    socketio.run(application, host=settings.HOST, port=settings.PORT, allow_unsafe_werkzeug=True)
