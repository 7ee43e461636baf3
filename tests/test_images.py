"""Images for vision models: cleaned on upload, stored per user, sent as image_url parts to models that
take them, counted in the budget by OpenAI's tile rule, refused clearly by text-only models."""
import base64
import io
import random

import pytest
from fake_llm import IMAGE_REFUSAL
from PIL import Image
from test_socket_events import wait_for
from test_uploads import post_file

import utils
from agents import vision
from agents.emitter import RecordingEmitter
from agents.router import route
from agents.turn import run_turn
from app import socketio
from documents import images


def picture(fmt: str = "PNG", size=(64, 48), color=(200, 30, 30), **options) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, color).save(out, fmt, **options)
    return out.getvalue()


def gps_jpeg() -> bytes:
    exif = Image.Exif()
    exif[0x010F] = "SecretCam"  # Make
    exif[0x8825] = {1: "N", 2: (51.0, 30.0, 0.0)}  # GPS IFD
    return picture("JPEG", exif=exif.tobytes())


# -- cleaning ---------------------------------------------------------------------------------

@pytest.mark.parametrize("fmt, mime", [("PNG", "image/png"), ("JPEG", "image/jpeg"), ("WEBP", "image/webp"),
                                       ("GIF", "image/png")])
def test_images_are_decoded_and_reencoded_in_their_kind(fmt, mime):
    cleaned = images.clean(picture(fmt), 1_000_000)
    assert (cleaned.mime, cleaned.width, cleaned.height) == (mime, 64, 48)
    assert Image.open(io.BytesIO(cleaned.data)).size == (64, 48)


def test_images_lose_their_metadata():
    raw = gps_jpeg()
    assert b"SecretCam" in raw and Image.open(io.BytesIO(raw)).getexif()
    cleaned = images.clean(raw, 1_000_000)
    assert b"SecretCam" not in cleaned.data and not Image.open(io.BytesIO(cleaned.data)).getexif()
    from PIL import PngImagePlugin
    info = PngImagePlugin.PngInfo()
    info.add_text("Author", "Private Person")
    out = io.BytesIO()
    Image.new("RGB", (8, 8)).save(out, "PNG", pnginfo=info)
    assert b"Private Person" not in images.clean(out.getvalue(), 1_000_000).data


def test_gif_keeps_only_its_first_frame():
    frames = [Image.new("RGB", (10, 10), color) for color in ((255, 0, 0), (0, 255, 0))]
    out = io.BytesIO()
    frames[0].save(out, "GIF", save_all=True, append_images=frames[1:])
    cleaned = Image.open(io.BytesIO(images.clean(out.getvalue(), 1_000_000).data)).convert("RGB")
    assert cleaned.getpixel((5, 5))[0] > 200 and getattr(cleaned, "n_frames", 1) == 1


def test_images_are_refused_by_their_bytes_size_and_damage():
    with pytest.raises(images.ImageRefused) as wrong:
        images.clean(b"%PDF-1.7 not an image", 1_000_000)
    assert wrong.value.status == 415
    with pytest.raises(images.ImageRefused) as bomb:  # 5000x5000 of one colour: a few KB of PNG
        images.clean(picture("PNG", size=(5000, 5000)), 1_000_000)
    assert bomb.value.status == 413 and "1,000,000 pixels" in str(bomb.value)
    with pytest.raises(images.ImageRefused) as broken:
        images.clean(picture("PNG", size=(300, 300))[:120], 1_000_000)
    assert broken.value.status == 415


def test_images_too_big_when_lossless_are_stored_as_webp():
    noise = Image.frombytes("RGB", (1800, 1800), random.Random(7).randbytes(1800 * 1800 * 3))  # ~9.7 MB as PNG
    out = io.BytesIO()
    noise.save(out, "PNG", compress_level=1)
    cleaned = images.clean(out.getvalue(), 10_000_000)
    assert cleaned.mime == "image/webp" and len(cleaned.data) <= images.MAX_STORED_BYTES


def test_large_images_are_scaled_to_what_vision_models_see():
    cleaned = images.clean(picture("PNG", size=(4096, 1024)), 10_000_000)
    assert (cleaned.width, cleaned.height) == (2048, 512)


# -- cost and models -----------------------------------------------------------------------------

def test_image_tokens_follow_openais_tile_rule():
    assert vision.image_tokens(1024, 1024, "low") == 85
    assert vision.image_tokens(1024, 1024, "high") == 765  # 768x768: 4 tiles (OpenAI's example)
    assert vision.image_tokens(2048, 4096, "high") == 1105  # 768x1536: 6 tiles (OpenAI's example)
    assert vision.image_tokens(100, 80, "auto") == 255  # small: one tile, never scaled up


