"""The remote backend against a real OpenAI-compatible server on loopback: llama-cpp-python's
own `python -m llama_cpp.server` serving the stand-in model."""

from __future__ import annotations

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
    gen = engine.chat([{"role": "user", "content": "Count to 500."}], max_tokens=400)
    first = next(gen)
    assert first is not None
    threading.Timer(0.05, gen.cancel).start()
    rest = list(gen)
    assert gen.usage.finish_reason == "cancelled"
    assert len(rest) < 100
    with pytest.raises(minicpm.ModelNotFoundError):
        minicpm.load("nope", backend="remote", base_url=llama_server)
    with pytest.raises(minicpm.BackendUnavailableError):
        minicpm.load(backend="remote", base_url="http://127.0.0.1:9/v1")


class TestServerOnRemote:
    @pytest.fixture
    def minicpm_config(self, llama_server: str) -> dict[str, Any]:
        return {"model": "", "backend": "remote", "remote_base_url": llama_server,
                "concurrency": 4}

    async def test_ws_chat_through_remote(self, jp_ws_fetch: Any, ready: Any, chat: Any) -> None:
        assert ready["model"]["backend"] == "remote"
        ws = await jp_ws_fetch("minicpm", "chat")
        frames = await chat(ws, "r", "Say hi.", context=[{"kind": "text", "text": "hello"}])
        assert frames[-1]["type"] == "done", frames
        assert "".join(f["text"] for f in frames if f["type"] == "delta").strip()
        ws.close()
        assert json.dumps(ready)
