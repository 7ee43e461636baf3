"""`GET /openapi.json`: the REST API as OpenAPI 3, assembled with apispec from the app's own routes.

Paths, methods and path parameters come from Flask's URL map, so a route cannot be missing or
differ from the code; what each operation takes and answers is described here, next to the
route list, and tests/test_openapi.py fails when a route has no description (or a description
has no route). schemathesis fuzzes the API from this document in CI.
"""
from __future__ import annotations

import re

from apispec import APISpec
from flask import Blueprint, current_app, jsonify

bp = Blueprint("openapi", __name__)
UNDOCUMENTED = {"static"}  # Flask's own static files
# Also posted by the pages' forms: those get the page again (HTML) on an error, a 303 on success.
FORM_POSTS = {"accounts.login", "accounts.register", "accounts.logout"}


def _ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict | str, description: str = "OK") -> dict:
    return {"description": description,
            "content": {"application/json": {"schema": _ref(schema) if isinstance(schema, str) else schema}}}


def _body(schema: dict, required: bool = True) -> dict:
    return {"required": required, "content": {"application/json": {"schema": schema}}}


def _text(media_type: str, description: str = "OK") -> dict:
    return {"description": description, "content": {media_type: {"schema": {"type": "string"}}}}


def _obj(properties: dict, required: tuple = ()) -> dict:
    return {"type": "object", "properties": properties, **({"required": list(required)} if required else {})}


STRING, INTEGER, BOOLEAN = {"type": "string"}, {"type": "integer"}, {"type": "boolean"}
NULLABLE_STRING = {"type": "string", "nullable": True}
IMAGE = {"type": "object", "properties": {  # web/images.py
    "image_id": STRING, "message_id": STRING, "file_name": STRING, "mime": STRING, "width": INTEGER,
    "height": INTEGER, "size_bytes": INTEGER, "tokens": INTEGER, "url": STRING}}
MESSAGE_ONLY = _obj({"message": STRING}, ("message",))
CONVERSATION_ID = _obj({"conversation_id": STRING})
QUERY = {"name": "q", "in": "query", "schema": {"type": "string"}}

SCHEMAS = {
    "Error": MESSAGE_ONLY,
    "ConversationSummary": _obj({"conversation_id": STRING, "title": STRING, "created_at": STRING,
                                 "updated_at": STRING, "message_count": INTEGER, "total_tokens": INTEGER},
                                ("conversation_id", "title", "message_count", "total_tokens")),
    "Message": _obj({"message_id": STRING, "role": {"type": "string", "enum": ["user", "assistant", "system"]},
                     "content": STRING, "created_at": STRING, "tokens": INTEGER, "agent": NULLABLE_STRING,
                     "finish_reason": NULLABLE_STRING, "parent_message_id": NULLABLE_STRING,
                     "meta": {"type": "object", "nullable": True}},
                    ("message_id", "role", "content")),
    "Conversation": {"allOf": [_ref("ConversationSummary"), _obj({
        "summary": {"type": "object", "nullable": True},
        "conversation": {"type": "array", "items": _ref("Message")}}, ("conversation",))]},
    "SearchHit": _obj({"conversation_id": STRING, "title": STRING, "score": {"type": "number"},
                       "message_id": NULLABLE_STRING, "snippet": STRING,
                       "highlights": {"type": "array", "items": {"type": "array", "items": INTEGER}},
                       "match": {"type": "string", "enum": ["keyword", "meaning", "both"]}},
                      ("conversation_id", "title", "snippet", "highlights")),
    "Job": _obj({"job_id": STRING, "kind": STRING, "status": {"type": "string",
                                                             "enum": ["pending", "processing", "done", "error"]},
                 "done": INTEGER, "total": INTEGER, "conversation_id": NULLABLE_STRING},
                ("job_id", "status")),
    "Account": _obj({"message": STRING, "username": STRING, "csrf_token": STRING}, ("message",)),
}
CREDENTIALS = _obj({"username": {"type": "string", "minLength": 3, "maxLength": 40},
                    "password": {"type": "string", "minLength": 8, "maxLength": 200}},
                   ("username", "password"))
