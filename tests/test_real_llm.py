"""The app against a real model server (docs/ARCHITECTURE.md decision 11: the real server checks that the fake
tells the truth): llama.cpp serving SmolLM2-135M with a 1,024-token window, through Flask-SocketIO's
test client. Slow (a few minutes on 2 cores): skipped without .venv-llm, required in CI.

The measured figures go to artifacts/real_llm/figures.json and are printed past pytest's capture.
"""
import json
import re
import time
from pathlib import Path

import pytest
from test_uploads import post_upload, wait_for_job

import utils
from agents import calibration, pins, router, titler
from agents import summariser as summariser_agent
from agents.emitter import RecordingEmitter
from agents.llm_client import LLMClient
from app import socketio

pytestmark = pytest.mark.real_llm

WINDOW, REPLY_TOKENS, TURNS = 1024, 120, 24  # 20 turns or more; 24 leave the pinned fact room for 5 compactions
FIGURES = Path(__file__).resolve().parent.parent / "artifacts" / "real_llm" / "figures.json"
PINNED = "My name is Quill and we use Postgres 16"
PEOPLE = ["Ada", "Bruno", "Chidi", "Dana", "Emeka", "Farah", "Goran", "Hana", "Ivo", "Jun"]
CITIES = ["Lisbon", "Oslo", "Accra", "Lima", "Hanoi", "Porto", "Quito", "Riga", "Sofia", "Tunis"]


def user_turn(i: int) -> str:
    """An ~80-word user message with facts a summary should keep."""
    person, city = PEOPLE[i % 10], CITIES[(3 * i) % 10]
    return (f"Note {i + 1}: my colleague {person} moved to {city} in {1990 + i} and keeps {i + 2} cats there. "
            f"{person} works on bridges, walks to the office every morning, and likes bread with olives. "
            f"Last week {person} finished a report of {40 + i} pages about river crossings and old stone arches, "
            f"and the team met in the evening to celebrate it with soup. Please answer in one or two short "
            f"sentences: what should {person} pack for a weekend trip from {city}?")


def record_figures(capsys, **figures) -> None:
    """Add figures to artifacts/real_llm/figures.json and show them in the test log."""
    FIGURES.parent.mkdir(parents=True, exist_ok=True)
    known = json.loads(FIGURES.read_text()) if FIGURES.exists() else {}
    known.update(figures)
    FIGURES.write_text(json.dumps(known, indent=2))
    with capsys.disabled():
        print("\nreal_llm figures: " + json.dumps(figures))


@pytest.fixture
def real_app(make_app, llama_server):
    return make_app(OPENAI_BASE_URL=llama_server.tap_url, MODEL="smollm2", MAX_TOKENS=WINDOW,
                    REPLY_TOKENS=REPLY_TOKENS)


@pytest.fixture
def browser(real_app):
    http = real_app.test_client()
    http.get("/")
    return http


@pytest.fixture
def sock(real_app, browser):
    client = socketio.test_client(real_app, flask_test_client=browser)
    yield client
    if client.is_connected():
        client.disconnect()


def wait_for(sock, name, seconds=240.0, condition=lambda events: True):
    """Collect events until `name` arrives (and `condition` holds); returns them all."""
    events, deadline = [], time.monotonic() + seconds
    while time.monotonic() < deadline:
        events += sock.get_received()
        if any(e["name"] == name for e in events) and condition(events):
            return events
        time.sleep(0.05)
    raise AssertionError(f"no {name} event in {seconds} s; got {[e['name'] for e in events]}")


def wait_idle(tap, seconds: float = 120.0) -> None:
    """Until every request through the tap has ended."""
    deadline = time.monotonic() + seconds
    while not all(r["ended"] for r in tap.requests) and time.monotonic() < deadline:
        time.sleep(0.05)


def payloads(events, name):
    return [e["args"][0] for e in events if e["name"] == name]


def is_summary(record: dict) -> bool:
    return record["body"]["messages"][0]["content"] == summariser_agent.SUMMARY_INSTRUCTIONS