def test_vision_models_match_patterns_until_a_server_refuses():
    learned = vision.TextOnlyModels()
    patterns = ["gpt-4o*", "*llava*"]
    assert vision.accepts("gpt-4o-mini", patterns, learned) and vision.accepts("LLaVA-13B", patterns, learned)
    assert not vision.accepts("gpt-3.5-turbo", patterns, learned)
    learned.add("gpt-4o-mini")
    assert not vision.accepts("gpt-4o-mini", patterns, learned)


def test_text_only_models_are_shared_through_redis(redis_url):
    import redis
    first, second = (vision.TextOnlyModels(redis.from_url(redis_url)) for _ in range(2))
    first.add("llava-text")
    assert "llava-text" in second and "other" not in second
    second._redis = None  # once learnt from Redis, a refusal is remembered without asking again
    assert "llava-text" in second


def test_router_sends_images_to_chat_and_names_the_vision_model():
    decision = route("What is 2 + 2 in this picture?", images=1, vision_model="gpt-4o")
    assert (decision.agent, decision.rule, decision.matches) == ("chat", "image", ["gpt-4o"])
    assert "vision model gpt-4o" in decision.reasoning
    assert route("/math 2+2", images=1, vision_model="gpt-4o").agent == "math"  # a command still wins
    assert "no configured model takes images" in route("Look", images=2).reasoning


# -- one turn ------------------------------------------------------------------------------------

def _ask_with_image(deps, text="What is in this picture?", size=(1024, 1024), cid=None):
    store = deps.store
    cid = cid or store.create_conversation("alice")["conversation_id"]
    message = store.append_message("alice", cid, "user", text, tokens=utils.message_tokens("user", text))
    cleaned = images.clean(picture("PNG", size=size), 10_000_000)
    store.add_image("alice", message["message_id"], "cat.png", cleaned.mime, cleaned.width, cleaned.height,
                    cleaned.data)
    return cid, message["message_id"], cleaned


def _run(deps, cid, mid, model=None):
    emitter = RecordingEmitter()
    return run_turn(deps, "alice", cid, mid, f"reply-{mid}", emitter, lambda: False, model=model), emitter


def test_image_question_reaches_the_vision_model_as_an_image_part_and_is_budgeted(turn_deps, fake_llm):
    deps = turn_deps()
    deps.config.MODEL = "gpt-4o-mini"
    cid, mid, cleaned = _ask_with_image(deps)
    reply, _emitter = _run(deps, cid, mid)
    assert reply.finish_reason == "stop" and reply.meta["routing"]["rule"] == "image"
    assert "gpt-4o-mini" in reply.meta["routing"]["reasoning"]
    sent = fake_llm.requests[-1].body
    assert sent["model"] == "gpt-4o-mini"
    last = sent["messages"][-1]["content"]
    assert last[0] == {"type": "text", "text": "What is in this picture?"}
    url = last[1]["image_url"]["url"]
    assert url.startswith("data:image/png;base64,") and base64.b64decode(url.split(",", 1)[1]) == cleaned.data
    assert last[1]["image_url"]["detail"] == "auto"
    text_only = utils.request_tokens([{"role": "system", "content": sent["messages"][0]["content"]},
                                      {"role": "user", "content": "What is in this picture?"}])
    assert reply.prompt_tokens == text_only + 765  # the plan counted the image by the tile rule
    parts = reply.meta["context"]["parts"]
    assert parts["new_message"] == utils.message_tokens("user", "What is in this picture?") + 765
    assert parts["verbatim"] == 0 and sum(parts.values()) == reply.prompt_tokens


def test_image_turns_teach_the_calibration_nothing(turn_deps, fake_llm):
    """A server counts images its own way: the ratio is learned from text-only requests."""
    deps = turn_deps()
    deps.config.MODEL = "gpt-4o-mini"
    fake_llm.token_ratio = 1.3
    cid, mid, _cleaned = _ask_with_image(deps)
    reply, _emitter = _run(deps, cid, mid)
    assert reply.finish_reason == "stop" and reply.usage["prompt_tokens"]
    assert deps.calibration.ratio("gpt-4o-mini") == 1.0
    words = deps.store.create_conversation("alice")["conversation_id"]
    text = deps.store.append_message("alice", words, "user", "Say it in words",
                                     tokens=utils.message_tokens("user", "Say it in words"))
    _run(deps, words, text["message_id"])
    assert deps.calibration.ratio("gpt-4o-mini") > 1.0  # a text-only request still teaches it


