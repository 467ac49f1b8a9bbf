"""The pre-read (issue 25 item 2) through a real Jupyter server with the stand-in in its
worker process: ``POST /minicpm/preread`` reads the prefix the sidebar's next question
carries, the question then resumes from all of it, an edited notebook re-reads only from the
change, a chat arriving mid-pre-read runs and cancels it, the setting turns it off, and the
route needs auth. No timed assertion: waits are on the server's own state."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from tornado.httpclient import HTTPClientError

CELL = "# %% cell [{i}]\nimport pandas as pd\ndf{i} = pd.read_csv('part{i}.csv')\ndf{i}.describe()"


def notebook(n: int, changed: int | None = None) -> dict[str, Any]:
    cells = [CELL.format(i=i) for i in range(n)]
    if changed is not None:
        cells[changed] = cells[changed].replace("describe", "head")
    return {"kind": "notebook", "label": "analysis.ipynb", "language": "python",
            "text": "\n\n".join(cells)}


@pytest.fixture
def minicpm_config() -> dict[str, Any]:
    return {"n_ctx": 2048, "n_threads": 0}


async def post(fetch: Any, body: dict[str, Any]) -> dict[str, Any]:
    r = await fetch("minicpm", "preread", method="POST", body=json.dumps(body))
    return json.loads(r.body)


async def settled(host: Any, before: int) -> dict[str, Any]:
    """The next pre-read result after ``before`` results (done, cancelled or skipped)."""
    while True:
        p = host.prereads
        if sum(p.counts.values()) - p.counts["replaced"] > before and p.running is None \
                and not p.pending:
            return dict(p.last)
        await asyncio.sleep(0.02)


def results(host: Any) -> int:
    c = host.prereads.counts
    return sum(c.values()) - c["replaced"]


async def test_the_question_resumes_from_the_pre_read(jp_fetch: Any, jp_ws_fetch: Any,
                                                      ready: Any, host: Any,
                                                      chat: Any) -> None:
    ctx = [notebook(12)]
    n = results(host)
    reply = await post(jp_fetch, {"path": "analysis.ipynb", "messages": [], "context": ctx,
                                  "sampling": {"max_tokens": 8}})
    assert reply["accepted"] is True
    first = await settled(host, n)
    assert first["supported"] and not first["cancelled"] and first["prefilled"] > 200
    ws = await jp_ws_fetch("minicpm", "chat")
    frames = await chat(ws, "q1", "Which files does it read?", context=ctx)
    assert frames[-1]["type"] == "done"
    last = (await asyncio.to_thread(host.engine.stats))["prompt_cache"]["last"]
    assert last["reused"] >= first["prompt_tokens"]  # the whole pre-read prefix, token for token
    ws.close()

    # An edit near the end: the next pre-read reads only from the changed cell on.
    n = results(host)
    await post(jp_fetch, {"path": "analysis.ipynb", "context": [notebook(12, changed=10)],
                          "sampling": {"max_tokens": 8}})
    edited = await settled(host, n)
    assert not edited["cancelled"]
    assert edited["reused"] > 0.7 * edited["prompt_tokens"]
    assert edited["prefilled"] < 0.3 * first["prefilled"]


async def test_a_chat_arriving_mid_pre_read_runs_and_cancels_it(
        jp_fetch: Any, jp_ws_fetch: Any, ready: Any, host: Any, chat: Any,
        monkeypatch: Any) -> None:
    from minicpm_server import preread

    monkeypatch.setattr(preread, "CHUNK_TOKENS", 8)  # many chunks: far from done when it comes
    n = results(host)
    await post(jp_fetch, {"path": "big.ipynb", "context": [notebook(40)]})
    while host.prereads.running is None:
        await asyncio.sleep(0.005)
    ws = await jp_ws_fetch("minicpm", "chat")
    frames = await chat(ws, "q2", "Say hi.")
    assert frames[-1]["type"] == "done" and frames[-1]["finish_reason"] != "cancelled"
    out = await settled(host, n)
    assert out["path"] == "big.ipynb" and out["cancelled"] is True
    assert out["prefilled"] < out["prompt_tokens"] - out["reused"]
    ws.close()


async def test_newest_pre_read_of_a_notebook_replaces_the_older(jp_fetch: Any, ready: Any,
                                                                host: Any) -> None:
    host.prereads.pending.clear()
    replaced = host.prereads.counts["replaced"]
    host.state = "loading"  # hold the queue: nothing starts while we post two
    try:
        await post(jp_fetch, {"path": "a.ipynb", "context": [notebook(2)]})
        await post(jp_fetch, {"path": "a.ipynb", "context": [notebook(3)]})
        await post(jp_fetch, {"path": "b.ipynb", "context": [notebook(2)]})
        assert list(host.prereads.pending) == ["a.ipynb", "b.ipynb"]
        assert host.prereads.counts["replaced"] == replaced + 1
    finally:
        host.state = "ready"
    n = results(host)
    host.prereads.maybe_start()
    await settled(host, n)


async def test_bad_bodies_are_refused_before_any_work(jp_fetch: Any, ready: Any) -> None:
    for body, words in (({"context": []}, "path"),
                        ({"path": "x.ipynb", "context": "cells"}, "context"),
                        ({"path": "x.ipynb", "messages": "hi"}, "messages"),
                        ({"path": "x.ipynb", "context": [{"kind": "bogus"}]}, "kind")):
        with pytest.raises(HTTPClientError) as e:
            await post(jp_fetch, body)
        assert e.value.code == 400 and words in e.value.response.body.decode()


async def test_the_route_needs_a_token(jp_serverapp: Any, http_server_client: Any,
                                       jp_base_url: str) -> None:
    r = await http_server_client.fetch(jp_base_url + "minicpm/preread", method="POST",
                                       body=json.dumps({"path": "a.ipynb"}),
                                       raise_error=False)
    assert r.code == 403


class TestOff:
    @pytest.fixture
    def minicpm_config(self) -> dict[str, Any]:
        return {"preread": False, "load_on_start": False}

    async def test_the_setting_turns_it_off(self, jp_fetch: Any, host: Any) -> None:
        reply = await post(jp_fetch, {"path": "a.ipynb", "context": [notebook(3)]})
        assert reply["accepted"] is False and "c.MiniCPM.preread" in reply["reason"]
        assert not host.prereads.pending and host.state == "idle"  # nothing loaded or queued
        r = await jp_fetch("minicpm", "status")
        assert json.loads(r.body)["preread"]["enabled"] is False


async def test_a_cell_being_edited_is_pre_read_for_inline_completion(
        jp_fetch: Any, jp_ws_fetch: Any, ready: Any, host: Any, collect: Any) -> None:
    """``kind: completion``: the inline completion's prompt at the cursor is read ahead, so the
    next keystroke's request resumes from all of it; it keeps its own key beside the chat's."""
    cells = [{"kind": "code", "source": CELL.format(i=i)} for i in range(8)]
    edit = {"prefix": "def load(i):\n    return pd.read_csv(", "suffix": "", "cells": cells,
            "mode": "line"}
    n = results(host)
    reply = await post(jp_fetch, {"kind": "completion", "path": "analysis.ipynb", **edit})
    assert reply["accepted"] is True
    first = await settled(host, n)
    assert first["path"] == "completion:analysis.ipynb"
    assert first["supported"] and not first["cancelled"] and first["prefilled"] > 100
    ws = await jp_ws_fetch("minicpm", "complete")
    await ws.write_message(json.dumps({"type": "complete", "id": "k1", **edit,
                                       "prefix": edit["prefix"] + "f", "max_tokens": 4}))
    frames = await collect(ws, "k1")
    assert frames[-1]["type"] == "done", frames
    last = (await asyncio.to_thread(host.engine.stats))["prompt_cache"]["last"]
    assert last["reused"] >= first["prompt_tokens"]  # the keystroke read only its own end
    ws.close()
    with pytest.raises(HTTPClientError) as e:  # the completion socket's rules apply
        await post(jp_fetch, {"kind": "completion", "path": "a.ipynb", "prefix": 3})
    assert e.value.code == 400
    with pytest.raises(HTTPClientError) as e:
        await post(jp_fetch, {"kind": "sideways", "path": "a.ipynb"})
    assert e.value.code == 400
