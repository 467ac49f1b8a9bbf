"""The engine's worker process dies (SIGKILL as the OOM killer sends it, a native abort):
every route's client gets an error, the server and a running kernel live on, the next request
restarts the engine; repeated crashes stop restarting; a model that crashed while loading is
remembered; unload ends the process; the memory pre-check refuses what cannot fit."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
from pathlib import Path
from typing import Any

import psutil
import pytest

from minicpm.catalogue import standin_path

MARKER = "ABORT-NOW-7f3"
LONG = "Write a very long story about a cat, with many chapters."


@pytest.fixture
def minicpm_config(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> dict[str, Any]:
    # Set before the server (and so the worker) starts: the test-only native-abort hook.
    monkeypatch.setenv("MINICPM_WORKER_TEST_ABORT", MARKER)
    return {"bad_models_file": str(tmp_path / "bad_models.json")}


async def status(jp_fetch: Any) -> dict[str, Any]:
    return json.loads((await jp_fetch("minicpm", "status")).body)


async def wait_state(jp_fetch: Any, want: str, timeout: float = 90) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    s: dict[str, Any] = {}
    while loop.time() < end:
        s = await status(jp_fetch)
        if s["state"] == want:
            return s
        await asyncio.sleep(0.05)
    raise AssertionError(f"state never became {want}: {s}")


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


async def until_gone(pid: int) -> None:
    for _ in range(600):
        if gone(pid):
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"process {pid} is still there")


async def first_delta_then(ws: Any, rid: str, action: Any) -> list[dict[str, Any]]:
    """Send a long chat; run ``action()`` at its first delta; collect until done/error."""
    await ws.write_message(json.dumps({
        "type": "chat", "id": rid, "messages": [{"role": "user", "content": LONG}],
        "sampling": {"max_tokens": 600, "temperature": 0}}))
    frames: list[dict[str, Any]] = []
    acted = False
    while True:
        f = json.loads(await asyncio.wait_for(ws.read_message(), 60))
        if f.get("id") != rid:
            continue
        frames.append(f)
        if f["type"] == "delta" and not acted:
            acted = True
            action()
        if f["type"] in ("done", "error"):
            return frames


async def test_sigkill_mid_chat_then_the_next_question_is_answered(
        jp_fetch: Any, jp_ws_fetch: Any, jp_serverapp: Any, ready: Any, chat: Any,
        host: Any) -> None:
    r = await jp_fetch("api", "kernels", method="POST", body="{}")
    kernel_id = json.loads(r.body)["id"]
    pid = host.engine.pid
    assert (await status(jp_fetch))["engine_process"]["pid"] == pid != os.getpid()
    ws = await jp_ws_fetch("minicpm", "chat")
    frames = await first_delta_then(ws, "k1", lambda: os.kill(pid, signal.SIGKILL))
    err = frames[-1]
    assert err["type"] == "error" and err["status"] == 503, frames
    assert "SIGKILL" in err["error"] and "out of memory" in err["error"]
    s = await status(jp_fetch)
    assert s["state"] == "error" and "SIGKILL" in s["error"] and "restarts" in s["error"]
    assert s["engine_process"]["crashes"] == 1
    km = jp_serverapp.kernel_manager
    assert await km.get_kernel(kernel_id).is_alive()  # the kernel never noticed
    frames = await chat(ws, "k2", "Say hi.")  # restarts the engine
    assert frames[-1]["type"] == "done", frames
    assert host.engine.pid != pid
    ws.close()
    await jp_fetch("api", "kernels", kernel_id, method="DELETE")


async def test_queued_requests_end_with_the_crash(jp_ws_fetch: Any, ready: Any,
                                                  host: Any) -> None:
    ws = await jp_ws_fetch("minicpm", "chat")
    pid = host.engine.pid
    for rid, text, n in (("q1", LONG, 600), ("q2", "hi", 4)):  # q2 waits behind q1
        await ws.write_message(json.dumps({
            "type": "chat", "id": rid, "messages": [{"role": "user", "content": text}],
            "sampling": {"max_tokens": n, "temperature": 0}}))
    ends: dict[str, dict[str, Any]] = {}
    queued = killed = False
    while len(ends) < 2:
        f = json.loads(await asyncio.wait_for(ws.read_message(), 60))
        queued = queued or (f["id"] == "q2" and f["type"] == "queued")
        if f["id"] == "q1" and f["type"] == "delta" and not killed:
            killed = True
            os.kill(pid, signal.SIGKILL)
        if f["type"] in ("done", "error"):
            ends[f["id"]] = f
    assert queued and killed
    assert ends["q1"]["type"] == ends["q2"]["type"] == "error", ends
    assert "SIGKILL" in ends["q1"]["error"] and "SIGKILL" in ends["q2"]["error"]
    ws.close()


async def test_native_abort_mid_sse_stream(jp_fetch: Any, ready: Any, host: Any) -> None:
    pid = host.engine.pid
    chunks: list[bytes] = []
    r = await jp_fetch("minicpm", "v1", "chat", "completions", method="POST",
                       body=json.dumps({"messages": [{"role": "user", "content": MARKER}],
                                        "max_tokens": 200, "stream": True}),
                       streaming_callback=chunks.append)
    assert r.code == 200
    body = b"".join(chunks).decode()
    events = [json.loads(line[6:]) for line in body.splitlines()
              if line.startswith("data: {")]
    assert events[0]["choices"][0]["delta"].get("content") is not None or len(events) > 1
    assert "SIGABRT" in events[-1]["error"]["message"]
    assert body.rstrip().endswith("data: [DONE]")
    await until_gone(pid)
    r = await jp_fetch("minicpm", "v1", "chat", "completions", method="POST", body=json.dumps(
        {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}))
    assert json.loads(r.body)["choices"][0]["message"]["content"] is not None


async def test_sigkill_mid_inline_completion(jp_ws_fetch: Any, jp_fetch: Any, ready: Any,
                                             host: Any) -> None:
    ws = await jp_ws_fetch("minicpm", "complete")
    prefix = f"# {MARKER}\ndef fibonacci(n):\n    "
    await ws.write_message(json.dumps({"type": "complete", "id": "c1", "prefix": prefix,
                                       "suffix": "", "max_tokens": 64, "mode": "block"}))
    while True:
        f = json.loads(await asyncio.wait_for(ws.read_message(), 60))
        if f.get("id") == "c1" and f["type"] in ("done", "error"):
            break
    assert f["type"] == "error" and "SIGABRT" in f["error"], f
    await ws.write_message(json.dumps({"type": "complete", "id": "c2", "prefix": "x = ",
                                       "suffix": "", "max_tokens": 4}))
    while True:  # the first one after the crash restarts the engine (and gets a 503)
        f = json.loads(await asyncio.wait_for(ws.read_message(), 60))
        if f.get("id") == "c2" and f["type"] in ("done", "error"):
            break
    await wait_state(jp_fetch, "ready")
    await ws.write_message(json.dumps({"type": "complete", "id": "c3", "prefix": "x = ",
                                       "suffix": "", "max_tokens": 4}))
    while True:
        f = json.loads(await asyncio.wait_for(ws.read_message(), 60))
        if f.get("id") == "c3" and f["type"] in ("done", "error"):
            break
    assert f["type"] == "done", f
    ws.close()


async def test_repeated_crashes_stop_restarting(jp_fetch: Any, jp_ws_fetch: Any, ready: Any,
                                                chat: Any, host: Any) -> None:
    ws = await jp_ws_fetch("minicpm", "chat")
    for i in range(3):
        s = await wait_state(jp_fetch, "ready")
        os.kill(s["engine_process"]["pid"], signal.SIGKILL)
        s = await wait_state(jp_fetch, "error")
        if i < 2:
            assert "restarts at the next request" in s["error"]
            await ws.write_message(json.dumps({  # starts the restart (answered or not)
                "type": "chat", "id": f"r{i}", "messages": [{"role": "user", "content": "hi"}],
                "sampling": {"max_tokens": 2}}))
    assert "not restarted" in s["error"] and s["engine_process"]["crashes"] == 3
    frames = await chat(ws, "after", "hi")
    assert frames[-1]["type"] == "error" and "not restarted" in frames[-1]["error"]
    # Choosing a model again starts afresh.
    await jp_fetch("minicpm", "models", "load", method="POST", body=json.dumps({}))
    await wait_state(jp_fetch, "ready")
    frames = await chat(ws, "again", "hi")
    assert frames[-1]["type"] == "done"
    ws.close()


async def test_unload_ends_the_worker(jp_fetch: Any, ready: Any, host: Any) -> None:
    pid = host.engine.pid
    rss = psutil.Process(pid).memory_info().rss
    assert rss > 50 * 2**20
    await jp_fetch("minicpm", "models", "unload", method="POST", body="{}")
    await until_gone(pid)
    assert (await status(jp_fetch))["engine_process"]["pid"] is None


async def test_a_model_that_crashes_while_loading_is_remembered(
        jp_fetch: Any, ready: Any, host: Any, tmp_path: Path) -> None:
    bad = tmp_path / f"{MARKER}.gguf"
    shutil.copy(standin_path(), bad)  # type: ignore[arg-type]
    await jp_fetch("minicpm", "models", "load", method="POST",
                   body=json.dumps({"model": str(bad)}))
    s = await wait_state(jp_fetch, "error")
    assert "SIGABRT" in s["error"] and "while loading" in s["error"]
    remembered = json.loads((tmp_path / "bad_models.json").read_text())
    assert str(bad) in remembered
    # At start-up (not chosen by the user) it is refused without starting a process.
    host.start_load(str(bad))
    s = await wait_state(jp_fetch, "error")
    assert "not loaded again until you choose it again" in s["error"]
    # The server is fine: another model loads and answers.
    await jp_fetch("minicpm", "models", "load", method="POST", body=json.dumps({}))
    await wait_state(jp_fetch, "ready")


class TestMemoryPrecheck:
    @pytest.fixture
    def minicpm_config(self) -> dict[str, Any]:
        return {"n_ctx": 100_000_000}  # a KV cache of terabytes

    async def test_refuses_with_needs_and_available(self, jp_fetch: Any) -> None:
        s = await wait_state(jp_fetch, "error")
        assert "needs" in s["error"] and "GiB is free" in s["error"], s
