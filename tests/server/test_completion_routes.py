"""Inline completion on a real server with the stand-in: the /minicpm/complete socket
(streaming, superseded and stopped requests freeing the engine, chats going first, bad input)
and OpenAI's legacy /minicpm/v1/completions through the real openai client."""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request
from typing import Any

import openai
import pytest

from minicpm.completion import parses

CELLS = [{"kind": "markdown", "source": "Small helpers for the sales data."},
         {"kind": "code", "source": "import math\nimport statistics"}]


def frame(rid: str, prefix: str, **extra: Any) -> str:
    f = {"type": "complete", "id": rid, "prefix": prefix, "suffix": "", "cells": CELLS,
         "mode": "line", "max_tokens": 24}
    f.update(extra)
    return json.dumps(f)


async def collect(ws: Any, rid: str, timeout: float = 60) -> list[dict[str, Any]]:
    out = []
    while True:
        msg = await asyncio.wait_for(ws.read_message(), timeout)
        assert msg is not None, "socket closed"
        f = json.loads(msg)
        if f.get("id") == rid:
            out.append(f)
            if f["type"] in ("done", "error"):
                return out


async def test_a_suggestion_streams_and_fits_the_cell(jp_ws_fetch: Any, ready: Any) -> None:
    ws = await jp_ws_fetch("minicpm", "complete")
    prefix = "def area(radius):\n    return math.pi * "
    await ws.write_message(frame("a1", prefix))
    frames = await collect(ws, "a1")
    done = frames[-1]
    assert done["type"] == "done", frames
    assert done["prompt"]["cells_used"] == 2 and not done["prompt"]["fim"]
    assert 0 < done["prompt"]["tokens"] <= 1024
    assert done["usage"]["prompt_tokens"] > 20 and done["usage"]["completion_tokens"] <= 24
    assert done["timing"]["total_ms"] > 0
    text = done["text"]
    if text:  # a one-line suggestion that parses with the cell, streamed before it ended
        assert "\n" not in text and "```" not in text and parses(prefix + text)
        partials = [f["text"] for f in frames if f["type"] == "partial"]
        assert partials and text.startswith(partials[0][:1])
        assert done["timing"]["first_ms"] <= done["timing"]["total_ms"]
    else:
        assert done["dropped"] in ("empty", "syntax")
    # The same prompt again: the prompt cache serves what is unchanged (when there is one).
    await ws.write_message(frame("a2", prefix + "r"))
    again = (await collect(ws, "a2"))[-1]
    assert again["type"] == "done"
    if again["usage"]["reused_tokens"] is not None:
        assert again["usage"]["reused_tokens"] >= again["usage"]["prompt_tokens"] - 8
    ws.close()


async def test_a_new_request_cancels_the_old_one(jp_ws_fetch: Any, ready: Any,
                                                 host: Any) -> None:
    ws = await jp_ws_fetch("minicpm", "complete")
    long_prefix = "numbers = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16,"
    await ws.write_message(frame("old", long_prefix, mode="statement", max_tokens=200))
    # wait until it is generating, then type on
    while True:
        f = json.loads(await asyncio.wait_for(ws.read_message(), 60))
        if f["id"] == "old" and f["type"] in ("partial", "done"):
            break
    await ws.write_message(frame("new", "import statis"))
    old = [f] if f["type"] == "done" else await collect(ws, "old")
    new = await collect(ws, "new")
    # Greedy: the stand-in goes on counting, so the old request was still generating.
    assert old[-1]["dropped"] == "cancelled", old[-1]
    assert old[-1]["text"] == "" and old[-1]["finish_reason"] == "cancelled"
    assert old[-1]["usage"]["completion_tokens"] < 200  # stopped, not run to its 200 tokens
    assert "free_ms" in old[-1]["timing"]  # reported (bench/completion.py measures it)
    assert new[-1]["type"] == "done" and new[-1]["dropped"] != "cancelled"
    ws.close()


