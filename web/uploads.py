"""`/upload_file`: type, size and content checks. Analysis arrives with the agents."""
from __future__ import annotations

from flask import Blueprint, abort, current_app, jsonify, request
from werkzeug.utils import secure_filename

import utils

bp = Blueprint("uploads", __name__)


@bp.post("/upload_file")
def upload_file():
    """Validate one uploaded text file; the file is read in memory and never stored."""
    config = current_app.config["CHAT"]
    upload = request.files.get("file")
    if upload is None:
        abort(400, "No file part in the request.")
    name = secure_filename(upload.filename or "")
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
    return jsonify(message="File was uploaded and validated. Analysis is not available yet.",
                   file_name=name, size_bytes=len(raw), encoding=encoding, characters=len(text))
