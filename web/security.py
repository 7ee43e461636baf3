"""Browser-facing protections: CSRF tokens on state-changing routes, strict response headers.

Every response is `Cache-Control: no-store` (pages, exports, JSON: someone's data, which no shared
or browser cache should keep) except the public files: /static and /vendor. On disk, the instance
folder and the uploads and sessions folders in it are made readable by this account only.

The page has no inline script or style (issue 5 kept it so), which lets the policy forbid both:
an injected `<script>` or `onerror=` would not run even if it got past the sanitiser. Images
are limited to this origin and data: URLs, so a reply cannot make the browser call a tracker.
"""
from __future__ import annotations

from flask import Flask, request
from flask_wtf.csrf import CSRFProtect

from instance_files import private_instance

CONTENT_SECURITY_POLICY = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",  # frame-ancestors for browsers that predate CSP 2
    "Referrer-Policy": "same-origin",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=()",
}
CACHEABLE_ENDPOINTS = frozenset({"static", "pages.vendor"})  # the same files for everyone
csrf = CSRFProtect()


def init_app(app: Flask) -> None:
    """CSRF on every POST/PUT/PATCH/DELETE: the token from `<meta name="csrf-token">` comes back
    in the X-CSRFToken header (or a form's csrf_token field); a missing or wrong one is a 400."""
    csrf.init_app(app)
    app.after_request(_headers)
    private_instance(app.config["CHAT"].INSTANCE_PATH)  # 0700: conversations, uploads, sessions


def _headers(response):
    for name, value in HEADERS.items():
        response.headers.setdefault(name, value)
    if request.endpoint not in CACHEABLE_ENDPOINTS:
        response.headers.setdefault("Cache-Control", "no-store")
    return response