def test_text_only_models_refusal_is_explained_remembered_and_keeps_the_message(turn_deps, fake_llm):
    deps = turn_deps()
    deps.config.MODEL = "gpt-4o-mini"
    fake_llm.text_only = True
    cid, mid, _ = _ask_with_image(deps)
    reply, emitter = _run(deps, cid, mid)
    errors = [payload for kind, payload in emitter.events if kind == "error"]
    assert reply.finish_reason == "error" and errors
    message = str(errors[0])
    assert "gpt-4o-mini does not accept images" in message and IMAGE_REFUSAL in message
    assert "Your message is saved" in message
    assert deps.store.get_message("alice", mid)["content"] == "What is in this picture?"
    assert "gpt-4o-mini" in deps.providers.text_only
    asked = len(fake_llm.requests)
    reply, _ = _run(deps, cid, mid)  # the next try knows: no request with images goes out again
    assert len(fake_llm.requests) == asked and reply.agent == "system"
    assert "does not accept images" in reply.text and reply.meta["routing"]["matches"] == []


def test_without_a_vision_model_the_user_is_told_before_any_request(turn_deps, fake_llm):
    deps = turn_deps()  # fake-model matches no VISION_MODELS pattern
    cid, mid, _ = _ask_with_image(deps)
    reply, _ = _run(deps, cid, mid)
    assert reply.finish_reason == "error" and "fake-model does not accept images" in reply.text
    assert fake_llm.requests == []
    assert deps.store.get_message("alice", mid) is not None


def test_a_configured_vision_agent_answers_image_questions(turn_deps, fake_llm):
    deps = turn_deps()
    deps.config.AGENT_MODELS = {"vision": "my-eyes"}  # trusted as configured, whatever VISION_MODELS says
    cid, mid, _ = _ask_with_image(deps)
    reply, _ = _run(deps, cid, mid)
    assert reply.finish_reason == "stop" and reply.agent == "chat"
    assert fake_llm.requests[-1].body["model"] == "my-eyes" and len(fake_llm.image_parts()) == 1
    assert "my-eyes" in reply.meta["routing"]["reasoning"]


def test_an_image_that_does_not_fit_is_refused_with_the_numbers(turn_deps, fake_llm):
    deps = turn_deps()
    deps.config.MODEL, deps.config.MAX_TOKENS = "gpt-4o", 1000  # room 744 < 765 for the image
    cid, mid, _ = _ask_with_image(deps)
    reply, emitter = _run(deps, cid, mid)
    message = str(next(payload for kind, payload in emitter.events if kind == "error"))
    assert reply is None and fake_llm.requests == []
    assert "1 image(s)" in message and "765 of them for the images" in message and "1000-token" in message


def _exchange_then(deps, follow_up: str, summarised: bool) -> tuple[str, str]:
    """An image question answered, optionally folded into the summary, then `follow_up` (its id)."""
    deps.config.MODEL = "gpt-4o"
    cid, first, _ = _ask_with_image(deps)
    answer = deps.store.append_message("alice", cid, "assistant", "A red square.", parent_message_id=first,
                                       tokens=utils.message_tokens("assistant", "A red square."))
    if summarised:
        deps.store.set_summary("alice", cid, "The user showed a red square.", answer["message_id"], 12)
    follow = deps.store.append_message("alice", cid, "user", follow_up, parent_message_id=answer["message_id"],
                                       tokens=utils.message_tokens("user", follow_up))
    return cid, follow["message_id"]


def test_images_folded_into_the_summary_are_not_sent_again(turn_deps, fake_llm):
    deps = turn_deps()
    cid, follow = _exchange_then(deps, "And its colour?", summarised=True)
    reply, _ = _run(deps, cid, follow)
    assert reply.finish_reason == "stop" and fake_llm.image_parts() == []
    assert "red square" in str(fake_llm.requests[-1].body["messages"])


def test_a_text_only_model_sees_older_images_named_not_sent(turn_deps, fake_llm):
    deps = turn_deps()
    cid, follow = _exchange_then(deps, "Thanks", summarised=False)
    reply, _ = _run(deps, cid, follow, model="fake-model")
    assert reply.finish_reason == "stop" and fake_llm.image_parts() == []
    assert "not shown to this model: cat.png" in fake_llm.requests[-1].body["messages"][1]["content"]


# -- HTTP: upload, serve, isolate ---------------------------------------------------------------

