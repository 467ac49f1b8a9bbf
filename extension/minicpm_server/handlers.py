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
from .errors import RequestError, message_for, status_for

AUTH_RESOURCE = "minicpm"


@dataclass
class ServerState:
    """What the handlers share; kept in ``web_app.settings["minicpm"]``."""

    config: MiniCPM
    host: EngineHost
    chats: ChatStore


class BaseHandler(APIHandler):
    auth_resource = AUTH_RESOURCE

    @property
    def state(self) -> ServerState:
        return self.settings["minicpm"]

    @property
    def host(self) -> EngineHost:
        return self.state.host

    def json_body(self) -> dict[str, Any]:
        """The body as a JSON object, or a 400 that says what is wrong."""
        if len(self.request.body) > self.state.config.max_body_bytes:
            raise RequestError(413, "request body is too large")
        try:
            body = json.loads(self.request.body or b"{}")
        except ValueError as e:
            raise RequestError(400, f"malformed JSON: {e}") from e
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
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps({"error": message, "status": status_code}))

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
        self.host.start_load(model or None, backend, body.get("device"))
        self.set_status(202)
        self.finish(self.host.status())


class UnloadHandler(BaseHandler):
    @web.authenticated
    @authorized
    def post(self) -> None:
        self.host.unload()
        self.finish(self.host.status())


class ChatsHandler(BaseHandler):
    @web.authenticated
    @authorized
    async def get(self) -> None:
        rows = await asyncio.get_running_loop().run_in_executor(None, self.state.chats.list)
        self.finish({"chats": rows})


class ChatHandler(BaseHandler):
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
        body = self.json_body()
        saved = await self._run(self.state.chats.save, chat_id, body.get("title", ""),
                                body.get("messages", []))
        self.finish(saved)

    @web.authenticated
    @authorized
    async def delete(self, chat_id: str) -> None:
        await self._run(self.state.chats.delete, chat_id)
        self.set_status(204)
        self.finish()


class ChatWebSocket(WebSocketMixin, WebSocketHandler, JupyterHandler):
    """``/minicpm/chat``: many requests per socket, each with a client-chosen id.

    Authenticated like jupyter_server's own kernel socket (``ws_authenticated`` on the
    upgrade request, then the authorizer); the origin check comes from ``WebSocketMixin``."""

    auth_resource = AUTH_RESOURCE

    def set_default_headers(self) -> None:
        """JupyterHandler's headers make no sense on a websocket (as in jupyter_server)."""

    @property
    def state(self) -> ServerState:
        return self.settings["minicpm"]

    @property
    def max_message_size(self) -> int:  # type: ignore[override]
        return self.state.config.max_body_bytes

    @ws_authenticated
    async def get(self, *args: Any, **kwargs: Any) -> None:
        authorized_ = await ensure_async(
            self.authorizer.is_authorized(self, self.current_user, "execute", AUTH_RESOURCE))
        if not authorized_:
            raise web.HTTPError(403)
        self.jobs: dict[str, Job] = {}
        await super().get(*args, **kwargs)

    def open(self, *args: Any, **kwargs: Any) -> None:
        super().open()  # WebSocketMixin's ping loop

    def send(self, frame: dict[str, Any]) -> bool:
        try:
            self.write_message(json.dumps(frame, ensure_ascii=False))
            return True
        except WebSocketClosedError:
            return False

    def send_error_frame(self, rid: Any, status: int, message: str) -> None:
        self.send({"type": "error", "id": rid, "status": status, "error": message})

    def on_message(self, message: str | bytes) -> None:
        if isinstance(message, bytes):
            self.send_error_frame(None, 400, "binary frames are not accepted; send JSON text")
            return
        try:
            frame = json.loads(message)
        except ValueError as e:
            self.send_error_frame(None, 400, f"malformed JSON: {e}")
            return
        if not isinstance(frame, dict):
            self.send_error_frame(None, 400, "a frame must be a JSON object")
            return
        rid = frame.get("id")
        kind = frame.get("type")
        if kind == "stop":
            job = self.jobs.get(str(rid))
            if job is not None:
                self.state.host.cancel(job)
            return
        if kind != "chat":
            self.send_error_frame(rid, 400, "type must be 'chat' or 'stop'")
            return
        try:
            if str(rid) in self.jobs:
                raise RequestError(409, f"request id {rid!r} is already running on this socket")
            job = chat_job(frame, self.state.config)
            chat_id = frame.get("chat_id")
            if chat_id is not None:
                from .chats import check_id

                check_id(chat_id)
            self.state.host.submit(job)
        except Exception as e:  # a bad request never closes the socket
            self.send_error_frame(rid, status_for(e), message_for(e))
            return
        self.jobs[job.id] = job
        asyncio.ensure_future(self._forward(job, frame, chat_id))

    async def _forward(self, job: Job, frame: dict[str, Any], chat_id: str | None) -> None:
        try:
            while True:
                ev = await job.events.get()
                kind = ev[0]
                if kind == "delta":
                    # Coalesce deltas that piled up: fewer frames when the client is slow.
                    text = ev[1]
                    while not job.events.empty() and job.events._queue[0][0] == "delta":  # type: ignore[attr-defined]
                        text += job.events.get_nowait()[1]
                    ok = self.send({"type": "delta", "id": job.id, "text": text})
                elif kind == "queued":
                    ok = self.send({"type": "queued", "id": job.id, "position": ev[1]})
                elif kind == "start":
                    start = {"type": "start", "id": job.id, "model": ev[1]}
                    if ev[2]:
                        start["notice"] = ev[2]
                    ok = self.send(start)
                elif kind == "error":
                    self.send_error_frame(job.id, ev[1], ev[2])
                    return
                else:  # done
                    usage = ev[1]
                    u = usage.to_dict()
                    self.send({"type": "done", "id": job.id,
                               "finish_reason": usage.finish_reason or "stop",
                               "usage": {"prompt_tokens": u["prompt_tokens"],
                                         "completion_tokens": u["completion_tokens"],
                                         "tokens_per_second": u["tokens_per_second"],
                                         "time_to_first_token": u["time_to_first_token"]},
                               "truncated": bool(job.meta.get("context_truncated")
                                                 or usage.truncated_tokens)})
                    if chat_id:
                        await self._save(chat_id, frame, job)
                    return
                if not ok:  # socket gone: stop generating
                    self.state.host.cancel(job)
        finally:
            self.jobs.pop(job.id, None)

    async def _save(self, chat_id: str, frame: dict[str, Any], job: Job) -> None:
        last_user = [m for m in frame["messages"] if m.get("role") == "user"][-1]
        new = [{"role": "user", "content": last_user.get("content", "")},
               {"role": "assistant", "content": job.text}]
        try:
            await asyncio.get_running_loop().run_in_executor(
                None, self.state.chats.append, chat_id, new, str(last_user.get("content"))[:60])
        except Exception as e:  # the reply was delivered; report the save failure separately
            self.send_error_frame(job.id, 500, f"could not save chat {chat_id}: {e}")

    def on_close(self) -> None:
        for job in list(getattr(self, "jobs", {}).values()):
            self.state.host.cancel(job)
