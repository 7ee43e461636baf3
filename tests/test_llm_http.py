"""Where requests go, how the key is sent, and how long a server asked us to wait."""
from datetime import UTC, datetime

import pytest
from requests.structures import CaseInsensitiveDict

from agents.llm_http import COMPAT_FIXES, endpoint_for, request_headers, retry_after_seconds

KEY = "sk-test-0123456789abcdef"


@pytest.mark.parametrize("base_url, url, azure", [
    ("https://api.openai.com/v1", "https://api.openai.com/v1/chat/completions", False),
    ("http://localhost:11434/v1/", "http://localhost:11434/v1/chat/completions", False),
    ("http://localhost:8080/v1/chat/completions", "http://localhost:8080/v1/chat/completions", False),
    ("https://openrouter.ai/api/v1", "https://openrouter.ai/api/v1/chat/completions", False),
    ("https://res.openai.azure.com/openai/deployments/gpt4o?api-version=2024-10-21",
     "https://res.openai.azure.com/openai/deployments/gpt4o/chat/completions?api-version=2024-10-21", True),
    ("https://res.openai.azure.com/openai/deployments/gpt4o/chat/completions?api-version=2024-10-21",
     "https://res.openai.azure.com/openai/deployments/gpt4o/chat/completions?api-version=2024-10-21", True),
    ("https://res.openai.azure.com/", "https://res.openai.azure.com/openai/v1/chat/completions", True),
    ("https://RES.OPENAI.AZURE.COM/openai/v1", "https://RES.OPENAI.AZURE.COM/openai/v1/chat/completions", True),
    ("https://res.cognitiveservices.azure.com/openai/deployments/d?api-version=2025-01-01-preview",
     "https://res.cognitiveservices.azure.com/openai/deployments/d/chat/completions?api-version=2025-01-01-preview",
     True),
    ("https://res.openai.azure.com.example.org/v1", "https://res.openai.azure.com.example.org/v1/chat/completions",
     False),
])
def test_endpoint_for_builds_the_chat_url(base_url, url, azure):
    endpoint = endpoint_for(base_url)
    assert (endpoint.url, endpoint.azure) == (url, azure)


@pytest.mark.parametrize("base_url", ["ftp://example.com/v1", "localhost:11434/v1", ""])
def test_endpoint_for_refuses_what_is_not_http(base_url):
    with pytest.raises(ValueError, match="http:// or https://"):
        endpoint_for(base_url)


@pytest.mark.parametrize("base_url, api_key, expected", [
    ("https://api.openai.com/v1", KEY, {"Authorization": f"Bearer {KEY}"}),
    ("https://res.openai.azure.com/openai/deployments/d?api-version=2024-10-21", KEY, {"api-key": KEY}),
    ("http://localhost:11434/v1", None, {}),
])
def test_request_headers_send_the_key_as_the_provider_expects(base_url, api_key, expected):
    headers = request_headers(endpoint_for(base_url), api_key)
    assert {name: headers[name] for name in ("Authorization", "api-key") if name in headers} == expected
    assert (headers["Accept"], headers["Accept-Encoding"]) == ("text/event-stream", "identity")


@pytest.mark.parametrize("headers, seconds", [
    ({"Retry-After": "7"}, 7.0), ({"retry-after-ms": "1500", "Retry-After": "2"}, 1.5),
    ({"Retry-After": "Wed, 21 Oct 2015 07:28:10 GMT"}, 10.0), ({"Retry-After": "Wed, 21 Oct 2015 07:27:00 GMT"}, 0.0),
    ({"Retry-After": "soon"}, None), ({}, None),
])
def test_retry_after_seconds_reads_seconds_and_dates(headers, seconds):
    now = datetime(2015, 10, 21, 7, 28, 0, tzinfo=UTC)
    assert retry_after_seconds(CaseInsensitiveDict(headers), now=now) == seconds


@pytest.mark.parametrize("name, body, fixed", [
    ("stream_options", {"stream_options": {"include_usage": True}, "max_tokens": 5}, {"max_tokens": 5}),
    ("stream_options", {"max_tokens": 5}, None),
    ("max_completion_tokens", {"max_tokens": 5}, {"max_completion_tokens": 5}),
    ("max_completion_tokens", {"max_completion_tokens": 5}, None),
])
def test_compat_fixes_change_the_body_only_when_they_apply(name, body, fixed):
    before = dict(body)
    assert COMPAT_FIXES[name](body) is (fixed is not None)
    assert body == (fixed or before)
