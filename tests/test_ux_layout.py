
"""The chat page's layout in Debian's chromium: only the thread scrolls at every size down to
320x568, the header and top bar are one row at 375 px, conversation actions live in one menu, and
message actions are icon buttons shown on hover/focus (always on touch screens)."""
from __future__ import annotations

import pytest
from ux_pages import chromium, expect, live_app, llm, module_llm, new_page, open_chat, page_scrolls, send  # noqa: F401


@pytest.mark.parametrize("size", ["desktop", "phone", "small"])
def test_ux_layout_only_the_thread_scrolls(chromium, live_app, llm, size):
    watched = new_page(chromium, live_app, size)
    page = open_chat(watched)
    for state in ("empty", "long"):
        if state == "long":
            for number in range(4):
                send(page, f"Question {number}: tell me more")
        scrolls = page_scrolls(page)
        assert scrolls["extra"] <= 0 and scrolls["wide"] <= 0, (state, scrolls)
        assert scrolls["composerBottom"] <= scrolls["viewport"], (state, scrolls)
    thread = page.evaluate("() => { const m = document.getElementById('messages');"
                           " return [m.scrollHeight > m.clientHeight, m.scrollHeight - m.scrollTop - m.clientHeight]; }")
    assert thread[0] and thread[1] < 50  # the thread scrolls, and follows the newest reply
    page.mouse.wheel(0, 2000)
    assert page.evaluate("() => scrollY") == 0
    expect(page.locator("#message-input")).to_be_in_viewport()
    assert not watched.errors, watched.errors


@pytest.mark.parametrize("size", ["phone", "small"])
def test_ux_layout_header_and_top_bar_are_one_row(chromium, live_app, llm, size):
    page = open_chat(new_page(chromium, live_app, size))
    send(page, "A question with a title long enough to need truncating at this width")
    rows = page.evaluate("""() => ['.topbar', '.chat-header', '.meter-row'].map((selector) => {
        const bar = document.querySelector(selector).getBoundingClientRect();
        const kids = [...document.querySelector(selector).children].filter((k) => k.getClientRects().length
            && getComputedStyle(k).visibility !== 'hidden');
        return {selector, height: bar.height, right: bar.right, kids: kids.map((k) => {
            const box = k.getBoundingClientRect();
            return {top: box.top - bar.top, bottom: bar.bottom - box.bottom, right: box.right};
        })};
    })""")
    for row in rows:
        assert row["height"] <= 50, row
        assert all(kid["top"] >= -1 and kid["bottom"] >= -1 and kid["right"] <= row["right"] + 1
                   for kid in row["kids"]), row


def test_ux_layout_conversation_actions_are_one_menu(chromium, live_app, llm):
    page = open_chat(new_page(chromium, live_app, "phone"))
    send(page, "Hello")
    header_buttons = page.locator(".chat-header button:visible")
    expect(header_buttons).to_have_count(2)  # rename, and the menu
    menu = page.get_by_role("button", name="Conversation actions")
    menu.click()
    items = page.get_by_role("menuitem")
    expect(items).to_have_text(["Summary and pinned facts", "Statistics", "Export JSON", "Export Markdown",
                                "Rename conversation…", "Delete conversation…"])
    expect(items.first).to_be_focused()
    page.keyboard.press("ArrowDown")
    expect(items.nth(1)).to_be_focused()
    page.keyboard.press("End")
    expect(items.last).to_be_focused()
    assert "/export/" in page.get_by_role("menuitem", name="Export JSON").get_attribute("href")
    page.keyboard.press("Escape")
    expect(page.locator("#conversation-menu")).to_be_hidden()
    expect(menu).to_be_focused()
    menu.click()
    page.get_by_role("menuitem", name="Statistics").click()
    expect(page.locator("#stats-panel")).to_be_visible()
    expect(page.locator("#stats-body")).to_contain_text("messages")
    page.get_by_role("button", name="Close statistics").click()
    expect(page.locator("#stats-panel")).to_be_hidden()


def test_ux_layout_message_actions_show_on_hover_and_focus(chromium, live_app, llm):
    page = open_chat(new_page(chromium, live_app))
    send(page, "Hello")
    reply = page.locator(".message.assistant").last
    copy = reply.get_by_role("button", name="Copy reply")
    page.mouse.move(5, 5)
    expect(copy).to_have_css("opacity", "0")
    reply.hover()
    expect(copy).to_have_css("opacity", "1")
    page.mouse.move(5, 5)
    copy.focus()
    expect(copy).to_have_css("opacity", "1")
    for name in ("Copy reply", "Regenerate", "What went into this request"):
        expect(reply.get_by_role("button", name=name)).to_have_count(1)
    expect(page.locator(".message.user").get_by_role("button", name="Edit")).to_have_count(1)
    assert reply.locator("button.tool-action svg.icon").count() == 3  # icons, not bordered text boxes


def test_ux_layout_message_actions_always_show_on_touch(chromium, live_app, llm):
    page = open_chat(new_page(chromium, live_app, "phone", has_touch=True, is_mobile=True))
    send(page, "Hello")
    expect(page.locator(".message.assistant").last.get_by_role("button", name="Copy reply")).to_have_css("opacity", "1")
