"""Agents behind send_message: routing event, math without an endpoint, knowledge with citations,
/file over an upload, with the Flask-SocketIO test client."""
import pytest
from test_socket_events import payloads, wait_for
from test_uploads import post_upload, wait_for_job

from app import socketio


def _connect(app):
    browser = app.test_client()
    browser.get("/")
    return browser, socketio.test_client(app, flask_test_client=browser)


@pytest.fixture
def offline(make_app):
    """No model endpoint at all: what a fresh install looks like."""
    browser, sock = _connect(make_app())
    yield browser, sock
    sock.disconnect()


@pytest.fixture
def online(make_app, fake_llm):
    browser, sock = _connect(make_app(OPENAI_BASE_URL=fake_llm.url, MAX_TOKENS=4096, REPLY_TOKENS=256))
    yield browser, sock
    sock.disconnect()


def _say(sock, text, **extra):
    ack = sock.emit("send_message", {"message": text, **extra}, callback=True)
    assert ack["ok"] is True, ack
    return ack, wait_for(sock, "response_done")


def _upload(browser, name, data):
    return wait_for_job(browser, post_upload(browser, name, data).get_json()["job_id"])


@pytest.mark.parametrize("question, answer", [("What is 65 x 3.11?", "202.15"), ("Calculate (42 * 2) / 6", "14"),
                                              ("Solve 2x + 5 = 15", "x = 5"), ("What's the square root of 144?", "12")])
def test_math_answers_with_no_endpoint(offline, question, answer):
    browser, sock = offline
    ack, events = _say(sock, question)
    routing = payloads(events, "routing")[0]
    assert routing["agent"] == "math" and routing["rule"] == "math_pattern" and routing["reasoning"]
    reply = "".join(c["chunk"] for c in payloads(events, "response_chunk"))
    assert answer in reply
    done = payloads(events, "response_done")[0]
    assert done["agent"] == "math" and done["meta"]["routing"]["agent"] == "math"
    stored = browser.get(f"/load_conversation/{ack['conversation_id']}").get_json()["conversation"][-1]
    assert stored["agent"] == "math" and stored["meta"]["math"]["result"] and stored["content"] == reply


def test_unsafe_math_is_refused_clearly(offline):
    _, sock = offline
    _, events = _say(sock, "/math __import__('os').system('id')")
    reply = "".join(c["chunk"] for c in payloads(events, "response_chunk"))
    assert payloads(events, "response_done")[0]["agent"] == "math" and reply
    assert "uid=" not in reply


def test_chat_without_endpoint_explains_and_suggests_math(offline):
    _, sock = offline
    _, events = _say(sock, "How do I create an account?")
    assert payloads(events, "routing")[0]["agent"] == "chat"
    assert "No model endpoint is configured" in payloads(events, "response_chunk")[0]["chunk"]


def test_knowledge_without_endpoint_quotes_the_passages(offline):
    browser, sock = offline
    _upload(browser, "policy.txt", b"Refunds are accepted within 30 days.\n\nShipping takes 5 days.\n")
    _, events = _say(sock, "/ask how long do refunds take?")
    reply = "".join(c["chunk"] for c in payloads(events, "response_chunk"))
    assert "Refunds are accepted within 30 days." in reply and "policy.txt, chunk 1" in reply
    done = payloads(events, "response_done")[0]
    assert done["meta"]["citations"][0]["file_name"] == "policy.txt"


def test_knowledge_sends_excerpts_and_cites_sources(online, fake_llm):
    browser, sock = online
    _upload(browser, "policy.txt", b"Refunds are accepted within 30 days of purchase.\n")
    before = len(fake_llm.requests)
    _, events = _say(sock, "What does my uploaded file say about refunds?")
    assert payloads(events, "routing")[0]["agent"] == "knowledge"
    system = fake_llm.requests[before].body["messages"][0]["content"]
    assert "[policy.txt, chunk 1]" in system and "30 days" in system
    reply = "".join(c["chunk"] for c in payloads(events, "response_chunk"))
    assert reply.startswith(fake_llm.reply) and reply.endswith("Sources: policy.txt (chunk 1)")


def test_knowledge_with_nothing_uploaded_says_so(offline):
    _, sock = offline
    _, events = _say(sock, "/ask what is in my files?")
    assert "not uploaded any files" in payloads(events, "response_chunk")[0]["chunk"]


def test_file_command_analyses_the_newest_upload_with_progress(online, fake_llm):
    browser, sock = online
    document = _upload(browser, "notes.txt", b"Ship on Friday. Budget is 10k.")
    _, events = _say(sock, "/file list the deadlines")
    assert payloads(events, "routing")[0]["agent"] == "file"
    progress = payloads(events, "file_progress")
    assert progress and progress[-1]["done"] == progress[-1]["total"] == 1
    assert fake_llm.requests[-1].body["messages"][0]["content"].startswith("list the deadlines")
    assert payloads(events, "response_done")[0]["meta"]["document_id"] == document["document_id"]


def test_attached_document_must_be_the_users_own(online):
    browser, sock = online
    document = _upload(browser, "notes.txt", b"Private notes.")
    ack = sock.emit("send_message", {"message": "what is this?", "document_id": document["document_id"]},
                    callback=True)
    assert ack["ok"] is True
    assert payloads(wait_for(sock, "response_done"), "routing")[0]["rule"] == "attachment"
    _stranger_browser, stranger = _connect(browser.application)
    refused = stranger.emit("send_message", {"message": "what is this?", "document_id": document["document_id"]},
                            callback=True)
    assert refused == {"ok": False, "message": "The attached file was not found."}
    stranger.disconnect()


def test_upload_progress_reaches_the_users_socket(online, fake_llm):
    browser, sock = online
    _upload(browser, "a.txt", b"Some text to analyse.")
    events = wait_for(sock, "file_done")
    assert payloads(events, "file_done")[0]["file_name"] == "a.txt"
    assert any(p["phase"] == "analysing" for p in payloads(events, "file_progress"))


def test_math_pattern_that_is_not_maths_goes_to_chat(online, fake_llm):
    _, sock = online
    _, events = _say(sock, "What is 3 - 2 days from now?")
    assert payloads(events, "routing")[0]["agent"] == "math"
    done = payloads(events, "response_done")[0]
    assert done["agent"] == "chat" and done["meta"]["routing"]["agent"] == "math"
    assert "".join(c["chunk"] for c in payloads(events, "response_chunk")) == fake_llm.reply


def test_math_pattern_that_is_not_maths_without_endpoint_explains(offline):
    _, sock = offline
    _, events = _say(sock, "/math what is love")
    assert "could not read that as a calculation" in payloads(events, "response_chunk")[0]["chunk"]
