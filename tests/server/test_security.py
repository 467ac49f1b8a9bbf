"""Hostile input: limits are checked before any work, nothing runs on the event loop, client
mistakes are 4xx with a message, 500s carry no internals (issue 10, items 2 and 6)."""

from __future__ import annotations

import asyncio
import json
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


async def status_while(jp_fetch: Any, work: Any) -> tuple[Any, int]:
    """Run ``work`` while polling GET /minicpm/status; returns its result and how many status
    requests were answered (each with 200) meanwhile."""
    answered = 0
    done = asyncio.Event()

    async def poll() -> None:
        nonlocal answered
        while not done.is_set():
            r = await jp_fetch("minicpm", "status")
            assert r.code == 200
            answered += 1
            await asyncio.sleep(0)

    poller = asyncio.ensure_future(poll())
    try:
        result = await work
    finally:
        done.set()
        await poller
    return result, answered


class ImageWork:
    """Spies on the server's image decoding (the real code runs): which images were decoded,
    whether a header was checked on the event loop, and how many pixel buffers were loaded."""

    def __init__(self, monkeypatch: Any):
        from minicpm_server import images
        from PIL import ImageFile

        self.decoded: list[str] = []
        self.headers_on_loop: list[bool] = []
        self.pixel_loads = 0
        real_decode, real_header, real_load = (images.decode_image, images._check_header,
                                               ImageFile.ImageFile.load)

        def decode_image(data: str, **kw: Any) -> Any:
            self.decoded.append(kw.get("label", "image"))
            return real_decode(data, **kw)

        def check_header(*a: Any) -> Any:
            self.headers_on_loop.append(on_event_loop())
            return real_header(*a)

        def load(img: Any) -> Any:
            self.pixel_loads += 1
            return real_load(img)

        monkeypatch.setattr(images, "decode_image", decode_image)
        monkeypatch.setattr(images, "_check_header", check_header)
        monkeypatch.setattr(ImageFile.ImageFile, "load", load)


def on_event_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


async def test_image_flood_refused_before_decoding(jp_fetch: Any, ready: Any,
                                                   monkeypatch: Any) -> None:
    """30 PNGs of 36 megapixels each (~120 KB each, ~3.2 GB if decoded): refused by their
    count before any is decoded, the server keeps answering, and its memory does not grow."""
    proc = psutil.Process()
    b64 = big_png_b64(6000, 6000)
    body = json.dumps({"messages": image_message(b64, 30), "max_tokens": 4})
    work = ImageWork(monkeypatch)
    rss0 = proc.memory_info().rss
    (code, err), answered = await status_while(jp_fetch, refused(jp_fetch, COMPLETIONS, body))
    assert code == 400 and "30 images" in err["error"]["message"], err
    assert "max_images" in err["error"]["message"]
    assert work.decoded == [] and work.pixel_loads == 0, vars(work)
    assert answered >= 1
    assert proc.memory_info().rss - rss0 < 300 * 2**20


async def test_oversized_pixels_refused_from_header(jp_fetch: Any, ready: Any,
                                                    jp_ws_fetch: Any, monkeypatch: Any) -> None:
    """Within the count limit, each 100-megapixel PNG is refused from its header: not decoded
    (300 MB each) and not on the event loop."""
    proc = psutil.Process()
    b64 = big_png_b64(10000, 10000)
    work = ImageWork(monkeypatch)
    rss0 = proc.memory_info().rss
    body = json.dumps({"messages": image_message(b64, 4), "max_tokens": 4})
    (code, err), answered = await status_while(jp_fetch, refused(jp_fetch, COMPLETIONS, body))
    assert code == 400 and "10000×10000 pixels" in err["error"]["message"], err
    # The first image's header refused the request: no pixels loaded, checked in a worker.
    assert work.decoded and work.headers_on_loop and not any(work.headers_on_loop), vars(work)
    assert work.pixel_loads == 0
    assert answered >= 1
    # The sidebar's socket refuses the same way.
    ws = await jp_ws_fetch("minicpm", "chat")
    await ws.write_message(json.dumps({
        "type": "chat", "id": "big", "messages": [{"role": "user", "content": "?"}],
        "context": [{"kind": "image", "label": "fig", "mime": "image/png", "data": b64}] * 3}))
    f = json.loads(await asyncio.wait_for(ws.read_message(), 60))
    assert f["type"] == "error" and f["status"] == 400 and "pixels" in f["error"], f
    await ws.write_message(json.dumps({
        "type": "chat", "id": "many", "messages": [{"role": "user", "content": "?"}],
        "context": [{"kind": "image", "label": "fig", "mime": "image/png", "data": "AAAA"}] * 9}))
    f = json.loads(await asyncio.wait_for(ws.read_message(), 60))
    assert f["type"] == "error" and f["status"] == 400 and "9 images" in f["error"], f
    ws.close()
    assert not any(work.headers_on_loop) and work.pixel_loads == 0, vars(work)
    assert proc.memory_info().rss - rss0 < 300 * 2**20


async def test_too_many_context_parts_refused(jp_ws_fetch: Any, ready: Any, chat: Any,
                                              monkeypatch: Any) -> None:
    """Refused from the counts, before any prompt is assembled (nothing tokenized)."""
    from minicpm import prompts

    assembled = []
    real_assemble = prompts.assemble

    def assemble(*a: Any, **kw: Any) -> Any:
        assembled.append(len(a[2]) if len(a) > 2 else None)
        return real_assemble(*a, **kw)

    monkeypatch.setattr(prompts, "assemble", assemble)
    ws = await jp_ws_fetch("minicpm", "chat")
    parts = [{"kind": "text", "label": f"p{i}", "text": "x" * 40} for i in range(20_000)]
    frames = await chat(ws, "parts", "Summarise.", context=parts)
    assert frames[-1]["type"] == "error" and frames[-1]["status"] == 400
    assert "20000 context parts" in frames[-1]["error"] and "max_context_parts" in frames[-1]["error"]
    frames = await chat(ws, "msgs", "x", messages=[{"role": "user", "content": "x"}] * 600)
    assert frames[-1]["status"] == 400 and "600 messages" in frames[-1]["error"]
    assert assembled == []
    frames = await chat(ws, "ok", "Say hi.")
    assert frames[-1]["type"] == "done"
    assert assembled == [0]  # the spy sees the requests that get as far as assembling
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
        tokens_before = host.generated_tokens
        await a.write_message(json.dumps({"type": "stop", "id": "big"}))
        frames = await chat(b, "next", "Say hi.")
        assert frames[-1]["type"] == "done", frames
        done = (await collect(a, "big"))[-1]
        assert done["type"] == "done" and done["finish_reason"] == "cancelled", done
        # The stop reached the engine: b ran after a's few tokens, not after its 400.
        assert done["usage"]["completion_tokens"] < 100
        b_tokens = frames[-1]["usage"]["completion_tokens"]
        assert host.generated_tokens - tokens_before < 100 + b_tokens
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
