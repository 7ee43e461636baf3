"""Production server: `gunicorn -c gunicorn.conf.py app:app`.

- One worker per gunicorn instance. gunicorn balances connections between its workers, and a
  Socket.IO client's long-polling requests must all reach the worker that holds its session
  (Flask-SocketIO's deployment notes), so scale out by running more instances behind a sticky
  load balancer (deploy/nginx.conf: sticky by the session cookie) with REDIS_URL set, which makes Socket.IO's
  message queue and the in-flight replies shared.
- WORKER_CLASS: `eventlet` (default; gunicorn 26 removed this worker,
  so requirements.txt pins gunicorn 25) or `gevent`. The app's ASYNC_MODE follows it.
- WORKER_CONNECTIONS is the worker's pool size, i.e. the most clients served at once (gunicorn's
  default of 1000 would cap us at exactly the load target). Socket.IO connections stop at
  MAX_SOCKETS (default: 90% of it, at least 100 kept back), so HTTP requests such as
  /health/live always find a free slot however many sockets are open (web/socket_guard.py).
- Shutdown: on SIGTERM gunicorn stops accepting, and replies in flight keep streaming for up to
  GRACEFUL_TIMEOUT seconds; whatever is still generating then is stopped and stored as stopped
  (worker_exit below), so no reply is lost half-written.
- HOST, PORT and everything else come from the environment or .env, as for `python app.py`.
"""
from __future__ import annotations

import os
import resource
from pathlib import Path

from dotenv import load_dotenv

load_dotenv(Path(__file__).resolve().parent / ".env")

WORKER_CLASSES = ("eventlet", "gevent")
worker_type = os.environ.get("WORKER_CLASS", "eventlet").strip().lower()
if worker_type not in WORKER_CLASSES:
    raise SystemExit(f"configuration error: WORKER_CLASS must be eventlet or gevent, got {worker_type!r}")
os.environ["ASYNC_MODE"] = worker_type  # the app's Socket.IO mode must match the worker
worker_connections = int(os.environ.get("WORKER_CONNECTIONS", "10000"))
# Sockets stop at MAX_SOCKETS, so the rest of the pool always serves HTTP (/health/live, pages).
if not os.environ.get("MAX_SOCKETS", "").strip():
    os.environ["MAX_SOCKETS"] = str(max(1, worker_connections - max(100, worker_connections // 10)))

from config import Config, ConfigError

try:  # a bad setting stops the master with one line, instead of a worker crash-looping
    _settings = Config().validate()
    if not 0 < _settings.MAX_SOCKETS < worker_connections:
        raise ConfigError(f"MAX_SOCKETS must be between 1 and WORKER_CONNECTIONS - 1 ({worker_connections - 1}), "
                          f"so HTTP requests always have room; got {_settings.MAX_SOCKETS}")
except ConfigError as error:
    raise SystemExit(f"configuration error: {error}") from None

bind = f"{os.environ.get('HOST', '127.0.0.1')}:{os.environ.get('PORT', '5000')}"
worker_class = worker_type
workers = 1
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "120"))
graceful_timeout = int(os.environ.get("GRACEFUL_TIMEOUT", "30"))
keepalive = 5
control_socket_disable = True  # gunicorn 25 would otherwise write ~/.gunicorn/gunicorn.ctl
accesslog = "-" if os.environ.get("ACCESS_LOG", "false").lower() in ("1", "true", "yes", "on") else None
access_log_format = '%(h)s "%(r)s" %(s)s %(b)s %(L)ss request_id=%({x-request-id}o)s'
worker_tmp_dir = "/dev/shm" if os.path.isdir("/dev/shm") else None  # heartbeat file; gunicorn's container advice
loglevel = os.environ.get("LOG_LEVEL", "info").lower()


def post_fork(server, worker) -> None:
    """Each client holds a socket: allow as many open files as the hard limit permits."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = worker_connections + 1024
    if soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(wanted, hard), hard))


def post_worker_init(worker) -> None:
    """Watch for shutdown from inside the worker: gunicorn's master kills the worker when
    GRACEFUL_TIMEOUT ends, so replies must be stopped and stored before that, not after."""
    socketio = worker.wsgi.extensions["socketio"]
    socketio.start_background_task(_finish_replies_at_shutdown, worker, socketio)


def _finish_replies_at_shutdown(worker, socketio) -> None:
    from web.generations import finish_or_stop
    while worker.alive:
        socketio.sleep(0.2)
    margin = min(3.0, graceful_timeout / 2)  # time kept back to stop and store what is left
    stopped = finish_or_stop(worker.wsgi, let_finish_s=graceful_timeout - margin, stop_s=margin * 0.8)
    if stopped:
        worker.log.info("Stopped %d reply(ies) still generating at shutdown; stored as stopped", stopped)
