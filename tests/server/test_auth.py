"""Authentication, authorization and origin: every route refuses a request without a token
(403; 401 with an OpenAI-shaped body under /minicpm/v1),
every route asks the authorizer (a denying one → 403), a cross-origin WebSocket on the login
cookie is refused, and a cookie-authenticated POST needs the XSRF token."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from jupyter_server.auth.authorizer import Authorizer
from minicpm_server.app import ROUTES
from tornado.httpclient import HTTPClientError
from tornado.websocket import websocket_connect

UPGRADE = {"Upgrade": "websocket", "Connection": "Upgrade",
           "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==", "Sec-WebSocket-Version": "13"}
HTTP_METHODS = ("get", "post", "put", "delete", "patch")


def rest_routes() -> list[tuple[str, str]]:
    """(method, path) for every REST route the extension registers, read from app.ROUTES so
    that a route added later is covered too."""
    from tornado.web import RequestHandler
    from tornado.websocket import WebSocketHandler

    out = []
    for pattern, handler in ROUTES:
        if issubclass(handler, WebSocketHandler):
            continue
        path = re.sub(r"\([^)]*\)", "abc", pattern)
        for m in HTTP_METHODS:
            if getattr(handler, m) is not getattr(RequestHandler, m):
                out.append((m.upper(), path))
    return out


def ws_routes() -> list[str]:
    from tornado.websocket import WebSocketHandler

    return [p for p, h in ROUTES if issubclass(h, WebSocketHandler)]


def test_route_table_is_covered() -> None:
    routes = rest_routes()
    assert ("GET", "minicpm/status") in routes and ("POST", "minicpm/v1/chat/completions") in routes
    assert ("PUT", "minicpm/chats/abc") in routes and "minicpm/chat" in ws_routes()


@pytest.mark.parametrize("method,path", rest_routes())
async def test_rest_routes_need_a_token(jp_serverapp: Any, http_server_client: Any,
                                        jp_base_url: str, method: str, path: str) -> None:
    body = b"{}" if method in ("POST", "PUT", "PATCH") else None
    for headers in ({}, {"Authorization": "token nope"}):
        r = await http_server_client.fetch(jp_base_url + path, method=method, body=body,
                                           headers=headers, raise_error=False,
                                           follow_redirects=False)
        if path.startswith("minicpm/v1/"):
            # OpenAI clients expect 401 with a JSON body for a missing or wrong key.
            assert r.code == 401, (path, headers, r.code)
            assert json.loads(r.body)["error"]["code"] == "invalid_api_key"
        else:
            assert r.code == 403, (path, headers, r.code)


@pytest.mark.parametrize("path", ws_routes())
@pytest.mark.parametrize("headers", [{}, {"Authorization": "token nope"}])
async def test_websocket_needs_a_token(jp_serverapp: Any, http_server_client: Any,
                                       jp_base_url: str, headers: dict[str, str],
                                       path: str) -> None:
    # The upgrade request a browser sends, without a (valid) token: refused before the upgrade.
    r = await http_server_client.fetch(jp_base_url + path, headers={**UPGRADE, **headers},
                                       raise_error=False, follow_redirects=False,
                                       request_timeout=10)
    assert r.code == 403


async def test_websocket_with_token_connects_and_answers(jp_ws_fetch: Any) -> None:
    ws = await jp_ws_fetch("minicpm", "chat")
    await ws.write_message(json.dumps({"type": "dance", "id": "x"}))
    frame = json.loads(await ws.read_message())
    assert frame == {"type": "error", "id": "x", "status": 400,
                     "error": "type must be 'chat' or 'stop'"}
    ws.close()


class DenyAll(Authorizer):
    """An authorizer that says no to everything (e.g. a read-only or locked-down deployment)."""

    asked: list[tuple[str, str]] = []

    def is_authorized(self, handler: Any, user: Any, action: str, resource: str) -> bool:
        DenyAll.asked.append((action, resource))
        return False


class TestDenyingAuthorizer:
    @pytest.fixture
    def jp_server_config(self, jp_server_config: dict[str, Any]) -> dict[str, Any]:
        cfg = dict(jp_server_config)
        cfg["ServerApp"] = {**cfg["ServerApp"], "authorizer_class": DenyAll}
        cfg["MiniCPM"] = {**cfg["MiniCPM"], "load_on_start": False}
        return cfg

    @pytest.mark.parametrize("method,path", rest_routes())
    async def test_every_rest_route_asks_the_authorizer(self, jp_fetch: Any, method: str,
                                                        path: str) -> None:
        DenyAll.asked.clear()
        body = "{}" if method in ("POST", "PUT", "PATCH") else None
        with pytest.raises(HTTPClientError) as e:
            await jp_fetch(*path.split("/"), method=method, body=body)
        assert e.value.code == 403, (method, path)
        assert any(res == "minicpm" for _, res in DenyAll.asked), DenyAll.asked

    @pytest.mark.parametrize("path", ws_routes())
    async def test_every_websocket_asks_the_authorizer(self, jp_ws_fetch: Any,
                                                       path: str) -> None:
        DenyAll.asked.clear()
        with pytest.raises(HTTPClientError) as e:
            await jp_ws_fetch(*path.split("/"))
        assert e.value.code == 403
        assert ("execute", "minicpm") in DenyAll.asked


async def login_cookie(http_server_client: Any, jp_base_url: str, token: str) -> str:
    """Log in as a browser does (the login form with the token): the cookie header to send."""
    r = await http_server_client.fetch(jp_base_url + "login", raise_error=False,
                                       follow_redirects=False)
    xsrf = [c for c in r.headers.get_list("Set-Cookie") if c.startswith("_xsrf=")]
    xsrf_value = xsrf[0].split(";")[0].split("=", 1)[1] if xsrf else ""
    cookie = f"_xsrf={xsrf_value}" if xsrf_value else ""
    r = await http_server_client.fetch(
        jp_base_url + "login", method="POST", body=f"password={token}&_xsrf={xsrf_value}",
        headers={"Cookie": cookie}, raise_error=False, follow_redirects=False)
    assert r.code == 302, r.code
    cookies = [c.split(";")[0] for c in r.headers.get_list("Set-Cookie")]
    login = [c for c in cookies if c.startswith("username-")]
    assert login, cookies
    return "; ".join([cookie, *login]) if cookie else login[0]


async def test_cross_origin_websocket_refused(jp_serverapp: Any, http_server_client: Any,
                                              jp_base_url: str, http_server_port: Any) -> None:
    """A page on another site can make the browser open the socket with the user's cookie
    (no token): refused. The same socket from the server's own origin connects."""
    token = jp_serverapp.identity_provider.token
    cookie = await login_cookie(http_server_client, jp_base_url, token)
    port = http_server_port[-1] if isinstance(http_server_port, tuple) else http_server_port
    url = f"ws://127.0.0.1:{port}{jp_base_url}minicpm/chat"
    from tornado.httpclient import HTTPRequest

    with pytest.raises(HTTPClientError) as e:
        await websocket_connect(HTTPRequest(url, headers={
            "Cookie": cookie, "Origin": "http://evil.example"}))
    assert e.value.code == 403
    ws = await websocket_connect(HTTPRequest(url, headers={
        "Cookie": cookie, "Origin": f"http://127.0.0.1:{port}"}))
    await ws.write_message(json.dumps({"type": "dance", "id": "y"}))
    assert json.loads(await ws.read_message())["id"] == "y"
    ws.close()


async def test_cookie_post_needs_xsrf(jp_serverapp: Any, http_server_client: Any,
                                      jp_base_url: str) -> None:
    token = jp_serverapp.identity_provider.token
    cookie = await login_cookie(http_server_client, jp_base_url, token)
    url = jp_base_url + "minicpm/chats/xs"
    body = json.dumps({"title": "t", "messages": []})
    # GET on the cookie alone works: the cookie is a real login.
    r = await http_server_client.fetch(jp_base_url + "minicpm/status",
                                       headers={"Cookie": cookie}, raise_error=False)
    assert r.code == 200
    bare = "; ".join(c for c in cookie.split("; ") if not c.startswith("_xsrf="))
    r = await http_server_client.fetch(url, method="PUT", body=body,
                                       headers={"Cookie": bare}, raise_error=False)
    assert r.code == 403, r.code
    xsrf = [c for c in cookie.split("; ") if c.startswith("_xsrf=")][0].split("=", 1)[1]
    r = await http_server_client.fetch(url, method="PUT", body=body, raise_error=False,
                                       headers={"Cookie": cookie, "X-XSRFToken": xsrf})
    assert r.code == 200, (r.code, r.body)
