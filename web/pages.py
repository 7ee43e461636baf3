"""Server-rendered pages, and the front-end libraries they load (from node_modules, never a CDN)."""
from __future__ import annotations

import logging
from pathlib import Path

from flask import Blueprint, abort, current_app, render_template, request, send_from_directory

from semantic import hybrid

from . import shapes
from .context import current_user_id, get_store
from .conversations import MAX_QUERY

bp = Blueprint("pages", __name__)
log = logging.getLogger("chat.pages")
NODE_MODULES = Path(__file__).resolve().parent.parent / "node_modules"
# The only files /vendor serves: a fixed name -> a file an npm package installed (package.json).
VENDOR = {
    "socket.io.min.js": "socket.io-client/dist/socket.io.min.js",
    "marked.umd.js": "marked/lib/marked.umd.js",
    "purify.min.js": "dompurify/dist/purify.min.js",
    "highlight.min.js": "@highlightjs/cdn-assets/highlight.min.js",
    "highlight-light.css": "@highlightjs/cdn-assets/styles/a11y-light.min.css",
    "highlight-dark.css": "@highlightjs/cdn-assets/styles/a11y-dark.min.css",
}
SEARCH_RESULTS = 30


@bp.get("/")
def index():
    """The chat page, with the user's conversations rendered in the sidebar."""
    config = current_app.config["CHAT"]
    conversations = [shapes.conversation_summary(c) for c in get_store().list_conversations(current_user_id())]
    return render_template("index.html", conversations=conversations, config=config,
                           endpoint_configured=bool(config.OPENAI_BASE_URL),
                           allowed_extensions=sorted(config.ALLOWED_EXTENSIONS))


@bp.get("/search")
def search_page():
    """Conversation search without JavaScript: ranked hits with their matches marked."""
    query = request.args.get("q", "").strip()[:MAX_QUERY]
    mode = request.args.get("mode", "hybrid")
    mode = mode if mode in hybrid.MODES else "hybrid"
    hits, config = [], current_app.config["CHAT"]
    if query:
        if mode == "semantic" and hybrid.embedder(config) is None:
            mode = "keyword"  # the page still answers; the form shows which mode it used
        found = hybrid.search_conversations(get_store(), config, current_user_id(), query, mode, SEARCH_RESULTS)
        hits = [dict(shapes.search_hit(h), parts=marked_parts(h["snippet"], h["highlights"])) for h in found]
    return render_template("search.html", query=query, hits=hits, mode=mode, modes=hybrid.MODES)


def marked_parts(snippet: str, spans: list) -> list[tuple[str, bool]]:
    """The snippet as (text, is_match) pieces, for the template to escape and wrap in <mark>."""
    parts, at = [], 0
    for start, end in sorted(spans):
        if start < at or end > len(snippet):
            continue
        parts += [(snippet[at:start], False), (snippet[start:end], True)]
        at = end
    parts.append((snippet[at:], False))
    return [part for part in parts if part[0]]


@bp.get("/vendor/<name>")
def vendor(name: str):
    relative = VENDOR.get(name)
    if relative is None or not (NODE_MODULES / relative).is_file():
        abort(404, "Unknown front-end file." if relative is None else
              "Front-end libraries are not installed: run `make run` (or `npm ci`).")
    path = NODE_MODULES / relative
    return send_from_directory(path.parent, path.name, max_age=3600)


def check_vendor_files() -> list[str]:
    """Names whose file is missing, logged once at start-up so a broken page is explained."""
    missing = [name for name, relative in VENDOR.items() if not (NODE_MODULES / relative).is_file()]
    if missing:
        log.warning("Front-end libraries missing (%s): run `make run` or `npm ci` first", ", ".join(missing))
    return missing
