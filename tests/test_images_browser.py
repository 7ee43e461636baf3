"""Attaching images in Debian's chromium: picked images are previewed in the composer and can be removed
before sending; what is sent reaches the vision model as an image_url part and shows as a thumbnail in the
thread, also after a reload."""
from __future__ import annotations

import io

import pytest
from PIL import Image
from ux_pages import chromium, expect, new_page, open_chat, settled, start_app  # noqa: F401


@pytest.fixture(scope="module")
def vision_app(tmp_path_factory, module_llm):
    live = start_app(tmp_path_factory.mktemp("vision"), module_llm, MODEL="gpt-4o-mini")
    yield live
    live.stop()


@pytest.fixture(scope="module")
def module_llm():
    from fake_llm import FakeLLM
    with FakeLLM(reply="A red square and a blue one.") as fake:
        yield fake


def png(color) -> dict:
    out = io.BytesIO()
    Image.new("RGB", (120, 80), color).save(out, "PNG")
    return {"name": f"{color}.png", "mimeType": "image/png", "buffer": out.getvalue()}


def test_ux_images_are_previewed_removable_and_sent_as_thumbnails(chromium, vision_app, module_llm):
    watched = new_page(chromium, vision_app)
    page = open_chat(watched)
    page.set_input_files("#image-input", [png("red"), png("green")])
    tray = page.get_by_label("Images to send with the message")
    expect(tray.locator("img")).to_have_count(2)
    expect(tray.get_by_alt_text("Preview of green.png")).to_be_visible()
    tray.get_by_role("button", name="Remove green.png").click()
    expect(tray.locator("img")).to_have_count(1)
    expect(tray.get_by_alt_text("Preview of red.png")).to_be_visible()
    page.set_input_files("#image-input", [png("blue")])
    expect(tray.locator("img")).to_have_count(2)
    page.fill("#message-input", "What colours are these?")
    page.keyboard.press("Enter")
    expect(page.locator(".message.assistant")).to_have_count(1)
    settled(page)
    expect(tray).to_be_hidden()
    thumbnails = page.locator(".message.user .message-images img")
    expect(thumbnails).to_have_count(2)
    expect(thumbnails.first).to_have_attribute("alt", "red.png")
    assert page.evaluate("() => [...document.querySelectorAll('.message-images img')].every(i => i.naturalWidth > 0)")
    parts = module_llm.image_parts()
    assert len(parts) == 2 and all(p["image_url"]["url"].startswith("data:image/png;base64,") for p in parts)
    page.reload()
    expect(page.locator(".message.user .message-images img")).to_have_count(2)
    assert not watched.errors and not watched.dialogs
