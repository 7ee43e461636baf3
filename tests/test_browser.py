"""The UI in a real browser: Debian's chromium driven by Playwright, the app as `python app.py`,
replies from the fake model server over real SSE."""
from __future__ import annotations

import json
import re
import time

import pytest
from browser_support import LiveApp, Watched, launch_chromium

sync_api = pytest.importorskip("playwright.sync_api")
expect = sync_api.expect
REPLY = "Here is **bold** text and code:\n\n```python\nprint('hi')\n```\n"


@pytest.fixture(scope="module")
def chromium():
    with sync_api.sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        yield browser
        browser.close()


@pytest.fixture
def live(tmp_path, fake_llm):
    fake_llm.reply = REPLY
    app = LiveApp(tmp_path / "instance", tmp_path, OPENAI_BASE_URL=fake_llm.url, MODEL="fake-model",
                  CHUNK_SIZE_TOKENS=200, CHUNK_OVERLAP_TOKENS=0, FILE_WORKERS=1).start()
    yield app
    app.stop()


@pytest.fixture
def make_page(chromium, live):
    contexts = []

    def make(width=1200, height=800, theme="light", same_browser_as: Watched | None = None,
             bypass_csp: bool = False) -> Watched:
        """A page in a new browser context; `same_browser_as` shares that page's cookies (same user).
        `bypass_csp` lets a test inject axe-core, or test the sanitiser without the CSP behind it."""
        state = same_browser_as.page.context.storage_state() if same_browser_as else None
        context = chromium.new_context(viewport={"width": width, "height": height}, color_scheme=theme,
                                       base_url=live.base, storage_state=state, bypass_csp=bypass_csp)
        context.add_init_script(f"localStorage.setItem('theme', '{theme}')")
        contexts.append(context)
        watched = Watched(context.new_page())
        watched.page.set_default_timeout(10_000)
        return watched
    yield make
    for context in contexts:
        context.close()


@pytest.fixture
def page(make_page):
    return make_page()


def open_chat(watched: Watched) -> object:
    page = watched.page
    page.goto("/")
    expect(page.locator("body")).to_have_attribute("data-connected", "true")
    return page


def send(page, text: str) -> None:
    page.fill("#message-input", text)
    page.keyboard.press("Enter")


def last_reply(page):
    return page.locator(".message.assistant").last


def wait_idle(page) -> None:
    expect(page.locator("#stop-button")).to_be_hidden()


def stored(page, conversation_id: str) -> list[dict]:
    return page.evaluate("async (id) => (await (await fetch('/load_conversation/' + id)).json()).conversation",
                         conversation_id)


def current_conversation(page) -> str:
    return page.evaluate("() => new URLSearchParams(location.search).get('c')")


def test_a_reply_streams_into_the_page_and_renders_markdown(page, fake_llm):
    fake_llm.tokens, fake_llm.token_delay = 80, 0.03
    page = open_chat(page)
    send(page, "Hello there")
    expect(page.locator(".message.user .message-body")).to_have_text("Hello there")
    body = last_reply(page).locator(".message-body")
    lengths = set()
    deadline = time.monotonic() + 15
    while page.locator("#stop-button").is_visible() and time.monotonic() < deadline:
        lengths.add(len(body.inner_text()))
        time.sleep(0.05)
    wait_idle(page)
    assert len([n for n in lengths if n > 0]) >= 3, f"the reply did not arrive in pieces: {sorted(lengths)}"
    expected = "".join(fake_llm.pieces(None)[0])
    assert body.inner_text().split() == expected.split()
    expect(page.locator("#conversation-list .conversation-link")).to_have_text(["Hello there"])
    expect(page.locator("#meter-label")).to_contain_text("/ 4,096 tokens")
    fake_llm.tokens = None
    send(page, "Show me code")
    wait_idle(page)
    expect(last_reply(page).locator("strong")).to_have_text("bold")
    expect(last_reply(page).locator("pre code.hljs")).to_contain_text("print('hi')")
    expect(last_reply(page).locator("pre .copy-code")).to_be_visible()
    expect(last_reply(page).locator(".agent-badge")).to_have_attribute("title", re.compile("general chat"))
    assert page.evaluate("() => document.querySelectorAll('#turn-chart rect').length") == 4


