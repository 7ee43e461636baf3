"""HTTP side of the app: blueprints, identity, JSON errors."""
from __future__ import annotations

from flask import Flask


def register(app: Flask) -> None:
    """Attach every blueprint and hook to the app."""
    from . import context, conversations, errors, pages, system, uploads
    context.init_app(app)
    errors.init_app(app)
    for module in (pages, conversations, uploads, system):
        app.register_blueprint(module.bp)
