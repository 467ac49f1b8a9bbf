"""Background loading, switch and unload at run time, load at first use."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from minicpm.catalogue import standin_path


async def wait_state(jp_fetch: Any, want: str, timeout: float = 60) -> dict[str, Any]:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        s = json.loads((await jp_fetch("minicpm", "status")).body)
        if s["state"] == want:
            return s
        await asyncio.sleep(0.05)
    raise AssertionError(f"state never became {want}: {s}")


@pytest.fixture
def held_load(monkeypatch: Any) -> Iterator[threading.Event]:
    """Holds the background load at its start until the returned event is set (patched before
    the server starts: ask for this fixture before jp_serverapp)."""
    from minicpm_server.engine_host import EngineHost

    release = threading.Event()
    real = EngineHost.resolve_model_path

    def resolve_model_path(self: Any, *a: Any, **kw: Any) -> Any:
        release.wait(120)
        return real(self, *a, **kw)

    monkeypatch.setattr(EngineHost, "resolve_model_path", resolve_model_path)
    yield release
    release.set()


async def test_start_is_not_delayed(held_load: threading.Event, jp_serverapp: Any,
                                    jp_fetch: Any) -> None:
    # Right after start the server answers while the model loads in a thread: with the load
    # held, status still answers, and says so.
    s = json.loads((await jp_fetch("minicpm", "status")).body)
    assert s["state"] == "loading"
    held_load.set()
    await wait_state(jp_fetch, "ready")


async def test_switch_and_unload(jp_fetch: Any, ready: Any, chat: Any, jp_ws_fetch: Any) -> None:
    r = await jp_fetch("minicpm", "models", "load", method="POST",
                       body=json.dumps({"model": str(standin_path())}))
    assert r.code == 202
    s = json.loads(r.body)
    assert s["state"] == "loading" and 0.0 <= s["progress"] < 1.0
    s = await wait_state(jp_fetch, "ready")
    assert s["model"]["path"] == str(standin_path())
    r = await jp_fetch("minicpm", "models", "unload", method="POST", body="{}")
    assert json.loads(r.body)["state"] == "idle"
    assert json.loads(r.body)["model"] is None
    # First use after unload loads the default again; the request waits for it.
    ws = await jp_ws_fetch("minicpm", "chat")
    frames = await chat(ws, "after", "Say hi.")
    assert frames[-1]["type"] == "done", frames
    ws.close()


@pytest.fixture
def minicpm_config() -> dict[str, Any]:
    return {}


class TestLazy:
    @pytest.fixture
    def minicpm_config(self) -> dict[str, Any]:
        return {"load_on_start": False}

    async def test_loads_at_first_use(self, jp_fetch: Any, jp_ws_fetch: Any, chat: Any) -> None:
        s = json.loads((await jp_fetch("minicpm", "status")).body)
        assert s["state"] == "idle"
        ws = await jp_ws_fetch("minicpm", "chat")
        frames = await chat(ws, "first", "Say hi.")
        assert frames[-1]["type"] == "done", frames
        ws.close()


class TestBadConfiguredModel:
    @pytest.fixture
    def minicpm_config(self) -> dict[str, Any]:
        return {"model": "/nowhere/model.gguf"}

    async def test_status_reports_error(self, jp_fetch: Any) -> None:
        s = await wait_state(jp_fetch, "error", timeout=5)
        assert "no such file" in s["error"]
        # Loading a good model afterwards recovers.
        await jp_fetch("minicpm", "models", "load", method="POST",
                       body=json.dumps({"model": "stand-in"}))
        await wait_state(jp_fetch, "ready")
