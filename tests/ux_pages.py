"""Shared parts of the chat-page UX browser tests: a live app whose fake model reports the app's
own exact count (calibration ratio 1), pages at the sizes the page is designed for, and helpers
that read what a person sees."""
from __future__ import annotations

import re
import time

import pytest
from browser_support import LiveApp, Watched
from fake_llm import FakeLLM
from test_browser import chromium  # noqa: F401  (Debian's chromium, once per module)

sync_api = pytest.importorskip("playwright.sync_api")
expect = sync_api.expect
expect.set_options(timeout=15_000)  # two shared cores: a reply can take seconds under load
SIZES = {"desktop": (1280, 800), "phone": (375, 812), "small": (320, 568)}
LONG = "Here is a longer answer. " * 40 + "\n\n```python\nprint('hi')\n```\n"


def start_app(folder, fake_llm, **settings) -> LiveApp:
    fake_llm.token_ratio = 1.0
    defaults = {"OPENAI_BASE_URL": fake_llm.url, "MODEL": "fake-model"}
    return LiveApp(folder / "instance", folder, **{**defaults, **settings}).start()


@pytest.fixture(scope="module")
def module_llm():
    """One fake model for a module's app (tests set its reply); each test gets a new browser identity."""
    with FakeLLM(reply=LONG) as fake:
        yield fake


@pytest.fixture(scope="module")
def live_app(tmp_path_factory, module_llm):
    live = start_app(tmp_path_factory.mktemp("ux"), module_llm)
    yield live
    live.stop()


@pytest.fixture
def llm(module_llm):
    """The module's fake model, reset to the long reply for each test."""
    module_llm.reply, module_llm.tokens, module_llm.token_delay = LONG, None, 0.0
    return module_llm


def new_page(browser, app: LiveApp, size: str = "desktop", theme: str = "light", **options) -> Watched:
    width, height = SIZES[size]
    context = browser.new_context(viewport={"width": width, "height": height}, color_scheme=theme,
                                  base_url=app.base, bypass_csp=True, **options)
    context.add_init_script(f"localStorage.setItem('theme', '{theme}')")
    watched = Watched(context.new_page())
    watched.page.on("response", lambda r: r.status >= 400 and watched.errors.append(f"HTTP {r.status} {r.url}"))
    watched.page.set_default_timeout(15_000)
    return watched


def open_chat(watched: Watched, path: str = "/"):
    page = watched.page
    page.goto(path)
    expect(page.locator("body")).to_have_attribute("data-connected", "true")
    return page


def send(page, text: str) -> None:
    """Send a message and wait until its reply is complete."""
    replies = page.locator(".message.assistant").count()
    page.fill("#message-input", text)
    page.keyboard.press("Enter")
    expect(page.locator(".message.assistant")).to_have_count(replies + 1)
    settled(page)


def settled(page) -> None:
    """No reply streaming, and the meter's figures are for the newest message on screen."""
    expect(page.locator("body")).to_have_attribute("data-streaming", "false")
    leaf = page.locator("#messages .message").last.get_attribute("data-id")
    expect(page.locator("#meter")).to_have_attribute("data-leaf", leaf)


def meter_tokens(page) -> int:
    """The number the meter shows for the next request."""
    text = page.locator("#meter-label").inner_text()
    return int(re.search(r"Next request: ([\d,]+) /", text).group(1).replace(",", ""))


def wait_for_meter(page, expected: int, seconds: float = 5.0) -> None:
    deadline = time.monotonic() + seconds
    while meter_tokens(page) != expected and time.monotonic() < deadline:
        time.sleep(0.05)
    assert meter_tokens(page) == expected


def conversation(page) -> dict:
    return page.evaluate("async () => (await (await fetch('/load_conversation/' + "
                         "new URLSearchParams(location.search).get('c'))).json())")


def page_scrolls(page) -> dict:
    """How far the document itself scrolls (it must not) and whether the composer is on screen."""
    return page.evaluate("""() => {
        const box = document.getElementById('composer').getBoundingClientRect();
        return {extra: document.documentElement.scrollHeight - innerHeight,
                wide: document.documentElement.scrollWidth - innerWidth,
                composerBottom: box.bottom, viewport: innerHeight};
    }""")
