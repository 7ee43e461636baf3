"""Images attached to a message: `POST /images` before the message is sent, served back per user.

The page uploads each picked image with the `client_message_id` it will send the message with;
the image is stored under the message id that client id becomes (web/chat_events.py), so the
message and its images meet without the message carrying them. Each image is checked by its
first bytes, decoded under IMAGE_MAX_PIXELS and re-encoded without metadata (documents/images.py),
held in the upload quotas while it is stored, and refused (413, with the numbers) when it alone
would not fit the answering model's context. Another user's image answers 404, like a missing one.
"""
from __future__ import annotations

from datetime import timedelta

from flask import Blueprint, Response, abort, current_app, jsonify, request
from werkzeug.utils import secure_filename

from agents import offload, vision
from documents import images
from storage.base import utcnow

from . import quotas
from .chat_events import _message_id
from .context import current_user_id, get_store, owned_conversation
from .socket_common import short_id
from .uploads import read_capped

bp = Blueprint("images", __name__)
MAX_NAME = 200
PENDING = timedelta(hours=1)  # an image whose message has not come after this is swept


@bp.post("/images")
def upload_image():
    """Store one image for the message the page is about to send; 201 with its id, size and cost."""
    config = current_app.config["CHAT"]
    upload, client_id = request.files.get("file"), request.form.get("client_message_id")
    if upload is None:
        abort(400, "No file part in the request.")
    if not short_id(client_id):
        abort(400, "client_message_id must be a string of 1 to 100 characters: the id the message will be "
                   "sent with.")
    name = secure_filename(upload.filename or "")[:MAX_NAME]
    if not name or name.rsplit(".", 1)[-1].lower() not in images.EXTENSIONS or "." not in name:
        abort(400, f"Unsupported image type. Allowed: {', '.join(sorted(images.EXTENSIONS))}.")
    raw = read_capped(upload, config.IMAGE_MAX_MB, "The image")
    store, user_id = get_store(), current_user_id()
    message_id = _message_id(user_id, client_id)
    if store.get_message(user_id, message_id) is not None:
        abort(409, "That message was already sent; attach images before sending.")
    if len(store.message_images(user_id, [message_id])) >= config.IMAGES_PER_MESSAGE:
        abort(400, f"A message can carry at most {config.IMAGES_PER_MESSAGE} images.")
    try:
        picture = offload.run_blocking(images.clean, raw, config.IMAGE_MAX_PIXELS)
    except images.ImageRefused as error:
        abort(error.status, str(error))
    tokens = vision.image_tokens(picture.width, picture.height, config.IMAGE_DETAIL)
    _check_fits(tokens, config)
    store.sweep_images(user_id, utcnow() - PENDING)
    release = quotas.hold_upload(store, user_id, len(picture.data), config)
    try:
        image = store.add_image(user_id, message_id, name, picture.mime, picture.width, picture.height, picture.data)
    finally:
        release()  # stored: upload_bytes counts it from now on
    return jsonify(_public(image, tokens)), 201


@bp.get("/images/<image_id>")
def get_image(image_id: str):
    """The image's bytes, for its owner only (404 for anyone else)."""
    image = get_store().get_image(current_user_id(), image_id[:100])
    if image is None:
        abort(404, "Image not found.")
    response = Response(image["data"], mimetype=image["mime"])
    response.headers["Content-Disposition"] = f'inline; filename="{image["file_name"]}"'
    return response


@bp.delete("/images/<image_id>")
def delete_image(image_id: str):
    """Take an image off a message not sent yet (a sent message keeps its images: 409)."""
    store, user_id = get_store(), current_user_id()
    image = store.get_image(user_id, image_id[:100], data=False)
    if image is None:
        abort(404, "Image not found.")
    if store.get_message(user_id, image["message_id"]) is not None:
        abort(409, "This image belongs to a sent message; delete the conversation to remove it.")
    store.delete_image(user_id, image["image_id"])
    return jsonify(deleted=True, image_id=image["image_id"])


@bp.get("/conversations/<conversation_id>/images")
def conversation_images(conversation_id: str):
    """The images of a conversation's messages (every branch), for the thread's thumbnails and exports."""
    conversation = owned_conversation(conversation_id[:100])
    store, user_id = get_store(), current_user_id()
    found = references(store, user_id, store.list_messages(user_id, conversation["conversation_id"]))
    return jsonify(conversation_id=conversation["conversation_id"], images=found)


def references(store, user_id: str, messages: list[dict]) -> list[dict]:
    """The images of these messages as the page and exports name them: id, message, name, type,
    size, cost and URL, never the bytes."""
    detail = current_app.config["CHAT"].IMAGE_DETAIL
    ids = [m["message_id"] for m in messages if m["role"] == "user"]
    return [_public(image, vision.image_tokens(image["width"], image["height"], detail))
            for image in store.message_images(user_id, ids)]


def markdown_lines(found: list[dict], message_id: str) -> str:
    """A Markdown export's lines for one message's images (relative links to this server)."""
    return "".join(f"\n\n![{image['file_name']}]({image['url']})" for image in found if image["message_id"] == message_id)


def _check_fits(tokens: int, config) -> None:
    """413 when the image alone would not fit the answering model's context (with the numbers)."""
    choice = vision.choose(config, current_app.extensions["chat_providers"], None)
    model = choice.model or choice.asked
    room = config.context_window(model) - config.REPLY_TOKENS
    if tokens > room:
        abort(413, f"This image costs {tokens} tokens at detail {config.IMAGE_DETAIL}, but {model} has room for "
                   f"{room} after reserving {config.REPLY_TOKENS} for the reply. Send a smaller image, or set "
                   "IMAGE_DETAIL=low.")


def _public(image: dict, tokens: int) -> dict:
    return {"image_id": image["image_id"], "message_id": image["message_id"], "file_name": image["file_name"],
            "mime": image["mime"], "width": image["width"], "height": image["height"],
            "size_bytes": image["size_bytes"], "tokens": tokens, "url": f"/images/{image['image_id']}"}