def server_view(llama_server, records: list[dict], largest: int = 6) -> list[dict]:
    """For the requests the app counted largest (prompt + max_tokens): its own count, the server's
    usage.prompt_tokens (asked again, without streaming: streams carry no usage) and max_tokens."""
    view = [{"counted": utils.request_tokens(r["body"]["messages"]), "max_tokens": r["body"]["max_tokens"],
             "messages": r["body"]["messages"], "summary": is_summary(r)} for r in records]
    view = sorted(view, key=lambda v: v["counted"] + v["max_tokens"])[-largest:]
    for v in view:
        v["server"] = llama_server.prompt_tokens(v.pop("messages"))
    return view


def test_real_llm_long_conversation_stays_in_window_and_is_summarised(sock, browser, real_app, llama_server,
                                                                      capsys):
    start, began, finishes = len(llama_server.tap.requests), time.monotonic(), []
    log_start = len(llama_server.log())
    conversation_id, checkpoints, compacted_before_turn = None, set(), []
    for i in range(TURNS):
        wait_idle(llama_server.tap)  # a person reads the reply before typing; the calibration probe runs then
        if conversation_id:  # the compactions since the fact was pinned (each extends the summary)
            summary = browser.get(f"/conversations/{conversation_id}/summary").get_json()["summary"]
            if summary and summary["last_message_id"] not in checkpoints:
                checkpoints.add(summary["last_message_id"])
                compacted_before_turn.append(i + 1)
        data = {"message": user_turn(i)} | ({"conversation_id": conversation_id} if conversation_id else {})
        ack = sock.emit("send_message", data, callback=True)
        assert ack["ok"] is True, ack
        if conversation_id is None:
            pinned = browser.put(f"/conversations/{ack['conversation_id']}/pins", json={"facts": [PINNED]})
            assert pinned.status_code == 200, pinned.get_json()
        conversation_id = ack["conversation_id"]
        events = wait_for(sock, "response_done")
        assert not payloads(events, "error"), payloads(events, "error")
        finishes.append(payloads(events, "response_done")[0]["finish_reason"])
    chatting = time.monotonic() - began
    wait_idle(llama_server.tap)  # the compaction after the last reply counts too
    summary = browser.get(f"/conversations/{conversation_id}/summary").get_json()["summary"]
    checkpoints |= {summary["last_message_id"]} if summary else set()
    assert set(finishes) <= {"stop", "length"}, finishes
    stored = browser.get(f"/load_conversation/{conversation_id}").get_json()
    assert [m["content"] for m in stored["conversation"] if m["role"] == "user"] == [user_turn(i) for i in range(TURNS)]
    assert len(stored["conversation"]) == 2 * TURNS
    wait_idle(llama_server.tap)
    everything = [r for r in llama_server.tap.requests[start:] if r["body"]]
    records = [r for r in everything if r["body"].get("stream")]
    probes = [r for r in everything if not r["body"].get("stream")]
    summaries = [r for r in records if is_summary(r)]
    assert summaries and stored["summary"] and stored["summary"]["content"].strip()
    assert any(stored["summary"]["content"][:40] in r["text"] for r in summaries), "stored summary is not the model's"
    assert all(r["status"] == 200 for r in records), [(r["status"], r["text"][:300]) for r in records]
    assert "exceed context window" not in llama_server.log()[log_start:]
    view = server_view(llama_server, records)
    largest = max(view, key=lambda v: v["server"])
    chats = [v for v in view if not v["summary"]] or view
    ratio = real_app.extensions["chat_calibration"].ratio("smollm2")
    off_by = [abs(v["counted"] * ratio - v["server"]) / v["server"] for v in chats]
    record_figures(capsys, turns=TURNS, reply_tokens=REPLY_TOKENS, chat_seconds=round(chatting, 1),
                   finish_reasons={f: finishes.count(f) for f in set(finishes)},
                   summariser_calls=len(summaries), summary_tokens=stored["summary"]["tokens"],
                   calibration_ratio_learned=round(ratio, 3), calibration_probes=len(probes),
                   calibrated_count_off_by_max=round(max(off_by), 3),
                   server_over_counted=round(sum(v["server"] for v in chats) / sum(v["counted"] for v in chats), 3),
                   largest_prompt_server=largest["server"], largest_prompt_counted=largest["counted"],
                   largest_prompt_plus_max_tokens=max(v["server"] + v["max_tokens"] for v in view),
                   over_window_if_max_tokens_honoured=sum(v["server"] + v["max_tokens"] > WINDOW for v in view),
                   window=WINDOW, usage_in_stream=any(r["usage"] for r in records),
                   requests=len(records), replayed=len(view), compactions_after_pinning=len(checkpoints),
                   compacted_before_turn=compacted_before_turn)
    assert largest["server"] < WINDOW
    assert all(v["server"] + v["max_tokens"] <= WINDOW for v in view), "prompt + reply over the window"
    assert len(checkpoints) >= 5, f"the pinned fact saw only {len(checkpoints)} compactions"
    last_chat = [r for r in records if not is_summary(r)][-1]["body"]["messages"]
    assert last_chat[0]["content"].endswith(pins.PINS_HEADING + f"- {PINNED}"), "the pinned fact was not sent"
    assert stored["conversation"][-1]["meta"]["context"]["parts"]["pinned"] > 0
    assert 0 < len(probes) <= calibration.PROBES_PER_MODEL and all(p["status"] == 200 for p in probes)
    assert ratio > 1.0, "the streams carry no usage: the probes must have taught the ratio"
    assert max(off_by) <= 0.15, (ratio, chats)