REGISTRATION = _obj({**CREDENTIALS["properties"],
                     "invite": {"type": "string", "maxLength": 100,
                                "description": "Required when registration is by invite"}},
                    ("username", "password"))
IMPORT_BODY = {"type": "object", "properties": {"file": {"type": "string", "format": "binary"}}}
HTML = _text("text/html", "A page")

BUDGET = _json(_obj({name: INTEGER for name in (
    "window", "reply_tokens", "prompt_room", "system_tokens", "pinned_tokens", "format_tokens", "summary_tokens",
    "verbatim_tokens", "verbatim_count")} | {"model": STRING, "ratio": {"type": "number"},
                                             "compact_at": {"type": "number"}, "summary_last_message_id": NULLABLE_STRING},
    ("window", "reply_tokens", "prompt_room", "system_tokens", "summary_tokens", "verbatim_tokens")))
MODEL_QUERY = {"name": "model", "in": "query", "schema": {"type": "string", "minLength": 1, "maxLength": 200}}
SUMMARY_VIEW = _json(_obj({"summary": {"type": "object", "nullable": True},
                           "pinned_facts": {"type": "array", "items": STRING}, "pinned_tokens": INTEGER},
                          ("summary", "pinned_facts", "pinned_tokens")))
STEERING = {  # web/steering.py: the meter, the summary and pinned facts
    "steering.new_budget": {"get": ("What a new conversation's first request carries before the message",
                                    None, {200: BUDGET}, [MODEL_QUERY])},
    "steering.budget": {"get": ("What the next request on a branch carries before the new message", None,
                                {200: BUDGET}, [{"name": "leaf", "in": "query", "schema": {
                                    "type": "string", "minLength": 1, "maxLength": 100}}, MODEL_QUERY])},
    "steering.count_tokens": {"post": ("A draft's size as a user message", _body(_obj(
        {"text": {"type": "string", "maxLength": 200000}}, ("text",))), {200: _json(_obj({"tokens": INTEGER},
                                                                                     ("tokens",)))}, [])},
    "steering.get_summary": {"get": ("The rolling summary and the pinned facts", None, {200: SUMMARY_VIEW}, [])},
    "steering.edit_summary": {"put": ("Replace the summary's text (409: none yet, or it moved)", _body(_obj(
        {"content": {"type": "string", "maxLength": 20000}}, ("content",))), {200: SUMMARY_VIEW}, [])},
    "steering.set_pins": {"put": ("Replace the pinned facts", _body(_obj(
        {"facts": {"type": "array", "maxItems": 20, "items": {"type": "string", "maxLength": 500}}}, ("facts",))),
        {200: SUMMARY_VIEW}, [])},
}

