"""REST routes and the chat WebSocket. Thin: validation, then ``EngineHost`` / ``ChatStore``."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any

from jupyter_core.utils import ensure_async
from jupyter_server.auth.decorator import authorized, ws_authenticated
from jupyter_server.base.handlers import APIHandler, JupyterHandler
from jupyter_server.base.websocket import WebSocketMixin
from tornado import web
from tornado.websocket import WebSocketClosedError, WebSocketHandler

from minicpm.catalogue import list_models

from .chat_request import chat_job
from .chats import ChatStore
from .config import MiniCPM
from .engine_host import EngineHost, Job
from .errors import RequestError, message_for, parse_json, status_for
from .events import Delta, Done, Failed, Queued, Started, drain

AUTH_RESOURCE = "minicpm"


@dataclass
class ServerState:
    """What the handlers share; kept in ``web_app.settings["minicpm"]``."""

    config: MiniCPM
    host: EngineHost
    chats: ChatStore


@web.stream_request_body  # so that prepare() sees the headers before the body is read
class BaseHandler(APIHandler):
    """JSON in, JSON out; errors as ``{"error", "status"}`` (``send_error_json``).

    The body limit (``c.MiniCPM.max_body_bytes``) is enforced before the body is read: a
    declared Content-Length over it is a 413 at once, and tornado stops reading a chunked
    body at the limit (the connection is closed)."""

    auth_resource = AUTH_RESOURCE
    _body: list[bytes]

    @property
    def state(self) -> ServerState:
        return self.settings["minicpm"]

    @property
    def host(self) -> EngineHost:
        return self.state.host

    async def prepare(self) -> None:  # type: ignore[override]
        self._body = []
        await ensure_async(super().prepare())  # jupyter_server: user, origin
        if self._finished:
            return
        limit = self.state.config.max_body_bytes
        self.request.connection.set_max_body_size(limit)  # type: ignore[union-attr]
        declared = self.request.headers.get("Content-Length", "")
        if declared.isdigit() and int(declared) > limit:
            raise RequestError(413, f"request body is {int(declared):,} bytes; the limit is "
                                    f"{limit:,} (c.MiniCPM.max_body_bytes)")

    def data_received(self, chunk: bytes) -> None:
        self._body.append(chunk)

    def json_body(self) -> dict[str, Any]:
        """The body as a JSON object, or a 400 that says what is wrong."""
        raw = b"".join(self._body)
        body = parse_json(raw or b"{}")
        if not isinstance(body, dict):
            raise RequestError(400, "the body must be a JSON object")
        return body

    def send_error_json(self, status: int, message: str) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps({"error": message, "status": status}))

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info", (None, None, None))[1]
        if isinstance(exc, web.HTTPError):
            message = exc.log_message or exc.reason or self._reason
        elif exc is not None:
            status_code, message = status_for(exc), message_for(exc)
            self.set_status(status_code)
        else:
            message = self._reason
        self.send_error_json(status_code, message)

    def log_exception(self, typ: Any, value: Any, tb: Any) -> None:
        # Client mistakes are not server errors: keep the log free of their tracebacks.
        if value is not None and status_for(value) < 500:
            self.log.info("%s %s: %s", self.request.method, self.request.path, value)
            return
        super().log_exception(typ, value, tb)

    def _handle_request_exception(self, e: BaseException) -> None:
        # RequestError / engine errors → their 4xx; tornado would otherwise send 500.
        if not isinstance(e, web.HTTPError) and status_for(e) < 500 and not self._finished:
            self.log_exception(type(e), e, e.__traceback__)
            self.send_error_json(status_for(e), message_for(e))
            return
        super()._handle_request_exception(e)


class StatusHandler(BaseHandler):
    @web.authenticated
    @authorized
    def get(self) -> None:
        self.finish(self.host.status())


class ModelsHandler(BaseHandler):
    @web.authenticated
    @authorized
    async def get(self) -> None:
        dirs = self.state.config.model_dirs or None
        # list_models walks folders: off the event loop.
        rows = await asyncio.get_running_loop().run_in_executor(None, list_models, dirs)
        info = self.host.info
        self.finish({"models": rows, "current": info.model if info else None,
                     "current_label": info.label if info else None})


class LoadHandler(BaseHandler):
    @web.authenticated
    @authorized
    async def post(self) -> None:
        body = self.json_body()
        model = body.get("model")
        if model is not None and not isinstance(model, str):
            raise RequestError(400, "model must be a string")
        for key in ("backend", "device"):
            if body.get(key) is not None and not isinstance(body[key], str):
                raise RequestError(400, f"{key} must be a string")
        backend = body.get("backend")
        if backend is not None and backend not in ("auto", "llama.cpp", "torch", "remote"):
            raise RequestError(400, "backend must be auto, llama.cpp, torch or remote")
        # Resolving a name walks folders: off the event loop. An unknown name is a 404 now.
        path = await asyncio.get_running_loop().run_in_executor(
            None, self.host.resolve_model_path, model or None, backend)
        self.host.start_load(model or None, backend, body.get("device"), path=path, chosen=True)
        self.set_status(202)
        self.finish(self.host.status())


class UnloadHandler(BaseHandler):
    @web.authenticated
    @authorized
    def post(self) -> None:
        self.host.unload()
        self.finish(self.host.status())


class SavedChatsHandler(BaseHandler):
    """``/minicpm/chats``: the saved sidebar chats (``ChatStore``)."""

    @web.authenticated
    @authorized
    async def get(self) -> None:
        rows = await asyncio.get_running_loop().run_in_executor(None, self.state.chats.list)
        self.finish({"chats": rows})


class SavedChatHandler(BaseHandler):
    """``/minicpm/chats/{id}``: one saved chat: read, save (PUT), delete."""

    async def _run(self, fn: Any, *args: Any) -> Any:
        # File I/O (fsync) blocks: keep it off the event loop.
        return await asyncio.get_running_loop().run_in_executor(None, fn, *args)

    @web.authenticated
    @authorized
    async def get(self, chat_id: str) -> None:
        self.finish(await self._run(self.state.chats.get, chat_id))

    @web.authenticated
    @authorized
    async def put(self, chat_id: str) -> None:
        body = self.json_body()  # a saved chat may be long: only the body limit applies
        saved = await self._run(self.state.chats.save, chat_id, body.get("title", ""),
                                body.get("messages", []))
        self.finish(saved)

    @web.authenticated
    @authorized
    async def delete(self, chat_id: str) -> None:
        await self._run(self.state.chats.delete, chat_id)
        self.set_status(204)
        self.finish()


class _Pending:
    """A request id taken by a frame whose images are still being decoded."""


class MiniCPMWebSocket(WebSocketMixin, WebSocketHandler, JupyterHandler):
    """What every MiniCPM socket shares: Jupyter's authentication on the upgrade request
    (``ws_authenticated``), then the authorizer; frames capped at ``max_body_bytes``."""

    auth_resource = AUTH_RESOURCE

    def set_default_headers(self) -> None:
        """JupyterHandler's headers make no sense on a websocket (as in jupyter_server)."""

    @property
    def state(self) -> ServerState:
        return self.settings["minicpm"]

    @property
    def max_message_size(self) -> int:  # type: ignore[override]
        return self.state.config.max_body_bytes

    async def authorize_socket(self) -> None:
        """403 unless the authorizer lets this user execute on the minicpm resource."""
        ok = await ensure_async(
            self.authorizer.is_authorized(self, self.current_user, "execute", AUTH_RESOURCE))
        if not ok:
            raise web.HTTPError(403)

    def open(self, *args: Any, **kwargs: Any) -> None:
        super().open()  # WebSocketMixin's ping loop

    def send(self, frame: dict[str, Any]) -> bool:
        """One JSON text frame; False when the socket is gone."""
        try:
            self.write_message(json.dumps(frame, ensure_ascii=False))
            return True
        except WebSocketClosedError:
            return False

    def send_error_frame(self, rid: Any, status: int, message: str) -> None:
        self.send({"type": "error", "id": rid, "status": status, "error": message})

    def read_frame(self, message: str | bytes) -> dict[str, Any] | None:
        """A client frame as a JSON object; None after answering a bad one with an error frame
        (a bad frame never closes the socket)."""
        if isinstance(message, bytes):
            self.send_error_frame(None, 400, "binary frames are not accepted; send JSON text")
            return None
        try:
            frame = parse_json(message)
        except RequestError as e:
            self.send_error_frame(None, e.status, str(e))
            return None
        if not isinstance(frame, dict):
            self.send_error_frame(None, 400, "a frame must be a JSON object")
            return None
        return frame


