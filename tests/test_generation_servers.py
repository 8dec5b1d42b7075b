"""Workers call only the servers the operator listed (issue 15, item 3), and never show their bodies.

A real HTTP server stands in for an internal service: a job naming its URL is refused without a
single request reaching it; a listed server's error pages come back as status and reason only.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.core.exceptions import ImproperlyConfigured

from stepmark.env import env_servers
from workers.errors import PermanentJobError, TransientJobError
from workers.generation.base import GenerationRequest, backend_from_params

SECRET = "internal-admin-page: db password hunter2"


class Service:
    """Answers /models like a policy server; every chat call gets `status` with a secret body."""

    def __init__(self, status: int = 403):
        self.requests: list[str] = []
        service = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _send(self, code: int, body: bytes):
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self):
                service.requests.append(f"GET {self.path}")
                self._send(200, json.dumps({"data": [{"id": "m"}]}).encode())

            def do_POST(self):
                service.requests.append(f"POST {self.path}")
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                self._send(status, SECRET.encode())

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base_url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def service():
    running = Service()
    yield running
    running.stop()


def test_a_job_bringing_its_own_url_is_refused_before_any_request(service, settings):
    settings.STEPMARK_GENERATION_SERVERS = {}
    with pytest.raises(PermanentJobError, match="cannot give a URL"):
        backend_from_params({"backend": "openai", "base_url": service.base_url, "model": "m"})
    with pytest.raises(PermanentJobError, match="no generation server named 'elsewhere'"):
        backend_from_params({"backend": "openai", "server": "elsewhere", "model": "m"})
    assert service.requests == []


def test_a_listed_server_is_used_and_its_error_bodies_never_shown(service, settings):
    settings.STEPMARK_GENERATION_SERVERS = {"policy": {"base_url": service.base_url, "model": "m"}}
    backend = backend_from_params({"backend": "openai", "server": "policy", "model": "ignored"})
    assert backend.model == "m"  # the list says what the server serves
    request = GenerationRequest(messages=[{"role": "user", "content": "2+3?"}], n=1)
    with pytest.raises(PermanentJobError) as caught:
        backend.generate([request])
    assert "HTTP 403 Forbidden" in str(caught.value) and SECRET not in str(caught.value)
    assert service.requests == ["GET /v1/models", "POST /v1/chat/completions"]


def test_transient_errors_show_the_status_only_too(settings):
    service = Service(status=502)
    try:
        settings.STEPMARK_GENERATION_SERVERS = {"policy": {"base_url": service.base_url, "model": "m"}}
        backend = backend_from_params({"backend": "openai", "server": "policy"})
        with pytest.raises(TransientJobError) as caught:
            backend.generate([GenerationRequest(messages=[{"role": "user", "content": "hi"}], n=1)])
        assert "HTTP 502" in str(caught.value) and SECRET not in str(caught.value)
    finally:
        service.stop()


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("[1]", "must be a JSON object"),
        ("{not json", "is not JSON"),
        ('{"a": {"model": "m"}}', "needs an http(s) 'base_url'"),
        ('{"a": {"base_url": "file:///etc/passwd", "model": "m"}}', "needs an http(s) 'base_url'"),
        ('{"a": {"base_url": "http://x/v1"}}', "needs a 'model'"),
        ('{"a": {"base_url": "http://x/v1", "model": "m", "headers": {}}}', "unknown keys"),
    ],
)
def test_a_bad_server_list_fails_at_start_naming_the_variable(monkeypatch, raw, message):
    monkeypatch.setenv("STEPMARK_GENERATION_SERVERS", raw)
    with pytest.raises(ImproperlyConfigured, match="STEPMARK_GENERATION_SERVERS") as caught:
        env_servers("STEPMARK_GENERATION_SERVERS")
    assert message in str(caught.value)


def test_a_good_server_list_parses(monkeypatch):
    monkeypatch.setenv("STEPMARK_GENERATION_SERVERS", '{"qwen": {"base_url": "http://gpu-1:8000/v1", "model": "Qwen"}}')
    assert env_servers("STEPMARK_GENERATION_SERVERS") == {"qwen": {"base_url": "http://gpu-1:8000/v1", "model": "Qwen"}}
