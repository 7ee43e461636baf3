
"""What went into each request, and the summary as the person's own, in Debian's chromium: after
compaction a reply's breakdown adds up to the token to its stored prompt tokens and links to what
the summary covers; the summary can be read, edited and saved, and facts pinned, from the page."""
from __future__ import annotations

import re

import pytest
from ux_pages import chromium, conversation, expect, llm, module_llm, new_page, open_chat, send, settled, start_app  # noqa: F401

import utils
from agents import pins

SYSTEM = utils.message_tokens("system", "You are a helpful assistant.") + utils.REPLY_PRIMING
WORDS = " ".join(f"word{i}" for i in range(120))


@pytest.fixture(scope="module")
def live_app(tmp_path_factory, module_llm):
    """A 1,024-token window: a few long turns compact the conversation."""
    live = start_app(tmp_path_factory.mktemp("ux-context"), module_llm, MAX_TOKENS=1024, REPLY_TOKENS=128,
                     SUMMARY_TOKENS=120)
    yield live
    live.stop()


def compacted_chat(chromium, live_app, llm, size="desktop"):
    llm.reply = WORDS
    watched = new_page(chromium, live_app, size)
    page = open_chat(watched)
    for turn in range(6):
        send(page, f"Turn {turn} {WORDS}")
    data = conversation(page)
    assert data["summary"], "six long turns in a 1,024-token window should have compacted"
    return watched, page


def breakdown_numbers(panel) -> tuple[dict, dict]:
    """(the parts, the totals) as the table shows them; a part's name without its links."""
    def read(rows, name):
        return {name(row.locator("th").inner_text()): int(row.locator("td").inner_text().replace(",", ""))
                for row in rows.all()}
    return (read(panel.locator("tbody tr"), lambda text: text.split("\n")[0].split(" (")[0].strip()),
            read(panel.locator("tfoot tr"), str.strip))


def test_ux_breakdown_after_compaction_adds_up_to_the_stored_prompt_tokens(chromium, live_app, llm):
    watched, page = compacted_chat(chromium, live_app, llm)
    data = conversation(page)
    reply = page.locator(".message.assistant").last
    reply.hover()
    toggle = reply.get_by_role("button", name="What went into this request")
    toggle.click()
    panel = page.get_by_role("region", name="What went into this request")
    expect(panel).to_be_visible()
    expect(reply.get_by_role("button", name="What went into this request")).to_have_attribute("aria-expanded", "true")
    parts, totals = breakdown_numbers(panel)
    stored = data["conversation"][-1]["meta"]
    assert sum(parts.values()) == totals["Prompt (our count)"] == stored["usage"]["prompt_tokens"]
    assert parts["Summary"] > 0
    assert totals["Kept for the reply"] == 128 and totals["Context window"] == 1024
    expect(panel).to_contain_text(f"The server reported {stored['usage']['prompt_tokens']:,} prompt tokens")
    expect(panel).to_contain_text("Calibration ratio 1.00")
    expect(panel.locator(".breakdown-bar span")).to_have_count(7)
    verbatim = panel.locator("ol li button")
    expect(verbatim).to_have_count(stored["context"]["verbatim_count"])
    panel.get_by_role("button", name="this message").click()
    covered = stored["context"]["summary_through"]  # the checkpoint this request's summary covered
    expect(page.locator(f'.message[data-id="{covered}"]')).to_have_class(re.compile(r"\bfound\b"))
    checkpoint = data["summary"]["last_message_id"]  # the stored one, maybe newer: the divider follows it
    expect(page.locator(f'.message[data-id="{checkpoint}"] + .summary-divider')).to_be_visible()
    assert not watched.errors, watched.errors


def test_ux_summary_can_be_read_edited_and_pinned_from_the_page(chromium, live_app, llm):
    watched, page = compacted_chat(chromium, live_app, llm, size="phone")
    page.locator("#summary-divider").get_by_role("button", name="Read the summary").click()
    panel = page.locator("#summary-panel")
    expect(panel).to_be_visible()
    box = panel.get_by_label("Summary the model sees")
    expect(box).to_have_value(conversation(page)["summary"]["content"])
    box.fill("The user is testing compaction with numbered words.")
    panel.get_by_role("button", name="Save summary").click()
    expect(page.locator(".toast")).to_contain_text("Summary saved")
    assert conversation(page)["summary"]["content"] == "The user is testing compaction with numbered words."
    bar = page.locator("#meter-bar")
    expect(bar).to_have_attribute("aria-valuetext", re.compile(f"system {SYSTEM},"))
    panel.get_by_label("New pinned fact").fill("We use Postgres 16")
    panel.get_by_role("button", name="Pin").click()
    expect(panel.get_by_role("list", name="Pinned facts")).to_contain_text("We use Postgres 16")
    pinned = utils.message_tokens("system", pins.with_pins("You are a helpful assistant.", ["We use Postgres 16"]))
    expect(bar).to_have_attribute("aria-valuetext", re.compile(f"system {pinned + utils.REPLY_PRIMING},"))
    panel.get_by_role("button", name="Unpin: We use Postgres 16").click()
    expect(panel).to_contain_text("Nothing pinned yet.")
    panel.get_by_role("button", name="Close summary").click()
    expect(panel).to_be_hidden()
    settled(page)
    assert not watched.errors, watched.errors
