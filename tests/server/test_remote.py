"""The remote backend against a real OpenAI-compatible server on loopback: llama-cpp-python's
own `python -m llama_cpp.server` serving the stand-in model."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import subprocess
import sys
import threading
import time
import urllib.request
from typing import Any

import pytest

import minicpm
from minicpm.catalogue import standin_path

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("uvicorn") is None or importlib.util.find_spec("sse_starlette") is None,
    reason="needs llama-cpp-python[server] (uvicorn, fastapi, sse-starlette, …)")


@pytest.fixture(scope="module")
def llama_server() -> Any:
    from tornado.testing import bind_unused_port

    sock, port = bind_unused_port()
    sock.close()
    proc = subprocess.Popen(
        [sys.executable, "-m", "llama_cpp.server", "--model", str(standin_path()),
         "--host", "127.0.0.1", "--port", str(port), "--n_ctx", "1024", "--n_threads", "2",
         "--model_alias", "smol"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}/v1"
    try:
        for _ in range(300):
            try:
                urllib.request.urlopen(base + "/models", timeout=1).read()
                break
            except OSError:
                time.sleep(0.2)
        else:
            raise AssertionError("llama_cpp.server did not start")
        yield base
    finally:
        proc.terminate()
        proc.wait(20)


def test_remote_chat_complete_cancel(llama_server: str) -> None:
    engine = minicpm.load(backend="remote", base_url=llama_server)
    assert engine.info.backend == "remote" and engine.info.model == "smol"
    gen = engine.chat([{"role": "user", "content": "Say hi"}], max_tokens=8, temperature=0)
    deltas = list(gen)
    assert deltas and "".join(deltas).strip()
    assert 1 <= gen.usage.completion_tokens <= 8
    assert gen.usage.time_to_first_token and gen.usage.time_to_first_token > 0
    text = engine.complete("The capital of France is", max_tokens=4, temperature=0).read()
    assert text.strip()
    # Cancel from another thread stops the stream within a token.
    gen = engine.chat([{"role": "user", "content": "Count to 500."}], max_tokens=400,
                      ignore_eos=True)
    first = next(gen)
    assert isinstance(first, str) and first
    threading.Timer(0.05, gen.cancel).start()
    rest = list(gen)
    assert gen.usage.finish_reason == "cancelled"
    assert len(rest) < 100 and gen.usage.completion_tokens < 100
    with pytest.raises(minicpm.ModelNotFoundError):
        minicpm.load("nope", backend="remote", base_url=llama_server)
    with pytest.raises(minicpm.BackendUnavailableError):
        minicpm.load(backend="remote", base_url="http://127.0.0.1:9/v1")


class TestServerOnRemote:
    """The server on the remote backend, reached with credentials in the URL and an API key:
    neither shows in the status or in error messages."""

    @pytest.fixture
    def minicpm_config(self, llama_server: str, monkeypatch: Any) -> dict[str, Any]:
        monkeypatch.setenv("MINICPM_TEST_KEY", "sk-very-secret-key")
        url = llama_server.replace("http://", "http://ada:hunter2pass@")
        return {"model": "", "backend": "remote", "remote_base_url": url,
                "remote_api_key_env": "MINICPM_TEST_KEY", "concurrency": 4}

    async def test_ws_chat_through_remote(self, jp_ws_fetch: Any, ready: Any, chat: Any,
                                          jp_fetch: Any, llama_server: str) -> None:
        assert ready["model"]["backend"] == "remote" and ready["model"]["model"] == "smol"
        assert ready["model"]["extra"]["base_url"] == llama_server.replace("http://",
                                                                            "http://***@")
        ws = await jp_ws_fetch("minicpm", "chat")
        frames = await chat(ws, "r", "Say hi.", context=[{"kind": "text", "text": "hello"}])
        assert frames[-1]["type"] == "done", frames
        assert "".join(f["text"] for f in frames if f["type"] == "delta").strip()
        ws.close()
        status = (await jp_fetch("minicpm", "status")).body.decode()
        assert "***@127.0.0.1" in status
        for secret in ("hunter2pass", "ada:", "sk-very-secret-key"):
            assert secret not in status
        # An error that names the server does not name its credentials either.
        r = await jp_fetch("minicpm", "models", "load", method="POST",
                           body=json.dumps({"model": "no-such-remote-model"}))
        assert r.code == 202
        s = json.loads(r.body)
        while s["state"] == "loading":  # the failed load lands from a background thread
            await asyncio.sleep(0.05)
            s = json.loads((await jp_fetch("minicpm", "status")).body)
        assert s["state"] == "error" and "does not serve" in s["error"], s
        assert "hunter2pass" not in s["error"] and "***@" in s["error"]


def test_remote_forwards_response_format_and_tools(llama_server: str) -> None:
    import jsonschema

    engine = minicpm.load(backend="remote", base_url=llama_server)
    # (llama-cpp-python's server takes json_object, not json_schema)
    gen = engine.chat([{"role": "user", "content": "Maria is 34. Give her as JSON."}],
                      max_tokens=40, temperature=0, response_format={"type": "json_object"})
    text = gen.read()
    assert text.lstrip().startswith("{")  # the server's own grammar made it
    if gen.usage.finish_reason == "stop":
        assert isinstance(json.loads(text), dict)
    tool = {"type": "function", "function": {"name": "get_weather", "parameters": {
        "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}
    gen = engine.chat([{"role": "user", "content": "Weather in Paris?"}], tools=[tool],
                      tool_choice={"type": "function", "function": {"name": "get_weather"}},
                      max_tokens=60, temperature=0)
    gen.read()
    # The server's streamed tool_calls came back as the same OpenAI calls.
    (call,) = gen.tool_calls
    assert call["function"]["name"] == "get_weather"
    jsonschema.validate(json.loads(call["function"]["arguments"]),
                        tool["function"]["parameters"])
