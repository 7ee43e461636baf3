"""The fake endpoint itself: what tests and benchmarks rely on besides the streaming path."""
import threading
import time

import pytest
import requests
from fake_llm import FakeLLM, Fault, fake_llm  # noqa: F401  (fake_llm is a fixture)


def test_fake_llm_lists_models(fake_llm):
    with requests.get(f"{fake_llm.url}/models", timeout=2) as response:
        assert response.json()["data"][0]["id"] == "fake-model"
    assert fake_llm.requests[0].method == "GET"


def test_fake_llm_answers_json_when_not_streaming(fake_llm):
    fake_llm.reply = "Just this."
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": False}
    with requests.post(f"{fake_llm.url}/chat/completions", json=body, timeout=2) as response:
        answer = response.json()
    assert answer["choices"][0]["message"]["content"] == "Just this."
    assert answer["usage"]["completion_tokens"] == 2
    assert fake_llm.requests[0].body == body


@pytest.mark.parametrize("path, status", [("/v1/embeddings", 404), ("/v1/chat/completions", 400)])
def test_fake_llm_refuses_what_it_does_not_serve(fake_llm, path, status):
    with requests.post(f"http://127.0.0.1:{fake_llm.port}{path}", data=b"not json", timeout=2) as response:
        assert response.status_code == status


def test_fake_llm_replies_with_n_words(fake_llm):
    fake_llm.tokens = 5
    assert fake_llm.pieces(None) == (["word0", " word1", " word2", " word3", " word4"], "stop")
    assert fake_llm.pieces(2) == (["word0", " word1"], "length")


def test_fake_llm_stops_promptly_while_a_request_hangs():
    outcome = []

    def call(url):
        try:
            requests.post(f"{url}/chat/completions", json={"stream": True, "messages": []}, timeout=10).close()
        except requests.ConnectionError as exc:
            outcome.append(exc)
    fake = FakeLLM().start()
    fake.fail_next(Fault.hang(seconds=30))
    caller = threading.Thread(target=call, args=(fake.url,))
    caller.start()
    while not fake.requests:
        time.sleep(0.01)
    started = time.monotonic()
    fake.stop()
    caller.join(timeout=2)
    assert time.monotonic() - started < 1 and outcome and not caller.is_alive()


def test_fake_llm_rejects_unknown_settings():
    with pytest.raises(TypeError, match="no setting 'latency'"):
        FakeLLM(latency=1)