@pytest.fixture
def vision_app(make_app, fake_llm):
    return make_app(OPENAI_BASE_URL=fake_llm.url, MODEL="gpt-4o-mini", MAX_TOKENS=8192, REPLY_TOKENS=256)


@pytest.fixture
def browser(vision_app):
    http = vision_app.test_client()
    http.get("/")
    return http


def upload(http, data: bytes, name="cat.png", client_id="c-1"):
    return post_file(http, "/images", name, data, client_message_id=client_id)


def test_upload_serves_the_cleaned_image_to_its_owner_only(vision_app, browser):
    answer = upload(browser, gps_jpeg(), "holiday.jpg")
    assert answer.status_code == 201, answer.get_json()
    image = answer.get_json()
    assert (image["mime"], image["width"], image["height"], image["tokens"]) == ("image/jpeg", 64, 48, 255)
    served = browser.get(image["url"])
    assert served.status_code == 200 and served.mimetype == "image/jpeg" and b"SecretCam" not in served.data
    stranger = vision_app.test_client()
    stranger.get("/")
    for response in (stranger.get(image["url"]), stranger.delete(image["url"])):
        assert response.status_code == 404 and response.get_json()["message"] == "Image not found."
    assert browser.get("/images/not-an-id").status_code == 404
    assert browser.delete(image["url"]).get_json()["deleted"] is True
    assert browser.get(image["url"]).status_code == 404


@pytest.mark.parametrize("data, name, status, words", [
    (b"hello", "notes.txt", 400, "Unsupported image type"),
    (b"%PDF-1.7", "cat.png", 415, "not a PNG, JPEG, WebP or GIF"),
    (b"", "cat.png", 400, "empty"),
])
def test_upload_refuses_what_is_not_an_image(browser, data, name, status, words):
    answer = upload(browser, data, name)
    assert answer.status_code == status and words in answer.get_json()["message"]


def test_upload_refusals_for_limits(make_app, fake_llm):
    app = make_app(OPENAI_BASE_URL=fake_llm.url, MODEL="gpt-4o", MAX_TOKENS=1000, REPLY_TOKENS=256,
                   IMAGES_PER_MESSAGE=1, UPLOAD_QUOTA_MB=0.001)
    http = app.test_client()
    http.get("/")
    too_costly = upload(http, picture("PNG", size=(1024, 1024)))
    assert too_costly.status_code == 413 and "765 tokens" in too_costly.get_json()["message"]
    assert "room for 744" in too_costly.get_json()["message"]
    noisy = Image.effect_noise((64, 64), 80).convert("RGB")
    out = io.BytesIO()
    noisy.save(out, "PNG")
    over_quota = upload(http, out.getvalue())
    assert over_quota.status_code == 413 and "Your uploads use" in over_quota.get_json()["message"]
    assert upload(http, b"x", client_id="").status_code == 400


def test_upload_refuses_images_over_the_size_limit(make_app, fake_llm):
    app = make_app(OPENAI_BASE_URL=fake_llm.url, MODEL="gpt-4o", IMAGE_MAX_MB=0.001)
    http = app.test_client()
    http.get("/")
    noisy = Image.effect_noise((64, 64), 80).convert("RGB")
    out = io.BytesIO()
    noisy.save(out, "PNG")
    answer = upload(http, out.getvalue())
    assert answer.status_code == 413 and "larger than the 0.001 MB limit" in answer.get_json()["message"]
    big = make_app(OPENAI_BASE_URL=fake_llm.url, MODEL="gpt-4o", IMAGE_MAX_MB=8).test_client()
    big.get("/")
    refused = upload(big, b"\x89PNG\r\n\x1a\n" + b"\x00" * (9 * 1024 * 1024))  # past the body's limit
    assert refused.status_code == 413 and "larger than the 8 MB image limit" in refused.get_json()["message"]


def test_images_per_message_are_capped(make_app, fake_llm):
    app = make_app(OPENAI_BASE_URL=fake_llm.url, MODEL="gpt-4o", IMAGES_PER_MESSAGE=1)
    http = app.test_client()
    http.get("/")
    assert upload(http, picture()).status_code == 201
    second = upload(http, picture())
    assert second.status_code == 400 and "at most 1 images" in second.get_json()["message"]