def hold_send_acks_until_the_reply_is_done(page) -> None:
    """Reorders the page's WebSocket frames: the acknowledgement of a send_message (`43<id>`) is
    delivered only after the reply's response_done, as a fast reply on a busy server can do."""
    def route(ws):
        server, sends, held = ws.connect_to_server(), set(), []

        def from_page(message):
            found = re.match(r'42(\d+)\["send_message"', message) if isinstance(message, str) else None
            if found:
                sends.add(found[1])
            server.send(message)

        def from_server(message):
            ack = re.match(r"43(\d+)", message) if isinstance(message, str) else None
            if ack and ack[1] in sends:
                held.append(message)
                return
            ws.send(message)
            if isinstance(message, str) and '"response_done"' in message:
                for waiting in held:
                    ws.send(waiting)
                held.clear()
        ws.on_message(from_page)
        server.on_message(from_server)
    page.route_web_socket(re.compile(r".*/socket\.io/.*"), route)


def test_a_reply_that_beats_its_acknowledgement_is_shown_whole(page):
    """A new conversation has no id until the ack: its reply's events must wait, not be dropped."""
    hold_send_acks_until_the_reply_is_done(page.page)
    page = open_chat(page)
    send(page, "What is 6 x 7?")
    expect(last_reply(page).locator(".message-body")).to_contain_text("42")
    wait_idle(page)
    expect(last_reply(page).locator(".agent-badge")).to_have_text("Math")
    expect(page.locator("#conversation-list .conversation-link")).to_have_text(["What is 6 x 7?"])


def test_a_model_title_replaces_the_first_line_in_the_sidebar(chromium, tmp_path, fake_llm):
    fake_llm.responder = lambda body: "Walrus Facts" if "six words" in body["messages"][0]["content"] else "Big."
    app = LiveApp(tmp_path / "titled", tmp_path, OPENAI_BASE_URL=fake_llm.url, AUTO_TITLE="true").start()
    context = chromium.new_context(base_url=app.base)
    try:
        page = open_chat(Watched(context.new_page()))
        send(page, "tell me about walruses")
        expect(page.locator("#conversation-list .conversation-link")).to_have_text(["Walrus Facts"])
        expect(page.locator("#conversation-title")).to_have_text("Walrus Facts")
    finally:
        context.close()
        app.stop()


def test_stop_keeps_the_partial_reply(page, fake_llm):
    fake_llm.tokens, fake_llm.token_delay = 400, 0.03
    page = open_chat(page)
    send(page, "Write a long story")
    expect(last_reply(page).locator(".message-body")).not_to_be_empty()
    page.keyboard.press("Escape")
    expect(last_reply(page).locator(".finish-note")).to_have_text("Stopped")
    wait_idle(page)
    reply = stored(page, current_conversation(page))[-1]
    assert reply["finish_reason"] == "stopped" and 0 < len(reply["content"].split()) < 400


def test_regenerate_and_edit_make_branches_the_user_can_switch(page, fake_llm):
    page = open_chat(page)
    send(page, "Tell me a joke")
    wait_idle(page)
    fake_llm.reply = "A second joke"
    last_reply(page).get_by_role("button", name="Regenerate").click()
    wait_idle(page)
    expect(last_reply(page).locator(".message-body")).to_have_text("A second joke")
    nav = last_reply(page).locator(".branch-nav")
    expect(nav).to_contain_text("2/2")
    nav.get_by_role("button", name="Previous version").click()
    expect(last_reply(page).locator(".message-body")).to_contain_text("Here is bold text")
    expect(last_reply(page).locator(".branch-nav")).to_contain_text("1/2")

    fake_llm.reply = "Edited answer"
    page.locator(".message.user").get_by_role("button", name="Edit").click()
    editor = page.get_by_label("Edit your message")
    editor.fill("Tell me a riddle")
    editor.press("Enter")
    wait_idle(page)
    expect(page.locator(".message.user .message-body")).to_have_text("Tell me a riddle")
    expect(page.locator(".message.user .branch-nav")).to_contain_text("2/2")
    expect(last_reply(page).locator(".message-body")).to_have_text("Edited answer")
    page.reload()
    expect(page.locator(".message.user .message-body")).to_have_text("Tell me a riddle")
    expect(page.locator(".message.user .branch-nav")).to_contain_text("2/2")


