"""Every route refuses a request without a token."""

from __future__ import annotations

from typing import Any

import pytest

ROUTES = [
    ("GET", "minicpm/status"), ("GET", "minicpm/models"), ("POST", "minicpm/models/load"),
    ("POST", "minicpm/models/unload"), ("GET", "minicpm/chats"), ("GET", "minicpm/chats/abc"),
    ("PUT", "minicpm/chats/abc"), ("DELETE", "minicpm/chats/abc"), ("GET", "minicpm/v1/models"),
    ("POST", "minicpm/v1/chat/completions"),
]


@pytest.mark.parametrize("method,path", ROUTES)
async def test_rest_routes_need_a_token(jp_serverapp: Any, http_server_client: Any,
                                        jp_base_url: str, method: str, path: str) -> None:
    body = b"{}" if method in ("POST", "PUT") else None
    r = await http_server_client.fetch(jp_base_url + path, method=method, body=body,
                                       raise_error=False, follow_redirects=False)
    assert r.code == 403, (path, r.code)
    # A wrong token is refused the same way.
    r = await http_server_client.fetch(jp_base_url + path, method=method, body=body,
                                       headers={"Authorization": "token nope"},
                                       raise_error=False, follow_redirects=False)
    assert r.code == 403, (path, r.code)


@pytest.mark.parametrize("headers", [{}, {"Authorization": "token nope"}])
async def test_websocket_needs_a_token(jp_serverapp: Any, http_server_client: Any,
                                       jp_base_url: str, headers: dict[str, str]) -> None:
    # The upgrade request a browser sends, without a (valid) token: refused before the upgrade.
    upgrade = {"Upgrade": "websocket", "Connection": "Upgrade",
               "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==", "Sec-WebSocket-Version": "13"}
    r = await http_server_client.fetch(jp_base_url + "minicpm/chat", headers={**upgrade, **headers},
                                       raise_error=False, follow_redirects=False,
                                       request_timeout=10)
    assert r.code == 403


async def test_websocket_with_token_connects(jp_ws_fetch: Any) -> None:
    ws = await jp_ws_fetch("minicpm", "chat")
    ws.close()