def test_socket_message_with_an_uploaded_image_is_answered_by_the_vision_model(vision_app, browser, fake_llm):
    image = upload(browser, picture("WEBP"), "shot.webp", client_id="c-img").get_json()
    sock = socketio.test_client(vision_app, flask_test_client=browser)
    try:
        ack = sock.emit("send_message", {"message": "Describe it", "client_message_id": "c-img"}, callback=True)
        assert ack["ok"] and ack["message_id"] == image["message_id"]
        events = wait_for(sock, "response_done")
    finally:
        sock.disconnect()
    done = next(e["args"][0] for e in events if e["name"] == "response_done")
    assert done["meta"]["routing"]["rule"] == "image" and done["finish_reason"] == "stop"
    assert fake_llm.image_parts()[0]["image_url"]["url"].startswith("data:image/webp;base64,")
    listed = browser.get(f"/conversations/{ack['conversation_id']}/images").get_json()["images"]
    assert [(i["image_id"], i["message_id"]) for i in listed] == [(image["image_id"], ack["message_id"])]
    late = upload(browser, picture(), client_id="c-img")
    assert late.status_code == 409
    assert browser.delete(image["url"]).status_code == 409  # a sent message keeps its images
    stranger = vision_app.test_client()
    stranger.get("/")
    assert stranger.get(f"/conversations/{ack['conversation_id']}/images").status_code == 404
    cid = ack["conversation_id"]
    exported = browser.get(f"/export/{cid}?format=json").get_json()
    assert [(i["image_id"], i["url"]) for i in exported["images"]] == [(image["image_id"], image["url"])]
    assert "data" not in exported["images"][0]  # named and linked, never the bytes
    markdown = browser.get(f"/export/{cid}?format=md").get_data(as_text=True)
    assert f"![shot.webp]({image['url']})" in markdown
    leaf = browser.get(f"/load_conversation/{cid}").get_json()["conversation"][-1]["message_id"]
    budget = browser.get(f"/conversations/{cid}/budget?leaf={leaf}").get_json()
    text_only = sum(m["tokens"] for m in browser.get(f"/load_conversation/{cid}").get_json()["conversation"])
    assert budget["verbatim_tokens"] == text_only + exported["images"][0]["tokens"]  # the meter counts the image


def test_image_records_follow_the_store_contract(store):
    image = store.add_image("alice", "m-1", "cat.png", "image/png", 4, 3, b"\x89PNG-bytes")
    assert store.get_image("alice", image["image_id"])["data"] == b"\x89PNG-bytes"
    assert store.get_image("bob", image["image_id"]) is None and not store.delete_image("bob", image["image_id"])
    assert [i["image_id"] for i in store.message_images("alice", ["m-1", "m-2"])] == [image["image_id"]]
    assert store.message_images("bob", ["m-1"]) == [] and store.upload_bytes("alice") == len(b"\x89PNG-bytes")
    store.move_user_data("alice", "carol")
    assert store.get_image("carol", image["image_id"]) is not None and store.image_bytes("alice") == 0
    from datetime import timedelta

    cid = store.create_conversation("carol")["conversation_id"]
    for clear in (store.clear_messages, store.delete_conversation):  # their images go with their messages
        sent = store.append_message("carol", cid, "user", "look", tokens=3)
        kept = store.add_image("carol", sent["message_id"], "dog.png", "image/png", 4, 3, b"\x89PNG-dog")
        assert clear("carol", cid) and store.get_image("carol", kept["image_id"]) is None

    from storage.base import utcnow
    assert store.sweep_images("carol", utcnow() - timedelta(hours=1)) == 0  # still pending
    assert store.sweep_images("carol", utcnow() + timedelta(seconds=1)) == 1  # its message never came
    assert store.image_bytes(None) == 0


def test_markdown_exports_reference_each_messages_images():
    from web.images import markdown_lines
    found = [{"message_id": "m-1", "file_name": "cat.png", "url": "/images/i-1"},
             {"message_id": "m-2", "file_name": "dog.png", "url": "/images/i-2"}]
    assert markdown_lines(found, "m-1") == "\n\n![cat.png](/images/i-1)"
    assert markdown_lines(found, "m-3") == ""


def test_socket_text_only_refusal_is_shown_and_the_message_kept(vision_app, browser, fake_llm):
    fake_llm.text_only = True
    upload(browser, picture(), client_id="c-refused")
    sock = socketio.test_client(vision_app, flask_test_client=browser)
    try:
        ack = sock.emit("send_message", {"message": "What is this?", "client_message_id": "c-refused"}, callback=True)
        events = wait_for(sock, "response_done")
    finally:
        sock.disconnect()
    errors = [e["args"][0]["message"] for e in events if e["name"] == "error"]
    assert any("gpt-4o-mini does not accept images" in message for message in errors)
    stored = browser.get(f"/load_conversation/{ack['conversation_id']}").get_json()["conversation"]
    assert stored[0]["content"] == "What is this?" and stored[-1]["finish_reason"] == "error"
