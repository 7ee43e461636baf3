
"""The token meter and the per-turn chart in Debian's chromium: the meter shows what the next
request will carry for the branch on screen (after a math reply too), counts the draft while it is
typed and warns before a message would not fit; the chart has labelled axes, the window and the
compaction threshold as lines, and a tooltip per turn."""
from __future__ import annotations

from ux_pages import (  # noqa: F401
    chromium,
    conversation,
    expect,
    live_app,
    llm,
    meter_tokens,
    module_llm,
    new_page,
    open_chat,
    send,
    settled,
    wait_for_meter,
)

import utils

SYSTEM = utils.message_tokens("system", "You are a helpful assistant.") + utils.REPLY_PRIMING


def test_ux_meter_shows_the_next_request_after_a_math_reply(chromium, live_app, llm):
    page = open_chat(new_page(chromium, live_app))
    wait_for_meter(page, SYSTEM)  # a new conversation: the system prompt alone
    send(page, "Tell me something")
    send(page, "What is 6 x 7?")
    messages = conversation(page)["conversation"]
    assert messages[-1]["agent"] == "math"
    carried = SYSTEM + sum(m["tokens"] for m in messages)
    wait_for_meter(page, carried)
    expect(page.locator("#meter-bar")).to_have_attribute("aria-valuenow", str(carried))


def test_ux_meter_counts_the_draft_while_typing_and_warns_before_it_would_not_fit(chromium, live_app, llm):
    page = open_chat(new_page(chromium, live_app))
    send(page, "Hello")
    before = meter_tokens(page)
    draft = "Could you summarise our plan in three bullet points?"
    page.locator("#message-input").press_sequentially(draft[:20])
    page.locator("#message-input").fill(draft)
    wait_for_meter(page, before + utils.message_tokens("user", draft))
    expect(page.locator("#draft-tokens")).to_have_text(f"{utils.message_tokens('user', draft)} tokens")
    expect(page.locator("#meter-warn")).to_be_hidden()
    page.locator("#message-input").fill("word " * 4000)  # 4,000+ tokens: more than a 4,096 window minus the reply
    expect(page.locator("#meter-warn")).to_contain_text("Too long to send")
    expect(page.locator("#composer")).to_have_class("composer over")
    page.keyboard.press("Enter")
    expect(page.locator(".toast")).to_contain_text("does not fit")
    expect(page.locator(".message.user")).to_have_count(1)  # nothing was sent
    page.locator("#message-input").fill("")
    expect(page.locator("#meter-warn")).to_be_hidden()
    wait_for_meter(page, before)


def test_ux_meter_follows_the_branch_on_screen(chromium, live_app, llm):
    page = open_chat(new_page(chromium, live_app))
    llm.reply = "Short first answer."
    send(page, "First question")
    first = meter_tokens(page)
    llm.reply = "A much longer second answer. " * 30
    page.locator(".message.assistant").last.get_by_role("button", name="Regenerate").click()
    expect(page.locator(".message.assistant .branch-nav")).to_contain_text("2/2")
    settled(page)
    longer = meter_tokens(page)
    assert longer > first
    page.get_by_role("button", name="Previous version").click()
    wait_for_meter(page, first)


def test_ux_chart_is_labelled_with_window_threshold_and_tooltips(chromium, live_app, llm):
    page = open_chat(new_page(chromium, live_app))
    send(page, "One")
    send(page, "Two")
    page.get_by_role("button", name="Chart").click()
    chart = page.locator("#turn-chart")
    expect(chart).to_be_visible()
    labels = chart.locator("text").all_text_contents()
    assert "Tokens" in labels and "Turn" in labels and "window" in labels and "compaction" in labels
    assert "4.1k" in labels  # the top of the axis is the 4,096-token window
    expect(chart.locator(".window-line")).to_have_count(1)
    expect(chart.locator(".threshold-line")).to_have_count(1)
    turns = chart.locator("g.turn")
    expect(turns).to_have_count(2)
    usage = [m["meta"]["usage"] for m in conversation(page)["conversation"] if m["role"] == "assistant"]
    turns.first.hover()
    tip = page.locator("#chart-tip")
    expect(tip).to_be_visible()
    expect(tip).to_have_text(f"Turn 1: prompt {usage[0]['prompt_tokens']} tokens, reply {usage[0]['completion_tokens']}")
    turns.last.focus()
    expect(tip).to_contain_text("Turn 2: prompt")
    threshold = chart.locator(".threshold-line").get_attribute("y1")
    window = chart.locator(".window-line").get_attribute("y1")
    assert float(threshold) > float(window)  # the threshold line sits below the window line
