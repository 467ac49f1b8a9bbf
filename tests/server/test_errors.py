"""Bad input gets a 4xx JSON error, and the next request is served normally."""

from __future__ import annotations

import base64
import io
import json
from typing import Any

import pytest
from PIL import Image
from tornado.httpclient import HTTPClientError

COMPLETIONS = ("minicpm", "v1", "chat", "completions")


def png(w: int = 32, h: int = 24) -> str:
    buf = io.BytesIO()
    Image.new("RGB", (w, h), (200, 30, 30)).save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()


async def post_error(jp_fetch: Any, path: tuple[str, ...], body: str | bytes) -> tuple[int, Any]:
    with pytest.raises(HTTPClientError) as e:
        await jp_fetch(*path, method="POST", body=body)
    return e.value.code, json.loads(e.value.response.body)


async def works(jp_fetch: Any) -> None:
    r = await jp_fetch(*COMPLETIONS, method="POST", body=json.dumps(
        {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}))
    assert json.loads(r.body)["choices"][0]["message"]["content"] is not None


@pytest.mark.parametrize("body,status,needle", [
    ("{nope", 400, "malformed JSON"),
    ("[1, 2]", 400, "JSON object"),
    (json.dumps({"messages": []}), 400, "messages"),
    (json.dumps({"messages": [{"role": "wizard", "content": "x"}]}), 400, "role"),
    (json.dumps({"messages": [{"role": "user", "content": "x"}], "temperature": 99}), 400,
     "temperature"),
    (json.dumps({"model": "no-such-model", "messages": [{"role": "user", "content": "x"}]}), 404,
     "not loaded"),
    (json.dumps({"messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}]}]}), 400,
     "cannot decode"),
    (json.dumps({"messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,@@@"}}]}]}), 400,
     "base64"),
    (json.dumps({"messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "https://example.com/x.png"}}]}]}), 400,
     "URL"),
    (json.dumps({"messages": [{"role": "user", "content": [
        {"type": "text", "text": "what is this?"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64," + png()}}]}]}), 400,
     "cannot see images"),
    (json.dumps({"messages": [{"role": "user", "content": "word " * 3000}], "max_tokens": 4}),
     400, "context"),
])
async def test_openai_route_errors(jp_fetch: Any, ready: Any, body: str, status: int,
                                   needle: str) -> None:
    code, err = await post_error(jp_fetch, COMPLETIONS, body)
    assert code == status, err
    assert err["status"] == status and needle in err["error"]["message"], err
    await works(jp_fetch)


async def test_oversized_image(jp_fetch: Any, ready: Any, jp_serverapp: Any) -> None:
    cfg = jp_serverapp.web_app.settings["minicpm"].config
    cfg.max_image_bytes = 1000
    big = png(400, 400)
    assert len(big) * 3 // 4 > 1000
    code, err = await post_error(jp_fetch, COMPLETIONS, json.dumps({"messages": [{
        "role": "user", "content": [
            {"type": "image_url", "image_url": {"url": "data:image/png;base64," + big}}]}]}))
    assert code == 400 and "limit" in err["error"]["message"]
    await works(jp_fetch)


async def test_load_unknown_model(jp_fetch: Any, ready: Any) -> None:
    code, err = await post_error(jp_fetch, ("minicpm", "models", "load"),
                                 json.dumps({"model": "MiniCPM-9000"}))
    assert code == 404 and "unknown model" in err["error"]
    code, err = await post_error(jp_fetch, ("minicpm", "models", "load"),
                                 json.dumps({"model": "/nonexistent/model.gguf"}))
    assert code == 400 and "no such file" in err["error"]
    code, err = await post_error(jp_fetch, ("minicpm", "models", "load"), "{{")
    assert code == 400
    status = json.loads((await jp_fetch("minicpm", "status")).body)
    assert status["state"] == "ready"  # the loaded model is untouched
    await works(jp_fetch)


async def test_ws_bad_frames(jp_ws_fetch: Any, ready: Any, chat: Any) -> None:
    ws = await jp_ws_fetch("minicpm", "chat")

    async def expect_error(raw: str | bytes, needle: str) -> None:
        await ws.write_message(raw, binary=isinstance(raw, bytes))
        f = json.loads(await ws.read_message())
        assert f["type"] == "error" and 400 <= f["status"] < 500, f
        assert needle in f["error"], f

    await expect_error("{not json", "malformed JSON")
    await expect_error(b"\x00\x01", "binary")
    await expect_error("[]", "JSON object")
    await expect_error(json.dumps({"type": "dance", "id": "x"}), "type")
    await expect_error(json.dumps({"type": "chat", "messages": []}), "id")
    await expect_error(json.dumps({"type": "chat", "id": "a", "messages": "hi"}), "messages")
    await expect_error(json.dumps({"type": "chat", "id": "a", "messages": [
        {"role": "user", "content": "x"}], "context": [{"kind": "video"}]}), "kind")
    await expect_error(json.dumps({"type": "chat", "id": "a", "messages": [
        {"role": "user", "content": "x"}], "context": [
        {"kind": "image", "mime": "image/png", "data": "bm90IGFuIGltYWdl"}]}), "cannot decode")
    await expect_error(json.dumps({"type": "chat", "id": "a", "messages": [
        {"role": "user", "content": "x"}], "sampling": {"max_tokens": 0}}), "max_tokens")
    await expect_error(json.dumps({"type": "chat", "id": "a", "messages": [
        {"role": "user", "content": "x"}], "sampling": {"temprature": 1}}), "unknown sampling")
    # Chats are saved with PUT /minicpm/chats/{id} only: a frame asking the socket to save
    # is refused rather than silently not saved.
    await expect_error(json.dumps({"type": "chat", "id": "a", "chat_id": "c1",
                                   "messages": [{"role": "user", "content": "x"}]}), "PUT")
    # Overlong prompt: refused when the engine tokenizes it, as an error frame.
    frames = await chat(ws, "long", "word " * 3000)
    assert frames[-1]["type"] == "error" and frames[-1]["status"] == 400
    assert "context" in frames[-1]["error"]
    # The socket still works.
    frames = await chat(ws, "ok", "Say hi.")
    assert frames[-1]["type"] == "done"
    ws.close()


async def test_ws_image_on_text_model_degrades(jp_ws_fetch: Any, ready: Any, chat: Any) -> None:
    """A text-only model gets the image's size and is told it cannot see it; the reply says
    so in the start frame's notice instead of failing the whole request."""
    ws = await jp_ws_fetch("minicpm", "chat")
    frames = await chat(ws, "img", "What does the figure show?", context=[
        {"kind": "image", "label": "figure", "mime": "image/png", "data": png(64, 48)}])
    assert frames[0]["type"] == "start" and "cannot see images" in frames[0]["notice"]
    assert frames[-1]["type"] == "done"
    ws.close()