async def test_stop_frame_and_closing_the_socket_free_the_engine(jp_ws_fetch: Any,
                                                                 jp_serverapp: Any,
                                                                 ready: Any) -> None:
    ws = await jp_ws_fetch("minicpm", "complete")
    stats = jp_serverapp.web_app.settings["minicpm_inline"].stats  # made by the socket
    await ws.write_message(frame("s1", "values = [0.5, 1.5, 2.5, 3.5,", mode="statement",
                                 max_tokens=200))
    await ws.write_message(json.dumps({"type": "stop", "id": "s1"}))
    done = (await collect(ws, "s1"))[-1]
    assert done["type"] == "done" and done["dropped"] == "cancelled" and done["text"] == ""
    await ws.write_message(frame("s2", "values = [0.5, 1.5, 2.5, 3.5,", mode="statement",
                                 max_tokens=200))
    ws.close()
    ws2 = await jp_ws_fetch("minicpm", "complete")
    await ws2.write_message(frame("s3", "import ma", max_tokens=4))
    done = (await collect(ws2, "s3"))[-1]
    assert done["type"] == "done" and done["dropped"] != "cancelled"
    # Closing the socket stopped s2 (the one inline thread ran it before s3): s1 and s2 are
    # both counted as cancelled, neither ran to its 200 tokens.
    assert stats["cancelled"] == 2 and stats["requests"] == 3, stats
    ws2.close()


async def test_a_chat_goes_first(jp_ws_fetch: Any, ready: Any, host: Any) -> None:
    chat = await jp_ws_fetch("minicpm", "chat")
    await chat.write_message(json.dumps({
        "type": "chat", "id": "c1", "messages": [{"role": "user", "content": "Count to 300."}],
        "sampling": {"max_tokens": 300, "temperature": 0, "ignore_eos": True}}))
    while json.loads(await asyncio.wait_for(chat.read_message(), 60))["type"] != "delta":
        pass
    ws = await jp_ws_fetch("minicpm", "complete")
    await ws.write_message(frame("b1", "import ma"))
    done = (await collect(ws, "b1"))[-1]
    assert done["type"] == "done" and done["dropped"] == "busy" and done["text"] == ""
    assert host.busy  # answered while the chat still runs, not after it
    await chat.write_message(json.dumps({"type": "stop", "id": "c1"}))
    chat.close()
    ws.close()


async def test_a_running_suggestion_yields_to_a_chat(jp_ws_fetch: Any, ready: Any) -> None:
    ws = await jp_ws_fetch("minicpm", "complete")
    await ws.write_message(frame("p1", "numbers = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12,",
                                 mode="statement", max_tokens=200))
    while json.loads(await asyncio.wait_for(ws.read_message(), 60))["type"] != "partial":
        pass
    chat = await jp_ws_fetch("minicpm", "chat")
    await chat.write_message(json.dumps({
        "type": "chat", "id": "c2", "messages": [{"role": "user", "content": "Hi"}],
        "sampling": {"max_tokens": 2, "temperature": 0}}))
    done = (await collect(ws, "p1"))[-1]
    assert done["dropped"] == "preempted" and done["text"] == "", done
    assert done["usage"]["completion_tokens"] < 200
    while True:
        f = json.loads(await asyncio.wait_for(chat.read_message(), 60))
        if f["type"] in ("done", "error"):
            break
    assert f["type"] == "done" and f["usage"]["completion_tokens"] == 2
    chat.close()
    ws.close()


@pytest.mark.parametrize("bad,status,needle", [
    ({"prefix": 3}, 400, "prefix"),
    ({"mode": "paragraph"}, 400, "mode"),
    ({"cells": [{"kind": "output", "source": "x"}]}, 400, "cells[0]"),
    ({"cells": "x"}, 400, "cells"),
    ({"cells": [{"kind": "code", "source": "x"}] * 1001}, 413, "1000"),
    ({"cells": [{"kind": "code", "source": "x" * 600_000}] * 2}, 413, "characters"),
    ({"max_tokens": 100_000}, 400, "max_tokens"),
    ({"max_tokens": 0}, 400, "max_tokens"),
    ({"budget": 3}, 400, "budget"),
    ({"type": "chat"}, 400, "type"),
    ({"id": ""}, 400, "id"),
])
async def test_bad_frames_get_errors_and_keep_the_socket(jp_ws_fetch: Any, ready: Any,
                                                         bad: dict[str, Any], status: int,
                                                         needle: str) -> None:
    ws = await jp_ws_fetch("minicpm", "complete")
    f = json.loads(frame("x1", "x = "))
    f.update(bad)
    await ws.write_message(json.dumps(f))
    err = json.loads(await asyncio.wait_for(ws.read_message(), 30))
    assert err["type"] == "error" and err["status"] == status and needle in err["error"], err
    for raw in ("not json", "[1]", b"\x00binary"):
        await ws.write_message(raw, binary=isinstance(raw, bytes))
        err = json.loads(await asyncio.wait_for(ws.read_message(), 30))
        assert err["type"] == "error" and err["status"] == 400
    await ws.write_message(frame("ok", "import ma", max_tokens=4))  # still usable
    assert (await collect(ws, "ok"))[-1]["type"] == "done"
    ws.close()