class ChatWebSocket(MiniCPMWebSocket):
    """``/minicpm/chat``: many requests per socket, each with a client-chosen id.

    Authenticated like jupyter_server's own kernel socket (``ws_authenticated`` on the
    upgrade request, then the authorizer). ``WebSocketMixin.check_origin`` refuses a
    cross-origin upgrade unless the request carries a token (a page on another site has
    the user's cookies, never their token) or ``ServerApp.allow_origin`` allows it."""

    @ws_authenticated
    async def get(self, *args: Any, **kwargs: Any) -> None:
        await self.authorize_socket()
        # Requests of this socket: accepted (a _Pending while its images decode), queued or
        # running.
        self.jobs: dict[str, Job | _Pending] = {}
        await super().get(*args, **kwargs)

    def on_message(self, message: str | bytes) -> None:
        frame = self.read_frame(message)
        if frame is None:
            return
        rid = frame.get("id")
        kind = frame.get("type")
        if kind == "stop":
            key = str(rid)
            if isinstance(self.jobs.get(key), _Pending):  # still decoding: never queued
                del self.jobs[key]
                self.send({"type": "done", "id": rid, "finish_reason": "cancelled",
                           "usage": {"prompt_tokens": 0, "completion_tokens": 0,
                                     "tokens_per_second": 0.0, "time_to_first_token": None},
                           "truncated": False})
            elif isinstance(job := self.jobs.get(key), Job):
                self.state.host.cancel(job)
            return
        if kind != "chat":
            self.send_error_frame(rid, 400, "type must be 'chat' or 'stop'")
            return
        key = str(rid)
        if key in self.jobs:
            self.send_error_frame(rid, 409, f"request id {rid!r} is already running on this "
                                            "socket")
            return
        cap = self.state.config.max_requests_per_connection
        if len(self.jobs) >= cap:
            self.send_error_frame(rid, 429, f"{cap} requests are already queued or running on "
                                            "this connection (c.MiniCPM.max_requests_per_"
                                            "connection); wait for one to finish")
            return
        pending = self.jobs[key] = _Pending()  # reserved while its images decode
        asyncio.ensure_future(self._run(key, rid, frame, pending))

    async def _run(self, key: str, rid: Any, frame: dict[str, Any], pending: _Pending) -> None:
        mine: Job | _Pending = pending
        try:
            try:
                job = await chat_job(frame, self.state.config)
                if self.jobs.get(key) is not pending:  # stopped, or the socket closed
                    return
                self.state.host.submit(job)
            except Exception as e:  # a bad request never closes the socket
                if status_for(e) >= 500:
                    self.log.exception("chat request %r failed", rid)
                self.send_error_frame(rid, status_for(e), message_for(e))
                return
            self.jobs[key] = mine = job
            await self._forward(job)
        finally:
            if self.jobs.get(key) is mine:
                del self.jobs[key]

    async def _forward(self, job: Job) -> None:
        truncated = False  # context parts cut to fit (said by Started)
        while True:
            for ev in drain(job.events, await job.events.get()):
                match ev:
                    case Queued(position):
                        ok = self.send({"type": "queued", "id": job.id, "position": position})
                    case Started(label, notice, cut):
                        truncated = cut
                        # The wire key stays "model" (docs/protocol.md; the sidebar reads it).
                        start: dict[str, Any] = {"type": "start", "id": job.id, "model": label}
                        if notice:
                            start["notice"] = notice
                        ok = self.send(start)
                    case Delta(text):
                        ok = self.send({"type": "delta", "id": job.id, "text": text})
                    case Failed(status, message):
                        self.send_error_frame(job.id, status, message)
                        return
                    case Done(usage):
                        self.send({"type": "done", "id": job.id,
                                   "finish_reason": usage.finish_reason or "stop",
                                   "usage": {"prompt_tokens": usage.prompt_tokens,
                                             "completion_tokens": usage.completion_tokens,
                                             "tokens_per_second":
                                                 round(usage.tokens_per_second, 2),
                                             "time_to_first_token": usage.time_to_first_token},
                                   "truncated": bool(truncated or usage.truncated_tokens)})
                        return
                if not ok:  # socket gone: stop generating
                    self.state.host.cancel(job)

    def on_close(self) -> None:
        jobs = getattr(self, "jobs", {})
        for job in list(jobs.values()):
            if isinstance(job, Job):
                self.state.host.cancel(job)
        jobs.clear()
