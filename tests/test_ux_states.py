
"""Every state of the chat page, designed and accessible: empty, loading, streaming, error,
offline/reconnecting, no endpoint, and the conversation with its panels open. Each is captured at
1280x800, 375x812 and in the dark theme into artifacts/screenshots/ (ux-<state>-<variant>.png),
and axe-core finds no serious or critical issue in any of them."""
from __future__ import annotations

import json

import pytest
from browser_support import LiveApp
from fake_llm import Fault
from ux_pages import chromium, expect, live_app, llm, module_llm, new_page, open_chat, send, settled  # noqa: F401

VARIANTS = {"desktop": ("desktop", "light"), "phone": ("phone", "light"), "dark": ("desktop", "dark")}


@pytest.fixture(scope="module")
def bare_app(tmp_path_factory):
    """The app with no model endpoint configured."""
    folder = tmp_path_factory.mktemp("ux-bare")
    live = LiveApp(folder / "instance", folder).start()
    yield live
    live.stop()


def _capture(watched, state: str, variant: str, found: dict) -> None:
    watched.page.wait_for_timeout(250)  # transitions settle
    watched.screenshot(f"ux-{state}-{variant}")
    found[f"{state} {variant}"] = watched.serious_accessibility_violations()


def _conversation(page, llm) -> None:
    llm.reply = "Here is **bold** text and code:\n\n```python\nprint('hi')\n```\n"
    send(page, "How do I print in Python?")
    send(page, "What is 65 x 3.11?")


@pytest.mark.parametrize("variant", VARIANTS)
def test_ux_states_look_designed_and_pass_axe(chromium, live_app, bare_app, llm, variant):
    size, theme = VARIANTS[variant]
    found: dict = {}

    def fresh(app=live_app):
        return new_page(chromium, app, size, theme)

    watched = fresh()
    page = open_chat(watched)
    expect(page.get_by_role("heading", name="Start a conversation")).to_be_visible()
    _capture(watched, "empty", variant, found)

    _conversation(page, llm)
    _capture(watched, "conversation", variant, found)
    page.locator(".message.assistant").first.hover()
    page.locator(".message.assistant").first.get_by_role("button", name="What went into this request").click()
    page.get_by_role("button", name="Chart").click()
    _capture(watched, "breakdown-and-chart", variant, found)
    page.get_by_role("button", name="Chart").click()
    page.get_by_role("button", name="Conversation actions").click()
    _capture(watched, "menu", variant, found)
    page.get_by_role("menuitem", name="Summary and pinned facts").click()
    page.get_by_label("New pinned fact").fill("We use Postgres 16")
    page.get_by_role("button", name="Pin").click()
    expect(page.get_by_role("list", name="Pinned facts")).to_be_visible()
    _capture(watched, "summary-panel", variant, found)
    page.get_by_role("button", name="Close summary").click()
    page.get_by_role("button", name="Keyboard shortcuts").click()
    _capture(watched, "help", variant, found)
    page.keyboard.press("Escape")
    if size == "phone":
        page.get_by_role("button", name="Conversations").click()
        expect(page.locator("#sidebar")).to_be_visible()
        _capture(watched, "sidebar", variant, found)
        page.locator("#scrim").click(position={"x": 360, "y": 400})

    llm.tokens, llm.token_delay = 600, 0.02
    page.locator("#message-input").fill("Tell me a long story")
    page.keyboard.press("Enter")
    expect(page.locator("#typing")).to_be_visible()
    page.wait_for_function("() => document.querySelector('.message.assistant:last-of-type .message-body').textContent.length > 200")
    _capture(watched, "streaming", variant, found)
    page.keyboard.press("Escape")
    settled(page)

    llm.tokens, llm.token_delay = None, 0.0
    llm.fail_next(Fault.error_chunk(after=3))
    page.locator("#message-input").fill("This one fails")
    page.keyboard.press("Enter")
    expect(page.locator(".message.assistant.error")).to_have_count(1)
    expect(page.locator(".toast")).to_be_visible()
    _capture(watched, "error", variant, found)

    conversation_id = page.evaluate("() => new URLSearchParams(location.search).get('c')")
    loading = fresh()
    held = []
    loading.page.route("**/load_conversation/**", lambda route: held.append(route))
    loading.page.goto(f"/?c={conversation_id}")
    expect(loading.page.get_by_role("status", name="Loading the conversation")).to_be_visible()
    _capture(loading, "loading", variant, found)
    for route in held:
        route.continue_()

    live_app.stop()
    try:
        expect(page.locator("#connection")).to_be_visible()
        _capture(watched, "offline", variant, found)
    finally:
        live_app.start()
    expect(page.locator("body")).to_have_attribute("data-connected", "true", timeout=20_000)

    bare = fresh(bare_app)
    open_chat(bare)
    expect(bare.page.locator("#no-endpoint")).to_be_visible()
    _capture(bare, "no-endpoint", variant, found)

    assert not any(found.values()), json.dumps(found, indent=1)
    assert not watched.errors or all("WebSocket" in e or "Failed to load resource" in e for e in watched.errors), \
        watched.errors
