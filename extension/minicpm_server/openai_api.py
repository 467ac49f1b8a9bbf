"""The OpenAI-compatible surface's base: errors in OpenAI's shape, 401 for a missing or wrong
key, ``/minicpm/v1/models`` and ``/models/{id}``, and a JSON 404 for every other ``/v1`` path
(chat completions live in ``openai_chat.py``, legacy completions in ``completion_api.py``).

Errors here are OpenAI-shaped (``{"error": {"message", "type", "param", "code"}, "status"}``)
so that OpenAI clients show the message and raise the right exception class.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from jupyter_server.auth.decorator import authorized
from tornado import web
from tornado.iostream import StreamClosedError

import minicpm

from .engine_host import Job
from .errors import RequestError
from .events import Delta, Done, Event, Failed, Queued, Started
from .handlers import BaseHandler

ALIASES = ("", "default", "minicpm")


class OpenAIHandler(BaseHandler):
    """Errors in OpenAI's shape; the base handler's ``write_error`` calls this."""

    def send_error_json(self, status: int, message: str, code: str | None = None,
                        param: str | None = None) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        if status == 401:
            self.set_header("WWW-Authenticate", 'Bearer realm="jupyter"')
        code = code or {401: "invalid_api_key", 404: "model_not_found",
                        413: "request_too_large", 429: "rate_limit_exceeded"}.get(status)
        kind = {401: "authentication_error", 403: "permission_error",
                404: "not_found_error"}.get(status, "invalid_request_error")
        kind = kind if status < 500 else "server_error"
        self.finish(json.dumps({"error": {"message": message, "type": kind, "param": param,
                                          "code": code}, "status": status}))

    # --- a missing or wrong key: 401 with a JSON body (OpenAI clients expect it), where
    # Jupyter would answer 403 ("_xsrf argument missing" for a POST). The checks are
    # Jupyter's own; only the answer to an unauthenticated request changes.
    def check_xsrf_cookie(self) -> None:
        if hasattr(self, "_jupyter_current_user") and self.current_user is None:
            raise web.HTTPError(401, NO_KEY)
        super().check_xsrf_cookie()

    def get_login_url(self) -> str:
        raise web.HTTPError(401, NO_KEY)

    def model_names(self) -> set[str]:
        names = set(ALIASES)
        info = self.host.info
        if info is not None:
            names |= {info.model, info.label}
        for n in (self.host.target, self.state.config.model):
            if n:
                names.add(n)
        return names

    def check_served(self, model: Any) -> None:
        """A request's ``model``: absent, or one of the names of the model served here (404)."""
        if model is not None and (not isinstance(model, str) or model not in self.model_names()):
            raise RequestError(404, f"model {model!r} is not loaded here; this server serves "
                                    f"{self.model_id()!r} (see GET /minicpm/v1/models, or load "
                                    "another with POST /minicpm/models/load)")

    def model_id(self) -> str:
        info = self.host.info
        return info.model if info else (self.host.target or self.state.config.model or "default")

    job: Job | None = None

    async def next_event(self, job: Job) -> Event:
        """The job's next event that the OpenAI protocol knows (queue positions are ours)."""
        while True:
            ev = await job.events.get()
            if not isinstance(ev, (Queued, Started)):
                return ev

    def submit(self, job: Job) -> Job:
        self.job = job  # what a client going away cancels
        self.host.submit(job)
        return job

    async def first_event(self, job: Job) -> Event | None:
        """The job's first real event; None after answering a failure with a plain 4xx/5xx.
        Headers wait for it: an error before any text (context overflow, a grammar llama.cpp
        refuses) is still an ordinary error response."""
        ev = await self.next_event(job)
        if isinstance(ev, Failed):
            self.send_error_json(ev.status, ev.message, code=ev.code)
            return None
        return ev

    async def follow(self, job: Job, ev: Event) -> AsyncIterator[Event]:
        """``ev`` and the job's next events, up to and including its Done or Failed."""
        while True:
            yield ev
            if isinstance(ev, (Done, Failed)):
                return
            ev = await self.next_event(job)

    async def collect(self, job: Job, first: Event) -> tuple[str, list[dict[str, Any]], Event]:
        """A whole answer: (text, logprob entries, the final Done or Failed)."""
        parts: list[str] = []
        lps: list[dict[str, Any]] = []
        end = first
        async for end in self.follow(job, first):
            if isinstance(end, Delta):
                parts.append(end.text)
                lps.extend(end.logprobs or ())
        return "".join(parts), lps, end

    def start_sse(self) -> None:
        self.set_header("Content-Type", "text/event-stream; charset=utf-8")
        self.set_header("Cache-Control", "no-cache")
        self.set_header("X-Accel-Buffering", "no")

    async def send_sse(self, obj: dict[str, Any]) -> None:
        self.write(f"data: {json.dumps(obj, ensure_ascii=False)}\n\n")
        await self.flush()

    async def send_sse_error(self, ev: Failed) -> None:
        """A failure after the headers: reported in-band, as OpenAI does mid-stream."""
        await self.send_sse({"error": {"message": ev.message, "type": "server_error",
                                       "param": None, "code": ev.code or ev.status}})

    async def run_sse(self, produce: Callable[[], Awaitable[None]]) -> None:
        """An SSE response: headers, the chunks ``produce`` sends, ``[DONE]``. A client that
        goes away stops the generation."""
        self.start_sse()
        try:
            await produce()
            self.write("data: [DONE]\n\n")
            await self.flush()
            self.finish()
        except StreamClosedError:
            if self.job is not None:
                self.host.cancel(self.job)

    def on_connection_close(self) -> None:
        # Tornado calls this when the client disconnects mid-request: stop generating.
        if self.job is not None and not self.job.finished:
            self.host.cancel(self.job)
        super().on_connection_close()

    def model_object(self) -> dict[str, Any]:
        info = self.host.info
        return {"id": self.model_id(), "object": "model", "created": 0,
                "owned_by": "minicpm (local)", "label": info.label if info else None,
                "stand_in": info.stand_in if info else None,
                "vision": info.vision if info else None}


