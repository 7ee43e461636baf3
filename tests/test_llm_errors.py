"""Error answers from model endpoints become the right exception with a message fit for a user."""
import json

import pytest

from agents.llm_errors import (
    DETAIL_LIMIT,
    ContextLengthExceeded,
    EmptyStream,
    LLMBadRequest,
    LLMError,
    LLMStreamError,
    LLMUnavailable,
    error_for_status,
    is_error_object,
    redact,
    stream_error,
)

KEY = "sk-live-0123456789abcdef"


def openai_error(message: str, code=None, kind="invalid_request_error") -> str:
    return json.dumps({"error": {"message": message, "type": kind, "param": None, "code": code}})


# (server, status, body, limit it reported)
CONTEXT_ERRORS = [
    ("openai", 400, openai_error("This model's maximum context length is 8192 tokens. However, your messages "
                                 "resulted in 9000 tokens.", "context_length_exceeded"), 8192),
    ("azure", 400, openai_error("This model's maximum context length is 128,000 tokens.", "context_length_exceeded"),
     128000),
    ("openai code only", 400, openai_error("Request too large", "context_length_exceeded"), None),
    ("vllm old", 400, json.dumps({"object": "error", "message": "This model's maximum context length is 4096 "
                                  "tokens. However, you requested 5000 tokens.", "type": "BadRequestError",
                                  "code": 400}), 4096),
    ("vllm new", 400, json.dumps({"error": {"message": "'max_tokens' is too large: 1000. This model's maximum "
                                            "context length is 2048 tokens and your request has 1500 input tokens",
                                            "type": "BadRequestError", "code": 400}}), 2048),
    ("llama.cpp", 400, json.dumps({"error": {"code": 400, "message": "the request exceeds the available context "
                                             "size, try increasing it", "type": "exceed_context_size_error",
                                             "n_prompt_tokens": 5000, "n_ctx": 4096}}), 4096),
    ("ollama", 400, json.dumps({"error": "the input length exceeds the context length"}), None),
    ("lm studio", 400, json.dumps({"error": "Trying to keep the first 5000 tokens when context the overflows. "
                                            "However, the model is loaded with context length of only 4096 tokens"}),
     4096),
    ("litellm anthropic", 400, openai_error("prompt is too long: 210000 tokens > 200000 maximum"), None),
    ("groq", 400, openai_error("Please reduce the length of the messages or completion."), None),
    ("tgi", 422, json.dumps({"error": "Input validation error: `inputs` tokens + `max_new_tokens` must be <= 4096",
                             "error_type": "validation"}), None),
    ("generic", 413, "Too many tokens in the request", None),
    ("in a 500", 500, openai_error("exceeds the context window of this model", kind="server_error"), None),
]


@pytest.mark.parametrize("server, status, body, limit", CONTEXT_ERRORS, ids=[row[0] for row in CONTEXT_ERRORS])
def test_error_for_status_detects_context_length(server, status, body, limit):
    error = error_for_status(status, body)
    assert isinstance(error, ContextLengthExceeded)
    assert (error.status, error.limit) == (status, limit)
    assert error.message.startswith("The conversation is too long for the model")


@pytest.mark.parametrize("status, body, kind, words", [
    (429, openai_error("Rate limit reached", kind="rate_limit_error"), LLMUnavailable, "rate limiting"),
    (500, "Internal Server Error", LLMUnavailable, "unavailable (HTTP 500)"),
    (502, "<html>Bad gateway</html>", LLMUnavailable, "HTTP 502"),
    (404, "<!DOCTYPE html><html>Not found</html>", LLMBadRequest, "an HTML page"),
    (503, "", LLMUnavailable, "HTTP 503"),
    (408, "", LLMUnavailable, "HTTP 408"),
    (400, openai_error("Invalid value for 'temperature'"), LLMBadRequest, "Invalid value for 'temperature'"),
    (404, json.dumps({"error": "model 'llama9' not found"}), LLMBadRequest, "model 'llama9' not found"),
    (422, json.dumps({"detail": "messages: field required"}), LLMBadRequest, "field required"),
    (400, openai_error("string too long", "string_above_max_length"), LLMBadRequest, "string too long"),
    (301, "", LLMBadRequest, "OPENAI_BASE_URL"),
])
def test_error_for_status_classifies_other_answers(status, body, kind, words):
    error = error_for_status(status, body)
    assert type(error) is kind
    assert words in error.message


