"""The Jupyter server as the kernel's source of answers: one WebSocket to /minicpm/chat per
request (docs/protocol.md), REST for status, models and loading, and ``find_server``: the
running server that owns this kernel and has minicpm_server."""

from __future__ import annotations

import itertools
import json
import os
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

from .transport import (
    INACTIVITY_TIMEOUT_S,
    POLL_S,
    REST_TIMEOUT_S,
    Prompt,
    Reply,
    Transport,
    TransportError,
)


class _SocketReply(Reply):
    """One request on its own WebSocket to /minicpm/chat (closing it cancels server-side)."""

    _ids = itertools.count(1)

    def __init__(self, server: ServerTransport, prompt: Prompt):
        import websocket  # websocket-client

        self.usage = {}
        self.rid = f"k{os.getpid()}-{next(self._ids)}"
        self._cancelled = False
        try:
            self.ws = websocket.create_connection(
                server.ws_url("minicpm/chat"), timeout=REST_TIMEOUT_S,
                header=[f"Authorization: token {server.token}"])
        except Exception as e:
            raise TransportError(f"cannot reach the MiniCPM server at {server.url}: {e}") from e
        frame: dict[str, Any] = {"type": "chat", "id": self.rid, "messages": prompt.messages,
                                 "context": prompt.context, "sampling": prompt.sampling}
        self.ws.send(json.dumps(frame))
        self.ws.settimeout(POLL_S)

    def _frames(self) -> Iterator[dict[str, Any]]:
        import websocket

        idle_since = time.monotonic()
        while True:
            try:
                raw = self.ws.recv()
            except websocket.WebSocketTimeoutException:
                if time.monotonic() - idle_since > INACTIVITY_TIMEOUT_S:
                    raise TransportError("the MiniCPM server stopped answering") from None
                continue
            except websocket.WebSocketConnectionClosedException:
                raise TransportError("the MiniCPM server closed the connection") from None
            idle_since = time.monotonic()
            frame = json.loads(raw)
            if frame.get("id") in (self.rid, None):
                yield frame

    def __iter__(self) -> Iterator[str]:
        if self.finish_reason is not None:
            return
        for f in self._frames():
            kind = f.get("type")
            if kind == "start":
                self.model, self.notice = f.get("model", ""), f.get("notice")
            elif kind == "delta":
                yield f.get("text", "")
            elif kind == "done":
                self.finish_reason = f.get("finish_reason", "stop")
                self.usage = f.get("usage") or {}
                return
            elif kind == "error":
                if self._cancelled:
                    self.finish_reason = "cancelled"
                    return
                raise TransportError(f.get("error", "the server refused the request"))

    def close(self) -> None:
        self.ws.close()  # the server cancels whatever still runs for this socket

    def cancel(self) -> None:
        self._cancelled = True
        try:
            self.ws.send(json.dumps({"type": "stop", "id": self.rid}))
        except Exception:  # already closed: nothing left to stop
            pass


class ServerTransport(Transport):
    kind = "server"

    def __init__(self, url: str, token: str):
        self.url = url if url.endswith("/") else url + "/"
        self.token = token

    def ws_url(self, path: str) -> str:
        return "ws" + self.url[len("http"):] + path

    def rest(self, method: str, path: str, body: dict[str, Any] | None = None,
             timeout: float = REST_TIMEOUT_S) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.url + path, data=data, method=method, headers={
            "Authorization": f"token {self.token}", "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                raw = resp.read()
        except urllib.error.HTTPError as e:
            try:
                message = json.loads(e.read()).get("error") or str(e)
            except Exception:
                message = str(e)
            raise TransportError(message) from None
        except OSError as e:
            raise TransportError(f"cannot reach the MiniCPM server at {self.url}: {e}") from None
        return json.loads(raw) if raw else None

    def start(self, prompt: Prompt) -> Reply:
        if prompt.model:
            cur = (self.rest("GET", "minicpm/status").get("model") or {})
            if prompt.model.lower() not in (str(cur.get("model", "")).lower(),
                                            str(cur.get("label", "")).lower()):
                raise TransportError(
                    f"the server has {cur.get('label') or 'no model'} loaded; --model cannot "
                    f"switch it for one question. Run %minicpm use {prompt.model} to load it "
                    "on the server (for every notebook using it)")
        return _SocketReply(self, prompt)

    def status(self) -> dict[str, Any]:
        s = self.rest("GET", "minicpm/status")
        model = s.get("model") or {}
        return {"transport": self.kind, "where": self.url, "state": s.get("state"),
                "model": model.get("label"), "backend": model.get("backend"),
                "quantization": model.get("quantization"),
                "context_length": model.get("context_length"),
                "hint": s.get("error") or s.get("hint") or model.get("hint"),
                "queue": s.get("queue")}

    def models(self) -> tuple[list[dict[str, Any]], str | None]:
        r = self.rest("GET", "minicpm/models")
        return r.get("models", []), r.get("current")

    def use(self, model: str) -> str:
        self.rest("POST", "minicpm/models/load", {"model": model})
        while True:  # interruptible: sleeps are short
            s = self.rest("GET", "minicpm/status")
            if s.get("state") == "ready":
                return (s.get("model") or {}).get("label", model)
            if s.get("state") == "error":
                raise TransportError(s.get("error") or f"the server could not load {model}")
            time.sleep(0.25)


# --- finding it ---------------------------------------------------------------------------------
def _kernel_id() -> str | None:
    try:
        from ipykernel.connect import get_connection_file

        name = os.path.basename(get_connection_file())
    except Exception:  # not in ipykernel (terminal IPython)
        return None
    return name[len("kernel-"):-len(".json")] if name.startswith("kernel-") else None


def _answers(t: ServerTransport) -> bool:
    try:
        t.rest("GET", "minicpm/status", timeout=2.0)
        return True
    except TransportError:
        return False


def find_server() -> ServerTransport | None:
    """MINICPM_SERVER_URL (+ MINICPM_SERVER_TOKEN), else the running Jupyter server that owns
    this kernel (listed in its /api/kernels) and answers /minicpm/status."""
    url = os.environ.get("MINICPM_SERVER_URL")
    if url:
        t = ServerTransport(url, os.environ.get("MINICPM_SERVER_TOKEN", ""))
        return t if _answers(t) else None
    kid = _kernel_id()
    if kid is None:
        return None
    try:
        from jupyter_server.serverapp import list_running_servers

        servers = list(list_running_servers())
    except Exception:
        return None
    for info in servers:
        t = ServerTransport(info.get("url", ""), info.get("token", ""))
        try:
            kernels = t.rest("GET", "api/kernels", timeout=2.0)
        except TransportError:
            continue
        if any(k.get("id") == kid for k in kernels or ()) and _answers(t):
            return t
    return None
