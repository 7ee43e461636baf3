"""File analysis through the fake model server: map over chunks concurrently, reduce, cache, retry."""
import re
import time

import pytest
from fake_llm import Fault

import utils
from agents.file_agent import FileAnalyser, Stopped, split
from agents.providers import Providers
from config import TestConfig
from storage.sqlite_store import SqliteStore

PART = re.compile(r"part (\d+) of (\d+)")


def responder(body):
    """Map calls answer with notes naming their part; reduce calls with a marked combination."""
    system = body["messages"][0]["content"]
    found = PART.search(system)
    if found:
        return f"notes on part {found.group(1)}"
    return "COMBINED " + " ".join(sorted(set(re.findall(r"notes on part \d+", body["messages"][1]["content"]))))


@pytest.fixture
def store(tmp_path):
    store = SqliteStore(tmp_path / "files.sqlite3")
    store.migrate()
    yield store
    store.close()


def _analyser(tmp_path, store, fake_llm, progress=None, stopped=lambda: False, **settings):
    defaults = {"OPENAI_BASE_URL": fake_llm.url, "MODEL": "fake-model", "CHUNK_SIZE_TOKENS": 200,
                "CHUNK_OVERLAP_TOKENS": 20, "REPLY_TOKENS": 200, "FILE_WORKERS": 4}
    config = TestConfig(tmp_path, **{**defaults, **settings})
    client = Providers(config, client_options={"max_retries": 0, "read_timeout": 5}).client("file")
    events = [] if progress is None else progress
    return FileAnalyser(store, "alice", client, config, events.append, stopped, sleep=lambda s: None), config


def _text(paragraphs=12):
    return "\n\n".join(f"Section {i}. " + "The quick brown fox jumps over the lazy dog. " * 30
                       for i in range(paragraphs))


def test_every_chunk_is_analysed_then_combined(tmp_path, store, fake_llm):
    fake_llm.responder = responder
    progress = []
    analyser, config = _analyser(tmp_path, store, fake_llm, progress)
    chunks = [c.text for c in split(_text(), config)]
    assert len(chunks) > 4
    analysis = analyser.run(chunks)
    assert analysis.text.startswith("COMBINED")
    assert all(f"notes on part {i + 1}" in analysis.text for i in range(len(chunks)))
    assert analysis.model_calls == len(chunks) + 1 and analysis.cached_calls == 0
    done = [p["done"] for p in progress if p["phase"] == "analysing"]
    assert done == sorted(done) and done[-1] == len(chunks) and progress[-1]["phase"] == "combining"
    for request in fake_llm.requests:  # every call fits the window
        body = request.body
        assert utils.request_tokens(body["messages"]) + body["max_tokens"] <= config.context_window("fake-model")


def test_same_content_again_costs_no_model_calls(tmp_path, store, fake_llm):
    fake_llm.responder = responder
    analyser, config = _analyser(tmp_path, store, fake_llm)
    chunks = [c.text for c in split(_text(), config)]
    first = analyser.run(chunks)
    calls = len(fake_llm.requests)
    second = analyser.run(chunks)
    assert len(fake_llm.requests) == calls and second.model_calls == 0
    assert second.cached_calls == first.model_calls and second.text == first.text


def test_cache_is_per_user(tmp_path, store, fake_llm):
    fake_llm.responder = responder
    analyser, config = _analyser(tmp_path, store, fake_llm)
    chunks = [c.text for c in split(_text(3), config)]
    analyser.run(chunks)
    analyser.user_id = "bob"
    assert analyser.run(chunks).model_calls > 0


def test_chunks_are_analysed_concurrently(tmp_path, store, fake_llm):
    fake_llm.responder, fake_llm.first_token_delay = responder, 0.2
    analyser, config = _analyser(tmp_path, store, fake_llm)
    chunks = [c.text for c in split(_text(16), config)][:8]
    started = time.monotonic()
    analyser.run(chunks)
    elapsed = time.monotonic() - started
    assert elapsed < 0.2 * 8 * 0.7  # sequential would take 1.6 s plus the reduce


def test_a_failed_call_is_retried(tmp_path, store, fake_llm):
    fake_llm.responder = responder
    fake_llm.fail_next(Fault.http(503), Fault.disconnect(after=1))
    analyser, config = _analyser(tmp_path, store, fake_llm)
    analysis = analyser.run([c.text for c in split(_text(4), config)])
    assert analysis.errors == [] and "could not be analysed" not in analysis.text


def test_a_part_that_keeps_failing_is_reported_not_fatal(tmp_path, store, fake_llm):
    fake_llm.responder = responder
    analyser, config = _analyser(tmp_path, store, fake_llm, FILE_WORKERS=1, BREAKER_FAIL_MAX=10)
    chunks = [c.text for c in split(_text(6), config)]
    fake_llm.fail_next(*[Fault.http(500)] * 3)  # the first part's three attempts
    analysis = analyser.run(chunks)
    assert len(analysis.errors) == 1 and f"1 of {len(chunks)} parts could not be analysed" in analysis.text


def test_a_part_answered_with_an_empty_stream_is_reported_not_retried_nor_cached(tmp_path, store, fake_llm):
    fake_llm.responder = responder
    analyser, config = _analyser(tmp_path, store, fake_llm, FILE_WORKERS=1)
    chunks = [c.text for c in split(_text(6), config)]
    fake_llm.fail_next(Fault.empty_stream(done=True))  # the first part's call
    analysis = analyser.run(chunks)
    assert analysis.errors == ["The model endpoint ended the stream without sending a reply."]
    assert f"1 of {len(chunks)} parts could not be analysed" in analysis.text
    assert len(fake_llm.requests) == len(chunks) + 1  # each part once, then the combining call
    fake_llm.requests.clear()
    again, _ = _analyser(tmp_path, store, fake_llm, FILE_WORKERS=1)
    assert again.run(chunks).errors == [] and len(fake_llm.requests) == 2  # only that part, then combining


def test_reduce_recurses_when_notes_do_not_fit_one_call(tmp_path, store, fake_llm):
    fake_llm.responder = lambda body: ("notes " * 90) if PART.search(body["messages"][0]["content"]) else "short"
    analyser, config = _analyser(tmp_path, store, fake_llm, MODEL_CONTEXT_WINDOWS={"fake-model": 1200},
                                 FILE_MAX_MODEL_CALLS=1000)  # every part analysed: the notes overflow one call
    chunks = [c.text for c in split(_text(20), config)]
    analysis = analyser.run(chunks)
    reduces = [r for r in fake_llm.requests if not PART.search(r.body["messages"][0]["content"])]
    assert len(reduces) > 1 and analysis.text == "short"
    for request in fake_llm.requests:
        body = request.body
        assert utils.request_tokens(body["messages"]) + body["max_tokens"] <= 1200


def test_single_chunk_is_one_call(tmp_path, store, fake_llm):
    analyser, _ = _analyser(tmp_path, store, fake_llm)
    analysis = analyser.run(["A short file."])
    assert analysis.text == fake_llm.reply and len(fake_llm.requests) == 1
    assert "part" not in fake_llm.requests[0].body["messages"][0]["content"]


def test_stop_ends_the_analysis(tmp_path, store, fake_llm):
    fake_llm.responder = responder
    analyser, config = _analyser(tmp_path, store, fake_llm, stopped=lambda: True)
    with pytest.raises(Stopped):
        analyser.run([c.text for c in split(_text(), config)])
    assert fake_llm.requests == []


