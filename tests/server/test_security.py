"""Hostile input: limits are checked before any work, nothing runs on the event loop, client
mistakes are 4xx with a message, 500s carry no internals (issue 10, items 2 and 6)."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import psutil
import pytest
from pngs import big_png_b64
from tornado.httpclient import HTTPClientError

COMPLETIONS = ("minicpm", "v1", "chat", "completions")


def image_message(b64: str, n: int) -> list[dict[str, Any]]:
    return [{"role": "user", "content": [{"type": "text", "text": "What are these?"}] + [
        {"type": "image_url", "image_url": {"url": "data:image/png;base64," + b64}}
        for _ in range(n)]}]


async def refused(jp_fetch: Any, path: tuple[str, ...], body: str | bytes,
                  **kw: Any) -> tuple[int, dict[str, Any]]:
    with pytest.raises(HTTPClientError) as e:
        await jp_fetch(*path, method="POST", body=body, **kw)
    return e.value.code, json.loads(e.value.response.body)


async def status_while(jp_fetch: Any, work: Any) -> tuple[Any, list[float]]:
    """Run ``work`` while polling GET /minicpm/status; returns its result and the latencies."""
    latencies: list[float] = []
    done = asyncio.Event()

    async def poll() -> None:
        while not done.is_set():
            t0 = time.perf_counter()
            r = await jp_fetch("minicpm", "status")
            assert r.code == 200
            latencies.append(time.perf_counter() - t0)
            await asyncio.sleep(0.01)

    poller = asyncio.ensure_future(poll())
    try:
        result = await work
    finally:
        done.set()
        await poller
    return result, latencies


async def test_image_flood_refused_fast_status_answers(jp_fetch: Any, ready: Any) -> None:
    """30 PNGs of 36 megapixels each (~120 KB each, ~3.2 GB if decoded): 4xx within 1 s, the
    server keeps answering, and its memory does not grow."""
    proc = psutil.Process()
    b64 = big_png_b64(6000, 6000)
    body = json.dumps({"messages": image_message(b64, 30), "max_tokens": 4})
    rss0 = proc.memory_info().rss
    t0 = time.perf_counter()
    (code, err), latencies = await status_while(jp_fetch, refused(jp_fetch, COMPLETIONS, body))
    elapsed = time.perf_counter() - t0
    assert code == 400 and "30 images" in err["error"]["message"], err
    assert "max_images" in err["error"]["message"]
    assert elapsed < 1.0, elapsed
    assert latencies and max(latencies) < 0.5, latencies
    assert proc.memory_info().rss - rss0 < 300 * 2**20


async def test_oversized_pixels_refused_from_header(jp_fetch: Any, ready: Any,
                                                    jp_ws_fetch: Any) -> None:
    """Within the count limit, each 100-megapixel PNG is refused from its header: not decoded
    (300 MB each) and not on the event loop."""
    proc = psutil.Process()
    b64 = big_png_b64(10000, 10000)
    rss0 = proc.memory_info().rss
    t0 = time.perf_counter()
    body = json.dumps({"messages": image_message(b64, 4), "max_tokens": 4})
    (code, err), latencies = await status_while(jp_fetch, refused(jp_fetch, COMPLETIONS, body))
    assert code == 400 and "10000×10000 pixels" in err["error"]["message"], err
    assert time.perf_counter() - t0 < 1.0
    assert latencies and max(latencies) < 0.5
    # The sidebar's socket refuses the same way.
    ws = await jp_ws_fetch("minicpm", "chat")
    await ws.write_message(json.dumps({
        "type": "chat", "id": "big", "messages": [{"role": "user", "content": "?"}],
        "context": [{"kind": "image", "label": "fig", "mime": "image/png", "data": b64}] * 3}))
    f = json.loads(await asyncio.wait_for(ws.read_message(), 5))
    assert f["type"] == "error" and f["status"] == 400 and "pixels" in f["error"], f
    await ws.write_message(json.dumps({
        "type": "chat", "id": "many", "messages": [{"role": "user", "content": "?"}],
        "context": [{"kind": "image", "label": "fig", "mime": "image/png", "data": "AAAA"}] * 9}))
    f = json.loads(await asyncio.wait_for(ws.read_message(), 5))
    assert f["type"] == "error" and f["status"] == 400 and "9 images" in f["error"], f
    ws.close()
    assert proc.memory_info().rss - rss0 < 300 * 2**20


async def test_too_many_context_parts_refused(jp_ws_fetch: Any, ready: Any, chat: Any) -> None:
    ws = await jp_ws_fetch("minicpm", "chat")
    parts = [{"kind": "text", "label": f"p{i}", "text": "x" * 40} for i in range(20_000)]
    t0 = time.perf_counter()
    frames = await chat(ws, "parts", "Summarise.", context=parts)
    assert time.perf_counter() - t0 < 1.0
    assert frames[-1]["type"] == "error" and frames[-1]["status"] == 400
    assert "20000 context parts" in frames[-1]["error"] and "max_context_parts" in frames[-1]["error"]
    frames = await chat(ws, "msgs", "x", messages=[{"role": "user", "content": "x"}] * 600)
    assert frames[-1]["status"] == 400 and "600 messages" in frames[-1]["error"]
    frames = await chat(ws, "ok", "Say hi.")
    assert frames[-1]["type"] == "done"
    ws.close()


class TestManyPartsAllowed:
    """With the part limit raised, 20,000 parts are assembled by the worker (linear, a few
    tokenizations), and a ``stop`` frees it for the next client at once."""

    @pytest.fixture
    def minicpm_config(self) -> dict[str, Any]:
        return {"max_context_parts": 50_000}

    async def test_stop_frees_the_worker(self, jp_ws_fetch: Any, ready: Any, host: Any,
                                         collect: Any, chat: Any) -> None:
        a = await jp_ws_fetch("minicpm", "chat")
        b = await jp_ws_fetch("minicpm", "chat")
        parts = [{"kind": "text", "label": f"row {i}", "text": f"value {i} " * 8}
                 for i in range(20_000)]
        await a.write_message(json.dumps({
            "type": "chat", "id": "big", "context": parts,
            "messages": [{"role": "user", "content": "Count to 500."}],
            "sampling": {"max_tokens": 400, "temperature": 0, "ignore_eos": True}}))
        while not host.running:  # accepted and running (assembling, then generating)
            await asyncio.sleep(0.01)
        await a.write_message(json.dumps({"type": "stop", "id": "big"}))
        t0 = time.perf_counter()
        frames = await chat(b, "next", "Say hi.")
        assert frames[-1]["type"] == "done", frames
        assert time.perf_counter() - t0 < 10  # 400 tokens would take far longer here
        done = (await collect(a, "big"))[-1]
        assert done["type"] == "done" and done["finish_reason"] == "cancelled", done
        assert done["usage"]["completion_tokens"] < 100
        a.close()
        b.close()


async def test_client_mistakes_are_400(jp_fetch: Any, ready: Any) -> None:
    user = [{"role": "user", "content": "hi"}]
    cases = [
        ("[" * 100_000 + "]" * 100_000, "nested too deeply"),
        ('{"messages": [{"role": "user", "content": "hi"}], "max_tokens": Infinity}',
         "Infinity"),
        ('{"messages": [{"role": "user", "content": "hi"}], "temperature": NaN}', "NaN"),
        (json.dumps({"messages": user}).replace("}]", '}], "max_tokens": 1e309'), "max_tokens"),
        (json.dumps({"messages": user, "max_tokens": 10**12}), "max_tokens_limit"),
        (json.dumps({"messages": user, "max_tokens": 2.5}), "whole number"),
        (json.dumps({"messages": user, "stream": True, "stream_options": [1]}),
         "stream_options"),
        (json.dumps({"messages": user, "stream": "yes"}), "stream"),
        (json.dumps({"messages": user, "stop": ["x"] * 100}), "100 stop strings"),
        (json.dumps({"messages": user, "stop": ["x" * 1000]}), "stop string"),
        (json.dumps({"messages": user, "top_k": "many"}), "top_k"),
        (json.dumps({"messages": user * 600}), "600 messages"),
        (json.dumps({"messages": [{"role": "user", "content": [{"type": "text", "text": "x"}]
                                   * 300}]}), "300 parts"),
    ]
    for body, needle in cases:
        code, err = await refused(jp_fetch, COMPLETIONS, body)
        assert code == 400, (body[:80], err)
        assert needle in err["error"]["message"], (needle, err)
    r = await jp_fetch(*COMPLETIONS, method="POST", body=json.dumps(
        {"messages": user, "max_tokens": 2}))
    assert json.loads(r.body)["choices"]


async def test_body_limit_before_reading(jp_serverapp: Any, http_server_client: Any,
                                         jp_base_url: str, http_server_port: Any) -> None:
    """A declared body over max_body_bytes is refused from its headers: 413 at once, though
    not one byte of the (1 GB) body was sent."""
    token = jp_serverapp.identity_provider.token
    port = http_server_port[-1] if isinstance(http_server_port, tuple) else http_server_port
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    path = jp_base_url + "minicpm/v1/chat/completions"
    writer.write((f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                  f"Authorization: token {token}\r\nContent-Type: application/json\r\n"
                  f"Content-Length: {10**9}\r\n\r\n").encode())
    await writer.drain()
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    assert head.startswith(b"HTTP/1.1 413"), head
    length = int([h for h in head.decode().split("\r\n") if h.lower().startswith(
        "content-length")][0].split(":")[1])
    err = json.loads(await reader.readexactly(length))
    assert "max_body_bytes" in err["error"]["message"]
    writer.close()


async def test_per_connection_queue_cap(jp_ws_fetch: Any, ready: Any, collect: Any) -> None:
    ws = await jp_ws_fetch("minicpm", "chat")
    for i in range(9):
        await ws.write_message(json.dumps({
            "type": "chat", "id": f"q{i}", "messages": [{"role": "user", "content": "Count."}],
            "sampling": {"max_tokens": 200, "temperature": 0, "ignore_eos": True}}))
    frames = await collect(ws, "q8")
    assert frames[-1]["type"] == "error" and frames[-1]["status"] == 429, frames
    assert "max_requests_per_connection" in frames[-1]["error"]
    for i in range(8):
        await ws.write_message(json.dumps({"type": "stop", "id": f"q{i}"}))
    ended: dict[str, str] = {}
    while len(ended) < 8:
        f = json.loads(await asyncio.wait_for(ws.read_message(), 30))
        if f["type"] in ("done", "error"):
            ended[f["id"]] = f.get("finish_reason", f["type"])
    assert ended == {f"q{i}": "cancelled" for i in range(8)}
    ws.close()


async def test_internal_errors_carry_no_internals(jp_fetch: Any, ready: Any, host: Any,
                                                  monkeypatch: Any) -> None:
    def boom(job: Any) -> None:
        raise RuntimeError("/home/secret/path/engine.py line 3: bad state")

    monkeypatch.setattr(host, "submit", boom)
    with pytest.raises(HTTPClientError) as e:
        await jp_fetch(*COMPLETIONS, method="POST", body=json.dumps(
            {"messages": [{"role": "user", "content": "hi"}]}))
    assert e.value.code == 500
    text = e.value.response.body.decode()
    assert "/home/secret" not in text and "Traceback" not in text
    assert "internal error (RuntimeError)" in json.loads(text)["error"]["message"]


def test_check_helpers_are_real() -> None:
    """The PNG helper writes what it says (the flood tests rely on its size)."""
    import base64
    import io

    from PIL import Image

    b64 = big_png_b64(6000, 6000)
    assert len(b64) < 200_000
    im = Image.open(io.BytesIO(base64.b64decode(b64)))
    assert im.size == (6000, 6000) and im.format == "PNG"
    small = big_png_b64(64, 48)
    im = Image.open(io.BytesIO(base64.b64decode(small)))
    im.load()
    assert im.getpixel((10, 10)) == (0x80, 0x20, 0x20)
