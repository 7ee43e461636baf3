"""`/upload_file` validates at once and answers with a job; `/jobs/<id>` reports on it.

A text file is decoded once, here, and its text saved under a random name in instance/uploads
(never under static/, never under the user's name); a PDF or DOCX is saved as it came, once its
first bytes agree with its name (documents/kinds.py), and its job reads its text in a bounded
worker process (documents/extract.py). The job deletes the saved file once it is analysed.
Before anything is saved, the upload counts as a message (the message rate) and as model work
running at once (the per-user cap replies count against), and its bytes are held in the upload
quotas (web/quotas.py) until its job has stored them: concurrent uploads cannot all pass.
"""
from __future__ import annotations

import secrets
from pathlib import Path

from flask import Blueprint, abort, current_app, jsonify, request
from werkzeug.utils import secure_filename

import utils
from agents.file_jobs import UploadJob, run_upload_job, sweep_orphans
from documents import kinds

from . import generations, quotas
from .context import current_user_id, get_store, owned_conversation
from .quotas import QuotaExceeded, Release
from .socket_events import user_room

bp = Blueprint("uploads", __name__)
MAX_NAME = 200
BUSY = ("You already have {cap} replies or file analyses running. Wait for one to finish, then upload "
        "again.")


def upload_folder(config) -> Path:
    return Path(config.INSTANCE_PATH) / "uploads"


@bp.post("/upload_file")
def upload_file():
    """Validate one file (text, PDF or DOCX), save it, and start its analysis; 202 with the job id."""
    config = current_app.config["CHAT"]
    upload = request.files.get("file")
    if upload is None:
        abort(400, "No file part in the request.")
    name = secure_filename(upload.filename or "")[:MAX_NAME]
    if not name:
        abort(400, "No file selected.")
    if not utils.allowed_file(name, config.ALLOWED_EXTENSIONS):
        abort(400, f"Unsupported file type. Allowed: {', '.join(sorted(config.ALLOWED_EXTENSIONS))}.")
    raw = read_capped(upload, config.MAX_FILE_SIZE_MB, "File")
    kind = kinds.kind_of(name)
    saved, encoding, characters = _content(kind, name, raw)
    store, user_id = get_store(), current_user_id()
    release_quota, release_slot = _claim(store, user_id, len(raw), config)
    try:
        conversation_id = _conversation_for(store, user_id, name)
        job = store.create_job(user_id, "file_analysis", conversation_id)
        path = _save(upload_folder(config), saved)
        _start(UploadJob(user_id, job["job_id"], conversation_id, path, name, len(raw), encoding,
                         release_quota=release_quota, release_slot=release_slot, kind=kind))
    except BaseException:  # the job never started: it cannot give the holds back itself
        release_quota()
        release_slot()
        raise
    return jsonify(message="File was uploaded; its analysis has started.", job_id=job["job_id"],
                   status=job["status"], conversation_id=conversation_id, file_name=name,
                   size_bytes=len(raw), encoding=encoding, characters=characters), 202


@bp.get("/jobs/<job_id>")
def get_job(job_id: str):
    """pending, processing (with done/total), done (with the contract's message and analysis) or error."""
    job = get_store().get_job(current_user_id(), job_id[:100])
    if job is None:
        abort(404, "Job not found.")
    body = {key: job[key] for key in ("job_id", "kind", "status", "done", "total", "conversation_id")}
    if job["status"] == "done":
        body.update(job["result"] or {})
    elif job["status"] == "error":
        body["message"] = job["error"]
    return jsonify(body)


def read_capped(upload, limit_mb: float, what: str) -> bytes:
    """The upload's bytes: 413 past `limit_mb` (read no further than one byte over), 400 when empty."""
    limit = int(limit_mb * 1024 * 1024)
    raw = upload.stream.read(limit + 1)
    if len(raw) > limit:
        abort(413, f"{what} is larger than the {limit_mb:g} MB limit.")
    if not raw:
        abort(400, "The file is empty.")
    return raw


def _content(kind: str, name: str, raw: bytes) -> tuple[bytes, str, int | None]:
    """What to save, what it was decoded from, its characters; 415 when the first bytes do not
    agree with the name. A PDF or DOCX is saved as it came (its encoding is its kind; its characters
    are counted by its job); a text file is decoded (415 when it is not text)."""
    try:
        kinds.check_signature(kind, name, raw)
    except kinds.WrongType as error:
        abort(415, str(error))
    if kind != "text":
        return raw, kind, None
    try:
        text, encoding = utils.decode_text(raw)
    except utils.NotText as error:
        abort(415, str(error))
    if not text.strip():
        abort(400, "The file contains only whitespace.")
    return text.encode("utf-8"), encoding, len(text)


def _claim(store, user_id: str, size: int, config) -> tuple[Release, Release]:
    """The message rate and the per-user cap on model work running at once (an upload's analysis
    is model work like a reply: 429), then the upload quotas, held until the job has stored the
    file (413). Returns the functions that give the quota hold and the work slot back."""
    refusal = current_app.extensions["chat_message_limits"].refusal(user_id, request.remote_addr)
    if refusal:
        raise QuotaExceeded(refusal["message"], 429, refusal["retry_after"])
    work_id = f"upload:{secrets.token_hex(8)}"
    cap = config.MAX_CONCURRENT_GENERATIONS if config.RATELIMIT_ENABLED else None
    if not generations.try_start(work_id, user_id, cap):
        raise QuotaExceeded(BUSY.format(cap=cap), 429, 1)
    try:
        sweep_orphans(upload_folder(config))  # at every upload, so orphans never pile up between restarts
        return quotas.hold_upload(store, user_id, size, config), lambda: generations.finished(work_id)
    except BaseException:
        generations.finished(work_id)
        raise


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
