"""One rule per field on every route and socket (extension/minicpm_server/validation.py):
the chat socket, the completion socket, /v1/chat/completions and /v1/completions accept and
refuse the same values with the same message. No model is needed: every refusal here happens
before the request reaches the engine."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from minicpm_server.config import MiniCPM
from minicpm_server.errors import RequestError
from minicpm_server.validation import check_max_tokens, check_sampling, check_stop
from tornado.httpclient import HTTPClientError

USER = [{"role": "user", "content": "hi"}]
# (sampling fields, what the 400's message holds)
BAD = [
    ({"max_tokens": 8.0}, "max_tokens must be a whole number"),  # OpenAI: integers only
    ({"max_tokens": 2.5}, "max_tokens must be a whole number"),
    ({"max_tokens": True}, "max_tokens must be a whole number"),
    ({"max_tokens": 0}, "max_tokens must be between 1 and"),
    ({"max_tokens": 10**12}, "max_tokens must be between 1 and"),
    ({"stop": ""}, "stop must be a non-empty string"),
    ({"stop": ["a", ""]}, "stop must be a non-empty string"),
    ({"stop": [3]}, "stop must be a non-empty string"),
    ({"stop": ["x"] * 100}, "100 stop strings"),
    ({"stop": ["x" * 1000]}, "stop string is longer"),
    ({"temperature": "hot"}, "temperature must be a number"),
    ({"top_k": 1.5}, "top_k must be a whole number"),
    ({"seed": 1.0}, "seed must be a whole number"),
]


@pytest.fixture
def minicpm_config() -> dict[str, Any]:
    return {"load_on_start": False}  # nothing here reaches the engine


@pytest.mark.parametrize("fields,needle", BAD)
def test_the_rule(fields: dict[str, Any], needle: str) -> None:
    with pytest.raises(RequestError) as e:
        check_sampling(fields, MiniCPM())
    assert e.value.status == 400 and needle in str(e.value)


def test_what_passes() -> None:
    cfg = MiniCPM()
    assert check_sampling({"max_tokens": 8, "stop": "x", "temperature": 0}, cfg) == {
        "max_tokens": 8, "stop": ["x"], "temperature": 0}
    assert check_sampling(None, cfg, default_max_tokens=16) == {"max_tokens": 16}
    assert check_max_tokens(None, cfg, 48, cap=256) == 48
    assert check_stop(None, cfg) == []
    with pytest.raises(RequestError, match="between 1 and 256"):
        check_max_tokens(300, cfg, 48, cap=256)  # a route's own cap


async def _http_error(jp_fetch: Any, path: tuple[str, ...], body: dict[str, Any]) -> str:
    with pytest.raises(HTTPClientError) as e:
        await jp_fetch(*path, method="POST", body=json.dumps(body))
    assert e.value.code == 400, e.value.response.body
    return json.loads(e.value.response.body)["error"]["message"]


async def _ws_error(ws: Any, frame: dict[str, Any]) -> str:
    await ws.write_message(json.dumps(frame))
    f = json.loads(await asyncio.wait_for(ws.read_message(), 30))
    assert f["type"] == "error" and f["status"] == 400 and f["id"] == frame["id"], f
    return f["error"]


async def test_every_route_applies_the_same_rule(jp_fetch: Any, jp_ws_fetch: Any) -> None:
    chat = await jp_ws_fetch("minicpm", "chat")
    complete = await jp_ws_fetch("minicpm", "complete")
    for i, (fields, needle) in enumerate(BAD):
        got = {
            "chat socket": await _ws_error(chat, {"type": "chat", "id": f"c{i}",
                                                  "messages": USER, "sampling": fields}),
            "/v1/chat/completions": await _http_error(
                jp_fetch, ("minicpm", "v1", "chat", "completions"), {"messages": USER, **fields}),
            "/v1/completions": await _http_error(
                jp_fetch, ("minicpm", "v1", "completions"), {"prompt": "x", **fields}),
        }
        if set(fields) == {"max_tokens"}:  # the completion socket takes no other sampling
            got["completion socket"] = await _ws_error(complete, {
                "type": "complete", "id": f"k{i}", "prefix": "x = ", **fields})
        for route, message in got.items():
            assert needle in message, (route, fields, message)
    chat.close()
    complete.close()


def test_a_chat_frame_names_a_known_context_turn() -> None:
    from minicpm_server.chat_request import chat_job

    frame = {"id": "r1", "messages": USER, "context": [], "context_turn": "middle"}
    with pytest.raises(RequestError, match="context_turn") as e:
        asyncio.run(chat_job(frame, MiniCPM()))
    assert e.value.status == 400
    for turn in ("first", "last"):  # both accepted (the default is "last")
        assert asyncio.run(chat_job({**frame, "context_turn": turn}, MiniCPM())).id == "r1"