def test_real_llm_stop_keeps_partial_reply_and_server_sees_hang_up(sock, browser, llama_server, capsys):
    start, log_start = len(llama_server.tap.requests), len(llama_server.log())
    ack = sock.emit("send_message", {"message": "Write a long story, at least 300 words, about a lighthouse keeper "
                                                "and her dog during a winter storm."}, callback=True)
    events = wait_for(sock, "response_chunk", 120)
    sock.emit("stop_generation", {"conversation_id": ack["conversation_id"]}, callback=True)
    events += wait_for(sock, "response_done", 60)
    streamed = "".join(p["chunk"] for p in payloads(events, "response_chunk"))
    reply = browser.get(f"/load_conversation/{ack['conversation_id']}").get_json()["conversation"][-1]
    assert reply["finish_reason"] == "stopped" and reply["content"].startswith(streamed[:20])
    record = llama_server.tap.requests[start]
    deadline = time.monotonic() + 30
    while not record["ended"] and time.monotonic() < deadline:
        time.sleep(0.1)
    assert record["ended"] and not record["done"] and not record["finish"]
    deadline = time.monotonic() + 30
    while "Disconnected from client" not in llama_server.log()[log_start:] and time.monotonic() < deadline:
        time.sleep(0.2)
    assert "Disconnected from client" in llama_server.log()[log_start:]
    record_figures(capsys, stop_partial_words=len(reply["content"].split()), stop_tap_saw_hang_up=record["client_gone"])


def test_real_llm_titler_completes_or_keeps_first_line(make_app, llama_server, capsys):
    app = make_app(OPENAI_BASE_URL=llama_server.tap_url, MODEL="smollm2", MAX_TOKENS=WINDOW,
                   REPLY_TOKENS=REPLY_TOKENS, AUTO_TITLE=True)
    http = app.test_client()
    http.get("/")
    sock = socketio.test_client(app, flask_test_client=http)
    first = "In one short sentence: where do walruses live?"
    start = len(llama_server.tap.requests)
    ack = sock.emit("send_message", {"message": first}, callback=True)
    finish = payloads(wait_for(sock, "response_done"), "response_done")[0]["finish_reason"]

    def title_requests() -> list[dict]:
        return [r for r in llama_server.tap.requests[start:]
                if r["body"] and r["body"]["messages"][0]["content"] == titler.INSTRUCTIONS and r["ended"]]
    deadline = time.monotonic() + (60 if finish == "stop" else 3)  # titles follow a complete first reply only
    while not title_requests() and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(0.5)  # the titler stores the title after its request ends
    title = http.get(f"/load_conversation/{ack['conversation_id']}").get_json()["title"]
    sock.disconnect()
    assert bool(title_requests()) == (finish == "stop")
    assert title == titler.first_line_title(first) or (0 < len(title) <= titler.TITLE_CHARS and "\n" not in title)
    answers = [r["text"] for r in title_requests()]
    record_figures(capsys, first_reply_finish=finish, title=title, title_model_answer=answers[:1],
                   title_from_model=title != titler.first_line_title(first))


