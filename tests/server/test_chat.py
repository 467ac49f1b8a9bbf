"""Streaming chat over the WebSocket, SSE and the real openai client; concurrency; cancel."""

from __future__ import annotations

import asyncio
import json
import socket
from typing import Any

import openai
import pytest


async def test_status_and_models(jp_fetch: Any, ready: dict[str, Any]) -> None:
    assert ready["model"]["stand_in"] is True
    assert "stand-in" in ready["model"]["label"]
    assert ready["hint"] and ready["progress"] == 1.0
    assert ready["queue"] == {"running": 0, "waiting": 0, "concurrency": 1}
    models = json.loads((await jp_fetch("minicpm", "models")).body)
    assert models["current"] == ready["model"]["model"]
    assert any(m["stand_in"] and m["available"] for m in models["models"])


async def test_ws_stream(jp_ws_fetch: Any, ready: Any, chat: Any) -> None:
    ws = await jp_ws_fetch("minicpm", "chat")
    frames = await chat(ws, "r1", "Say hello.",
                        context=[{"kind": "cell", "label": "cell [1]", "text": "1/0"},
                                 {"kind": "error", "label": "cell [1]",
                                  "text": "ZeroDivisionError: division by zero"}])
    kinds = [f["type"] for f in frames]
    assert kinds[0] == "start" and kinds[-1] == "done", frames
    assert "stand-in" in frames[0]["model"]
    deltas = [f for f in frames if f["type"] == "delta"]
    assert deltas and "".join(d["text"] for d in deltas).strip()
    done = frames[-1]
    assert done["finish_reason"] in ("stop", "length")
    u = done["usage"]
    assert u["prompt_tokens"] > 10 and 1 <= u["completion_tokens"] <= 8
    assert u["time_to_first_token"] > 0
    # The same socket serves the next request.
    frames = await chat(ws, "r2", "And again.")
    assert frames[-1]["type"] == "done"
    ws.close()


async def start_counting(ws: Any, rid: str) -> None:
    """A long answer (up to 400 tokens) started on ``ws``: returns at its first delta."""
    await ws.write_message(json.dumps({
        "type": "chat", "id": rid, "messages": [{"role": "user", "content": "Count to 500."}],
        "sampling": {"max_tokens": 400, "temperature": 0}}))
    while json.loads(await ws.read_message())["type"] != "delta":
        pass


async def test_ws_stop_frame_cancels(jp_ws_fetch: Any, ready: Any, collect: Any) -> None:
    ws = await jp_ws_fetch("minicpm", "chat")
    await start_counting(ws, "long")
    await ws.write_message(json.dumps({"type": "stop", "id": "long"}))
    frames = await collect(ws, "long")
    done = frames[-1]
    assert done["type"] == "done" and done["finish_reason"] == "cancelled"
    assert done["usage"]["completion_tokens"] < 100
    ws.close()


async def test_disconnect_stops_generation(jp_ws_fetch: Any, ready: Any, host: Any) -> None:
    ws = await jp_ws_fetch("minicpm", "chat")
    await start_counting(ws, "gone")
    tokens_before = host.generated_tokens
    ws.close()
    # The request ends either way (at the latest after its 400 tokens): what shows that the
    # disconnect reached the engine is the token count, not the clock.
    while host.running:
        await asyncio.sleep(0.02)
    assert not host.running, "generation kept running after the client left"
    assert host.generated_tokens - tokens_before < 100


def parse_sse(body: bytes) -> list[Any]:
    events = []
    for block in body.decode().split("\n\n"):
        if block.startswith("data: "):
            data = block[6:]
            events.append(data if data == "[DONE]" else json.loads(data))
    return events


async def test_sse_stream_and_plain(jp_fetch: Any, ready: Any) -> None:
    req = {"messages": [{"role": "user", "content": "Say hi"}], "max_tokens": 8,
           "temperature": 0, "stream": True, "stream_options": {"include_usage": True}}
    r = await jp_fetch("minicpm", "v1", "chat", "completions", method="POST",
                       body=json.dumps(req))
    assert r.headers["Content-Type"].startswith("text/event-stream")
    events = parse_sse(r.body)
    assert events[-1] == "[DONE]"
    chunks = events[:-1]
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
    assert text.strip()
    assert chunks[-1]["usage"]["completion_tokens"] <= 8
    req["stream"] = False
    r = await jp_fetch("minicpm", "v1", "chat", "completions", method="POST",
                       body=json.dumps(req))
    body = json.loads(r.body)
    assert body["object"] == "chat.completion"
    assert body["choices"][0]["message"]["content"].strip()
    assert body["usage"]["total_tokens"] == (body["usage"]["prompt_tokens"]
                                             + body["usage"]["completion_tokens"])