NO_KEY = ("missing or wrong API key: use the Jupyter server's token as the key "
          "(Authorization: Bearer <token>)")


class ModelsListHandler(OpenAIHandler):
    @web.authenticated
    @authorized
    def get(self) -> None:
        data = []
        if self.host.info is not None or self.host.target:
            data.append(self.model_object())
        self.finish({"object": "list", "data": data})


class ModelHandler(OpenAIHandler):
    """``GET /v1/models/{id}``: the loaded model under any of its names."""

    @web.authenticated
    @authorized
    def get(self, model: str) -> None:
        if (self.host.info is None and not self.host.target) or model not in self.model_names():
            self.send_error_json(404, f"model {model!r} is not loaded here; this server serves "
                                      f"{self.model_id()!r}", param="model")
            return
        self.finish(self.model_object())


class NotFoundHandler(OpenAIHandler):
    """Every other ``/minicpm/v1/...`` path and method: a JSON 404 OpenAI clients can read
    (Jupyter's own would be an HTML page)."""

    def _missing(self, path: str) -> None:
        if path.strip("/") == "embeddings":
            msg = ("embeddings are not served here: the loaded model is a chat model "
                   "(POST /minicpm/v1/chat/completions)")
        else:
            msg = (f"{self.request.method} /minicpm/v1/{path} is not an endpoint here; see "
                   "/minicpm/v1/models, /minicpm/v1/chat/completions, /minicpm/v1/completions")
        self.send_error_json(404, msg, code="unknown_url")

    @web.authenticated
    @authorized
    def get(self, path: str) -> None:
        self._missing(path)

    post = put = patch = delete = get  # type: ignore[assignment]


def finish_reason(reason: str | None) -> str:
    return "length" if reason == "length" else "stop"


def usage_counts(usage: minicpm.Usage) -> dict[str, Any]:
    """OpenAI's three token counts."""
    return {"prompt_tokens": usage.prompt_tokens, "completion_tokens": usage.completion_tokens,
            "total_tokens": usage.prompt_tokens + usage.completion_tokens}


def add_usage(total: minicpm.Usage, usage: minicpm.Usage) -> None:
    """Sum the choices of one request (the prompt is the same for each)."""
    total.prompt_tokens = usage.prompt_tokens
    total.completion_tokens += usage.completion_tokens
    total.time_to_first_token = total.time_to_first_token or usage.time_to_first_token
    total.decode_seconds += usage.decode_seconds


def usage_body(usage: minicpm.Usage) -> dict[str, Any]:
    """The counts plus our speed fields (additive, as documented in docs/protocol.md)."""
    return {**usage_counts(usage),
            "tokens_per_second": round(usage.tokens_per_second, 2),
            "time_to_first_token": usage.time_to_first_token}
