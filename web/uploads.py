"""`/upload_file` validates at once and answers with a job; `/jobs/<id>` reports on it (seed 004).

The file is decoded once, here, and its text saved under a random name in instance/uploads
(never under static/, never under the user's name); the job deletes it once it is analysed.
"""
from __future__ import annotations

import secrets
from pathlib import Path

from flask import Blueprint, abort, current_app, jsonify, request
from werkzeug.utils import secure_filename

import utils
from agents.file_jobs import UploadJob, run_upload_job, sweep_and_measure
from .context import current_user_id, get_store, owned_conversation
from .socket_events import user_room

bp = Blueprint("uploads", __name__)
MAX_NAME = 200


def upload_folder(config) -> Path:
    return Path(config.INSTANCE_PATH) / "uploads"


@bp.post("/upload_file")
def upload_file():
    """Validate one text file, save it, and start its analysis; 202 with the job id."""
    config = current_app.config["CHAT"]
    upload = request.files.get("file")
    if upload is None:
        abort(400, "No file part in the request.")
    name = secure_filename(upload.filename or "")[:MAX_NAME]
    if not name:
        abort(400, "No file selected.")
    if not utils.allowed_file(name, config.ALLOWED_EXTENSIONS):
        abort(400, f"Unsupported file type. Allowed: {', '.join(sorted(config.ALLOWED_EXTENSIONS))}.")
    limit = int(config.MAX_FILE_SIZE_MB * 1024 * 1024)
    raw = upload.stream.read(limit + 1)
    if len(raw) > limit:
        abort(413, f"File is larger than the {config.MAX_FILE_SIZE_MB:g} MB limit.")
    if not raw:
        abort(400, "The file is empty.")
    try:
        text, encoding = utils.decode_text(raw)
    except utils.NotText as error:
        abort(415, str(error))
    if not text.strip():
        abort(400, "The file contains only whitespace.")
    store, user_id = get_store(), current_user_id()
    _check_room(store, user_id, len(raw), config)
    conversation_id = _conversation_for(store, user_id, name)
    job = store.create_job(user_id, "file_analysis", conversation_id)
    path = _save(upload_folder(config), text.encode("utf-8"))
    _start(UploadJob(user_id, job["job_id"], conversation_id, path, name, len(raw), encoding))
    return jsonify(message="File was uploaded; its analysis has started.", job_id=job["job_id"],
                   status=job["status"], conversation_id=conversation_id, file_name=name,
                   size_bytes=len(raw), encoding=encoding, characters=len(text)), 202


@bp.get("/jobs/<job_id>")
def get_job(job_id: str):
    """pending, processing (with done/total), done (with the seed's message and analysis) or error."""
    job = get_store().get_job(current_user_id(), job_id[:100])
    if job is None:
        abort(404, "Job not found.")
    body = {key: job[key] for key in ("job_id", "kind", "status", "done", "total", "conversation_id")}
    if job["status"] == "done":
        body.update(job["result"] or {})
    elif job["status"] == "error":
        body["message"] = job["error"]
    return jsonify(body)


def _check_room(store, user_id: str, size: int, config) -> None:
    """The user's quota and the app's total cap (stored uploads plus files waiting for their job);
    413 with what is used, so the user knows what to delete."""
    mb = 1024 * 1024
    used = store.upload_bytes(user_id)
    if used + size > config.UPLOAD_QUOTA_MB * mb:
        abort(413, f"Your uploads use {used / mb:.1f} MB of your {config.UPLOAD_QUOTA_MB:g} MB; this file "
                   f"needs {size / mb:.1f} MB more. Delete conversations with uploads you no longer need.")
    waiting = sweep_and_measure(upload_folder(config))
    if store.upload_bytes(None) + waiting + size > config.UPLOAD_TOTAL_MB * mb:
        abort(413, "This server's upload storage is full. Ask its administrator, or try again later.")


def _conversation_for(store, user_id: str, file_name: str) -> str:
    conversation_id = request.form.get("conversation_id")
    if conversation_id:
        return owned_conversation(conversation_id[:100])["conversation_id"]
    return store.create_conversation(user_id, file_name[:60])["conversation_id"]


def _save(folder: Path, data: bytes) -> Path:
    """A random, unguessable name; readable by this process's user only."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{secrets.token_hex(16)}.upload"
    path.touch(mode=0o600)
    path.write_bytes(data)
    return path


def _start(job: UploadJob) -> None:
    app = current_app._get_current_object()
    socketio = app.extensions["socketio"]

    def notify(event: str, payload: dict) -> None:
        socketio.emit(event, payload, to=user_room(job.user_id))

    socketio.start_background_task(run_upload_job, app.extensions["chat_store"].get(),
                                   app.extensions["chat_providers"], app.config["CHAT"], job, notify)
