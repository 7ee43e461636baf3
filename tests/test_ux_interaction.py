
"""Finding and steering in Debian's chromium: the sidebar groups conversations by last activity and
filters as you type, the keyboard shortcuts (listed in the '?' help) work, and the thread follows a
streaming reply until the person scrolls up, then offers 'Jump to latest'."""
from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta

from ux_pages import chromium, conversation, expect, live_app, llm, module_llm, new_page, open_chat, send, settled  # noqa: F401

MOD = "Control"


def _age(live_app, conversation_id: str, days: int) -> None:
    """Set a conversation's last activity `days` back (what weeks of use would leave)."""
    moment = (datetime.now(UTC) - timedelta(days=days)).isoformat(timespec="milliseconds")
    with sqlite3.connect(live_app.env["INSTANCE_PATH"] + "/chat.sqlite3") as db:
        db.execute("UPDATE conversations SET updated_at = ? WHERE conversation_id = ?", (moment, conversation_id))


def test_ux_sidebar_groups_by_activity_and_filters_as_you_type(chromium, live_app, llm):
    llm.reply = "Noted."
    page = open_chat(new_page(chromium, live_app))
    ids = {}
    for title in ("Postgres upgrade", "Holiday plans", "Postgres backups", "Garden ideas"):
        page.keyboard.press(f"{MOD}+Shift+O")
        send(page, title)
        ids[title] = conversation(page)["conversation_id"]
    _age(live_app, ids["Holiday plans"], 1)
    _age(live_app, ids["Postgres backups"], 4)
    _age(live_app, ids["Garden ideas"], 40)
    page.goto("/")
    headings = page.locator("#conversation-list .group-heading")
    expect(headings).to_have_text(["Today", "Yesterday", "Previous 7 days", "Older"])
    expect(page.get_by_role("list", name="Older")).to_contain_text("Garden ideas")
    page.keyboard.press(f"{MOD}+K")
    expect(page.get_by_label("Filter conversations")).to_be_focused()
    page.keyboard.type("postgres")
    expect(page.locator("#conversation-list .conversation-link")).to_have_text(["Postgres upgrade", "Postgres backups"])
    expect(headings).to_have_text(["Today", "Previous 7 days"])
    page.keyboard.type(" nothing like this")
    expect(page.locator("#no-matches")).to_be_visible()
    page.get_by_label("Filter conversations").fill("")
    expect(page.locator("#conversation-list .conversation-link")).to_have_count(4)


def test_ux_shortcuts_are_listed_and_work(chromium, live_app, llm):
    llm.reply = "First answer."
    watched = new_page(chromium, live_app)
    page = open_chat(watched)
    send(page, "Original question")
    page.locator("#message-input").focus()
    page.keyboard.press("ArrowUp")  # edits your last message
    editor = page.get_by_label("Edit your message")
    expect(editor).to_be_focused()
    expect(editor).to_have_value("Original question")
    editor.fill("Edited question")
    llm.reply = "Edited answer."
    editor.press("Enter")
    expect(page.locator(".message.assistant .message-body").last).to_have_text("Edited answer.")
    settled(page)
    page.locator("body").click(position={"x": 600, "y": 400})
    page.keyboard.press("?")
    dialog = page.get_by_role("dialog", name="Keyboard shortcuts")
    expect(dialog).to_be_visible()
    for listed in ("Filter conversations", "New conversation", "Stop the reply", "Edit your last message"):
        expect(dialog).to_contain_text(listed)
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()
    llm.tokens, llm.token_delay = 400, 0.02
    page.locator("#message-input").fill("Tell me a long story")
    page.keyboard.press("Enter")
    expect(page.locator("#stop-button")).to_be_visible()
    page.keyboard.press("Escape")  # stops the reply
    stopped = page.locator(".message.assistant").last.locator(".finish-note")
    expect(stopped).to_have_text("Stopped", timeout=15_000)  # a busy machine takes a while
    settled(page)
    page.keyboard.press(f"{MOD}+Shift+O")
    expect(page.locator("#conversation-title")).to_have_text("New conversation")
    expect(page.get_by_role("heading", name="Start a conversation")).to_be_visible()
    assert page.evaluate("() => location.search") == ""
    assert not watched.errors, watched.errors


def test_ux_thread_follows_a_streaming_reply_until_you_scroll_up(chromium, live_app, llm):
    page = open_chat(new_page(chromium, live_app, "phone"))
    send(page, "Warm up")
    llm.tokens, llm.token_delay = 600, 0.01
    page.locator("#message-input").fill("A long reply please")
    page.keyboard.press("Enter")
    expect(page.locator("#stop-button")).to_be_visible()
    gap = "() => { const m = document.getElementById('messages'); return m.scrollHeight - m.scrollTop - m.clientHeight; }"
    page.wait_for_function("() => document.getElementById('messages').scrollHeight > 2 * document.getElementById('messages').clientHeight")
    assert page.evaluate(gap) < 60  # following the reply
    jump = page.get_by_role("button", name="Jump to latest")
    expect(jump).to_be_hidden()
    page.locator("#messages").hover()
    page.mouse.wheel(0, -600)
    expect(jump).to_be_visible()
    page.wait_for_timeout(400)
    assert page.evaluate(gap) > 200  # left where the person scrolled to while text kept coming
    jump.click()
    expect(jump).to_be_hidden()
    settled(page)
    assert page.evaluate(gap) < 60
