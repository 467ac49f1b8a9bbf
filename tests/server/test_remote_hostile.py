"""The remote backend against a hostile OpenAI-compatible server on loopback (a real HTTP
server in a thread): it never stops streaming, sends a giant listing, or garbage. The
backend stops reading at its caps and says so; credentials never show."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

import minicpm
from minicpm.backends.remote import RemoteBackend, redact_url
from minicpm.sampling import SamplingParams


class Hostile(BaseHTTPRequestHandler):
    mode = "endless"  # endless | huge-models | garbage
    seen_auth: list[str] = []

    def log_message(self, *args: Any) -> None:  # keep the test output clean
        pass

    def do_GET(self) -> None:
        Hostile.seen_auth.append(self.headers.get("Authorization", ""))
        if self.mode == "huge-models":
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            try:
                self.wfile.write(b'{"data": [' + b'{"id": "m"},' * 2_000_000 + b'{"id": "m"}]}')
            except (BrokenPipeError, ConnectionResetError):
                pass
            return
        body = json.dumps({"data": [{"id": "evil", "meta": {"n_ctx": "lots"}}]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.end_headers()
        try:
            if self.mode == "garbage":
                for line in (b"data: [1, 2]\n\n", b"data: {\"choices\": 7}\n\n",
                             b"data: {\"choices\": [{\"delta\": {\"content\": 5}}]}\n\n",
                             b"data: {\"choices\": [{\"delta\": {\"content\": \"ok\"}}]}\n\n",
                             b"data: [DONE]\n\n"):
                    self.wfile.write(line)
                return
            chunk = b'data: {"choices": [{"delta": {"content": "' + b"x" * 1000 + b'"}}]}\n\n'
            for _ in range(1_000_000):  # ~1 GB unless the client stops reading
                self.wfile.write(chunk)
        except (BrokenPipeError, ConnectionResetError):
            pass


@pytest.fixture
def hostile() -> Iterator[str]:
    srv = ThreadingHTTPServer(("127.0.0.1", 0), Hostile)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    Hostile.mode = "endless"
    Hostile.seen_auth.clear()
    yield f"http://127.0.0.1:{srv.server_address[1]}/v1"
    srv.shutdown()
    srv.server_close()


def test_endless_answer_is_cut_at_the_cap(hostile: str) -> None:
    engine = minicpm.load(backend="remote", base_url=hostile, max_response_bytes=200_000)
    assert engine.info.context_length == 4096  # "lots" is not a number: the default
    gen = engine.chat([{"role": "user", "content": "hi"}], max_tokens=10**6)
    with pytest.raises(minicpm.MiniCPMError, match="larger than 200,000 bytes"):
        for _ in gen:
            pass
    assert 150_000 < len(gen.text) <= 200_000


def test_huge_listing_is_refused(hostile: str) -> None:
    Hostile.mode = "huge-models"
    with pytest.raises(minicpm.BackendUnavailableError, match="more than 100,000 bytes"):
        RemoteBackend(base_url=hostile, max_response_bytes=100_000)


def test_garbage_chunks_are_skipped(hostile: str) -> None:
    Hostile.mode = "garbage"
    engine = minicpm.load(backend="remote", base_url=hostile)
    assert engine.chat([{"role": "user", "content": "hi"}]).read() == "ok"


def test_credentials_are_sent_but_never_shown(hostile: str, monkeypatch: Any) -> None:
    url = hostile.replace("http://", "http://ada:hunter2@")
    engine = minicpm.load(backend="remote", base_url=url)
    assert Hostile.seen_auth[-1].startswith("Basic ")  # HTTP Basic from the URL
    shown = json.dumps(engine.info.to_dict()) + repr(engine)
    assert "hunter2" not in shown and "ada" not in shown and "***@127.0.0.1" in shown
    monkeypatch.setenv("MINICPM_TEST_KEY", "sk-secret-123")
    engine = minicpm.load(backend="remote", base_url=hostile, api_key_env="MINICPM_TEST_KEY")
    assert Hostile.seen_auth[-1] == "Bearer sk-secret-123"
    assert "sk-secret" not in json.dumps(engine.info.to_dict())
    with pytest.raises(minicpm.ModelNotFoundError) as e:
        minicpm.load("nope", backend="remote", base_url=url)
    assert "hunter2" not in str(e.value) and "***@" in str(e.value)


def test_plain_http_with_a_key_to_another_host_warns(monkeypatch: Any, caplog: Any) -> None:
    monkeypatch.setenv("MINICPM_TEST_KEY", "sk-secret-123")
    caplog.set_level(logging.WARNING, logger="minicpm")
    # 192.0.2.1 is TEST-NET-1: never routed, so nothing leaves; the warning comes first.
    with pytest.raises(minicpm.BackendUnavailableError) as e:
        RemoteBackend(base_url="http://user:pw@192.0.2.1:9/v1", api_key_env="MINICPM_TEST_KEY",
                      timeout=0.2)
    assert "pw@" not in str(e.value)
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("plain http" in w and "***@192.0.2.1" in w for w in warned), warned
    assert not any("sk-secret" in w or "pw@" in w for w in caplog.messages)
    caplog.clear()
    with pytest.raises(minicpm.BackendUnavailableError):  # loopback: no warning
        RemoteBackend(base_url="http://127.0.0.1:9/v1", api_key_env="MINICPM_TEST_KEY")
    assert not [r for r in caplog.records if "plain http" in r.getMessage()]


def test_redact_url() -> None:
    assert redact_url("http://u:p@h:8/v1") == "http://***@h:8/v1"
    assert redact_url("https://h/v1") == "https://h/v1"
    assert redact_url("http://tok@[::1]:8/v1") == "http://***@[::1]:8/v1"


def test_remote_caps_what_it_forwards(hostile: str) -> None:
    engine = minicpm.load(backend="remote", base_url=hostile)
    assert engine.backend.can_tokenize is False
    with pytest.raises(ValueError, match="stop strings"):
        engine.chat([{"role": "user", "content": "hi"}], stop=[f"s{i}" for i in range(50)]).read()
    body = engine.backend._sampling(SamplingParams(max_tokens=10**9))
    assert body["max_tokens"] == engine.info.context_length