def test_search_finds_a_conversation_and_opens_it_at_the_match(page, fake_llm):
    page = open_chat(page)
    send(page, "Planning a trip to Zanzibar in June")
    wait_idle(page)
    conversation_id = current_conversation(page)
    page.get_by_role("link", name="Search").click()
    page.get_by_label("Words to find").fill("zanzibar")
    page.get_by_label("Words to find").press("Enter")
    expect(page.locator(".result mark")).to_have_text(["Zanzibar"])
    page.locator(".result-title").click()
    expect(page.locator(".message.found .message-body")).to_contain_text("Zanzibar")
    assert current_conversation(page) == conversation_id


def test_an_upload_shows_progress_and_its_analysis_arrives(page, fake_llm, tmp_path):
    fake_llm.reply, fake_llm.first_token_delay = "Notes on this part.", 0.3
    text = "\n\n".join(f"Paragraph {n}: " + "the quick brown fox jumps over the lazy dog " * 12 for n in range(12))
    upload = tmp_path / "notes.txt"
    upload.write_text(text)
    page = open_chat(page)
    page.set_input_files("#file-input", str(upload))
    labels = set()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not page.locator(".message.assistant").count():
        if page.locator("#upload-status").is_visible():
            labels.add(page.locator("#upload-label").inner_text())
        time.sleep(0.05)
    assert any("chunk 1 of" in label for label in labels), labels
    expect(page.locator(".message.user .message-body")).to_contain_text("notes.txt")
    expect(last_reply(page).locator(".message-body")).to_contain_text("Notes on this part.")
    expect(page.locator("#upload-status")).to_be_hidden()


def test_an_analysis_that_finishes_before_its_upload_returns_still_shows(page, fake_llm):
    """file_done can overtake the upload's 202; the page must not drop it."""
    fake_llm.reply = "Short file noted."
    page = open_chat(page)
    held = {}

    def hold_until_done(route):
        response = route.fetch()
        job = "/jobs/" + response.json()["job_id"]
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and held.get("status") != "done":
            held["status"] = page.evaluate("async (url) => (await (await fetch(url)).json()).status", job)
            time.sleep(0.05)
        time.sleep(0.3)  # the job is stored as done just before file_done is emitted
        route.fulfill(response=response)

    page.route("**/upload_file", hold_until_done)
    page.set_input_files("#file-input", {"name": "short.txt", "mimeType": "text/plain", "buffer": b"tiny file"})
    expect(last_reply(page).locator(".message-body")).to_contain_text("Short file noted.")
    assert held["status"] == "done"
    expect(page.locator("#upload-status")).to_be_hidden()


XSS = ["<img src=x onerror=\"window.__xss='img'\">", "<script>window.__xss='script'</script>",
       "<svg onload=\"window.__xss='svg'\"></svg>"]


def test_xss_in_a_message_a_reply_and_a_file_name_runs_nothing(make_page, fake_llm):
    """The sanitiser alone (the CSP is bypassed here; the next test checks the CSP alone)."""
    watched = make_page(bypass_csp=True)
    fake_llm.reply = "Reply " + " ".join(XSS) + " [click](javascript:window.__xss='link')"
    page = open_chat(watched)
    send(page, "Hi " + XSS[0] + XSS[1])
    wait_idle(page)
    expect(page.locator(".message.user .message-body")).to_contain_text("<img src=x onerror=")
    page.set_input_files("#file-input", {"name": "<img src=x onerror=alert(1)>.txt", "mimeType": "text/plain",
                                         "buffer": b"harmless text here"})
    expect(page.locator(".message.user .message-body").last).to_contain_text(".txt")
    assert page.evaluate("() => window.__xss") is None
    page.reload()
    expect(page.locator(".message.assistant").first).to_contain_text("Reply")
    assert page.evaluate("() => window.__xss") is None
    assert page.locator(".message-body script, .message-body [onerror], .message-body [onload]").count() == 0
    links = page.locator(".message-body a")
    assert all(not (links.nth(i).get_attribute("href") or "").startswith("javascript") for i in range(links.count()))
    assert watched.dialogs == []
    assert [e for e in watched.errors if "Failed to load resource" not in e] == []  # <img src=x> may 404