def test_real_llm_summariser_folds_history_or_degrades(llama_server, capsys):
    history = [{"message_id": f"m{i}", "role": "user" if i % 2 == 0 else "assistant",
                "content": user_turn(i // 2) if i % 2 == 0 else f"{PEOPLE[(i // 2) % 10]} should pack a coat.",
                "tokens": 0} for i in range(16)]
    for message in history:
        message["tokens"] = utils.message_tokens(message["role"], message["content"])
    budget = utils.Budget(WINDOW, REPLY_TOKENS)
    with LLMClient(llama_server.tap_url, model="smollm2", read_timeout=120) as client:
        plan = utils.assemble_context(history, None, "You are a helpful assistant.", budget,
                                      summariser_agent.summariser(client, RecordingEmitter()))
    assert plan.prompt_tokens <= budget.prompt_room
    assert (plan.new_summary and plan.new_summary["content"].strip()) or plan.notice
    record_figures(capsys, summariser_direct=bool(plan.new_summary), summariser_calls_direct=plan.summariser_calls,
                   summary_text=(plan.new_summary or {}).get("content", "")[:200])


def test_real_llm_over_window_request_error_shape(llama_server, capsys):
    """What llama.cpp answers to a prompt over its window, streamed and not (the fake answers 400)."""
    import requests
    messages = [{"role": "user", "content": "walrus " * 1500}]
    shapes = {}
    for stream in (False, True):
        body = {"model": "smollm2", "messages": messages, "max_tokens": 16, "stream": stream}
        try:
            answer = requests.post(llama_server.url + "/chat/completions", json=body, timeout=120)
            shapes[f"stream={stream}"] = {"status": answer.status_code, "content_type": answer.headers.get(
                "content-type"), "body": answer.text[:400]}
        except requests.RequestException as error:
            shapes[f"stream={stream}"] = {"error": f"{type(error).__name__}: {error}"[:400]}
    with LLMClient(llama_server.url, model="smollm2", max_retries=0) as client:
        try:
            reply = client.complete(messages, max_tokens=16)
            shapes["app_client"] = {"text": reply.text, "finish": reply.finish_reason, "usage": reply.usage}
        except Exception as error:  # noqa: BLE001 (recording what the app's client makes of it)
            shapes["app_client"] = {"error": f"{type(error).__name__}: {error}"[:300]}
    record_figures(capsys, over_window=shapes)
    assert shapes["stream=False"]["status"] == 400
    assert "context_length_exceeded" in shapes["stream=False"]["body"]


def test_real_llm_second_request_cuts_the_first_stream_short(llama_server, capsys):
    """llama-cpp-python's server runs one request at a time and, by default (interrupt_requests),
    ends a stream in flight with [DONE] and no finish_reason when another request arrives."""
    import threading

    import requests
    body = {"model": "smollm2", "messages": [{"role": "user", "content": "Write a long story about a walrus."}],
            "max_tokens": 200, "stream": True}
    start = len(llama_server.tap.requests)
    first = threading.Thread(target=lambda: requests.post(llama_server.tap_url + "/chat/completions", json=body,
                                                          timeout=120).content)
    first.start()
    deadline = time.monotonic() + 60
    while (len(llama_server.tap.requests) == start or not llama_server.tap.requests[start]["text"]) \
            and time.monotonic() < deadline:
        time.sleep(0.05)
    requests.post(llama_server.tap_url + "/chat/completions", json=body | {"max_tokens": 4}, timeout=120)
    first.join(120)
    cut = llama_server.tap.requests[start]
    record_figures(capsys, interrupted_stream={"done": cut["done"], "finish": cut["finish"],
                                               "words": len(cut["text"].split())})
    assert cut["done"] and not cut["finish"]


def test_real_llm_router_classifier_decides_or_falls_back(make_app, llama_server, capsys):
    """ROUTER_LLM=true: for messages no rule matches, SmolLM2 is asked for one word. A usable word
    routes (rule `classifier`); anything else (a sentence, an empty or failed answer) is general chat
    with the model's answer named in the reasoning (rule `default`). Either way the turn completes."""
    app = make_app(OPENAI_BASE_URL=llama_server.tap_url, MODEL="smollm2", MAX_TOKENS=WINDOW,
                   REPLY_TOKENS=32, ROUTER_LLM=True)
    http = app.test_client()
    http.get("/")
    sock = socketio.test_client(app, flask_test_client=http)
    decisions = []
    for message in ("Tell me one nice thing about autumn.", "How many legs does a spider have?"):
        wait_idle(llama_server.tap)
        start = len(llama_server.tap.requests)
        sock.emit("send_message", {"message": message}, callback=True)
        events = wait_for(sock, "response_done")
        routing = payloads(events, "routing")[0]
        asked = [r for r in llama_server.tap.requests[start:]
                 if r["body"] and r["body"]["messages"][0]["content"] == router.CLASSIFIER_PROMPT]
        assert len(asked) == 1 and asked[0]["status"] == 200
        answer = asked[0]["text"]
        first_word = (re.match(r"[a-z]+", answer.strip().lower()) or [""])[0]  # what the router reads
        assert routing["rule"] in ("classifier", "default")
        if routing["rule"] == "classifier":
            assert routing["matches"] == [first_word] and first_word in ("math", "chat")
        else:
            assert routing["agent"] == "chat" and "general chat" in routing["reasoning"]
        assert payloads(events, "response_done")[0]["finish_reason"] in ("stop", "length")
        decisions.append({"model_said": answer[:40], "rule": routing["rule"], "agent": routing["agent"],
                          "reasoning": routing["reasoning"]})
    sock.disconnect()
    record_figures(capsys, router_classifier=decisions)


def test_real_llm_knowledge_agent_answers_from_an_upload_with_citations(make_app, llama_server, capsys):
    """An uploaded file, a question about it: the excerpt reaches the model under its source heading,
    the reply completes and ends with the sources, and the stored reply carries the citation."""
    app = make_app(OPENAI_BASE_URL=llama_server.tap_url, MODEL="smollm2", MAX_TOKENS=WINDOW,
                   REPLY_TOKENS=48)
    http = app.test_client()
    http.get("/")
    facts = (b"Brightwater lighthouse was built in 1887 on the north cliff.\n\n"
             b"Its keeper, Maren Holt, kept a log of every storm until 1931.\n")
    job = wait_for_job(http, post_upload(http, "lighthouse.txt", facts).get_json()["job_id"], seconds=300)
    assert job["status"] == "done", job
    sock = socketio.test_client(app, flask_test_client=http)
    wait_idle(llama_server.tap)
    start = len(llama_server.tap.requests)
    ack = sock.emit("send_message", {"message": "/ask When was the Brightwater lighthouse built?"}, callback=True)
    events = wait_for(sock, "response_done")
    sock.disconnect()
    done = payloads(events, "response_done")[0]
    assert done["agent"] == "knowledge" and done["finish_reason"] in ("stop", "length"), done
    asked = [r for r in llama_server.tap.requests[start:] if r["body"] and r["body"].get("stream")]
    assert any("[lighthouse.txt" in r["body"]["messages"][0]["content"] and "1887" in r["body"]["messages"][0]["content"]
               for r in asked)
    citations = done["meta"]["citations"]
    assert citations and all(c["file_name"] == "lighthouse.txt" for c in citations)
    reply = http.get(f"/load_conversation/{ack['conversation_id']}").get_json()["conversation"][-1]
    assert reply["content"].rstrip().endswith("Sources: lighthouse.txt (chunk 1)")
    record_figures(capsys, knowledge_reply=reply["content"][:300], knowledge_mentions_1887="1887" in reply["content"])


def test_real_llm_empty_stream_replans_once_then_says_so(make_app, llama_server, capsys):
    """The app believes the window is 4,096 tokens; the server's is 1,024. A 1,300-token question
    gets HTTP 200 and an empty stream: the turn re-plans tighter once, then the user gets a clear
    error, the question is kept and the reply is stored marked `error`, never as an empty success."""
    from agents.chat_agent import RETURNED_NOTHING
    app = make_app(OPENAI_BASE_URL=llama_server.tap_url, MODEL="smollm2", MAX_TOKENS=4096, REPLY_TOKENS=64)
    http = app.test_client()
    http.get("/")
    sock = socketio.test_client(app, flask_test_client=http)
    question = "Count the walruses: " + "walrus " * 1300
    wait_idle(llama_server.tap)
    start, log_start = len(llama_server.tap.requests), len(llama_server.log())
    ack = sock.emit("send_message", {"message": question}, callback=True)
    events = wait_for(sock, "response_done", 120)
    sock.disconnect()
    sent = [r for r in llama_server.tap.requests[start:] if r["body"] and r["body"].get("stream")]
    assert len(sent) == 2, "one try and one tighter re-plan"
    assert all(r["status"] == 200 and not r["text"] and not r["finish"] for r in sent)
    assert payloads(events, "error")[-1]["message"] == RETURNED_NOTHING
    stored = http.get(f"/load_conversation/{ack['conversation_id']}").get_json()["conversation"]
    assert [m["role"] for m in stored] == ["user", "assistant"] and stored[0]["content"] == question
    assert stored[1]["finish_reason"] == "error" and stored[1]["content"] == ""
    assert "exceed context window" in llama_server.log()[log_start:]
    record_figures(capsys, empty_stream_requests=len(sent), empty_stream_done=[r["done"] for r in sent])


def test_real_llm_knowledge_agent_answers_a_paraphrased_question_with_the_right_citation(tmp_path, llama_server,
                                                                                          capsys):
    """Retrieval by meaning in front of a real model: the question shares no content word with the
    chunk that answers it, the chunk reaches the model under its page, and the reply cites it."""
    from agents.calibration import Calibration
    from agents.providers import Providers
    from agents.turn import TurnDeps, run_turn
    from config import TestConfig
    from semantic import indexer, model
    from storage.sqlite_store import SqliteStore

    store = SqliteStore(tmp_path / "paraphrase.sqlite3")
    store.migrate()
    config = TestConfig(tmp_path, MAX_TOKENS=WINDOW, REPLY_TOKENS=48, OPENAI_BASE_URL=llama_server.tap_url,
                        MODEL="smollm2")
    deps = TurnDeps(store, config, Providers(config), Calibration())
    store.add_document("alice", "handbook.pdf", "h1", [
        "Staff may carry over at most five days of unused annual leave into the next calendar year.",
        "The office network requires a badge at the front entrance after 7 pm.",
        "Expense reports must be submitted within thirty days with receipts attached."],
        [20, 14, 12], chunk_meta=[{"pages": [4]}, {"pages": [9]}, {"pages": [12]}])
    step = indexer.Indexer(store, model.shared(), start={"message": None, "chunk": None})
    while step.step():
        pass
    question = "/ask can I keep holidays I did not take for January?"
    cid = store.create_conversation("alice")["conversation_id"]
    mid = store.append_message("alice", cid, "user", question, tokens=utils.message_tokens("user", question))
    wait_idle(llama_server.tap)
    start = len(llama_server.tap.requests)
    reply = run_turn(deps, "alice", cid, mid["message_id"], "reply-1", RecordingEmitter(), lambda: False)
    asked = [r for r in llama_server.tap.requests[start:] if r["body"] and r["body"].get("stream")]
    record_figures(capsys, paraphrase_reply=reply.text, paraphrase_finish=reply.finish_reason)
    assert reply.meta["routing"]["agent"] == "knowledge" and reply.finish_reason in ("stop", "length")
    assert reply.meta["citations"][0]["file_name"] == "handbook.pdf" and reply.meta["citations"][0]["pages"] == [4]
    system = asked[0]["body"]["messages"][0]["content"]
    assert system.index("[handbook.pdf, p. 4]") < system.index("unused annual leave")
    assert "handbook.pdf (p. 4)" in reply.text  # the sources line the agent appends