@pytest.fixture(scope="module")
def real_server(tmp_path_factory: Any, start_real_server: Any) -> Any:
    """A `jupyter server` process with the extension, for the real openai client."""
    yield from start_real_server(tmp_path_factory.mktemp("srv"))


def test_openai_client(real_server: str) -> None:
    """The real openai client, streaming and not, as a notebook would use it."""
    client = openai.OpenAI(base_url=real_server + "/minicpm/v1", api_key="t0k", max_retries=0,
                           timeout=60)
    model = client.models.list().data[0].id
    msgs = [{"role": "user", "content": "Say hi"}]
    out = client.chat.completions.create(model=model, messages=msgs, max_tokens=8,
                                         temperature=0)
    assert out.choices[0].message.content.strip()
    assert out.usage.completion_tokens <= 8
    stream = client.chat.completions.create(model=model, messages=msgs, max_tokens=8,
                                            temperature=0, stream=True)
    parts = [c.choices[0].delta.content or "" for c in stream if c.choices]
    assert "".join(parts) == out.choices[0].message.content  # greedy: same text
    with pytest.raises(openai.NotFoundError) as e:
        client.chat.completions.create(model="gpt-4", max_tokens=4,
                                       messages=[{"role": "user", "content": "x"}])
    assert "not loaded" in str(e.value)
    # vLLM / llama-server's ignore_eos extension: exactly max_tokens, finish_reason "length"
    # (greedy, the stand-in answers this in a few tokens and stops).
    sum_q = [{"role": "user", "content": "What is 2+2? Answer with one number."}]
    short = client.chat.completions.create(model=model, messages=sum_q, max_tokens=24,
                                           temperature=0)
    full = client.chat.completions.create(model=model, messages=sum_q, max_tokens=24,
                                          temperature=0, extra_body={"ignore_eos": True})
    assert short.usage.completion_tokens < 24 and short.choices[0].finish_reason == "stop"
    assert full.usage.completion_tokens == 24 and full.choices[0].finish_reason == "length"
    client.close()


async def test_eight_parallel_streams(jp_ws_fetch: Any, ready: Any, chat: Any,
                                      host: Any) -> None:
    sockets = [await jp_ws_fetch("minicpm", "chat") for _ in range(8)]
    results = await asyncio.wait_for(asyncio.gather(
        *(chat(ws, f"p{i}", f"Say the number {i}.", sampling={"max_tokens": 4, "temperature": 0})
          for i, ws in enumerate(sockets))), 120)
    for frames in results:
        assert frames[-1]["type"] == "done", frames
        assert any(f["type"] == "delta" for f in frames)
    # Fair FIFO with concurrency 1: somebody waited, and saw a queue position.
    positions = [f["position"] for frames in results for f in frames if f["type"] == "queued"]
    assert positions and max(positions) >= 2
    while host.running:  # the slot is released just after the done frame
        await asyncio.sleep(0.01)
    assert not host.waiting
    for ws in sockets:
        ws.close()


async def test_no_outbound_network(jp_ws_fetch: Any, jp_fetch: Any, ready: Any, chat: Any,
                                   monkeypatch: Any) -> None:
    """Generating opens no connection except loopback ones (the test's own client)."""
    attempts: list[Any] = []
    real_connect = socket.socket.connect
    real_connect_ex = socket.socket.connect_ex

    def is_loopback(address: Any) -> bool:
        if isinstance(address, (str, bytes)):  # AF_UNIX
            return True
        host = str(address[0])
        return host in ("localhost", "::1") or host.startswith("127.")

    def guarded(self: socket.socket, address: Any) -> Any:
        if not is_loopback(address):
            attempts.append(address)
            raise OSError("outbound network refused by the test")
        return real_connect(self, address)

    def guarded_ex(self: socket.socket, address: Any) -> Any:
        if not is_loopback(address):
            attempts.append(address)
            return 111
        return real_connect_ex(self, address)

    monkeypatch.setattr(socket.socket, "connect", guarded)
    monkeypatch.setattr(socket.socket, "connect_ex", guarded_ex)
    ws = await jp_ws_fetch("minicpm", "chat")
    frames = await chat(ws, "n1", "Say hi.")
    assert frames[-1]["type"] == "done"
    r = await jp_fetch("minicpm", "v1", "chat", "completions", method="POST", body=json.dumps(
        {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}))
    assert json.loads(r.body)["choices"]
    ws.close()
    assert attempts == []
