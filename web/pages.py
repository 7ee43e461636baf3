"""Server-rendered pages."""
from __future__ import annotations

from flask import Blueprint, current_app, render_template

from . import shapes
from .context import current_user_id, get_store

bp = Blueprint("pages", __name__)


@bp.get("/")
def index():
    """The chat page, with the user's conversations rendered in the sidebar."""
    config = current_app.config["CHAT"]
    conversations = [shapes.conversation_summary(c) for c in get_store().list_conversations(current_user_id())]
    return render_template("index.html", conversations=conversations, config=config,
                           endpoint_configured=bool(config.OPENAI_BASE_URL))
