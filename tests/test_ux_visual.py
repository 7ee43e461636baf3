
"""Screenshot comparison of the chat page's main states against committed baselines
(tests/screenshots/), within a tolerance: at most TOLERANCE of the pixels may differ by more than
CHANNEL_SLACK in a colour channel (anti-aliasing and font hinting move a few). Timestamps are
masked. Update the baselines after an intended change with `make screenshots`
(UPDATE_SCREENSHOTS=1 pytest tests/test_ux_visual.py); a failure leaves the actual image and a
diff in artifacts/screenshots/visual/."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
from browser_support import SCREENSHOTS
from PIL import Image, ImageChops
from ux_pages import chromium, expect, live_app, llm, module_llm, new_page, open_chat, send  # noqa: F401

BASELINES = Path(__file__).resolve().parent / "screenshots"
FAILURES = SCREENSHOTS / "visual"
TOLERANCE = 0.01
CHANNEL_SLACK = 48
REPLY = "Here is **bold** text and code:\n\n```python\nprint('hi')\n```\n"


def differing_share(actual: Image.Image, baseline: Image.Image) -> tuple[float, Image.Image]:
    """The share of pixels that differ by more than CHANNEL_SLACK in some channel, and a diff mask."""
    difference = ImageChops.difference(actual.convert("RGB"), baseline.convert("RGB"))
    mask = difference.convert("L").point(lambda value: 255 if value > CHANNEL_SLACK else 0)
    changed = mask.histogram()[255]
    return changed / (actual.width * actual.height), mask


def check(page, name: str) -> None:
    page.wait_for_timeout(300)
    shot = page.screenshot(animations="disabled", caret="hide", mask=[page.locator("time")])
    FAILURES.mkdir(parents=True, exist_ok=True)
    actual_path = FAILURES / f"{name}.png"
    actual_path.write_bytes(shot)
    baseline_path = BASELINES / f"{name}.png"
    if os.environ.get("UPDATE_SCREENSHOTS"):
        BASELINES.mkdir(exist_ok=True)
        baseline_path.write_bytes(shot)
        return
    assert baseline_path.exists(), f"no baseline {baseline_path.name}: run `make screenshots`"
    actual, baseline = Image.open(actual_path), Image.open(baseline_path)
    assert actual.size == baseline.size, (name, actual.size, baseline.size)
    share, mask = differing_share(actual, baseline)
    if share > TOLERANCE:
        mask.save(FAILURES / f"{name}-diff.png")
    assert share <= TOLERANCE, f"{name}: {share:.2%} of the pixels changed (see {FAILURES})"


def test_ux_visual_differing_share_counts_only_real_changes():
    base = Image.new("RGB", (100, 100), "white")
    faint, changed = base.copy(), base.copy()
    faint.paste((235, 235, 235), (0, 0, 100, 100))  # anti-aliasing-sized shifts are tolerated
    changed.paste((0, 0, 0), (0, 0, 10, 20))  # a real change: 2% of the pixels
    assert differing_share(faint, base)[0] == 0
    assert differing_share(changed, base)[0] == pytest.approx(0.02)


@pytest.mark.parametrize("size, theme", [("desktop", "light"), ("phone", "light"), ("desktop", "dark")])
def test_ux_visual_main_states_match_their_baselines(chromium, live_app, llm, size, theme):
    variant = f"{size}-{theme}"
    page = open_chat(new_page(chromium, live_app, size, theme))
    expect(page.get_by_role("heading", name="Start a conversation")).to_be_visible()
    check(page, f"empty-{variant}")
    llm.reply = REPLY
    send(page, "How do I print in Python?")
    send(page, "What is 65 x 3.11?")
    page.mouse.move(0, 0)
    check(page, f"conversation-{variant}")
    reply = page.locator(".message.assistant").first
    reply.hover()
    reply.get_by_role("button", name="What went into this request").click()
    page.mouse.move(0, 0)
    check(page, f"breakdown-{variant}")
    page.get_by_role("button", name="Conversation actions").click()
    page.get_by_role("menuitem", name="Summary and pinned facts").click()
    expect(page.locator("#summary-body")).to_contain_text("Nothing pinned yet.")
    check(page, f"summary-panel-{variant}")