def test_the_content_security_policy_blocks_what_a_sanitiser_might_miss(page):
    """Markup that got into the page anyway: its handler, inline script and javascript: link do not run."""
    page = open_chat(page)
    page.evaluate("""() => {
      const box = document.createElement("div");
      box.innerHTML = '<img src="data:," onerror="window.__csp = 1"><a id="js" href="javascript:window.__csp = 2">x</a>';
      document.body.append(box);
      const script = document.createElement("script");
      script.textContent = "window.__csp = 3";
      document.body.append(script);
    }""")
    page.locator("#js").click()
    page.wait_for_timeout(300)
    assert page.evaluate("() => window.__csp") is None


def test_xss_in_a_search_query_runs_nothing(page):
    page.page.goto("/search?q=" + "%3Cimg%20src%3Dx%20onerror%3D%22window.__xss%3D1%22%3E")
    expect(page.page.locator("#search-query")).to_have_value("<img src=x onerror=\"window.__xss=1\">")
    assert page.page.evaluate("() => window.__xss") is None
    assert page.page.locator("main img").count() == 0


def test_xss_in_a_renamed_title_runs_nothing(make_page, fake_llm):
    watched = make_page()
    page = open_chat(watched)
    send(page, "Hello")
    wait_idle(page)
    title = XSS[0] + "<b>bold</b>"
    watched.answers.append(title)
    page.get_by_role("button", name="Rename").click()
    expect(page.locator("#conversation-title")).to_have_text(title)
    page.reload()
    expect(page.locator("#conversation-list .conversation-link")).to_have_text([title])
    page.goto("/search?q=hello")
    expect(page.locator(".result-title")).to_have_text([title])
    assert page.evaluate("() => window.__xss") is None
    assert [kind for kind, _ in watched.dialogs] == ["prompt"]


def test_the_page_recovers_after_the_server_restarts(page, live, fake_llm):
    page = open_chat(page)
    send(page, "Before the restart")
    wait_idle(page)
    live.stop()
    expect(page.locator("#connection")).to_be_visible()
    live.start()
    expect(page.locator("body")).to_have_attribute("data-connected", "true", timeout=20_000)
    expect(page.locator("#connection")).to_be_hidden()
    fake_llm.reply = "After the restart"
    send(page, "Are you back?")
    expect(last_reply(page).locator(".message-body")).to_have_text("After the restart", timeout=15_000)
    expect(page.locator(".message.user .message-body")).to_have_text(["Before the restart", "Are you back?"])


def test_narrow_layout_has_no_horizontal_scroll(make_page, fake_llm):
    fake_llm.reply = "A long line: " + "x" * 300 + "\n\n```\n" + "y" * 300 + "\n```"
    watched = make_page(width=375, height=740)
    page = open_chat(watched)
    send(page, "z" * 200)
    wait_idle(page)
    assert page.evaluate("() => document.documentElement.scrollWidth") <= 375
    page.get_by_role("button", name="Conversations").click()
    expect(page.locator("#sidebar")).to_be_visible()
    assert page.evaluate("() => document.documentElement.scrollWidth") <= 375


def _conversation_for_screens(page) -> None:
    send(page, "How do I reverse a list in Python?")
    wait_idle(page)
    send(page, "What is 65 x 3.11?")
    wait_idle(page)


def test_screenshots_and_accessibility(make_page, fake_llm):
    """Saves the chat (light, dark, mobile) and search pages to artifacts/screenshots and runs axe-core
    on each: no serious or critical violation."""
    fake_llm.reply = REPLY
    found = {}
    light = make_page(bypass_csp=True)  # axe-core is injected as an inline script
    page = open_chat(light)
    _conversation_for_screens(page)
    conversation_id = current_conversation(page)
    light.screenshot("chat-light")
    found["chat light"] = light.serious_accessibility_violations()
    for name, watched in (("chat-dark", make_page(theme="dark", same_browser_as=light, bypass_csp=True)),
                          ("chat-mobile", make_page(375, 740, same_browser_as=light, bypass_csp=True))):
        watched.page.goto(f"/?c={conversation_id}")
        wait_idle(watched.page)
        expect(watched.page.locator(".message.assistant")).to_have_count(2)
        watched.screenshot(name)
        found[name] = watched.serious_accessibility_violations()
    search = make_page(same_browser_as=light, bypass_csp=True)
    search.page.goto("/search?q=python")
    expect(search.page.locator(".result")).to_have_count(1)
    search.screenshot("search")
    found["search"] = search.serious_accessibility_violations()
    assert not any(found.values()), json.dumps(found, indent=1)
    assert not light.errors, light.errors