# endpoint -> {method: (summary, request body or None, {status: response}, query parameters)}
OPERATIONS: dict[str, dict[str, tuple]] = {
    "pages.index": {"get": ("The chat page", None, {200: HTML}, [{"name": "c", "in": "query",
                                                                  "schema": STRING}])},
    "pages.search_page": {"get": ("The search page", None, {200: HTML}, [QUERY])},
    "pages.vendor": {"get": ("A front-end library the page loads", None,
                             {200: _text("application/javascript")}, [])},
    "conversations.start_conversation": {"post": (
        "Start a conversation", _body(_obj({"title": STRING}), required=False),
        {200: _json(_obj({"message": STRING, "conversation_id": STRING}, ("conversation_id",)))}, [])},
    "conversations.reset_conversation": {"post": (
        "Clear a conversation's messages", _body(CONVERSATION_ID, required=False), {200: _json("Error")}, [])},
    "conversations.list_conversations": {"get": (
        "The user's conversations, newest activity first", None,
        {200: _json(_obj({"conversations": {"type": "array", "items": _ref("ConversationSummary")}},
                         ("conversations",)))},
        [{"name": "limit", "in": "query", "schema": INTEGER}, {"name": "offset", "in": "query", "schema": INTEGER}])},
    "conversations.load_conversation": {"get": ("A conversation with every message", None,
                                                {200: _json("Conversation")}, [])},
    "conversations.rename_conversation": {"patch": (
        "Rename", _body(_obj({"title": STRING}, ("title",))),
        {200: _json(_obj({"message": STRING, "conversation_id": STRING, "title": STRING}))}, [])},
    "conversations.delete_conversation": {"delete": (
        "Delete with every message", None, {200: _json(_obj({"message": STRING, "conversation_id": STRING}))}, [])},
    "conversations.save_history": {"post": (
        "The conversation as a JSON download", _body(CONVERSATION_ID, required=False), {200: _json("Conversation")},
        [])},
    "conversations.search_conversations": {"get": (
        "Ranked search: full-text, by meaning (vectors), or both fused (hybrid, the default)", None,
        {200: _json(_obj({"conversations": {"type": "array", "items": _ref("SearchHit")}}, ("conversations",)))},
        [{**QUERY, "required": True}, {"name": "limit", "in": "query", "schema": INTEGER},
         {"name": "mode", "in": "query", "schema": {"type": "string", "enum": ["hybrid", "keyword", "semantic"]}}])},
    "conversations.add_few_shot_example": {"post": (
        "Append a user/assistant example pair",
        _body(_obj({"user_prompt": STRING, "assistant_response": STRING, "conversation_id": STRING},
                   ("user_prompt", "assistant_response"))),
        {200: _json(_obj({"message": STRING, "conversation_id": STRING}))}, [])},
    "uploads.upload_file": {"post": (
        "Upload a text file for analysis (202: the job)",
        {"required": True, "content": {"multipart/form-data": {"schema": _obj(
            {"file": {"type": "string", "format": "binary"}, "conversation_id": STRING}, ("file",))}}},
        {202: _json(_obj({"message": STRING, "job_id": STRING, "status": STRING, "conversation_id": STRING,
                          "file_name": STRING, "size_bytes": INTEGER, "encoding": STRING}, ("job_id",)))}, [])},
    "uploads.get_job": {"get": ("An upload job's progress or result", None, {200: _json("Job")}, [])},
    "images.upload_image": {"post": (
        "Attach a PNG, JPEG, WebP or GIF image to the message about to be sent with client_message_id (201)",
        {"required": True, "content": {"multipart/form-data": {"schema": _obj(
            {"file": {"type": "string", "format": "binary"}, "client_message_id": STRING},
            ("file", "client_message_id"))}}}, {201: _json(IMAGE)}, [])},
    "images.get_image": {"get": ("An image's bytes (its owner only)", None, {200: {"description": "The image",
                                 "content": {"image/*": {"schema": {"type": "string", "format": "binary"}}}}}, [])},
    "images.delete_image": {"delete": ("Take an image off a message not sent yet", None,
                                       {200: _json(_obj({"deleted": BOOLEAN, "image_id": STRING}))}, [])},
    "images.conversation_images": {"get": ("The images of a conversation's messages", None, {200: _json(_obj(
        {"conversation_id": STRING, "images": {"type": "array", "items": IMAGE}}))}, [])},
    "system.get_config": {"get": ("Limits the page needs (never secrets)", None, {200: _json(_obj({
        "max_tokens": INTEGER, "reply_tokens": INTEGER, "max_file_size_mb": {"type": "number"},
        "allowed_extensions": {"type": "array", "items": STRING}, "model": STRING,
        "endpoint_configured": BOOLEAN}))}, [])},
    "system.health": {"get": ("Store, Redis and model endpoint status", None,
                              {200: _json(_obj({"status": STRING})), 503: _json(_obj({"status": STRING}))}, [])},
    "system.live": {"get": ("Liveness", None, {200: _json(_obj({"status": STRING}))}, [])},
    "system.ready": {"get": ("Readiness", None, {200: _json(_obj({"status": STRING})),
                                                 503: _json(_obj({"status": STRING}))}, [])},
    "system.prometheus_metrics": {"get": ("Prometheus metrics", None, {200: _text("text/plain")}, [])},
    "openapi.openapi": {"get": ("This document", None, {200: _json({"type": "object"})}, [])},
    "insights.models": {"get": ("The models the page may offer", None, {200: _json(_obj({
        "models": {"type": "array", "items": STRING}, "default": NULLABLE_STRING, "configured": BOOLEAN}))}, [])},
    "insights.conversation_stats": {"get": ("Replies, latency and tokens per agent", None, {200: _json(_obj({
        "conversation_id": STRING, "total_tokens": INTEGER, "message_count": INTEGER,
        "summary_tokens": INTEGER, "agents": {"type": "array", "items": {"type": "object"}}}))}, [])},
    "transfer.export_conversation": {"get": (
        "Download as JSON (every branch) or Markdown (one thread)", None,
        {200: {"description": "The export", "content": {"application/json": {"schema": {"type": "object"}},
                                                        "text/markdown": {"schema": STRING}}}},
        [{"name": "format", "in": "query", "schema": {"type": "string", "enum": ["json", "md"]}},
         {"name": "leaf", "in": "query", "schema": STRING}])},
    "transfer.import_conversations": {"post": (
        "Import our export or ChatGPT's conversations.json",
        {"required": True, "content": {"multipart/form-data": {"schema": IMPORT_BODY},
                                       "application/json": {"schema": {}}}},
        {200: _json(_obj({"message": STRING, "conversations": {"type": "array", "items": {"type": "object"}},
                          "skipped": INTEGER}))}, [])},
    "accounts.login_page": {"get": ("The log-in page", None, {200: HTML}, [])},
    "accounts.register_page": {"get": ("The registration page", None, {200: HTML}, [])},
    "accounts.account": {"get": ("Who this browser is", None, {200: _json(_obj({
        "authenticated": BOOLEAN, "username": NULLABLE_STRING, "auth_required": BOOLEAN,
        "registration": {"type": "string", "enum": ["open", "invite", "closed"]}}))}, [])},
    "accounts.register": {"post": (("Create an account (this browser's conversations become its); 403 when "
                                   "registration is closed or the invite code is not valid"),
                                   _body(REGISTRATION), {201: _json("Account")}, [])},
    "invites.create_invite": {"post": (
        "The admin creates a single-use invite code (shown once)",
        _body(_obj({"expires_in_days": {"type": "integer", "minimum": 1, "maximum": 90}}), required=False),
        {201: _json(_obj({"message": STRING, "code": STRING, "expires_at": STRING},
                         ("message", "code", "expires_at")))}, [])},
    "accounts.login": {"post": ("Log in (this browser's anonymous conversations move in)", _body(CREDENTIALS),
                                {200: _json("Account")}, [])},
    "accounts.logout": {"post": ("A new, anonymous session", None, {200: _json("Account")}, [])},
    **STEERING,
}


