"""Inline code completion: the editor's WebSocket ``/minicpm/complete`` and OpenAI's legacy
``POST /minicpm/v1/completions``.

Ghost text is a stream of short requests where only the newest matters. So inline requests do
not join the chat queue: one thread runs them on the shared engine, newest first, and

- a new request on a socket cancels that socket's older ones (the engine checks the cancel
  event before every token, so it is free within one token);
- a chat, magic or OpenAI request always goes first: an inline request that finds one queued or
  running is answered at once with nothing (``dropped: "busy"``), and one that is running stops
  at the next token when one arrives (``dropped: "preempted"``).

The engine's lock keeps the two paths from ever generating at the same time.
``/minicpm/v1/completions`` is an ordinary request and goes through the FIFO queue.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from jupyter_server.auth.decorator import authorized, ws_authenticated
from tornado import web

from minicpm import completion

from .engine_host import Job, raw_prompt
from .errors import RequestError, message_for, status_for
from .events import Delta, Done, Event, Failed
from .handlers import MiniCPMWebSocket
from .inline import InlineCompleter, InlineJob, inline_completer, parse_inline
from .openai_api import OpenAIHandler, finish_reason, usage_counts
from .validation import check_request_id, check_sampling

MAX_PROMPT_CHARS = 1_000_000  # /v1/completions prompt + suffix
# The sampling fields /v1/completions takes (the chat route takes these and more).
SAMPLING_FIELDS = ("max_tokens", "stop", "temperature", "top_p", "top_k", "seed",
                   "repetition_penalty")


class CompletionWebSocket(MiniCPMWebSocket):
    """``/minicpm/complete``: ``complete`` and ``stop`` frames (docs/protocol.md). Authenticated
    and authorized like the chat socket."""

    @ws_authenticated
    async def get(self, *args: Any, **kwargs: Any) -> None:
        await self.authorize_socket()
        self.jobs: dict[str, InlineJob] = {}
        self.completer = inline_completer(self.settings)
        await super().get(*args, **kwargs)

    def send(self, frame: dict[str, Any]) -> bool:
        if frame.get("type") in ("done", "error"):
            self.jobs.pop(str(frame.get("id")), None)
        return super().send(frame)

    def on_message(self, message: str | bytes) -> None:
        frame = self.read_frame(message)
        if frame is None:
            return
        rid: Any = None
        try:
            rid = check_request_id(frame.get("id"))
            kind = frame.get("type")
            if kind == "stop":
                job = self.jobs.get(rid)
                if job is not None:
                    job.cancel()
                return
            if kind != "complete":
                raise RequestError(400, "type must be 'complete' or 'stop'")
            if rid in self.jobs:
                raise RequestError(409, f"request id {rid!r} is already running on this socket")
            req, max_tokens, budget = parse_inline(frame, self.state.config)
            host = self.state.host
            if host.state in ("idle", "error"):
                host.ensure_loading()  # first use, or a restart after a crash: this one 503s
        except Exception as e:  # a bad frame never closes the socket
            self.send_error_frame(rid, status_for(e), message_for(e))
            return
        for old in self.jobs.values():  # superseded: stop them, the newest is what matters
            old.superseded = True
            old.cancel()
        job = self.completer.new_job(rid, req, max_tokens, budget)
        self.jobs[rid] = job
        self.completer.submit(job, self.send)

    def on_close(self) -> None:
        for job in list(getattr(self, "jobs", {}).values()):
            job.cancel()


class CompletionsHandler(OpenAIHandler):
    """OpenAI's legacy ``POST /v1/completions``: ``prompt``, ``suffix``, ``max_tokens``,
    ``stop``, ``stream`` and the sampling fields of the chat route. ``suffix`` is used when the
    model has fill-in-the-middle tokens and otherwise accepted and ignored."""

    @web.authenticated
    @authorized
    async def post(self) -> None:
        body = self.json_body()
        cfg = self.state.config
        self.check_served(body.get("model"))
        if body.get("n", 1) != 1 or body.get("best_of", 1) != 1:
            raise RequestError(400, "only n=1 (and best_of=1) is supported")
        if body.get("logprobs") is not None or body.get("echo"):
            raise RequestError(400, "logprobs and echo are not supported")
        prompt = body.get("prompt")
        if isinstance(prompt, list) and len(prompt) == 1:
            prompt = prompt[0]
        if not isinstance(prompt, str):
            raise RequestError(400, "prompt must be a string (or a list of one string)")
        suffix = body.get("suffix") or ""
        if not isinstance(suffix, str):
            raise RequestError(400, "suffix must be a string")
        if len(prompt) + len(suffix) > MAX_PROMPT_CHARS:
            raise RequestError(413, f"prompt and suffix exceed {MAX_PROMPT_CHARS} characters")
        sampling = check_sampling({k: body[k] for k in SAMPLING_FIELDS
                                   if body.get(k) is not None}, cfg, default_max_tokens=16)
        stops = sampling.pop("stop", [])
        fim = completion.fim_tokens(self.host.engine) if suffix and self.host.engine else None
        if fim is not None:
            prompt = f"{fim.prefix}{prompt}{fim.suffix}{suffix}{fim.middle}"
            stops += [fim.prefix, fim.suffix, fim.middle]
        if stops:
            sampling["stop"] = stops
        stream = bool(body.get("stream"))
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        job = self.submit(Job(id="cmpl-" + uuid.uuid4().hex[:24], build_request=raw_prompt(prompt),
                              sampling=sampling, truncate="error"))
        created = int(time.time())
        first = await self.first_event(job)
        if first is None:
            return
        if stream:
            await self.run_sse(lambda: self._stream(job, first, created, include_usage))
        else:
            await self._plain(job, first, created)

    def _obj(self, job: Job, created: int, text: str, finish: str | None) -> dict[str, Any]:
        return {"id": job.id, "object": "text_completion", "created": created,
                "model": self.model_id(),
                "choices": [{"text": text, "index": 0, "logprobs": None,
                             "finish_reason": finish}]}

    async def _plain(self, job: Job, ev: Event, created: int) -> None:
        text, _, end = await self.collect(job, ev)
        if isinstance(end, Failed):
            self.send_error_json(end.status, end.message, code=end.code)
            return
        assert isinstance(end, Done)
        out = self._obj(job, created, text, finish_reason(end.usage.finish_reason))
        out["usage"] = usage_counts(end.usage)
        self.finish(out)

    async def _stream(self, job: Job, first: Event, created: int, include_usage: bool) -> None:
        async for ev in self.follow(job, first):
            if isinstance(ev, Delta):
                await self.send_sse(self._obj(job, created, ev.text, None))
            elif isinstance(ev, Failed):
                await self.send_sse_error(ev)
            elif isinstance(ev, Done):
                await self.send_sse(self._obj(job, created, "",
                                              finish_reason(ev.usage.finish_reason)))
                if include_usage:
                    last = self._obj(job, created, "", None)
                    last["choices"], last["usage"] = [], usage_counts(ev.usage)
                    await self.send_sse(last)


ROUTES: list[tuple[str, Any]] = [
    ("minicpm/complete", CompletionWebSocket),
    ("minicpm/v1/completions", CompletionsHandler),
]


def shutdown(settings: dict[str, Any]) -> None:
    comp = settings.get("minicpm_inline")
    if comp is not None:
        comp.shutdown()


__all__ = ["ROUTES", "CompletionWebSocket", "CompletionsHandler", "InlineCompleter", "shutdown"]
