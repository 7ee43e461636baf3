"""`/health`: store, Redis and endpoint reachability."""
import sqlite3
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest


@pytest.fixture
def models_endpoint():
    """A tiny HTTP server answering GET /v1/models, on a free loopback port."""
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200 if self.path == "/v1/models" else 404)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(b'{"data": [{"id": "fake-model"}]}')

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()
    server.server_close()


def test_health_ok_on_embedded_defaults(client):
    response = client.get("/health")
    assert response.status_code == 200
    body = response.get_json()
    assert body["status"] == "ok" and body["store"] == {"backend": "sqlite", "ok": True}
    assert body["redis"] == {"configured": False}
    assert body["endpoint"] == {"configured": False, "reachable": False, "endpoints": [], "in_use": None}


def test_health_reports_reachable_endpoint(make_app, models_endpoint):
    body = make_app(OPENAI_BASE_URL=models_endpoint).test_client().get("/health").get_json()
    assert body["endpoint"]["reachable"] is True


def test_health_unreachable_endpoint_is_not_fatal(make_app):
    response = make_app(OPENAI_BASE_URL="http://127.0.0.1:9/v1", ENDPOINT_TIMEOUT_S=0.5).test_client().get("/health")
    assert response.status_code == 200
    endpoint = response.get_json()["endpoint"]
    assert {k: endpoint[k] for k in ("configured", "reachable", "error")} == {
        "configured": True, "reachable": False, "error": "ConnectionError"}
    assert endpoint["in_use"] == "primary" and endpoint["endpoints"][0]["circuit"] == "closed"


def test_health_shows_the_fallback_in_use_once_the_primary_circuit_opens(make_app, fake_llm):
    app = make_app(OPENAI_BASE_URL="http://127.0.0.1:9/v1", FALLBACK_BASE_URL=fake_llm.url, BREAKER_FAIL_MAX=1)
    client = app.extensions["chat_providers"].client("chat")
    assert client.complete([{"role": "user", "content": "hi"}], max_tokens=50).text == fake_llm.reply
    client.close()
    endpoint = app.test_client().get("/health").get_json()["endpoint"]
    assert endpoint["in_use"] == "fallback"
    assert [(e["name"], e["circuit"]) for e in endpoint["endpoints"]] == [("primary", "open"), ("fallback", "closed")]


def test_health_broken_store_is_503(app, client, monkeypatch):
    store = app.extensions["chat_store"].get()
    monkeypatch.setattr(store, "ping", lambda: (_ for _ in ()).throw(sqlite3.OperationalError("disk I/O error")))
    response = client.get("/health")
    assert response.status_code == 503 and response.get_json()["store"]["ok"] is False


def test_health_unreachable_redis_is_503(make_app):
    response = make_app(REDIS_URL="redis://127.0.0.1:1/0").test_client().get("/health")
    assert response.status_code == 503
    assert response.get_json()["redis"] == {"configured": True, "ok": False}


def test_health_sends_the_key_the_way_the_endpoint_expects(make_app, fake_llm):
    make_app(OPENAI_BASE_URL=fake_llm.url, OPENAI_API_KEY="sk-test").test_client().get("/health")
    assert fake_llm.requests[-1].headers["authorization"] == "Bearer sk-test"


def test_health_probes_the_endpoint_at_most_once_per_cache_period(make_app, fake_llm):
    """/health is anonymous: hitting it must not make an upstream call (with the API key) each time."""
    from concurrent.futures import ThreadPoolExecutor
    app = make_app(OPENAI_BASE_URL=fake_llm.url, OPENAI_API_KEY="sk-test")

    def hit(_) -> bool:
        return app.test_client().get("/health").get_json()["endpoint"]["reachable"]
    with ThreadPoolExecutor(10) as pool:
        assert all(pool.map(hit, range(10)))  # concurrent: one probe in flight, the others wait for it
    assert all(hit(n) for n in range(20))
    probes = [r for r in fake_llm.requests if r.path.endswith("/models")]
    assert len(probes) == 1


def test_health_probes_again_once_the_cached_result_is_old(make_app, fake_llm):
    import time
    app = make_app(OPENAI_BASE_URL=fake_llm.url, ENDPOINT_PROBE_CACHE_S=0.2)
    client = app.test_client()
    client.get("/health")
    time.sleep(0.3)
    client.get("/health")
    assert len([r for r in fake_llm.requests if r.path.endswith("/models")]) == 2