def build_spec(app) -> dict:
    spec = APISpec(title="Chat Application", version="1.0.0", openapi_version="3.0.3",
                   info={"description": "Every error is JSON {\"message\"} with a 4xx status. State-changing "
                                        "requests send the page's CSRF token in X-CSRFToken."})
    for name, schema in SCHEMAS.items():
        spec.components.schema(name, schema)
    for rule in sorted(app.url_map.iter_rules(), key=lambda r: r.rule):
        if rule.endpoint in UNDOCUMENTED:
            continue
        described = OPERATIONS[rule.endpoint]
        operations = {}
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            summary, body, responses, query = described[method.lower()]
            path_parameters = [{"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
                               for name in sorted(rule.arguments)]
            error = _json("Error", "An error: {message} with a 4xx status")
            if rule.endpoint in FORM_POSTS:
                error["content"]["text/html"] = {"schema": STRING}
                responses = {**responses, 303: {"description": "A form post succeeded: to the chat page"}}
            operation = {"summary": summary, "operationId": f"{rule.endpoint}.{method.lower()}",
                         "parameters": path_parameters + query,
                         "responses": {**{str(code): answer for code, answer in responses.items()},
                                       "default": error}}
            if body:
                operation["requestBody"] = body
            operations[method.lower()] = operation
        spec.path(path=re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule.rule), operations=operations)
    return spec.to_dict()


@bp.get("/openapi.json")
def openapi():
    return jsonify(build_spec(current_app))