async def test_the_socket_needs_a_token(jp_serverapp: Any, http_server_client: Any,
                                        jp_base_url: str) -> None:
    # The upgrade request a browser sends, without a (valid) token: refused before the upgrade.
    upgrade = {"Upgrade": "websocket", "Connection": "Upgrade",
               "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==", "Sec-WebSocket-Version": "13"}
    for headers in ({}, {"Authorization": "token nope"}):
        r = await http_server_client.fetch(jp_base_url + "minicpm/complete",
                                           headers={**upgrade, **headers}, raise_error=False,
                                           follow_redirects=False, request_timeout=10)
        assert r.code == 403


# --- OpenAI legacy completions, through the real client --------------------------------------


@pytest.fixture(scope="module")
def real_server(tmp_path_factory: Any, start_real_server: Any) -> Any:
    """A `jupyter server` process with the extension, for the real openai client."""
    yield from start_real_server(tmp_path_factory.mktemp("srv"), "--MiniCPM.n_threads=2")


def test_openai_legacy_completions(real_server: str) -> None:
    client = openai.OpenAI(base_url=real_server + "/minicpm/v1", api_key="t0k", max_retries=0,
                           timeout=60)
    model = client.models.list().data[0].id
    prompt = "import numpy as np\n\n# the mean of a list of numbers\ndef mean(xs):\n"
    out = client.completions.create(model=model, prompt=prompt, max_tokens=12, temperature=0)
    assert out.object == "text_completion" and out.choices[0].text
    assert out.usage.completion_tokens <= 12 and out.usage.prompt_tokens > 10
    assert out.choices[0].finish_reason in ("stop", "length")
    parts = [c.choices[0].text for c in client.completions.create(
        model=model, prompt=prompt, max_tokens=12, temperature=0, stream=True) if c.choices]
    assert "".join(parts) == out.choices[0].text  # greedy: the same text, streamed
    # stop strings are honoured (never emitted); suffix is accepted
    first_line = out.choices[0].text.split("\n")[0]
    cut = client.completions.create(model=model, prompt=prompt, max_tokens=12, temperature=0,
                                    stop=["\n"], suffix="\n\nprint(mean([1, 2]))")
    assert "\n" not in cut.choices[0].text and cut.choices[0].text == first_line
    with pytest.raises(openai.BadRequestError) as e:
        client.completions.create(model=model, prompt=prompt, max_tokens=10**9)
    assert "max_tokens" in str(e.value)
    with pytest.raises(openai.BadRequestError):
        client.completions.create(model=model, prompt=prompt, stop=["x"] * 100)
    with pytest.raises(openai.NotFoundError):
        client.completions.create(model="gpt-3.5-turbo-instruct", prompt="x", max_tokens=2)
    client.close()


def test_legacy_completions_refuse_bad_bodies_and_no_token(real_server: str) -> None:
    def post(body: Any, token: str | None = "t0k") -> tuple[int, Any]:
        headers = {"Content-Type": "application/json"}
        if token:
            headers["Authorization"] = f"token {token}"
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        req = urllib.request.Request(real_server + "/minicpm/v1/completions", data=data,
                                     headers=headers, method="POST")
        try:
            with urllib.request.urlopen(req, timeout=60) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read() or b"{}")

    code, body = post({"prompt": "x", "max_tokens": 2}, token=None)
    assert code == 401 and body["error"]["code"] == "invalid_api_key"  # as OpenAI answers
    code, body = post({"prompt": 5})
    assert code == 400 and "prompt" in body["error"]["message"]
    assert post({"prompt": ["a", "b"]})[0] == 400
    assert post({"prompt": "x", "n": 2})[0] == 400
    assert post({"prompt": "x", "suffix": 3})[0] == 400
    assert post({"prompt": "x", "temperature": -1})[0] == 400
    assert post(b"{not json")[0] == 400
    assert post({"prompt": "x" * 1_000_001})[0] == 413