@pytest.mark.parametrize("status", [401, 403])
def test_error_for_status_never_echoes_the_key(status):
    body = openai_error(f"Incorrect API key provided: {KEY}. You can find your API key at ...", "invalid_api_key")
    error = error_for_status(status, body, secret=KEY)
    assert isinstance(error, LLMBadRequest)
    assert "API key" in error.message and KEY not in error.message and "sk-" not in error.message


def test_error_for_status_redacts_the_key_from_other_messages():
    error = error_for_status(400, openai_error(f"bad header {KEY}"), secret=KEY)
    assert KEY not in error.message and "***" in error.message


def key_at_the_cut(lead: str, key: str = KEY, inside: int = 13) -> str:
    """`lead`, padding, then the key, which the DETAIL_LIMIT cut would split `inside` characters in."""
    text = f"{lead} " + "x" * (DETAIL_LIMIT - inside - len(lead) - 1 - len(" Bearer ")) + " Bearer " + key
    assert text.index(key) == DETAIL_LIMIT - inside
    return text


@pytest.mark.parametrize("make", [
    lambda text: error_for_status(400, openai_error(text), secret=KEY),
    lambda text: error_for_status(400, text, secret=KEY),
    lambda text: error_for_status(404, json.dumps({"detail": text}), secret=KEY),
    lambda text: stream_error({"error": {"message": text}}, secret=KEY),
    lambda text: stream_error(text, secret=KEY),
])
def test_error_messages_redact_the_key_before_cutting_them_short(make):
    message = make(key_at_the_cut("Invalid header:")).message
    assert KEY[:5] not in message and len(message) < 400


@pytest.mark.parametrize("inside", [4, 13, len(KEY) - 1])
def test_redact_blanks_a_key_cut_off_at_the_end_of_a_text(inside):
    """What the client redacts after the SSE parser cut the text (it has no key to redact with)."""
    cut = stream_error(key_at_the_cut("Invalid header:", inside=inside)).message
    assert KEY[:inside] in cut and KEY[:4] not in redact(cut, KEY) and redact(cut, KEY).endswith("Bearer ***")


def test_redact_leaves_text_ending_in_other_words_alone():
    assert redact("ends with sk-", KEY) == "ends with sk-" and redact("plain", KEY) == "plain"


def test_error_for_status_carries_retry_after():
    assert error_for_status(429, "", retry_after=3.0).retry_after == 3.0


def test_error_for_status_keeps_messages_short():
    assert len(error_for_status(400, openai_error("x" * 10_000)).message) < 400


@pytest.mark.parametrize("payload, kind", [
    ({"error": {"message": "Overloaded"}}, LLMStreamError),
    ({"error": {"message": "maximum context length is 4096 tokens"}}, ContextLengthExceeded),
    ("plain text", LLMStreamError),
])
def test_stream_error_classifies_errors_inside_a_stream(payload, kind):
    assert type(stream_error(payload)) is kind


VLLM_FLAT = {"object": "error", "message": f"engine died ({KEY})", "type": "InternalServerError", "param": None,
             "code": 500}


@pytest.mark.parametrize("chunk, expected", [
    (VLLM_FLAT, True),                                   # vLLM before 0.10.1, mid-stream
    ({"error": VLLM_FLAT}, True),                        # vLLM since
    ({"error": {"message": "Overloaded"}}, True),
    ({"object": "chat.completion.chunk", "choices": []}, False),
    ({"error": None, "choices": []}, False),
])
def test_is_error_object_knows_both_error_shapes(chunk, expected):
    assert is_error_object(chunk) is expected


def test_stream_error_reads_old_vllms_flat_error_and_redacts_the_key():
    error = stream_error(VLLM_FLAT, secret=KEY)
    assert type(error) is LLMStreamError and error.message == "The model endpoint reported an error mid-reply: " \
        "engine died (***)"


def test_empty_stream_is_an_llm_error_with_a_message_for_the_user():
    error = EmptyStream()
    assert isinstance(error, LLMError) and not isinstance(error, LLMStreamError)
    assert error.message == str(error) == "The model endpoint ended the stream without sending a reply."
